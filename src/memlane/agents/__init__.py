"""The async agent loop: models call tools that get the caller's context and the store."""

from memlane.agents.loop import (
    DEFAULT_RECURSION_LIMIT,
    Agent,
    AgentEvent,
    RecursionLimitError,
    UnknownToolError,
    create_agent,
)
from memlane.agents.memory_tools import manage_memory_tool, search_memory_tool
from memlane.agents.messages import (
    AIMessage,
    AnyMessage,
    HumanMessage,
    SystemMessage,
    ToolCall,
    ToolMessage,
    message_from_dict,
)
from memlane.agents.models import ChatModel, ScriptedModel, init_chat_model
from memlane.agents.runtime import ContextError, ToolRuntime
from memlane.agents.tools import Tool, ToolArgumentsError, tool

__all__ = [
    "DEFAULT_RECURSION_LIMIT",
    "AIMessage",
    "Agent",
    "AgentEvent",
    "AnyMessage",
    "ChatModel",
    "ContextError",
    "HumanMessage",
    "RecursionLimitError",
    "ScriptedModel",
    "SystemMessage",
    "Tool",
    "ToolArgumentsError",
    "ToolCall",
    "ToolMessage",
    "ToolRuntime",
    "UnknownToolError",
    "create_agent",
    "init_chat_model",
    "manage_memory_tool",
    "message_from_dict",
    "search_memory_tool",
    "tool",
]

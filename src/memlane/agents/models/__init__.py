"""Chat models: the protocol, a scripted model, and OpenAI-compatible and Anthropic clients."""

from memlane.agents.models.anthropic import AnthropicChatModel
from memlane.agents.models.base import (
    ChatModel,
    MissingAPIKeyError,
    ModelAPIError,
    ModelConnectionError,
    ModelError,
    ModelTimeoutError,
    init_chat_model,
)
from memlane.agents.models.openai import OpenAIChatModel
from memlane.agents.models.scripted import ScriptedCall, ScriptedModel

__all__ = [
    "AnthropicChatModel",
    "ChatModel",
    "MissingAPIKeyError",
    "ModelAPIError",
    "ModelConnectionError",
    "ModelError",
    "ModelTimeoutError",
    "OpenAIChatModel",
    "ScriptedCall",
    "ScriptedModel",
    "init_chat_model",
]

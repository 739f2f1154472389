"""EXAMPLES.md sections 2 and 3: tools that read and write long-term memory with runtime context.

The code of the sections runs as written, with only the imports changed, on a SqliteStore
(a durable file). Offline, a ScriptedModel plays the tool calls a real model would make;
with ANTHROPIC_API_KEY or OPENAI_API_KEY set, the real model is called instead.

    python examples/agent_memory.py
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from typing_extensions import TypedDict

from memlane import SqliteStore
from memlane.agents import ChatModel, ScriptedModel, ToolRuntime, create_agent, tool
from memlane.store.base import BaseStore


@dataclass
class Context:
    user_id: str


class UserInfo(TypedDict):
    name: str


# ---- section 2: a tool that reads long-term memory ----------------------------------------


@tool
def get_user_info(runtime: ToolRuntime[Context]) -> str:
    """Look up user info."""
    assert runtime.store is not None
    user_info = runtime.store.get(("users",), runtime.context.user_id)
    return str(user_info.value) if user_info else "Unknown user"


# ---- section 3: a tool that writes long-term memory ---------------------------------------


@tool
def save_user_info(user_info: UserInfo, runtime: ToolRuntime[Context]) -> str:
    """Save user info."""
    assert runtime.store is not None
    runtime.store.put(("users",), runtime.context.user_id, dict(user_info))
    return "Successfully saved user info."


# ---- the same tools as async def, for agents run with ainvoke ------------------------------


@tool("get_user_info")
async def aget_user_info(runtime: ToolRuntime[Context]) -> str:
    """Look up user info."""
    assert runtime.store is not None
    user_info = await runtime.store.aget(("users",), runtime.context.user_id)
    return str(user_info.value) if user_info else "Unknown user"


@tool("save_user_info")
async def asave_user_info(user_info: UserInfo, runtime: ToolRuntime[Context]) -> str:
    """Save user info."""
    assert runtime.store is not None
    await runtime.store.aput(("users",), runtime.context.user_id, dict(user_info))
    return "Successfully saved user info."


# ---- models: a real one when a key is set, else the script a real model would follow ------

def answer_from_tool(messages: list[Any]) -> str:
    """The scripted final turn: report what the tool found, as a real model would."""
    return f"Here is what I know about you: {messages[-1].content}"


READ_SCRIPT: list[Any] = [[{"name": "get_user_info", "args": {}}], answer_from_tool]
WRITE_SCRIPT: list[Any] = [
    [{"name": "save_user_info", "args": {"user_info": {"name": "John Smith"}}}],
    "Got it, John Smith: I saved your name.",
]


def pick_model(script: list[Any]) -> ChatModel | str:
    """``claude-sonnet-4-6`` or an OpenAI model when a key is set, else a ScriptedModel."""
    if os.environ.get("ANTHROPIC_API_KEY"):
        return "claude-sonnet-4-6"
    if os.environ.get("OPENAI_API_KEY"):
        return "openai:gpt-4o-mini"
    return ScriptedModel(script)


ModelFor = Callable[[list[Any]], ChatModel | str]


def run_sync_sections(store: BaseStore, model_for: ModelFor = pick_model) -> dict[str, Any]:
    """Sections 2 and 3 as written: sync tools and ``agent.invoke``."""
    store.put(("users",), "user_123", {"name": "John Smith", "language": "English"})

    agent = create_agent(
        model=model_for(READ_SCRIPT), tools=[get_user_info], store=store, context_schema=Context
    )
    read = agent.invoke(
        {"messages": [{"role": "user", "content": "look up user information"}]},
        context=Context(user_id="user_123"),
    )

    agent = create_agent(
        model=model_for(WRITE_SCRIPT), tools=[save_user_info], store=store, context_schema=Context
    )
    write = agent.invoke(
        {"messages": [{"role": "user", "content": "My name is John Smith"}]},
        context=Context(user_id="user_123"),
    )
    item = store.get(("users",), "user_123")  # -> Item with value {"name": "John Smith"}
    return {"read": read, "write": write, "item": item}


async def run_async_sections(store: BaseStore, model_for: ModelFor = pick_model) -> dict[str, Any]:
    """The async twins: ``async def`` tools and ``await agent.ainvoke``."""
    await store.aput(("users",), "user_456", {"name": "Jane Doe", "language": "French"})

    agent = create_agent(
        model=model_for(READ_SCRIPT), tools=[aget_user_info], store=store, context_schema=Context
    )
    read = await agent.ainvoke(
        {"messages": [{"role": "user", "content": "look up user information"}]},
        context=Context(user_id="user_456"),
    )
    agent = create_agent(
        model=model_for(WRITE_SCRIPT), tools=[asave_user_info], store=store, context_schema=Context
    )
    write = await agent.ainvoke(
        {"messages": [{"role": "user", "content": "My name is John Smith"}]},
        context={"user_id": "user_456"},  # a dict is coerced to Context
    )
    item = await store.aget(("users",), "user_456")
    return {"read": read, "write": write, "item": item}


def show(title: str, outcome: dict[str, Any]) -> None:
    print(f"== {title}")
    for run in ("read", "write"):
        for message in outcome[run]["messages"]:
            calls = getattr(message, "tool_calls", None)
            text = message.content or (f"calls {[c['name'] for c in calls]}" if calls else "")
            print(f"  {message.type:>5}: {text}")
    print(f"  store: {outcome['item'].value}")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "memories.db"
        with SqliteStore.open_sync(path) as store:
            show("sync tools, agent.invoke, SqliteStore", run_sync_sections(store))

        async def run_async() -> None:
            async with SqliteStore.open(path) as store:
                show("async tools, agent.ainvoke, SqliteStore", await run_async_sections(store))

        anyio.run(run_async)


if __name__ == "__main__":
    main()

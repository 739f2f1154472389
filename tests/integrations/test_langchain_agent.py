"""A real LangChain ``create_agent`` whose tools use ``ToolRuntime.store``, on memlane.

The chat model is scripted (a small ``BaseChatModel`` that replays tool calls), so runs are
deterministic; everything else is LangChain's and LangGraph's own machinery.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langgraph")
pytest.importorskip("langchain.agents")

from langchain.agents import create_agent
from langchain.tools import ToolRuntime
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import StructuredTool, tool
from pydantic import PrivateAttr
from tests.conftest import KEYWORD_DIMS, StoreFactory, keyword_embed

from memlane import IndexConfig, InMemoryStore, SqliteStore
from memlane.integrations.langgraph import LangGraphStore

pytestmark = pytest.mark.anyio

INDEX = IndexConfig(dims=KEYWORD_DIMS, embed=keyword_embed, fields=("text",))


class ScriptedChatModel(BaseChatModel):
    """Replays a fixed list of AI messages, one per model call; tools are accepted as is."""

    script: list[AIMessage]
    _position: int = PrivateAttr(default=0)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        return self

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self._position >= len(self.script):
            raise AssertionError("the agent called the model more often than scripted")
        message = self.script[self._position]
        self._position += 1
        return ChatResult(generations=[ChatGeneration(message=message)])


@dataclass
class Context:
    user_id: str


def _save(text: str, runtime: ToolRuntime[Context]) -> str:
    """Remember a fact about the user."""
    assert runtime.store is not None
    namespace = ("users", runtime.context.user_id, "memories")
    runtime.store.put(namespace, str(runtime.tool_call_id), {"text": text})
    return f"saved: {text}"


async def _asave(text: str, runtime: ToolRuntime[Context]) -> str:
    """Remember a fact about the user."""
    assert runtime.store is not None
    namespace = ("users", runtime.context.user_id, "memories")
    await runtime.store.aput(namespace, str(runtime.tool_call_id), {"text": text})
    return f"saved: {text}"


# Sync and async bodies: ``ainvoke`` awaits the coroutine, ``invoke`` calls the function.
save_memory = StructuredTool.from_function(func=_save, coroutine=_asave, name="save_memory")


@tool
def recall(query: str, runtime: ToolRuntime[Context]) -> str:
    """Find what is known about the user (a sync tool: LangGraph runs it in a thread)."""
    assert runtime.store is not None
    hits = runtime.store.search(("users", runtime.context.user_id), query=query, limit=2)
    return " | ".join(hit.value["text"] for hit in hits) or "nothing known"


def call(name: str, call_id: str, **args: Any) -> dict[str, Any]:
    return {"name": name, "args": args, "id": call_id, "type": "tool_call"}


def script() -> list[AIMessage]:
    """Two conversations: one saves two memories, the next recalls by meaning."""
    return [
        AIMessage(content="", tool_calls=[
            call("save_memory", "m1", text="likes jazz music"),
            call("save_memory", "m2", text="travel to tokyo"),
        ]),
        AIMessage(content="Noted."),
        AIMessage(content="", tool_calls=[call("recall", "r1", query="music")]),
        AIMessage(content="You like jazz."),
        AIMessage(content="", tool_calls=[call("recall", "r2", query="music")]),
        AIMessage(content="I know nothing about you."),
    ]


def tool_outputs(result: dict[str, Any]) -> list[str]:
    return [str(m.content) for m in result["messages"] if isinstance(m, ToolMessage)]


def user(text: str) -> Any:
    return {"messages": [{"role": "user", "content": text}]}


async def test_agent_saves_and_recalls_through_memlane(make_store: StoreFactory) -> None:
    memlane_store = await make_store(index=INDEX)
    agent = create_agent(ScriptedChatModel(script=script()), tools=[save_memory, recall],
                         store=LangGraphStore(memlane_store), context_schema=Context)

    first = await agent.ainvoke(user("I like jazz; off to Tokyo"), context=Context("u1"))
    assert tool_outputs(first) == ["saved: likes jazz music", "saved: travel to tokyo"]
    assert first["messages"][-1].content == "Noted."
    stored = await memlane_store.asearch(("users", "u1", "memories"))
    assert sorted((item.key, item.value["text"]) for item in stored) == [
        ("m1", "likes jazz music"), ("m2", "travel to tokyo"),
    ]

    second = await agent.ainvoke(user("what do I like?"), context=Context("u1"))
    assert tool_outputs(second)[0].startswith("likes jazz music")

    stranger = await agent.ainvoke(user("what do I like?"), context=Context("u2"))
    assert tool_outputs(stranger) == ["nothing known"]


def _run_sync(store: LangGraphStore) -> Iterator[list[str]]:
    agent = create_agent(ScriptedChatModel(script=script()), tools=[save_memory, recall],
                         store=store, context_schema=Context)
    for text, who in [("remember", "u1"), ("recall", "u1"), ("recall", "u2")]:
        yield tool_outputs(agent.invoke(user(text), context=Context(who)))


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_agent_invoke_sync(backend: str, tmp_path: Path) -> None:
    if backend == "memory":
        outputs = list(_run_sync(LangGraphStore(InMemoryStore(index=INDEX))))
    else:
        with SqliteStore.open_sync(tmp_path / "agent.db", index=INDEX) as store:
            outputs = list(_run_sync(LangGraphStore(store)))
        with SqliteStore.open_sync(tmp_path / "agent.db", index=INDEX) as reopened:
            assert len(reopened.search(("users", "u1"))) == 2  # durable
    assert outputs[0] == ["saved: likes jazz music", "saved: travel to tokyo"]
    assert outputs[1][0].startswith("likes jazz music")
    assert outputs[2] == ["nothing known"]

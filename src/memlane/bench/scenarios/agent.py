"""The agent loop: memlane's create_agent against LangChain's, side by side.

A scripted model (no network, no tokens) whose first turn asks for four tool calls (two
store writes, one get, one search) and whose second turn answers. Measured: runs/s at a
fixed concurrency on each ecosystem's in-memory and SQLite store; and the loop's own
overhead per run, with four no-op tools and with no tool call at all.

No ``from __future__ import annotations`` here: LangChain reads the tools' annotations at
run time, so they must be real objects (``ToolRuntime[Context]``), not strings.
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memlane.bench.runner import Row, Session, Trial
from memlane.bench.systems import langgraph_sqlite as tuned_langgraph_sqlite
from memlane.bench.systems import unavailable

__all__ = [
    "Context",
    "langchain_noop_agent",
    "langchain_runner",
    "langchain_store_agent",
    "langgraph_sqlite",
    "memlane_noop_agent",
    "memlane_runner",
    "memlane_sqlite",
    "memlane_store_agent",
    "noop_tools",
    "per_run_ms",
    "run",
    "store_tools",
    "throughput",
]


@dataclass
class Context:
    user_id: str


RunOnce = Callable[[int], Awaitable[Any]]


def _store(runtime: Any) -> Any:
    """The runtime's store (always set here: every agent below is given one)."""
    return runtime.store


def four_calls(i: int = 0) -> list[dict[str, Any]]:
    return [
        {"name": "save_memory", "args": {"text": f"fact {i}"}},
        {"name": "save_profile", "args": {"name": f"user {i}"}},
        {"name": "get_profile", "args": {}},
        {"name": "search_memories", "args": {"topic": "facts"}},
    ]


NOOP_CALLS = [{"name": f"noop{k}", "args": {}} for k in range(4)]
PROMPT = {"messages": [{"role": "user", "content": "remember"}]}


# ---- memlane -----------------------------------------------------------------------------


def store_tools(decorate: Callable[[Any], Any], runtime_type: Any) -> list[Any]:
    """The four store tools, written once for both ecosystems: ``decorate`` is memlane's or
    LangChain's ``tool``, ``runtime_type`` its ``ToolRuntime[Context]`` (the annotation each
    reads to inject the runtime)."""

    async def save_memory(text: str, runtime: runtime_type) -> str:
        """Save a memory."""
        await _store(runtime).aput(("memories", runtime.context.user_id), "m", {"text": text})
        return "saved"

    async def save_profile(name: str, runtime: runtime_type) -> str:
        """Save the profile."""
        await _store(runtime).aput(("profiles",), runtime.context.user_id, {"name": name})
        return "saved"

    async def get_profile(runtime: runtime_type) -> str:
        """Get the profile."""
        item = await _store(runtime).aget(("profiles",), runtime.context.user_id)
        return str(item.value) if item else "none"

    async def search_memories(topic: str, runtime: runtime_type) -> str:
        """Search memories."""
        items = await _store(runtime).asearch(("memories", runtime.context.user_id), limit=5)
        return str([i.value for i in items])

    return [decorate(fn) for fn in (save_memory, save_profile, get_profile, search_memories)]


def noop_tools(decorate: Callable[[str], Any], runtime_type: Any) -> list[Any]:
    """Four tools that do nothing, named ``noop0``..``noop3`` (see ``store_tools``)."""
    tools = []
    for k in range(4):

        async def noop(runtime: runtime_type) -> str:
            """No-op."""
            return "ok"

        tools.append(decorate(f"noop{k}")(noop))
    return tools


def memlane_store_agent(store: Any) -> Any:
    from memlane.agents import ScriptedModel, ToolRuntime, create_agent, tool

    model = ScriptedModel([four_calls(), "done"], record=False)
    return create_agent(model, store_tools(tool, ToolRuntime[Context]), store=store,
                        context_schema=Context)


def memlane_noop_agent(with_tools: bool) -> Any:
    from memlane.agents import ScriptedModel, ToolRuntime, create_agent, tool

    model = ScriptedModel([NOOP_CALLS, "done"] if with_tools else ["done"], record=False)
    return create_agent(model, noop_tools(tool, ToolRuntime[Context]), context_schema=Context)


def memlane_runner(agent: Any) -> RunOnce:
    async def run(i: int) -> Any:
        return await agent.ainvoke(PROMPT, context=Context(f"u{i % 50}"))

    return run


@contextlib.asynccontextmanager
async def memlane_sqlite(tmp: Path) -> AsyncIterator[Any]:
    from memlane import SqliteStore

    async with SqliteStore.open(tmp / "memlane-agent.db") as store:
        yield store


# ---- LangChain ---------------------------------------------------------------------------


def langchain_model(turns: list[Any]) -> Any:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
    from langchain_core.outputs import ChatGeneration, ChatResult

    from memlane.agents.models.scripted import turn_index

    class Scripted(BaseChatModel):
        """Plays the same script as memlane's ScriptedModel (turn = AI messages so far)."""

        @property
        def _llm_type(self) -> str:
            return "scripted"

        def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
            return self

        def _reply(self, messages: list[BaseMessage]) -> ChatResult:
            index = turn_index(messages, AIMessage, HumanMessage)
            turn = turns[index]
            if isinstance(turn, str):
                message = AIMessage(content=turn)
            else:
                message = AIMessage(content="", tool_calls=[
                    {"id": f"call_{index}_{k}", "name": c["name"], "args": c["args"]}
                    for k, c in enumerate(turn)
                ])
            return ChatResult(generations=[ChatGeneration(message=message)])

        def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                      run_manager: Any = None, **kw: Any) -> ChatResult:
            return self._reply(messages)

        async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                             run_manager: Any = None, **kw: Any) -> ChatResult:
            return self._reply(messages)

    return Scripted()


def langchain_store_agent(store: Any) -> Any:
    from langchain.agents import create_agent as lc_create_agent
    from langchain.tools import ToolRuntime as LCRuntime
    from langchain.tools import tool as lc_tool

    return lc_create_agent(langchain_model([four_calls(), "done"]),
                           store_tools(lc_tool, LCRuntime[Context]), store=store,
                           context_schema=Context)


def langchain_noop_agent(with_tools: bool) -> Any:
    from langchain.agents import create_agent as lc_create_agent
    from langchain.tools import ToolRuntime as LCRuntime
    from langchain.tools import tool as lc_tool

    model = langchain_model([NOOP_CALLS, "done"] if with_tools else ["done"])
    return lc_create_agent(model, noop_tools(lc_tool, LCRuntime[Context]),
                           context_schema=Context)


langchain_runner = memlane_runner  # the same call: ainvoke(prompt, context=...)


@contextlib.asynccontextmanager
async def langgraph_sqlite(tmp: Path) -> AsyncIterator[Any]:
    async with tuned_langgraph_sqlite(tmp / "langgraph-agent.db") as store:
        yield store


# ---- measuring ---------------------------------------------------------------------------


async def throughput(run: RunOnce, runs: int, concurrency: int, warmup: int = 20) -> float:
    """Runs per second for ``runs`` runs, ``concurrency`` at a time."""
    for i in range(min(warmup, runs)):
        await run(i)
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < runs:
            i = next_index
            next_index += 1
            await run(i)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return runs / (time.perf_counter() - start)


async def per_run_ms(run: RunOnce, runs: int, warmup: int = 50) -> float:
    """Mean milliseconds of one run, runs one after another."""
    for i in range(min(warmup, runs)):
        await run(i)
    start = time.perf_counter()
    for i in range(runs):
        await run(i)
    return (time.perf_counter() - start) / runs * 1000


def _throughput_trial(run: RunOnce, runs: int, concurrency: int) -> Trial:
    async def trial() -> float:
        return await throughput(run, runs, concurrency, warmup=0)

    return trial


def _overhead_trial(run: RunOnce, runs: int) -> Trial:
    async def trial() -> float:
        return await per_run_ms(run, runs, warmup=0)

    return trial


async def run(session: Session, folder: Path, runs: int, concurrency: int,
              overhead_runs: int) -> None:
    """The three agent rows: runs/s on each store, and the two overhead figures."""
    from memlane import InMemoryStore

    missing = unavailable("langchain-agent")
    sqlite_missing = unavailable("langgraph-sqlite")
    async with contextlib.AsyncExitStack() as stack:
        loop_row = Row("agent_loop", f"4 tool calls per run, {concurrency} concurrent",
                       "runs/s", "runs/s", True,
                       params={"runs": runs, "concurrency": concurrency},
                       note="memlane's create_agent on memlane's stores; LangChain's "
                            "create_agent on LangGraph's stores; scripted model")
        memory = stack.enter_context(InMemoryStore())
        sqlite = await stack.enter_async_context(memlane_sqlite(folder))
        trials = {
            "memlane-memory": _throughput_trial(
                memlane_runner(memlane_store_agent(memory)), runs, concurrency),
            "memlane-sqlite": _throughput_trial(
                memlane_runner(memlane_store_agent(sqlite)), runs, concurrency),
        }
        if missing:
            loop_row.skip("langgraph-memory", missing)
            loop_row.skip("langgraph-sqlite", missing)
        else:
            from langgraph.store.memory import InMemoryStore as LGInMemoryStore

            trials["langgraph-memory"] = _throughput_trial(
                langchain_runner(langchain_store_agent(LGInMemoryStore())), runs, concurrency)
            if sqlite_missing:
                loop_row.skip("langgraph-sqlite", sqlite_missing)
            else:
                lg_sqlite = await stack.enter_async_context(langgraph_sqlite(folder))
                trials["langgraph-sqlite"] = _throughput_trial(
                    langchain_runner(langchain_store_agent(lg_sqlite)), runs, concurrency)
        await session.measure(loop_row, trials)

    for with_tools in (True, False):
        row = Row("agent_loop", "overhead, 4 no-op tools" if with_tools
                  else "overhead, no tool call", "ms per run", "ms", False,
                  params={"runs": overhead_runs, "tools": with_tools},
                  note="one run after another; no store, scripted model: the loop's own cost")
        trials = {"memlane-agent": _overhead_trial(
            memlane_runner(memlane_noop_agent(with_tools)), overhead_runs)}
        if missing:
            row.skip("langchain-agent", missing)
        else:
            # LangChain runs ~50x slower per run: fewer runs keep its trials short.
            trials["langchain-agent"] = _overhead_trial(
                langchain_runner(langchain_noop_agent(with_tools)),
                max(10, overhead_runs // 10))
        await session.measure(row, trials)

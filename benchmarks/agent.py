"""The agent loop: memlane's create_agent against LangChain's create_agent, side by side.

One process, one run, the same work for both: a scripted model whose first turn asks for
four tool calls (two store writes, one get, one search) and whose second turn answers.
Measured: runs/s for 200 runs at concurrency 50; the loop's overhead per run with four
no-op tools; and the overhead of a run with no tool call at all. memlane runs on its
InMemoryStore and SqliteStore, LangChain on LangGraph's InMemoryStore and AsyncSqliteStore.
LangChain is skipped with a note when the bench extra is not installed.

    .venv/bin/python benchmarks/agent.py            # full run (well under a minute)
    .venv/bin/python benchmarks/agent.py --quick    # a smaller run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memlane import InMemoryStore
from memlane.agents import ScriptedModel, ToolRuntime, create_agent, tool

try:  # module level: LangChain resolves the tools' string annotations in these globals
    from langchain.tools import ToolRuntime as LCRuntime
except ImportError:  # the bench extra is not installed; LangChain is skipped
    LCRuntime = None


@dataclass
class Context:
    user_id: str


RunOnce = Callable[[int], Awaitable[Any]]


def four_calls(i: int = 0) -> list[dict[str, Any]]:
    return [
        {"name": "save_memory", "args": {"text": f"fact {i}"}},
        {"name": "save_profile", "args": {"name": f"user {i}"}},
        {"name": "get_profile", "args": {}},
        {"name": "search_memories", "args": {"topic": "facts"}},
    ]


NOOP_CALLS = [{"name": f"noop{k}", "args": {}} for k in range(4)]


# ---- memlane -----------------------------------------------------------------------------


def memlane_store_agent(store: Any) -> Any:
    @tool
    async def save_memory(text: str, runtime: ToolRuntime[Context]) -> str:
        """Save a memory."""
        await runtime.store.aput(("memories", runtime.context.user_id), "m", {"text": text})
        return "saved"

    @tool
    async def save_profile(name: str, runtime: ToolRuntime[Context]) -> str:
        """Save the profile."""
        await runtime.store.aput(("profiles",), runtime.context.user_id, {"name": name})
        return "saved"

    @tool
    async def get_profile(runtime: ToolRuntime[Context]) -> str:
        """Get the profile."""
        item = await runtime.store.aget(("profiles",), runtime.context.user_id)
        return str(item.value) if item else "none"

    @tool
    async def search_memories(topic: str, runtime: ToolRuntime[Context]) -> str:
        """Search memories."""
        items = await runtime.store.asearch(("memories", runtime.context.user_id), limit=5)
        return str([i.value for i in items])

    model = ScriptedModel([four_calls(), "done"], record=False)
    return create_agent(
        model,
        [save_memory, save_profile, get_profile, search_memories],
        store=store,
        context_schema=Context,
    )


def memlane_noop_agent(with_tools: bool) -> Any:
    tools = []
    for k in range(4):

        async def noop(runtime: ToolRuntime[Context]) -> str:
            return "ok"

        tools.append(tool(f"noop{k}")(noop))
    model = ScriptedModel([NOOP_CALLS, "done"] if with_tools else ["done"], record=False)
    return create_agent(model, tools, context_schema=Context)


def memlane_runner(agent: Any) -> RunOnce:
    async def run(i: int) -> Any:
        return await agent.ainvoke(
            {"messages": [{"role": "user", "content": "remember"}]}, context=Context(f"u{i % 50}")
        )

    return run


@contextlib.asynccontextmanager
async def memlane_sqlite(tmp: Path) -> AsyncIterator[Any]:
    try:
        from memlane import SqliteStore
    except ImportError:
        yield None
        return
    async with SqliteStore.open(tmp / "memlane-agent.db") as store:
        yield store


# ---- LangChain ---------------------------------------------------------------------------


def langchain_available() -> str | None:
    try:
        import langchain.agents  # noqa: F401
        import langgraph.store.memory  # noqa: F401
    except ImportError as exc:
        return f"LangChain skipped: {exc.name} is not installed (pip install -e '.[bench]')"
    return None


def langchain_model(turns: list[Any]) -> Any:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage, HumanMessage
    from langchain_core.outputs import ChatGeneration, ChatResult

    class Scripted(BaseChatModel):
        """Plays the same script as memlane's ScriptedModel (turn = AI messages so far)."""

        @property
        def _llm_type(self) -> str:
            return "scripted"

        def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
            return self

        def _reply(self, messages: list[Any]) -> ChatResult:
            index = 0
            for m in reversed(messages):
                if isinstance(m, AIMessage):
                    index += 1
                elif isinstance(m, HumanMessage):
                    break
            turn = turns[index]
            if isinstance(turn, str):
                message = AIMessage(content=turn)
            else:
                message = AIMessage(
                    content="",
                    tool_calls=[
                        {"id": f"call_{index}_{k}", "name": c["name"], "args": c["args"]}
                        for k, c in enumerate(turn)
                    ],
                )
            return ChatResult(generations=[ChatGeneration(message=message)])

        def _generate(self, messages: list[Any], stop: Any = None, **kw: Any) -> ChatResult:
            return self._reply(messages)

        async def _agenerate(
            self, messages: list[Any], stop: Any = None, **kw: Any
        ) -> ChatResult:
            return self._reply(messages)

    return Scripted()


def langchain_store_agent(store: Any) -> Any:
    from langchain.agents import create_agent as lc_create_agent
    from langchain.tools import tool as lc_tool

    @lc_tool
    async def save_memory(text: str, runtime: LCRuntime[Context]) -> str:
        """Save a memory."""
        await runtime.store.aput(("memories", runtime.context.user_id), "m", {"text": text})
        return "saved"

    @lc_tool
    async def save_profile(name: str, runtime: LCRuntime[Context]) -> str:
        """Save the profile."""
        await runtime.store.aput(("profiles",), runtime.context.user_id, {"name": name})
        return "saved"

    @lc_tool
    async def get_profile(runtime: LCRuntime[Context]) -> str:
        """Get the profile."""
        item = await runtime.store.aget(("profiles",), runtime.context.user_id)
        return str(item.value) if item else "none"

    @lc_tool
    async def search_memories(topic: str, runtime: LCRuntime[Context]) -> str:
        """Search memories."""
        items = await runtime.store.asearch(("memories", runtime.context.user_id), limit=5)
        return str([i.value for i in items])

    return lc_create_agent(
        langchain_model([four_calls(), "done"]),
        [save_memory, save_profile, get_profile, search_memories],
        store=store,
        context_schema=Context,
    )


def langchain_noop_agent(with_tools: bool) -> Any:
    from langchain.agents import create_agent as lc_create_agent
    from langchain.tools import tool as lc_tool

    tools = []
    for k in range(4):

        async def noop(runtime: LCRuntime[Context]) -> str:
            """No-op."""
            return "ok"

        tools.append(lc_tool(f"noop{k}")(noop))
    model = langchain_model([NOOP_CALLS, "done"] if with_tools else ["done"])
    return lc_create_agent(model, tools, context_schema=Context)


def langchain_runner(agent: Any) -> RunOnce:
    async def run(i: int) -> Any:
        return await agent.ainvoke(
            {"messages": [{"role": "user", "content": "remember"}]}, context=Context(f"u{i % 50}")
        )

    return run


@contextlib.asynccontextmanager
async def langgraph_sqlite(tmp: Path) -> AsyncIterator[Any]:
    try:
        from langgraph.store.sqlite.aio import AsyncSqliteStore
    except ImportError:
        yield None
        return
    async with AsyncSqliteStore.from_conn_string(str(tmp / "langgraph-agent.db")) as store:
        await store.setup()
        yield store


# ---- measuring ---------------------------------------------------------------------------


async def throughput(run: RunOnce, runs: int, concurrency: int) -> float:
    """Runs per second for ``runs`` runs, ``concurrency`` at a time."""
    for i in range(min(20, runs)):  # warm-up
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


async def per_run_ms(run: RunOnce, runs: int) -> float:
    """Mean milliseconds of one run, runs one after another."""
    for i in range(min(50, runs)):
        await run(i)
    start = time.perf_counter()
    for i in range(runs):
        await run(i)
    return (time.perf_counter() - start) / runs * 1000


@dataclass
class Row:
    system: str
    store: str
    runs_per_s: float | None = None
    noop_ms: float | None = None
    notool_ms: float | None = None


async def measure(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    skip = langchain_available()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)

        ml_noop = memlane_runner(memlane_noop_agent(True))
        ml_none = memlane_runner(memlane_noop_agent(False))
        noop_ms = await per_run_ms(ml_noop, args.overhead_runs)
        none_ms = await per_run_ms(ml_none, args.overhead_runs * 5)
        with InMemoryStore() as store:
            rps = await throughput(
                memlane_runner(memlane_store_agent(store)), args.runs, args.concurrency
            )
        rows.append(Row("memlane", "InMemoryStore", rps, noop_ms, none_ms))
        async with memlane_sqlite(tmp) as store:
            if store is not None:
                rps = await throughput(
                    memlane_runner(memlane_store_agent(store)), args.runs, args.concurrency
                )
                rows.append(Row("memlane", "SqliteStore", rps))

        if skip:
            print(skip)
            return rows
        from langgraph.store.memory import InMemoryStore as LGInMemoryStore

        lc_noop = langchain_runner(langchain_noop_agent(True))
        lc_none = langchain_runner(langchain_noop_agent(False))
        noop_ms = await per_run_ms(lc_noop, max(20, args.overhead_runs // 10))
        none_ms = await per_run_ms(lc_none, max(50, args.overhead_runs // 5))
        rps = await throughput(
            langchain_runner(langchain_store_agent(LGInMemoryStore())), args.runs, args.concurrency
        )
        rows.append(Row("LangChain", "InMemoryStore (LangGraph)", rps, noop_ms, none_ms))
        async with langgraph_sqlite(tmp) as store:
            if store is None:
                print("LangGraph AsyncSqliteStore skipped: langgraph-checkpoint-sqlite missing")
            else:
                rps = await throughput(
                    langchain_runner(langchain_store_agent(store)), args.runs, args.concurrency
                )
                rows.append(Row("LangChain", "AsyncSqliteStore (LangGraph)", rps))
    return rows


def fmt(value: float | None, spec: str) -> str:
    width = int(spec.split(".")[0].rstrip("f") or 0)
    return "-".rjust(width) if value is None else format(value, spec)


def report(rows: list[Row], args: argparse.Namespace) -> dict[str, Any]:
    print(
        f"\nagent loop: {args.runs} runs at concurrency {args.concurrency}, 4 tool calls per run"
        f" | python {platform.python_version()} on {platform.machine()}"
    )
    print(f"{'system':<10} {'store':<30} {'runs/s':>9} {'tool calls/s':>13} "
          f"{'4 no-op tools ms':>17} {'no-tool run ms':>15}")
    for r in rows:
        calls = None if r.runs_per_s is None else r.runs_per_s * 4
        print(
            f"{r.system:<10} {r.store:<30} {fmt(r.runs_per_s, '9.0f')} {fmt(calls, '13.0f')} "
            f"{fmt(r.noop_ms, '17.4f')} {fmt(r.notool_ms, '15.4f')}"
        )
    ratios: dict[str, float] = {}
    by = {(r.system, r.store.split(" ")[0]): r for r in rows}
    for store in ("InMemoryStore", "SqliteStore"):
        mine = by.get(("memlane", store))
        ref_store = "InMemoryStore" if store == "InMemoryStore" else "AsyncSqliteStore"
        ref = by.get(("LangChain", ref_store))
        if mine and ref and mine.runs_per_s and ref.runs_per_s:
            ratios[f"runs/s {store} vs {ref_store}"] = mine.runs_per_s / ref.runs_per_s
    mine, ref = by.get(("memlane", "InMemoryStore")), by.get(("LangChain", "InMemoryStore"))
    if mine and ref and mine.noop_ms and ref.noop_ms and mine.notool_ms and ref.notool_ms:
        ratios["4 no-op tools overhead (LangChain / memlane)"] = ref.noop_ms / mine.noop_ms
        ratios["no-tool run overhead (LangChain / memlane)"] = ref.notool_ms / mine.notool_ms
    for name, value in ratios.items():
        print(f"  {name}: {value:.1f}x")
    return {
        "runs": args.runs,
        "concurrency": args.concurrency,
        "rows": [r.__dict__ for r in rows],
        "ratios": ratios,
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smaller run")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--overhead-runs", type=int, default=2000)
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.overhead_runs = 300
    rows = asyncio.run(measure(args))
    data = report(rows, args)
    if args.json:
        args.json.write_text(json.dumps(data, indent=2))
    sys.stdout.flush()


if __name__ == "__main__":
    main()

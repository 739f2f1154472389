"""The agent loop: memlane's create_agent against LangChain's create_agent, side by side.

One process, one run, the same work for both: a scripted model whose first turn asks for
four tool calls (two store writes, one get, one search) and whose second turn answers.
Measured: runs/s for 200 runs at concurrency 50; the loop's overhead per run with four
no-op tools; and the overhead of a run with no tool call at all. memlane runs on its
InMemoryStore and SqliteStore, LangChain on LangGraph's InMemoryStore and AsyncSqliteStore.
LangChain is skipped with a note when the bench extra is not installed. A thin wrapper:
the agents and the measuring live in ``memlane.bench.scenarios.agent`` (``memlane bench``).

    .venv/bin/python benchmarks/agent.py            # full run (well under a minute)
    .venv/bin/python benchmarks/agent.py --quick    # a smaller run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memlane import InMemoryStore
from memlane.bench.scenarios.agent import (
    langchain_noop_agent,
    langchain_runner,
    langchain_store_agent,
    langgraph_sqlite,
    memlane_noop_agent,
    memlane_runner,
    memlane_sqlite,
    memlane_store_agent,
    per_run_ms,
    throughput,
)
from memlane.bench.systems import unavailable


def langchain_available() -> str | None:
    reason = unavailable("langchain-agent")
    return f"LangChain skipped: {reason}" if reason else None


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

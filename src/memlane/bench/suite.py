"""One whole run: for each size, fill the stores and run every family; then the agent loop.

The order within a size is chosen so that no scenario disturbs the next: reads first
(gets, vector search, filters) on the freshly filled stores, then reopen (which closes
and reopens the files), then writes (which add items), then peak memory in child
processes once this size's stores are closed and their memory given back.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from memlane.bench.plan import Plan
from memlane.bench.progress import Display
from memlane.bench.runner import Row, Session
from memlane.bench.scenarios import agent, filters, gets, memory, reopen, search, writes
from memlane.bench.scenarios.ceilings import RawSqlite
from memlane.bench.scenarios.stage import Stage
from memlane.bench.workloads import Dataset

__all__ = ["planned_steps", "run_suite"]


def planned_steps(plan: Plan, with_memory: bool = True) -> int:
    """How many rows (and memory children) the display's bar counts to."""
    per_size = {"writes": 2 * len(plan.writers), "gets": len(plan.readers), "vector_search": 4,
                "filter_search": 2, "reopen": 2}
    if with_memory:
        per_size["peak_memory"] = len(memory.MEMORY_SYSTEMS)
    total = sum(n for family, n in per_size.items() if family in plan.families)
    agent_rows = 3 if "agent_loop" in plan.families and with_memory else 0
    return total * len(plan.sizes) + agent_rows


def memory_shortfall(plan: Plan, size: int) -> str | None:
    """Why ``size`` would not fit in this machine's available memory, or None.

    All stores of a size are open at once (the price of interleaving): four copies of the
    vectors (the benchmark's table, two memlane indexes, the FAISS ceiling), a fifth for
    LangGraph's in-memory store below its cap, ~1 KiB per item and in-memory store for the
    records, times 2.2 for search-time peaks and allocator slack: calibrated on a 1M-item,
    384-dim run that went past 18 GiB (and was OOM-killed) during 64 concurrent searches.
    """
    try:
        with open("/proc/meminfo") as info:
            fields = {line.split(":")[0]: int(line.split()[1]) for line in info}
        available = fields["MemAvailable"] * 1024
    except (OSError, KeyError, ValueError):
        return None
    copies = 5 if size <= plan.langgraph_max_items else 4
    stores = 4 if size <= plan.langgraph_max_items else 2
    needed = 2.2 * size * (copies * plan.dims * 4 + stores * 1024)
    if needed <= 0.8 * available:
        return None
    return (f"needs ~{needed / 2**30:.1f} GiB with every store open at once, "
            f"{available / 2**30:.1f} GiB available (peak memory still runs, one child each)")


async def run_suite(plan: Plan, display: Display) -> tuple[list[Row], dict[str, Any]]:
    """Every selected family at every size; returns the rows and the fill times."""
    session = Session(plan.repeats, plan.slow_trial_s, plan.trial_limit_s,
                      on_trial=display.trial, on_step=display.step)
    families = set(plan.families)
    fill: dict[str, dict[str, float]] = {}
    skipped_sizes: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="memlane-bench-") as tmp:
        folder = Path(tmp)
        for size in plan.sizes:
            stage_families = families & {"writes", "gets", "vector_search", "filter_search",
                                         "reopen"}
            too_big = memory_shortfall(plan, size)
            if stage_families and too_big:
                skipped_sizes[str(size)] = too_big
                display.note(f"size {size:,} skipped: {too_big}")
                for _ in range(planned_steps(plan, with_memory=False) // len(plan.sizes)):
                    display.step(f"skipped size {size:,}")
            elif stage_families:
                data = Dataset(size, plan.dims, extra_rows=plan.write_ops)
                stage = Stage(data, plan, folder)
                raw: RawSqlite | None = None
                try:
                    await stage.build(
                        indexed_too=bool(stage_families - {"gets"}),
                        plain_too=bool(stage_families - {"vector_search"}),
                        progress=display.trial,
                    )
                    fill[str(size)] = stage.fill_seconds
                    raw = RawSqlite(folder / f"raw-{size}.db", data)
                    if "gets" in families:
                        await gets.run(session, stage, raw)
                    if "vector_search" in families:
                        await search.run(session, stage)
                    if "filter_search" in families:
                        await filters.run(session, stage)
                    if "reopen" in families:
                        await reopen.run(session, stage)
                    if "writes" in families:
                        await writes.run(session, stage, raw)
                finally:
                    if raw is not None:
                        raw.close()
                    await stage.close()
                    _empty(folder)  # give the disk back before the next size
                del data, stage
            if "peak_memory" in families:
                await memory.run(session, plan, size)
        if "agent_loop" in families:
            await agent.run(session, folder, plan.agent_runs, plan.agent_concurrency,
                            plan.overhead_runs)
    return session.rows, {"fill_seconds": fill, "skipped_sizes": skipped_sizes}


def _empty(folder: Path) -> None:
    for path in folder.iterdir():
        path.unlink()

"""Writes: puts/s at 1, 100 and 1,000 concurrent writers, without and with an index.

Each trial writes ``write_ops`` new items (fresh keys, same values for every system) into
a store that already holds the size's items. The ceiling is the same rows inserted by
sqlite3's ``executemany`` in one transaction (plus FAISS ``add`` of the vectors, indexed).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from memlane.bench.runner import Row, Session, Trial, drive
from memlane.bench.scenarios.ceilings import RawSqlite
from memlane.bench.scenarios.stage import Stage
from memlane.bench.workloads import Item

__all__ = ["drive_puts", "run", "write_trial"]

Put = Callable[[tuple[str, ...], str, dict[str, Any]], Awaitable[None]]


async def drive_puts(put: Put, items: Sequence[Item], writers: int) -> tuple[float, list[float]]:
    """Run ``items`` through ``writers`` concurrent tasks: seconds and per-put latencies."""
    latencies: list[float] = []

    async def one(i: int) -> None:
        started = time.perf_counter()
        await put(*items[i])
        latencies.append(time.perf_counter() - started)

    seconds = await drive(one, len(items), writers)
    return seconds, latencies


_RUNS = itertools.count()  # one counter for every trial: keys never repeat in a store


def write_trial(put: Put, fresh: Sequence[Item], writers: int) -> Trial:
    """A trial writing ``fresh`` under new keys each time it runs; returns puts/s."""

    async def trial() -> float:
        run = next(_RUNS)
        items = [(ns, f"r{run}-{key}", value) for ns, key, value in fresh]
        seconds, _ = await drive_puts(put, items, writers)
        return len(items) / seconds

    return trial


def raw_trial(raw: RawSqlite, fresh: Sequence[Item], indexed: bool) -> Trial:
    async def trial() -> float:
        run = next(_RUNS)
        items = [(ns, f"r{run}-{key}", value) for ns, key, value in fresh]
        return len(items) / raw.insert(items, indexed)

    return trial


async def run(session: Session, stage: Stage, raw: RawSqlite) -> None:
    data, plan = stage.data, stage.plan
    fresh = data.items(data.size, data.size + plan.write_ops, prefix="w")
    for indexed in (False, True):
        for writers in plan.writers:
            row = Row(
                "writes", f"{writers} writer{'s' if writers > 1 else ''}, "
                f"{'with' if indexed else 'no'} index", "puts/s", "puts/s", True,
                items=data.size, params={"writers": writers, "index": indexed},
                note=f"{plan.write_ops:,} new ~200-byte items per trial"
                     + (f", {plan.dims}-dim vectors" if indexed else ""),
            )
            stage.apply_skips(row, indexed)
            trials = {
                key: write_trial(handle.store.aput, fresh, writers)
                for (key, is_indexed), handle in stage.handles.items() if is_indexed == indexed
            }
            trials["sqlite3"] = raw_trial(raw, fresh, indexed)
            await session.measure(row, trials)

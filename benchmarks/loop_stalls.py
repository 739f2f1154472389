"""The longest event-loop stall of one big call, per store: no call may hold the loop long.

A heartbeat task sleeps 5 ms at a time and records the largest gap between its wake-ups
while one call runs (its input is built before): an import of 100k items, a batch of 20k
puts, reading a 50 MB value, a search with ``limit=10**9`` over 100k items, and an ``$or``
filter of 20k branches.

    .venv/bin/python benchmarks/loop_stalls.py
    .venv/bin/python benchmarks/loop_stalls.py --stores sqlite --items 20000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from burst import Heartbeat

from memlane import ImportItem, InMemoryStore, PutOp, SqliteStore
from memlane.store.base import BaseStore

Call = Callable[[BaseStore], Awaitable[Any]]


def import_items(n: int) -> Call:
    now = datetime.now(UTC)
    items = [ImportItem(("imp", str(i % 100)), f"k{i}", {"text": f"item {i}"}, now, now)
             for i in range(n)]
    return lambda store: store.aimport(items)  # type: ignore[attr-defined,no-any-return]


def batch_puts(n: int) -> Call:
    ops = [PutOp(("batch",), f"k{i}", {"text": f"item {i}"}) for i in range(n // 5)]
    return lambda store: store.abatch(ops)


def big_value(n: int) -> Call:
    return lambda store: store.aget(("big",), "value")


def huge_limit(n: int) -> Call:
    return lambda store: store.asearch(("bulk",), limit=10**9)


def wide_or(n: int) -> Call:
    spec = {"$or": [{"n": i} for i in range(20_000)]}
    return lambda store: store.asearch(("big",), filter=spec, limit=5)


# name -> builds the call's input (outside the measurement) and returns the call
SCENARIOS: dict[str, Callable[[int], Call]] = {
    "aimport of N items": import_items,
    "abatch of N/5 puts": batch_puts,
    "aget of a 50 MB value": big_value,
    "asearch limit=10**9": huge_limit,
    "asearch $or 20k branches": wide_or,
}


async def fill(store: BaseStore, n: int) -> None:
    for start in range(0, n, 2_000):
        await store.abatch([PutOp(("bulk",), f"k{i}", {"text": f"item {i}", "n": i})
                            for i in range(start, min(n, start + 2_000))])
    await store.aput(("big",), "value", {"blob": "x" * 50_000_000})


async def measure(store: BaseStore, call: Call) -> tuple[float, float]:
    with Heartbeat() as beat:
        await asyncio.sleep(0.02)
        started = time.perf_counter()
        await call(store)
        elapsed = time.perf_counter() - started
        await asyncio.sleep(0.01)
    return elapsed, beat.max_gap


async def run(kind: str, folder: Path, n: int) -> None:
    store: BaseStore
    if kind == "memory":
        store = InMemoryStore()
    else:
        store = await SqliteStore.open(folder / "stalls.db")
    try:
        await fill(store, n)
        if gc.isenabled() and gc.get_freeze_count():
            gc.collect()
            gc.freeze()
        for name, build in SCENARIOS.items():
            if name.startswith("aimport") and not hasattr(store, "aimport"):
                continue
            call = build(n)
            try:
                elapsed, stall = await measure(store, call)
            except Exception as exc:
                print(f"{kind:7s} {name.replace('N', f'{n:,}'):34s} failed: {exc!r:.80}")
                continue
            print(f"{kind:7s} {name.replace('N', f'{n:,}'):34s} {elapsed * 1000:8.1f} ms, "
                  f"longest loop stall {stall * 1000:7.1f} ms")
    finally:
        await store.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--stores", nargs="+", default=["memory", "sqlite"])
    parser.add_argument("--gc-freeze", action="store_true",
                        help="gc.freeze() after filling: leave out the collector's own pauses")
    args = parser.parse_args()
    if args.gc_freeze:
        gc.collect()
        gc.freeze()
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.stores:
            await run(kind, Path(tmp), args.items)


if __name__ == "__main__":
    asyncio.run(main())

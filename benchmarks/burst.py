"""A burst of concurrent writers: N tasks each awaiting one ``aput`` at the same moment.

Measures, per store and burst size, the wall time until every put is acknowledged and
the longest event-loop stall meanwhile: a heartbeat task sleeps 5 ms at a time and records
the largest gap between its wake-ups (a gap of 5 ms is an idle loop). Waiting for space in
a full mailbox must cost O(1) per waiter, so 100k puts should take about 10x what 10k take.

    .venv/bin/python benchmarks/burst.py                     # 10k, 40k, 100k on both stores
    .venv/bin/python benchmarks/burst.py --sizes 10000 --stores sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from memlane import InMemoryStore, SqliteStore
from memlane.store.base import BaseStore


class Heartbeat:
    """The longest gap between wake-ups of a task that sleeps ``interval`` at a time."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.max_gap = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _beat(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(self.interval)
            now = time.perf_counter()
            self.max_gap = max(self.max_gap, now - last)
            last = now

    def __enter__(self) -> Heartbeat:
        self._task = asyncio.get_running_loop().create_task(self._beat())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


@asynccontextmanager
async def open_store(kind: str, folder: Path, size: int) -> AsyncIterator[BaseStore]:
    if kind == "memory":
        store = InMemoryStore()
        try:
            yield store
        finally:
            store.close()
        return
    async with SqliteStore.open(folder / f"burst-{size}.db") as sqlite_store:
        yield sqlite_store


async def burst(kind: str, folder: Path, size: int) -> tuple[float, float]:
    """(seconds for ``size`` concurrent aputs, longest loop stall in seconds)."""
    async with open_store(kind, folder, size) as store:
        value = {"text": "a memory of about fifty bytes, give or take"}
        with Heartbeat() as beat:
            await asyncio.sleep(0.02)  # the heartbeat is running
            started = time.perf_counter()
            await asyncio.gather(
                *(store.aput(("users", str(n % 100)), f"k{n}", value) for n in range(size))
            )
            elapsed = time.perf_counter() - started
        return elapsed, beat.max_gap


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 40_000, 100_000])
    parser.add_argument("--stores", nargs="+", default=["memory", "sqlite"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.stores:
            first: float | None = None
            for size in args.sizes:
                elapsed, stall = await burst(kind, Path(tmp), size)
                first = first or elapsed / size
                print(
                    f"{kind:7s} {size:>7,} concurrent aput: {elapsed:7.2f} s "
                    f"({size / elapsed:9,.0f} puts/s, {elapsed / size / first:4.1f}x the "
                    f"first size's per-put time), longest loop stall {stall * 1000:7.1f} ms"
                )


if __name__ == "__main__":
    asyncio.run(main())

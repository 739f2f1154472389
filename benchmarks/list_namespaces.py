"""list_namespaces at scale: latency and the longest event-loop stall, on both stores.

    PYTHONPATH=src .venv/bin/python benchmarks/list_namespaces.py --namespaces 1000000

N namespaces ``("users", "u<n>", "memories" | "prefs")`` (N/2 users), one item each. Each
query runs a few times; the figure is the median latency and the longest gap a heartbeat
task (``asyncio.sleep(0.001)`` in a loop) saw while the query ran. The SQLite file is built
with plain ``sqlite3`` inserts into a file the store created (minutes faster than puts) and
kept in ``--dir`` for the next run.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from memlane import InMemoryStore, PutOp, SqliteStore
from memlane.store.base import BaseStore

KINDS = ("memories", "prefs")
_Query = Callable[[BaseStore], Awaitable[list[tuple[str, ...]]]]


def namespace(n: int) -> tuple[str, str, str]:
    return ("users", f"u{n // 2:07d}", KINDS[n % 2])


def queries(total: int) -> dict[str, _Query]:
    user = namespace(total // 2)[:2]
    return {
        "limit=10": lambda s: s.alist_namespaces(limit=10),
        f"prefix={user}": lambda s: s.alist_namespaces(prefix=user),
        "max_depth=1": lambda s: s.alist_namespaces(max_depth=1),
        "max_depth=2, limit=10": lambda s: s.alist_namespaces(max_depth=2, limit=10),
        "suffix=('prefs',), limit=10": lambda s: s.alist_namespaces(suffix=("prefs",), limit=10),
        "suffix=('none',) (visits all)": lambda s: s.alist_namespaces(suffix=("none",)),
        "offset=N/2, limit=10 (deep page)": lambda s: s.alist_namespaces(
            offset=total // 2, limit=10
        ),
        "limit=N (everything)": lambda s: s.alist_namespaces(limit=total),
    }


async def build_sqlite(path: Path, total: int) -> None:
    if path.exists():  # noqa: ASYNC240 - once, before anything is measured
        return
    async with SqliteStore.open(path) as store:
        await store.aput(("seed",), "k", {"v": 0})
        await store.adelete(("seed",), "k")
    raw = sqlite3.connect(path)
    rows = (
        (n + 1, ".".join(namespace(n)), "k", '{"v":1}', 1, 1) for n in range(total)
    )
    raw.executemany(
        "INSERT INTO items (id, namespace, key, value, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )
    raw.commit()
    raw.close()


def build_memory(total: int) -> InMemoryStore:
    store = InMemoryStore()
    chunk = 20_000
    for start in range(0, total, chunk):
        ops = [PutOp(namespace(n), "k", {"v": 1}) for n in range(start, min(total, start + chunk))]
        store.batch(ops)
    return store


async def measure(store: BaseStore, query: _Query, repeats: int) -> tuple[float, float, int]:
    """Median seconds, longest heartbeat gap in seconds, and how many namespaces came back."""
    times: list[float] = []
    worst = 0.0
    found = 0
    for _ in range(repeats):
        done = asyncio.Event()
        gap = 0.0

        async def heartbeat(done: asyncio.Event = done) -> None:
            nonlocal gap
            last = time.perf_counter()
            while not done.is_set():
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                gap = max(gap, now - last)
                last = now

        beat = asyncio.create_task(heartbeat())
        await asyncio.sleep(0.01)  # let the heartbeat start
        start = time.perf_counter()
        found = len(await query(store))
        times.append(time.perf_counter() - start)
        done.set()
        await beat
        worst = max(worst, gap)
    return statistics.median(times), worst, found


async def run(args: argparse.Namespace) -> None:
    total: int = args.namespaces
    stores: dict[str, Any] = {}
    if "sqlite" in args.stores:
        path = Path(args.dir) / f"list-namespaces-{total}.db"
        started = time.perf_counter()
        await build_sqlite(path, total)
        print(f"sqlite file ready in {time.perf_counter() - started:.1f} s: {path}")
        stores["sqlite"] = path
    if "memory" in args.stores:
        started = time.perf_counter()
        stores["memory"] = build_memory(total)
        print(f"memory store built in {time.perf_counter() - started:.1f} s")
    print("| store | query | N | median ms | longest stall ms | results |")
    print("|---|---|---|---|---|---|")
    for name, target in stores.items():
        if name == "sqlite":
            async with SqliteStore.open(target) as store:
                await report(name, store, total, args.repeats, args.only)
        else:
            await report(name, target, total, args.repeats, args.only)
            target.close()


async def report(name: str, store: BaseStore, total: int, repeats: int, only: str) -> None:
    for label, query in queries(total).items():
        if only not in label:
            continue
        seconds, stall, found = await measure(store, query, repeats)
        print(
            f"| {name} | {label} | {total:,} | {seconds * 1e3:,.2f} | {stall * 1e3:,.1f} "
            f"| {found:,} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespaces", type=int, default=1_000_000)
    parser.add_argument("--stores", default="sqlite,memory")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default="/tmp")
    parser.add_argument("--only", default="", help="run only the queries whose label has this")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()

"""Writes and gets: memlane's SqliteStore against raw sqlite3 and LangGraph's AsyncSqliteStore.

One process, one run, the same work for every system: ~200-byte values across 100
namespaces, written by 1, 100 and 1,000 concurrent writers, without and with an index
(384 dims, a trivial embed function so that embedding cost is not what is measured).
Then gets with 100 concurrent readers, and the time to reopen a 100k-item, 384-dim store.

    .venv/bin/python benchmarks/writes.py            # full run (a few minutes)
    .venv/bin/python benchmarks/writes.py --quick    # a smaller run

Every figure is printed next to its reference with the ratio; ``--json`` writes them out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from memlane import SqliteStore

DIMS = 384
NAMESPACES = 100

Put = Callable[[tuple[str, ...], str, dict[str, Any]], Awaitable[None]]
Get = Callable[[tuple[str, ...], str], Awaitable[Any]]
Work = list[tuple[tuple[str, ...], str, dict[str, Any]]]


def make_work(count: int, seed: int = 7) -> Work:
    """``count`` puts of ~200-byte JSON values spread over 100 namespaces."""
    rng = random.Random(seed)
    words = [
        "memory", "user", "prefers", "short", "direct", "answers", "likes", "jazz", "lives",
        "in", "paris",
    ]
    work: Work = []
    for n in range(count):
        text = " ".join(rng.choice(words) for _ in range(12))
        value = {"text": text, "n": n, "tags": ["bench", f"t{n % 5}"], "pad": "x" * 60}
        work.append((("bench", f"ns{n % NAMESPACES}"), f"key-{n}", value))
    return work


def trivial_embed(texts: Sequence[str]) -> np.ndarray:
    """Unit vectors that cost nothing to compute: embedding speed is not measured here."""
    vectors = np.zeros((len(texts), DIMS), dtype=np.float32)
    vectors[:, 0] = 1.0
    return vectors


INDEX = {"dims": DIMS, "embed": trivial_embed, "fields": ["text"]}


async def drive_puts(put: Put, work: Work, writers: int) -> tuple[float, list[float]]:
    """Run ``work`` through ``writers`` concurrent tasks; return seconds and per-put latencies."""
    cursor = iter(work)
    latencies: list[float] = []

    async def writer() -> None:
        for namespace, key, value in cursor:
            started = time.perf_counter()
            await put(namespace, key, value)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    return time.perf_counter() - started, latencies


async def drive_gets(get: Get, keys: list[tuple[tuple[str, ...], str]], readers: int) -> float:
    cursor = iter(keys)

    async def reader() -> None:
        for namespace, key in cursor:
            if await get(namespace, key) is None:
                raise AssertionError(f"missing {namespace}/{key}")

    started = time.perf_counter()
    await asyncio.gather(*(reader() for _ in range(readers)))
    return time.perf_counter() - started


# ---- the systems -------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def memlane_store(path: Path, indexed: bool) -> AsyncIterator[tuple[Put, Get]]:
    async with SqliteStore.open(path, index=INDEX if indexed else None) as store:
        yield store.aput, store.aget


@contextlib.asynccontextmanager
async def langgraph_store(path: Path, indexed: bool) -> AsyncIterator[tuple[Put, Get]]:
    from langgraph.store.sqlite.aio import AsyncSqliteStore

    index = {"dims": DIMS, "embed": lambda texts: trivial_embed(texts).tolist(),
             "fields": ["text"]} if indexed else None
    async with AsyncSqliteStore.from_conn_string(str(path), index=index) as store:  # type: ignore[arg-type]
        await store.conn.execute("PRAGMA journal_mode = WAL")  # the tuned set-up
        await store.conn.execute("PRAGMA synchronous = NORMAL")
        await store.setup()
        yield store.aput, store.aget


def raw_ceiling(path: Path, work: Work) -> float:
    """Rows per second for plain ``executemany`` of the same rows in one transaction."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(
        "CREATE TABLE items (namespace TEXT, key TEXT, value TEXT, created_at INTEGER,"
        " updated_at INTEGER, PRIMARY KEY (namespace, key))"
    )
    now = time.time_ns() // 1000
    rows = [(".".join(ns), key, orjson.dumps(value).decode(), now, now) for ns, key, value in work]
    started = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?)", rows)
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return len(rows) / elapsed


# ---- scenarios ---------------------------------------------------------------------------

SYSTEMS = {"memlane": memlane_store, "langgraph": langgraph_store}


async def measure_writes(
    folder: Path, system: str, work: Work, writers: int, indexed: bool
) -> dict[str, Any]:
    path = folder / f"{system}-{writers}-{int(indexed)}.db"
    try:
        async with SYSTEMS[system](path, indexed) as (put, _):
            await drive_puts(put, work[:200], min(writers, 50))  # warm-up, other keys
            elapsed, latencies = await drive_puts(put, work[200:], writers)
    except Exception as exc:
        return {"skipped": f"{type(exc).__name__}: {exc}"[:160]}
    count = len(work) - 200
    latencies.sort()
    return {
        "puts_per_s": count / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
    }


async def measure_gets(folder: Path, system: str, work: Work, readers: int) -> dict[str, Any]:
    path = folder / f"{system}-gets.db"
    keys = [(namespace, key) for namespace, key, _ in work]
    random.Random(3).shuffle(keys)
    try:
        async with SYSTEMS[system](path, False) as (put, get):
            await drive_puts(put, work, 200)
            await drive_gets(get, keys[:500], readers)  # warm-up
            elapsed = await drive_gets(get, keys, readers)
    except Exception as exc:
        return {"skipped": f"{type(exc).__name__}: {exc}"[:160]}
    return {"gets_per_s": len(keys) / elapsed}


async def measure_reopen(folder: Path, items: int) -> dict[str, Any]:
    """Build an ``items``-item store with 384-dim vectors, then time a reopen."""
    path = folder / "reopen.db"
    rng = np.random.default_rng(5)

    def random_embed(texts: Sequence[str]) -> np.ndarray:
        vectors = rng.standard_normal((len(texts), DIMS)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    index = {"dims": DIMS, "embed": random_embed, "fields": ["text"]}
    work = make_work(items)
    async with SqliteStore.open(path, index=index) as store:
        await drive_puts(store.aput, work, 1_000)
    started = time.perf_counter()
    async with SqliteStore.open(path, index=index) as store:
        opened = time.perf_counter() - started
        hits = await store.asearch(("bench",), query="jazz", limit=10)
        assert len(hits) == 10
    return {"items": items, "reopen_s": opened, "file_mb": path.stat().st_size / 2**20}


def ratio(
    ours: dict[str, Any], theirs: dict[str, Any], field: str, lower_is_better: bool = False
) -> str:
    if field not in ours or field not in theirs:
        return "n/a"
    value = theirs[field] / ours[field] if lower_is_better else ours[field] / theirs[field]
    return f"{value:.1f}x"


def fmt(result: dict[str, Any], field: str, unit: str) -> str:
    if "skipped" in result:
        return "skipped"
    return f"{result[field]:,.0f} {unit}" if field.endswith("_s") else f"{result[field]:.3f} {unit}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer puts, smaller reopen")
    parser.add_argument("--puts", type=int, default=None, help="puts per scenario")
    parser.add_argument("--reopen-items", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()
    count = args.puts or (4_000 if args.quick else 20_000)
    reopen_items = args.reopen_items or (10_000 if args.quick else 100_000)
    work = make_work(count + 200)
    results: dict[str, Any] = {
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "puts": count,
    }
    with tempfile.TemporaryDirectory(prefix="memlane-bench-") as tmp:
        folder = Path(tmp)
        results["raw_puts_per_s"] = raw_ceiling(folder / "raw.db", work[200:])
        print(f"raw sqlite3 executemany, one transaction: {results['raw_puts_per_s']:,.0f} rows/s")
        print()
        print(f"{'scenario':<34}{'memlane':>16}{'LangGraph':>16}{'ratio':>9}{'vs raw':>9}")
        for indexed in (False, True):
            for writers in (1, 100, 1_000):
                ours = await measure_writes(folder, "memlane", work, writers, indexed)
                theirs = await measure_writes(folder, "langgraph", work, writers, indexed)
                name = f"puts, {writers} writers{', index' if indexed else ''}"
                results[name] = {"memlane": ours, "langgraph": theirs}
                raw = (f"{ours['puts_per_s'] / results['raw_puts_per_s']:.2f}x"
                       if "puts_per_s" in ours else "")
                print(f"{name:<34}{fmt(ours, 'puts_per_s', '/s'):>16}"
                      f"{fmt(theirs, 'puts_per_s', '/s'):>16}"
                      f"{ratio(ours, theirs, 'puts_per_s'):>9}{raw:>9}")
                if writers == 1:
                    print(f"{'  aput p50 latency':<34}{fmt(ours, 'p50_ms', 'ms'):>16}"
                          f"{fmt(theirs, 'p50_ms', 'ms'):>16}"
                          f"{ratio(ours, theirs, 'p50_ms', lower_is_better=True):>9}")
                for label, result in (("memlane", ours), ("LangGraph", theirs)):
                    if "skipped" in result:
                        print(f"  ({label} skipped: {result['skipped']})")
        ours = await measure_gets(folder, "memlane", work, 100)
        theirs = await measure_gets(folder, "langgraph", work, 100)
        results["gets, 100 readers"] = {"memlane": ours, "langgraph": theirs}
        print(f"{'gets, 100 readers':<34}{fmt(ours, 'gets_per_s', '/s'):>16}"
              f"{fmt(theirs, 'gets_per_s', '/s'):>16}{ratio(ours, theirs, 'gets_per_s'):>9}")
        reopen = await measure_reopen(folder, reopen_items)
        results["reopen"] = reopen
        print(f"reopen of a {reopen['items']:,}-item, {DIMS}-dim store: {reopen['reopen_s']:.2f} s"
              f" ({reopen['file_mb']:.0f} MiB file)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())

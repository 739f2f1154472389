"""Writes and gets: memlane's SqliteStore against raw sqlite3 and LangGraph's AsyncSqliteStore.

One process, one run, the same work for every system: ~200-byte values in users'
namespaces, written by 1, 100 and 1,000 concurrent writers into fresh stores, without and
with an index (384 dims, a lookup "embedding" so that embedding cost is not measured).
Then gets with 100 concurrent readers, and the time to reopen a 100k-item, 384-dim store.

    .venv/bin/python benchmarks/writes.py            # full run (a few minutes)
    .venv/bin/python benchmarks/writes.py --quick    # a smaller run

A thin wrapper: the workloads, adapters and ceilings live in ``memlane.bench`` (which
``memlane bench`` runs with repeats, more systems and sizes). ``--json`` writes the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

from memlane.bench.scenarios.ceilings import RawSqlite
from memlane.bench.scenarios.gets import get_trial, sample_keys
from memlane.bench.scenarios.writes import drive_puts
from memlane.bench.systems import SYSTEMS, StoreHandle, describe_failure, unavailable
from memlane.bench.workloads import Dataset

DIMS = 384
WARMUP = 200


async def measure_writes(folder: Path, system: str, data: Dataset, writers: int,
                         indexed: bool) -> dict[str, Any]:
    """puts/s and aput latencies for ``data``'s items written into a fresh store."""
    reason = unavailable(system)
    if reason:
        return {"skipped": reason}
    handle = StoreHandle(SYSTEMS[system], folder / f"{system}-{writers}-{int(indexed)}.db",
                         data.index_config() if indexed else None)
    items = data.items()
    try:
        await handle.open()
        try:
            await drive_puts(handle.store.aput, items[:WARMUP], min(writers, 50))  # warm-up
            elapsed, latencies = await drive_puts(handle.store.aput, items[WARMUP:], writers)
        finally:
            await handle.close()
    except Exception as exc:
        return {"skipped": describe_failure(exc)}
    latencies.sort()
    return {
        "puts_per_s": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
    }


async def measure_gets(folder: Path, system: str, data: Dataset, readers: int
                       ) -> dict[str, Any]:
    reason = unavailable(system)
    if reason:
        return {"skipped": reason}
    handle = StoreHandle(SYSTEMS[system], folder / f"{system}-gets.db", None)
    keys = sample_keys(data.size, data.users, data.size)
    try:
        await handle.open()
        try:
            await handle.fill(data.items())
            await get_trial(handle.store.aget, keys[:500], readers)()  # warm-up
            gets_per_s = await get_trial(handle.store.aget, keys, readers)()
        finally:
            await handle.close()
    except Exception as exc:
        return {"skipped": describe_failure(exc)}
    return {"gets_per_s": gets_per_s}


async def measure_reopen(folder: Path, items: int) -> dict[str, Any]:
    """Build an ``items``-item memlane store with 384-dim vectors, then time a reopen."""
    data = Dataset(items, DIMS, extra_rows=0)
    path = folder / "reopen.db"
    handle = StoreHandle(SYSTEMS["memlane-sqlite"], path, data.index_config())
    await handle.open()
    for chunk in data.chunks():
        await handle.fill(chunk)
    seconds = await handle.reopen((("users", "u0", "memories"), "m0"))
    hits = await handle.store.asearch(("users",), query=data.query_text(0), limit=10)
    assert len(hits) == 10
    await handle.close()
    return {"items": items, "reopen_s": seconds, "file_mb": path.stat().st_size / 2**20}


def ratio(ours: dict[str, Any], theirs: dict[str, Any], field: str,
          lower_is_better: bool = False) -> str:
    if field not in ours or field not in theirs:
        return "n/a"
    value = theirs[field] / ours[field] if lower_is_better else ours[field] / theirs[field]
    return f"{value:.1f}x"


def fmt(result: dict[str, Any], field: str, unit: str) -> str:
    if "skipped" in result:
        return "skipped"
    return f"{result[field]:,.0f} {unit}" if field.endswith("_s") else f"{result[field]:.3f} {unit}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer puts, smaller reopen")
    parser.add_argument("--puts", type=int, default=None, help="puts per scenario")
    parser.add_argument("--reopen-items", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()
    count = args.puts or (4_000 if args.quick else 20_000)
    reopen_items = args.reopen_items or (10_000 if args.quick else 100_000)
    data = Dataset(count + WARMUP, DIMS, extra_rows=0)
    results: dict[str, Any] = {"python": platform.python_version(),
                               "sqlite": sqlite3.sqlite_version, "puts": count}
    systems = ("memlane-sqlite", "langgraph-sqlite")
    with tempfile.TemporaryDirectory(prefix="memlane-bench-") as tmp:
        folder = Path(tmp)
        for indexed in (False, True):  # the ceiling of each: rows alone, rows with vectors
            raw = RawSqlite(folder / f"raw-{indexed}.db", data, prefill=False)
            results[f"raw_puts_per_s{'_indexed' if indexed else ''}"] = count / raw.insert(
                data.items()[WARMUP:], indexed=indexed)
            raw.close()
        print(f"raw sqlite3 executemany, one transaction: {results['raw_puts_per_s']:,.0f} rows/s"
              f" ({results['raw_puts_per_s_indexed']:,.0f} with their vectors)")
        print()
        print(f"{'scenario':<34}{'memlane':>16}{'LangGraph':>16}{'ratio':>9}{'vs raw':>9}")
        for indexed in (False, True):
            for writers in (1, 100, 1_000):
                ours, theirs = [await measure_writes(folder, s, data, writers, indexed)
                                for s in systems]
                name = f"puts, {writers} writers{', index' if indexed else ''}"
                results[name] = {"memlane": ours, "langgraph": theirs}
                ceiling = results[f"raw_puts_per_s{'_indexed' if indexed else ''}"]
                raw_ratio = f"{ours['puts_per_s'] / ceiling:.2f}x" if "puts_per_s" in ours else ""
                print(f"{name:<34}{fmt(ours, 'puts_per_s', '/s'):>16}"
                      f"{fmt(theirs, 'puts_per_s', '/s'):>16}"
                      f"{ratio(ours, theirs, 'puts_per_s'):>9}{raw_ratio:>9}")
                if writers == 1:
                    print(f"{'  aput p50 latency':<34}{fmt(ours, 'p50_ms', 'ms'):>16}"
                          f"{fmt(theirs, 'p50_ms', 'ms'):>16}"
                          f"{ratio(ours, theirs, 'p50_ms', lower_is_better=True):>9}")
                for label, result in (("memlane", ours), ("LangGraph", theirs)):
                    if "skipped" in result:
                        print(f"  ({label} skipped: {result['skipped']})")
        ours, theirs = [await measure_gets(folder, s, data, 100) for s in systems]
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

"""PostgresStore against LangGraph's AsyncPostgresStore on the same local PostgreSQL, side by
side in one run: puts/s at 1, 100 and 1,000 writers (without and with a 384-dim index),
gets/s with 100 readers, and search p50 for one user's namespace and the whole store.

    .venv/bin/python benchmarks/postgres.py            # ~3 min
    .venv/bin/python benchmarks/postgres.py --quick    # ~40 s

Both stores embed with the same ``HashingEmbeddings(dims=384)`` (so the stores, not a model,
are measured); LangGraph's index is its default (HNSW through pgvector). Each store gets a
schema/database of its own on one server (``LocalPostgres``, fsync off), rows alternate
between the stores, and the CPU model is printed beside the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from memlane import HashingEmbeddings, PostgresStore
from memlane.store.postgres.local_server import LocalPostgres

DIMS = 384
USERS = 100
EMBED = HashingEmbeddings(dims=DIMS)


def cpu_model() -> str:
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def value(n: int) -> dict[str, Any]:
    """~70 bytes; ``tag`` picks 1% of the items (the selective filter)."""
    return {"text": f"note {n} about topic {n % 37} and place {n % 11}", "n": n, "tag": n % 100}


async def filtered_pages(store: Any, rounds: int) -> list[list[str]]:
    """Top 10 among the 1% of items of one tag (about 100 at 10k items), by meaning."""
    pages = []
    for n in range(rounds):
        found = await store.asearch(
            ("users",), query=f"topic {n % 37}", filter={"tag": n % 100}, limit=10
        )
        pages.append([item.key for item in found])
    return pages


async def timed_puts(store: Any, writers: int, per_writer: int, start: int) -> float:
    """puts/s of ``writers`` tasks each doing ``per_writer`` sequential aput."""

    async def writer(w: int) -> None:
        for i in range(per_writer):
            n = start + w * per_writer + i
            await store.aput(("users", f"u{n % USERS}"), f"k{n}", value(n))

    began = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    return writers * per_writer / (time.perf_counter() - began)


async def timed_gets(store: Any, readers: int, per_reader: int, items: int) -> float:
    async def reader(r: int) -> None:
        for i in range(per_reader):
            n = (r * per_reader + i) * 7919 % items
            await store.aget(("users", f"u{n % USERS}"), f"k{n}")

    began = time.perf_counter()
    await asyncio.gather(*(reader(r) for r in range(readers)))
    return readers * per_reader / (time.perf_counter() - began)


async def p50_ms(call: Callable[[int], Awaitable[Any]], rounds: int) -> float:
    times = []
    for n in range(rounds):
        began = time.perf_counter()
        await call(n)
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


async def fill(store: Any, items: int) -> None:
    for start in range(0, items, 500):
        await asyncio.gather(*(
            store.aput(("users", f"u{n % USERS}"), f"k{n}", value(n))
            for n in range(start, min(items, start + 500))
        ))


async def measure(
    store: Any, items: int, quick: bool, indexed: bool
) -> tuple[dict[str, float], list[list[str]]]:
    """The rows for one store: it starts empty; ``items`` are written before the reads."""
    rows: dict[str, float] = {}
    pages: list[list[str]] = []
    scale = 0.2 if quick else 1.0
    rows["puts/s, 1 writer"] = await timed_puts(store, 1, int(200 * scale), 10_000_000)
    rows["puts/s, 100 writers"] = await timed_puts(store, 100, int(20 * scale), 20_000_000)
    rows["puts/s, 1,000 writers"] = await timed_puts(store, 1000, int(5 * scale), 30_000_000)
    await fill(store, items)
    rows["gets/s, 100 readers"] = await timed_gets(store, 100, int(50 * scale), items)
    if indexed:
        rounds = int(100 * scale)
        rows["search p50 ms, one user's namespace"] = await p50_ms(
            lambda n: store.asearch(("users", f"u{n % USERS}"), query=f"topic {n % 37}",
                                    limit=10), rounds)
        rows["search p50 ms, whole store"] = await p50_ms(
            lambda n: store.asearch((), query=f"topic {n % 37}", limit=10), rounds)
        rows["search p50 ms, a prefix over every item"] = await p50_ms(
            lambda n: store.asearch(("users",), query=f"topic {n % 37}", limit=10), rounds)
        replica = getattr(store, "_replica", None)  # memlane's: the exact ceiling beside it
        if replica is not None:
            queries = [EMBED([f"topic {n % 37}"])[0] for n in range(rounds)]

            async def flat(n: int) -> Any:
                return replica.index.search(queries[n], 10)  # no embedding, no SQL

            rows["FAISS flat on the replica p50 ms"] = await p50_ms(flat, rounds)
        pages = await filtered_pages(store, rounds)
        rows["under-filled pages (1% filter), of 100"] = 100 * sum(
            len(page) < 10 for page in pages
        ) / len(pages)
    rows["filter p50 ms, one user's namespace"] = await p50_ms(
        lambda n: store.asearch(("users", f"u{n % USERS}"), filter={"n": n % items},
                                limit=10), int(100 * scale))
    return rows, pages


async def run(quick: bool) -> None:
    from langgraph.store.postgres import AsyncPostgresStore

    items = 2_000 if quick else 10_000
    embed = EMBED

    def embed_texts(texts: list[str]) -> list[list[float]]:
        return [list(map(float, row)) for row in embed(texts)]

    server = LocalPostgres(durable=False).start()
    try:
        async with await psycopg.AsyncConnection.connect(server.dsn, autocommit=True) as conn:
            for name in ("lg_plain", "lg_indexed"):
                await conn.execute(f"CREATE DATABASE {name}")
        base = server.dsn.rsplit("/", 1)[0]
        results: dict[str, dict[str, dict[str, float]]] = {}
        for indexed in (False, True):
            label = "with a 384-dim index" if indexed else "no index"
            index = {"dims": DIMS, "embed": embed, "fields": ["text"]} if indexed else None
            async with PostgresStore.open(
                server.dsn, schema="bench_indexed" if indexed else "bench_plain", index=index
            ) as ours:
                mine, our_pages = await measure(ours, items, quick, indexed)
            lg_index = {"dims": DIMS, "embed": embed_texts, "fields": ["text"]} if indexed else None
            database = "lg_indexed" if indexed else "lg_plain"
            async with AsyncPostgresStore.from_conn_string(
                f"{base}/{database}", index=lg_index  # type: ignore[arg-type]
            ) as theirs:
                await theirs.setup()
                reference, their_pages = await measure(theirs, items, quick, indexed)
            if indexed:  # memlane's answers are exact: LangGraph's recall against them
                hits = [
                    len(set(exact) & set(approx)) / max(1, len(exact))
                    for exact, approx in zip(our_pages, their_pages, strict=True)
                ]
                mine["recall@10 (1% filter)"] = 1.0
                reference["recall@10 (1% filter)"] = statistics.mean(hits)
            results[label] = {"memlane": mine, "langgraph": reference}
        async with await psycopg.AsyncConnection.connect(server.dsn) as conn:
            version = (await (await conn.execute("SHOW server_version")).fetchone() or ["?"])[0]
        print(f"CPU: {cpu_model()}; Python {platform.python_version()}; PostgreSQL {version}; "
              f"psycopg {psycopg.__version__}; {items:,} items, {USERS} users")
        for label, pair in results.items():
            print(f"\n{label}")
            print(f"{'measure':<40} {'memlane':>12} {'LangGraph':>12} {'ratio':>8}")
            for row, mine_value in pair["memlane"].items():
                theirs_value = pair["langgraph"].get(row)
                if theirs_value is None:  # memlane's own ceiling row
                    print(f"{row:<40} {mine_value:>12,.2f}")
                    continue
                if "under-filled" in row or "recall" in row:
                    print(f"{row:<40} {mine_value:>12,.2f} {theirs_value:>12,.2f}")
                    continue
                lower_better = "ms" in row
                ratio = theirs_value / mine_value if lower_better else mine_value / theirs_value
                print(f"{row:<40} {mine_value:>12,.2f} {theirs_value:>12,.2f} {ratio:>7.1f}x")
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    asyncio.run(run(parser.parse_args().quick))


if __name__ == "__main__":
    main()

"""Vector search: memlane's stores against raw FAISS, numpy and LangGraph's stores.

One process, one run, the same data for every system: N items of 384 dims (random unit
vectors behind a trivial lookup embed function, so embedding cost is not measured), query
limit 10. Scenarios:

* lone query p50 at 10k and 100k items;
* 64 concurrent searchers at 100k, against the batched brute-force ceilings;
* one user's 100-item namespace among 100k and 1M items;
* search p99 while 1,000 writers write, against p99 when idle;
* the approximate (HNSW) index on real text: docstrings and source lines of Python's
  standard library embedded with ``HashingEmbeddings``, recall@10 against exact search;
* peak RSS of the vector index at 100k and 1M vectors, next to the raw size.

    .venv/bin/python benchmarks/search.py            # full run (~15 minutes)
    .venv/bin/python benchmarks/search.py --quick    # a smaller run (~2 minutes)

Every figure is printed next to its references with the ratio; ``--json`` writes them out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from memlane import InMemoryStore, SqliteStore
from memlane.store.base import BaseStore
from memlane.store.types import PutOp
from memlane.vectors import HashingEmbeddings, VectorIndex
from memlane.vectors.ann import AnnConfig

DIMS = 384
LIMIT = 10
NAMESPACE_ITEMS = 100

Search = Callable[[tuple[str, ...], str], Awaitable[Any]]


class Data:
    """N random unit vectors and 1,000 query vectors; texts name their vector."""

    def __init__(self, n: int, seed: int = 3) -> None:
        rng = np.random.default_rng(seed)
        self.n = n
        self.vectors = _unit(rng.standard_normal((n, DIMS), dtype=np.float32))
        self.queries = _unit(rng.standard_normal((1000, DIMS), dtype=np.float32))
        self.users = max(1, n // NAMESPACE_ITEMS)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """The trivial embed function: ``v12`` is item 12's vector, ``q3`` query 3's."""
        out = np.empty((len(texts), DIMS), dtype=np.float32)
        for row, text in enumerate(texts):
            source = self.vectors if text[0] == "v" else self.queries
            out[row] = source[int(text[1:])]
        return out

    def embed_lists(self, texts: Sequence[str]) -> list[list[float]]:
        return self.embed(texts).tolist()  # type: ignore[no-any-return]

    def item(self, i: int) -> tuple[tuple[str, ...], str, dict[str, Any]]:
        return ("users", f"u{i % self.users}", "memories"), f"m{i}", {"text": f"v{i}", "n": i}


def _unit(m: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(m / np.linalg.norm(m, axis=1, keepdims=True), dtype=np.float32)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


# ---- the systems ------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def memlane_memory(data: Data, folder: Path) -> AsyncIterator[BaseStore]:
    store = InMemoryStore(index={"dims": DIMS, "embed": data.embed, "fields": ["text"]})
    for start in range(0, data.n, 10_000):
        ops = [PutOp(*data.item(i)) for i in range(start, min(data.n, start + 10_000))]
        await store.abatch(ops)
    try:
        yield store
    finally:
        store.close()


@contextlib.asynccontextmanager
async def memlane_sqlite(data: Data, folder: Path) -> AsyncIterator[BaseStore]:
    path = folder / f"memlane-{data.n}.db"
    index = {"dims": DIMS, "embed": data.embed, "fields": ["text"]}
    async with SqliteStore.open(path, index=index) as store:
        for start in range(0, data.n, 10_000):
            ops = [PutOp(*data.item(i)) for i in range(start, min(data.n, start + 10_000))]
            await store.abatch(ops)
        yield store


@contextlib.asynccontextmanager
async def langgraph_memory(data: Data, folder: Path) -> AsyncIterator[Any]:
    from langgraph.store.base import PutOp as LgPutOp
    from langgraph.store.memory import InMemoryStore as LgInMemoryStore

    index = {"dims": DIMS, "embed": data.embed_lists, "fields": ["text"]}
    store = LgInMemoryStore(index=index)  # type: ignore[arg-type]
    for start in range(0, data.n, 10_000):
        await store.abatch(
            [LgPutOp(*data.item(i)) for i in range(start, min(data.n, start + 10_000))]
        )
    yield store


@contextlib.asynccontextmanager
async def langgraph_sqlite(data: Data, folder: Path) -> AsyncIterator[Any]:
    from langgraph.store.base import PutOp as LgPutOp

    from memlane.bench import systems

    index = {"dims": DIMS, "embed": data.embed_lists, "fields": ["text"]}
    path = folder / f"langgraph-{data.n}.db"
    async with systems.langgraph_sqlite(path, index) as store:  # WAL, as memlane's
        for start in range(0, data.n, 10_000):
            await store.abatch(
                [LgPutOp(*data.item(i)) for i in range(start, min(data.n, start + 10_000))]
            )
        yield store


SYSTEMS: dict[str, Callable[[Data, Path], contextlib.AbstractAsyncContextManager[Any]]] = {
    "memlane InMemoryStore": memlane_memory,
    "memlane SqliteStore": memlane_sqlite,
    "LangGraph InMemoryStore": langgraph_memory,
    "LangGraph AsyncSqliteStore": langgraph_sqlite,
}


# ---- measurements -----------------------------------------------------------------------


async def lone_latencies(store: Any, prefix: Callable[[int], tuple[str, ...]], count: int,
                         budget_s: float) -> list[float]:
    """Sequential searches (one at a time); stops early once ``budget_s`` is spent."""
    times: list[float] = []
    started = time.perf_counter()
    for j in range(count):
        t0 = time.perf_counter()
        results = await store.asearch(prefix(j), query=f"q{j % 1000}", limit=LIMIT)
        times.append(time.perf_counter() - t0)
        assert len(results) == LIMIT, f"a page of {len(results)} results, not {LIMIT}"
        if time.perf_counter() - started > budget_s and len(times) >= 3:
            break
    return times


async def concurrent_qps(store: Any, searchers: int, per_searcher: int) -> float:
    async def searcher(s: int) -> None:
        for j in range(per_searcher):
            await store.asearch((), query=f"q{(s * per_searcher + j) % 1000}", limit=LIMIT)

    t0 = time.perf_counter()
    await asyncio.gather(*(searcher(s) for s in range(searchers)))
    return searchers * per_searcher / (time.perf_counter() - t0)


async def p99_while_writing(
    store: Any, data: Data, writers: int, searches: int
) -> dict[str, float]:
    """Search p99 idle, then while ``writers`` tasks overwrite items without pause."""
    idle = await lone_latencies(store, lambda j: (), searches, 60)
    stop = asyncio.Event()
    written = 0

    async def writer(w: int) -> None:
        nonlocal written
        rng = np.random.default_rng(w)
        while not stop.is_set():
            i = int(rng.integers(data.n))
            namespace, key, value = data.item(i)
            await store.aput(namespace, key, {**value, "n": -i})
            written += 1

    tasks = [asyncio.ensure_future(writer(w)) for w in range(writers)]
    await asyncio.sleep(0.2)  # let the writers reach full speed before measuring
    t0 = time.perf_counter()
    busy = await lone_latencies(store, lambda j: (), searches, 60)
    elapsed = time.perf_counter() - t0
    stop.set()
    await asyncio.gather(*tasks)
    return {
        "idle_p50_ms": pct(idle, 50) * 1e3,
        "idle_p99_ms": pct(idle, 99) * 1e3,
        "writing_p50_ms": pct(busy, 50) * 1e3,
        "writing_p99_ms": pct(busy, 99) * 1e3,
        "writes_per_s": written / elapsed,
    }


def raw_references(data: Data, lone: int) -> dict[str, float]:
    """The ceilings on the same vectors: FAISS IndexFlatIP and numpy brute force."""
    flat = faiss.IndexFlatIP(DIMS)
    flat.add(data.vectors)
    faiss.omp_set_num_threads(1)
    times = []
    for j in range(lone):
        t0 = time.perf_counter()
        flat.search(data.queries[j : j + 1], LIMIT)
        times.append(time.perf_counter() - t0)
    out = {"faiss_lone_p50_ms": pct(times, 50) * 1e3}
    times = []
    for j in range(min(lone, 50)):
        t0 = time.perf_counter()
        scores = data.vectors @ data.queries[j]
        top = np.argpartition(-scores, LIMIT)[:LIMIT]
        top[np.argsort(-scores[top])]
        times.append(time.perf_counter() - t0)
    out["numpy_lone_p50_ms"] = pct(times, 50) * 1e3
    for name, run in (
        ("faiss_batch64_qps", lambda q: flat.search(q, LIMIT)),
        ("numpy_batch64_qps", lambda q: np.argpartition(-(q @ data.vectors.T), LIMIT, axis=1)),
    ):
        best = 0.0
        for threads in (1, os.cpu_count() or 1):  # the best of 1 and all OpenMP threads
            faiss.omp_set_num_threads(threads)
            for rep in range(3):
                q = data.queries[64 * rep : 64 * rep + 64]
                t0 = time.perf_counter()
                run(q)
                best = max(best, 64 / (time.perf_counter() - t0))
        out[name] = best
    faiss.omp_set_num_threads(1)
    return out


async def measure_size(data: Data, folder: Path, quick: bool, full_scenarios: bool,
                       lg_budget_s: float) -> dict[str, Any]:
    results: dict[str, Any] = {"references": raw_references(data, 100 if quick else 200)}
    for name, opener in SYSTEMS.items():
        langgraph = name.startswith("LangGraph")
        entry: dict[str, Any] = {}
        try:
            t0 = time.perf_counter()
            async with opener(data, folder) as store:
                entry["fill_s"] = time.perf_counter() - t0
                count = 20 if langgraph else (100 if quick else 300)
                lone = await lone_latencies(store, lambda j: (), count, lg_budget_s)
                entry["lone_p50_ms"] = pct(lone, 50) * 1e3
                user = data.users // 2
                ns = await lone_latencies(
                    store, lambda j, u=user: ("users", f"u{(u + j) % data.users}"),
                    20 if langgraph else 300, lg_budget_s,
                )
                entry["namespace_p50_ms"] = pct(ns, 50) * 1e3
                if full_scenarios:
                    per = 1 if langgraph else (4 if quick else 8)
                    if not langgraph or lg_budget_s > 5:
                        entry["concurrent64_qps"] = await concurrent_qps(store, 64, per)
                    if not langgraph:
                        entry["writing"] = await p99_while_writing(
                            store, data, 1000, 200 if quick else 400
                        )
        except Exception as exc:  # a reference that cannot run is reported, not fatal
            entry = {"skipped": f"{type(exc).__name__}: {exc}"[:200]}
        results[name] = entry
        print(f"    {name}: {_short(entry)}", flush=True)
    return results


async def measure_namespace_only(data: Data, folder: Path) -> dict[str, Any]:
    """At 1M: only memlane's stores, only the one-namespace query (filling dominates)."""
    results: dict[str, Any] = {}
    for name in ("memlane InMemoryStore", "memlane SqliteStore"):
        t0 = time.perf_counter()
        async with SYSTEMS[name](data, folder) as store:
            fill = time.perf_counter() - t0
            user = data.users // 2
            ns = await lone_latencies(
                store, lambda j, u=user: ("users", f"u{(u + j) % data.users}"), 300, 60
            )
            lone = await lone_latencies(store, lambda j: (), 30, 60)
            results[name] = {
                "fill_s": fill,
                "namespace_p50_ms": pct(ns, 50) * 1e3,
                "lone_p50_ms": pct(lone, 50) * 1e3,
            }
        print(f"    {name}: {_short(results[name])}", flush=True)
    return results


def _short(entry: dict[str, Any]) -> str:
    if "skipped" in entry:
        return f"skipped ({entry['skipped']})"
    return ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={_short(v)}" if isinstance(v, dict)
        else f"{k}={v}"
        for k, v in entry.items()
    )


def index_beside_writes(n: int, searches: int, rate: float) -> dict[str, float]:
    """The index alone: lone-search latency idle, then while another thread applies writer
    batches (256 overwrites each, as the SqliteStore writer does) at ``rate`` vectors/s
    (0: as fast as it can)."""
    import threading

    data = Data(n)
    index = VectorIndex(DIMS)
    index.load(np.arange(n), np.ones(n, dtype=np.int64), data.vectors)

    def lone() -> list[float]:
        times = []
        for j in range(searches):
            t0 = time.perf_counter()
            index.search(data.queries[j % 1000], LIMIT)
            times.append(time.perf_counter() - t0)
        return times

    idle = lone()
    stop = threading.Event()
    batches = 0

    def writer() -> None:
        nonlocal batches
        rng = np.random.default_rng(1)
        started = time.perf_counter()
        while not stop.is_set():
            ids = rng.choice(n, 256, replace=False)
            index.upsert(list(zip(ids.tolist(), data.vectors[ids, None], strict=True)))
            batches += 1
            if rate:  # pace the load generator (not a synchronisation)
                stop.wait(max(0.0, started + batches * 256 / rate - time.perf_counter()))

    thread = threading.Thread(target=writer)
    thread.start()
    t0 = time.perf_counter()
    busy = lone()
    elapsed = time.perf_counter() - t0
    stop.set()
    thread.join()
    return {
        "idle_p50_ms": pct(idle, 50) * 1e3,
        "idle_p99_ms": pct(idle, 99) * 1e3,
        "writing_p50_ms": pct(busy, 50) * 1e3,
        "writing_p99_ms": pct(busy, 99) * 1e3,
        "writes_per_s": batches * 256 / elapsed,
        "compactions": float(index.compactions),
    }


# ---- the approximate index on real text -------------------------------------------------


def stdlib_corpus(limit: int) -> tuple[list[str], list[str]]:
    """Texts: unique windows of 1-6 consecutive source lines of Python's standard library
    (docstrings, comments, code); queries: its docstrings' first paragraphs."""
    import ast
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts)
    sources: list[list[str]] = []
    queries: list[str] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        sources.append([line.strip() for line in text.splitlines() if len(line.strip()) >= 8])
        if len(queries) < 2000 and "test" not in path.parts:
            with contextlib.suppress(SyntaxError, ValueError):
                for node in ast.walk(ast.parse(text)):
                    if isinstance(node, ast.FunctionDef | ast.ClassDef):
                        doc = ast.get_docstring(node)
                        if doc and len(doc) > 40:
                            queries.append(doc.split("\n\n")[0])
    seen: set[str] = set()
    texts: list[str] = []
    for width in (1, 2, 3, 4, 6, 8, 12):
        step = 1 if width <= 2 else width // 2
        for lines in sources:
            for i in range(0, len(lines) - width + 1, step):
                window = " ".join(lines[i : i + width])
                if len(window) >= 24 and window not in seen:
                    seen.add(window)
                    texts.append(window)
                    if len(texts) >= limit:
                        return texts, queries[:300]
    return texts, queries[:300]


def measure_ann(items: int, ann: dict[str, Any], queries: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    texts, query_texts = stdlib_corpus(items)
    embedder = HashingEmbeddings(DIMS)
    vectors = embedder.embed_array(texts)
    qv = embedder.embed_array(query_texts[:queries])
    prepare = time.perf_counter() - t0
    index = VectorIndex(DIMS, background=False, ann=ann)
    index.load(np.arange(len(texts)), np.ones(len(texts), dtype=np.int64), vectors)
    del vectors
    t0 = time.perf_counter()
    index.build_ann()
    build = time.perf_counter() - t0
    exact = [index.search(q, LIMIT, exact=True) for q in qv]
    approx_times, hits = [], 0
    for q, want in zip(qv, exact, strict=True):
        t0 = time.perf_counter()
        got = index.search(q, LIMIT)
        approx_times.append(time.perf_counter() - t0)
        hits += len({i for i, _ in got} & {i for i, _ in want})
    exact_times = []
    for q in qv[:50]:
        t0 = time.perf_counter()
        index.search(q, LIMIT, exact=True)
        exact_times.append(time.perf_counter() - t0)
    return {
        "items": len(texts),
        "corpus_and_embed_s": prepare,
        "build_s": build,
        "recall_at_10": hits / (LIMIT * len(qv)),
        "ann_p50_ms": pct(approx_times, 50) * 1e3,
        "exact_p50_ms": pct(exact_times, 50) * 1e3,
        "ann": dataclasses.asdict(AnnConfig.parse(ann)),  # with the defaults filled in
    }


# ---- memory -----------------------------------------------------------------------------


def rss_child(n: int) -> None:
    """Run in a fresh process: load n vectors into a VectorIndex, report peak RSS."""
    base = _hwm_kib()
    index = VectorIndex(DIMS)
    rng = np.random.default_rng(0)
    step = 100_000
    for start in range(0, n, step):  # as a reopen would: blocks of loaded rows
        m = min(step, n - start)
        block = _unit(rng.standard_normal((m, DIMS), dtype=np.float32))
        index.load(np.arange(start, start + m), np.ones(m, dtype=np.int64), block)
        del block
    index.search(np.ones(DIMS, dtype=np.float32) / np.sqrt(DIMS), LIMIT)
    peak = _hwm_kib()
    print(json.dumps({"baseline_mib": base / 1024, "peak_mib": peak / 1024,
                      "raw_mib": n * DIMS * 4 / 2**20}))


def _hwm_kib() -> int:
    """Peak RSS of this process (VmHWM; ru_maxrss would include the parent's before exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure_rss(n: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--rss-child", str(n)], capture_output=True, text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# ---- report -----------------------------------------------------------------------------


def ratio(ours: float, theirs: float, lower_is_better: bool = True) -> str:
    if not (ours and theirs) or np.isnan(ours) or np.isnan(theirs):
        return "n/a"
    return f"{(theirs / ours) if lower_is_better else (ours / theirs):.2f}x"


def report(results: dict[str, Any]) -> None:
    print("\n== lone query p50 (ms), limit 10 ==")
    for size, res in results["sizes"].items():
        refs = res["references"]
        print(f"  {size}: FAISS IndexFlatIP {refs['faiss_lone_p50_ms']:.3f}, "
              f"numpy {refs['numpy_lone_p50_ms']:.3f}")
        for name in SYSTEMS:
            e = res.get(name, {})
            if "skipped" in e or "lone_p50_ms" not in e:
                print(f"    {name:28s} skipped: {e.get('skipped', 'not run')}")
                continue
            print(f"    {name:28s} {e['lone_p50_ms']:9.3f}   "
                  f"FAISS/this {ratio(e['lone_p50_ms'], refs['faiss_lone_p50_ms'])}")
    print("\n== one user's 100-item namespace, p50 (ms) ==")
    for size, res in {**results["sizes"], **results.get("namespace_1m", {})}.items():
        for name in SYSTEMS:
            e = res.get(name, {}) if isinstance(res, dict) else {}
            if "namespace_p50_ms" in e:
                print(f"  {size:6s} {name:28s} {e['namespace_p50_ms']:8.3f}")
    big = results["sizes"].get("100k")
    if big:
        refs = big["references"]
        print("\n== 64 concurrent searchers at 100k (queries/s) ==")
        print(f"  ceilings: numpy batched {refs['numpy_batch64_qps']:.0f}, "
              f"FAISS batched {refs['faiss_batch64_qps']:.0f}")
        for name in SYSTEMS:
            e = big.get(name, {})
            if "concurrent64_qps" in e:
                qps = e["concurrent64_qps"]
                print(f"  {name:28s} {qps:8.1f}   "
                      f"vs numpy {ratio(qps, refs['numpy_batch64_qps'], False)}"
                      f"   vs FAISS {ratio(qps, refs['faiss_batch64_qps'], False)}")
        print("\n== search latency while 1,000 writers write, 100k ==")
        for name in SYSTEMS:
            w = big.get(name, {}).get("writing")
            if w:
                slower = w["writing_p99_ms"] / w["idle_p99_ms"]
                print(f"  {name:28s} idle p99 {w['idle_p99_ms']:.2f} ms, writing p99 "
                      f"{w['writing_p99_ms']:.2f} ms ({slower:.2f}x),"
                      f" {w['writes_per_s']:.0f} writes/s")
    for key, side in results.items():
        if not key.startswith("index_beside_writes"):
            continue
        print(f"  {'VectorIndex alone (threads)':28s} idle p99 {side['idle_p99_ms']:.2f} ms, "
              f"writing p99 {side['writing_p99_ms']:.2f} ms "
              f"({side['writing_p99_ms'] / side['idle_p99_ms']:.2f}x), "
              f"{side['writes_per_s']:.0f} vector writes/s")
    for label, a in results.get("ann", {}).items():
        print(f"\n== approximate index, {label} ({a['items']} stdlib texts, {a['ann']}) ==")
        print(f"  build {a['build_s']:.1f} s; recall@10 {a['recall_at_10']:.3f}; "
              f"p50 {a['ann_p50_ms']:.3f} ms vs exact {a['exact_p50_ms']:.3f} ms "
              f"({ratio(a['ann_p50_ms'], a['exact_p50_ms'])} faster)")
    if results.get("rss"):
        print("\n== peak RSS of the vector index (MiB) ==")
        for n, r in results["rss"].items():
            print(f"  {n}: peak {r['peak_mib']:.0f} (interpreter+imports {r['baseline_mib']:.0f})"
                  f", raw vectors {r['raw_mib']:.0f}: "
                  f"{(r['peak_mib'] - r['baseline_mib']) / r['raw_mib']:.2f}x raw")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer queries")
    parser.add_argument("--sizes", default=None, help="comma-separated sizes (10000,100000)")
    parser.add_argument("--big", type=int, default=None, help="namespace test size (1M)")
    parser.add_argument("--ann-items", default=None, help="comma-separated ANN corpus sizes")
    parser.add_argument("--ann", default='{"kind": "hnsw"}',
                        help="the ann config (JSON); the default uses AnnConfig's defaults")
    parser.add_argument("--rss", default=None, help="comma-separated RSS sizes")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--rss-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child)
        return
    faiss.omp_set_num_threads(1)
    sizes = [int(s) for s in (args.sizes or ("10000,100000")).split(",")]
    big = args.big if args.big is not None else (0 if args.quick else 1_000_000)
    ann_items = [int(s) for s in (args.ann_items or ("20000" if args.quick else "100000"))
                 .split(",") if s]
    rss_sizes = [int(s) for s in (args.rss or ("100000" if args.quick else "100000,1000000"))
                 .split(",") if s]
    print(f"python {platform.python_version()}, {os.cpu_count()} cores, faiss {faiss.__version__}")
    results: dict[str, Any] = {"sizes": {}, "ann": {}, "rss": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for n in sizes:
            label = f"{n // 1000}k"
            print(f"  {label} items ...", flush=True)
            full = n >= 100_000 or len(sizes) == 1
            results["sizes"][label] = await measure_size(
                Data(n), folder, args.quick, full, 20 if args.quick else 40
            )
        if big:
            label = f"{big // 1_000_000}M" if big >= 1_000_000 else f"{big // 1000}k"
            print(f"  {label} items, namespace query ...", flush=True)
            results["namespace_1m"] = {label: await measure_namespace_only(Data(big), folder)}
    n_side = 20_000 if args.quick else 100_000
    print(f"  index alone beside a writer thread, {n_side} ...", flush=True)
    for rate in (10_000, 0):
        results[f"index_beside_writes@{rate}"] = index_beside_writes(
            n_side, 200 if args.quick else 400, rate
        )
    for n in ann_items:
        print(f"  approximate index on {n} texts ...", flush=True)
        results["ann"][f"{n // 1000}k"] = measure_ann(n, json.loads(args.ann), 300)
    for n in rss_sizes:
        results["rss"][f"{n // 1000}k"] = measure_rss(n)
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    asyncio.run(main())

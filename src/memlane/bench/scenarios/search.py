"""Vector search: top 10 by meaning, lone and 64 concurrent, whole store and one namespace.

Lone queries report milliseconds per query (one after another); concurrent ones report
queries/s (each round is ``search_concurrency`` queries in flight at once). The ceilings
search the same vectors: FAISS ``IndexFlatIP`` and numpy brute force, batched for the
concurrent rows, and given the user's rows up front for the namespace rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from memlane.bench.runner import Row, Session, Trial, drive
from memlane.bench.scenarios.ceilings import faiss_flat, numpy_top_k
from memlane.bench.scenarios.stage import Stage
from memlane.bench.workloads import Dataset

__all__ = ["run"]

LIMIT = 10


def _namespace(data: Dataset, i: int, scope: str) -> tuple[str, ...]:
    return ("users",) if scope == "store" else ("users", f"u{i % data.users}", "memories")


def store_trial(store: Any, data: Dataset, scope: str, queries: int, concurrency: int) -> Trial:
    async def one(i: int) -> None:
        hits = await store.asearch(_namespace(data, i, scope), query=data.query_text(i),
                                   limit=LIMIT)
        if not hits:
            raise AssertionError("a vector search found nothing")

    async def trial() -> float:
        seconds = await drive(one, queries, concurrency)
        return seconds / queries * 1000 if concurrency == 1 else queries / seconds

    return trial


def ceiling_trials(data: Dataset, scope: str, queries: int, concurrency: int
                   ) -> dict[str, Trial]:
    """FAISS and numpy on the same vectors; per-user subsets are gathered before timing."""
    picks = [i % data.queries_count for i in range(queries)]
    vectors = data.vectors[: data.size]
    index: Any = faiss_flat(vectors) if scope == "store" else None
    subsets: dict[str, np.ndarray] | None = None
    indexes: dict[str, Any] = {}
    if scope == "namespace":
        users = sorted({f"u{i % data.users}" for i in range(queries)})
        subsets = {u: np.ascontiguousarray(vectors[data.user_rows(u)]) for u in users}
        indexes = {u: faiss_flat(v) for u, v in subsets.items()}

    def timed(work: Callable[[], None]) -> float:
        started = time.perf_counter()
        work()
        seconds = time.perf_counter() - started
        return seconds / queries * 1000 if concurrency == 1 else queries / seconds

    def run_faiss() -> None:
        if subsets is None and concurrency > 1:
            for start in range(0, queries, concurrency):
                index.search(data.queries[picks[start:start + concurrency]], LIMIT)
            return
        for i, q in enumerate(picks):
            target = index if subsets is None else indexes[f"u{i % data.users}"]
            target.search(data.queries[q : q + 1], LIMIT)

    def run_numpy() -> None:
        if subsets is None and concurrency > 1:
            for start in range(0, queries, concurrency):
                numpy_top_k(vectors, data.queries[picks[start:start + concurrency]], LIMIT)
            return
        for i, q in enumerate(picks):
            target = vectors if subsets is None else subsets[f"u{i % data.users}"]
            numpy_top_k(target, data.queries[q : q + 1], LIMIT)

    async def faiss_trial() -> float:
        return timed(run_faiss)

    async def numpy_trial() -> float:
        return timed(run_numpy)

    return {"faiss-flat": faiss_trial, "numpy": numpy_trial}


async def run(session: Session, stage: Stage) -> None:
    data, plan = stage.data, stage.plan
    for scope in ("store", "namespace"):
        for concurrency in (1, plan.search_concurrency):
            lone = concurrency == 1
            queries = plan.search_ops if lone else concurrency * plan.concurrent_rounds
            where = "whole store" if scope == "store" else "one user's namespace"
            row = Row(
                "vector_search",
                f"{'lone' if lone else f'{concurrency} concurrent'}, {where}",
                "ms per query" if lone else "queries/s", "ms" if lone else "queries/s",
                not lone, items=data.size,
                params={"scope": scope, "concurrency": concurrency, "limit": LIMIT},
                note=f"top {LIMIT} of {plan.dims}-dim unit vectors; a namespace holds "
                     f"~{data.size // data.users} items",
            )
            stage.apply_skips(row, True)
            trials = {key: store_trial(handle.store, data, scope, queries, concurrency)
                      for (key, indexed), handle in stage.handles.items() if indexed}
            trials.update(ceiling_trials(data, scope, queries, concurrency))
            await session.measure(row, trials)

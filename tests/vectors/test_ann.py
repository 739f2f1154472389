"""The approximate (HNSW) path: batched queries get their lone answers, and items written
since the graph was built (the delta) are searched exactly beside its proposals."""

from __future__ import annotations

import numpy as np
from tests.vectors.test_vector_index import DIMS, reference, unit

from memlane.vectors import VectorIndex
from memlane.vectors.index import SearchRequest

WEAK = {"kind": "hnsw", "m": 4, "ef_construction": 8, "ef_search": 4, "min_items": 100}


def built(n: int, seed: int) -> tuple[VectorIndex, dict[int, np.ndarray], np.random.Generator]:
    rng = np.random.default_rng(seed)
    index = VectorIndex(DIMS, background=False, ann=WEAK)
    items = {i: unit(rng.standard_normal((1, DIMS))) for i in range(n)}
    index.upsert(list(items.items()))
    assert index.build_ann()
    return index, items, rng


def test_a_batched_query_gets_its_lone_answer_whatever_the_other_ks() -> None:
    index, _, rng = built(3_000, 1)
    queries = unit(rng.standard_normal((40, DIMS)))
    ks = [1 if n % 2 else 200 for n in range(40)]
    batched = index.search_many([SearchRequest(q, k) for q, k in zip(queries, ks, strict=True)])
    lone = [index.search(q, k) for q, k in zip(queries, ks, strict=True)]
    assert batched == lone


def test_items_written_after_the_build_are_found_exactly() -> None:
    index, items, rng = built(2_000, 2)
    queries = unit(rng.standard_normal((10, DIMS)))
    # the delta: each query's exact best match, written after the build
    fresh = {10_000 + n: q[None, :].copy() for n, q in enumerate(queries)}
    index.upsert(list(fresh.items()))
    items.update(fresh)
    batched = index.search_many([SearchRequest(q, 3) for q in queries])
    for n, (q, found) in enumerate(zip(queries, batched, strict=True)):
        assert found[0] == reference(items, q, 1)[0]
        assert found[0][0] == 10_000 + n
        assert found == index.search(q, 3)

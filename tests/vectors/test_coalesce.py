"""SearchCoalescer: concurrent searches share batched calls, each caller gets exactly its
lone-query result, a lone query runs at once, and one bad request fails only its caller."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from tests.vectors.test_vector_index import DIMS, unit

from memlane.vectors import SearchCoalescer, VectorIndex

pytestmark = pytest.mark.anyio


def make_index(n: int = 5000, seed: int = 0) -> tuple[VectorIndex, np.random.Generator]:
    rng = np.random.default_rng(seed)
    index = VectorIndex(DIMS)
    index.upsert([(i, unit(rng.standard_normal((1 + i % 2, DIMS)))) for i in range(n)])
    return index, rng


async def test_concurrent_searches_are_batched_and_identical_to_lone_ones() -> None:
    index, rng = make_index()
    coalescer = SearchCoalescer(index, workers=2, inline_rows=0, idle_inline_rows=0)
    queries = unit(rng.standard_normal((64, DIMS)))
    ks = [1 + i % 25 for i in range(64)]
    subsets = [None if i % 4 else rng.choice(5000, 3000, replace=False) for i in range(64)]
    found = await asyncio.gather(
        *(coalescer.search(q, k, c) for q, k, c in zip(queries, ks, subsets, strict=True))
    )
    for q, k, c, got in zip(queries, ks, subsets, found, strict=True):
        assert got == index.search(q, k, c)
    # all 64 were queued in one loop tick: two workers start alone, the rest share batches
    assert coalescer.batched_queries == 64
    assert coalescer.batches <= 4


async def test_a_lone_query_starts_at_once_in_its_own_batch() -> None:
    index, rng = make_index()
    coalescer = SearchCoalescer(index, inline_rows=0, idle_inline_rows=0)
    q = unit(rng.standard_normal((1, DIMS)))[0]
    assert await coalescer.search(q, 10) == index.search(q, 10)
    assert (coalescer.batches, coalescer.batched_queries) == (1, 1)


async def test_small_searches_run_inline_without_a_thread() -> None:
    index, rng = make_index()
    coalescer = SearchCoalescer(index)
    q = unit(rng.standard_normal((1, DIMS)))[0]
    subset = np.arange(0, 5000, 50)
    assert await coalescer.search(q, 10, subset) == index.search(q, 10, subset)
    assert coalescer.batches == 0


async def test_a_bad_request_fails_only_its_caller() -> None:
    index, rng = make_index()
    coalescer = SearchCoalescer(index, workers=1, inline_rows=0, idle_inline_rows=0)
    good = unit(rng.standard_normal((8, DIMS)))
    bad = np.ones(DIMS + 1, dtype=np.float32)
    calls = [coalescer.search(q, 5) for q in good]
    calls.insert(3, coalescer.search(bad, 5))
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results[3], ValueError)
    rest = results[:3] + results[4:]
    assert rest == [index.search(q, 5) for q in good]


async def test_cancelled_caller_leaves_the_others_served() -> None:
    index, rng = make_index()
    coalescer = SearchCoalescer(index, workers=1, inline_rows=0, idle_inline_rows=0)
    queries = unit(rng.standard_normal((6, DIMS)))
    tasks = [asyncio.ensure_future(coalescer.search(q, 5)) for q in queries]
    await asyncio.sleep(0)  # let every task queue its request
    tasks[2].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[2], asyncio.CancelledError)
    assert [d for i, d in enumerate(done) if i != 2] == [
        index.search(q, 5) for i, q in enumerate(queries) if i != 2
    ]


async def test_searches_after_every_queued_caller_was_cancelled_still_run() -> None:
    """More cancelled callers than a batch holds, queued ahead of a live one: the live
    one is still answered (the launcher skips whole batches of cancelled callers)."""
    index, rng = make_index()
    coalescer = SearchCoalescer(index, workers=1, inline_rows=0, idle_inline_rows=0, max_batch=2)
    queries = unit(rng.standard_normal((7, DIMS)))
    first = asyncio.ensure_future(coalescer.search(queries[0], 5))
    queued = [asyncio.ensure_future(coalescer.search(q, 5)) for q in queries[1:5]]
    live = asyncio.ensure_future(coalescer.search(queries[5], 5))
    await asyncio.sleep(0)  # the first runs, the others wait in the queue
    for task in queued:
        task.cancel()
    assert await asyncio.wait_for(first, 10) == index.search(queries[0], 5)
    assert await asyncio.wait_for(live, 10) == index.search(queries[5], 5)
    later = coalescer.search(queries[6], 5)
    assert await asyncio.wait_for(later, 10) == index.search(queries[6], 5)


async def test_after_close_searches_are_still_answered_and_the_workers_end() -> None:
    index, rng = make_index()
    coalescer = SearchCoalescer(index, workers=1, inline_rows=0, idle_inline_rows=0)
    queries = unit(rng.standard_normal((2, DIMS)))
    assert await coalescer.search(queries[0], 5) == index.search(queries[0], 5)
    workers = [t for state in coalescer._states.values() for t in state.pool._threads]
    assert workers, "the first search started a worker thread"
    coalescer.close()
    # no new thread can start now: the search runs on the caller's thread instead
    found = await asyncio.wait_for(coalescer.search(queries[1], 5), 5)
    assert found == index.search(queries[1], 5)
    for worker in workers:
        worker.join(timeout=5)
        assert not worker.is_alive()
    # a search from another event loop after close starts no new worker pool either

    async def on_another_loop() -> tuple[list[tuple[int, float]], bool]:
        found = await coalescer.search(queries[0], 5)
        return found, asyncio.get_running_loop() in coalescer._states

    found, pooled = await asyncio.to_thread(asyncio.run, on_another_loop())
    assert found == index.search(queries[0], 5) and not pooled

"""Query coalescing: searches that arrive while others run share one batched FAISS call.

Why. A lone flat search streams every vector through one core; 64 lone searches stream
them 64 times. Batched, FAISS scores a block of queries against a block of vectors with
one BLAS matrix multiply: measured on this 2-core machine at 100k x 384, 64 queries in
one FAISS call ran at ~1,700 queries/s against ~165 for lone ones (benchmarks/search.py).

How. No timer: a search that finds a free worker starts at once, alone. Searches that
arrive while every worker is busy wait in a queue, and the next worker to finish takes
the whole queue as one batch. A second worker starts only beside small batches: a batch
of 16 or more takes FAISS's BLAS path, which keeps both cores busy by itself. So a quiet
server answers each query without delay and a busy one batches exactly as much as the
load provides. Batches run in the coalescer's own pool of worker threads (one per core by
default, each batch one OpenMP thread), so searches cannot take every thread from other
work (embeddings, tools). A batch is handed to a worker from the caller's own turn of the
event loop and its results come back in one callback: a search waits for the loop twice,
which matters when thousands of other tasks are ready on every turn. Searches that scan
few rows (one user's namespace) run inline: a thread hop would cost more than the scan;
so do searches of up to ``IDLE_INLINE_ROWS`` rows while nothing else is in flight (a lone
query on a small store).

Each caller gets exactly its lone-query result (``VectorIndex.search_many`` guarantees
it), and its own exception if its request fails. A caller that is cancelled stops waiting;
its batch still runs for the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from memlane.vectors.index import SearchRequest, VectorIndex

__all__ = ["INLINE_ROWS", "SearchCoalescer"]

Hits = list[tuple[int, float]]

# Searches scanning at most this many rows run inline on the caller's thread: numpy or
# FAISS scores 2,048 x 384 in ~0.1 ms, about one thread hop.
INLINE_ROWS = 2_048
# When no batch is running or waiting, searches up to this many rows run inline too: a lone
# 10k x 384 scan takes ~0.3 ms, about what the hop to a worker and back costs here, and
# with nothing in flight there is nothing to batch it with.
IDLE_INLINE_ROWS = 16_384
_MAX_BATCH = 256
# From about this many queries a batch takes FAISS's BLAS path, which already keeps both
# cores busy: a second batch beside it only splits the queue into smaller, slower batches.
# Measured at 100k x 384, 64 searchers: one worker 644 queries/s, two workers 462.
_BLAS_BATCH = 16


Waiter = tuple[SearchRequest, "asyncio.Future[Hits]"]
Outcome = Hits | BaseException


@dataclass
class _LoopState:
    """Per event loop: the queue, the running batches and the worker threads."""

    pool: ThreadPoolExecutor
    queue: list[Waiter] = field(default_factory=list)
    running: int = 0
    running_big: int = 0  # running batches of _BLAS_BATCH queries or more


class SearchCoalescer:
    """Async front of a :class:`VectorIndex` that batches concurrent searches.

    ``workers``: batches that may run at once (threads of the coalescer's own pool).
    ``threads``: OpenMP threads per batch. ``inline_rows``/``idle_inline_rows``: searches
    scanning fewer rows run on the caller's thread (always / when nothing is in flight).
    """

    def __init__(
        self,
        index: VectorIndex,
        *,
        workers: int | None = None,
        threads: int = 1,
        inline_rows: int = INLINE_ROWS,
        idle_inline_rows: int = IDLE_INLINE_ROWS,
        max_batch: int = _MAX_BATCH,
    ) -> None:
        self.index = index
        self.workers = workers or max(1, os.cpu_count() or 1)
        self.threads = threads
        self.inline_rows = inline_rows
        self.idle_inline_rows = idle_inline_rows
        self.max_batch = max_batch
        self.batches = 0  # batched calls made (tests and benchmarks read these)
        self.batched_queries = 0
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )
        self._closed = False  # no new worker threads, on any loop

    async def search(
        self, query: np.ndarray, k: int, candidates: np.ndarray | None = None
    ) -> Hits:
        """The index's exact top ``k`` for ``query`` (within ``candidates`` if given).

        Always suspends once: an inline search yields to the loop after it ran.
        """
        request = SearchRequest(np.asarray(query, dtype=np.float32), k, candidates)
        cost = self.index.search_cost(candidates)
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None and not self._closed:
            # Each loop's own pool is its limiter: searches never take threads other work
            # needs. Threads start with the first offloaded search; ``close`` ends them.
            pool = ThreadPoolExecutor(self.workers, thread_name_prefix="memlane-search")
            state = self._states[loop] = _LoopState(pool)
        idle = state is None or (not state.running and not state.queue)
        inline = cost <= self.inline_rows or (idle and cost <= self.idle_inline_rows)
        if inline or state is None:  # (no state: closed, no pool to start)
            found = self.index.search_many([request])[0]
            await asyncio.sleep(0)
            return found
        future: asyncio.Future[Hits] = loop.create_future()
        state.queue.append((request, future))
        if self._may_launch(state):
            self._launch(loop, state)
        return await future

    def _may_launch(self, state: _LoopState) -> bool:
        """Start a batch now? Always when none runs; another only while every running batch
        and the queue are small (lone scans use one core each; BLAS batches use them all)."""
        if not state.queue or state.running >= self.workers:
            return False
        if state.running == 0:
            return True
        return state.running_big == 0 and len(state.queue) < _BLAS_BATCH

    def _launch(self, loop: asyncio.AbstractEventLoop, state: _LoopState) -> None:
        """Hand the queue's head to a worker now, from the caller's own turn of the loop:
        under load every extra turn waits behind every other ready task."""
        batch: list[Waiter] = []
        while state.queue and not batch:  # skip the callers cancelled while queued
            batch = [(r, f) for r, f in state.queue[: self.max_batch] if not f.done()]
            del state.queue[: self.max_batch]
        if not batch:
            return
        state.running += 1
        big = len(batch) >= _BLAS_BATCH
        state.running_big += big
        self.batches += 1
        self.batched_queries += len(batch)
        try:
            state.pool.submit(self._run, loop, state, batch, big)
        except RuntimeError:
            # No new threads once the interpreter is shutting down (or after ``close``):
            # answer the batch on this thread rather than leave the callers waiting.
            self._run(loop, state, batch, big)

    def close(self) -> None:
        """Let the worker threads end once their current batch is done (idempotent); later
        searches, on any event loop, run on the caller's thread."""
        self._closed = True
        for state in list(self._states.values()):
            state.pool.shutdown(wait=False)

    def _run(
        self, loop: asyncio.AbstractEventLoop, state: _LoopState, batch: list[Waiter], big: bool
    ) -> None:
        """In a worker: answer the batch, then hand the outcomes back to the loop."""
        outcomes: list[Outcome] = []
        try:
            outcomes = list(self.index.search_many([r for r, _ in batch], self.threads))
        except Exception as exc:
            outcomes = [exc] if len(batch) == 1 else [self._alone(r) for r, _ in batch]
        except BaseException as exc:  # never leave the callers waiting, then re-raise
            stopped = RuntimeError(f"the search was interrupted: {exc!r}")
            outcomes = [stopped] * len(batch)
            raise
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
                loop.call_soon_threadsafe(self._deliver, loop, state, batch, big, outcomes)

    def _alone(self, request: SearchRequest) -> Outcome:
        """After a failed batch: one request on its own, so only a bad one fails."""
        try:
            return self.index.search_many([request], self.threads)[0]
        except Exception as exc:
            return exc

    def _deliver(
        self,
        loop: asyncio.AbstractEventLoop,
        state: _LoopState,
        batch: list[Waiter],
        big: bool,
        outcomes: list[Outcome],
    ) -> None:
        state.running -= 1
        state.running_big -= big
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():
                continue  # the caller was cancelled
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
        if self._may_launch(state):
            self._launch(loop, state)

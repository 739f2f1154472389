"""The part of a durable store's writer that does not depend on its database (SQLite's
``sqlite/writer.py``, PostgreSQL's ``postgres/writer.py``): callers' requests in, a
:class:`PreparedBatch` out to the backend's ``_finish`` (its transaction, mirror and
acknowledgements).

``_prepare`` splits a batch by kind, embeds its puts (``embedding_stage.py``), coalesces
them to the last op per key and stamps them. While a slow embed call runs, the writes that
need no embedding go ahead (``_express``). With an index, batch N+1 is embedded while batch N
commits; without one there is nothing to overlap, and waiting lets the next batch grow
instead (``actor.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import anyio.to_thread

from memlane.store.actor import BatchActor
from memlane.store.embedding_stage import EmbeddingStage, Entry, bad_vectors, coalesce
from memlane.store.indexing import Indexer
from memlane.store.mailbox import Mailbox
from memlane.store.settle import SLICE, in_slices
from memlane.store.timestamps import Clock
from memlane.store.types import StoreClosedError
from memlane.store.write_requests import (
    PostsRequests,
    Request,
    SweepRequest,
    TouchRequest,
    WriteRequest,
    WriterError,
)

__all__ = ["EXPRESS_AFTER_S", "DurableWriter", "PreparedBatch", "keys_of"]

T = TypeVar("T")

# An embed call still running after this long lets queued writes that need no embedding
# (deletes, ``index=False`` puts) commit beside it: a slow or hung provider holds up only the
# writes that need it.
EXPRESS_AFTER_S: Final = 0.2


@dataclass(slots=True)
class PreparedBatch:
    """A batch ready to commit: its requests by kind, and its embedded, coalesced puts."""

    writes: list[WriteRequest]
    touches: list[tuple[float, int]]
    sweeps: list[SweepRequest]
    entries: list[Entry]
    survivors: list[Entry]
    failed: dict[int, BaseException]
    stamps: list[int]


def keys_of(requests: list[Request]) -> set[tuple[tuple[str, ...], str]]:
    """The (namespace, key) pairs the write requests among ``requests`` touch."""
    return {
        (put.namespace, put.key)
        for request in requests
        if isinstance(request, WriteRequest)
        for put in request.puts
    }


class DurableWriter(BatchActor[Request, PreparedBatch], PostsRequests):
    """A batching writer; a backend gives ``_finish`` (and ``sweep``, its own way)."""

    def __init__(
        self, *, indexer: Indexer | None, clock: Clock, capacity: int, max_batch: int
    ) -> None:
        self._indexer = indexer
        self._embedding = EmbeddingStage(indexer) if indexer is not None else None
        self._clock = clock
        super().__init__(
            Mailbox(capacity), max_batch=max_batch, pipelined=indexer is not None, detached=True
        )
        self.stopped = asyncio.Event()
        self.batches = 0  # how many batches were committed (for tests and stats)

    def _on_stop(self) -> None:
        self.stopped.set()

    def _batch_failed(self, batch: list[Request], error: Exception) -> None:
        # The backend writer's own logger (``memlane.store.sqlite.writer``, ...).
        logging.getLogger(type(self).__module__).exception("memlane writer failed on a batch")
        failure = WriterError(f"the store's writer failed on this batch: {error!r}")
        failure.__cause__ = error
        self._fail(batch, failure)

    def _stopped_error(self) -> BaseException:
        return StoreClosedError("the store's writer stopped before this write was committed")

    async def _prepare(self, batch: list[Request]) -> PreparedBatch:
        """Split a batch by kind, embed its puts, coalesce them, and stamp them."""
        writes = [r for r in batch if isinstance(r, WriteRequest)]
        touches = [
            (r.read_at, item_id)
            for r in batch
            if isinstance(r, TouchRequest)
            for item_id in r.item_ids
        ]
        sweeps = [r for r in batch if isinstance(r, SweepRequest)]
        numbered = [(n, put) for n, request in enumerate(writes) for put in request.puts]
        entries = await in_slices(numbered, lambda part: [Entry(n, put) for n, put in part])
        failed: dict[int, BaseException] = {}
        if self._indexer is not None and self._indexer.embedder.quick:
            survivors = await self._embed(entries, failed)  # runs inline: nothing to wait for
        elif self._indexer is not None:
            survivors = await self._express(self._embed(entries, failed), batch)
        elif len(entries) > SLICE:
            survivors = await anyio.to_thread.run_sync(coalesce, entries, failed)
        else:
            survivors = coalesce(entries, failed)
        stamp = self._clock.next_stamp
        if len(survivors) <= SLICE:
            stamps = [stamp() for _ in survivors]
        else:
            stamps = await in_slices(survivors, lambda part: [stamp() for _ in part])
        return PreparedBatch(writes, touches, sweeps, entries, survivors, failed, stamps)

    async def _express(self, embedding: Awaitable[T], batch: list[Request]) -> T:
        """Await ``embedding``; while it is slow, commit queued writes that need none of it.

        Such a write goes ahead only if no request of this batch, and none held back for
        the next one, touches its keys: the order of writes to one key is kept. The rest
        (puts to embed, touches, sweeps) is held for the next batch, up to ``max_batch``.
        """
        task = asyncio.ensure_future(embedding)
        try:
            done, _ = await asyncio.wait({task}, timeout=EXPRESS_AFTER_S)
            busy = keys_of(batch)
            while not done and not self.mailbox.closed and len(self._held) < self._max_batch:
                arrival = asyncio.ensure_future(self.mailbox.wait())
                waiting: set[asyncio.Future[Any]] = {task, arrival}
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                arrival.cancel()  # its clean-up leaves a newer wait alone (Mailbox.wait)
                if task.done():
                    break
                express: list[Request] = []
                for request in self.mailbox.take(self._max_batch - len(self._held)):
                    keys = keys_of([request])
                    if (
                        isinstance(request, WriteRequest)
                        and not keys & busy
                        and not self._needs_embedding(request)
                    ):
                        express.append(request)
                    else:
                        self._held.append(request)
                        busy |= keys
                if express:
                    await self._commit_express(express)
            return await task
        finally:
            task.cancel()  # a no-op once done; else (the writer stopping) abandon the call

    def _needs_embedding(self, request: WriteRequest) -> bool:
        assert self._indexer is not None
        return not self._indexer.embeds_nothing(
            (put, {} if put.is_delete else put.value()) for put in request.puts
        )

    async def _commit_express(self, express: list[Request]) -> None:
        """Commit writes that need no embedding, after the commit under way (if any)."""
        writes = [r for r in express if isinstance(r, WriteRequest)]
        entries = [Entry(n, put) for n, request in enumerate(writes) for put in request.puts]
        failed: dict[int, BaseException] = {}
        survivors = coalesce(entries, failed)
        stamps = [self._clock.next_stamp() for _ in survivors]
        prepared = PreparedBatch(writes, [], [], entries, survivors, failed, stamps)
        self._unsettled.extend(express)
        if self._finishing is not None:
            await asyncio.shield(self._finishing)
        self._finishing = asyncio.ensure_future(self._guarded(express, self._finish(prepared)))
        del self._unsettled[len(self._unsettled) - len(express) :]
        await asyncio.shield(self._finishing)

    async def _embed(self, entries: list[Entry], failed: dict[int, BaseException]) -> list[Entry]:
        assert self._embedding is not None
        return await self._embedding.embed(entries, failed)

    async def _embed_alone(self, own: list[Entry]) -> None:
        """Before one request's own transaction (after a failed batch): embed its puts that
        the whole batch's coalescing had superseded, raising a bad vector's error."""
        unembedded = [e for e in own if not e.embedded and not e.put.is_delete]
        if self._embedding is not None and unembedded:
            await self._embedding.embed_entries(unembedded)
            bad = next((e for e in unembedded if e.error is not None), None)
            if bad is not None:
                raise bad_vectors(bad)

    def _fail(self, requests: list[Request], error: BaseException) -> None:
        for request in requests:
            if isinstance(request, WriteRequest | SweepRequest) and not request.future.done():
                request.future.set_exception(error)

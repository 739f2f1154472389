"""The batching actor that every store's writes go through: one mechanism, both stores.

Callers post requests to a :class:`~memlane.store.mailbox.Mailbox` and await their
own futures. One task takes everything waiting (up to ``max_batch``, no timer: a lone
request runs at once, a burst becomes one batch) and runs each batch in two stages,
``_prepare`` (embedding, coalescing) and ``_finish`` (the commit, resolving the callers).
With ``pipelined``, batch N+1 is prepared while batch N finishes; finishes, and so
acknowledgements, stay in order. An unexpected error in a stage fails that batch's callers
only (``_batch_failed``); when the actor stops, every request still queued or held gets
``_stopped_error()`` instead of waiting forever. A ``detached`` finish (SqliteStore's:
the commit may already be on the connection's thread) is never cancelled with the actor:
its callers hear its own outcome.

SqliteStore's writer runs one actor for the store's life; InMemoryStore runs one per event
loop that stops once nothing waits (``until_idle``) and starts again with the next write.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Generic, TypeVar

from memlane.store.mailbox import Mailbox

__all__ = ["BatchActor"]

R = TypeVar("R")  # a request
P = TypeVar("P")  # a prepared batch
T = TypeVar("T")


class BatchActor(Generic[R, P]):
    """Takes batches from ``mailbox`` and runs them through ``_prepare`` and ``_finish``."""

    def __init__(
        self, mailbox: Mailbox[R], *, max_batch: int, pipelined: bool, detached: bool
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch!r}")
        self.mailbox = mailbox
        self.pipelined = pipelined
        # Each finish its own task (pipelining needs it): cancelling the actor then never
        # cancels a commit under way. Without it, a finish runs inline, a task less per
        # batch (a lone write to InMemoryStore), and a cancelled one fails its callers.
        self._detached = detached or pipelined
        self._max_batch = max_batch
        # Taken from the mailbox early (while a stage ran), for the next batch.
        self._held: list[R] = []
        # Taken from the mailbox and not yet handed to a finish: failed if the actor stops.
        self._unsettled: list[R] = []
        self._finishing: asyncio.Future[None] | None = None  # the finish under way

    # ---- what a store gives ---------------------------------------------------------------

    async def _prepare(self, batch: list[R]) -> P:
        raise NotImplementedError

    async def _finish(self, prepared: P) -> None:
        raise NotImplementedError

    def _batch_failed(self, batch: list[R], error: Exception) -> None:
        """Fail the callers of ``batch`` (a stage raised ``error``)."""
        raise NotImplementedError

    def _stopped_error(self) -> BaseException:
        """What the requests left when the actor stops get."""
        raise NotImplementedError

    def _fail(self, requests: list[R], error: BaseException) -> None:
        raise NotImplementedError

    def _on_stop(self) -> None:
        """Called last when a run ends (SqliteStore's writer: its ``stopped`` event)."""

    # ---- the loop ------------------------------------------------------------------------

    async def run(self, *, until_idle: bool = False) -> None:
        """Run batches until the mailbox is closed and drained, or with ``until_idle``
        until nothing waits (the mailbox stays open: the next request starts a new run)."""
        try:
            while batch := await self._next_batch(until_idle):
                self._unsettled = list(batch)
                prepared = await self._guarded(batch, self._prepare(batch))
                if self._finishing is not None:
                    await asyncio.shield(self._finishing)
                    self._finishing = None
                if prepared is not None and self._detached:
                    self._finishing = asyncio.ensure_future(
                        self._guarded(batch, self._finish(prepared))
                    )
                elif prepared is not None:
                    await self._guarded(batch, self._finish(prepared))  # unsettled till done
                self._unsettled = []
                del batch, prepared  # an idle actor keeps no batch (values, vectors) alive
                if self._finishing is not None and not self.pipelined:
                    await asyncio.shield(self._finishing)
                    self._finishing = None
                if until_idle:
                    # Let the callers just resolved (and everyone else) run first.
                    await asyncio.sleep(0)
            if self._finishing is not None:
                await asyncio.shield(self._finishing)
                self._finishing = None
        finally:
            if self._finishing is not None and not self._finishing.done():
                # Cancelled (a close past its deadline, a loop shutting down): the finish
                # under way may still commit, so its callers hear its own outcome.
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(self._finishing)
            self._finishing = None
            if not until_idle:
                self.mailbox.close()
            leftover = [*self._unsettled, *self._held]
            self._unsettled, self._held = [], []
            while len(self.mailbox):
                leftover.extend(self.mailbox.take(len(self.mailbox)))
            if leftover:
                self._fail(leftover, self._stopped_error())
            self._on_stop()

    async def _next_batch(self, until_idle: bool) -> list[R]:
        """What was held back during the last batch first, then the mailbox."""
        if self._held:
            held, self._held = self._held, []
            return held + self.mailbox.take(self._max_batch - len(held))
        if until_idle:
            return self.mailbox.take(self._max_batch)
        return await self.mailbox.get_batch(self._max_batch)

    async def _guarded(self, batch: list[R], step: Awaitable[T]) -> T | None:
        """Run one stage of a batch; an unexpected error fails that batch's callers only."""
        try:
            return await step
        except Exception as exc:
            self._batch_failed(batch, exc)
            return None

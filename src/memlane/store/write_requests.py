"""What callers post to a durable store's writer (SQLite's, PostgreSQL's), and its error."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from memlane.store.mailbox import Mailbox, MailboxClosed
from memlane.store.ops import PreparedPut
from memlane.store.types import StoreClosedError

__all__ = [
    "PostsRequests",
    "Request",
    "SweepRequest",
    "TouchRequest",
    "WriteRequest",
    "WriterError",
]


class WriterError(RuntimeError):
    """The writer failed on a batch for a reason no single request explains."""


@dataclass(slots=True)
class WriteRequest:
    """One caller's puts and deletes, applied together or not at all."""

    puts: list[PreparedPut]
    future: asyncio.Future[None]


@dataclass(slots=True)
class TouchRequest:
    """Push back the expiry of items that were read at ``read_at`` (nobody waits for it)."""

    item_ids: list[int]
    read_at: float


@dataclass(slots=True)
class SweepRequest:
    """Delete every expired item; the future gets how many were deleted.

    ``lease`` (owner, seconds): a periodic sweep, which runs only while this process is the
    sweeper among the processes sharing the store (SQLite: a lease row, ``lease.py``;
    PostgreSQL: an advisory lock); None: always."""

    future: asyncio.Future[int]
    lease: tuple[str, float] | None = None


Request = WriteRequest | TouchRequest | SweepRequest


class PostsRequests:
    """How callers reach a writer's mailbox (both durable stores' writers)."""

    mailbox: Mailbox[Request]

    async def write(self, puts: list[PreparedPut]) -> None:
        """Queue ``puts`` (waiting while the mailbox is full) and wait for their commit."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        request = WriteRequest(puts, future)
        try:
            if len(self.mailbox) < self.mailbox.capacity:
                self.mailbox.put_nowait(request)
            else:
                await self.mailbox.put(request)
        except MailboxClosed:
            raise StoreClosedError("the store is closed; the write was not queued") from None
        await future

    def touch(self, item_ids: list[int], read_at: float) -> None:
        """Refresh the expiry of ``item_ids`` (read at ``read_at``) in a coming batch."""
        # While closing, a refresh no later read can observe is not needed.
        with contextlib.suppress(MailboxClosed):
            self.mailbox.put_nowait(TouchRequest(item_ids, read_at))

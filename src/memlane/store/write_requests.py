"""What callers post to a durable store's writer (SQLite's, PostgreSQL's), and its error."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from memlane.store.ops import PreparedPut

__all__ = ["Request", "SweepRequest", "TouchRequest", "WriteRequest", "WriterError"]


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

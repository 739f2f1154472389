"""A bounded mailbox that hands its consumer everything waiting at once.

Producers wait when it is full (backpressure, memory stays bounded); the consumer takes
up to ``max_items`` in one call, so a burst becomes one batch and a lone item is handed
over at once, with no timer.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

__all__ = ["Mailbox", "MailboxClosed"]

T = TypeVar("T")


class MailboxClosed(Exception):
    """The mailbox accepts nothing more: its consumer is shutting down."""


class Mailbox(Generic[T]):
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"mailbox capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._items: deque[T] = deque()
        self._closed = False
        self._getter: asyncio.Future[None] | None = None
        self._putters: deque[asyncio.Future[None]] = deque()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    async def put(self, item: T) -> None:
        """Queue ``item``, waiting while the mailbox is full.

        O(1) per waiter: a cancelled waiter's future stays in the deque (cancelled, so
        ``_wake_putters`` skips it) instead of being searched for and removed, which cost
        a scan of every waiter (100k concurrent puts took minutes, with 30 s loop stalls).
        """
        while len(self._items) >= self.capacity and not self._closed:
            space = asyncio.get_running_loop().create_future()
            self._putters.append(space)
            try:
                await space
            except BaseException:
                if space.done() and not space.cancelled():
                    self._wake_putters()  # it was woken, then cancelled: pass the turn on
                else:
                    space.cancel()
                raise
        self.put_nowait(item)

    def put_nowait(self, item: T) -> None:
        """Queue ``item`` even past capacity (for small internal messages)."""
        if self._closed:
            raise MailboxClosed("the mailbox is closed")
        self._items.append(item)
        getter = self._getter
        if getter is not None and not getter.done():
            getter.set_result(None)

    async def get_batch(self, max_items: int) -> list[T]:
        """Wait for an item, then take up to ``max_items``; ``[]`` once closed and empty."""
        await self.wait()
        return self.take(max_items)

    async def wait(self) -> None:
        """Return once an item is queued or the mailbox is closed."""
        while not self._items and not self._closed:
            getter = self._getter = asyncio.get_running_loop().create_future()
            try:
                await getter
            finally:
                if self._getter is getter:  # a cancelled wait must not drop a newer one
                    self._getter = None

    def take(self, max_items: int) -> list[T]:
        """Take up to ``max_items`` of what is queued, without waiting."""
        count = max(0, min(max_items, len(self._items)))
        batch = [self._items.popleft() for _ in range(count)]
        if count:
            self._wake_putters()
        return batch

    def close(self) -> None:
        """Refuse new items; the consumer still drains what is queued."""
        self._closed = True
        if self._getter is not None and not self._getter.done():
            self._getter.set_result(None)
        for putter in self._putters:
            if not putter.done():
                putter.set_result(None)

    def _wake_putters(self) -> None:
        free = self.capacity - len(self._items)
        while free > 0 and self._putters:
            putter = self._putters.popleft()
            if not putter.done():
                putter.set_result(None)
                free -= 1

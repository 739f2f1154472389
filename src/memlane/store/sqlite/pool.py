"""The reader connections, leased one read at a time.

A read that does not fit the inline reader's budget runs on one of these connections, on
its own thread (one hop for the whole read). A connection freed while gets wait goes to
the get batcher first (:attr:`ReaderPool.claimant`): the waiting gets are answered
together in that one hop, instead of each queueing for a connection of its own.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import deque
from collections.abc import Callable
from typing import TypeVar

import aiosqlite

from memlane.store.sqlite.connection import run_on_connection_thread
from memlane.store.types import StoreClosedError

__all__ = ["ReaderPool"]

T = TypeVar("T")


class ReaderPool:
    """Leases connections to reads; ``shut`` waits for those holding one."""

    def __init__(self, connections: list[aiosqlite.Connection]) -> None:
        self._connections = list(connections)
        self._idle: list[aiosqlite.Connection] = list(connections)
        self._waiters: deque[asyncio.Future[aiosqlite.Connection]] = deque()
        self._closing = False  # set by shut(): new reads raise StoreClosedError
        # Offered each freed connection first; True: it took it (and releases it later).
        self.claimant: Callable[[aiosqlite.Connection], bool] | None = None

    def check_open(self) -> None:
        if self._closing:
            raise StoreClosedError("the store is closed")

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` on a leased connection's thread."""
        self.check_open()
        conn = await self._lease()
        try:
            return await run_on_connection_thread(conn, fn)
        finally:
            self.release(conn)

    def take_idle(self) -> aiosqlite.Connection | None:
        """An idle connection at once, or None (the caller releases it)."""
        return self._idle.pop() if self._idle else None

    async def _lease(self) -> aiosqlite.Connection:
        if self._idle:
            return self._idle.pop()
        waiter: asyncio.Future[aiosqlite.Connection] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(waiter.result())  # handed over just as we were cancelled
            raise

    def release(self, conn: aiosqlite.Connection) -> None:
        if self.claimant is not None and self.claimant(conn):
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append(conn)

    async def shut(self) -> None:
        """Refuse new reads and wait until every connection is back (the store closes
        them after)."""
        self._closing = True
        held = [await self._lease() for _ in self._connections]
        self._idle.extend(held)

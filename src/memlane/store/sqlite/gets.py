"""Gets: answered on the loop's thread when alone, together in one hop when many.

A lone get runs on the inline reader (no thread hop). Gets that arrive together (in one
loop turn, or while every reader connection is busy) queue here and are answered by one
statement per ``GET_KEY_CHUNK`` keys on the next free connection, ``GET_BATCH`` at a
time (docs/sqlite.md, "Small reads skip the hop").
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable

import aiosqlite
import anyio.to_thread

from memlane.store.heavy import BIG_VALUE_CHARS
from memlane.store.sqlite.codec import (
    ITEM_COLUMNS,
    ItemRow,
    encode_namespace,
    is_storable,
    row_to_item,
)
from memlane.store.sqlite.connection import run_on_connection_thread
from memlane.store.sqlite.inline import InlineReader, TooMuchWork
from memlane.store.sqlite.planner import LIVE
from memlane.store.sqlite.policies import GET_BATCH, GET_KEY_CHUNK
from memlane.store.sqlite.pool import ReaderPool
from memlane.store.timestamps import Clock
from memlane.store.types import Item

__all__ = ["GetBatcher", "rows_by_key"]

_GET = f"SELECT {ITEM_COLUMNS} FROM items WHERE namespace = ? AND key = ? AND {LIVE}"

_PendingGet = tuple[str, str, bool, "asyncio.Future[Item | None]"]


class GetBatcher:
    """Answers gets inline or in coalesced hops on the pool's connections."""

    def __init__(
        self,
        pool: ReaderPool,
        *,
        clock: Clock,
        touch: Callable[[list[int], float], None],
        inline: InlineReader | None,
    ) -> None:
        self._pool = pool
        self._inline = inline
        self._clock = clock
        self._touch = touch
        self._arriving = 0  # gets at their checkpoint right now
        self._pending: list[_PendingGet] = []
        self._flushers: set[asyncio.Task[None]] = set()
        self.get_hops = 0  # thread hops spent on gets (tests check the coalescing)
        self._crowd_hint = False  # the last coalesced batch held several gets
        pool.claimant = self._claim

    def _claim(self, conn: aiosqlite.Connection) -> bool:
        """A connection came free: take it for the gets waiting, if any."""
        if not self._pending:
            return False
        self._start_flush(conn)
        return True

    async def get(self, namespace: tuple[str, ...], key: str, refresh: bool) -> Item | None:
        """One item; gets queued while connections are busy go together in one hop."""
        if not is_storable(namespace):
            return None
        encoded = encode_namespace(namespace)
        # Without an inline connection, with a coalesced batch already forming, or right
        # after a crowd's batch (measured: +15-25% gets/s with 100 readers), a get takes
        # the pooled path at once.
        crowded = True
        if self._inline is not None and not self._pending and not self._crowd_hint:
            # A checkpoint, as a hop would be (no task hogs the loop), which also tells a
            # lone get from a crowd: gets that arrived in the same loop turn are cheaper
            # together, in one coalesced hop, than one by one on the loop.
            self._arriving += 1
            try:
                await asyncio.sleep(0)
            finally:
                self._arriving -= 1
            crowded = self._arriving > 0 or bool(self._pending)
        if self._inline is not None and not crowded:
            now = self._clock.now()
            try:
                rows = self._inline.run(lambda raw: rows_by_key(raw, [(encoded, key, now)]))
            except TooMuchWork:
                pass
            else:
                row = rows.get((encoded, key))
                if row is None:
                    return None
                if refresh and row.expiring:
                    self._touch([row.id], now)
                if len(row.value) > BIG_VALUE_CHARS:  # see heavy.py
                    return await anyio.to_thread.run_sync(row_to_item, row)
                return row_to_item(row)
        # Checked here, with no await before the append: a get queued once ``shut`` has
        # run would be flushed on a connection the store is about to close.
        self._pool.check_open()
        future: asyncio.Future[Item | None] = asyncio.get_running_loop().create_future()
        self._pending.append((encoded, key, refresh, future))
        if len(self._pending) == 1 and (conn := self._pool.take_idle()) is not None:
            self._start_flush(conn)
        return await future

    def _start_flush(self, conn: aiosqlite.Connection) -> None:
        task = asyncio.get_running_loop().create_task(self._flush(conn))
        self._flushers.add(task)
        task.add_done_callback(self._flushers.discard)

    async def _flush(self, conn: aiosqlite.Connection) -> None:
        batch = self._pending[:GET_BATCH]
        del self._pending[:GET_BATCH]
        # The callers of a crowd's batch usually come back together: their next gets skip
        # the checkpoint that tells a lone get from a crowd, and queue at once.
        self._crowd_hint = len(batch) > 1
        if self._pending and (other := self._pool.take_idle()) is not None:
            self._start_flush(other)  # more waiting: let another connection share it
        try:
            if not batch:
                return
            now = self._clock.now()
            keys = [(namespace, key, now) for namespace, key, _, _ in batch]

            def lookup(raw: sqlite3.Connection) -> list[tuple[Item, int, bool] | None]:
                rows = rows_by_key(raw, keys)
                found: list[tuple[Item, int, bool] | None] = []
                for namespace, key, _ in keys:
                    row = rows.get((namespace, key))
                    if row is None:
                        found.append(None)
                    else:
                        found.append((row_to_item(row), row.id, row.expiring))
                return found

            self.get_hops += 1
            try:
                rows = await run_on_connection_thread(conn, lookup)
            except Exception as exc:
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
            touched: list[int] = []
            for (_, _, refresh, future), found in zip(batch, rows, strict=True):
                if found is not None and refresh and found[2]:
                    touched.append(found[1])
                if not future.done():
                    future.set_result(None if found is None else found[0])
            if touched:
                self._touch(touched, now)
        finally:
            self._pool.release(conn)


def rows_by_key(
    raw: sqlite3.Connection, keys: list[tuple[str, str, float]]
) -> dict[tuple[str, str], ItemRow]:
    """Many point lookups in one statement per chunk: a UNION ALL of indexed lookups.

    (A row-value ``IN (VALUES ...)`` would scan the table; each arm here uses the index.)
    """
    rows: dict[tuple[str, str], ItemRow] = {}
    for start in range(0, len(keys), GET_KEY_CHUNK):
        chunk = keys[start : start + GET_KEY_CHUNK]
        sql = " UNION ALL ".join([_GET] * len(chunk))
        params = [value for key in chunk for value in key]
        for fields in raw.execute(sql, params):
            row = ItemRow._make(fields)
            rows[(row.namespace, row.key)] = row
    return rows

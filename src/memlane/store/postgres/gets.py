"""Gets that arrive together answered by one statement.

A get joins a queue; at most one drain per reader connection runs, each taking everything
queued (up to ``GET_BATCH``) into one statement on one connection. A lone get is a batch of
one; a hundred concurrent gets on four connections are answered by a few statements, not
a hundred round trips waiting for a connection each.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import orjson
from psycopg import sql

from memlane.store.postgres.connections import Connection
from memlane.store.sqlite.codec import ITEM_COLUMNS, ItemRow, encode_namespace, is_storable

__all__ = ["GET_BATCH", "GetBatcher"]

GET_BATCH = 512

Read = Callable[[Callable[[Connection], Awaitable[Any]]], Awaitable[Any]]
_Wanted = tuple[str, str, float, "asyncio.Future[ItemRow | None]"]


class GetBatcher:
    """``await get(namespace, key, now)``: the live row or None."""

    def __init__(self, schema: str, read: Read, drains: int) -> None:
        self._read = read  # runs a read on a pooled connection (retrying a lost one)
        self._drains = drains
        self._running = 0
        self._queue: deque[_Wanted] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        columns = ", ".join(f"x.{c.strip()}" for c in ITEM_COLUMNS.split(","))
        # Each key by its own index probe (LATERAL ... LIMIT 1), with its place in the batch.
        self._statement = sql.SQL(
            "SELECT r.n, " + columns.replace("x.value", "x.value::text") +
            " FROM json_to_recordset(%s::json) AS r(n int, namespace text, key text, now float8)"
            " CROSS JOIN LATERAL (SELECT * FROM {items} i WHERE i.namespace = r.namespace"
            " AND i.key = r.key AND (i.expires_at IS NULL OR i.expires_at > r.now) LIMIT 1) x"
        ).format(items=sql.Identifier(schema, "items"))

    async def get(self, namespace: tuple[str, ...], key: str, now: float) -> ItemRow | None:
        if not is_storable(namespace):
            return None
        future: asyncio.Future[ItemRow | None] = asyncio.get_running_loop().create_future()
        self._queue.append((encode_namespace(namespace), key, now, future))
        if self._running < self._drains:
            self._running += 1
            task = asyncio.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(GET_BATCH, len(self._queue)))]
                batch = [wanted for wanted in batch if not wanted[3].done()]  # not cancelled
                if not batch:
                    continue
                try:
                    rows = await self._read(partial(self._fetch, batch=batch))
                except Exception as exc:
                    for *_, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for n, (*_, future) in enumerate(batch):
                    if not future.done():
                        future.set_result(rows.get(n))
        finally:
            self._running -= 1

    async def _fetch(self, conn: Connection, batch: list[_Wanted]) -> dict[int, ItemRow]:
        payload = orjson.dumps(
            [
                {"n": n, "namespace": namespace, "key": key, "now": now}
                for n, (namespace, key, now, _) in enumerate(batch)
            ]
        )
        cursor = await conn.execute(self._statement, [payload.decode()])
        return {int(row[0]): ItemRow._make(row[1:]) for row in await cursor.fetchall()}

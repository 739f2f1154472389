"""PostgresStore's reads: a pool of connections of their own (never the writer's), and the
statements of gets, searches by filter and ``list_namespaces``.

Rows come back in SQLite's layout (``ItemRow``: the namespace text, the value's JSON text),
so items are built by the same code as SqliteStore's. A search's filter is tested by the
filter language's Python predicate on the rows of its namespace prefix, in pages, in the
order of the search (newest first): the same predicate InMemoryStore runs, so every store
answers alike; what of the filter ``jsonb`` compares as the predicate does goes into the
SQL first (``Filter.jsonb_superset``), so that only rows that may match travel.
``list_namespaces`` reads the live namespaces under the listing's prefix in one statement
and walks them as InMemoryStore walks its sorted set (``text_walk.py``).
"""

from __future__ import annotations

import asyncio
import bisect
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
import numpy as np
import orjson
from psycopg import sql

from memlane.store.namespaces import walk_matching_namespaces
from memlane.store.ops import PreparedList, PreparedSearch
from memlane.store.postgres.connections import Connection
from memlane.store.sqlite.codec import (
    ITEM_COLUMNS,
    ItemRow,
    encode_namespace,
    is_storable,
)
from memlane.store.text_walk import TextOrderWalk, TextRange
from memlane.store.types import StoreClosedError

__all__ = ["FEW_CANDIDATES", "ConnectionPool", "PoolTimeoutError", "Statements"]

_COLUMNS = ITEM_COLUMNS.replace("value", "value::text")
_PAGE = 500  # rows fetched at a time while a filter is tested in Python
_SCAN_PAGE = 5_000  # rows a page while a vector search's filter scans its scope
FEW_CANDIDATES = 256  # a vector search's candidates fetched with their rows up to this


class PoolTimeoutError(TimeoutError):
    """Every reader connection stayed busy for longer than the pool's timeout."""


class ConnectionPool:
    """``size`` connections leased one read at a time; a broken one is replaced."""

    def __init__(
        self, connect: Callable[[], Awaitable[Connection]], size: int, timeout: float
    ) -> None:
        self._connect = connect
        self._size = size
        self.size = size
        self._timeout = timeout
        self._idle: list[Connection] = []
        self._open = 0
        self._waiters: deque[asyncio.Future[Connection | None]] = deque()
        self._closing = False
        self._closings: set[asyncio.Future[None]] = set()  # broken connections closing
        self._lost: set[int] = set()  # ids of leased connections found lost

    async def fill(self) -> None:
        while self._open < self._size:
            self._idle.append(await self._connect())
            self._open += 1

    @asynccontextmanager
    async def lease(self) -> AsyncIterator[Connection]:
        if self._closing:
            raise StoreClosedError("the store is closed")
        conn = await self._take()
        try:
            yield conn
        finally:
            self._give_back(conn)

    async def _take(self) -> Connection:
        if self._idle:
            return self._idle.pop()
        if self._open < self._size:  # one was dropped: connect again
            self._open += 1
            try:
                return await self._connect()
            except BaseException:
                self._open -= 1
                raise
        waiter: asyncio.Future[Connection | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            conn = await asyncio.wait_for(asyncio.shield(waiter), self._timeout)
        except TimeoutError:
            if waiter.done() and not waiter.cancelled() and waiter.result() is not None:
                self._give_back(waiter.result())  # type: ignore[arg-type]
            waiter.cancel()
            raise PoolTimeoutError(
                f"all {self._size} reader connections stayed busy for {self._timeout} s; "
                f"open the store with more readers= or a longer pool_timeout="
            ) from None
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.result() is not None:
                self._give_back(waiter.result())  # type: ignore[arg-type]
            waiter.cancel()
            raise
        if conn is None:  # handed a free slot instead of a connection
            return await self._take()
        return conn

    def discard(self, conn: Connection) -> None:
        """``conn`` (leased) was lost: drop it when given back, and the idle ones now (a
        server restart ends them all); later leases connect again."""
        self._lost.add(id(conn))
        idle, self._idle = self._idle, []
        for other in idle:
            self._lost.add(id(other))
            self._give_back(other)

    def _give_back(self, conn: Connection) -> None:
        lost = id(conn) in self._lost
        self._lost.discard(id(conn))
        if lost or conn.closed or conn.broken or self._closing:
            self._open -= 1
            if not conn.closed:
                closing = asyncio.ensure_future(conn.close())
                self._closings.add(closing)
                closing.add_done_callback(self._closings.discard)
            self._hand(None)
            return
        self._hand(conn)

    def _hand(self, conn: Connection | None) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if conn is not None:
            self._idle.append(conn)

    async def close(self) -> None:
        self._closing = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()
        self._open -= len(idle)
        if self._closings:  # broken connections still closing
            await asyncio.gather(*self._closings, return_exceptions=True)


class Statements:
    """The read statements, with the schema's names spliced in once."""

    def __init__(self, schema: str) -> None:
        items = sql.Identifier(schema, "items")
        live = "(expires_at IS NULL OR expires_at > %s)"
        # A prefix is ``namespace = t OR t. < namespace < t/`` ('/' follows '.').
        scoped = "(namespace = %s OR (namespace > %s AND namespace < %s))"
        order = "ORDER BY updated_at DESC, namespace, key"
        self._items = items
        # With a filter, its jsonb superset goes where {pushed} is (``Filter.jsonb_superset``).
        # {after}: the rows past the last one seen, in the search's order (no OFFSET: a
        # rare match deep in a big scope would make paging by offset quadratic).
        self._page_scoped = (
            f"SELECT {_COLUMNS} FROM {{items}} WHERE {scoped} AND {live}{{pushed}}{{after}}"
            f" {order} LIMIT %s OFFSET %s"
        )
        self._page_all = (
            f"SELECT {_COLUMNS} FROM {{items}} WHERE {live}{{pushed}}{{after}} {order}"
            f" LIMIT %s OFFSET %s"
        )
        self.scan_scoped = sql.SQL(
            f"SELECT DISTINCT namespace FROM {{items}} WHERE {scoped} AND {live}"
            f" ORDER BY namespace"
        ).format(items=items)
        self.scope_ids = sql.SQL(
            f"SELECT id FROM {{items}} WHERE {scoped} AND {live}"
        ).format(items=items)
        # Whether any item lies outside the prefix: three index probes, evaluated once. As
        # ORDER BY ... LIMIT 1 subqueries: written as EXISTS, the planner scanned the table.
        outside = (
            "((SELECT namespace FROM {items} WHERE namespace < %s"
            " ORDER BY namespace DESC LIMIT 1) IS NOT NULL"
            " OR (SELECT namespace FROM {items} WHERE namespace > %s AND namespace <= %s"
            " ORDER BY namespace LIMIT 1) IS NOT NULL"
            " OR (SELECT namespace FROM {items} WHERE namespace >= %s"
            " ORDER BY namespace LIMIT 1) IS NOT NULL)"
        )
        # Rows only when something lies outside the prefix (a one-time filter: a prefix over
        # the whole store reads no rows); none at all sends the caller to ``outside``.
        self.scope_rows = sql.SQL(
            f"SELECT {_COLUMNS} FROM {{items}} WHERE {outside} AND {scoped} AND {live} LIMIT %s"
        ).format(items=items)
        # One statement, one snapshot: whether anything lies outside, whether anything is in.
        self.outside = sql.SQL(
            f"SELECT {outside}, EXISTS(SELECT 1 FROM {{items}} WHERE {scoped} AND {live})"
        ).format(items=items)
        self._scope_all_rows = (
            f"SELECT {_COLUMNS} FROM {{items}} WHERE {scoped} AND {live}{{pushed}}"
        )
        self._all_rows = f"SELECT {_COLUMNS} FROM {{items}} WHERE {live}{{pushed}}"
        self.by_id = sql.SQL(
            f"SELECT {_COLUMNS} FROM {{items}} WHERE id = ANY(%s) AND {live}"
        ).format(items=items)
        self.scan_all = sql.SQL(
            f"SELECT DISTINCT namespace FROM {{items}} WHERE {live} ORDER BY namespace"
        ).format(items=items)

    async def search(self, conn: Connection, op: PreparedSearch, now: float) -> list[ItemRow]:
        """The page of a search without a query: newest first, the filter in Python.

        With a filter: a first page of the scope's rows as they come (one user's namespace
        is answered by it); past it, the rest only through the filter's jsonb superset, a
        page at a time after the last row seen (a rare match in a big store costs one scan
        in PostgreSQL, not every row in Python)."""
        if op.namespace_prefix and not is_storable(op.namespace_prefix):
            return []
        if op.filter.is_empty:
            return await self._page(conn, op, now, op.limit, pushed=False, offset=op.offset)
        matches = op.filter.matches
        kept: list[ItemRow] = []
        wanted = op.offset + op.limit
        rows = await self._page(conn, op, now, _PAGE, pushed=False)
        while True:
            kept.extend(row for row in rows if matches(_value(row)))
            if len(kept) >= wanted or len(rows) < _PAGE:
                return kept[op.offset : wanted]
            rows = await self._page(conn, op, now, _PAGE, pushed=True, after=rows[-1])

    async def _page(
        self,
        conn: Connection,
        op: PreparedSearch,
        now: float,
        limit: int,
        *,
        pushed: bool,
        after: ItemRow | None = None,
        offset: int = 0,
    ) -> list[ItemRow]:
        prefix: list[Any] = []
        if op.namespace_prefix:
            text = encode_namespace(op.namespace_prefix)
            prefix = [text, text + ".", text + "/"]
        template = self._page_scoped if prefix else self._page_all
        condition = op.filter.jsonb_superset("value::jsonb") if pushed else None
        pushed_sql, pushed_args = condition if condition is not None else ("", [])
        after_sql, after_args = "", []
        if after is not None:
            after_sql = (
                " AND (updated_at < %s OR (updated_at = %s AND (namespace, key) > (%s, %s)))"
            )
            after_args = [after.updated_at, after.updated_at, after.namespace, after.key]
        statement = sql.SQL(template).format(
            items=self._items,
            pushed=sql.SQL(" AND " + pushed_sql if pushed_sql else ""),
            after=sql.SQL(after_sql),
        )
        args = [*prefix, now, *pushed_args, *after_args, limit, offset]
        cursor = await conn.execute(statement, args)
        return [ItemRow._make(row) for row in await cursor.fetchall()]

    def _with_filter(self, template: str, op: PreparedSearch) -> tuple[sql.Composed, list[Any]]:
        """``template`` with the filter's jsonb superset in SQL (and its parameters): only
        rows that may match travel; the predicate decides."""
        pushed = None if op.filter.is_empty else op.filter.jsonb_superset("value::jsonb")
        text, params = pushed if pushed is not None else ("", [])
        condition = sql.SQL(" AND " + text if text else "")
        return sql.SQL(template).format(items=self._items, pushed=condition), params

    async def candidates(
        self, conn: Connection, op: PreparedSearch, now: float
    ) -> tuple[np.ndarray | None, dict[int, ItemRow] | None]:
        """Ids of the live items the search's prefix and filter allow (the filter tested
        in Python), with their rows when there are at most ``FEW_CANDIDATES`` of them (one
        user's items: then no second statement fetches the hits' rows); ``None`` ids when a
        prefix alone holds every item (the whole index is searched, without ids)."""
        if op.namespace_prefix and not is_storable(op.namespace_prefix):
            return np.empty(0, dtype=np.int64), {}
        text = encode_namespace(op.namespace_prefix)
        scope = [text, text + ".", text + "/"]
        if op.filter.is_empty:
            probes = [text, text, text + ".", text + "/"]
            cursor = await conn.execute(
                self.scope_rows, [*probes, *scope, now, FEW_CANDIDATES + 1]
            )
            rows = [ItemRow._make(row) for row in await cursor.fetchall()]
            if not rows:  # nothing outside, or nothing inside (or a write in between)
                cursor = await conn.execute(self.outside, [*probes, *scope, now])
                flags = await cursor.fetchone()
                assert flags is not None
                if not flags[0]:
                    return None, None  # the prefix holds every item: search them all
                if not flags[1]:
                    return _ids(rows), {}
                # Both now: a write landed between the statements; take the ids.
            elif len(rows) <= FEW_CANDIDATES:
                return _ids(rows), {row.id: row for row in rows}
            cursor = await conn.execute(self.scope_ids, [*scope, now])
            ids = await cursor.fetchall()
            return np.fromiter((r[0] for r in ids), dtype=np.int64, count=len(ids)), None
        # The scope's rows a page at a time through a server-side cursor, each page tested
        # on a thread: a filter over a big store neither holds the loop nor every row.
        matches = op.filter.matches

        def keep(page: list[Any]) -> list[ItemRow]:
            return [row for row in map(ItemRow._make, page) if matches(orjson.loads(row.value))]

        kept: list[ItemRow] = []
        async with conn.transaction():
            cursor = conn.cursor(name="memlane_candidates")
            if op.namespace_prefix:
                statement, pushed = self._with_filter(self._scope_all_rows, op)
                await cursor.execute(statement, [*scope, now, *pushed])
            else:
                statement, pushed = self._with_filter(self._all_rows, op)
                await cursor.execute(statement, [now, *pushed])
            while page := await cursor.fetchmany(_SCAN_PAGE):
                big = len(page) > _PAGE
                kept += await anyio.to_thread.run_sync(keep, page) if big else keep(page)
            await cursor.close()
        return _ids(kept), {row.id: row for row in kept}

    async def rows_by_id(
        self, conn: Connection, ids: list[int], now: float
    ) -> dict[int, ItemRow]:
        cursor = await conn.execute(self.by_id, [ids, now])
        rows = (ItemRow._make(row) for row in await cursor.fetchall())
        return {row.id: row for row in rows}

    async def list_namespaces(
        self, conn: Connection, op: PreparedList, now: float
    ) -> list[tuple[str, ...]]:
        """The page, walked (``text_walk.py``) over the live namespace texts under the
        conditions' literal prefix, read in one statement in index order."""
        lead = _literal_prefix(op)
        if lead and not is_storable(lead):
            return []
        if lead:
            text = encode_namespace(lead)
            cursor = await conn.execute(self.scan_scoped, [text, text + ".", text + "/", now])
        else:
            cursor = await conn.execute(self.scan_all, [now])
        texts = [str(row[0]) for row in await cursor.fetchall()]

        def seek(ranges: Sequence[TextRange]) -> str | None:
            for low, high in ranges:
                at = bisect.bisect_left(texts, low)
                if at < len(texts) and (high is None or texts[at] < high):
                    return texts[at]
            return None

        def scan(prefix: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
            text = encode_namespace(prefix)
            for found in texts[bisect.bisect_left(texts, text) :]:
                if not found.startswith(text):
                    return
                if prefix and found != text and not found.startswith(text + "."):
                    continue  # a label that goes on past the prefix's last one
                yield tuple(found.split("."))

        walk = TextOrderWalk(seek, scan)
        return walk_matching_namespaces(walk, op.conditions, op.max_depth, op.limit, op.offset)


def _literal_prefix(op: PreparedList) -> tuple[str, ...]:
    """The labels every listed namespace starts with: a prefix condition's, up to its
    first wildcard."""
    for condition in op.conditions:
        if condition.match_type == "prefix":
            labels: list[str] = []
            for label in condition.path:
                if label == "*":
                    break
                labels.append(label)
            return tuple(labels)
    return ()


def _ids(rows: list[ItemRow]) -> np.ndarray:
    return np.fromiter((row.id for row in rows), dtype=np.int64, count=len(rows))


def _value(row: ItemRow) -> Any:
    return orjson.loads(row.value)

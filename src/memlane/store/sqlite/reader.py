"""The read path: a small pool of WAL reader connections; reads never touch the writer.

Gets that arrive together are answered together: they queue up, and one task per free
connection takes the whole queue in a single thread hop. A lone get goes at once.

A query search never holds a connection while FAISS runs. A search over the whole store
goes straight to the search coalescer (concurrent searches share one batched FAISS call
on worker threads), then fetches its rows in one hop. A scoped search takes its candidate
ids from the in-memory scope map (``scopes.py``), a filtered one from SQL; when the
candidates are few (one user's namespace) the vector search and the row fetch happen in
that same hop, otherwise the ids go to the coalescer and the rows come in a second hop.
Hits whose rows vanished meanwhile (a delete committing, an expiry) are replaced by
asking the index for more, so pages stay exact and full.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import aiosqlite
import anyio.to_thread
import numpy as np

from memlane.store.heavy import BIG_VALUE_CHARS
from memlane.store.namespaces import walk_matching_namespaces
from memlane.store.ops import PreparedList, PreparedSearch
from memlane.store.sqlite.codec import (
    ITEM_COLUMNS,
    ItemRow,
    encode_namespace,
    is_storable,
    prefix_condition,
    row_to_item,
    row_to_search_item,
)
from memlane.store.sqlite.connection import run_on_connection_thread
from memlane.store.sqlite.follower import Follower
from memlane.store.sqlite.inline import InlineReader, TooMuchWork
from memlane.store.sqlite.planner import (
    LIVE,
    CandidateIds,
    Found,
    RankedRows,
    candidate_ids,
    page,
    plan_search,
    rows_by_id,
    under,
    where,
)
from memlane.store.sqlite.policies import GET_BATCH, GET_KEY_CHUNK
from memlane.store.sqlite.scopes import ScopeMap
from memlane.store.text_walk import Scan, Seek, TextOrderWalk, TextRange
from memlane.store.timestamps import Clock
from memlane.store.types import Item, SearchItem, StoreClosedError
from memlane.vectors import SearchCoalescer, VectorIndex

__all__ = ["Readers"]

_GET = f"SELECT {ITEM_COLUMNS} FROM items WHERE namespace = ? AND key = ? AND {LIVE}"

_PendingGet = tuple[str, str, bool, "asyncio.Future[Item | None]"]
_T = TypeVar("_T")


class Readers:
    """Reader connections, get coalescing, and the search and listing queries."""

    def __init__(
        self,
        connections: list[aiosqlite.Connection],
        *,
        vectors: VectorIndex | None,
        clock: Clock,
        touch: Callable[[list[int], float], None],
        inline: InlineReader | None = None,
        scopes: ScopeMap | None = None,
        follower: Follower | None = None,
    ) -> None:
        self._connections = list(connections)
        self._follower = follower  # catches up with other processes before vector searches
        self._inline = inline
        self._arriving = 0  # gets at their checkpoint right now
        self._idle: list[aiosqlite.Connection] = list(connections)
        self._waiters: deque[asyncio.Future[aiosqlite.Connection]] = deque()
        self._pending: list[_PendingGet] = []
        self._flushers: set[asyncio.Task[None]] = set()
        self._vectors = vectors
        self._coalescer = SearchCoalescer(vectors) if vectors is not None else None
        self._scopes = scopes
        self._clock = clock
        self._touch = touch
        self.get_hops = 0  # thread hops spent on gets (tests check the coalescing)
        self._crowd_hint = False  # the last coalesced batch held several gets
        self._closing = False  # set by shut(): new reads raise StoreClosedError

    # ---- connection leasing --------------------------------------------------------------

    async def _acquire(self) -> aiosqlite.Connection:
        """A connection for a new read; refused once the store is closing (see ``shut``)."""
        self._check_open()
        return await self._lease()

    def _check_open(self) -> None:
        if self._closing:
            raise StoreClosedError("the store is closed")

    async def _lease(self) -> aiosqlite.Connection:
        if self._idle:
            return self._idle.pop()
        waiter: asyncio.Future[aiosqlite.Connection] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release(waiter.result())  # handed over just as we were cancelled
            raise

    def _release(self, conn: aiosqlite.Connection) -> None:
        if self._pending:
            self._start_flush(conn)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append(conn)

    async def shut(self) -> None:
        """Refuse new reads, let those holding a connection or queued for one finish, and
        end the vector search worker threads (the store closes the connections after)."""
        self._closing = True
        held = [await self._lease() for _ in self._connections]
        self._idle.extend(held)
        if self._coalescer is not None:
            self._coalescer.close()

    # ---- gets ----------------------------------------------------------------------------

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
                rows = self._inline.run(lambda raw: _rows_by_key(raw, [(encoded, key, now)]))
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
        self._check_open()
        future: asyncio.Future[Item | None] = asyncio.get_running_loop().create_future()
        self._pending.append((encoded, key, refresh, future))
        if len(self._pending) == 1 and self._idle:
            self._start_flush(self._idle.pop())
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
        if self._pending and self._idle:  # more waiting: let another connection share it
            self._start_flush(self._idle.pop())
        try:
            if not batch:
                return
            now = self._clock.now()
            keys = [(namespace, key, now) for namespace, key, _, _ in batch]

            def lookup(raw: sqlite3.Connection) -> list[tuple[Item, int, bool] | None]:
                rows = _rows_by_key(raw, keys)
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
            self._release(conn)

    # ---- search --------------------------------------------------------------------------

    async def search(self, op: PreparedSearch, query: np.ndarray | None) -> list[SearchItem]:
        """Filter-only (newest first) or ranked by ``query`` when the store has an index."""
        if not is_storable(op.namespace_prefix):
            return []
        whole_store = not op.namespace_prefix and op.filter.is_empty
        if self._inline is not None and not (whole_store and self._coalescer and query is not None):
            # A checkpoint, as a hop would be: no task hogs the loop. (A whole-store vector
            # search always suspends in the coalescer: no extra turn behind busy writers.)
            await asyncio.sleep(0)
        now = self._clock.now()
        if self._coalescer is None or query is None:
            search = functools.partial(_filter_search, op=op, now=now)
            found = await self._read(search, inline=not op.filter.wide)
        else:
            if self._follower is not None:
                await self._follower.catch_up()
            found = await self._vector_search(op, query, now)
        if op.refresh_ttl:
            touched = [item_id for _, item_id, expiring in found if expiring]
            if touched:
                self._touch(touched, now)
        return [item for item, _, _ in found]

    async def _read(self, fn: Callable[[sqlite3.Connection], _T], inline: bool = True) -> _T:
        """On the loop's inline connection when the read is small, else on a pooled one
        (always pooled with ``inline=False``: a wide filter compiles to SQL off the loop).

        No checkpoint here: ``search`` yields once, up front or in the coalescer. Every
        extra yield would put the search behind every ready task once more (writers,
        under load)."""
        if self._inline is not None and inline:
            try:
                return self._inline.run(fn)
            except TooMuchWork:
                pass
        return await self._on_reader(fn)

    async def _on_reader(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        conn = await self._acquire()
        try:
            return await run_on_connection_thread(conn, fn)
        finally:
            self._release(conn)

    async def _vector_search(
        self, op: PreparedSearch, query: np.ndarray, now: float
    ) -> list[Found]:
        """Exact top ``offset + limit`` among the live items the scope and filter allow."""
        coalescer = self._coalescer
        assert coalescer is not None
        wanted = op.offset + op.limit
        if wanted == 0:
            return []
        candidates: np.ndarray | None = None
        if op.namespace_prefix or not op.filter.is_empty:
            plan = await self._read(
                functools.partial(
                    plan_search, op=op, query=query, now=now, index=coalescer.index,
                    scopes=self._scopes, inline_rows=coalescer.inline_rows,
                ),
                inline=not op.filter.wide,
            )
            if isinstance(plan, RankedRows):
                return plan.found
            if isinstance(plan, CandidateIds):
                candidates = plan.ids
        # Searched whole (the prefix covered every item when asked), an item another
        # namespace gained since must still not come back.
        outside = bool(op.namespace_prefix) and candidates is None
        k = wanted
        while True:
            hits = await coalescer.search(query, k, candidates)
            ids = [item_id for item_id, _ in hits]

            def fetch(raw: sqlite3.Connection, ids: list[int] = ids) -> dict[int, Any]:
                return rows_by_id(raw, ids, now)

            rows = await self._read(fetch)
            kept = [(rows[item_id], score) for item_id, score in hits if item_id in rows]
            if outside:
                kept = [(row, score) for row, score in kept if under(row.namespace, op)]
            # An id can vanish between the index and the table while its delete commits,
            # or by expiring: ask the index for more so the page stays full.
            if len(kept) >= wanted or len(hits) < k:
                return page(kept, op)
            if candidates is None and k >= 4 * wanted:
                # many expired but unswept items: let SQL name the live ones instead
                candidates = await self._read(
                    lambda raw: candidate_ids(raw, op, now), inline=not op.filter.wide
                )
            k *= 2

    async def list_namespaces(self, op: PreparedList) -> list[tuple[str, ...]]:
        """The page by index seeks (``text_walk.py``), all on a reader's thread: a seek or
        two per namespace visited, and only the prefix's range and the page are visited."""
        now = self._clock.now()

        def run(raw: sqlite3.Connection) -> list[tuple[str, ...]]:
            # One read transaction: every seek sees the same snapshot, as one scan did.
            raw.execute("BEGIN")
            try:
                walk = TextOrderWalk(_namespace_seek(raw, now), _namespace_scan(raw, now))
                return walk_matching_namespaces(
                    walk, op.conditions, op.max_depth, op.limit, op.offset
                )
            finally:
                raw.execute("COMMIT")

        return await self._on_reader(run)


# The first live namespace of a range of the (namespace, key) index: one descent, then a
# row per expired item until a live one (expired items wait for the sweeper). A step's
# ranges go in one statement: COALESCE runs each subquery only while those before found
# nothing (measured: ~10 us a statement, most of it the call).
_SEEK_BOUNDED = (
    f"(SELECT namespace FROM items WHERE namespace >= ? AND namespace < ? AND {LIVE}"
    f" ORDER BY namespace LIMIT 1)"
)
_SEEK_OPEN = (
    f"(SELECT namespace FROM items WHERE namespace >= ? AND {LIVE} ORDER BY namespace LIMIT 1)"
)


@functools.lru_cache(maxsize=256)
def seek_sql(bounded: int, open_end: bool) -> str:
    """The statement for ``bounded`` ranges with an end, then one without if ``open_end``."""
    parts = [_SEEK_BOUNDED] * bounded + ([_SEEK_OPEN] if open_end else [])
    return f"SELECT COALESCE({', '.join(parts)}, NULL)"


def _namespace_seek(raw: sqlite3.Connection, now: float) -> Seek:
    def seek(ranges: Sequence[TextRange]) -> str | None:
        if not ranges:
            return None
        params: list[object] = []
        for low, high in ranges:
            params += (low, now) if high is None else (low, high, now)
        open_end = ranges[-1][1] is None
        row = raw.execute(seek_sql(len(ranges) - open_end, open_end), params).fetchone()
        return None if row[0] is None else str(row[0])

    return seek


def _namespace_scan(raw: sqlite3.Connection, now: float) -> Scan:
    def scan(prefix: tuple[str, ...]) -> list[tuple[str, ...]]:
        """In index order, nearly sorted: see ``list_matching_namespaces``."""
        scope, params = prefix_condition(prefix)
        sql = (
            f"SELECT DISTINCT namespace FROM items WHERE {scope} AND {LIVE}"
            f" ORDER BY namespace"
        )
        return [tuple(row[0].split(".")) for row in raw.execute(sql, [*params, now])]

    return scan


def _filter_search(raw: sqlite3.Connection, op: PreparedSearch, now: float) -> list[Found]:
    condition, params = where(op, now)
    sql = (
        f"SELECT {ITEM_COLUMNS} FROM items WHERE {condition} "
        f"ORDER BY updated_at DESC, namespace, key LIMIT ? OFFSET ?"
    )
    rows = map(ItemRow._make, raw.execute(sql, [*params, op.limit, op.offset]).fetchall())
    return [(row_to_search_item(row, None), row.id, row.expiring) for row in rows]


def _rows_by_key(
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



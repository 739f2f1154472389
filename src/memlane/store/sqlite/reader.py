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
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import aiosqlite
import numpy as np

from memlane.store.namespaces import walk_matching_namespaces
from memlane.store.ops import PreparedList, PreparedSearch
from memlane.store.sqlite.codec import (
    ITEM_COLUMNS,
    ItemRow,
    is_storable,
    prefix_condition,
    row_to_search_item,
)
from memlane.store.sqlite.follower import Follower
from memlane.store.sqlite.gets import GetBatcher
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
from memlane.store.sqlite.pool import ReaderPool
from memlane.store.sqlite.scopes import ScopeMap
from memlane.store.text_walk import Scan, Seek, TextOrderWalk, TextRange
from memlane.store.timestamps import Clock
from memlane.store.types import Item, SearchItem
from memlane.vectors import SearchCoalescer, VectorIndex

__all__ = ["Readers"]

_T = TypeVar("_T")


class Readers:
    """Every read: gets (``gets.py``), searches (planned by ``planner.py``) and listings,
    on the inline reader or the pool's connections (``pool.py``)."""

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
        self._pool = ReaderPool(connections)
        self._gets = GetBatcher(self._pool, clock=clock, touch=touch, inline=inline)
        self._follower = follower  # catches up with other processes before vector searches
        self._inline = inline
        self._vectors = vectors
        self._coalescer = SearchCoalescer(vectors) if vectors is not None else None
        self._scopes = scopes
        self._clock = clock
        self._touch = touch

    async def get(self, namespace: tuple[str, ...], key: str, refresh: bool) -> Item | None:
        return await self._gets.get(namespace, key, refresh)

    @property
    def get_hops(self) -> int:
        """Thread hops spent on gets (tests check the coalescing)."""
        return self._gets.get_hops

    async def shut(self) -> None:
        """Refuse new reads, let those holding a connection or queued for one finish, and
        end the vector search worker threads (the store closes the connections after)."""
        await self._pool.shut()
        if self._coalescer is not None:
            self._coalescer.close()

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
        return await self._pool.run(fn)

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

        return await self._pool.run(run)


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






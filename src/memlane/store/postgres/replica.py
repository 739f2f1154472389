"""Each process's in-memory vector index, loaded from PostgreSQL and kept up to date with
every process's commits through the change feed.

Each write transaction of an indexed store appends a row to ``changes`` naming the items it
wrote or removed, and NOTIFYs the schema's channel (a position, never data: NOTIFY payloads
are capped at 8,000 bytes). A catch-up reads, in one snapshot, the feed rows committed since
its last snapshot and those items' current vectors. "Since" is by snapshot visibility, not
by a sequence number: a transaction that took a lower number can commit after a higher one,
and a cursor over the numbers would skip it; a row is new if it was not visible in the last
snapshot (``pg_visible_in_snapshot``), and rows of transactions older than that snapshot's
``xmin`` were all visible then. A catch-up with nothing new costs one statement. Rows
older than ``FEED_KEEP_S`` are trimmed by the writers;
a replica whose last snapshot predates a trim reloads everything.

The writer mirrors its own commits into the replica before acknowledging them (a process
reads its own writes), holding :attr:`Replica.lock` from before its COMMIT until the mirror
is applied; a catch-up holds it from its snapshot until it applied what it read. So a
catch-up either sees a commit or runs wholly before its mirror: never an older state
applied over a newer one. Catch-ups skip the feed rows of their own store.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import anyio.to_thread
import numpy as np
from psycopg import sql

from memlane.store.postgres.connections import Connection
from memlane.store.postgres.vectors import decode_vectors
from memlane.vectors import VectorIndex

__all__ = ["FEED_KEEP_S", "Replica"]

log = logging.getLogger(__name__)

FEED_KEEP_S = 300.0  # feed rows are trimmed after this long; a replica behind it reloads
_LOAD_PAGE = 10_000  # vectors a page while a replica loads


class Replica:
    """A :class:`VectorIndex` that follows the change feed of ``schema``."""

    def __init__(self, schema: str, index: VectorIndex, writer: str) -> None:
        self.schema = schema
        self.index = index
        self.writer = writer  # this store's token in the feed's ``writer`` column
        self.lock = asyncio.Lock()
        self._snapshot: str | None = None  # pg_snapshot text of the last load or catch-up
        self.catch_ups = 0
        self.reloads = 0
        # Set by the writer after a commit of unknown outcome: it may be applied but was
        # never mirrored, and catch-ups skip this store's own feed rows: reload instead.
        self.reload_next = False
        name = sql.Identifier(schema)
        self._all_vectors = sql.SQL(
            "SELECT item_id, embedding FROM {}.vectors ORDER BY item_id, n"
        ).format(name)
        self._vectors_of = sql.SQL(
            "SELECT item_id, embedding FROM {}.vectors WHERE item_id = ANY(%s) ORDER BY item_id, n"
        ).format(name)
        self._look = sql.SQL(
            "SELECT pg_current_snapshot()::text,"
            " COALESCE((SELECT value::xid8 >= pg_snapshot_xmin(%s::pg_snapshot)"
            "  FROM {schema}.memlane_meta WHERE name = 'feed_trimmed_below'), false),"
            " ARRAY(SELECT DISTINCT unnest(item_ids) FROM {schema}.changes"
            "  WHERE xid >= pg_snapshot_xmin(%s::pg_snapshot)"
            "  AND NOT pg_visible_in_snapshot(xid, %s::pg_snapshot) AND writer <> %s)"
        ).format(schema=name)

    async def load(self, conn: Connection) -> None:
        """Load every vector, and remember the snapshot they were read in."""
        async with self.lock:
            await self._reload(conn)

    async def catch_up(self, conn: Connection) -> int:
        """Apply what other processes committed since the last look; how many items (-1:
        everything was reloaded). One statement when nothing changed: it takes its
        snapshot, whether the feed was trimmed past the last one, and the items of the rows
        committed since (one statement sees one snapshot); the vectors of those items are
        read after, in a state as new or newer, which a later change corrects again."""
        async with self.lock:
            assert self._snapshot is not None, "catch_up before load"
            last = self._snapshot
            cursor = await conn.execute(self._look, [last, last, last, self.writer])
            row = await cursor.fetchone()
            assert row is not None
            snapshot, behind, ids = str(row[0]), bool(row[1]), list(row[2] or [])
            behind = behind or self.reload_next
            if behind:
                await self._read_all(conn)
                self.reload_next = False
                self.reloads += 1
            elif ids:
                await self._apply(conn, [int(i) for i in ids])
            self._snapshot = snapshot
            self.catch_ups += 1
            return -1 if behind else len(ids)

    async def _reload(self, conn: Connection) -> None:
        async with conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            self._snapshot = await _snapshot(conn)
            await self._read_all(conn)

    async def _read_all(self, conn: Connection) -> None:
        """Every vector, through a server-side cursor a page at a time, each page decoded
        on a thread, and the index loaded there too (the replica's lock keeps it the one
        writer): a reload of a big store holds neither the loop nor a second copy of it."""
        dims = self.index.dims
        owners: list[np.ndarray] = []
        blocks: list[np.ndarray] = []
        async with conn.transaction():
            cursor = conn.cursor(name="memlane_vectors", binary=True)
            await cursor.execute(self._all_vectors)
            while page := await cursor.fetchmany(_LOAD_PAGE):
                ids, vectors = await anyio.to_thread.run_sync(_decode, page, dims)
                owners.append(ids)
                blocks.append(vectors)
            await cursor.close()
        await anyio.to_thread.run_sync(self._replace_all, owners, blocks)

    def _replace_all(self, owners: list[np.ndarray], blocks: list[np.ndarray]) -> None:
        every = np.concatenate(owners) if owners else np.empty(0, np.int64)
        ids, counts = np.unique(every, return_counts=True)  # rows come ordered by item
        stale = np.setdiff1d(self.index.item_ids(), ids, assume_unique=True)
        if len(stale):
            self.index.remove(stale.tolist())
        vectors = np.concatenate(blocks) if blocks else np.empty((0, self.index.dims), "f4")
        self.index.load(ids, counts, vectors)

    async def _apply(self, conn: Connection, ids: list[int]) -> None:
        cursor = conn.cursor(binary=True)
        await cursor.execute(self._vectors_of, [ids])
        owners, vectors = _decode(await cursor.fetchall(), self.index.dims)
        found, counts = np.unique(owners, return_counts=True)
        gone = sorted(set(ids) - set(found.tolist()))
        if gone:
            self.index.remove(gone)
        if len(found):
            self.index.load(found, counts, vectors)


async def _snapshot(conn: Connection) -> str:
    cursor = await conn.execute("SELECT pg_current_snapshot()::text")
    row = await cursor.fetchone()
    assert row is not None
    return str(row[0])


def _decode(rows: list[Any], dims: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of (item_id, vector in binary): the owners and the (n, dims) vectors."""
    owners = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    return owners, decode_vectors([row[1] for row in rows], dims)

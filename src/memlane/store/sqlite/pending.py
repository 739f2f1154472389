"""Items written while an indexed file was open with ``index=False``, embedded later.

Such a store writes no vectors but marks each item it writes (``pending_vectors``, in the
same transaction); the next open with the index embeds the marked items before the store
is handed out, so nothing written meanwhile is ever missing from a query.
"""

from __future__ import annotations

import logging
import sqlite3
from functools import partial

import aiosqlite
import numpy as np
import orjson

from memlane.store.indexing import Indexer, decode_fields
from memlane.store.sqlite import changelog
from memlane.store.sqlite.connection import run_on_connection_thread
from memlane.store.sqlite.policies import PENDING_CHUNK

__all__ = ["embed_pending", "vector_blob"]

log = logging.getLogger("memlane.store.sqlite")


_SELECT = (
    "SELECT p.item_id, p.fields, i.value, i.updated_at"
    " FROM pending_vectors p JOIN items i ON i.id = p.item_id"
    " WHERE p.item_id > ? ORDER BY p.item_id LIMIT ?"
)


def vector_blob(vectors: np.ndarray) -> bytes:
    """How an item's ``(k, dims)`` vectors are stored: little-endian float32, row after row."""
    return vectors.astype("<f4", copy=False).tobytes()


async def embed_pending(conn: aiosqlite.Connection, indexer: Indexer) -> int:
    """Give vectors to every marked item, ``PENDING_CHUNK`` at a time; return how many.

    An item whose text the embedder rejects keeps no vector (logged, as its put succeeded
    long ago); an embed call that fails outright fails the open, marks kept for next time.
    """
    await run_on_connection_thread(conn, _drop_orphans)
    done = 0
    after = -1
    while rows := await run_on_connection_thread(conn, partial(_next_chunk, after=after)):
        after = rows[-1][0]
        ids = [row[0] for row in rows]
        stamps = {row[0]: row[3] for row in rows}
        values = [orjson.loads(row[2]) for row in rows]
        paths = [decode_fields(row[1]) for row in rows]
        plan = indexer.plan_values(list(zip(paths, values, strict=True)))
        embedded = await indexer.embedder.aembed_texts(plan.texts) if plan.texts else None
        stored: list[tuple[int, bytes]] = []
        for item_id, outcome in zip(ids, plan.split(embedded, indexer.dims), strict=True):
            if outcome.vectors is None:
                log.warning("memlane: item %d written with index=False cannot be embedded: %s",
                            item_id, outcome.error)
            elif len(outcome.vectors):
                stored.append((item_id, vector_blob(outcome.vectors)))
        await run_on_connection_thread(conn, partial(_store, stamps=stamps, stored=stored))
        done += len(ids)
    return done


def _next_chunk(
    raw: sqlite3.Connection, *, after: int
) -> list[tuple[int, str | None, str, int]]:
    return raw.execute(_SELECT, (after, PENDING_CHUNK)).fetchall()


def _store(
    raw: sqlite3.Connection, *, stamps: dict[int, int], stored: list[tuple[int, bytes]]
) -> None:
    """Store the vectors of the items embedded, unless another process rewrote an item
    meanwhile (its write has the right vectors, or a mark of its own): its mark stays."""
    raw.execute("BEGIN IMMEDIATE")
    try:
        current = dict(_current_stamps(raw, list(stamps)))
        ids = [i for i, stamp in stamps.items() if current.get(i, stamp) == stamp]
        kept = set(ids)
        stored = [row for row in stored if row[0] in kept]
        raw.executemany("DELETE FROM vectors WHERE item_id = ?", [(i,) for i in ids])
        raw.executemany("INSERT INTO vectors (item_id, embedding) VALUES (?, ?)", stored)
        raw.executemany("DELETE FROM pending_vectors WHERE item_id = ?", [(i,) for i in ids])
        changelog.append(raw, ids, [], [])  # other processes reload these items' vectors
        raw.execute("COMMIT")
    except BaseException:
        if raw.in_transaction:
            raw.execute("ROLLBACK")
        raise


def _current_stamps(raw: sqlite3.Connection, ids: list[int]) -> list[tuple[int, int]]:
    marks = ",".join("?" * len(ids))
    return raw.execute(f"SELECT id, updated_at FROM items WHERE id IN ({marks})", ids).fetchall()


def _drop_orphans(raw: sqlite3.Connection) -> None:
    """Marks of items deleted or swept since they were written."""
    raw.execute("DELETE FROM pending_vectors WHERE item_id NOT IN (SELECT id FROM items)")

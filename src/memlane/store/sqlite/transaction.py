"""One writer batch's SQL: what runs between ``BEGIN IMMEDIATE`` and ``COMMIT``, nothing else.

:func:`apply` takes a plain ``sqlite3`` connection inside a write transaction and a
:class:`Batch` (the embedded, coalesced puts with their stamps, the reads whose expiry to
push back, the sweep to run) and returns the :class:`Changes` it made: the rows it wrote
and removed, with the item ids, vectors and namespaces the mirror needs
(``mirror.py``). It touches no in-memory state, so it is tested against a bare
connection; the writer owns the transaction around it, the mirror lock and the mirror.

Item ids come from the file (``changelog.next_item_id``), inside the transaction; with
``Layout.log`` the transaction appends its changes to the change log other processes
follow (``changelog.py``).
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from memlane.store.embedding_stage import Entry
from memlane.store.indexing import encode_fields
from memlane.store.sqlite import changelog
from memlane.store.sqlite.codec import encode_namespace
from memlane.store.sqlite.lease import claim as claim_lease
from memlane.store.sqlite.pending import vector_blob

__all__ = ["Batch", "Changes", "Entry", "Layout", "SweepPlan", "apply", "touched"]


class SweepPlan(NamedTuple):
    """The sweep of a batch: an explicit one always runs; a periodic one (``lease``: owner,
    seconds) only while this process holds the sweeper lease (``lease.py``)."""

    explicit: bool
    lease: tuple[str, float] | None


@dataclass(frozen=True, slots=True)
class Layout:
    """How a store writes its file: ``indexed`` keeps vectors beside the items (item ids
    then stay dense under rewrites); ``mark_pending`` marks what it writes for a later
    embedding (``index=False`` on an indexed file); ``log`` appends each transaction's
    changes to the log other processes follow."""

    indexed: bool
    mark_pending: bool = False
    log: bool = False


@dataclass(slots=True)
class Changes:
    """What a transaction did: what the mirror applies to the vector index and scope map,
    and what the writer reports (swept, bytes written, the log's row)."""

    upserted: list[tuple[int, np.ndarray]] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    swept: int = 0
    fresh_ids: int | None = None  # ids taken for new items (indexed stores), None: all offered
    # (namespace, item id) of items written and of rows deleted, for the scope map
    joined: list[tuple[str, int]] = field(default_factory=list)
    added: list[tuple[str, int]] = field(default_factory=list)  # the joined with new ids
    left: list[tuple[str, int]] = field(default_factory=list)
    expiries: list[float] = field(default_factory=list)  # expires_at of rows written
    expiry_floor: float | None = None  # after a sweep: the earliest expires_at left
    written: int = 0  # about how many bytes the rows took (for the WAL checkpoint)
    seq: int = 0  # the change log's row for this transaction (0: none)
    layout: Layout | None = None  # the store's layout from now on, when it had to change
    swept_now: bool = False  # whether the batch's sweep ran (see SweepPlan)


_UPSERT = """
INSERT INTO items (id, namespace, key, value, created_at, updated_at, ttl_minutes, expires_at)
VALUES (?8, ?1, ?2, ?3, ?4, ?4, ?5, ?6)
ON CONFLICT (namespace, key) DO UPDATE SET
    value = excluded.value,
    created_at = CASE WHEN items.expires_at IS NOT NULL AND items.expires_at <= ?7
                      THEN excluded.created_at ELSE items.created_at END,
    updated_at = excluded.updated_at,
    ttl_minutes = excluded.ttl_minutes,
    expires_at = excluded.expires_at
"""
# An imported item keeps the timestamps it brings, created_at included.
_IMPORT = """
INSERT INTO items (id, namespace, key, value, created_at, updated_at, ttl_minutes, expires_at)
VALUES (?8, ?1, ?2, ?3, ?4, ?9, ?5, ?6)
ON CONFLICT (namespace, key) DO UPDATE SET
    value = excluded.value,
    created_at = excluded.created_at,
    updated_at = excluded.updated_at,
    ttl_minutes = excluded.ttl_minutes,
    expires_at = excluded.expires_at
"""
_DELETE = "DELETE FROM items WHERE namespace = ? AND key = ?"
_DELETE_VECTORS = "DELETE FROM vectors WHERE item_id = ?"
_ITEM_ID = "SELECT id FROM items WHERE namespace = ? AND key = ?"
_INSERT_VECTORS = "INSERT INTO vectors (item_id, embedding) VALUES (?, ?)"
_MARK = "INSERT OR REPLACE INTO pending_vectors (item_id, fields) VALUES (?, ?)"
_UNMARK = "DELETE FROM pending_vectors WHERE item_id = ?"
_TOUCH = (
    "UPDATE items SET expires_at = MAX(expires_at, ? + ttl_minutes * 60)"
    " WHERE id = ? AND ttl_minutes IS NOT NULL"
)
_EARLIEST_EXPIRY = "SELECT MIN(expires_at) FROM items WHERE expires_at IS NOT NULL"
_SWEEP = (
    "DELETE FROM items WHERE expires_at IS NOT NULL AND expires_at <= ? RETURNING id, namespace"
)


def touched(changes: Changes) -> list[int]:
    """The ids whose vector-index entry the transaction changed."""
    return [*changes.removed, *(item_id for item_id, _ in changes.upserted)]


@dataclass(slots=True)
class Batch:
    """What one transaction writes."""

    entries: list[Entry]
    stamps: list[int]  # updated_at of each entry's row
    touches: list[tuple[float, int]] = field(default_factory=list)  # (read at, item id)
    sweep: SweepPlan | None = None
    now: float = 0.0


def apply(raw: sqlite3.Connection, batch: Batch, layout: Layout) -> Changes:
    """Run ``batch``'s statements inside the caller's write transaction."""
    changes = Changes()
    entries = batch.entries
    if layout.indexed:
        first = changelog.next_item_id(raw)
    else:
        first, indexed_now = changelog.next_item_id_and_index(raw)
        if indexed_now:
            # Another process gave the file an index since this store opened without one:
            # from now on write as index=False does (marks for embedding, logged changes).
            layout = changes.layout = Layout(indexed=True, mark_pending=True, log=True)
    ids = range(first, first + len(entries))
    _write_entries(raw, entries, batch.stamps, batch.now, layout.indexed, changes, ids,
                   layout.mark_pending)
    taken = len(entries) if changes.fresh_ids is None else changes.fresh_ids
    if taken:
        changelog.set_next_item_id(raw, first + taken)
    if batch.touches:
        raw.executemany(_TOUCH, batch.touches)
    sweep = batch.sweep
    if sweep is not None:
        holds = sweep.lease is not None and claim_lease(raw, *sweep.lease, batch.now)
        if sweep.explicit or holds:
            _sweep(raw, batch.now, layout.indexed, changes)
            changes.swept_now = True
    if layout.log:
        ids_changed = {*changes.removed, *(item_id for _, item_id in changes.joined)}
        ids_changed.update(item_id for item_id, _ in changes.upserted)
        # Touches alone change nothing held in memory; a sweep moves the earliest expiry.
        if ids_changed or changes.left or changes.swept_now:
            changes.seq = changelog.append(raw, sorted(ids_changed), changes.added, changes.left)
    return changes


def _write_entries(
    raw: sqlite3.Connection,
    entries: list[Entry],
    stamps: list[int],
    now: float,
    indexed: bool,
    changes: Changes,
    ids: range,
    mark: bool = False,
) -> None:
    """Upserts and deletes for one transaction, a few statements for the whole batch.

    Each put offers a fresh id from ``ids``, read from the file inside the transaction (an
    overwrite keeps its row's id), so an id never names two items, in any process: the
    vector indexes map ids to items.

    With an index, vectors live in their own table beside the items (filter scans stay
    small); the item ids the vector index needs are looked up once per key, before the
    upsert, so only new keys take fresh ids: ids stay dense under rewrites, which keeps
    the index's id -> row array small (``directory.py``).
    """
    rows: list[tuple[Any, ...]] = []
    imported: list[tuple[Any, ...]] = []
    put_entries: list[Entry] = []
    next_id = ids.start
    deletes: list[tuple[str, str]] = []
    for entry, stamp in zip(entries, stamps, strict=True):
        put = entry.put
        namespace = encode_namespace(put.namespace)
        changes.written += len(put.encoded or b"") + 200
        if put.encoded is None:
            deletes.append((namespace, put.key))
            continue
        ttl = put.ttl_minutes
        expires_at = now + ttl * 60 if ttl is not None else None
        row: tuple[Any, ...]
        if put.imported is not None:
            created, updated, expires_at = put.imported
            row = (namespace, put.key, put.encoded.decode(), created, ttl, expires_at, now,
                   next_id, updated)
            imported.append(row)
        else:
            row = (namespace, put.key, put.encoded.decode(), stamp, ttl, expires_at, now, next_id)
        rows.append(row)
        next_id += 1
        put_entries.append(entry)
    stamped = [row for row in rows if len(row) == 8] if imported else rows
    if not indexed:
        raw.executemany(_UPSERT, stamped)
        raw.executemany(_IMPORT, imported)
        raw.executemany(_DELETE, deletes)
        return
    deleted_ids = [_item_id(raw, key) for key in deletes]
    existing = [_item_id(raw, (row[0], row[1])) for row in rows]
    put_ids: list[int] = []
    taken = ids.start
    for n, (row, found) in enumerate(zip(rows, existing, strict=True)):
        if found is None:
            found, taken = taken, taken + 1
        rows[n] = (*row[:7], found, *row[8:])  # ?8: the row's id, new or kept
        put_ids.append(found)
    changes.fresh_ids = taken - ids.start
    stamped = [row for row in rows if len(row) == 8] if imported else rows
    imported = [row for row in rows if len(row) == 9]
    raw.executemany(_DELETE, deletes)
    raw.executemany(_UPSERT, stamped)
    raw.executemany(_IMPORT, imported)
    stale = [(item_id,) for item_id in [*existing, *deleted_ids] if item_id is not None]
    raw.executemany(_DELETE_VECTORS, stale)
    vector_rows: list[tuple[int, bytes]] = []
    for entry, item_id in zip(put_entries, put_ids, strict=True):
        vectors = entry.vectors
        if vectors is not None and len(vectors):
            vector_rows.append((item_id, vector_blob(vectors)))
            changes.upserted.append((item_id, vectors))
        else:
            changes.removed.append(item_id)
    raw.executemany(_INSERT_VECTORS, vector_rows)
    if mark:
        _mark_pending(raw, put_entries, put_ids, deleted_ids)
    changes.removed.extend(item_id for item_id in deleted_ids if item_id is not None)
    changes.joined.extend((row[0], item_id) for row, item_id in zip(rows, put_ids, strict=True))
    changes.added.extend(
        (row[0], item_id)
        for row, found, item_id in zip(rows, existing, put_ids, strict=True)
        if found is None
    )
    changes.expiries.extend(row[5] for row in rows if row[5] is not None)
    changes.left.extend(
        (namespace, item_id)
        for (namespace, _), item_id in zip(deletes, deleted_ids, strict=True)
        if item_id is not None
    )


def _sweep(raw: sqlite3.Connection, now: float, indexed: bool, changes: Changes) -> None:
    """Delete every expired item (inside the batch's transaction)."""
    gone_rows = raw.execute(_SWEEP, (now,)).fetchall()
    swept = [row[0] for row in gone_rows]
    changes.left.extend((row[1], row[0]) for row in gone_rows)
    if indexed:
        raw.executemany(_DELETE_VECTORS, [(i,) for i in swept])
        if swept and changes.joined:  # an import already past its expiry
            gone = set(swept)
            changes.upserted = [u for u in changes.upserted if u[0] not in gone]
            changes.joined = [j for j in changes.joined if j[1] not in gone]
            changes.added = [j for j in changes.added if j[1] not in gone]
    changes.removed.extend(swept)
    changes.swept = len(swept)
    if indexed:
        (floor,) = raw.execute(_EARLIEST_EXPIRY).fetchone()
        changes.expiry_floor = math.inf if floor is None else float(floor)


def _mark_pending(
    raw: sqlite3.Connection,
    put_entries: list[Entry],
    put_ids: list[int],
    deleted_ids: list[int | None],
) -> None:
    """Mark what an ``index=False`` store wrote, for the next open with the index; a
    delete or an ``index=False`` put leaves nothing to embed."""
    marks: list[tuple[int, str | None]] = []
    unmarks = [(item_id,) for item_id in deleted_ids if item_id is not None]
    for entry, item_id in zip(put_entries, put_ids, strict=True):
        if entry.put.index is False:
            unmarks.append((item_id,))
        else:
            marks.append((item_id, encode_fields(entry.put.index)))
    raw.executemany(_UNMARK, unmarks)
    raw.executemany(_MARK, marks)


def _item_id(raw: sqlite3.Connection, key: tuple[str, str]) -> int | None:
    row = raw.execute(_ITEM_ID, key).fetchone()
    return None if row is None else int(row[0])

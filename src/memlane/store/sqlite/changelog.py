"""What the processes sharing one store file tell each other: item ids and the change log.

Several processes may open one file, each with its own writer and its own in-memory vector
index and scope map. Two things make that safe, both inside each write transaction:

- **Item ids come from the file** (``next_item_id`` in ``memlane_meta``), never from a
  per-process counter, and are never reused: a stale id in another process's index names
  a deleted item, never somebody else's.
- **Every write transaction appends one row to** ``changes``: the ids of the items it
  wrote or removed, and the (namespace, id) of those it created and of those it removed.
  Another process reads the rows past the last one it applied and reloads those items
  from the tables
  (``follower.py``). The row says *which* items changed, not *how*: the tables are the
  truth, so a follower never applies a value older than what it already holds.

Only files with an index keep the log (nothing in memory depends on the rest). It is
trimmed to the last ``LOG_KEEP_S`` seconds by the writers; a follower that fell further
behind reloads everything.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import orjson

__all__ = [
    "Change",
    "append",
    "ids_logged_since",
    "latest_seq",
    "next_item_id",
    "next_item_id_and_index",
    "read_since",
    "seqs_since",
    "set_next_item_id",
    "trim",
]

I64 = npt.NDArray[np.int64]

_NEXT_ID = "SELECT CAST(value AS INTEGER) FROM memlane_meta WHERE name = 'next_item_id'"
_NEXT_ID_AND_INDEX = (
    "SELECT CAST(value AS INTEGER),"
    " EXISTS(SELECT 1 FROM memlane_meta WHERE name IN ('dims', 'index'))"
    " FROM memlane_meta WHERE name = 'next_item_id'"
)
_SET_NEXT_ID = "UPDATE memlane_meta SET value = ? WHERE name = 'next_item_id'"
_APPEND = "INSERT INTO changes (item_ids, added, removed) VALUES (?, ?, ?)"
_SINCE = "SELECT seq, item_ids, added, removed FROM changes WHERE seq > ? ORDER BY seq"
_SEQS_SINCE = "SELECT seq FROM changes WHERE seq > ? ORDER BY seq LIMIT ?"
_LATEST = "SELECT COALESCE(MAX(seq), 0) FROM changes"
# length() of a blob comes from its record header: the ids themselves are not read
_IDS_SINCE = "SELECT COALESCE(SUM(length(item_ids)), 0) FROM changes WHERE seq > ?"
_TRIM = "DELETE FROM changes WHERE seq < ?"


@dataclass(frozen=True, slots=True)
class Change:
    """One committed write transaction, as the log holds it."""

    seq: int
    item_ids: I64
    added: list[tuple[str, int]]  # (namespace, id) of the items it created
    removed: list[tuple[str, int]]  # (namespace, id) of the items it deleted


def next_item_id(raw: sqlite3.Connection) -> int:
    """The first id no item has had yet (read inside the write transaction)."""
    row = raw.execute(_NEXT_ID).fetchone()
    if row is None:
        raise RuntimeError("the store file has no next_item_id: its schema is damaged")
    return int(row[0])


def next_item_id_and_index(raw: sqlite3.Connection) -> tuple[int, bool]:
    """The next item id, and whether the file has an index (a store opened without one
    checks in each transaction: another process may have added it since)."""
    row = raw.execute(_NEXT_ID_AND_INDEX).fetchone()
    if row is None:
        raise RuntimeError("the store file has no next_item_id: its schema is damaged")
    return int(row[0]), bool(row[1])


def set_next_item_id(raw: sqlite3.Connection, value: int) -> None:
    raw.execute(_SET_NEXT_ID, (value,))


def append(
    raw: sqlite3.Connection,
    item_ids: Iterable[int],
    added: list[tuple[str, int]],
    removed: list[tuple[str, int]],
) -> int:
    """Log a transaction's changes (inside it); its sequence number."""
    blob = np.fromiter(item_ids, dtype="<i8").tobytes()
    seq = raw.execute(_APPEND, (blob, _pairs_text(added), _pairs_text(removed))).lastrowid
    assert seq is not None
    return seq


def read_since(raw: sqlite3.Connection, seq: int) -> list[Change]:
    """The changes committed after ``seq``, oldest first."""
    return [
        Change(
            int(row[0]),
            np.frombuffer(row[1], dtype="<i8").astype(np.int64),
            _pairs(row[2]),
            _pairs(row[3]),
        )
        for row in raw.execute(_SINCE, (seq,))
    ]


def _pairs_text(pairs: list[tuple[str, int]]) -> str | None:
    return orjson.dumps(pairs).decode() if pairs else None


def _pairs(text: str | None) -> list[tuple[str, int]]:
    return [(str(ns), int(i)) for ns, i in orjson.loads(text)] if text else []


def seqs_since(raw: sqlite3.Connection, seq: int, limit: int) -> list[int]:
    """Only the sequence numbers after ``seq``, at most ``limit`` (the primary key's range)."""
    return [int(row[0]) for row in raw.execute(_SEQS_SINCE, (seq, limit))]


def ids_logged_since(raw: sqlite3.Connection, seq: int) -> int:
    """How many item ids the changes after ``seq`` name, repeats counted (they bound the
    pairs those rows hold too: every created or removed item is among its row's ids)."""
    (size,) = raw.execute(_IDS_SINCE, (seq,)).fetchone()
    return int(size) // 8


def latest_seq(raw: sqlite3.Connection) -> int:
    row = raw.execute(_LATEST).fetchone()
    return int(row[0])


def trim(raw: sqlite3.Connection, below: int) -> None:
    """Drop the changes before ``below`` (never the newest: seqs stay increasing)."""
    raw.execute(_TRIM, (below,))

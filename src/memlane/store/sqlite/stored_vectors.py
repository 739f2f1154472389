"""Loading the vector index from the vectors table: all of it on open, or some items again
(another process changed them, or mirroring a commit failed: the table is the truth). The
reads need the file, the replacing only memory, so the two are separate steps."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import numpy as np

from memlane.vectors import VectorIndex

__all__ = ["load_vectors", "read_rows", "replace_items"]

_ID_CHUNK = 500


def load_vectors(raw: sqlite3.Connection, vectors: VectorIndex) -> None:
    """Rebuild the in-memory vector index from the stored float32 blobs, in bulk.

    The blobs are joined into one buffer and handed to ``VectorIndex.load`` as one array:
    no per-item numpy objects or dictionary updates (100k items load in well under a
    second; see benchmarks/README.md).
    """
    _load_rows(raw.execute("SELECT item_id, embedding FROM vectors").fetchall(), vectors)


def read_rows(raw: sqlite3.Connection, item_ids: Sequence[int]) -> list[tuple[int, bytes]]:
    """The stored ``(item id, vectors blob)`` of those of ``item_ids`` that have any."""
    rows: list[tuple[int, bytes]] = []
    for start in range(0, len(item_ids), _ID_CHUNK):
        chunk = list(item_ids[start : start + _ID_CHUNK])
        marks = ",".join("?" * len(chunk))
        sql = f"SELECT item_id, embedding FROM vectors WHERE item_id IN ({marks})"
        rows.extend(raw.execute(sql, chunk).fetchall())
    return rows


def replace_items(
    vectors: VectorIndex, item_ids: Sequence[int], rows: Sequence[tuple[int, bytes]]
) -> None:
    """Make the index hold exactly ``rows`` (from :func:`read_rows`) for ``item_ids``: an
    item without a row (deleted or unindexed) leaves the index. Memory only."""
    stored = {row[0] for row in rows}
    gone = [item_id for item_id in item_ids if item_id not in stored]
    if gone:
        vectors.remove(gone)
    _load_rows(list(rows), vectors)


def _load_rows(rows: list[tuple[int, bytes]], vectors: VectorIndex) -> None:
    if not rows:
        return
    width = vectors.dims * 4
    ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    sizes = np.fromiter((len(row[1]) for row in rows), dtype=np.int64, count=len(rows))
    damaged = np.flatnonzero((sizes % width != 0) | (sizes == 0))
    if len(damaged):
        at = int(damaged[0])
        raise ValueError(
            f"the stored vectors of item {int(ids[at])} are {int(sizes[at])} bytes, not a "
            f"positive multiple of {width} ({vectors.dims} float32 values): the file is damaged"
        )
    buffer = b"".join([row[1] for row in rows])
    rows.clear()
    matrix = np.frombuffer(buffer, dtype="<f4").reshape(-1, vectors.dims)
    vectors.load(ids, sizes // width, matrix)

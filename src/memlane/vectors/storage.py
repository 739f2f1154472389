"""Row storage for the vector index: append-only chunks with versioned deaths.

Why this shape. A FAISS scan must never see a row change under it, yet writers must never
wait for a scan (InMemoryStore applies index changes on the event loop, SqliteStore on its
connection's thread between commits). So rows are never moved or overwritten while a
reader may look at them:

* Vectors live in fixed-capacity chunks (``chunk_rows_for(dims)`` rows, ~192 MiB; one
  float32 array each, a contiguous block FAISS scans in place). Writers only append past
  the rows a published :class:`Snapshot` shows, so a reader's rows ``[0, length)`` are
  immutable for it. Growth never copies: a full chunk is sealed and a new one starts (and
  untouched pages of a new chunk are never resident, so memory follows the rows written;
  a mostly dead tail is sealed early, see ``VectorIndex._maybe_compact``).
* A delete writes the new version into ``died`` for the item's rows (O(rows), no scan). A
  reader at version ``v`` treats a row as live while ``died > v``: what it sees is exactly
  the snapshot it started from, however long it runs.
* Sealed chunks that are mostly dead are compacted into fresh chunk objects; readers that
  still hold the old objects keep reading them safely (they stay alive by reference).

An item's vectors are one contiguous *block* inside one chunk; every row records its
block's first local row and length, so scoring an item never needs a dictionary.
A global row is ``slot << SHIFT | local``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "ALIVE",
    "CHUNK_BYTES",
    "LOCAL_MASK",
    "SHIFT",
    "Chunk",
    "Snapshot",
    "block_rows",
    "chunk_rows_for",
]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

ALIVE = np.iinfo(np.int64).max
# Chunks are big so that a search makes few FAISS calls: each call gives up the GIL and
# must win it back, which costs up to the interpreter's switch interval (5 ms) when the
# event loop is busy. Measured at 100k x 384 beside 1,000 writers: a search over four
# 32k-row chunks took 14.6 ms in its thread (p50), over one 131k-row chunk 7.6 ms.
# Untouched pages of a chunk are never resident, so a small store stays small (a small
# store rewriting its items over and over gets its tail sealed and compacted early).
CHUNK_BYTES = 192 * 2**20
SHIFT = 32
LOCAL_MASK = (1 << SHIFT) - 1


def chunk_rows_for(dims: int) -> int:
    """Rows per chunk for ``dims``: ``CHUNK_BYTES`` of float32 (131,072 rows at 384 dims)."""
    return max(4_096, min(1 << 17, CHUNK_BYTES // (4 * dims)))


class Chunk:
    """Capacity-sized arrays for rows; only the writer appends, only past published rows."""

    __slots__ = ("count", "died", "first", "live", "owner", "populated", "vecs")

    def __init__(self, capacity: int, dims: int) -> None:
        self.vecs: F32 = np.empty((capacity, dims), dtype=np.float32)
        self.owner: I64 = np.empty(capacity, dtype=np.int64)
        self.first = np.empty(capacity, dtype=np.int32)  # local row where the block starts
        self.count = np.empty(capacity, dtype=np.int32)  # rows in the block
        self.died: I64 = np.empty(capacity, dtype=np.int64)  # version of death, or ALIVE
        self.live = 0  # live rows, kept by the writer
        self.populated = 0  # rows asked to be faulted in ahead of the writer (prefault.py)

    def arrays(self) -> tuple[np.ndarray, ...]:
        """Every per-row array (rows are their first axis)."""
        return (self.vecs, self.owner, self.first, self.count, self.died)

    @property
    def capacity(self) -> int:
        return len(self.owner)

    def write(self, at: int, owners: I64, counts: I64, vectors: F32) -> I64:
        """Append whole blocks at local row ``at``; return the blocks' first local rows."""
        rows = len(vectors)
        offsets = np.zeros(len(counts), dtype=np.int64)
        np.cumsum(counts[:-1], out=offsets[1:])
        starts = offsets + at
        end = at + rows
        self.vecs[at:end] = vectors
        if rows == len(counts):  # one vector an item, the common case: no repeats
            self.owner[at:end] = owners
            self.first[at:end] = starts
            self.count[at:end] = 1
        else:
            self.owner[at:end] = np.repeat(owners, counts)
            self.first[at:end] = np.repeat(starts, counts)
            self.count[at:end] = np.repeat(counts, counts)
        self.died[at:end] = ALIVE
        self.live += rows
        return starts


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a reader may look at: rows ``[0, lengths[slot])`` of each chunk, at ``version``."""

    chunks: tuple[Chunk | None, ...]
    lengths: tuple[int, ...]
    version: int
    single: bool = True  # every item has exactly one row (no max-pooling, no counts)

    @property
    def rows(self) -> int:
        return sum(self.lengths)


def block_rows(starts: I64, counts: I64) -> I64:
    """Every row of the blocks ``[start, start + count)``, block after block."""
    total = int(counts.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    ends = np.cumsum(counts)
    base = np.repeat(starts - (ends - counts), counts)
    return base + np.arange(total, dtype=np.int64)

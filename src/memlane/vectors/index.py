"""The FAISS-backed vector index: exact max-pooled search over multi-vector items.

Storage (see ``storage.py``). Every vector lives once, in append-only float32 chunks that
FAISS's flat kernels (``knn_inner_product``) scan in place. A write appends rows past what
readers can see and marks replaced rows dead with a version number, then publishes a new
:class:`Snapshot` with one attribute store. A search reads that attribute once and sees a
consistent snapshot for as long as it runs: **searches never wait for writers, writers
never wait for searches**. The one shared mutex guards the item directory and the
publication; writers hold it for the directory updates of their batch (a few array
assignments), readers only while they look up candidate ids (one numpy take). Sealed
chunks whose rows are mostly dead are compacted by a background thread into fresh chunks
(old readers keep the old objects alive).

Exactness. An item's score is the best score among its vectors: the inner product for the
``cosine`` and ``inner_product`` distances, minus the Euclidean distance for ``l2``
(``scoring.py``). FAISS (or numpy) finds the best vector hits (``knn_inner_product``, or
``knn_L2sqr`` for ``l2``), then the hit items are rescored *canonically* (float64, rounded
once to float32). A FAISS float32 score differs from the exact one by at most ``eps``, so
hits are fetched until the k-th distinct live item beats the last fetched hit by more than
``eps``, or every selected row was fetched: never an under-filled or approximate page,
whatever the filter selectivity and however many dead rows wait for compaction.

Filtering. ``candidates`` (item ids) become their rows: looked up in the directory when
they are few, found with one vectorised ``isin`` pass per chunk when they are many. Up to
``NUMPY_MAX_ROWS`` rows are scored directly with numpy; beyond that FAISS scans only those
rows (``IDSelectorArray``). Measured on 100k x 384, one thread: numpy and FAISS break even
near 256-512 rows.

Threads. FAISS runs with one OpenMP thread (measured: two threads made a lone 10k search
40x slower, and a 64-query BLAS batch 20x slower). ``search_many`` batches queries into
one call per chunk, which FAISS turns into a BLAS matrix multiply once ``queries *
dims`` reaches its ``distance_compute_blas_threshold``. faiss-cpu 1.15 ships 128,000
(333 queries of 384 dims); this module lowers it once, at import, to 7,680 (20 such
queries): measured, 64 queries at 100k went from 180 to 890 queries/s on one thread, lone
queries unchanged.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import operator
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from memlane.vectors.ann import AnnConfig, Graph, IdLog
from memlane.vectors.directory import Directory
from memlane.vectors.prefault import Prefaulter
from memlane.vectors.scoring import Scorer, best_per_item, canonical, scorer, top
from memlane.vectors.storage import (
    ALIVE,
    LOCAL_MASK,
    SHIFT,
    Chunk,
    Snapshot,
    block_rows,
    chunk_rows_for,
)

__all__ = ["NUMPY_MAX_ROWS", "SearchRequest", "VectorIndex"]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
Hits = list[tuple[int, float]]

# Candidate sets up to this many vectors are scored with numpy, larger ones with FAISS.
NUMPY_MAX_ROWS = 256
# Candidate ids are looked up in the directory while that is cheaper than a vectorised
# pass over every row (a lookup costs about as much as scanning ~10 rows with np.isin).
_LOOKUP_RATIO = 10
_MAX_ID = 2**63 - 1
_BUILD_THREADS = max(1, os.cpu_count() or 1)
# Below this many query x row pairs a FAISS call runs on one thread: an OpenMP team costs
# more than it saves there (measured: 2 threads on 2 queries x 3 rows took 12 ms when
# another process kept the cores busy, against 1.4 us on one thread).
_PARALLEL_MIN_WORK = 1 << 18
# A sealed chunk is compacted once this share of its rows is dead.
_COMPACT_DEAD_SHARE = 0.5
# A mostly dead tail chunk is sealed (and so compacted) from this many rows on.
_SEAL_TAIL_ROWS = 4_096

# FAISS picks its BLAS path when ``queries * dims`` reaches this (measured on faiss-cpu
# 1.15, whose default 128,000 means 333 queries of 384 dims). 7,680 = 20 queries of 384.
_BLAS_THRESHOLD = 20 * 384
if faiss.cvar.distance_compute_blas_threshold > _BLAS_THRESHOLD:
    faiss.cvar.distance_compute_blas_threshold = _BLAS_THRESHOLD


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """One query of a batched call: ``candidates`` (item ids) or ``None`` for every item."""

    query: F32
    k: int
    candidates: I64 | None = None


@contextlib.contextmanager
def _omp_threads(n: int) -> Iterator[None]:
    prev = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(prev)


def _check_id(item_id: object) -> int:
    if isinstance(item_id, bool) or not isinstance(item_id, (int, np.integer)):
        raise TypeError(f"item ids are ints, got {type(item_id).__name__}")
    value = int(item_id)
    if not 0 <= value <= _MAX_ID:
        raise ValueError(f"item id {value} is outside 0..2**63-1")
    return value


def _max_norm(vectors: F32) -> float:
    """An upper bound of the rows' Euclidean norms; NaN or inf when a value is not finite.

    Summed in float32 (a small batch costs a third of the float64 sum), whose relative
    error stays below ``dims * 2**-24``: the bound is raised by twice that. A float32
    overflow (finite rows of norm past ~1e19) falls back to float64.
    """
    if not len(vectors):
        return 0.0
    top = float(np.einsum("ij,ij->i", vectors, vectors).max())
    if math.isinf(top) and np.isfinite(vectors).all():
        top = float(np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64).max())
    return math.sqrt(top * (1 + vectors.shape[1] * 2.0**-23))


class VectorIndex:
    """Exact search over items that each own zero or more vectors (max-pooled scores).

    ``distance``: ``"cosine"`` (vectors expected L2-normalised: the embedder does it, and
    the score is their inner product), ``"inner_product"`` (raw vectors, the raw inner
    product) or ``"l2"`` (raw vectors, minus the Euclidean distance). Ids are the store's
    non-negative int64 item ids. Any number of threads may search while one thread at a
    time writes. ``chunk_rows`` sets the chunk capacity (default ~192 MiB of vectors; tests
    use small ones); ``background`` lets background threads compact mostly-dead chunks and
    (re)build the approximate graph; ``ann`` (``AnnConfig`` or its dict) enables that graph.
    """

    def __init__(
        self,
        dims: int,
        *,
        chunk_rows: int | None = None,
        background: bool = True,
        ann: AnnConfig | dict[str, Any] | None = None,
        distance: str = "cosine",
    ) -> None:
        if isinstance(dims, bool) or not isinstance(dims, int) or dims <= 0:
            raise ValueError(f"dims must be a positive int, got {dims!r}")
        self._score = scorer(distance)  # a ValueError naming an unknown distance
        self.distance = distance
        self._l2 = distance == "l2"
        if chunk_rows is None:
            chunk_rows = chunk_rows_for(dims)
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
            raise ValueError(f"chunk_rows must be a positive int, got {chunk_rows!r}")
        self.dims = dims
        self._chunk_rows = chunk_rows
        self._snap = Snapshot((), (), 0)
        # its array may cost a quarter of the vectors' memory: dims * 4 / 8 / 4 slots an item
        self._where = Directory(slots_per_item=max(4, dims // 8))
        self._tail: int | None = None  # the slot appends go to
        # a row: its vector, owner, first, count, died; no thread unless ``background``
        self._prefaulter = Prefaulter(4 * dims + 24) if background else None
        self._live_rows = 0
        self._max_norm = 1.0  # bounds FAISS's rounding error; see the module docstring
        self._mutex = threading.Lock()  # the directory and publication of snapshots
        self._write_mutex = threading.Lock()  # one writer (or compaction swap) at a time
        self._compact_lock = threading.Lock()
        self._background = background
        self._compacting = False
        self.compactions = 0  # how many compactions ran (tests and benchmarks read it)
        self.ann = AnnConfig.parse(ann) if ann is not None else None
        # (graph or None, ids written since its build): published together, one store
        self._ann_state: tuple[Graph | None, IdLog] = (None, IdLog())
        self._build_lock = threading.Lock()
        self._building = False
        self.ann_builds = 0

    # -- writes ---------------------------------------------------------------------

    def upsert(self, updates: Sequence[tuple[int, np.ndarray]]) -> None:
        """Replace all the vectors of each item; an empty ``(0, dims)`` array removes it.

        All-or-nothing: bad input raises before anything changes. Later updates of the same
        item in one call win.
        """
        prepared: dict[int, F32] = {}
        for item_id, vectors in updates:
            prepared[_check_id(item_id)] = self._check_vectors(vectors)
        ids = np.fromiter(prepared, dtype=np.int64, count=len(prepared))
        counts = np.fromiter(map(len, prepared.values()), dtype=np.int64, count=len(prepared))
        blocks = [v for v in prepared.values() if len(v)]
        new = np.concatenate(blocks) if blocks else np.empty((0, self.dims), np.float32)
        norm = _max_norm(new)
        if not math.isfinite(norm):
            finite = np.isfinite(new).all(axis=1)
            placed = ids[counts > 0]
            bad = int(np.searchsorted(np.cumsum(counts[counts > 0]), np.argmin(finite), "right"))
            raise ValueError(f"vectors of item {int(placed[bad])} contain NaN or inf")
        self._write(ids, counts, new, norm)

    def remove(self, item_ids: Iterable[int]) -> None:
        """Remove items and all their vectors; unknown ids are ignored. O(rows), no scan."""
        ids = np.unique(np.fromiter((_check_id(i) for i in item_ids), dtype=np.int64))
        if len(ids):
            self._write(ids, np.zeros(len(ids), dtype=np.int64), np.empty((0, self.dims), "f4"))

    def load(self, item_ids: np.ndarray, counts: np.ndarray, vectors: np.ndarray) -> None:
        """Bulk-add items (a store reopening): no per-item Python work.

        ``item_ids`` (n,) int64 unique, ``counts`` (n,) vectors per item, ``vectors``
        (sum(counts), dims) float32 (L2-normalised for ``cosine``), rows grouped by item in
        order. Items
        already in the index are replaced.
        """
        ids = np.ascontiguousarray(item_ids, dtype=np.int64).ravel()
        cnt = np.ascontiguousarray(counts, dtype=np.int64).ravel()
        vecs = np.asarray(vectors)
        if len(ids) != len(cnt):
            raise ValueError(f"{len(ids)} item ids but {len(cnt)} counts")
        if len(ids) and (ids.min() < 0 or cnt.min() < 0):
            raise ValueError("item ids and counts must be non-negative")
        ascending = len(ids) < 2 or bool((ids[1:] > ids[:-1]).all())  # as a table reads
        if not ascending and len(np.unique(ids)) != len(ids):
            raise ValueError("item ids must be unique")
        total = int(cnt.sum())
        if vecs.ndim != 2 or vecs.shape != (total, self.dims):
            raise ValueError(f"vectors must have shape ({total}, {self.dims}), got {vecs.shape}")
        vecs = vecs.astype(np.float32, copy=False)
        norm = _max_norm(vecs)
        if not math.isfinite(norm):
            raise ValueError("vectors contain NaN or inf")
        self._write(ids, cnt, vecs, norm)

    def _write(self, ids: I64, counts: I64, vectors: F32, norm: float | None = None) -> None:
        """Kill old blocks, append new ones past what readers see, publish. No waiting on
        readers: they keep their snapshot, in which killed rows are still alive. ``norm``:
        :func:`_max_norm` of ``vectors``, when the caller has it."""
        if norm is None:
            norm = _max_norm(vectors)
        with self._write_mutex:
            snap = self._snap
            version = snap.version + 1
            chunks, lengths = list(snap.chunks), list(snap.lengths)
            old = self._where.get_many(ids) if len(self._where) else np.full(len(ids), -1)
            placed = counts > 0
            # Place first (it may fail: a new chunk is a big allocation), kill after: a
            # failed write then leaves the index as it was, and may simply be retried.
            tail, lives = self._tail, [c.live if c is not None else 0 for c in chunks]
            try:
                starts = self._place(chunks, lengths, ids[placed], counts[placed], vectors)
            except BaseException:
                self._tail = tail  # it may name a chunk that was never published
                for chunk, live in zip(snap.chunks, lives, strict=True):
                    if chunk is not None:
                        chunk.live = live
                raise
            self._kill(chunks, old[old >= 0], version)
            self._prefault_tail(chunks, lengths)
            self._max_norm = max(self._max_norm, norm)
            self._live_rows += len(vectors)
            if self.ann is not None:
                log = self._ann_state[1]
                log.append(ids[placed])
                log.removed += int((~placed & (old >= 0)).sum())
            with self._mutex:
                gone = ids[~placed & (old >= 0)]
                if len(gone):
                    self._where.drop_many(gone)
                if len(starts):
                    self._where.set_many(ids[placed], starts)
                single = self._live_rows == len(self._where)
                self._snap = Snapshot(tuple(chunks), tuple(lengths), version, single)
            self._maybe_compact()
            self._maybe_build()

    def _kill(self, chunks: list[Chunk | None], starts: I64, version: int) -> None:
        """Mark the blocks starting at global rows ``starts`` dead at ``version``."""
        if not len(starts):
            return
        slots, local = starts >> SHIFT, starts & LOCAL_MASK
        for slot in np.unique(slots).tolist():
            chunk = chunks[slot]
            assert chunk is not None
            firsts = local[slots == slot]
            counts = chunk.count[firsts].astype(np.int64)
            rows = firsts if (counts == 1).all() else block_rows(firsts, counts)
            chunk.died[rows] = version
            chunk.live -= len(rows)
            self._live_rows -= len(rows)

    def _prefault_tail(self, chunks: list[Chunk | None], lengths: list[int]) -> None:
        """Keep the tail chunk faulted in ahead of its rows (``prefault.py``)."""
        if self._tail is None or self._prefaulter is None:
            return
        chunk = chunks[self._tail]
        assert chunk is not None
        chunk.populated = self._prefaulter.ahead(
            chunk.arrays(), lengths[self._tail], chunk.populated
        )

    def _place(
        self, chunks: list[Chunk | None], lengths: list[int], ids: I64, counts: I64, vectors: F32
    ) -> I64:
        """Append blocks to the tail chunk, opening chunks as needed; return global starts."""
        out = np.empty(len(ids), dtype=np.int64)
        ends = np.cumsum(counts)
        i = 0
        while i < len(ids):
            base = int(ends[i - 1]) if i else 0
            slot = self._tail
            fits = i
            if slot is not None:
                chunk = chunks[slot]
                assert chunk is not None
                free = chunk.capacity - lengths[slot]
                fits = int(np.searchsorted(ends, base + free, side="right"))
            if fits == i:  # nothing more fits: seal the tail, open a chunk
                capacity = max(self._chunk_rows, int(counts[i]))
                slot = next((s for s, c in enumerate(chunks) if c is None), len(chunks))
                if slot == len(chunks):
                    chunks.append(None)
                    lengths.append(0)
                chunks[slot], lengths[slot] = Chunk(capacity, self.dims), 0
                self._tail = slot
                continue
            assert slot is not None
            chunk = chunks[slot]
            assert chunk is not None
            end = int(ends[fits - 1])
            local = chunk.write(lengths[slot], ids[i:fits], counts[i:fits], vectors[base:end])
            out[i:fits] = (slot << SHIFT) | local
            lengths[slot] += end - base
            i = fits
        return out

    def _check_vectors(self, vectors: np.ndarray) -> F32:
        arr = np.asarray(vectors)
        if arr.shape in ((0,), (0, 0), (0, self.dims)):
            return np.empty((0, self.dims), dtype=np.float32)  # no vectors: a removal
        if arr.ndim != 2 or arr.shape[1] != self.dims:
            raise ValueError(f"vectors must have shape (k, {self.dims}), got {arr.shape}")
        return arr.astype(np.float32, copy=False)

    # -- compaction -------------------------------------------------------------------

    def _maybe_compact(self) -> None:
        """Start the background compactor when a sealed chunk is mostly dead.

        The tail chunk is sealed once it holds ``_SEAL_TAIL_ROWS`` rows and is mostly dead
        (a small store whose items are rewritten over and over): otherwise a chunk of
        ~131k rows could fill with dead rows that every whole-store search scans.
        """
        self._seal_dead_tail()
        if not self._background or self._compacting or not self._victims(self._snap):
            return
        self._compacting = True
        threading.Thread(
            target=self._compact_in_background, name="memlane-vector-compactor", daemon=True
        ).start()

    def _seal_dead_tail(self) -> None:
        tail, snap = self._tail, self._snap
        if tail is None:
            return
        chunk, length = snap.chunks[tail], snap.lengths[tail]
        if chunk is None or length < min(_SEAL_TAIL_ROWS, chunk.capacity):
            return
        if length - chunk.live >= _COMPACT_DEAD_SHARE * length:
            self._tail = None  # the next write opens a fresh chunk; this one is a victim

    def _compact_in_background(self) -> None:
        try:
            while self.compact():
                pass
        finally:
            self._compacting = False

    def _victims(self, snap: Snapshot) -> list[int]:
        return [
            slot
            for slot, chunk in enumerate(snap.chunks)
            if chunk is not None
            and slot != self._tail
            and snap.lengths[slot]
            and snap.lengths[slot] - chunk.live >= _COMPACT_DEAD_SHARE * snap.lengths[slot]
        ]

    def compact(self) -> int:
        """Rewrite sealed, mostly-dead chunks into fresh ones; return rows reclaimed.

        The copy runs without blocking anyone; the swap holds the writer mutex for a
        vectorised fix-up and the publication mutex for one directory update.
        """
        with self._compact_lock:
            # Chosen under the writers' mutex: a victim is sealed for good (writers append
            # only to the tail), so its length in ``snap`` is final. Read without it, a tail
            # sealed just after ``snap`` was taken became a victim with a stale length, and
            # the swap lost the rows appended to it since.
            with self._write_mutex:
                snap = self._snap
                victims = self._victims(snap)
            if not victims:
                return 0
            sources = []  # (slot, live local rows at snap.version)
            for slot in victims:
                chunk = snap.chunks[slot]
                assert chunk is not None
                n = snap.lengths[slot]
                sources.append((slot, np.flatnonzero(chunk.died[:n] > snap.version)))
            new_chunks, moves = self._repack(snap, sources)
            with self._write_mutex:
                current = self._snap
                chunks, lengths = list(current.chunks), list(current.lengths)
                old_starts, new_starts, owners = moves
                for new, (src_slot_rows, dst) in new_chunks:
                    # rows killed since the copy carry their death version over
                    for slot, rows, at in src_slot_rows:
                        source = current.chunks[slot]
                        assert source is not None
                        new.died[at : at + len(rows)] = source.died[rows]
                    new.live = int((new.died[:dst] == ALIVE).sum())
                still = self._where.get_many(owners) == old_starts
                reclaimed = sum(snap.lengths[s] for s in victims)
                for slot in victims:
                    chunks[slot], lengths[slot] = None, 0
                # the new chunks were numbered from 0 upwards: give them the victims' slots
                slots = list(victims)
                while len(slots) < len(new_chunks):  # blocks packed badly: rare, but allowed
                    chunks.append(None)
                    lengths.append(0)
                    slots.append(len(chunks) - 1)
                for slot, (new, (_, dst)) in zip(slots, new_chunks, strict=False):
                    chunks[slot], lengths[slot] = new, dst
                    reclaimed -= dst
                slot_of = np.asarray(slots[: len(new_chunks)], dtype=np.int64)
                fixed = (slot_of[new_starts >> SHIFT] << SHIFT) | (new_starts & LOCAL_MASK)
                with self._mutex:
                    self._where.set_many(owners[still], fixed[still])
                    self._snap = Snapshot(
                        tuple(chunks), tuple(lengths), current.version, current.single
                    )
            self.compactions += 1
            return reclaimed

    def _repack(
        self, snap: Snapshot, sources: list[tuple[int, I64]]
    ) -> tuple[list[tuple[Chunk, tuple[list[tuple[int, I64, int]], int]]], tuple[I64, I64, I64]]:
        """Copy live blocks into new full chunks (blocks never split). Numbered from 0."""
        out: list[tuple[Chunk, tuple[list[tuple[int, I64, int]], int]]] = []
        old_starts: list[I64] = []
        new_starts: list[I64] = []
        owners: list[I64] = []
        current: Chunk | None = None
        pieces: list[tuple[int, I64, int]] = []
        fill = 0
        for slot, rows in sources:
            chunk = snap.chunks[slot]
            assert chunk is not None
            heads = rows[chunk.first[rows] == rows]  # block starts among live rows
            counts = chunk.count[heads].astype(np.int64)
            i = 0
            ends = np.cumsum(counts)
            while i < len(heads):
                base = int(ends[i - 1]) if i else 0
                free = 0 if current is None else current.capacity - fill
                fits = int(np.searchsorted(ends, base + free, side="right"))
                if fits == i:
                    if current is not None:
                        out.append((current, (pieces, fill)))
                    current = Chunk(max(self._chunk_rows, int(counts[i])), self.dims)
                    pieces, fill = [], 0
                    continue
                assert current is not None
                take = block_rows(heads[i:fits], counts[i:fits])
                local = current.write(
                    fill, chunk.owner[heads[i:fits]], counts[i:fits], chunk.vecs[take]
                )
                pieces.append((slot, take, fill))
                number = len(out)
                old_starts.append((slot << SHIFT) | heads[i:fits])
                new_starts.append((number << SHIFT) | local)
                owners.append(chunk.owner[heads[i:fits]])
                fill += len(take)
                i = fits
        if current is not None:
            out.append((current, (pieces, fill)))

        def cat(parts: list[I64]) -> I64:
            return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)

        return out, (cat(old_starts), cat(new_starts), cat(owners))

    # -- the approximate graph ------------------------------------------------------

    def _maybe_build(self) -> None:
        """Start a background (re)build of the graph when it is missing or stale."""
        if self.ann is None or not self._background or self._building or not self._stale():
            return
        self._building = True

        def run() -> None:
            try:
                self.build_ann()
            finally:
                self._building = False

        threading.Thread(target=run, name="memlane-ann-builder", daemon=True).start()

    def _stale(self) -> bool:
        assert self.ann is not None
        graph, log = self._ann_state
        if graph is None:
            return len(self._where) >= self.ann.min_items
        return log.count + log.removed > self.ann.rebuild_share * max(1, len(graph))

    def build_ann(self, threads: int = _BUILD_THREADS) -> bool:
        """Build a graph over a snapshot and swap it in; writes go on meanwhile (they land
        in the new graph's delta). Returns False when no ``ann`` is configured."""
        if self.ann is None:
            return False
        with self._build_lock:
            with self._write_mutex:
                snap, log = self._snap, self._ann_state[1]
                position, removed = log.count, log.removed
            vectors, owners = _live_rows(snap)
            graph = Graph(self.ann, vectors, owners, threads, l2=self._l2) if len(owners) else None
            del vectors
            with self._write_mutex:
                log = self._ann_state[1]
                fresh = IdLog(log.since(position))
                fresh.removed = log.removed - removed
                self._ann_state = (graph, fresh)
            self.ann_builds += 1
            return True

    def _ann_top(self, graph: Graph, log: IdLog, q: F32, k: int) -> list[Hits]:
        """Graph proposals rescored exactly through the live directory, merged with an exact
        search of the delta (items written since the build). The delta's rows are found
        once for the whole batch, not once per query: a 4k-item delta made each query
        5x slower when every query looked it up again."""
        proposals = graph.propose(q, k)
        found = [self._search_one(q[i : i + 1], k, p) for i, p in enumerate(proposals)]
        delta = log.view()
        if not len(delta):
            return found
        in_delta = self._scan(q, k, *self._rows_of(delta))
        return [_merge(a, b, k) for a, b in zip(found, in_delta, strict=True)]

    # -- reads ----------------------------------------------------------------------

    def __contains__(self, item_id: object) -> bool:
        with self._mutex:  # the directory changes in several steps under it
            return item_id in self._where

    def item_ids(self) -> I64:
        """The ids of every item in the index, ascending."""
        with self._mutex:
            return self._where.ids()

    @property
    def item_count(self) -> int:
        with self._mutex:
            return len(self._where)

    @property
    def vector_count(self) -> int:
        return self._live_rows

    def vectors_of(self, item_id: int) -> F32:
        """A copy of the item's vectors, ``(k, dims)``, in the order they were given."""
        with self._mutex:
            snap, start = self._snap, self._where.get(_check_id(item_id))
        if start < 0:
            return np.empty((0, self.dims), dtype=np.float32)
        chunk = snap.chunks[start >> SHIFT]
        assert chunk is not None
        local = start & LOCAL_MASK
        return chunk.vecs[local : local + int(chunk.count[local])].copy()

    def stats(self) -> dict[str, Any]:
        """Rows, items and chunk usage, for benchmarks and monitoring."""
        snap = self._snap
        chunks = [c for c in snap.chunks if c is not None]
        return {
            "items": self.item_count,
            "live_rows": self._live_rows,
            "rows": snap.rows,
            "chunks": len(chunks),
            "vector_bytes": self._live_rows * self.dims * 4,
        }

    def search(
        self,
        query: np.ndarray,
        k: int,
        candidates: np.ndarray | None = None,
        *,
        exact: bool = False,
    ) -> list[tuple[int, float]]:
        """Up to ``k`` distinct items by best score, best first, ties by smaller id.

        ``candidates`` (item ids; unknown ids are fine) restricts the search to those items.
        A whole-index search uses the approximate graph when one is configured and built,
        unless ``exact``.
        """
        q = self._check_queries(query)
        k = operator.index(k)
        if k <= 0:
            return []
        with _omp_threads(1):
            graph, log = self._ann_state
            if candidates is None and graph is not None and not exact:
                return self._ann_top(graph, log, q, k)[0]
            return self._search_one(q, k, candidates)

    def search_batch(
        self, queries: np.ndarray, k: int, threads: int = 1
    ) -> list[list[tuple[int, float]]]:
        """``search`` for many queries at once (no candidates): one FAISS call per chunk.

        ``threads``: OpenMP threads. One is the default because FAISS's BLAS path keeps the
        cores busy by itself: measured here, 64 queries at 100k ran at 890 queries/s on one
        OpenMP thread and 41 on two (the two thread pools fight over two cores).
        """
        q = self._check_queries(queries, batch=True)
        k = operator.index(k)
        requests = [SearchRequest(row, k) for row in q]
        return self.search_many(requests, threads=threads)

    def search_many(
        self, requests: Sequence[SearchRequest], threads: int = 1
    ) -> list[list[tuple[int, float]]]:
        """Answer many requests in one go: every whole-index query shares one FAISS call
        per chunk (a matrix multiply); each caller gets exactly its lone-query result."""
        results: list[Hits] = [[] for _ in requests]
        whole = [i for i, r in enumerate(requests) if r.candidates is None and r.k > 0]
        with _omp_threads(1):
            if whole:
                qs = np.stack([self._check_queries(requests[i].query)[0] for i in whole])
                kmax = max(requests[i].k for i in whole)
                snap = self._snap
                graph, log = self._ann_state
                if graph is not None:
                    # The graph's answer depends on how many proposals it is asked for:
                    # each k gets its own call, so a caller's result is its lone one.
                    for k in sorted({requests[i].k for i in whole}):
                        group = [n for n, i in enumerate(whole) if requests[i].k == k]
                        tops = self._ann_top(graph, log, qs[group], k)
                        for n, found in zip(group, tops, strict=True):
                            results[whole[n]] = found
                else:
                    tops = self._faiss_top(snap, qs, kmax, None, snap.rows, threads)
                    for i, found in zip(whole, tops, strict=True):
                        results[i] = found[: requests[i].k]
        with _omp_threads(1):
            for i, request in enumerate(requests):
                if request.candidates is not None and request.k > 0:
                    q = self._check_queries(request.query)
                    results[i] = self._search_one(q, request.k, request.candidates)
        return results

    def search_cost(self, candidates: np.ndarray | None) -> int:
        """Roughly how many rows a search would scan (callers decide inline vs thread)."""
        total = self._snap.rows
        if candidates is None:
            return total  # a graph search is cheap too, but FAISS's graph walk wants a thread
        per_item = -(-self._live_rows // max(1, len(self._where)))
        return min(total, len(candidates) * per_item)

    def _check_queries(self, query: np.ndarray, batch: bool = False) -> F32:
        arr = np.asarray(query, dtype=np.float32)
        if not batch and arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != self.dims or (not batch and len(arr) != 1):
            want = f"(n, {self.dims})" if batch else f"({self.dims},)"
            raise ValueError(f"query must have shape {want}, got {np.shape(query)}")
        if not np.isfinite(arr).all():
            raise ValueError("query contains NaN or inf")
        return np.ascontiguousarray(arr)

    def _search_one(self, q: F32, k: int, candidates: np.ndarray | None) -> Hits:
        if candidates is None:
            snap = self._snap
            return self._faiss_top(snap, q, k, None, snap.rows)[0]
        return self._scan(q, k, *self._rows_of(candidates))[0]

    def _scan(
        self, q: F32, k: int, snap: Snapshot, rows: I64, owners: I64 | None, single: bool
    ) -> list[Hits]:
        """Exact top ``k`` among the items of ``rows`` for each query of ``q``."""
        if len(rows) == 0:
            return [[] for _ in range(len(q))]
        if len(rows) > NUMPY_MAX_ROWS:
            return self._faiss_top(snap, q, k, _by_slot(rows), len(rows))
        if owners is None:
            owners = _gather(snap, rows, "owner")
        block = _gather_vecs(snap, rows)
        if single:  # one row per item: no max-pooling needed
            return [self._top_rows(block, owners, query, k) for query in q]
        # The block is widened to float64 once for every query of a batch (the ANN delta),
        # not once per query; each query's scores are still exactly the canonical ones.
        wide = block.astype(np.float64)
        return [
            top(*best_per_item(owners, self._score(wide, query)), k) for query in q
        ]

    def _top_rows(self, block: F32, owners: I64, query: F32, k: int) -> Hits:
        """Exact top ``k`` of one-row items, canonically scored only where it can matter.

        A float32 pass ranks the rows; a row more than ``2 * eps`` below the k-th float32
        score is beaten by k rows even canonically (each score moves by at most ``eps``),
        so only the ~k rows near the top get float64 scores (100 rows: ~13 -> ~4 us).
        ``l2`` scores every row canonically (at most ``NUMPY_MAX_ROWS`` rows come here).
        """
        if self._l2:
            return top(owners, self._score(block, query), k)
        if len(block) > max(2 * k, _PREFILTER_MIN_ROWS):
            rough = block @ query
            kth = np.partition(rough, len(rough) - k)[len(rough) - k]
            keep = np.flatnonzero(rough >= kth - 2 * self._eps(query[None, :]))
            block, owners = block[keep], owners[keep]
        return top(owners, canonical(block, query), k)

    def _eps(self, q: F32) -> float:
        """How far a FAISS float32 score may be from the exact one, for the queries ``q``."""
        qnorm = float(np.sqrt(np.einsum("ij,ij->i", q, q, dtype=np.float64)).max())
        if self._l2:
            # FAISS's squared distance, direct or as |q|^2 + |v|^2 - 2 q.v: its error is at
            # most dims * 2**-24 * (|q| + |v|)^2; doubled for safety.
            return self.dims * 2.0**-23 * (self._max_norm + qnorm) ** 2
        # |float32 dot - exact dot| <= dims * 2**-24 * |q| * |v|; doubled for safety.
        return self.dims * 2.0**-23 * self._max_norm * max(qnorm, 1.0)

    def _beats(self, score: float, floor: float, eps: float) -> bool:
        """Does a canonical ``score`` beat every row FAISS ranked at or below ``floor`` (its
        own scale: the inner product, or minus the squared distance for ``l2``)?"""
        if self._l2:
            # -score is the distance rounded to float32: squared, it may be 2**-23 below the
            # exact one; the margin keeps an unfetched row from rounding to a tie.
            return -(score * score) * (1 + 2.0**-20) > floor + eps
        return score > floor + eps

    def _rows_of(self, candidates: np.ndarray) -> tuple[Snapshot, I64, I64 | None, bool]:
        """A snapshot, the rows (global) of the candidate items live in it, each row's owner
        when the directory lookup made it known anyway, and whether every item has one row.
        """
        cand = np.asarray(candidates, dtype=np.int64).ravel()
        if len(cand) * _LOOKUP_RATIO <= self._snap.rows:
            # A repeated id must not repeat its rows. Stores pass ids ascending (one user's
            # items in id order), which a comparison confirms without np.unique's sort.
            increasing = len(cand) < 2 or bool((cand[1:] > cand[:-1]).all())
            unique = cand if increasing else np.unique(cand)
            with self._mutex:
                snap, starts = self._snap, self._where.get_many(unique)
            found = starts >= 0
            starts, owners = starts[found], unique[found]
            if snap.single:
                return snap, starts, owners, True
            counts = _gather(snap, starts, "count")
            if (counts == 1).all():
                return snap, starts, owners, True
            return snap, block_rows(starts, counts), np.repeat(owners, counts), False
        snap = self._snap
        parts = []
        for slot, chunk in enumerate(snap.chunks):
            n = snap.lengths[slot] if chunk is not None else 0
            if chunk is None or n == 0:
                continue
            keep = np.isin(chunk.owner[:n], cand) & (chunk.died[:n] > snap.version)
            parts.append((slot << SHIFT) | np.flatnonzero(keep))
        rows = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
        return snap, rows, None, snap.single

    def _faiss_top(
        self,
        snap: Snapshot,
        q: F32,
        k: int,
        sel: dict[int, I64] | None,
        selected: int,
        threads: int = 1,
    ) -> list[Hits]:
        """Exact top-k per query: FAISS hits, canonical rescoring, fetch more if unsure."""
        results: list[Hits] = [[] for _ in range(len(q))]
        if selected == 0:
            return results
        per_item = -(-self._live_rows // max(1, len(self._where)))
        fetch = min(selected, (k + max(k, 16)) * max(1, per_item))
        eps = self._eps(q)
        pending = np.arange(len(q))
        while len(pending):
            dist, hits = _knn(snap, q[pending], fetch, sel, threads, l2=self._l2)
            floor = dist.min(axis=1)
            complete = fetch >= selected
            unsure = []
            for j, qi in enumerate(pending.tolist()):
                found = _rescore(snap, hits[j], q[qi], k, self._score)
                if complete or (
                    len(found) == k and self._beats(found[-1][1], float(floor[j]), eps)
                ):
                    results[qi] = found
                else:
                    unsure.append(qi)
            pending = np.asarray(unsure, dtype=np.int64)
            fetch = min(selected, fetch * 4)
        return results


def _merge(first: Hits, second: Hits, k: int) -> Hits:
    """The best ``k`` of two exact hit lists (an item in both has the same score)."""
    best = dict(first)
    best.update(second)
    return sorted(best.items(), key=lambda hit: (-hit[1], hit[0]))[:k]  # as scoring.top


def _live_rows(snap: Snapshot) -> tuple[F32, I64]:
    """Copies of every live vector of a snapshot and its owner (to build a graph from)."""
    vecs, owners = [], []
    for slot, chunk in enumerate(snap.chunks):
        n = snap.lengths[slot] if chunk is not None else 0
        if chunk is None or n == 0:
            continue
        keep = np.flatnonzero(chunk.died[:n] > snap.version)
        vecs.append(chunk.vecs[keep])
        owners.append(chunk.owner[keep])
    if not owners:
        return np.empty((0, 0), dtype=np.float32), np.empty(0, dtype=np.int64)
    return np.concatenate(vecs), np.concatenate(owners)


def _one_slot(rows: I64) -> int:
    """The slot all the rows are in, or -1 when they span several (or none)."""
    if not len(rows):
        return -1
    lo, hi = int(rows.min()) >> SHIFT, int(rows.max()) >> SHIFT
    return lo if lo == hi else -1


_Groups = list[tuple[int, I64, I64]]  # (slot, positions in the input, local rows)


def _groups(rows: I64) -> _Groups:
    """Rows split by chunk in one sort, so gathering costs one step per chunk touched."""
    if not len(rows):
        return []
    slot = _one_slot(rows)
    if slot >= 0:
        return [(slot, np.arange(len(rows)), rows & LOCAL_MASK)]
    slots = rows >> SHIFT
    order = np.argsort(slots, kind="stable")
    ordered = slots[order]
    cuts = [0, *(np.flatnonzero(ordered[1:] != ordered[:-1]) + 1).tolist(), len(rows)]
    local = rows[order] & LOCAL_MASK
    return [(int(ordered[a]), order[a:b], local[a:b]) for a, b in itertools.pairwise(cuts)]


def _gather(snap: Snapshot, rows: I64, field: str) -> I64:
    """A per-row field (owner, first, count, died) for global rows, as int64."""
    slot = _one_slot(rows)
    if slot >= 0:
        return np.asarray(getattr(snap.chunks[slot], field)[rows & LOCAL_MASK], dtype=np.int64)
    out = np.empty(len(rows), dtype=np.int64)
    for slot, where, local in _groups(rows):
        out[where] = getattr(snap.chunks[slot], field)[local]
    return out


# numpy's fancy indexing gives up the GIL even to copy a few rows, and winning it back
# costs up to the interpreter's switch interval (5 ms) while another thread is busy: that
# was one of the two GIL waits of a whole-store search (which rescores ~26 rows). So few
# rows are copied one by one (7 us for 26 rows; fancy indexing 2 us, or ~1 ms on average
# beside a busy thread); more rows are worth numpy's speed (100: 43 us against 8 us).
_FEW_ROWS = 32
# Below this many rows a float32 ranking pass before the canonical one saves nothing.
_PREFILTER_MIN_ROWS = 48


def _take_rows(vecs: F32, local: I64) -> F32:
    if len(local) > _FEW_ROWS or not len(local):
        picked: F32 = vecs[local]
        return picked
    return np.array([vecs[row] for row in local.tolist()])


def _gather_vecs(snap: Snapshot, rows: I64) -> F32:
    slot = _one_slot(rows)
    if slot >= 0:
        chunk = snap.chunks[slot]
        assert chunk is not None
        return _take_rows(chunk.vecs, rows & LOCAL_MASK)
    if len(rows) <= NUMPY_MAX_ROWS:
        # Rows spread over chunks (one user's items in a big store): row by row costs less
        # than grouping them by chunk first (100 rows over 8 chunks: ~45 us against ~100).
        chunks = snap.chunks
        return np.array([chunks[row >> SHIFT].vecs[row & LOCAL_MASK] for row in rows.tolist()])
    groups = _groups(rows)
    first = snap.chunks[groups[0][0]]
    assert first is not None
    out = np.empty((len(rows), first.vecs.shape[1]), dtype=np.float32)
    for slot, where, local in groups:
        chunk = snap.chunks[slot]
        assert chunk is not None
        out[where] = _take_rows(chunk.vecs, local)
    return out


def _by_slot(rows: I64) -> dict[int, I64]:
    """Global rows grouped as contiguous local-row arrays per slot (FAISS selectors)."""
    slots = rows >> SHIFT
    return {
        slot: np.ascontiguousarray(rows[slots == slot] & LOCAL_MASK, dtype=np.int64)
        for slot in np.unique(slots).tolist()
    }


def _knn(
    snap: Snapshot,
    q: F32,
    fetch: int,
    sel: dict[int, I64] | None,
    threads: int = 1,
    *,
    l2: bool = False,
) -> tuple[F32, I64]:
    """The ``fetch`` best rows per query over every chunk (or the selected rows), with
    FAISS's scores: inner products, or minus the squared distances for ``l2``."""
    dists: list[F32] = []
    hits: list[I64] = []
    nq, dims = q.shape
    for slot, chunk in enumerate(snap.chunks):
        n = snap.lengths[slot] if chunk is not None else 0
        if chunk is None or n == 0:
            continue
        rows = None if sel is None else sel.get(slot)
        if sel is not None and rows is None:
            continue
        m = n if rows is None else len(rows)
        kk = min(fetch, m)
        dist = np.empty((nq, kk), dtype=np.float32)
        found = np.empty((nq, kk), dtype=np.int64)
        selector = None if rows is None else faiss.IDSelectorArray(len(rows), faiss.swig_ptr(rows))
        if threads > 1:
            faiss.omp_set_num_threads(threads if nq * m >= _PARALLEL_MIN_WORK else 1)
        pointers = (faiss.swig_ptr(q), faiss.swig_ptr(chunk.vecs), dims, nq, n, kk)
        outputs = (faiss.swig_ptr(dist), faiss.swig_ptr(found))
        if l2:
            faiss.knn_L2sqr(*pointers, *outputs, None, selector)
            np.negative(dist, out=dist)  # higher is better, as for inner products
        else:
            faiss.knn_inner_product(*pointers, *outputs, selector)
        dists.append(dist)
        hits.append(np.where(found >= 0, found | (slot << SHIFT), -1))
    if len(dists) == 1:
        return dists[0], hits[0]
    dist, found = np.concatenate(dists, axis=1), np.concatenate(hits, axis=1)
    if dist.shape[1] > fetch:
        keep = np.argpartition(-dist, fetch - 1, axis=1)[:, :fetch]
        dist, found = np.take_along_axis(dist, keep, 1), np.take_along_axis(found, keep, 1)
    return dist, found


def _rescore(snap: Snapshot, hits: I64, q: F32, k: int, score: Scorer = canonical) -> Hits:
    """Top-k of the live hit items, scored canonically over all of each item's vectors."""
    hits = hits[hits >= 0]
    hits = hits[_gather(snap, hits, "died") > snap.version]
    if len(hits) == 0:
        return []
    if snap.single or (_gather(snap, hits, "count") == 1).all():  # hits are the rows
        owners = _gather(snap, hits, "owner")
        return top(owners, score(_gather_vecs(snap, hits), q), k)
    heads = np.unique((hits & ~LOCAL_MASK) | _gather(snap, hits, "first"))
    counts = _gather(snap, heads, "count")
    rows = block_rows(heads, counts)
    owners = np.repeat(_gather(snap, heads, "owner"), counts)
    return top(*best_per_item(owners, score(_gather_vecs(snap, rows), q)), k)

"""The FAISS-backed vector index: exact max-pooled cosine search over multi-vector items.

Storage. Every vector lives exactly once, in our own C-contiguous float32 array
``_vecs`` (rows ``[0, _n)`` are live; capacity doubles as it grows). FAISS never holds a
copy: searches call FAISS's flat kernels (``knn_inner_product``) directly on that array's
memory, so there is no second ``IndexFlat`` copy to keep in sync, and no stale vector can
hide in one. Rows stay dense: deleting a row moves the last row into the hole (swap-remove),
so a delete costs O(dims) per vector, never a scan, freed rows are reused at once, and no
dead row ever needs to be skipped. ``_owner[row]`` is the row's item id, ``_rows[item]``
the item's rows (in the order its vectors were given).

Exactness. An item's score is the best inner product among its vectors. FAISS (or numpy)
finds the best vector hits, and then the hit items are rescored *canonically*: the dot
product in float64, rounded once to float32. Every path (full, filtered, batched, numpy)
reports these canonical scores, so results are identical across paths and to a float64
numpy reference, and ties are broken by smaller item id. A FAISS float32 score differs
from the canonical one by at most ``eps`` (a bound for ``dims`` float32 products), so hits
are fetched until the k-th distinct item beats the last fetched hit by more than ``eps``,
or every selected vector was fetched: never an under-filled or approximate page.

Filtering. ``candidates`` (item ids) become the set of their rows. Up to
``NUMPY_MAX_ROWS`` rows are scored directly with numpy; beyond that FAISS searches only
those rows (``IDSelectorArray``: FAISS then scores just the listed rows). Measured on
100k x 384, one thread: numpy and FAISS break even near 256-512 rows; the array selector
beats a bitmap selector up to ~50% selectivity and ties it above (1k rows: 0.05 vs 0.2 ms).

Threads. A readers-writer lock: any number of searches run together (FAISS releases the
GIL), a writer waits for them and holds the index alone only while it moves rows. Growing
the arrays (the only O(n) write step) is done before taking the exclusive lock, since
writers are serialised by a separate mutex and readers never write. Single queries run
FAISS with one OpenMP thread (measured: two threads made a lone 10k search 40x slower);
``search_batch`` uses all cores. OpenMP thread counts are per calling thread.
"""

from __future__ import annotations

import operator
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import faiss
import numpy as np
import numpy.typing as npt

__all__ = ["NUMPY_MAX_ROWS", "VectorIndex"]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

# Candidate sets up to this many vectors are scored with numpy, larger ones with FAISS.
NUMPY_MAX_ROWS = 256
# Candidate ids are looked up one by one while that is cheaper than a vectorised pass
# over every row (a dict lookup costs about as much as scanning ~10 rows with np.isin).
_LOOKUP_RATIO = 10
_MAX_ID = 2**63 - 1
_BATCH_THREADS = max(1, os.cpu_count() or 1)


class _RWLock:
    """Many readers or one writer; a waiting writer blocks new readers (no starvation)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


@contextmanager
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
    return float(np.sqrt(np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64).max()))


def _top(items: I64, scores: F32, k: int) -> list[tuple[int, float]]:
    """The k best (item, score), best first, ties by smaller item id."""
    if len(items) > k:
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        keep = scores >= kth  # keeps every tie with the k-th score
        items, scores = items[keep], scores[keep]
    order = np.lexsort((items, -scores))[:k]
    return list(zip(items[order].tolist(), scores[order].astype(np.float64).tolist(), strict=True))


def _best_per_item(owners: I64, scores: F32) -> tuple[I64, F32]:
    """Group row scores by owner and keep each owner's maximum."""
    order = np.argsort(owners, kind="stable")
    owners, scores = owners[order], scores[order]
    firsts = np.flatnonzero(np.concatenate(([True], owners[1:] != owners[:-1])))
    return owners[firsts], np.maximum.reduceat(scores, firsts)


class VectorIndex:
    """Exact cosine search over items that each own zero or more vectors (max-pooled scores).

    Vectors are expected L2-normalised float32 (the embedder guarantees it); ids are the
    store's non-negative int64 item ids. Safe for concurrent searches beside one writer.
    """

    def __init__(self, dims: int) -> None:
        if isinstance(dims, bool) or not isinstance(dims, int) or dims <= 0:
            raise ValueError(f"dims must be a positive int, got {dims!r}")
        self.dims = dims
        self._vecs: F32 = np.empty((16, dims), dtype=np.float32)
        self._owner: I64 = np.empty(16, dtype=np.int64)
        self._rows: dict[int, list[int]] = {}
        self._n = 0
        self._max_norm = 1.0  # bounds FAISS's rounding error; see the module docstring
        self._lock = _RWLock()
        self._write_mutex = threading.Lock()

    # -- writes ---------------------------------------------------------------------

    def upsert(self, updates: Sequence[tuple[int, np.ndarray]]) -> None:
        """Replace all the vectors of each item; an empty ``(0, dims)`` array removes it.

        All-or-nothing: bad input raises before anything changes. Later updates of the same
        item in one call win.
        """
        prepared: dict[int, F32] = {}
        for item_id, vectors in updates:
            prepared[_check_id(item_id)] = self._check_vectors(vectors)
        owners = np.fromiter(prepared, dtype=np.int64, count=len(prepared))
        counts = np.fromiter(map(len, prepared.values()), dtype=np.int64, count=len(prepared))
        blocks = [v for v in prepared.values() if len(v)]
        new = np.concatenate(blocks) if blocks else np.empty((0, self.dims), np.float32)
        finite = np.isfinite(new).all(axis=1)
        if not finite.all():
            bad = int(np.searchsorted(np.cumsum(counts), np.argmin(finite), side="right"))
            raise ValueError(f"vectors of item {int(owners[bad])} contain NaN or inf")
        norm = _max_norm(new) if len(new) else 0.0
        with self._write_mutex:
            vecs, owner = self._grown(self._n + len(new))
            with self._lock.write():
                self._vecs, self._owner = vecs, owner
                self._max_norm = max(self._max_norm, norm)
                for item_id in prepared:
                    self._drop(item_id)
                start = self._n
                self._vecs[start : start + len(new)] = new
                self._owner[start : start + len(new)] = np.repeat(owners, counts)
                for item_id, count in zip(owners.tolist(), counts.tolist(), strict=True):
                    if count:
                        self._rows[item_id] = list(range(start, start + count))
                        start += count
                self._n = start

    def remove(self, item_ids: Iterable[int]) -> None:
        """Remove items and all their vectors; unknown ids are ignored."""
        ids = [_check_id(i) for i in item_ids]
        with self._write_mutex, self._lock.write():
            for item_id in ids:
                self._drop(item_id)

    def _drop(self, item_id: int) -> None:
        """Swap-remove an item's rows (exclusive lock held). O(dims) per row."""
        rows = self._rows.pop(item_id, None)
        if not rows:
            return
        # Highest row first: the last live row then never belongs to this item.
        for row in sorted(rows, reverse=True):
            last = self._n - 1
            if row != last:
                self._vecs[row] = self._vecs[last]
                moved = int(self._owner[last])
                self._owner[row] = moved
                moved_rows = self._rows[moved]
                moved_rows[moved_rows.index(last)] = row
            self._n = last

    def _grown(self, needed: int) -> tuple[F32, I64]:
        """Arrays with room for ``needed`` rows; copies happen outside the exclusive lock."""
        cap = len(self._owner)
        if needed <= cap:
            return self._vecs, self._owner
        while cap < needed:
            cap *= 2
        vecs = np.empty((cap, self.dims), dtype=np.float32)
        owner = np.empty(cap, dtype=np.int64)
        vecs[: self._n] = self._vecs[: self._n]
        owner[: self._n] = self._owner[: self._n]
        return vecs, owner

    def _check_vectors(self, vectors: np.ndarray) -> F32:
        arr = np.asarray(vectors)
        if arr.size == 0:
            return np.empty((0, self.dims), dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] != self.dims:
            raise ValueError(f"vectors must have shape (k, {self.dims}), got {arr.shape}")
        return arr.astype(np.float32, copy=False)

    # -- reads ----------------------------------------------------------------------

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._rows

    @property
    def item_count(self) -> int:
        return len(self._rows)

    @property
    def vector_count(self) -> int:
        return self._n

    def vectors_of(self, item_id: int) -> F32:
        """A copy of the item's vectors, ``(k, dims)``, in the order they were given."""
        with self._lock.read():
            rows = self._rows.get(item_id, [])
            return self._vecs[rows] if rows else np.empty((0, self.dims), dtype=np.float32)

    def search(
        self, query: np.ndarray, k: int, candidates: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """Up to ``k`` distinct items by best cosine, best first, ties by smaller id.

        ``candidates`` (item ids; unknown ids are fine) restricts the search to those items.
        """
        q = self._check_queries(query)
        k = operator.index(k)
        if k <= 0:
            return []
        with _omp_threads(1), self._lock.read():
            if candidates is None:
                return self._faiss_top(q, k, None)[0]
            rows = self._rows_of(candidates)
            if len(rows) == 0:
                return []
            if len(rows) <= NUMPY_MAX_ROWS:
                scores = self._canonical(rows, q[0])
                return _top(*_best_per_item(self._owner[rows], scores), k)
            return self._faiss_top(q, k, rows)[0]

    def search_batch(self, queries: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """``search`` for many queries at once (no candidates): one FAISS call, all cores."""
        q = self._check_queries(queries, batch=True)
        k = operator.index(k)
        if k <= 0 or len(q) == 0:
            return [[] for _ in range(len(q))]
        with _omp_threads(_BATCH_THREADS), self._lock.read():
            return self._faiss_top(q, k, None)

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

    def _rows_of(self, candidates: np.ndarray) -> I64:
        """The rows of the candidate items (read lock held)."""
        cand = np.asarray(candidates, dtype=np.int64).ravel()
        if len(cand) * _LOOKUP_RATIO <= self._n:
            get = self._rows.get
            unique = np.unique(cand).tolist()  # a repeated id must not repeat its rows
            return np.fromiter((row for c in unique for row in get(c, ())), dtype=np.int64)
        return np.flatnonzero(np.isin(self._owner[: self._n], cand))

    def _canonical(self, rows: I64 | list[int], q: F32) -> F32:
        """Canonical scores of rows: float64 dot products rounded once to float32."""
        block = self._vecs[rows].astype(np.float64)
        return (block @ q.astype(np.float64)).astype(np.float32)

    def _faiss_top(self, q: F32, k: int, rows: I64 | None) -> list[list[tuple[int, float]]]:
        """Exact top-k per query: FAISS hits, canonical rescoring, fetch more if unsure."""
        selected = self._n if rows is None else len(rows)
        results: list[list[tuple[int, float]]] = [[] for _ in range(len(q))]
        if selected == 0:
            return results
        per_item = -(-self._n // max(1, len(self._rows)))
        fetch = min(selected, (k + max(k, 16)) * per_item)
        # |float32 dot - exact dot| <= dims * 2**-24 * |q| * |v|; doubled for safety.
        qnorm = float(np.sqrt(np.einsum("ij,ij->i", q, q, dtype=np.float64)).max())
        eps = self.dims * 2.0**-23 * self._max_norm * max(qnorm, 1.0)
        pending = np.arange(len(q))
        while len(pending):
            dist, hits = self._knn(q[pending], fetch, rows)
            complete = fetch >= selected
            unsure = []
            for j, qi in enumerate(pending.tolist()):
                top = self._rescore(hits[j], q[qi], k)
                certain = complete or (len(top) == k and top[-1][1] > float(dist[j, -1]) + eps)
                if certain:
                    results[qi] = top
                else:
                    unsure.append(qi)
            pending = np.asarray(unsure, dtype=np.int64)
            fetch = min(selected, fetch * 4)
        return results

    def _knn(self, q: F32, fetch: int, rows: I64 | None) -> tuple[F32, I64]:
        dist = np.empty((len(q), fetch), dtype=np.float32)
        hits = np.empty((len(q), fetch), dtype=np.int64)
        sel = None if rows is None else faiss.IDSelectorArray(len(rows), faiss.swig_ptr(rows))
        faiss.knn_inner_product(
            faiss.swig_ptr(q),
            faiss.swig_ptr(self._vecs),
            self.dims,
            len(q),
            self._n,
            fetch,
            faiss.swig_ptr(dist),
            faiss.swig_ptr(hits),
            sel,
        )
        return dist, hits

    def _rescore(self, hits: I64, q: F32, k: int) -> list[tuple[int, float]]:
        """Top-k of the hit items, scored canonically over all of each item's vectors."""
        items = np.unique(self._owner[hits[hits >= 0]])
        rows = [row for item in items.tolist() for row in self._rows[item]]
        if not rows:
            return []
        owners = self._owner[rows]
        return _top(*_best_per_item(owners, self._canonical(rows, q)), k)

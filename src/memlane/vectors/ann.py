"""The optional approximate index: a sealed FAISS HNSW graph plus an exact delta.

Why this shape. FAISS's HNSW cannot remove vectors, and adding to it while another thread
searches it is unsafe (its arrays grow under the reader). So a graph, once built, is
never modified: it is *sealed*. Items written after the build form the *delta*, which is
searched exactly; deleted or overwritten items are tombstones in the graph, dropped
because every candidate is rescored exactly through the live directory. When the delta or
the tombstones grow past ``rebuild_share`` of the graph, a background thread builds a new
graph from a snapshot and swaps it in with one attribute store.

Search: the graph proposes the ``max(2k, 20)`` nearest vectors (``ef_search`` wide); those
items plus the delta's are rescored exactly, canonically, like every other path. Scoped and
filtered searches never use the graph: they stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

__all__ = ["AnnConfig", "Graph", "IdLog"]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class AnnConfig:
    """``IndexConfig.ann`` settings. Only ``kind="hnsw"`` exists (FAISS ``IndexHNSWFlat``).

    ``m``: graph degree; ``ef_construction``/``ef_search``: beam widths when building and
    searching (recall against speed); ``min_items``: below this many items the index stays
    exact (a flat scan is fast there); ``rebuild_share``: rebuild once items written or
    deleted since the build exceed this share of the graph.

    The defaults were tuned on a million source lines of Python's standard library
    embedded with ``HashingEmbeddings`` (benchmarks/search.py): ``ef_construction=64``
    plateaued near recall@10 0.96 whatever ``ef_search``; 128 reached 0.967 at
    ``ef_search=96`` and 0.979 at 128, for a build 2.3x as long (~8 minutes at 1M on two
    cores, in a background thread).
    """

    kind: str = "hnsw"
    m: int = 32
    ef_construction: int = 128
    ef_search: int = 96
    min_items: int = 20_000
    rebuild_share: float = 0.2

    def __post_init__(self) -> None:
        if self.kind != "hnsw":
            raise ValueError(f"ann kind must be 'hnsw', got {self.kind!r}")
        for name in ("m", "ef_construction", "ef_search", "min_items"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ann {name!r} must be a positive int, got {value!r}")
        share = self.rebuild_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 10:
            raise ValueError(f"ann 'rebuild_share' must be a number in (0, 10], got {share!r}")

    @classmethod
    def parse(cls, raw: AnnConfig | dict[str, Any]) -> AnnConfig:
        """From ``IndexConfig.ann``'s dict; unknown keys raise ``ValueError`` naming them."""
        if isinstance(raw, AnnConfig):
            return raw
        if not isinstance(raw, dict):
            raise ValueError(f"ann must be a dict such as {{'kind': 'hnsw'}}, got {raw!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"ann has unknown keys {unknown}; known keys: {sorted(known)}")
        return cls(**raw)


class Graph:
    """A sealed HNSW graph over the vectors live at one snapshot; label -> item id.

    ``l2``: the graph links nearest vectors by Euclidean distance, else by inner product.
    """

    def __init__(
        self, config: AnnConfig, vectors: F32, owners: I64, threads: int, *, l2: bool = False
    ) -> None:
        self.config = config
        self.owners = owners
        metric = faiss.METRIC_L2 if l2 else faiss.METRIC_INNER_PRODUCT
        self.index = faiss.IndexHNSWFlat(vectors.shape[1], config.m, metric)
        self.index.hnsw.efConstruction = config.ef_construction
        prev = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(threads)
        try:
            self.index.add(vectors)
        finally:
            faiss.omp_set_num_threads(prev)

    def __len__(self) -> int:
        return len(self.owners)

    def propose(self, queries: F32, k: int) -> list[I64]:
        """Item ids of the ``max(2k, 20)`` nearest vectors per query (read-only use)."""
        want = min(len(self.owners), max(2 * k, 20))
        params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # (stubs lag)
        params.efSearch = max(self.config.ef_search, want)
        _, labels = self.index.search(queries, want, params=params)
        return [self.owners[row[row >= 0]] for row in labels]


class IdLog:
    """Item ids written since the graph was built (append-only; readers slice a view)."""

    def __init__(self, ids: I64 | None = None) -> None:
        start = np.empty(0, dtype=np.int64) if ids is None else ids
        self._buf = np.empty(max(1024, 2 * len(start)), dtype=np.int64)
        self._buf[: len(start)] = start
        self.count = len(start)
        self.removed = 0  # deletes since the build (tombstones in the graph)

    def append(self, ids: I64) -> None:
        """Writer only: appends land past ``count``, which readers never look beyond."""
        end = self.count + len(ids)
        if end > len(self._buf):
            grown = np.empty(max(end, 2 * len(self._buf)), dtype=np.int64)
            grown[: self.count] = self._buf[: self.count]
            self._buf = grown
        self._buf[self.count : end] = ids
        self.count = end

    def view(self) -> I64:
        count = self.count  # first: every buffer the writer publishes holds these entries
        return self._buf[:count]

    def since(self, position: int) -> I64:
        return self.view()[position:].copy()

"""The raw ceilings: what plain sqlite3, FAISS and numpy do with the same rows and vectors.

They carry none of a store's work (no namespaces index, no timestamps, no futures, no
event loop), so they bound from above what any store on the same machine can reach.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from memlane.bench.workloads import Dataset, Item

__all__ = ["RawSqlite", "faiss_flat", "numpy_top_k"]


class RawSqlite:
    """A plain table of the same rows: ``executemany`` in one transaction, point SELECTs."""

    def __init__(self, path: Path, data: Dataset, prefill: bool = True) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS items (namespace TEXT, key TEXT, value TEXT,"
            " vector BLOB, created_at INTEGER, updated_at INTEGER, PRIMARY KEY (namespace, key))"
        )
        self.data = data
        for chunk in data.chunks(50_000) if prefill else ():
            self.insert(chunk, indexed=False)

    def insert(self, items: Sequence[Item], indexed: bool) -> float:
        """Seconds to insert ``items`` in one transaction (with their vectors if indexed)."""
        now = time.time_ns() // 1000
        started = time.perf_counter()
        if indexed:
            import faiss

            vectors = self.data.embed([value["text"] for _, _, value in items])
            blobs: list[bytes | None] = [vector.tobytes() for vector in vectors]
            flat = faiss.IndexFlatIP(self.data.dims)
            flat.add(vectors)
        else:
            blobs = [None] * len(items)
        rows = [(".".join(ns), key, orjson.dumps(value).decode(), blob, now, now)
                for (ns, key, value), blob in zip(items, blobs, strict=True)]
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?)", rows)
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        return time.perf_counter() - started

    def get_seconds(self, keys: Sequence[tuple[tuple[str, ...], str]]) -> float:
        """Seconds for one SELECT (and JSON decode) per key, one after another."""
        query = "SELECT value FROM items WHERE namespace = ? AND key = ?"
        started = time.perf_counter()
        for namespace, key in keys:
            row = self.conn.execute(query, (".".join(namespace), key)).fetchone()
            if row is None:
                raise AssertionError(f"raw sqlite3: missing {key}")
            orjson.loads(row[0])
        return time.perf_counter() - started

    def close(self) -> None:
        self.conn.close()


def faiss_flat(vectors: np.ndarray) -> Any:
    """An exact inner-product FAISS index over ``vectors`` (unit vectors: cosine).

    FAISS is set to one OpenMP thread for the run, as memlane's index runs it: on two cores
    FAISS's default two threads made a lone 10k search ~40x slower, and batched (BLAS)
    searches were faster on one thread too. A ceiling should be FAISS at its best.
    """
    import faiss

    faiss.omp_set_num_threads(1)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors))
    return index


def numpy_top_k(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact top ``k`` rows per query by brute force (one matrix product, argpartition)."""
    scores = queries @ vectors.T
    k = min(k, vectors.shape[0])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(top, order, axis=1)

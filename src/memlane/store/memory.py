"""InMemoryStore: the contract in process memory, with FAISS semantic search and TTL.

Every call runs in three steps: check the ops (in the caller), embed outside any lock (one
call for all the batch's texts), then read and apply under a short lock. Reads in a batch
see the state from before its writes. Sync methods work in any thread, even one that runs
an event loop, because nothing here needs a loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from memlane.store.base import BaseStore
from memlane.store.indexing import Indexer, PutVectors
from memlane.store.namespaces import list_matching_namespaces, matches_prefix
from memlane.store.ops import (
    PreparedGet,
    PreparedList,
    PreparedOp,
    PreparedPut,
    PreparedSearch,
    prepare_ops,
)
from memlane.store.timestamps import Clock, from_micros
from memlane.store.types import (
    IndexConfig,
    Item,
    Op,
    Result,
    SearchItem,
    StoreClosedError,
    TTLConfig,
)
from memlane.vectors import EmbeddingError, VectorIndex

__all__ = ["InMemoryStore"]


@dataclass(slots=True)
class _Record:
    item_id: int
    namespace: tuple[str, ...]
    key: str
    value: dict[str, Any]
    encoded: bytes
    created_at: int
    updated_at: int
    ttl_minutes: float | None
    expires_at: float | None

    def live(self, now: float) -> bool:
        return self.expires_at is None or self.expires_at > now

    def to_item(self) -> Item:
        return Item(
            value=orjson.loads(self.encoded),
            key=self.key,
            namespace=self.namespace,
            created_at=from_micros(self.created_at),
            updated_at=from_micros(self.updated_at),
        )

    def to_search_item(self, score: float | None) -> SearchItem:
        return SearchItem(
            value=orjson.loads(self.encoded),
            key=self.key,
            namespace=self.namespace,
            created_at=from_micros(self.created_at),
            updated_at=from_micros(self.updated_at),
            score=score,
        )


@dataclass(slots=True)
class _Plan:
    """A checked batch: its ops, its writes (the last per key wins) and what to embed."""

    ops: list[PreparedOp]
    writes: list[PreparedPut]
    values: list[dict[str, Any]]
    query_rows: dict[int, str] = field(default_factory=dict)


class InMemoryStore(BaseStore):
    """A store in process memory; see CONTRACT.md section 2 for its rules.

    ``index``: an ``IndexConfig`` (or LangGraph's dict shape) to enable semantic search.
    ``ttl``: a ``TTLConfig``; with ``sweep_interval_minutes`` a daemon thread deletes expired
    items until :meth:`close`. ``clock``: a ``() -> seconds`` source, for tests.
    """

    def __init__(
        self,
        *,
        index: IndexConfig | dict[str, Any] | None = None,
        ttl: TTLConfig | dict[str, Any] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.index_config = IndexConfig.coerce(index)
        self.ttl_config = TTLConfig.coerce(ttl)
        self._indexer = Indexer(self.index_config) if self.index_config else None
        self._vectors = VectorIndex(self.index_config.dims) if self.index_config else None
        self._clock = Clock(clock)
        self._lock = threading.RLock()
        self._namespaces: dict[tuple[str, ...], dict[str, _Record]] = {}
        self._by_id: dict[int, _Record] = {}
        self._next_id = 0
        self._expiring = 0  # how many records carry an expiry: 0 allows whole-store fast paths
        self._closed = False
        self._sweeper: threading.Thread | None = None
        self._stop_sweeper = threading.Event()
        if self.ttl_config and self.ttl_config.sweep_interval_minutes:
            self._start_sweeper(self.ttl_config.sweep_interval_minutes)

    # ---- the two entry points ------------------------------------------------------------

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        plan = self._plan(ops)
        embedded = None
        queries: dict[int, np.ndarray] = {}
        if self._indexer is not None:
            embed_plan = self._indexer.plan(list(zip(plan.writes, plan.values, strict=True)))
            if embed_plan.texts:
                embedded = self._indexer.embedder.embed_texts(embed_plan.texts)
            outcomes = embed_plan.split(embedded, self._indexer.dims)
            for row, text in plan.query_rows.items():
                queries[row] = self._indexer.embedder.embed_query(text)
        else:
            outcomes = []
        return self._execute(plan, outcomes, queries)

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        plan = self._plan(ops)
        embedded = None
        queries: dict[int, np.ndarray] = {}
        if self._indexer is not None:
            embed_plan = self._indexer.plan(list(zip(plan.writes, plan.values, strict=True)))
            if embed_plan.texts:
                embedded = await self._indexer.embedder.aembed_texts(embed_plan.texts)
            outcomes = embed_plan.split(embedded, self._indexer.dims)
            for row, text in plan.query_rows.items():
                queries[row] = await self._indexer.embedder.aembed_query(text)
        else:
            outcomes = []
        return self._execute(plan, outcomes, queries)

    # ---- planning and execution ----------------------------------------------------------

    def _plan(self, ops: Iterable[Op]) -> _Plan:
        self._check_open()
        prepared = prepare_ops(ops, self.ttl_config)
        last_write: dict[tuple[tuple[str, ...], str], PreparedPut] = {}
        query_rows: dict[int, str] = {}
        for row, op in enumerate(prepared):
            if isinstance(op, PreparedPut):
                last_write.pop((op.namespace, op.key), None)  # re-insert keeps batch order
                last_write[(op.namespace, op.key)] = op
            elif isinstance(op, PreparedSearch) and op.query is not None and self._indexer:
                query_rows[row] = op.query
        writes = list(last_write.values())
        values = [{} if put.is_delete else put.value() for put in writes]
        return _Plan(prepared, writes, values, query_rows)

    def _execute(
        self, plan: _Plan, outcomes: list[PutVectors], queries: dict[int, np.ndarray]
    ) -> list[Result]:
        failed = [(put, out) for put, out in zip(plan.writes, outcomes, strict=False) if out.error]
        if failed:
            put, outcome = failed[0]
            raise EmbeddingError(
                f"cannot index the put to {put.namespace!r}/{put.key!r}: {outcome.error}; "
                f"nothing in this batch was applied"
            )
        with self._lock:
            self._check_open()
            now = self._clock.now()
            results: list[Result] = []
            for row, op in enumerate(plan.ops):
                if isinstance(op, PreparedGet):
                    results.append(self._get(op, now))
                elif isinstance(op, PreparedSearch):
                    results.append(self._search(op, queries.get(row), now))
                elif isinstance(op, PreparedList):
                    results.append(self._list(op, now))
                else:
                    results.append(None)
            for index, put in enumerate(plan.writes):
                vectors = outcomes[index].vectors if outcomes else None
                self._apply(put, plan.values[index], vectors, now)
            return results

    def _apply(
        self, put: PreparedPut, value: dict[str, Any], vectors: np.ndarray | None, now: float
    ) -> None:
        bucket = self._namespaces.get(put.namespace)
        old = bucket.get(put.key) if bucket else None
        if old is not None and not old.live(now):
            self._drop(old)  # an expired item is gone: a new put starts it afresh
            bucket = self._namespaces.get(put.namespace)
            old = None
        if put.is_delete:
            if old is not None:
                self._drop(old)
            return
        assert put.encoded is not None
        stamp = self._clock.next_stamp()
        expires_at = now + put.ttl_minutes * 60 if put.ttl_minutes is not None else None
        if old is None:
            record = _Record(
                self._next_id, put.namespace, put.key, value, put.encoded,
                stamp, stamp, put.ttl_minutes, expires_at,
            )
            self._next_id += 1
            if bucket is None:
                bucket = self._namespaces[put.namespace] = {}
            bucket[put.key] = record
            self._by_id[record.item_id] = record
        else:
            record = old
            self._expiring -= old.expires_at is not None
            record.value, record.encoded, record.updated_at = value, put.encoded, stamp
            record.ttl_minutes, record.expires_at = put.ttl_minutes, expires_at
        self._expiring += expires_at is not None
        if self._vectors is not None:
            if vectors is not None and len(vectors):
                self._vectors.upsert([(record.item_id, vectors)])
            elif old is not None:
                self._vectors.remove([record.item_id])

    def _drop(self, record: _Record) -> None:
        bucket = self._namespaces[record.namespace]
        del bucket[record.key]
        if not bucket:
            del self._namespaces[record.namespace]
        del self._by_id[record.item_id]
        self._expiring -= record.expires_at is not None
        if self._vectors is not None:
            self._vectors.remove([record.item_id])

    def _refresh(self, record: _Record, now: float) -> None:
        if record.ttl_minutes is not None:
            record.expires_at = now + record.ttl_minutes * 60

    # ---- reads ---------------------------------------------------------------------------

    def _get(self, op: PreparedGet, now: float) -> Item | None:
        bucket = self._namespaces.get(op.namespace)
        record = bucket.get(op.key) if bucket else None
        if record is None or not record.live(now):
            return None
        if op.refresh_ttl:
            self._refresh(record, now)
        return record.to_item()

    def _candidates(self, op: PreparedSearch, now: float) -> list[_Record]:
        prefix = op.namespace_prefix
        found: list[_Record] = []
        for namespace, bucket in self._namespaces.items():
            if not matches_prefix(namespace, prefix):
                continue
            for record in bucket.values():
                if record.live(now) and (op.filter.is_empty or op.filter.matches(record.value)):
                    found.append(record)
        return found

    def _search(
        self, op: PreparedSearch, query: np.ndarray | None, now: float
    ) -> list[SearchItem]:
        if query is not None and self._vectors is not None:
            hits = self._vector_hits(op, query, now)
        else:
            records = self._candidates(op, now)
            records.sort(key=lambda r: (r.namespace, r.key))
            records.sort(key=lambda r: r.updated_at, reverse=True)
            hits = [(record, None) for record in records[op.offset : op.offset + op.limit]]
        if op.refresh_ttl:
            for record, _ in hits:
                self._refresh(record, now)
        return [record.to_search_item(score) for record, score in hits]

    def _vector_hits(
        self, op: PreparedSearch, query: np.ndarray, now: float
    ) -> list[tuple[_Record, float | None]]:
        assert self._vectors is not None
        whole_store = not op.namespace_prefix and op.filter.is_empty and self._expiring == 0
        candidates = None
        if not whole_store:
            ids = [record.item_id for record in self._candidates(op, now)]
            candidates = np.fromiter(ids, dtype=np.int64, count=len(ids))
        wanted = op.offset + op.limit
        if wanted == 0:
            return []
        scored = self._vectors.search(query, wanted, candidates)
        return [(self._by_id[item_id], score) for item_id, score in scored[op.offset :]]

    def _list(self, op: PreparedList, now: float) -> list[tuple[str, ...]]:
        live = (
            namespace
            for namespace, bucket in self._namespaces.items()
            if self._expiring == 0 or any(record.live(now) for record in bucket.values())
        )
        return list_matching_namespaces(live, op.conditions, op.max_depth, op.limit, op.offset)

    # ---- TTL sweeping and lifecycle ------------------------------------------------------

    def sweep_expired(self) -> int:
        """Delete every expired item now; return how many were deleted."""
        with self._lock:
            self._check_open()
            if self._expiring == 0:
                return 0
            now = self._clock.now()
            expired = [record for record in self._by_id.values() if not record.live(now)]
            for record in expired:
                self._drop(record)
            return len(expired)

    async def asweep_expired(self) -> int:
        return self.sweep_expired()

    def _start_sweeper(self, interval_minutes: float) -> None:
        def sweep_forever() -> None:
            while not self._stop_sweeper.wait(interval_minutes * 60):
                try:
                    self.sweep_expired()
                except StoreClosedError:
                    return

        self._sweeper = threading.Thread(
            target=sweep_forever, name="memlane-ttl-sweeper", daemon=True
        )
        self._sweeper.start()

    def close(self) -> None:
        """Stop the sweeper; later calls raise ``StoreClosedError``. Idempotent."""
        with self._lock:
            self._closed = True
        self._stop_sweeper.set()
        if self._sweeper is not None and self._sweeper is not threading.current_thread():
            self._sweeper.join()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("this InMemoryStore is closed")

    def __len__(self) -> int:
        """How many items are stored (expired ones count until swept)."""
        return len(self._by_id)

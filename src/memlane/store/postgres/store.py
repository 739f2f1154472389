"""PostgresStore: the contract on a PostgreSQL database, shared by any number of processes
on any number of machines (docs/postgres.md).

``async with PostgresStore.open(dsn) as store`` (or ``open_sync`` in scripts). Each process
runs one batching writer task (``writer.py``) on a connection of its own, and reads on a
pool of other connections (``reader.py``), so reads never wait for the writer. The store's
tables live in one schema (``schema=``, default ``"memlane"``), created and migrated by the
first opener. Every write is committed before it is acknowledged, so a write acknowledged
by any process is visible to every read that starts after it, in every process.

Vectors are durable in PostgreSQL (pgvector) and searched in each process's FAISS replica,
which follows every process's commits through a change feed (``replica.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Literal, TypeVar

import anyio
import numpy as np
import orjson
import psycopg
from psycopg import sql

from memlane.store.durable_store import DurableStore
from memlane.store.indexing import Indexer
from memlane.store.loop_bound import Opening
from memlane.store.ops import (
    PreparedGet,
    PreparedList,
    PreparedSearch,
)
from memlane.store.postgres.connections import Connection, is_lost
from memlane.store.postgres.gets import GetBatcher
from memlane.store.postgres.pending import embed_pending
from memlane.store.postgres.reader import ConnectionPool, Statements
from memlane.store.postgres.replica import Replica
from memlane.store.postgres.schema import check_index, check_schema_name, migrate
from memlane.store.postgres.vectors import register_vector_types
from memlane.store.postgres.writer import Feed, PostgresWriter, channel_name
from memlane.store.sqlite.codec import (
    ItemRow,
    encode_namespace,
    row_to_item,
    row_to_search_item,
)
from memlane.store.sqlite.policies import CLOSE_GIVE_UP_S
from memlane.store.timestamps import Clock
from memlane.store.types import (
    IndexConfig,
    Item,
    SearchItem,
    TTLConfig,
)
from memlane.vectors import VectorIndex
from memlane.vectors.coalesce import SearchCoalescer

__all__ = ["PostgresStore"]

log = logging.getLogger(__name__)

T = TypeVar("T")


Consistency = Literal["strong", "eventual"]
FOLLOW_EVERY_S = 1.0  # a catch-up at least this often, notifications or not


class _CatchUps:
    """Catch-ups shared by the reads that need one: a read is covered by a catch-up that
    began after the read did, so reads arriving during one share the next."""

    def __init__(self, run: Callable[[], Awaitable[None]]) -> None:
        self._run = run
        self._started = 0
        self._finished = 0
        self._running: asyncio.Future[None] | None = None

    async def fresh(self) -> None:
        target = self._started + 1
        while self._finished < target:
            if self._running is None:
                self._started += 1
                self._running = asyncio.ensure_future(self._one(self._started))
            await asyncio.shield(self._running)

    async def _one(self, number: int) -> None:
        try:
            await self._run()
            self._finished = max(self._finished, number)
        finally:
            self._running = None


class PostgresStore(DurableStore[PostgresWriter]):
    """The contract on PostgreSQL: see docs/contract.md and docs/postgres.md."""

    def __init__(
        self,
        *,
        schema: str,
        ttl_config: TTLConfig | None,
        writer: PostgresWriter,
        readers: ConnectionPool,
        clock: Clock,
        index_config: IndexConfig | None = None,
        indexer: Indexer | None = None,
        replica: Replica | None = None,
        consistency: Consistency = "strong",
    ) -> None:
        self.schema = schema
        self.index_config = index_config
        self._indexer = indexer
        self._replica = replica
        self._consistency = consistency
        self._coalescer = SearchCoalescer(replica.index) if replica is not None else None
        self._catch_ups = _CatchUps(self._catch_up_once)
        self.ttl_config = ttl_config
        self._clock = clock
        self._writer = writer
        self._readers = readers
        self._reads = Statements(schema)
        self._gets = GetBatcher(schema, self._read, drains=readers.size)
        self._queries = True  # False when opened with index=False: ``query=`` raises
        self._bind_to_running_loop(f"in schema {schema!r}")
        self._closing: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # ---- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, dsn: str, /, **options: Any) -> Opening[PostgresStore]:
        """Open (creating or upgrading) the store in ``dsn``'s database: see :meth:`_open`.

        Either ``async with PostgresStore.open(dsn) as store:`` (closed on exit) or
        ``store = await PostgresStore.open(dsn)`` and later ``await store.aclose()``.
        """
        return Opening(lambda: cls._open(dsn, **options), "PostgresStore.open(dsn)")

    @classmethod
    async def _open(
        cls,
        dsn: str,
        *,
        index: IndexConfig | dict[str, Any] | Literal[False] | None = None,
        ttl: TTLConfig | dict[str, Any] | None = None,
        schema: str = "memlane",
        readers: int = 4,
        pool_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        mailbox_capacity: int = 10_000,
        max_batch: int = 1_024,
        clock: Callable[[], float] | None = None,
        consistency: Consistency = "strong",
    ) -> PostgresStore:
        """``readers``: connections for reads (a read waits up to ``pool_timeout`` seconds
        for one, then raises ``PoolTimeoutError``). ``schema``: where the tables live;
        stores in different schemas of one database are separate stores.

        ``index``: as for the other stores; the schema records it (another config raises
        ``IndexConfigError``; ``index=False`` opens an indexed schema without its embedder,
        and what it writes is embedded at the next open with the index). Vectors are kept
        in PostgreSQL (pgvector) and searched in this process's FAISS replica, which follows
        every process's commits (``replica.py``). ``consistency="strong"`` (default): a
        vector search first applies what other processes committed, so anything
        acknowledged anywhere before it began is found; ``"eventual"``: it searches the
        replica as it is (other processes' writes arrive within the feed's lag, ~ms)."""
        if not isinstance(dsn, str) or not dsn:
            raise ValueError(f"PostgresStore needs a libpq connection string, got {dsn!r}")
        schema = check_schema_name(schema)
        if isinstance(readers, bool) or not isinstance(readers, int) or readers < 1:
            raise ValueError(f"readers must be a positive int, got {readers!r}")
        if consistency not in ("strong", "eventual"):
            raise ValueError(f"consistency must be 'strong' or 'eventual', got {consistency!r}")
        index_config = None if index is False else IndexConfig.coerce(index)
        indexer = Indexer(index_config) if index_config is not None else None
        ttl_config = TTLConfig.coerce(ttl)
        token = f"{os.getpid()}:{secrets.token_hex(6)}"

        async def connect() -> Connection:
            """Every connection autocommits: transactions are explicit ``transaction()``
            blocks (on a connection already in a transaction one is only a savepoint)."""
            conn: Connection = await psycopg.AsyncConnection.connect(
                dsn, autocommit=True, connect_timeout=max(1, round(connect_timeout))
            )
            return conn

        resources = contextlib.AsyncExitStack()
        try:
            writer_conn = await connect()
            resources.push_async_callback(writer_conn.close)
            await migrate(writer_conn, schema)
            indexed = await check_index(
                writer_conn, schema, index_config, disabled=index is False
            )
            store_clock = Clock(clock)
            feed = replica = None
            if indexed:
                vector_oid = await register_vector_types(writer_conn)
                feed = Feed(token, vector_oid, mark_pending=indexer is None)
            if indexer is not None and feed is not None:
                await embed_pending(
                    writer_conn, schema, indexer, vector_oid=feed.vector_oid, writer=token,
                    now=store_clock.now(),
                )
                assert index_config is not None
                vectors = VectorIndex(
                    index_config.dims, ann=index_config.ann, distance=index_config.distance
                )
                replica = Replica(schema, vectors, token)
            pool = ConnectionPool(connect, readers, pool_timeout)
            resources.push_async_callback(pool.close)
            await pool.fill()
            async with pool.lease() as conn:
                cursor = await conn.execute(
                    f'SELECT max(updated_at) FROM "{schema}".items'
                )
                row = await cursor.fetchone()
            store_clock.observe(int(row[0] or 0) if row else 0)
            if replica is not None:
                async with pool.lease() as conn:
                    await replica.load(conn)
            writer = PostgresWriter(
                connect,
                writer_conn,
                schema=schema,
                indexer=indexer,
                clock=store_clock,
                capacity=mailbox_capacity,
                max_batch=max_batch,
                feed=feed,
                replica=replica,
            )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await resources.aclose()
            raise
        resources.pop_all()
        store = cls(
            schema=schema, ttl_config=ttl_config, writer=writer, readers=pool, clock=store_clock,
            index_config=index_config, indexer=indexer, replica=replica, consistency=consistency,
        )
        store._queries = index is not False
        store._tasks.append(asyncio.create_task(writer.run(), name="memlane-pg-writer"))
        if replica is not None:
            store._tasks.append(
                asyncio.create_task(store._follow_forever(connect),
                                    name="memlane-pg-follower")
            )
        if ttl_config is not None and ttl_config.sweep_interval_minutes:
            store._tasks.append(
                asyncio.create_task(
                    store._sweep_forever(ttl_config.sweep_interval_minutes),
                    name="memlane-pg-ttl-sweeper",
                )
            )
        return store


    # ---- the batch entry points ----------------------------------------------------------

    # ---- reads ---------------------------------------------------------------------------

    async def _read(self, read: Callable[[Connection], Awaitable[T]]) -> T:
        """``read`` on a pooled connection; once more on a fresh one if that connection
        turns out lost (a server restart, ``pg_terminate_backend``): reads change nothing."""
        for attempt in range(2):
            async with self._readers.lease() as conn:
                try:
                    return await read(conn)
                except psycopg.OperationalError as exc:
                    if attempt or not is_lost(conn, exc):
                        raise
                    self._readers.discard(conn)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _get(self, op: PreparedGet) -> Item | None:
        now = self._clock.now()
        row = await self._gets.get(op.namespace, op.key, now)
        if row is None:
            return None
        if op.refresh_ttl and row.expiring:
            self._writer.touch([row.id], now)
        return row_to_item(row)

    async def _search(self, op: PreparedSearch) -> list[SearchItem]:
        if not op.limit:
            return []
        if op.query and self._indexer is not None and self._coalescer is not None:
            # The catch-up (strong) runs while the query is embedded: it began after this
            # read did, so it covers everything acknowledged before.
            caught_up = (
                asyncio.ensure_future(self._catch_ups.fresh())
                if self._consistency == "strong" else None
            )
            try:
                query = await self._indexer.embedder.aembed_query(op.query)
            except BaseException:
                if caught_up is not None:
                    caught_up.cancel()  # the catch-up itself, shared, goes on (shielded)
                raise
            if caught_up is not None:
                await caught_up
            return await self._vector_search(op, query)
        now = self._clock.now()
        rows = await self._read(lambda conn: self._reads.search(conn, op, now))
        return self._found([(row, None) for row in rows], op, now)

    async def _vector_search(self, op: PreparedSearch, query: np.ndarray) -> list[SearchItem]:
        """Rank by the replica, rows from SQL: candidates (prefix, filter) from SQL, the
        top hits' rows fetched live; a page left short by hits deleted, expired or gone
        out of the filter meanwhile is searched again with twice the ``k``."""
        assert self._coalescer is not None
        now = self._clock.now()
        candidates = known = None
        if op.namespace_prefix or not op.filter.is_empty:
            candidates, known = await self._read(
                lambda conn: self._reads.candidates(conn, op, now)
            )
            if candidates is not None and not len(candidates):
                return []
        wanted = op.offset + op.limit
        k = wanted
        while True:
            hits = await self._coalescer.search(query, k, candidates)
            if known is not None:  # the candidates' rows came with them
                rows = known
            else:
                ids = [item_id for item_id, _ in hits]
                rows = await self._read(partial(self._reads.rows_by_id, ids=ids, now=now))
            kept: list[tuple[ItemRow, float | None]] = []
            for item_id, score in hits:
                found = rows.get(item_id)
                if found is None or not self._allows(op, found):
                    continue
                kept.append((found, score))
            if len(kept) >= wanted or len(hits) < k:
                return self._found(kept[op.offset : wanted], op, now)
            k *= 2

    @staticmethod
    def _allows(op: PreparedSearch, row: ItemRow) -> bool:
        """Whether a row fetched after the candidates were chosen still matches (an item
        written meanwhile outside the prefix, or out of the filter, is not)."""
        if op.namespace_prefix:
            text = encode_namespace(op.namespace_prefix)
            if row.namespace != text and not row.namespace.startswith(text + "."):
                return False
        return op.filter.is_empty or bool(op.filter.matches(orjson.loads(row.value)))

    def _found(
        self, page: list[tuple[ItemRow, float | None]], op: PreparedSearch, now: float
    ) -> list[SearchItem]:
        rows = [row for row, _ in page]
        if op.refresh_ttl:
            expiring = [row.id for row in rows if row.expiring]
            if expiring:
                self._writer.touch(expiring, now)
        return [row_to_search_item(row, score) for row, score in page]

    # ---- following the other processes ---------------------------------------------------

    async def _catch_up_once(self) -> None:
        assert self._replica is not None
        replica = self._replica
        await self._read(replica.catch_up)

    async def _follow_forever(self, connect: Callable[[], Awaitable[Connection]]) -> None:
        """Catch up whenever another process's commit is NOTIFYed, and every
        ``FOLLOW_EVERY_S`` anyway (a notification lost while reconnecting)."""
        assert self._replica is not None
        channel = sql.Identifier(channel_name(self.schema))
        failing = False
        while True:
            try:
                listener = await connect()
                try:
                    await listener.execute(sql.SQL("LISTEN {}").format(channel))
                    await self._catch_ups.fresh()  # what was committed before LISTEN
                    while True:
                        async for _ in listener.notifies(timeout=FOLLOW_EVERY_S, stop_after=1):
                            pass
                        await self._catch_ups.fresh()
                        if failing:
                            log.warning("memlane: following the other processes works again")
                            failing = False
                finally:
                    await listener.close()
            except asyncio.CancelledError:
                raise
            except Exception:
                if self._closed:
                    return
                if not failing:
                    log.exception("memlane: following the other processes' commits failed")
                failing = True
                await asyncio.sleep(FOLLOW_EVERY_S)

    async def _list(self, op: PreparedList) -> list[tuple[str, ...]]:
        now = self._clock.now()
        return await self._read(lambda conn: self._reads.list_namespaces(conn, op, now))

    # ---- TTL -----------------------------------------------------------------------------

    async def asweep_expired(self) -> int:
        self._check_async()
        return await self._writer.sweep()

    async def _sweep_forever(self, interval_minutes: float) -> None:
        """Sweep every interval, unless another process is sweeping (an advisory lock held
        for the sweep's transaction: one sweeper at a time, whoever is alive)."""
        while True:
            await asyncio.sleep(interval_minutes * 60)
            try:
                await self._writer.sweep(periodic=True)
            except Exception:  # a failed sweep is retried on the next interval
                if self._closed:
                    return
                log.exception("memlane TTL sweep failed")

    # ---- closing -------------------------------------------------------------------------

    async def aclose(self, give_up_after: float | None = CLOSE_GIVE_UP_S) -> None:
        """Stop taking work, commit everything queued, close the connections. Past
        ``give_up_after`` seconds the writes still queued fail with ``StoreClosedError``."""
        if self._closing is None:
            self._closed = True
            self._closing = asyncio.ensure_future(self._shut_down())
        try:
            await asyncio.wait_for(asyncio.shield(self._closing), give_up_after)
        except TimeoutError:
            log.warning(
                "memlane: closing the PostgresStore took over %s s; the writes still queued "
                "fail with StoreClosedError", give_up_after,
            )
            self._tasks[0].cancel()
            await asyncio.shield(self._closing)

    async def _shut_down(self) -> None:
        self._writer.mailbox.close()
        await self._writer.stopped.wait()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._coalescer is not None:
            self._coalescer.close()
        await self._writer.close_connection()
        await self._readers.close()

    @property
    def writer_batches(self) -> int:
        """How many batches the writer has committed (a gauge of batching under load)."""
        return self._writer.batches

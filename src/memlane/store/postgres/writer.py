"""PostgresStore's writer: the shared batching actor, one transaction per batch.

A batch (``actor.py``) is prepared (embedded, coalesced to the last op per key, stamped)
and committed as one transaction of a few statements whatever its size: the deletes, the
upserts and the refreshed expiries each travel as one JSON parameter read by
``json_to_recordset``, rows sorted by (namespace, key) so that writers of several
processes lock rows in one order. A deadlock or serialisation failure retries the whole
transaction; any other failure of a batch of several requests retries them one request a
transaction, so that one caller's bad write fails that caller only. A connection lost
before the commit was sent is replaced and the batch retried (nothing was applied); lost
while committing, the batch's callers get :class:`CommitUnknownError` (never a false
success), and the next batch connects again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio.to_thread
import numpy as np
import orjson
import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.types.json import Json

from memlane.store.durable_writer import DurableWriter, PreparedBatch
from memlane.store.embedding_stage import Entry, coalesce
from memlane.store.heavy import MANY_OPS
from memlane.store.indexing import Indexer, encode_fields
from memlane.store.mailbox import MailboxClosed
from memlane.store.ops import PreparedPut
from memlane.store.postgres.connections import Connection, is_lost
from memlane.store.postgres.replica import FEED_KEEP_S, Replica
from memlane.store.postgres.schema import schema_lock_id
from memlane.store.postgres.vectors import encode_vectors
from memlane.store.settle import settle_fairly
from memlane.store.sqlite.codec import encode_namespace
from memlane.store.timestamps import Clock
from memlane.store.types import StoreClosedError
from memlane.store.write_requests import (
    SweepRequest,
    WriterError,
)

__all__ = ["CommitUnknownError", "Feed", "PostgresWriter", "channel_name"]

log = logging.getLogger(__name__)

Connect = Callable[[], Awaitable[Connection]]

_RETRIES = 8  # deadlocks and serialisation failures: each retry takes the locks again


class CommitUnknownError(WriterError):
    """The connection was lost while the batch committed: it may or may not be applied."""


@dataclass(slots=True)
class _Outcome:
    swept: int = 0
    removed: list[int] = field(default_factory=list)
    upserted: list[tuple[int, np.ndarray]] = field(default_factory=list)  # for the replica


def _raw_json(payload: bytes) -> Json:
    """A JSON parameter whose text is already built (values are orjson's bytes)."""
    return Json(payload, dumps=lambda built: built)


class PostgresWriter(DurableWriter):
    """Owns the write connection (reconnecting after a loss) and commits batches."""

    def __init__(
        self,
        connect: Connect,
        conn: Connection,
        *,
        schema: str,
        indexer: Indexer | None,
        clock: Clock,
        capacity: int = 10_000,
        max_batch: int = 1_024,
        feed: Feed | None = None,
        replica: Replica | None = None,
    ) -> None:
        self._connect = connect
        self._conn: Connection | None = conn
        self._schema = schema
        self._statements = _Statements(schema, feed)
        self._replica = replica  # this process's vectors: mirrored before each ack
        super().__init__(indexer=indexer, clock=clock, capacity=capacity, max_batch=max_batch)

    # ---- what callers use ----------------------------------------------------------------

    async def sweep(self, periodic: bool = False) -> int:
        """Delete expired items now; ``periodic``: only if no other process is sweeping."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        try:
            self.mailbox.put_nowait(SweepRequest(future, ("periodic", 0.0) if periodic else None))
        except MailboxClosed:
            raise StoreClosedError("the store is closed") from None
        return await future

    async def close_connection(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    # ---- a batch's commit ----------------------------------------------------------------

    async def _finish(self, batch: PreparedBatch) -> None:
        writes, failed = batch.writes, batch.failed
        now = self._clock.now()
        sweep = _sweep_wanted(batch.sweeps)
        try:
            outcome = await self._commit(batch.survivors, batch.stamps, batch.touches, sweep, now)
        except Exception as exc:
            alive = len(writes) - len(failed)
            if alive <= 1 or isinstance(exc, CommitUnknownError):
                for n in range(len(writes)):
                    failed.setdefault(n, exc)
                outcome = _Outcome()
                for request in batch.sweeps:
                    if not request.future.done():
                        request.future.set_exception(exc)
            else:
                outcome = await self._commit_one_by_one(batch, sweep, now)
        self.batches += 1
        for request in batch.sweeps:
            if not request.future.done():
                request.future.set_result(outcome.swept)
        await settle_fairly([(request.future, failed.get(n)) for n, request in enumerate(writes)])

    async def _commit_one_by_one(
        self, batch: PreparedBatch, sweep: bool | None, now: float
    ) -> _Outcome:
        """After a failed batch transaction: one transaction per request, to find the bad one."""
        failed = batch.failed
        for number in sorted({e.request for e in batch.entries} - set(failed)):
            own = coalesce([e for e in batch.entries if e.request == number], failed)
            try:
                await self._embed_alone(own)
                stamps = [self._clock.next_stamp() for _ in own]
                await self._commit(own, stamps, [], None, now)
            except Exception as exc:
                failed[number] = exc
        outcome = _Outcome()
        if batch.touches or sweep is not None:
            try:
                outcome = await self._commit([], [], batch.touches, sweep, now)
            except Exception as exc:
                for request in batch.sweeps:
                    if not request.future.done():
                        request.future.set_exception(exc)
        return outcome

    # ---- the transaction -----------------------------------------------------------------

    async def _commit(
        self,
        entries: list[Entry],
        stamps: list[int],
        touches: list[tuple[float, int]],
        sweep: bool | None,
        now: float,
    ) -> _Outcome:
        """One transaction, retried on deadlocks and serialisation failures, and on a
        connection found lost before the commit was sent (then nothing was applied)."""
        for attempt in range(_RETRIES):
            conn = await self._connection()
            committing = False
            try:
                # The replica's lock from before COMMIT until the mirror is applied: a
                # catch-up sees this commit, or runs wholly before its mirror.
                async with self._mirror_lock():
                    async with conn.transaction():
                        outcome = await self._statements.run(
                            conn, entries, stamps, touches, sweep, now
                        )
                        committing = True  # leaving the block sends COMMIT
                    self._mirror(outcome)
                return outcome
            except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure):
                if attempt == _RETRIES - 1:
                    raise
                await asyncio.sleep(0.001 * 2**attempt)  # a back-off before taking locks again
            except psycopg.OperationalError as exc:
                if not is_lost(conn, exc):
                    raise
                self._conn = None
                if committing:
                    raise CommitUnknownError(
                        "the connection to PostgreSQL was lost while this write committed: "
                        "it may or may not have been applied; read it back before retrying"
                    ) from exc
                if attempt == _RETRIES - 1:
                    raise WriterError(f"lost the connection to PostgreSQL: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _mirror_lock(self) -> contextlib.AbstractAsyncContextManager[object]:
        return self._replica.lock if self._replica is not None else contextlib.nullcontext()

    def _mirror(self, outcome: _Outcome) -> None:
        """Apply a committed batch to this process's vectors (before its callers hear)."""
        if self._replica is None:
            return
        index = self._replica.index
        gone = [*outcome.removed, *(i for i, vectors in outcome.upserted if not len(vectors))]
        if gone:
            index.remove(gone)
        kept = [(i, vectors) for i, vectors in outcome.upserted if len(vectors)]
        if kept:
            index.upsert(kept)

    async def _connection(self) -> Connection:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            self._conn = None
            try:
                conn = await self._connect()
            except psycopg.OperationalError as exc:
                raise WriterError(f"cannot reach PostgreSQL to commit this write: {exc}") from exc
            self._conn = conn
        return conn


def _sweep_wanted(sweeps: list[SweepRequest]) -> bool | None:
    """None: no sweep; True: an explicit one (always runs); False: periodic only."""
    if not sweeps:
        return None
    return any(request.lease is None for request in sweeps)


@dataclass(frozen=True, slots=True)
class Feed:
    """How an indexed store's transactions tell the other processes (``replica.py``)."""

    writer: str  # this store's token in the feed
    vector_oid: int  # pgvector's type, for the binary vector[] parameter
    mark_pending: bool = False  # index=False on an indexed store: mark, do not embed


class _Statements:
    """The SQL of one batch, with the schema's names spliced in once."""

    def __init__(self, schema: str, feed: Feed | None) -> None:
        name = sql.Identifier(schema)
        items = sql.Identifier(schema, "items")
        self.feed = feed
        recordset = (
            "json_to_recordset(%s) AS r(namespace text, key text, value json,"
            " created_at bigint, updated_at bigint, ttl_minutes float8, expires_at float8)"
        )
        columns = "namespace, key, value, created_at, updated_at, ttl_minutes, expires_at"
        returning = " RETURNING id, namespace, key" if feed is not None else ""
        # An overwrite of an expired item (not yet swept) is a new item: a new created_at.
        self.upsert = sql.SQL(
            f"INSERT INTO {{items}} ({columns}) SELECT {columns} FROM {recordset}"
            f" ORDER BY namespace, key"
            f" ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value,"
            f" created_at = CASE WHEN items.expires_at IS NOT NULL AND items.expires_at <= %s"
            f"   THEN excluded.created_at ELSE items.created_at END,"
            f" updated_at = excluded.updated_at, ttl_minutes = excluded.ttl_minutes,"
            f" expires_at = excluded.expires_at{returning}"
        ).format(items=items)
        # Imported items keep the timestamps they bring.
        self.import_ = sql.SQL(
            f"INSERT INTO {{items}} ({columns}) SELECT {columns} FROM {recordset}"
            f" ORDER BY namespace, key"
            f" ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value,"
            f" created_at = excluded.created_at, updated_at = excluded.updated_at,"
            f" ttl_minutes = excluded.ttl_minutes, expires_at = excluded.expires_at{returning}"
        ).format(items=items)
        self.delete = sql.SQL(
            "DELETE FROM {items} AS i USING json_to_recordset(%s) AS r(namespace text, key text)"
            " WHERE i.namespace = r.namespace AND i.key = r.key RETURNING i.id"
        ).format(items=items)
        self.touch = sql.SQL(
            "UPDATE {items} AS i SET expires_at = GREATEST(i.expires_at,"
            " r.read_at + i.ttl_minutes * 60)"
            " FROM json_to_recordset(%s) AS r(id bigint, read_at float8)"
            " WHERE i.id = r.id AND i.ttl_minutes IS NOT NULL"
        ).format(items=items)
        self.sweep = sql.SQL(
            "DELETE FROM {items} WHERE expires_at IS NOT NULL AND expires_at <= %s RETURNING id"
        ).format(items=items)
        self.sweep_lock = schema_lock_id(schema, "sweep")
        self.drop_vectors = sql.SQL("DELETE FROM {}.vectors WHERE item_id = ANY(%b)").format(name)
        self.add_vectors = sql.SQL(
            "INSERT INTO {}.vectors (item_id, n, embedding)"
            " SELECT * FROM unnest(%b::bigint[], %b::smallint[], %b::vector[])"
        ).format(name)
        self.mark = sql.SQL(
            "INSERT INTO {}.pending_vectors (item_id, fields)"
            " SELECT * FROM unnest(%b::bigint[], %b::json[])"
            " ON CONFLICT (item_id) DO UPDATE SET fields = excluded.fields"
        ).format(name)
        self.log = sql.SQL(
            "INSERT INTO {}.changes (at, writer, item_ids) VALUES (%s, %s, %b)"
        ).format(name)
        self.channel = channel_name(schema)
        # Feed rows older than FEED_KEEP_S go (never one a running transaction may still
        # commit beside); the newest trimmed xid is kept, so that a replica whose last look
        # predates it knows to reload (``replica.py``).
        self.trim = sql.SQL(
            "WITH gone AS (DELETE FROM {schema}.changes WHERE at < %s"
            " AND xid < pg_snapshot_xmin(pg_current_snapshot()) RETURNING xid)"
            " INSERT INTO {schema}.memlane_meta (name, value)"
            " SELECT 'feed_trimmed_below', max(xid::text::numeric)::text FROM gone"
            " HAVING count(*) > 0"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value"
        ).format(schema=name)
        self._next_trim = 0.0

    async def run(
        self,
        conn: Connection,
        entries: list[Entry],
        stamps: list[int],
        touches: list[tuple[float, int]],
        sweep: bool | None,
        now: float,
    ) -> _Outcome:
        outcome = _Outcome()
        build = partial(_payloads, entries, stamps, touches, now)
        # Sorting and serialising thousands of rows is work for a thread, not the loop.
        payloads = await anyio.to_thread.run_sync(build) if len(entries) > MANY_OPS else build()
        if payloads.deletes is not None:
            cursor = await conn.execute(self.delete, [_raw_json(payloads.deletes)])
            outcome.removed.extend(row[0] for row in await cursor.fetchall())
        written: list[tuple[Any, ...]] = []
        if payloads.fresh is not None:
            cursor = await conn.execute(self.upsert, [_raw_json(payloads.fresh), now])
            if self.feed is not None:
                written.extend(await cursor.fetchall())
        if payloads.imported is not None:
            cursor = await conn.execute(self.import_, [_raw_json(payloads.imported)])
            if self.feed is not None:
                written.extend(await cursor.fetchall())
        if payloads.touches is not None:
            await conn.execute(self.touch, [_raw_json(payloads.touches)])
        if sweep is not None:
            may = sweep
            if not may:  # periodic: only while no other process sweeps
                cursor = await conn.execute(
                    "SELECT pg_try_advisory_xact_lock(%s)", [self.sweep_lock]
                )
                row = await cursor.fetchone()
                may = bool(row and row[0])
            if may:
                cursor = await conn.execute(self.sweep, [now])
                swept = [row[0] for row in await cursor.fetchall()]
                outcome.swept = len(swept)
                outcome.removed.extend(swept)
        if self.feed is not None:
            await self._vectors(conn, entries, written, outcome)
            changed = [*outcome.removed, *(item_id for item_id, _ in outcome.upserted)]
            if changed:
                await conn.execute(self.log, [now, self.feed.writer, changed])
                await conn.execute("SELECT pg_notify(%s, '')", [self.channel])
            if time.monotonic() >= self._next_trim:
                self._next_trim = time.monotonic() + FEED_KEEP_S / 10
                await conn.execute(self.trim, [now - FEED_KEEP_S])
        return outcome

    async def _vectors(
        self,
        conn: Connection,
        entries: list[Entry],
        written: list[tuple[Any, ...]],
        outcome: _Outcome,
    ) -> None:
        """Replace the vectors of the items written (or, with ``mark_pending``, mark them
        for the next indexed open); note them for the replica."""
        assert self.feed is not None
        if not written:
            return
        ids = {(str(namespace), str(key)): int(item_id) for item_id, namespace, key in written}
        by_id: list[tuple[int, Entry]] = []
        for entry in entries:
            if not entry.put.is_delete:
                by_id.append((ids[(encode_namespace(entry.put.namespace), entry.put.key)], entry))
        await conn.execute(self.drop_vectors, [[item_id for item_id, _ in by_id]])
        if self.feed.mark_pending:
            marked = [(i, e) for i, e in by_id if e.put.index is not False]
            if marked:
                await conn.execute(
                    self.mark,
                    [[i for i, _ in marked], [encode_fields(e.put.index) for _, e in marked]],
                )
            outcome.upserted.extend((item_id, _NO_VECTORS) for item_id, _ in by_id)
            return
        owners: list[int] = []
        numbers: list[int] = []
        blocks: list[np.ndarray] = []
        for item_id, entry in by_id:
            vectors = entry.vectors if entry.vectors is not None else _NO_VECTORS
            outcome.upserted.append((item_id, vectors))
            owners.extend([item_id] * len(vectors))
            numbers.extend(range(len(vectors)))
            if len(vectors):
                blocks.append(vectors)
        if blocks:
            stacked = np.concatenate(blocks).astype(np.float32, copy=False)
            await conn.execute(
                self.add_vectors,
                [owners, numbers, encode_vectors(stacked, self.feed.vector_oid)],
            )


_NO_VECTORS = np.zeros((0, 0), dtype=np.float32)  # an item without vectors (or pending)


def channel_name(schema: str) -> str:
    """The LISTEN/NOTIFY channel of a store's schema."""
    return f"memlane_{schema}"


@dataclass(slots=True)
class _Payloads:
    """A batch's rows as the JSON parameters of its statements (None: no such rows)."""

    deletes: bytes | None
    fresh: bytes | None
    imported: bytes | None
    touches: bytes | None


def _payloads(
    entries: list[Entry], stamps: list[int], touches: list[tuple[float, int]], now: float
) -> _Payloads:
    """Sort the rows by (namespace, key), the one order every writer locks them in."""
    ordered = sorted(
        zip(entries, stamps, strict=True),
        key=lambda pair: (encode_namespace(pair[0].put.namespace), pair[0].put.key),
    )
    deletes = [entry.put for entry, _ in ordered if entry.put.is_delete]
    puts = [(entry.put, stamp) for entry, stamp in ordered if not entry.put.is_delete]
    fresh = [(put, stamp) for put, stamp in puts if put.imported is None]
    imported = [(put, stamp) for put, stamp in puts if put.imported is not None]
    return _Payloads(
        deletes=orjson.dumps(
            [{"namespace": encode_namespace(p.namespace), "key": p.key} for p in deletes]
        ) if deletes else None,
        fresh=_rows(fresh, now) if fresh else None,
        imported=_rows(imported, now) if imported else None,
        touches=orjson.dumps(
            [{"id": item_id, "read_at": at} for at, item_id in touches]
        ) if touches else None,
    )


def _rows(puts: list[tuple[PreparedPut, int]], now: float) -> bytes:
    """The recordset of upserts as JSON text, each value spliced in as orjson wrote it."""
    parts: list[bytes] = []
    for put, stamp in puts:
        assert put.encoded is not None
        if put.imported is not None:
            created, updated, expires = put.imported
        else:
            created = updated = stamp
            expires = None if put.ttl_minutes is None else now + put.ttl_minutes * 60
        head = orjson.dumps(
            {
                "namespace": encode_namespace(put.namespace),
                "key": put.key,
                "created_at": created,
                "updated_at": updated,
                "ttl_minutes": put.ttl_minutes,
                "expires_at": expires,
            }
        )
        parts.append(head[:-1] + b',"value":' + put.encoded + b"}")
    return b"[" + b",".join(parts) + b"]"

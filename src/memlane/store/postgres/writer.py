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
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

import anyio.to_thread
import orjson
import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.types.json import Json

from memlane.store.actor import BatchActor
from memlane.store.embedding_stage import EmbeddingStage, Entry, bad_vectors, coalesce
from memlane.store.heavy import MANY_OPS
from memlane.store.indexing import Indexer
from memlane.store.mailbox import Mailbox, MailboxClosed
from memlane.store.ops import PreparedPut
from memlane.store.postgres.connections import Connection, is_lost
from memlane.store.postgres.schema import schema_lock_id
from memlane.store.settle import SLICE, in_slices, settle_fairly
from memlane.store.sqlite.codec import encode_namespace
from memlane.store.timestamps import Clock
from memlane.store.types import StoreClosedError
from memlane.store.write_requests import (
    PostsRequests,
    Request,
    SweepRequest,
    TouchRequest,
    WriteRequest,
    WriterError,
)

__all__ = ["CommitUnknownError", "PostgresWriter"]

log = logging.getLogger(__name__)

Connect = Callable[[], Awaitable[Connection]]

_RETRIES = 8  # deadlocks and serialisation failures: each retry takes the locks again


class CommitUnknownError(WriterError):
    """The connection was lost while the batch committed: it may or may not be applied."""


@dataclass(slots=True)
class _Prepared:
    writes: list[WriteRequest]
    touches: list[tuple[float, int]]
    sweeps: list[SweepRequest]
    entries: list[Entry]
    survivors: list[Entry]
    failed: dict[int, BaseException]
    stamps: list[int]


@dataclass(slots=True)
class _Outcome:
    swept: int = 0
    removed: list[int] = field(default_factory=list)


def _raw_json(payload: bytes) -> Json:
    """A JSON parameter whose text is already built (values are orjson's bytes)."""
    return Json(payload, dumps=lambda built: built)


class PostgresWriter(BatchActor[Request, _Prepared], PostsRequests):
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
    ) -> None:
        self._connect = connect
        self._conn: Connection | None = conn
        self._schema = schema
        self._statements = _Statements(schema)
        self._embedding = EmbeddingStage(indexer) if indexer is not None else None
        self._clock = clock
        super().__init__(
            Mailbox(capacity), max_batch=max_batch, pipelined=indexer is not None, detached=True
        )
        self.stopped = asyncio.Event()
        self.batches = 0

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

    # ---- the actor ----------------------------------------------------------------------

    def _on_stop(self) -> None:
        self.stopped.set()

    def _batch_failed(self, batch: list[Request], error: Exception) -> None:
        log.exception("memlane PostgreSQL writer failed on a batch")
        failure = WriterError(f"the store's writer failed on this batch: {error!r}")
        failure.__cause__ = error
        self._fail(batch, failure)

    def _stopped_error(self) -> BaseException:
        return StoreClosedError("the store's writer stopped before this write was committed")

    def _fail(self, requests: list[Request], error: BaseException) -> None:
        for request in requests:
            if isinstance(request, WriteRequest | SweepRequest) and not request.future.done():
                request.future.set_exception(error)

    async def _prepare(self, batch: list[Request]) -> _Prepared:
        writes = [r for r in batch if isinstance(r, WriteRequest)]
        touches = [
            (r.read_at, item_id)
            for r in batch
            if isinstance(r, TouchRequest)
            for item_id in r.item_ids
        ]
        sweeps = [r for r in batch if isinstance(r, SweepRequest)]
        numbered = [(n, put) for n, request in enumerate(writes) for put in request.puts]
        entries = await in_slices(numbered, lambda part: [Entry(n, put) for n, put in part])
        failed: dict[int, BaseException] = {}
        if self._embedding is not None:
            survivors = await self._embedding.embed(entries, failed)
        elif len(entries) > SLICE:
            survivors = await anyio.to_thread.run_sync(coalesce, entries, failed)
        else:
            survivors = coalesce(entries, failed)
        stamp = self._clock.next_stamp
        stamps = await in_slices(survivors, lambda part: [stamp() for _ in part])
        return _Prepared(writes, touches, sweeps, entries, survivors, failed, stamps)

    async def _finish(self, batch: _Prepared) -> None:
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
        self, batch: _Prepared, sweep: bool | None, now: float
    ) -> _Outcome:
        """After a failed batch transaction: one transaction per request, to find the bad one."""
        failed = batch.failed
        for number in sorted({e.request for e in batch.entries} - set(failed)):
            own = coalesce([e for e in batch.entries if e.request == number], failed)
            try:
                unembedded = [e for e in own if not e.embedded and not e.put.is_delete]
                if self._embedding is not None and unembedded:
                    await self._embedding.embed_entries(unembedded)
                    bad = next((e for e in unembedded if e.error is not None), None)
                    if bad is not None:
                        raise bad_vectors(bad)
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
                async with conn.transaction():
                    outcome = await self._statements.run(
                        conn, entries, stamps, touches, sweep, now
                    )
                    committing = True  # leaving the block sends COMMIT
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


class _Statements:
    """The SQL of one batch, with the schema's names spliced in once."""

    def __init__(self, schema: str) -> None:
        items = sql.Identifier(schema, "items")
        recordset = (
            "json_to_recordset(%s) AS r(namespace text, key text, value json,"
            " created_at bigint, updated_at bigint, ttl_minutes float8, expires_at float8)"
        )
        columns = "namespace, key, value, created_at, updated_at, ttl_minutes, expires_at"
        # An overwrite of an expired item (not yet swept) is a new item: a new created_at.
        self.upsert = sql.SQL(
            f"INSERT INTO {{items}} ({columns}) SELECT {columns} FROM {recordset}"
            f" ORDER BY namespace, key"
            f" ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value,"
            f" created_at = CASE WHEN items.expires_at IS NOT NULL AND items.expires_at <= %s"
            f"   THEN excluded.created_at ELSE items.created_at END,"
            f" updated_at = excluded.updated_at, ttl_minutes = excluded.ttl_minutes,"
            f" expires_at = excluded.expires_at"
        ).format(items=items)
        # Imported items keep the timestamps they bring.
        self.import_ = sql.SQL(
            f"INSERT INTO {{items}} ({columns}) SELECT {columns} FROM {recordset}"
            f" ORDER BY namespace, key"
            f" ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value,"
            f" created_at = excluded.created_at, updated_at = excluded.updated_at,"
            f" ttl_minutes = excluded.ttl_minutes, expires_at = excluded.expires_at"
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
        if payloads.fresh is not None:
            await conn.execute(self.upsert, [_raw_json(payloads.fresh), now])
        if payloads.imported is not None:
            await conn.execute(self.import_, [_raw_json(payloads.imported)])
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
        return outcome


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

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
success), this process's replica reloads (the write may be applied, never mirrored), and
the next batch connects again. A connection the server ended while it sat idle is found
before use and replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
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
from memlane.store.settle import SLICE, settle_fairly
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
                    if self._statements.can_go_in_one(touches, sweep):
                        committing = True  # one autocommitted statement: its own COMMIT
                        outcome = await self._statements.run(
                            conn, entries, stamps, touches, sweep, now
                        )
                    else:
                        async with conn.transaction():
                            outcome = await self._statements.run(
                                conn, entries, stamps, touches, sweep, now
                            )
                            committing = True  # leaving the block sends COMMIT
                    if len(outcome.upserted) + len(outcome.removed) > SLICE:
                        # a big batch's vectors into the index: work for a thread
                        await anyio.to_thread.run_sync(self._mirror, outcome)
                    else:
                        self._mirror(outcome)
                await self._statements.trim_if_due(conn, now)
                return outcome
            except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure):
                if attempt == _RETRIES - 1:
                    raise
                await asyncio.sleep(0.001 * 2**attempt)  # a back-off before taking locks again
            except psycopg.OperationalError as exc:
                if not is_lost(conn, exc):
                    raise
                self._conn = None
                # Lost with COMMIT sent (a single statement is its own): it may have been
                # applied. A session the server ended while this one sat idle is found before
                # use (``_connection``), so a restart does not leave the next write unknown.
                if committing:
                    if self._replica is not None:  # maybe applied, never mirrored
                        self._replica.reload_next = True
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
        if conn is not None and not conn.closed and _ended_while_idle(conn):
            with contextlib.suppress(psycopg.Error):
                await conn.close()
            conn = self._conn = None
        if conn is None or conn.closed or conn.broken:
            self._conn = None
            try:
                conn = await self._connect()
            except psycopg.OperationalError as exc:
                raise WriterError(f"cannot reach PostgreSQL to commit this write: {exc}") from exc
            self._conn = conn
        return conn


def _ended_while_idle(conn: Connection) -> bool:
    """Whether an idle connection has input waiting: the server ended the session (a
    restart, ``pg_terminate_backend``) or reported something; it is not used to commit."""
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError, psycopg.Error):
        return True
    return bool(readable)


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
        self.touch = sql.SQL(
            "UPDATE {items} SET expires_at = GREATEST(expires_at, %s + ttl_minutes * 60)"
            " WHERE id = ANY(%b) AND ttl_minutes IS NOT NULL"
        ).format(items=items)
        self.sweep = sql.SQL(
            "DELETE FROM {items} WHERE expires_at IS NOT NULL AND expires_at <= %s RETURNING id"
        ).format(items=items)
        self.sweep_lock = schema_lock_id(schema, "sweep")
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
        self.one_shot = self._one_shot_statement(name, items, recordset, columns)

    def _one_shot_statement(
        self, name: sql.Identifier, items: sql.Composed | sql.Identifier, recordset: str,
        columns: str,
    ) -> sql.Composed:
        """A batch of only puts and deletes as ONE statement (its own transaction, one round
        trip): data-modifying CTEs for the deletes, the upserts and, indexed, the vectors
        (new ones upserted by (item, n), old ones past the new count deleted: disjoint rows,
        as CTEs of one statement must touch) and the feed's row, then NOTIFY."""
        parts = [
            "WITH d AS (DELETE FROM {items} WHERE id = ANY(ARRAY(SELECT x.id FROM"
            " json_to_recordset(%(deletes)s) AS r(namespace text, key text) CROSS JOIN LATERAL"
            " (SELECT i.id FROM {items} i WHERE i.namespace = r.namespace AND i.key = r.key"
            " LIMIT 1) x)) RETURNING id),",
            f" u AS (INSERT INTO {{items}} ({columns}) SELECT {columns}"
            f" FROM {recordset.replace('%s', '%(fresh)s')} ORDER BY namespace, key"
            f" ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value,"
            f" created_at = CASE WHEN items.expires_at IS NOT NULL"
            f" AND items.expires_at <= %(now)s"
            f" THEN excluded.created_at ELSE items.created_at END,"
            f" updated_at = excluded.updated_at, ttl_minutes = excluded.ttl_minutes,"
            f" expires_at = excluded.expires_at RETURNING id, namespace, key),",
            f" m AS (INSERT INTO {{items}} ({columns}) SELECT {columns}"
            f" FROM {recordset.replace('%s', '%(imported)s')} ORDER BY namespace, key"
            f" ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value,"
            f" created_at = excluded.created_at, updated_at = excluded.updated_at,"
            f" ttl_minutes = excluded.ttl_minutes, expires_at = excluded.expires_at"
            f" RETURNING id, namespace, key),",
            " w AS (SELECT * FROM u UNION ALL SELECT * FROM m)",
        ]
        # Without an index nothing needs the rows' ids: none come back (data-modifying CTEs
        # run whether or not the statement reads them).
        tail = " SELECT 'n', NULL::bigint, NULL::text, NULL::text WHERE false"
        if self.feed is not None:
            tail = (
                " SELECT 'w', id, namespace, key FROM w"
                " UNION ALL SELECT 'd', id, NULL, NULL FROM d"
            )
            parts += [
                ", nv AS (SELECT w.id, v.n, v.embedding FROM unnest(%(v_namespaces)b::text[],"
                " %(v_keys)b::text[], %(v_numbers)b::smallint[], %(v_vectors)b::vector[])"
                " AS v(namespace, key, n, embedding)"
                " JOIN w ON w.namespace = v.namespace AND w.key = v.key),",
                " k AS (SELECT w.id, count(nv.n) AS k FROM w LEFT JOIN nv ON nv.id = w.id"
                " GROUP BY w.id),",
                " dv AS (DELETE FROM {schema}.vectors o WHERE o.item_id = ANY(ARRAY(SELECT id"
                " FROM w)) AND o.n >= (SELECT k.k FROM k WHERE k.id = o.item_id)),",
                " av AS (INSERT INTO {schema}.vectors (item_id, n, embedding)"
                " SELECT id, n, embedding FROM nv"
                " ON CONFLICT (item_id, n) DO UPDATE SET embedding = excluded.embedding),",
                " lg AS (INSERT INTO {schema}.changes (at, writer, item_ids)"
                " SELECT %(now)s, %(writer)s, c.ids FROM (SELECT ARRAY(SELECT id FROM d"
                " UNION ALL SELECT id FROM w) AS ids) c WHERE cardinality(c.ids) > 0"
                " RETURNING 1)",
            ]
            tail += (
                " UNION ALL SELECT 'n', NULL, NULL, NULL FROM lg,"
                " LATERAL pg_notify(%(channel)s, '') AS notified"
            )
        return sql.SQL(" ".join(parts) + tail).format(items=items, schema=name)

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
        if entries:  # the puts and deletes: one statement (vectors and the feed's row too)
            written = await self._run_one_shot(conn, entries, payloads, now, outcome)
            if self.feed is not None and self.feed.mark_pending:
                await self._mark(conn, entries, written)
        # In the same transaction when there is more (``PostgresWriter._commit``):
        for read_at, touched in payloads.touches.items():  # one statement per read time
            await conn.execute(self.touch, [read_at, touched])
        if sweep is not None:
            swept = await self._sweep(conn, sweep, now)
            outcome.swept = len(swept)
            outcome.removed.extend(swept)
            if swept and self.feed is not None:
                await conn.execute(self.log, [now, self.feed.writer, swept])
                await conn.execute("SELECT pg_notify(%s, '')", [self.channel])
        return outcome

    async def trim_if_due(self, conn: Connection, now: float) -> None:
        """Every ``FEED_KEEP_S / 10``, after a committed batch, in a statement of its own
        (autocommitted: a failure here fails no write; it is retried the next time)."""
        if self.feed is None or time.monotonic() < self._next_trim:
            return
        self._next_trim = time.monotonic() + FEED_KEEP_S / 10
        try:
            await conn.execute(self.trim, [now - FEED_KEEP_S])
        except psycopg.Error:
            log.warning("memlane: trimming the change feed failed", exc_info=True)

    async def _sweep(self, conn: Connection, explicit: bool, now: float) -> list[int]:
        """Delete the expired items (a periodic sweep only while no other process sweeps:
        the lock is the transaction's); their ids."""
        if not explicit:
            cursor = await conn.execute("SELECT pg_try_advisory_xact_lock(%s)", [self.sweep_lock])
            row = await cursor.fetchone()
            if not (row and row[0]):
                return []
        cursor = await conn.execute(self.sweep, [now])
        return [int(row[0]) for row in await cursor.fetchall()]

    async def _mark(
        self, conn: Connection, entries: list[Entry], written: dict[tuple[str, str], int]
    ) -> None:
        """``index=False`` on an indexed store: mark what was written for the next indexed
        open (its vectors were dropped with the rewrite)."""
        marked = [
            (written[(encode_namespace(e.put.namespace), e.put.key)], e.put.index)
            for e in entries
            if not e.put.is_delete and e.put.index is not False
        ]
        if marked:
            await conn.execute(
                self.mark,
                [[item_id for item_id, _ in marked], [encode_fields(index) for _, index in marked]],
            )

    def can_go_in_one(self, touches: list[tuple[float, int]], sweep: bool | None) -> bool:
        """Whether a batch is one statement: only puts and deletes (no touches, no sweep,
        not marking items for later embedding)."""
        return not touches and sweep is None and not (self.feed and self.feed.mark_pending)

    async def _run_one_shot(
        self, conn: Connection, entries: list[Entry], payloads: _Payloads, now: float,
        outcome: _Outcome,
    ) -> dict[tuple[str, str], int]:
        """The puts and deletes; (namespace text, key) -> id of each item written."""
        params: dict[str, Any] = {
            "deletes": _raw_json(payloads.deletes or b"[]"),
            "fresh": _raw_json(payloads.fresh or b"[]"),
            "imported": _raw_json(payloads.imported or b"[]"),
            "now": now,
        }
        vectors: dict[tuple[str, str], np.ndarray] = {}
        if self.feed is not None:
            namespaces: list[str] = []
            keys: list[str] = []
            numbers: list[int] = []
            blocks: list[np.ndarray] = []
            for entry in entries:
                put = entry.put
                if put.is_delete:
                    continue
                got = entry.vectors if entry.vectors is not None else _NO_VECTORS
                where = (encode_namespace(put.namespace), put.key)
                vectors[where] = got
                namespaces += [where[0]] * len(got)
                keys += [where[1]] * len(got)
                numbers += range(len(got))
                if len(got):
                    blocks.append(got)
            dims = blocks[0].shape[1] if blocks else 1
            stacked = np.concatenate(blocks) if blocks else np.empty((0, dims), np.float32)
            params |= {
                "v_namespaces": namespaces,
                "v_keys": keys,
                "v_numbers": numbers,
                "v_vectors": encode_vectors(stacked.astype(np.float32, copy=False),
                                            self.feed.vector_oid),
                "writer": self.feed.writer,
                "channel": self.channel,
            }
        cursor = await conn.execute(self.one_shot, params)
        written: dict[tuple[str, str], int] = {}
        for kind, item_id, namespace, key in await cursor.fetchall():
            if kind == "d":
                outcome.removed.append(int(item_id))
            elif kind == "w":
                written[(str(namespace), str(key))] = int(item_id)
                if self.feed is not None:
                    outcome.upserted.append((int(item_id), vectors[(str(namespace), str(key))]))
        return written


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
    touches: dict[float, list[int]]  # read at -> the ids read then


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
        touches=_by_read_time(touches),
    )


def _by_read_time(touches: list[tuple[float, int]]) -> dict[float, list[int]]:
    """Touches grouped by when they were read (a batch's reads mostly share a few times)."""
    grouped: dict[float, list[int]] = {}
    for read_at, item_id in touches:
        grouped.setdefault(read_at, []).append(item_id)
    return grouped


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

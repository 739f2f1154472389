"""Move memories into and out of memlane: JSONL backups and migration from LangGraph stores.

Sources are read directly and read-only (a LangGraph ``SqliteStore`` file, a LangGraph
``PostgresStore`` database when psycopg is installed, a memlane SQLite file, or a JSONL
export); the destination is a memlane SQLite file written through ``SqliteStore``, or a
PostgresStore (a ``postgresql://`` URL and a schema), so values are checked and vectors
embedded with the destination's index like any other put.

Timestamps: each chunk goes through the store's ``aimport``, which writes the source's
``created_at``/``updated_at`` and expiry atomically with the values. An interrupted run
leaves only whole chunks behind; a re-run skips every item whose destination row already
has the source's ``updated_at`` and value, and overwrites the rest by key: no duplicates.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from memlane.store.durable_store import DurableStore
from memlane.store.loop_bound import Opening
from memlane.store.ops import prepare_put
from memlane.store.sqlite import SqliteStore
from memlane.store.timestamps import to_micros
from memlane.store.types import IndexConfig
from memlane.transfer.records import (
    Record,
    Skipped,
)
from memlane.transfer.sources import Source, connect_read_only, table_names
from memlane.vectors import EmbeddingError

__all__ = ["MigrationReport", "Progress", "migrate"]


@dataclass(slots=True)
class Progress:
    """Counts so far; ``total`` is the source's row count when known."""

    read: int = 0
    written: int = 0
    unchanged: int = 0
    skipped: int = 0
    total: int | None = None


@dataclass(slots=True)
class MigrationReport:
    """What a migration did: counts, and every item skipped with its reason."""

    source: str
    destination: str
    read: int = 0
    written: int = 0
    unchanged: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0

    def skipped_by_reason(self) -> dict[str, list[Skipped]]:
        grouped: dict[str, list[Skipped]] = {}
        for entry in self.skipped:
            grouped.setdefault(entry.reason, []).append(entry)
        return grouped


def _existing(dst: Path) -> dict[tuple[str, str], tuple[int, bytes]]:
    """``(namespace, key) -> (updated_at, value digest)`` of the destination's rows."""
    if not dst.exists():
        return {}
    conn = connect_read_only(dst)
    try:
        tables = table_names(conn)
        if not tables:
            return {}
        if "memlane_migrations" not in tables:
            raise ValueError(f"{dst} exists and is not a memlane store; refusing to write to it")
        rows = conn.execute("SELECT namespace, key, updated_at, value FROM items")
        return {(ns, key): (updated, _digest(value.encode())) for ns, key, updated, value in rows}
    finally:
        conn.close()


def _digest(encoded: bytes) -> bytes:
    return hashlib.blake2b(encoded, digest_size=16).digest()


async def _existing_in_postgres(
    dsn: str, schema: str
) -> dict[tuple[str, str], tuple[int, bytes]]:
    """The same as :func:`_existing`, for a PostgresStore's schema (empty if it is new)."""
    import psycopg
    from psycopg import sql

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cursor = await conn.execute("SELECT to_regclass(%s)", [f'"{schema}".items'])
        row = await cursor.fetchone()
        if row is None or row[0] is None:
            return {}
        cursor = await conn.execute(
            sql.SQL("SELECT namespace, key, updated_at, value::text FROM {}").format(
                sql.Identifier(schema, "items")
            )
        )
        return {
            (ns, key): (updated, _digest(value.encode()))
            for ns, key, updated, value in await cursor.fetchall()
        }


def is_postgres_url(text: str) -> bool:
    return text.startswith(("postgres://", "postgresql://"))


async def _put_chunk(store: DurableStore[Any], records: list[Record]) -> list[Skipped]:
    """One atomic import for the chunk; if an embedding is refused, find which item by item."""
    try:
        await store.aimport(records)
        return []
    except EmbeddingError:
        pass
    skipped: list[Skipped] = []
    for record in records:
        try:
            await store.aimport([record])
        except EmbeddingError as exc:
            skipped.append(Skipped(record.namespace, record.key, f"embedding failed: {exc}"))
    return skipped


def _triage(
    record: Record | Skipped,
    existing: dict[tuple[str, str], tuple[int, bytes]],
    now: float,
) -> tuple[str, Record | Skipped]:
    """Classify one source row: ``"put"``, ``"unchanged"`` or ``"skip"``."""
    if isinstance(record, Skipped):
        return "skip", record
    if record.expires_at is not None and record.expires_at.timestamp() <= now:
        return "skip", Skipped(record.namespace, record.key, "expired in the source")
    try:
        prepared = prepare_put(
            record.namespace, record.key, record.value, None, record.ttl_minutes, None
        )
    except (ValueError, TypeError) as exc:
        return "skip", Skipped(record.namespace, record.key, str(exc))
    assert prepared.encoded is not None
    known = existing.get((".".join(prepared.namespace), prepared.key))
    if known == (to_micros(record.updated_at), _digest(prepared.encoded)):
        return "unchanged", record
    return "put", record


async def migrate(
    source: Source,
    dst: str | os.PathLike[str],
    *,
    index: IndexConfig | dict[str, Any] | None = None,
    chunk_size: int = 500,
    on_progress: Callable[[Progress], None] | None = None,
    now: float | None = None,
    schema: str = "memlane",
) -> MigrationReport:
    """Copy every item of ``source`` into the memlane SQLite file ``dst``, or, when ``dst``
    is a ``postgresql://`` URL, into the PostgresStore in its ``schema``.

    Namespaces, keys, values, ``created_at``/``updated_at`` and expiry are kept; vectors
    are computed with ``index`` (the destination's index config; ``None`` stores none).
    Safe to interrupt and re-run: see the module docstring. ``now`` (seconds) fixes the
    clock that decides which source items have expired, for tests.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    started = time.monotonic()
    text = os.fspath(dst)
    opening: Opening[Any]
    if is_postgres_url(text):
        from memlane.store.postgres.schema import check_schema_name
        from memlane.store.postgres.store import PostgresStore

        report = MigrationReport(source.description, f"{text} (schema {schema})")
        existing = await _existing_in_postgres(text, check_schema_name(schema))
        opening = PostgresStore.open(text, schema=schema, index=index)
    else:
        dst_path = Path(text)
        report = MigrationReport(source.description, str(dst_path))
        existing = await anyio.to_thread.run_sync(_existing, dst_path)
        opening = SqliteStore.open(dst_path, index=index)
    progress = Progress(total=await anyio.to_thread.run_sync(source.count))
    clock = time.time() if now is None else now
    rows = source.records()

    def take() -> list[Record | Skipped]:
        return list(itertools.islice(rows, chunk_size))

    async with opening as store:
        while chunk := await anyio.to_thread.run_sync(take):
            to_put: list[Record] = []
            for row in chunk:
                verdict, entry = _triage(row, existing, clock)
                if isinstance(entry, Skipped):
                    report.skipped.append(entry)
                elif verdict == "put":
                    to_put.append(entry)
                else:
                    report.unchanged += 1
                report.read += 1
            failed = await _put_chunk(store, to_put) if to_put else []
            report.skipped.extend(failed)
            report.written += len(to_put) - len(failed)
            if on_progress is not None:
                progress.read, progress.written = report.read, report.written
                progress.unchanged, progress.skipped = report.unchanged, len(report.skipped)
                on_progress(progress)
    report.seconds = time.monotonic() - started
    return report

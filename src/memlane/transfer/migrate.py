"""Move memories into and out of memlane: JSONL backups and migration from LangGraph stores.

Sources are read directly and read-only (a LangGraph ``SqliteStore`` file, a LangGraph
``PostgresStore`` database when psycopg is installed, a memlane SQLite file, or a JSONL
export); the destination is a memlane SQLite file written through ``SqliteStore``, so
values are checked and vectors embedded with the destination's index like any other put.

Timestamps: the store stamps every put with "now", so the source's ``created_at`` /
``updated_at`` (and expiry) are written back afterwards, with plain SQL, once the store is
closed. Each acknowledged chunk is first recorded in a journal beside the destination
(``<dst>.migrating``); a run that is interrupted leaves the journal, and the next run
applies it before anything else. A re-run then skips every item whose destination row
already has the source's ``updated_at`` and value, and overwrites the rest by key: no
duplicates, and the timestamps end up those of the source either way.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import orjson

from memlane.store.ops import prepare_put
from memlane.store.sqlite import SqliteStore, StoreLockedError
from memlane.store.timestamps import to_micros
from memlane.store.types import IndexConfig, PutOp
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
    resumed: bool = False
    seconds: float = 0.0

    def skipped_by_reason(self) -> dict[str, list[Skipped]]:
        grouped: dict[str, list[Skipped]] = {}
        for entry in self.skipped:
            grouped.setdefault(entry.reason, []).append(entry)
        return grouped


def _journal_path(dst: Path) -> Path:
    return dst.with_name(dst.name + ".migrating")


@contextlib.contextmanager
def _owner_lock(dst: Path) -> Iterator[None]:
    """Take the same ``<file>.lock`` flock SqliteStore takes, so no store opens meanwhile."""
    fd = os.open(dst.with_name(dst.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreLockedError(f"{dst} is open in another store; close it first") from None
        yield
    finally:
        os.close(fd)


def _apply_journal(dst: Path, journal: Path) -> None:
    """Write the journal's timestamps and expiries into ``dst``, then remove the journal.

    Runs only while no store has ``dst`` open. Re-applying is harmless (plain UPDATEs).
    """
    rows = []
    with journal.open("rb") as lines:
        for line in lines:
            try:
                ns, key, created, updated, ttl, expires = orjson.loads(line)
            except (orjson.JSONDecodeError, ValueError):
                continue  # a line cut short by an interruption: its item is re-copied
            rows.append((created, updated, ttl, expires, ns, key))
    with _owner_lock(dst):
        conn = sqlite3.connect(dst, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "UPDATE items SET created_at = ?, updated_at = ?, ttl_minutes = ?,"
                " expires_at = ? WHERE namespace = ? AND key = ?",
                rows,
            )
            conn.execute("COMMIT")
        finally:
            conn.close()
    journal.unlink()


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


def _journal_line(record: Record, now: float) -> bytes:
    expires = record.expires_at.timestamp() if record.expires_at is not None else None
    if expires is None and record.ttl_minutes is not None:
        expires = now + record.ttl_minutes * 60
    return (
        orjson.dumps(
            [
                ".".join(record.namespace),
                record.key,
                to_micros(record.created_at),
                to_micros(record.updated_at),
                record.ttl_minutes,
                expires,
            ]
        )
        + b"\n"
    )


async def _put_chunk(store: SqliteStore, records: list[Record]) -> list[Skipped]:
    """One ``abatch`` for the chunk; if an embedding is refused, find which item by item."""
    ops = [PutOp(r.namespace, r.key, r.value, None, r.ttl_minutes) for r in records]
    try:
        await store.abatch(ops)
        return []
    except EmbeddingError:
        pass
    skipped: list[Skipped] = []
    for record, op in zip(records, ops, strict=True):
        try:
            await store.abatch([op])
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
) -> MigrationReport:
    """Copy every item of ``source`` into the memlane SQLite file ``dst``.

    Namespaces, keys, values, ``created_at``/``updated_at`` and expiry are kept; vectors
    are computed with ``index`` (the destination's index config; ``None`` stores none).
    Safe to interrupt and re-run: see the module docstring. ``now`` (seconds) fixes the
    clock that decides which source items have expired, for tests.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    dst_path = Path(dst)
    started = time.monotonic()
    report = MigrationReport(source.description, str(dst_path))
    journal = _journal_path(dst_path)
    if journal.exists():
        report.resumed = True
        _apply_journal(dst_path, journal)
    existing = await anyio.to_thread.run_sync(_existing, dst_path)
    progress = Progress(total=await anyio.to_thread.run_sync(source.count))
    clock = time.time() if now is None else now
    rows = source.records()

    def take() -> list[Record | Skipped]:
        return list(itertools.islice(rows, chunk_size))

    async with SqliteStore.open(dst_path, index=index) as store:
        with journal.open("ab") as log:
            while chunk := await anyio.to_thread.run_sync(take):
                to_put: list[Record] = []
                settled: list[Record] = []
                for row in chunk:
                    verdict, entry = _triage(row, existing, clock)
                    if isinstance(entry, Skipped):
                        report.skipped.append(entry)
                    elif verdict == "put":
                        to_put.append(entry)
                    else:
                        settled.append(entry)
                    report.read += 1
                failed = await _put_chunk(store, to_put) if to_put else []
                report.skipped.extend(failed)
                failed_keys = {(s.namespace, s.key) for s in failed}
                written = [r for r in to_put if (r.namespace, r.key) not in failed_keys]
                log.writelines(_journal_line(r, clock) for r in itertools.chain(written, settled))
                log.flush()
                report.written += len(written)
                report.unchanged += len(settled)
                if on_progress is not None:
                    progress.read, progress.written = report.read, report.written
                    progress.unchanged, progress.skipped = report.unchanged, len(report.skipped)
                    on_progress(progress)
    _apply_journal(dst_path, journal)
    report.seconds = time.monotonic() - started
    return report

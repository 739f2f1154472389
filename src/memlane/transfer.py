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
import importlib
import itertools
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

import anyio
import orjson

from memlane.store.ops import prepare_put
from memlane.store.sqlite import SqliteStore, StoreLockedError
from memlane.store.timestamps import from_micros, to_micros
from memlane.store.types import IndexConfig, PutOp
from memlane.vectors import EmbeddingError

__all__ = [
    "EXPORT_FORMAT",
    "JsonlSource",
    "LangGraphPostgresSource",
    "LangGraphSqliteSource",
    "MemlaneSqliteSource",
    "MigrationReport",
    "MissingDependencyError",
    "Progress",
    "Record",
    "Skipped",
    "Source",
    "decode_row",
    "export_jsonl",
    "migrate",
    "open_source",
]

EXPORT_FORMAT = 1
"""Version of the JSONL export; its header line is ``{"memlane_export": 1, ...}``."""


class MissingDependencyError(ImportError):
    """A source needs an optional package that is not installed."""


# ---- records -----------------------------------------------------------------------------


@dataclass(slots=True)
class Record:
    """One item as read from a source, with the timestamps and expiry to keep."""

    namespace: tuple[str, ...]
    key: str
    value: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    ttl_minutes: float | None = None
    expires_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSONL form: LangGraph's ``Item.dict()`` plus the TTL fields."""
        return {
            "namespace": list(self.namespace),
            "key": self.key,
            "value": self.value,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "ttl_minutes": self.ttl_minutes,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }


@dataclass(slots=True, frozen=True)
class Skipped:
    """An item that was not copied, and why."""

    namespace: tuple[str, ...] | str
    key: str
    reason: str


def _utc(value: Any, what: str) -> datetime:
    """A timestamp from a source (datetime or ISO text; naive means UTC) as aware UTC."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value.strip())
    else:
        raise ValueError(f"{what} is {value!r}, not a timestamp")
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def decode_row(
    namespace: tuple[str, ...],
    key: Any,
    value: Any,
    created_at: Any,
    updated_at: Any,
    ttl_minutes: Any,
    expires_at: Any,
) -> Record | Skipped:
    """One source row as a :class:`Record`, or as :class:`Skipped` naming what is wrong."""
    key_text = str(key)
    try:
        if isinstance(value, bytes | bytearray | memoryview | str):
            value = orjson.loads(bytes(value) if not isinstance(value, str) else value)
        if not isinstance(value, dict):
            return Skipped(namespace, key_text, f"the value is a {type(value).__name__}, "
                                                f"not a JSON object")
        created = _utc(created_at, "created_at")
        updated = _utc(updated_at, "updated_at") if updated_at is not None else created
        expires = _utc(expires_at, "expires_at") if expires_at is not None else None
        ttl = float(ttl_minutes) if ttl_minutes is not None else None
    except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
        return Skipped(namespace, key_text, f"unreadable row: {exc}")
    return Record(namespace, key_text, value, created, updated, ttl, expires)


# ---- sources -----------------------------------------------------------------------------


class Source(Protocol):
    """Where items come from. ``records`` may be iterated from a worker thread."""

    description: str

    def count(self) -> int | None:
        """How many rows there are, if cheap to know (for progress)."""
        ...

    def records(self) -> Iterator[Record | Skipped]:
        """Every row, decoded; rows that cannot be decoded come out as ``Skipped``."""
        ...

    def close(self) -> None:
        """Release the connection or file."""
        ...


def _connect_read_only(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    uri = f"{path.resolve().as_uri()}?mode=ro"
    return sqlite3.connect(uri, uri=True, check_same_thread=False)


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


class LangGraphSqliteSource:
    """The ``store`` table of a LangGraph ``SqliteStore`` / ``AsyncSqliteStore`` file.

    Vectors (``store_vectors``) are not read: the destination re-embeds with its own index.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.description = f"LangGraph SqliteStore {self.path}"
        self._conn = _connect_read_only(self.path)
        if "store" not in _tables(self._conn):
            self._conn.close()
            raise ValueError(f"{self.path} has no 'store' table: not a LangGraph SqliteStore")
        columns = _columns(self._conn, "store")
        # Files from before LangGraph's TTL migrations lack the last two columns.
        self._ttl = "ttl_minutes" if "ttl_minutes" in columns else "NULL"
        self._expires = "expires_at" if "expires_at" in columns else "NULL"

    def count(self) -> int | None:
        return int(self._conn.execute("SELECT COUNT(*) FROM store").fetchone()[0])

    def records(self) -> Iterator[Record | Skipped]:
        cursor = self._conn.execute(
            f"SELECT prefix, key, value, created_at, updated_at, {self._ttl}, {self._expires}"
            f" FROM store ORDER BY prefix, key"
        )
        for prefix, key, value, created, updated, ttl, expires in cursor:
            namespace = tuple(str(prefix).split("."))
            yield decode_row(namespace, key, value, created, updated, ttl, expires)

    def close(self) -> None:
        self._conn.close()


class LangGraphPostgresSource:
    """The ``store`` table of a LangGraph ``PostgresStore``, read with a server-side cursor.

    Needs psycopg (``pip install 'psycopg[binary]'``); raises :class:`MissingDependencyError`
    without it.
    """

    def __init__(self, url: str, *, fetch_size: int = 1_000) -> None:
        try:
            psycopg = importlib.import_module("psycopg")
        except ImportError as exc:
            raise MissingDependencyError(
                "reading a LangGraph PostgresStore needs psycopg: pip install 'psycopg[binary]'"
            ) from exc
        self.description = f"LangGraph PostgresStore {_redact(url)}"
        self._fetch_size = fetch_size
        self._conn: Any = psycopg.connect(url)
        rows = self._conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'store'"
        ).fetchall()
        columns = {row[0] for row in rows}
        if not columns:
            self._conn.close()
            raise ValueError(f"{self.description} has no 'store' table")
        self._ttl = "ttl_minutes" if "ttl_minutes" in columns else "NULL"
        self._expires = "expires_at" if "expires_at" in columns else "NULL"

    def count(self) -> int | None:
        return int(self._conn.execute("SELECT COUNT(*) FROM store").fetchone()[0])

    def records(self) -> Iterator[Record | Skipped]:
        with self._conn.cursor(name="memlane_migrate") as cursor:
            cursor.itersize = self._fetch_size
            cursor.execute(
                f"SELECT prefix, key, value, created_at, updated_at, {self._ttl},"
                f" {self._expires} FROM store ORDER BY prefix, key"
            )
            for prefix, key, value, created, updated, ttl, expires in cursor:
                namespace = tuple(str(prefix).split("."))
                yield decode_row(namespace, key, value, created, updated, ttl, expires)

    def close(self) -> None:
        self._conn.close()


def _redact(url: str) -> str:
    """A connection URL without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"


class MemlaneSqliteSource:
    """The live items of a memlane SQLite file (safe while another process has it open)."""

    def __init__(self, path: str | os.PathLike[str], *, now: float | None = None) -> None:
        self.path = Path(path)
        self.description = f"memlane SqliteStore {self.path}"
        self._now = time.time() if now is None else now
        self._conn = _connect_read_only(self.path)
        if not {"items", "memlane_migrations"} <= _tables(self._conn):
            self._conn.close()
            raise ValueError(f"{self.path} is not a memlane SQLite store")

    def count(self) -> int | None:
        row = self._conn.execute(
            "SELECT COUNT(*) FROM items WHERE expires_at IS NULL OR expires_at > ?", (self._now,)
        ).fetchone()
        return int(row[0])

    def records(self) -> Iterator[Record | Skipped]:
        cursor = self._conn.execute(
            "SELECT namespace, key, value, created_at, updated_at, ttl_minutes, expires_at"
            " FROM items WHERE expires_at IS NULL OR expires_at > ? ORDER BY namespace, key",
            (self._now,),
        )
        for namespace, key, value, created, updated, ttl, expires in cursor:
            expiry = datetime.fromtimestamp(expires, UTC) if expires is not None else None
            yield Record(
                tuple(namespace.split(".")), key, orjson.loads(value),
                from_micros(created), from_micros(updated), ttl, expiry,
            )

    def close(self) -> None:
        self._conn.close()


class JsonlSource:
    """A JSONL export: one item per line (``Item.dict()`` plus ``ttl_minutes``/``expires_at``).

    A header line (``{"memlane_export": 1, ...}``) is optional, so the lines LangGraph's
    ``item.dict()`` produces import as they are.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path} does not exist")
        self.description = f"JSONL export {self.path}"
        self._file: IO[bytes] = self.path.open("rb")

    def count(self) -> int | None:
        with self.path.open("rb") as counting:
            return sum(1 for line in counting if line.strip() and b'"memlane_export"' not in line)

    def records(self) -> Iterator[Record | Skipped]:
        self._file.seek(0)
        for number, line in enumerate(self._file, start=1):
            if line.strip():
                decoded = self._decode(number, line)
                if decoded is not None:
                    yield decoded

    def _decode(self, number: int, line: bytes) -> Record | Skipped | None:
        """One line as a record; ``None`` for the header line."""
        where = f"line {number}"
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            return Skipped(where, "", f"not valid JSON: {exc}")
        if not isinstance(entry, dict):
            return Skipped(where, "", "not a JSON object")
        if "memlane_export" in entry:
            version = entry["memlane_export"]
            if version != EXPORT_FORMAT:
                raise ValueError(f"{self.path} is export format {version!r}; this memlane "
                                 f"reads format {EXPORT_FORMAT}")
            return None
        namespace = entry.get("namespace")
        if not isinstance(namespace, list) or not all(isinstance(x, str) for x in namespace):
            return Skipped(where, str(entry.get("key", "")), f"bad namespace {namespace!r}")
        if "key" not in entry or "created_at" not in entry:
            return Skipped(tuple(namespace), "", f"{where} lacks 'key' or 'created_at'")
        return decode_row(
            tuple(namespace), entry["key"], entry.get("value"), entry["created_at"],
            entry.get("updated_at"), entry.get("ttl_minutes"), entry.get("expires_at"),
        )

    def close(self) -> None:
        self._file.close()


def open_source(spec: str | os.PathLike[str]) -> Source:
    """Pick the source for ``spec``: a Postgres URL, a JSONL file, or a SQLite file
    (LangGraph's or memlane's, told apart by their tables)."""
    text = os.fspath(spec)
    if text.startswith(("postgres://", "postgresql://")):
        return LangGraphPostgresSource(text)
    path = Path(text)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    with path.open("rb") as probe:
        head = probe.read(16)
    if head != b"SQLite format 3\x00":
        return JsonlSource(path)
    conn = _connect_read_only(path)
    try:
        tables = _tables(conn)
    finally:
        conn.close()
    if "memlane_migrations" in tables:
        return MemlaneSqliteSource(path)
    if "store" in tables:
        return LangGraphSqliteSource(path)
    raise ValueError(f"{path} is a SQLite file but neither a LangGraph store nor a memlane one")


# ---- export ------------------------------------------------------------------------------


def export_jsonl(source: Source, out: IO[bytes]) -> list[Skipped]:
    """Write every record of ``source`` to ``out`` as JSONL, after a header line.

    Returns the rows that could not be read. Vectors are not exported: an import re-embeds.
    """
    header = {
        "memlane_export": EXPORT_FORMAT,
        "source": source.description,
        "exported_at": datetime.now(UTC).isoformat(),
    }
    out.write(orjson.dumps(header) + b"\n")
    skipped: list[Skipped] = []
    for record in source.records():
        if isinstance(record, Skipped):
            skipped.append(record)
            continue
        out.write(orjson.dumps(record.to_json()) + b"\n")
    return skipped


# ---- migration ---------------------------------------------------------------------------


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
    conn = _connect_read_only(dst)
    try:
        tables = _tables(conn)
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
    return orjson.dumps([
        ".".join(record.namespace), record.key, to_micros(record.created_at),
        to_micros(record.updated_at), record.ttl_minutes, expires,
    ]) + b"\n"


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
                log.writelines(
                    _journal_line(r, clock) for r in itertools.chain(written, settled)
                )
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

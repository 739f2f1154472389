"""Where memories come from: LangGraph SQLite and Postgres stores, memlane files, JSONL.

Every source is read directly and read-only.
"""

from __future__ import annotations

import importlib
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

import orjson

from memlane.store.timestamps import from_micros
from memlane.transfer.records import (
    EXPORT_FORMAT,
    MissingDependencyError,
    Record,
    Skipped,
    decode_row,
)

__all__ = [
    "JsonlSource",
    "LangGraphPostgresSource",
    "LangGraphSqliteSource",
    "MemlanePostgresSource",
    "MemlaneSqliteSource",
    "Source",
    "open_source",
]


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


def connect_read_only(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    uri = f"{path.resolve().as_uri()}?mode=ro"
    return sqlite3.connect(uri, uri=True, check_same_thread=False)


def table_names(conn: sqlite3.Connection) -> set[str]:
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
        self._conn = connect_read_only(self.path)
        if "store" not in table_names(self._conn):
            self._conn.close()
            raise ValueError(f"{self.path} has no 'store' table: not a LangGraph SqliteStore")
        columns = _columns(self._conn, "store")
        # Files from before LangGraph's TTL migrations lack the last two columns.
        self._ttl = "ttl_minutes" if "ttl_minutes" in columns else "NULL"
        self._expires = "expires_at" if "expires_at" in columns else "NULL"

    def count(self) -> int | None:
        return int(self._conn.execute("SELECT COUNT(*) FROM store").fetchone()[0])

    def records(self) -> Iterator[Record | Skipped]:
        yield from _store_rows(self._conn.execute(_store_query(self._ttl, self._expires)))

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
            cursor.execute(_store_query(self._ttl, self._expires))
            yield from _store_rows(cursor)

    def close(self) -> None:
        self._conn.close()


def _store_query(ttl_column: str, expires_column: str) -> str:
    """LangGraph's ``store`` table, the same on SQLite and Postgres (older schemas lack the
    TTL columns: the sources pass ``NULL`` for them)."""
    return (
        f"SELECT prefix, key, value, created_at, updated_at, {ttl_column}, {expires_column}"
        " FROM store ORDER BY prefix, key"
    )


def _store_rows(rows: Iterable[Sequence[Any]]) -> Iterator[Record | Skipped]:
    for prefix, key, value, created, updated, ttl, expires in rows:
        namespace = tuple(str(prefix).split("."))
        yield decode_row(namespace, key, value, created, updated, ttl, expires)


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
        self._conn = connect_read_only(self.path)
        if not {"items", "memlane_migrations"} <= table_names(self._conn):
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
        yield from _memlane_rows(cursor)

    def close(self) -> None:
        self._conn.close()


def _memlane_rows(rows: Iterable[Sequence[Any]]) -> Iterator[Record]:
    """memlane's item rows (either backend: namespace text, JSON text, microseconds)."""
    for namespace, key, value, created, updated, ttl, expires in rows:
        expiry = datetime.fromtimestamp(expires, UTC) if expires is not None else None
        yield Record(
            tuple(namespace.split(".")),
            key,
            orjson.loads(value),
            from_micros(created),
            from_micros(updated),
            ttl,
            expiry,
        )


class MemlanePostgresSource:
    """The live items of a memlane PostgresStore's schema, read with a server-side cursor
    in one snapshot (safe while the store is in use)."""

    def __init__(self, url: str, schema: str, *, now: float | None = None) -> None:
        from memlane.store.postgres.schema import check_schema_name

        try:
            psycopg = importlib.import_module("psycopg")
        except ImportError as exc:
            raise MissingDependencyError(
                "reading a PostgresStore needs psycopg: pip install 'memlane[postgres]'"
            ) from exc
        self._schema = check_schema_name(schema)
        self.description = f"memlane PostgresStore {_redact(url)} (schema {schema})"
        self._now = time.time() if now is None else now
        self._conn: Any = psycopg.connect(url)
        found = self._conn.execute("SELECT to_regclass(%s)", [f'"{schema}".items']).fetchone()
        if found is None or found[0] is None:
            self._conn.close()
            raise ValueError(f"{self.description} holds no memlane store")

    def count(self) -> int | None:
        row = self._conn.execute(
            f'SELECT count(*) FROM "{self._schema}".items'
            " WHERE expires_at IS NULL OR expires_at > %s", [self._now]
        ).fetchone()
        return int(row[0])

    def records(self) -> Iterator[Record | Skipped]:
        with self._conn.cursor(name="memlane_export") as cursor:
            cursor.itersize = 1_000
            cursor.execute(
                "SELECT namespace, key, value::text, created_at, updated_at, ttl_minutes,"
                f' expires_at FROM "{self._schema}".items'
                " WHERE expires_at IS NULL OR expires_at > %s ORDER BY namespace, key",
                [self._now],
            )
            yield from _memlane_rows(cursor)

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
                raise ValueError(
                    f"{self.path} is export format {version!r}; this memlane "
                    f"reads format {EXPORT_FORMAT}"
                )
            return None
        namespace = entry.get("namespace")
        if not isinstance(namespace, list) or not all(isinstance(x, str) for x in namespace):
            return Skipped(where, str(entry.get("key", "")), f"bad namespace {namespace!r}")
        if "key" not in entry or "created_at" not in entry:
            return Skipped(tuple(namespace), "", f"{where} lacks 'key' or 'created_at'")
        return decode_row(
            tuple(namespace),
            entry["key"],
            entry.get("value"),
            entry["created_at"],
            entry.get("updated_at"),
            entry.get("ttl_minutes"),
            entry.get("expires_at"),
        )

    def close(self) -> None:
        self._file.close()


def open_source(spec: str | os.PathLike[str], *, schema: str | None = None) -> Source:
    """Pick the source for ``spec``: a Postgres URL (memlane's PostgresStore in ``schema``
    when one is given, else LangGraph's PostgresStore), a JSONL file, or a SQLite file
    (LangGraph's or memlane's, told apart by their tables)."""
    text = os.fspath(spec)
    if text.startswith(("postgres://", "postgresql://")):
        if schema is not None:
            return MemlanePostgresSource(text, schema)
        return LangGraphPostgresSource(text)
    path = Path(text)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    with path.open("rb") as probe:
        head = probe.read(16)
    if head != b"SQLite format 3\x00":
        return JsonlSource(path)
    conn = connect_read_only(path)
    try:
        tables = table_names(conn)
    finally:
        conn.close()
    if "memlane_migrations" in tables:
        return MemlaneSqliteSource(path)
    if "store" in tables:
        return LangGraphSqliteSource(path)
    raise ValueError(f"{path} is a SQLite file but neither a LangGraph store nor a memlane one")


# ---- export ------------------------------------------------------------------------------

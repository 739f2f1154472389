"""The SQLite schema, its migrations, and the pragmas every connection gets.

Each migration runs once, in order, inside a transaction, and is recorded in
``memlane_migrations``; a file written by an older memlane upgrades in place on open. With
several processes opening one file at once, the first to take the write lock migrates and
the others find the migration recorded when they get the lock.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Literal

import orjson

from memlane.store.index_record import compare_index
from memlane.store.types import IndexConfig

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "apply_migrations",
    "check_index",
    "configure",
    "recorded_index",
]

Synchronous = Literal["NORMAL", "FULL"]

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "items, vectors and metadata",
        """
        CREATE TABLE memlane_meta (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        CREATE TABLE items (
            id INTEGER PRIMARY KEY,                -- given by the writer; the vector index maps it
            namespace TEXT NOT NULL,               -- labels joined with '.', which labels lack
            key TEXT NOT NULL,
            value TEXT NOT NULL,                   -- JSON text, exactly as orjson wrote it
            created_at INTEGER NOT NULL,           -- microseconds since the epoch, UTC
            updated_at INTEGER NOT NULL,
            ttl_minutes REAL,
            expires_at REAL,                       -- seconds since the epoch; NULL = never
            UNIQUE (namespace, key)
        );
        CREATE INDEX items_by_expiry ON items (expires_at) WHERE expires_at IS NOT NULL;
        CREATE TABLE vectors (
            item_id INTEGER PRIMARY KEY,           -- items.id; a rowid table: fast appends
            embedding BLOB NOT NULL                -- the item's k vectors, k x dims float32
        );
        """,
    ),
    (
        2,
        "items written while the store was open with index=False",
        """
        CREATE TABLE pending_vectors (
            item_id INTEGER PRIMARY KEY,           -- items.id, embedded at the next indexed open
            fields TEXT                            -- the put's own paths (JSON); NULL: the store's
        );
        """,
    ),
    (
        3,
        "a change log for the processes sharing the file, and item ids from the file",
        """
        CREATE TABLE changes (
            seq INTEGER PRIMARY KEY,               -- one row per write transaction, in commit order
            item_ids BLOB NOT NULL,                -- int64 ids of the items it wrote or removed
            added TEXT,                            -- JSON [[namespace, id], ...] of new items
            removed TEXT                           -- JSON [[namespace, id], ...] of removed items
        );
        INSERT INTO memlane_meta (name, value)
            SELECT 'next_item_id', COALESCE(MAX(id), 0) + 1 FROM items
        """,
    ),
]

SCHEMA_VERSION = MIGRATIONS[-1][0]


def configure(conn: sqlite3.Connection, *, synchronous: Synchronous, busy_timeout_ms: int) -> None:
    """Pragmas for every connection: WAL so readers run beside the writer."""
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise RuntimeError(f"could not switch the database to WAL mode (got {mode!r})")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("PRAGMA cache_size = -65536")  # 64 MiB page cache per connection
    # The writer checkpoints the WAL itself, on the connection's thread (writer.py); the
    # WAL file is truncated back to this size after a checkpoint.
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute(f"PRAGMA journal_size_limit = {64 * 2**20}")


# Reader connections: a page cache of their own plus the file memory-mapped, so a page
# another connection already read costs a memory access, not a read() system call each
# (one user's items are scattered over the table, one page per hit).
READER_PRAGMAS = (
    "PRAGMA query_only = ON",
    "PRAGMA cache_size = -16384",  # 16 MiB per reader
    f"PRAGMA mmap_size = {1 << 30}",  # address space only; pages come from the OS cache
)
# The follower's connections read a few pages right after each of another process's
# commits: mapping the file gains them nothing and its remaps cost them (measured: catch-up
# p99 4-6 ms without the map, 15-19 ms with it; benchmarks/README.md, "Many processes").
FOLLOWER_PRAGMAS = (*READER_PRAGMAS, "PRAGMA mmap_size = 0")


def apply_migrations(conn: sqlite3.Connection, now_micros: int) -> int:
    """Bring the file's schema up to date; return the version it had before."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS memlane_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
    )
    row = conn.execute("SELECT MAX(version) FROM memlane_migrations").fetchone()
    current = int(row[0]) if row and row[0] is not None else 0
    if current > SCHEMA_VERSION:
        raise RuntimeError(
            f"this database was written by a newer memlane (schema {current}, this version "
            f"knows up to {SCHEMA_VERSION}); upgrade memlane to open it"
        )
    for version, name, script in MIGRATIONS:
        if version <= current:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process opening the file at the same time may have applied it while
            # this one waited for the write lock: the first opener migrates, once.
            if conn.execute(
                "SELECT 1 FROM memlane_migrations WHERE version = ?", (version,)
            ).fetchone():
                conn.execute("ROLLBACK")
                continue
            for statement in _statements(script):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO memlane_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (version, name, now_micros),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return current


def check_index(
    conn: sqlite3.Connection, config: IndexConfig | None, *, disabled: bool, path: str
) -> None:
    """Record the index's dims, fields and distance on first use; refuse an open that would
    lose meaning (``index_record.py``). The first open with an index marks the items already
    there for embedding (``pending.py``)."""
    recorded = recorded_index(conn)
    wanted = compare_index(recorded, config, disabled=disabled, where=path)
    if wanted is None:
        return
    if recorded is None:  # the first open with an index: items written before get vectors
        conn.execute("INSERT OR IGNORE INTO pending_vectors (item_id) SELECT id FROM items")
    conn.execute(
        "INSERT OR REPLACE INTO memlane_meta (name, value) VALUES ('dims', ?), ('index', ?)",
        (str(wanted["dims"]), orjson.dumps(wanted).decode()),
    )


def recorded_index(conn: sqlite3.Connection) -> dict[str, Any] | None:
    """The index the file was written with (``dims``; ``fields`` since schema 2; then
    ``distance``: absent means ``cosine``)."""
    rows = dict(
        conn.execute("SELECT name, value FROM memlane_meta WHERE name IN ('dims', 'index')")
    )
    if "index" in rows:
        recorded: dict[str, Any] = orjson.loads(rows["index"])
        return recorded
    if "dims" in rows:
        return {"dims": int(rows["dims"])}
    return None


def _statements(script: str) -> list[str]:
    """Split a migration script on ';' (migrations contain no ';' inside strings)."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]

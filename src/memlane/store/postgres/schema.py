"""PostgresStore's tables, in a schema of their own, and their versioned migrations.

Every process that opens the store runs :func:`migrate` inside one transaction holding a
transaction-level advisory lock named after the schema: the first opener migrates, the
others wait for it and find the work done. A database written by a newer memlane is
refused, as SQLite files are.

Items keep their value as ``json``, not ``jsonb``: ``json`` keeps the text orjson wrote
(key order, which the contract promises); filters that need ``jsonb`` cast it. Namespaces
are stored as in SQLite (labels joined with ``"."``), in the ``"C"`` collation so that
text order is code-point order and a prefix is a range of the ``(namespace, key)`` index.
"""

from __future__ import annotations

import hashlib
import re

import orjson
import psycopg
from psycopg import sql

from memlane.store.index_record import compare_index
from memlane.store.types import IndexConfig

__all__ = [
    "SCHEMA_VERSION",
    "check_index",
    "check_schema_name",
    "migrate",
    "schema_lock_id",
]

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "items and the store's metadata",
        """
        CREATE TABLE {schema}.memlane_meta (
            name text PRIMARY KEY,
            value text NOT NULL
        );
        CREATE TABLE {schema}.items (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            namespace text COLLATE "C" NOT NULL,   -- labels joined with '.', which labels lack
            key text COLLATE "C" NOT NULL,
            value json NOT NULL,                   -- JSON text, exactly as orjson wrote it
            created_at bigint NOT NULL,            -- microseconds since the epoch, UTC
            updated_at bigint NOT NULL,
            ttl_minutes double precision,
            expires_at double precision,           -- seconds since the epoch; NULL = never
            UNIQUE (namespace, key)
        );
        CREATE INDEX items_by_expiry ON {schema}.items (expires_at)
            WHERE expires_at IS NOT NULL;
        """,
    ),
    (
        2,
        "the change feed the processes' vector replicas follow, and items to embed",
        """
        CREATE TABLE {schema}.changes (
            xid xid8 NOT NULL DEFAULT pg_current_xact_id(),  -- the writing transaction
            at double precision NOT NULL,          -- seconds since the epoch (for trimming)
            writer text NOT NULL,                  -- the writing store (it skips its own)
            item_ids bigint[] NOT NULL             -- the items it wrote or removed
        );
        CREATE INDEX changes_by_xid ON {schema}.changes (xid);
        CREATE TABLE {schema}.pending_vectors (
            item_id bigint PRIMARY KEY REFERENCES {schema}.items (id) ON DELETE CASCADE,
            fields json                            -- the put's own paths; NULL: the store's
        );
        """,
    ),
]

SCHEMA_VERSION = MIGRATIONS[-1][0]

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def check_schema_name(name: object) -> str:
    """A schema name memlane may create and quote safely: lowercase, digits, ``_``."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"schema must be a lowercase PostgreSQL identifier (letters, digits, '_', at most "
            f"63 characters, not starting with a digit), got {name!r}"
        )
    return name


def schema_lock_id(schema: str, purpose: str) -> int:
    """A 64-bit advisory lock key for ``purpose`` within ``schema`` (migrations, sweeping)."""
    digest = hashlib.blake2b(f"memlane:{schema}:{purpose}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def migrate(conn: psycopg.AsyncConnection[tuple[object, ...]], schema: str) -> None:
    """Create or upgrade the store's tables in ``schema``: one transaction, one migrator."""
    name = sql.Identifier(schema)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", [schema_lock_id(schema, "migrate")])
        current = await _version(conn, schema)
        if current > SCHEMA_VERSION:
            raise RuntimeError(
                f"the schema {schema!r} was written by a newer memlane (schema {current}, "
                f"this version knows up to {SCHEMA_VERSION}); upgrade memlane to open it"
            )
        if current == SCHEMA_VERSION:
            return  # nothing to create: a read-only database (a standby) opens too
        await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(name))
        await conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}.memlane_migrations (version int PRIMARY KEY,"
                " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            ).format(name)
        )
        for version, title, script in MIGRATIONS:
            if version <= current:
                continue
            await conn.execute(sql.SQL(script).format(schema=name))
            await conn.execute(
                sql.SQL("INSERT INTO {}.memlane_migrations (version, name) VALUES (%s, %s)")
                .format(name),
                [version, title],
            )


async def _version(conn: psycopg.AsyncConnection[tuple[object, ...]], schema: str) -> int:
    """The schema's migration version (0: no memlane tables there yet)."""
    cursor = await conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL", [f'"{schema}".memlane_migrations']
    )
    row = await cursor.fetchone()
    if row is None or not row[0]:
        return 0
    cursor = await conn.execute(
        sql.SQL("SELECT max(version) FROM {}.memlane_migrations").format(sql.Identifier(schema))
    )
    found = await cursor.fetchone()
    return int(str(found[0])) if found is not None and found[0] is not None else 0


async def check_index(
    conn: psycopg.AsyncConnection[tuple[object, ...]],
    schema: str,
    config: IndexConfig | None,
    *,
    disabled: bool,
) -> bool:
    """Record the index on first use and refuse an open that would lose meaning
    (``index_record.py``); with an index, create pgvector's extension and the vectors
    table. One transaction under the migration lock. True: the store holds vectors."""
    name = sql.Identifier(schema)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", [schema_lock_id(schema, "migrate")])
        cursor = await conn.execute(
            sql.SQL("SELECT value FROM {}.memlane_meta WHERE name = 'index'").format(name)
        )
        row = await cursor.fetchone()
        recorded = orjson.loads(str(row[0])) if row is not None else None
        wanted = compare_index(recorded, config, disabled=disabled, where=f"the schema {schema!r}")
        cursor = await conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", [f'"{schema}".vectors']
        )
        has_vectors = await cursor.fetchone()
        if config is not None and not (has_vectors and has_vectors[0]):
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            await conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {schema}.vectors ("
                    " item_id bigint NOT NULL REFERENCES {schema}.items (id) ON DELETE CASCADE,"
                    " n smallint NOT NULL, embedding vector NOT NULL,"
                    " PRIMARY KEY (item_id, n))"
                ).format(schema=name)
            )
        if wanted is not None:
            if recorded is None:  # the first open with an index: items before it get vectors
                await conn.execute(
                    sql.SQL(
                        "INSERT INTO {schema}.pending_vectors (item_id)"
                        " SELECT id FROM {schema}.items ON CONFLICT DO NOTHING"
                    ).format(schema=name)
                )
            await conn.execute(
                sql.SQL(
                    "INSERT INTO {}.memlane_meta (name, value) VALUES ('index', %s)"
                    " ON CONFLICT (name) DO UPDATE SET value = excluded.value"
                ).format(name),
                [orjson.dumps(wanted).decode()],
            )
        return recorded is not None or wanted is not None

"""PostgresStore beyond the shared contract: many processes on one database, migrations
once, a newer schema refused, and a writer and readers that outlive lost connections.
All against a real PostgreSQL (the suite's, or a test's own when it restarts one)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import fresh_schema

psycopg = pytest.importorskip("psycopg")

from memlane import PostgresStore  # noqa: E402
from memlane.store.postgres.local_server import LocalPostgres  # noqa: E402
from memlane.store.postgres.reader import PoolTimeoutError  # noqa: E402
from memlane.store.postgres.writer import CommitUnknownError  # noqa: E402
from memlane.store.write_requests import WriterError  # noqa: E402

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import asyncio, sys
from memlane import PostgresStore

async def main(dsn, schema, writer, count):
    async with PostgresStore.open(dsn, schema=schema) as store:
        await asyncio.gather(*(
            store.aput(("users", writer), f"k{n}", {"n": n, "by": writer}) for n in range(count)
        ))
        await store.adelete(("users", writer), "k0")
        print("acknowledged", flush=True)
        sys.stdin.readline()  # stay open until told: the parent reads meanwhile

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
"""


def _start_writer(dsn: str, schema: str, writer: str) -> subprocess.Popen[str]:
    """A real process that writes 150 items, deletes one, and says when all are acked."""
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, dsn, schema, writer, "150"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )


@pytest.fixture
def own_server() -> Iterator[LocalPostgres]:
    """A server of this test's own, for tests that restart it."""
    server = LocalPostgres(durable=False)
    try:
        yield server.start()
    finally:
        server.stop()


async def test_what_other_processes_acknowledged_is_visible_to_the_next_read(
    postgres_dsn: str,
) -> None:
    schema = fresh_schema()
    async with PostgresStore.open(postgres_dsn, schema=schema) as store:
        children = [_start_writer(postgres_dsn, schema, f"w{n}") for n in range(3)]
        try:
            for n, child in enumerate(children):
                assert child.stdout is not None
                line = await asyncio.to_thread(child.stdout.readline)
                assert line.strip() == "acknowledged"
                # The very next reads, in this process, see every acknowledged write.
                found = await store.asearch(("users", f"w{n}"), limit=1_000)
                assert sorted(item.value["n"] for item in found) == list(range(1, 150))
                assert await store.aget(("users", f"w{n}"), "k0") is None
                assert ("users", f"w{n}") in await store.alist_namespaces(prefix=("users",))
        finally:
            for child in children:
                if child.stdin is not None:
                    child.stdin.close()
                child.wait(30)
        assert all(child.returncode == 0 for child in children)


async def test_stores_opening_at_once_migrate_once(postgres_dsn: str) -> None:
    schema = fresh_schema()
    stores = await asyncio.gather(
        *(PostgresStore.open(postgres_dsn, schema=schema) for _ in range(4))
    )
    try:
        await stores[0].aput(("a",), "k", {"v": 1})
        assert (await stores[3].aget(("a",), "k")) is not None
    finally:
        await asyncio.gather(*(store.aclose() for store in stores))
    async with await psycopg.AsyncConnection.connect(postgres_dsn) as conn:
        cursor = await conn.execute(f"SELECT version FROM {schema}.memlane_migrations")
        assert await cursor.fetchall() == [(1,)]


async def test_a_schema_written_by_a_newer_memlane_is_refused(postgres_dsn: str) -> None:
    schema = fresh_schema()
    async with PostgresStore.open(postgres_dsn, schema=schema):
        pass
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as conn:
        await conn.execute(
            f"INSERT INTO {schema}.memlane_migrations (version, name) VALUES (99, 'future')"
        )
    with pytest.raises(RuntimeError, match="newer memlane"):
        await PostgresStore.open(postgres_dsn, schema=schema)


@pytest.mark.parametrize("schema", ["Memlane", "a-b", "1abc", "x" * 64, "", "a;drop"])
async def test_a_bad_schema_name_is_refused_before_connecting(schema: str) -> None:
    with pytest.raises(ValueError, match="schema must be a lowercase PostgreSQL identifier"):
        await PostgresStore.open("postgresql://nobody@127.0.0.1:1/none", schema=schema)


async def test_writes_and_reads_go_on_after_the_server_restarts(
    own_server: LocalPostgres,
) -> None:
    async with PostgresStore.open(own_server.dsn, schema="memlane") as store:
        await store.aput(("a",), "before", {"v": 1})
        assert await store.aget(("a",), "before") is not None
        own_server.restart()  # on this thread: the server dies with the thread that starts it
        # The writer's and the readers' connections died with the old server: the next
        # write and read connect again (nothing was sent: no unknown outcome).
        await store.aput(("a",), "after", {"v": 2})
        assert {item.key for item in await store.asearch(("a",))} == {"before", "after"}


async def test_a_killed_writer_connection_is_replaced(postgres_dsn: str) -> None:
    async with PostgresStore.open(postgres_dsn, schema=fresh_schema()) as store:
        await store.aput(("a",), "k1", {"v": 1})
        async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as admin:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE pid <> pg_backend_pid() AND datname = current_database()"
                " AND application_name = '' AND backend_type = 'client backend'"
            )
        for n in range(2, 6):
            await store.aput(("a",), f"k{n}", {"v": n})
        assert len(await store.asearch(("a",))) == 5


async def test_a_write_while_the_server_is_down_fails_clearly_and_loses_nothing_acknowledged(
    own_server: LocalPostgres,
) -> None:
    async with PostgresStore.open(own_server.dsn, schema="memlane") as store:
        await store.aput(("a",), "kept", {"v": 1})
        own_server.kill()
        with pytest.raises((WriterError, CommitUnknownError)):
            await store.aput(("a",), "lost", {"v": 2})
        own_server.start()
        assert await store.aget(("a",), "kept") is not None
        await store.aput(("a",), "later", {"v": 3})
        assert await store.aget(("a",), "later") is not None


async def test_an_exhausted_reader_pool_times_out_with_a_clear_error(postgres_dsn: str) -> None:
    async with PostgresStore.open(
        postgres_dsn, schema=fresh_schema(), readers=1, pool_timeout=0.2
    ) as store:
        held = asyncio.Event()
        release = asyncio.Event()

        async def hold() -> None:
            async with store._readers.lease():
                held.set()
                await release.wait()

        holder = asyncio.create_task(hold())
        await held.wait()
        with pytest.raises(PoolTimeoutError, match="reader connections stayed busy"):
            await store.aget(("a",), "k")
        release.set()
        await holder
        assert await store.aget(("a",), "k") is None  # the pool works again

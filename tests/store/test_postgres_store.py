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


def _child(script: str, *args: str) -> subprocess.Popen[str]:
    """A real Python process running ``script`` with ``args``, talking through pipes."""
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
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
        children = [_child(CHILD, postgres_dsn, schema, f"w{n}", "150") for n in range(3)]
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
        assert await cursor.fetchall() == [(1,), (2,)]  # each migration once


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
    """Its idle connections ended by the server (once the backends are gone), the store's
    next writes and reads connect again: no error, and nothing reported unknown."""
    async with PostgresStore.open(postgres_dsn, schema=fresh_schema()) as store:
        await store.aput(("a",), "k1", {"v": 1})
        async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as admin:
            cursor = await admin.execute(
                "SELECT pid FROM pg_stat_activity"
                " WHERE pid <> pg_backend_pid() AND datname = current_database()"
                " AND application_name = '' AND backend_type = 'client backend'"
            )
            pids = [row[0] for row in await cursor.fetchall()]
            await admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) pid",
                                [pids])
            deadline = asyncio.get_running_loop().time() + 10
            while True:  # pg_terminate_backend only signals: wait for them to end
                cursor = await admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", [pids]
                )
                if await cursor.fetchone() == (0,):
                    break
                assert asyncio.get_running_loop().time() < deadline, "backends still there"
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


INDEXED_CHILD = """
import asyncio, sys
from tests.conftest import KEYWORD_DIMS, keyword_embed
from memlane import IndexConfig, PostgresStore

INDEX = IndexConfig(dims=KEYWORD_DIMS, embed=keyword_embed, fields=["text"])

async def main(dsn, schema):
    async with PostgresStore.open(dsn, schema=schema, index=INDEX) as store:
        for line in sys.stdin:  # "put KEY TEXT..." or "delete KEY": acknowledged, then "ok"
            verb, key, *words = line.split()
            if verb == "put":
                await store.aput(("users", "u1"), key, {"text": " ".join(words)})
            else:
                await store.adelete(("users", "u1"), key)
            print("ok", flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def _tell(child: subprocess.Popen[str], line: str) -> None:
    """Send a command to the child and wait for its acknowledgement."""
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(line + "\n")
    child.stdin.flush()
    assert (await asyncio.to_thread(child.stdout.readline)).strip() == "ok"


@pytest.mark.parametrize("consistency", ["strong", "eventual"])
async def test_another_process_vectors_reach_this_replica(
    postgres_dsn: str, consistency: str
) -> None:
    """strong: the very next query after the other process's ack finds its write (and
    misses its delete); eventual: it does within the feed's lag (waited for, bounded)."""
    from tests.conftest import KEYWORD_DIMS, keyword_embed

    from memlane import IndexConfig

    index = IndexConfig(dims=KEYWORD_DIMS, embed=keyword_embed, fields=["text"])
    schema = fresh_schema()
    async with PostgresStore.open(
        postgres_dsn, schema=schema, index=index, consistency=consistency
    ) as store:
        child = _child(INDEXED_CHILD, postgres_dsn, schema)
        try:

            async def keys(query: str) -> set[str]:
                found = await store.asearch(("users",), query=query, limit=50)
                return {item.key for item in found if item.score and item.score > 0.5}

            async def settled(query: str, expected: set[str]) -> set[str]:
                if consistency == "strong":
                    return await keys(query)  # at once: no waiting
                deadline = asyncio.get_running_loop().time() + 10
                while (found := await keys(query)) != expected:
                    if asyncio.get_running_loop().time() > deadline:
                        break
                    await asyncio.sleep(0.005)
                return found

            for n in range(10):
                await _tell(child, f"put k{n} jazz jazz music")
                expected = {f"k{m}" for m in range(n + 1)}
                assert await settled("jazz", expected) == expected
            await _tell(child, "put solo pizza pizza pizza")
            assert await settled("pizza", {"solo"}) == {"solo"}
            await _tell(child, "delete solo")
            assert await settled("pizza", set()) == set()
        finally:
            if child.stdin is not None:
                child.stdin.close()
            child.wait(30)


async def test_vectors_are_durable_and_reloaded_at_open(postgres_dsn: str) -> None:
    from tests.conftest import KEYWORD_DIMS, keyword_embed

    from memlane import IndexConfig

    index = IndexConfig(dims=KEYWORD_DIMS, embed=keyword_embed, fields=["text"])
    schema = fresh_schema()
    async with PostgresStore.open(postgres_dsn, schema=schema, index=index) as store:
        await store.aput(("a",), "fruit", {"text": "apple banana"})
        await store.aput(("a",), "pet", {"text": "dog cat"})
    async with PostgresStore.open(postgres_dsn, schema=schema, index=index) as store:
        hits = await store.asearch(("a",), query="dog", limit=1)
        assert [hit.key for hit in hits] == ["pet"]


async def test_writes_under_index_false_are_embedded_by_the_next_indexed_open(
    postgres_dsn: str,
) -> None:
    from tests.conftest import KEYWORD_DIMS, keyword_embed

    from memlane import IndexConfig

    index = IndexConfig(dims=KEYWORD_DIMS, embed=keyword_embed, fields=["text"])
    schema = fresh_schema()
    async with PostgresStore.open(postgres_dsn, schema=schema) as store:
        await store.aput(("a",), "before", {"text": "rain rain"})  # before any index
    async with PostgresStore.open(postgres_dsn, schema=schema, index=index) as store:
        await store.aput(("a",), "indexed", {"text": "sun sun"})
    async with PostgresStore.open(postgres_dsn, schema=schema, index=False) as store:
        await store.aput(("a",), "later", {"text": "tokyo tokyo"})
        await store.aput(("a",), "skipped", {"text": "paris"}, index=False)
    async with PostgresStore.open(postgres_dsn, schema=schema, index=index) as store:
        for query, key in [("rain", "before"), ("sun", "indexed"), ("tokyo", "later")]:
            assert [hit.key for hit in await store.asearch(("a",), query=query, limit=1)] == [key]
        scored = {hit.key: hit.score for hit in await store.asearch(("a",), query="paris")}
        assert "skipped" not in scored  # index=False: no vectors, not a query hit


async def test_a_replica_behind_the_feed_trim_reloads(postgres_dsn: str) -> None:
    from tests.conftest import KEYWORD_DIMS, keyword_embed

    from memlane import IndexConfig

    index = IndexConfig(dims=KEYWORD_DIMS, embed=keyword_embed, fields=["text"])
    schema = fresh_schema()
    async with (
        PostgresStore.open(postgres_dsn, schema=schema, index=index) as reader,
        PostgresStore.open(postgres_dsn, schema=schema, index=index) as writer,
    ):
        await writer.aput(("a",), "k", {"text": "rock rock"})
        async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as conn:
            # As if every feed row up to now had been trimmed before the reader looked.
            await conn.execute(f"DELETE FROM {schema}.changes")
            await conn.execute(
                f"INSERT INTO {schema}.memlane_meta (name, value) VALUES"
                f" ('feed_trimmed_below', pg_current_xact_id()::text)"
            )
        assert [hit.key for hit in await reader.asearch(("a",), query="rock")] == ["k"]
        replica = reader._replica
        assert replica is not None and replica.reloads >= 1, "it must reload, not trust the feed"


KILLED_CHILD = """
import asyncio, sys
from tests.conftest import KEYWORD_DIMS, keyword_embed
from memlane import IndexConfig, PostgresStore, PutOp

INDEX = IndexConfig(dims=KEYWORD_DIMS, embed=keyword_embed, fields=["text"])

async def main(dsn, schema, round_):
    async with PostgresStore.open(dsn, schema=schema, index=INDEX) as store:
        async def writer(w):
            for i in range(10_000):
                key = f"r{round_}-w{w}-{i}"
                # a group of 3 keys in one batch call: all or nothing
                await store.abatch([
                    PutOp(("g", key), part, {"text": "jazz music"})
                    for part in ("a", "b", "c")
                ])
                print(key, flush=True)  # printed only once acknowledged
        await asyncio.gather(*(writer(w) for w in range(20)))

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
"""


@pytest.mark.slow
async def test_sigkill_of_a_writing_process_loses_nothing_acknowledged(
    postgres_dsn: str,
) -> None:
    """10 rounds: a process writes groups of 3 keys with 20 tasks and is SIGKILLed after a
    random number of acknowledgements; every acknowledged group is there, whole, and no
    group is ever half there, with its vectors (a query finds every acknowledged key)."""
    import random

    from tests.conftest import KEYWORD_DIMS, keyword_embed

    from memlane import IndexConfig

    index = IndexConfig(dims=KEYWORD_DIMS, embed=keyword_embed, fields=["text"])
    schema = fresh_schema()
    rng = random.Random(16)
    acknowledged: list[str] = []
    for round_ in range(10):
        child = _child(KILLED_CHILD, postgres_dsn, schema, str(round_))
        try:
            assert child.stdout is not None
            for _ in range(rng.randint(20, 400)):
                line = await asyncio.to_thread(child.stdout.readline)
                assert line, "the writer exited early"
                acknowledged.append(line.strip())
            child.kill()
            child.wait(30)
            # Acknowledgements printed before the kill but not read yet count too.
            acknowledged.extend(line.strip() for line in child.stdout.read().splitlines())
        finally:
            child.kill()
            child.wait(30)
    async with PostgresStore.open(postgres_dsn, schema=schema, index=index) as store:
        groups: dict[tuple[str, ...], set[str]] = {}
        for namespace in await store.alist_namespaces(prefix=("g",), limit=100_000):
            parts = await store.asearch(namespace, limit=10)
            groups[namespace] = {item.key for item in parts}
        assert all(parts == {"a", "b", "c"} for parts in groups.values()), "a half batch"
        assert {("g", key) for key in acknowledged} <= set(groups)
        for key in rng.sample(acknowledged, 20):
            hits = await store.asearch(("g", key), query="jazz", limit=5)
            assert {hit.key for hit in hits} == {"a", "b", "c"}, "vectors kept with the rows"
    async with await psycopg.AsyncConnection.connect(postgres_dsn) as conn:
        cursor = await conn.execute(
            f"SELECT count(*) FROM {schema}.items i LEFT JOIN {schema}.vectors v"
            f" ON v.item_id = i.id WHERE v.item_id IS NULL"
        )
        assert await cursor.fetchone() == (0,), "every item kept its vectors"


LOAD_CHILD = """
import asyncio, sys, random
from tests.conftest import KEYWORD_DIMS, keyword_embed
from memlane import IndexConfig, PostgresStore

INDEX = IndexConfig(dims=KEYWORD_DIMS, embed=keyword_embed, fields=["text"])

async def main(dsn, schema, me):
    rng = random.Random(me)
    final = {}
    async with PostgresStore.open(dsn, schema=schema, index=INDEX) as store:
        async def task(t):
            for i in range(12):
                key = f"p{me}-t{t}-{i % 4}"   # each task rewrites its own 4 keys
                if rng.random() < 0.25:
                    await store.adelete(("load", f"p{me}"), key)
                    final[key] = None
                else:
                    text = rng.choice(["jazz", "rock", "pizza"])
                    await store.aput(("load", f"p{me}"), key, {"text": text, "i": i})
                    final[key] = text
                if i % 3 == 0:
                    await store.asearch(("load",), query="jazz", limit=5)
        await asyncio.gather(*(task(t) for t in range(100)))
    for key, text in sorted(final.items()):
        print(key, text, flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


@pytest.mark.slow
async def test_four_processes_of_100_tasks_leave_every_key_in_its_final_state(
    postgres_dsn: str,
) -> None:
    from tests.conftest import KEYWORD_DIMS, keyword_embed

    from memlane import IndexConfig

    index = IndexConfig(dims=KEYWORD_DIMS, embed=keyword_embed, fields=["text"])
    schema = fresh_schema()
    async with PostgresStore.open(postgres_dsn, schema=schema, index=index) as store:
        children = [_child(LOAD_CHILD, postgres_dsn, schema, str(n)) for n in range(4)]
        final: dict[str, str | None] = {}
        try:
            for child in children:
                out, _ = await asyncio.to_thread(child.communicate, None, 120)
                assert child.returncode == 0
                for line in out.splitlines():
                    key, text = line.split()
                    final[key] = None if text == "None" else text
        finally:
            for child in children:
                child.kill()
                child.wait(30)
        assert len(final) == 4 * 100 * 4
        for key, text in final.items():
            namespace = ("load", key.split("-")[0])
            item = await store.aget(namespace, key)
            assert (item.value["text"] if item else None) == text, key
        # This process's replica followed all of it: a query per word finds exactly the
        # keys whose final text is that word.
        for word in ("jazz", "rock", "pizza"):
            hits = await store.asearch(("load",), query=word, limit=2_000)
            found = {hit.key for hit in hits if hit.score and hit.score > 0.5}
            assert found == {key for key, text in final.items() if text == word}, word


async def test_one_periodic_sweeper_at_a_time_and_it_moves_when_its_holder_goes(
    postgres_dsn: str,
) -> None:
    """The periodic sweep runs only in a transaction that takes the schema's sweep lock:
    while another session holds it (a sweep under way elsewhere) nothing is swept; once that
    session ends (its process died), the next periodic sweep here sweeps. An explicit
    ``asweep_expired`` always runs."""
    from memlane.store.postgres.schema import schema_lock_id

    schema = fresh_schema()
    now = [1_700_000_000.0]
    async with PostgresStore.open(postgres_dsn, schema=schema, clock=lambda: now[0]) as store:
        for n in range(3):
            await store.aput(("a",), f"k{n}", {"v": n}, ttl=1)
        now[0] += 120  # all expired, not yet swept
        holder = await psycopg.AsyncConnection.connect(postgres_dsn)
        try:
            await holder.execute("SELECT pg_advisory_lock(%s)", [schema_lock_id(schema, "sweep")])
            assert await store._writer.sweep(periodic=True) == 0  # another process sweeps
        finally:
            await holder.close()  # as if its process died: PostgreSQL frees the lock
        async with await psycopg.AsyncConnection.connect(postgres_dsn) as watch:
            deadline = asyncio.get_running_loop().time() + 10
            while True:  # the server frees it once the ended backend has gone
                cursor = await watch.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                )
                if await cursor.fetchone() == (0,):
                    break
                assert asyncio.get_running_loop().time() < deadline, "the lock stayed held"
                await watch.rollback()
        assert await store._writer.sweep(periodic=True) == 3
        await store.aput(("a",), "k9", {"v": 9}, ttl=1)
        now[0] += 120
        assert await store.asweep_expired() == 1


async def test_a_server_restart_under_load_loses_nothing_acknowledged(
    own_server: LocalPostgres,
) -> None:
    """50 writers put without pause while the server restarts twice: every put either
    succeeds (and is then there) or fails with a clear writer error (never a false
    success); writing goes on after each restart."""
    async with PostgresStore.open(own_server.dsn, schema="memlane") as store:
        acknowledged: set[str] = set()
        failures: list[BaseException] = []
        stop = asyncio.Event()
        progress = asyncio.Condition()

        async def more(count: int) -> None:
            """Wait until ``count`` more puts are acknowledged (writing goes on)."""
            target = len(acknowledged) + count
            async with progress:
                await progress.wait_for(lambda: len(acknowledged) >= target)

        async def writer(w: int) -> None:
            n = 0
            while not stop.is_set():
                key = f"w{w}-{n}"
                n += 1
                try:
                    await store.aput(("load",), key, {"n": n})
                except (WriterError, CommitUnknownError, psycopg.OperationalError) as exc:
                    failures.append(exc)
                else:
                    acknowledged.add(key)
                    async with progress:
                        progress.notify_all()

        tasks = [asyncio.create_task(writer(w)) for w in range(50)]
        try:
            for _ in range(2):
                await more(500)
                own_server.restart()
            await more(500)  # and on after the last restart
        finally:
            stop.set()
            await asyncio.gather(*tasks)
        stored = {item.key for item in await store.asearch(("load",), limit=1_000_000)}
        assert acknowledged <= stored, f"{len(acknowledged - stored)} acknowledged puts lost"
        assert all("PostgreSQL" in str(exc) or "connection" in str(exc) for exc in failures)


async def test_a_read_only_database_refuses_writes_clearly_and_still_reads(
    postgres_dsn: str,
) -> None:
    schema = fresh_schema()
    async with PostgresStore.open(postgres_dsn, schema=schema) as store:
        await store.aput(("a",), "kept", {"v": 1})
    read_only = postgres_dsn + "?options=-c%20default_transaction_read_only%3Don"
    async with PostgresStore.open(read_only, schema=schema) as store:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            await store.aput(("a",), "refused", {"v": 2})
        assert await store.aget(("a",), "kept") is not None
        assert await store.aget(("a",), "refused") is None


async def test_a_statement_timeout_fails_the_read_clearly_and_the_store_goes_on(
    postgres_dsn: str,
) -> None:
    schema = fresh_schema()
    timed = postgres_dsn + "?options=-c%20statement_timeout%3D50"
    async with PostgresStore.open(timed, schema=schema) as store:
        await store.aput(("a",), "k", {"v": 1})
        lock = await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True)
        try:
            async with lock.transaction():
                await lock.execute(f"LOCK TABLE {schema}.items IN ACCESS EXCLUSIVE MODE")
                with pytest.raises(psycopg.errors.QueryCanceled):
                    await store.aget(("a",), "k")
        finally:
            await lock.close()
        assert await store.aget(("a",), "k") is not None


async def test_old_feed_rows_are_trimmed_and_the_trim_recorded(postgres_dsn: str) -> None:
    """The writers trim feed rows older than FEED_KEEP_S (after a batch), and record the
    newest xid trimmed: what makes a replica that looked before it reload."""
    from tests.conftest import KEYWORD_DIMS, keyword_embed

    from memlane import IndexConfig
    from memlane.store.postgres.replica import FEED_KEEP_S

    index = IndexConfig(dims=KEYWORD_DIMS, embed=keyword_embed, fields=["text"])
    schema = fresh_schema()
    now = [1_700_000_000.0]
    async with PostgresStore.open(
        postgres_dsn, schema=schema, index=index, clock=lambda: now[0]
    ) as store:
        await store.aput(("a",), "old", {"text": "rain"})
        async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as conn:
            cursor = await conn.execute(f"SELECT count(*) FROM {schema}.changes")
            assert await cursor.fetchone() == (1,)
            now[0] += FEED_KEEP_S + 1
            store._writer._statements._next_trim = 0.0  # due now, not in 30 s
            await store.aput(("a",), "new", {"text": "sun"})
            cursor = await conn.execute(f"SELECT count(*) FROM {schema}.changes")
            assert await cursor.fetchone() == (1,), "the old row trimmed, the new one kept"
            cursor = await conn.execute(
                f"SELECT value FROM {schema}.memlane_meta WHERE name = 'feed_trimmed_below'"
            )
            assert await cursor.fetchone() is not None

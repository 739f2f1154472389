"""PostgresStore mechanisms the other suites do not pin down: the writer's deadlock retry,
catch-ups shared only with reads that began before them, a replica dropping vectors another
store removed without deleting the item, and a pending mark kept by an item rewritten while
the next indexed open embeds it. Real PostgreSQL, no mocks, no sleeps."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.conftest import KEYWORD_DIMS, fresh_schema, keyword_embed

psycopg = pytest.importorskip("psycopg")

from memlane import IndexConfig, PostgresStore, PutOp  # noqa: E402
from memlane.store.postgres.store import _CatchUps  # noqa: E402

pytestmark = pytest.mark.anyio

INDEX = IndexConfig(dims=KEYWORD_DIMS, embed=keyword_embed, fields=["text"])


async def _until(condition: Any, what: str, within: float = 5.0) -> None:
    """Wait (yielding to the loop) until ``await condition()`` is true."""
    deadline = asyncio.get_running_loop().time() + within
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0)


async def test_a_deadlocked_batch_is_retried_not_failed(postgres_dsn: str) -> None:
    """The writer locks a, waits for b (held by another session), which then waits for a:
    PostgreSQL aborts the writer's transaction (its deadlock_timeout is the shorter); the
    writer retries and commits once the other session is done."""
    schema = fresh_schema()
    fast_detection = postgres_dsn + "?options=-c%20deadlock_timeout%3D10ms"
    async with PostgresStore.open(fast_detection, schema=schema) as store:
        await store.abatch([PutOp(("a",), "a", {"v": 0}), PutOp(("a",), "b", {"v": 0})])
        async with await psycopg.AsyncConnection.connect(postgres_dsn) as other, \
                await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as watch:
            await other.execute("SET deadlock_timeout = '10s'")  # the writer is the victim
            await other.execute(f"SELECT 1 FROM {schema}.items WHERE key = 'b' FOR UPDATE")
            write = asyncio.create_task(
                store.abatch([PutOp(("a",), "a", {"v": 1}), PutOp(("a",), "b", {"v": 1})])
            )

            async def writer_waits() -> bool:
                cursor = await watch.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query LIKE %s", [f"%{schema}%"]
                )
                row = await cursor.fetchone()
                return bool(row and row[0])

            await _until(writer_waits, "the writer to wait for b")
            await other.execute(f"UPDATE {schema}.items SET value = '{{\"v\": 2}}' WHERE key = 'a'")
            await other.commit()
        await write  # retried: no DeadlockDetected for the caller
        assert [(await store.aget(("a",), k)).value for k in "ab"] == [{"v": 1}, {"v": 1}]  # type: ignore[union-attr]


async def test_a_read_waits_for_a_catch_up_that_began_after_it() -> None:
    """A read arriving while a catch-up runs must not settle for that one (its snapshot may
    predate what was acknowledged before the read): it waits for the next."""
    gates: list[asyncio.Event] = []

    async def run() -> None:
        gate = asyncio.Event()
        gates.append(gate)
        await gate.wait()

    catch_ups = _CatchUps(run)
    first = asyncio.create_task(catch_ups.fresh())

    async def started(n: int) -> bool:
        return len(gates) >= n

    await _until(lambda: started(1), "the first catch-up")
    second = asyncio.create_task(catch_ups.fresh())  # arrives during the first
    third = asyncio.create_task(catch_ups.fresh())   # so does this one: they share the next
    await asyncio.sleep(0)
    gates[0].set()
    await first

    async def second_started_or_done() -> bool:
        return len(gates) >= 2 or second.done()

    await _until(second_started_or_done, "a second catch-up")
    assert not second.done(), "a read settled for a catch-up that began before it"
    assert len(gates) == 2
    gates[1].set()
    await asyncio.gather(second, third)
    assert len(gates) == 2, "reads arriving together share one catch-up"


async def test_vectors_another_store_dropped_leave_this_replica(postgres_dsn: str) -> None:
    """Rewritten without its indexed field, an item keeps its row but loses its vectors:
    the other store's replica must drop them too (not only for deleted items)."""
    schema = fresh_schema()
    async with (
        PostgresStore.open(postgres_dsn, schema=schema, index=INDEX) as writer,
        PostgresStore.open(postgres_dsn, schema=schema, index=INDEX) as reader,
    ):
        async def pizza_keys() -> set[str]:
            hits = await reader.asearch(("a",), query="pizza", limit=10)
            return {hit.key for hit in hits if hit.score and hit.score > 0.5}

        await writer.aput(("a",), "k", {"text": "pizza pizza"})
        assert await pizza_keys() == {"k"}
        await writer.aput(("a",), "k", {"other": "pizza"})  # no "text": no vectors now
        assert await reader.aget(("a",), "k") is not None
        assert await pizza_keys() == set(), "a vector removed elsewhere still scores here"


async def test_an_item_rewritten_while_an_open_embeds_it_keeps_its_mark(
    postgres_dsn: str,
) -> None:
    """A process with index=False rewrites a marked item while another process's indexed
    open is embedding the old value: that open must not store the old value's vectors and
    drop the mark; the next indexed open embeds the new value."""
    schema = fresh_schema()
    async with PostgresStore.open(postgres_dsn, schema=schema, index=INDEX):
        pass  # the schema records its index
    release = asyncio.Event()
    embedding = asyncio.Event()

    async def slow_embed(texts: list[str]) -> list[list[float]]:
        if not release.is_set():
            embedding.set()
            await release.wait()
        return keyword_embed(texts)

    slow = IndexConfig(dims=KEYWORD_DIMS, embed=slow_embed, fields=["text"])
    async with PostgresStore.open(postgres_dsn, schema=schema, index=False) as unindexed:
        await unindexed.aput(("a",), "k", {"text": "rain rain"})  # marked

        async def open_slow() -> PostgresStore:
            return await PostgresStore.open(postgres_dsn, schema=schema, index=slow)

        opening = asyncio.create_task(open_slow())
        await embedding.wait()  # embedding "rain rain" for k
        await unindexed.aput(("a",), "k", {"text": "sun sun"})  # rewritten meanwhile
        release.set()
        await (await opening).aclose()
    async with PostgresStore.open(postgres_dsn, schema=schema, index=INDEX) as store:
        sun = await store.asearch(("a",), query="sun", limit=1)
        rain = await store.asearch(("a",), query="rain", limit=1)
        assert [(h.key, (h.score or 0) > 0.5) for h in sun] == [("k", True)]
        assert not [h for h in rain if (h.score or 0) > 0.5], "the old value's vectors"


async def test_a_bad_write_fails_only_its_caller_in_a_shared_batch(postgres_dsn: str) -> None:
    """A write the database refuses (here a CHECK constraint an operator added) fails in
    SQL, not in Python: the batch it shares with another caller's good write is retried one
    caller at a time, so the good write commits and only the bad one fails."""
    schema = fresh_schema()
    async with PostgresStore.open(postgres_dsn, schema=schema) as store:
        await store.aput(("a",), "warm", {"v": 0})
        async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as admin:
            await admin.execute(
                f"ALTER TABLE {schema}.items ADD CONSTRAINT no_bad CHECK (key <> 'bad')"
            )
        batches = store.writer_batches
        good, bad = await asyncio.gather(
            store.aput(("a",), "good", {"v": 1}),
            store.aput(("a",), "bad", {"v": 2}),
            return_exceptions=True,
        )
        assert store.writer_batches == batches + 1, "both writes in one batch"
        assert good is None
        assert isinstance(bad, psycopg.errors.CheckViolation)
        assert (await store.aget(("a",), "good")) is not None


async def _connect_when_up(dsn: str) -> Any:
    """A connection once the server accepts them again (after a crash, it recovers first)."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        try:
            return await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        except psycopg.OperationalError:
            assert asyncio.get_running_loop().time() < deadline, "the server stayed down"
            await asyncio.sleep(0.01)


async def _write_applied_but_unanswered(dsn: str, store: PostgresStore) -> None:
    """Put ("a",) k: its commit is applied, but its backend is SIGKILLed before answering
    (a synchronous-replication wait for a standby that does not exist holds it there);
    the caller must get CommitUnknownError, and reading back (as it says) finds k."""
    import os
    import signal

    from memlane.store.postgres.writer import CommitUnknownError

    admin = await _connect_when_up(dsn)
    try:
        await admin.execute("ALTER SYSTEM SET synchronous_standby_names = 'nobody'")
        await admin.execute("SELECT pg_reload_conf()")

        async def reloaded() -> bool:
            async with await psycopg.AsyncConnection.connect(dsn) as probe:
                row = await (await probe.execute("SHOW synchronous_standby_names")).fetchone()
                return bool(row and row[0] == "nobody")

        await _until(reloaded, "the configuration to reload")
        write = asyncio.create_task(store.aput(("a",), "k", {"text": "jazz jazz"}))
        pids: list[int] = []

        async def held_by_sync_rep() -> bool:
            cursor = await admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE wait_event = 'SyncRep'"
            )
            pids[:] = [int(row[0]) for row in await cursor.fetchall()]
            return bool(pids)

        await _until(held_by_sync_rep, "the commit to wait for a standby")
        os.kill(pids[0], signal.SIGKILL)  # applied locally; the answer never comes
    finally:
        await admin.close()
    with pytest.raises(CommitUnknownError):
        await write
    admin = await _connect_when_up(dsn)  # after crash recovery
    try:
        await admin.execute("ALTER SYSTEM RESET synchronous_standby_names")
        await admin.execute("SELECT pg_reload_conf()")
    finally:
        await admin.close()

    async def readable() -> bool:
        try:
            return await store.aget(("a",), "k") is not None
        except psycopg.OperationalError:
            return False

    await _until(readable, "k to be read back (it was applied)")


async def test_a_connection_lost_after_commit_gives_commit_unknown_not_a_retry() -> None:
    from memlane.store.postgres.local_server import LocalPostgres

    server = LocalPostgres(durable=False).start()
    try:
        async with PostgresStore.open(server.dsn, schema="memlane") as store:
            await _write_applied_but_unanswered(server.dsn, store)
    finally:
        server.stop()


async def test_a_write_of_unknown_outcome_that_was_applied_reaches_the_own_replica() -> None:
    """BUG on main: the writer never mirrored k, and catch-ups skip this store's own feed
    rows, so this process's queries never find k (until it is reopened)."""
    from memlane.store.postgres.local_server import LocalPostgres

    server = LocalPostgres(durable=False).start()
    try:
        async with PostgresStore.open(server.dsn, schema="memlane", index=INDEX) as store:
            await store.aput(("a",), "warm", {"text": "rock"})
            await _write_applied_but_unanswered(server.dsn, store)
            hits = await store.asearch(("a",), query="jazz", limit=5)
            assert "k" in {h.key for h in hits if (h.score or 0) > 0.5}, "applied, never indexed"
    finally:
        server.stop()


async def test_a_prefix_with_just_over_few_candidates_searches_them_all(postgres_dsn: str) -> None:
    """FEW_CANDIDATES + 44 items under the prefix (and one outside it): the candidates'
    probe must notice there are more than FEW_CANDIDATES, or the rest are never scored."""
    from memlane.store.postgres.reader import FEW_CANDIDATES

    async with PostgresStore.open(postgres_dsn, schema=fresh_schema(), index=INDEX) as store:
        await store.aput(("q",), "outside", {"text": "rain"})
        await store.abatch(
            [PutOp(("p",), f"k{n:03}", {"text": "rock"}) for n in range(FEW_CANDIDATES + 43)]
        )
        await store.aput(("p",), "target", {"text": "jazz jazz"})  # the last row written
        hits = await store.asearch(("p",), query="jazz", limit=1)
        assert [h.key for h in hits] == ["target"]


async def test_a_page_short_of_live_hits_is_searched_again_with_a_larger_k(
    postgres_dsn: str,
) -> None:
    """With no prefix nor filter the whole replica is searched; its best hits expired (not
    yet swept), so the page is refilled from further down, not returned short."""
    now = [1_700_000_000.0]
    async with PostgresStore.open(
        postgres_dsn, schema=fresh_schema(), index=INDEX, clock=lambda: now[0]
    ) as store:
        for n in range(3):
            await store.aput(("a",), f"gone{n}", {"text": "jazz"}, ttl=1)
        for n in range(3):
            await store.aput(("a",), f"live{n}", {"text": "jazz rock"})
        now[0] += 120  # the best hits expired
        hits = await store.asearch((), query="jazz", limit=3)
        assert sorted(h.key for h in hits) == ["live0", "live1", "live2"]

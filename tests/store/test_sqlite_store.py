"""SqliteStore beyond the shared contract: durability, the writer actor, readers, lifecycle."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from tests.conftest import KEYWORD_DIMS, FakeClock, keyword_embed, run_in_threads

from memlane import (
    ImportItem,
    IndexConfig,
    InvalidNamespaceError,
    PutOp,
    SqliteStore,
    StoreClosedError,
    TTLConfig,
    WriterError,
)
from memlane.store.ops import PreparedPut

pytestmark = pytest.mark.anyio

INDEX = IndexConfig(dims=KEYWORD_DIMS, embed=keyword_embed, fields=["text"])


def break_index(
    monkeypatch: pytest.MonkeyPatch, vectors: Any, method: str
) -> Callable[[], None]:
    """Make the vector index's ``method`` raise (a mirror failing after a commit); return
    what restores it."""
    real = getattr(vectors, method)

    def broken(*args: object) -> None:
        raise RuntimeError("the index is broken")

    monkeypatch.setattr(vectors, method, broken)
    return lambda: monkeypatch.setattr(vectors, method, real)


# ---- durability --------------------------------------------------------------------------

async def test_acknowledged_writes_and_vectors_survive_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    async with SqliteStore.open(path, index=INDEX) as store:
        await store.aput(("docs",), "fruit", {"text": "apple banana"})
        await store.aput(("docs",), "pet", {"text": "dog"})
        await store.aput(("docs",), "gone", {"text": "apple"})
        await store.adelete(("docs",), "gone")
        before = await store.aget(("docs",), "fruit")
    async with SqliteStore.open(path, index=INDEX) as store:
        after = await store.aget(("docs",), "fruit")
        assert after == before
        hits = await store.asearch(("docs",), query="apple", limit=5)
        assert [hit.key for hit in hits] == ["fruit", "pet"], "vectors reloaded, none stale"
        await store.aput(("docs",), "fruit", {"text": "cherry"})
        again = await store.aget(("docs",), "fruit")
        assert again is not None and before is not None
        assert again.updated_at > before.updated_at and again.created_at == before.created_at


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from memlane import SqliteStore

    async def main(path, start):
        async with SqliteStore.open(path) as store:
            n = start
            async def one(k):
                await store.aput(("crash", str(k % 7)), f"k{k}", {"n": k, "pad": "x" * 100})
                print(k, flush=True)
            while True:
                await asyncio.gather(*(one(k) for k in range(n, n + 20)))
                n += 20

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


def _run_child_until_killed(path: Path, start: int, wanted: int) -> list[int]:
    """Start a writing child, read the keys it acknowledges, SIGKILL it mid-stream."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(start)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acknowledged: list[int] = []
    try:
        assert child.stdout is not None
        for line in child.stdout:
            acknowledged.append(int(line))
            if len(acknowledged) >= wanted:
                break
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    errors = child.stderr.read() if child.stderr else ""
    assert acknowledged, f"the child acknowledged nothing: {errors}"
    assert child.returncode == -signal.SIGKILL
    return acknowledged


async def test_acknowledged_writes_survive_sigkill_repeatedly(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    acknowledged: list[int] = []
    for round_ in range(3):
        acknowledged += await anyio.to_thread.run_sync(
            _run_child_until_killed, path, round_ * 1_000_000, 400 + round_ * 100
        )
        async with SqliteStore.open(path) as store:
            for k in acknowledged:
                item = await store.aget(("crash", str(k % 7)), f"k{k}")
                assert item is not None and item.value["n"] == k, f"lost acknowledged key k{k}"
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# ---- the writer actor --------------------------------------------------------------------

async def test_thousands_of_concurrent_puts_all_land_in_few_batches(tmp_path: Path) -> None:
    async with SqliteStore.open(tmp_path / "c.db") as store:

        async def writer(task: int) -> None:
            for n in range(20):
                await store.aput(("w", str(task % 10)), f"{task}-{n}", {"task": task, "n": n})

        async with anyio.create_task_group() as tasks:
            for task in range(200):
                tasks.start_soon(writer, task)
        assert store.writer_batches < 4_000 / 5, "concurrent puts are batched"
        for task in range(0, 200, 13):
            for n in (0, 19):
                item = await store.aget(("w", str(task % 10)), f"{task}-{n}")
                assert item is not None and item.value == {"task": task, "n": n}
        total = 0
        for shard in range(10):
            total += len(await store.asearch(("w", str(shard)), limit=1000))
        assert total == 4_000


async def test_a_transaction_failure_fails_only_the_offending_caller(tmp_path: Path) -> None:
    async with SqliteStore.open(tmp_path / "t.db") as store:
        raw: sqlite3.Connection = store._writer._conn._conn  # white box: shrink a limit
        raw.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 10_000)
        outcomes: dict[int, BaseException | None] = {}

        async def put(n: int) -> None:
            value = {"pad": "x" * (20_000 if n == 7 else 10)}
            try:
                await store.aput(("ns",), f"k{n}", value)
                outcomes[n] = None
            except Exception as exc:
                outcomes[n] = exc

        async with anyio.create_task_group() as tasks:
            for n in range(40):
                tasks.start_soon(put, n)
        assert isinstance(outcomes.pop(7), sqlite3.DataError | sqlite3.OperationalError)
        assert all(outcome is None for outcome in outcomes.values())
        assert len(await store.asearch(("ns",), limit=100)) == 39


async def test_an_index_failure_while_retrying_one_by_one_fails_only_that_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch whose transaction failed is retried request by request; if mirroring one
    of those commits into the index fails, only that caller gets ``WriterError`` (and its
    item reaches the index with the next commit)."""
    async with SqliteStore.open(tmp_path / "r.db", index=INDEX) as store:
        raw: sqlite3.Connection = store._writer._conn._conn  # white box: shrink a limit
        raw.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 10_000)
        vectors = store._readers._vectors
        assert vectors is not None
        real_upsert = vectors.upsert
        mirrored: list[int] = []

        def upsert_failing_once(updates: list[tuple[int, object]]) -> None:
            mirrored.append(len(updates))
            if len(mirrored) == 2:
                raise RuntimeError("the index is broken")
            real_upsert(updates)  # type: ignore[arg-type]

        monkeypatch.setattr(vectors, "upsert", upsert_failing_once)
        texts = ["apple", "x" * 20_000, "apple", "apple", "apple"]  # one too long for SQL
        outcomes = await asyncio.gather(
            *(store.aput(("ns",), f"k{n}", {"text": t}) for n, t in enumerate(texts)),
            return_exceptions=True,
        )
        assert isinstance(outcomes[1], sqlite3.DataError | sqlite3.OperationalError)
        writer_errors = [o for o in outcomes if isinstance(o, WriterError)]
        assert len(writer_errors) == 1, outcomes
        assert sum(o is None for o in outcomes) == 3
        assert mirrored == [1, 1, 1, 1], "the retry went one write at a time"
        # ... and the write whose mirroring failed was reloaded from SQL by the next commit
        found = await store.asearch(("ns",), query="apple", limit=10)
        assert sorted(hit.key for hit in found) == ["k0", "k2", "k3", "k4"]


async def test_a_failing_index_update_after_commit_is_not_committed_again_and_heals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch is in SQL once; its items reach the index with the next batch."""
    async with SqliteStore.open(tmp_path / "m.db", index=INDEX) as store:
        vectors = store._readers._vectors
        assert vectors is not None
        real_upsert = vectors.upsert
        commits: list[int] = []

        def broken_upsert(updates: object) -> None:
            commits.append(1)
            raise RuntimeError("the index is broken")

        monkeypatch.setattr(vectors, "upsert", broken_upsert)
        outcomes = await asyncio.gather(
            *(store.aput(("ns",), f"k{n}", {"text": "apple"}) for n in range(3)),
            return_exceptions=True,
        )
        # the batch was committed once; its callers learn that the writer failed on it,
        # instead of each request being committed (and failing) again one by one
        assert all(isinstance(outcome, WriterError) for outcome in outcomes)
        assert len(commits) == 1
        assert await store.asearch(("ns",), query="apple", limit=5) == []  # not mirrored
        monkeypatch.setattr(vectors, "upsert", real_upsert)
        real_load, loaded_on = vectors.load, []

        def load(*args: Any) -> None:
            loaded_on.append(threading.get_ident())
            real_load(*args)

        monkeypatch.setattr(vectors, "load", load)
        await store.aput(("ns",), "after", {"text": "dog"})  # small enough to commit inline
        assert loaded_on and threading.get_ident() not in loaded_on, "repairs run off the loop"
        assert [hit.key for hit in await store.asearch(("ns",), query="dog", limit=1)] == ["after"]
        healed = await store.asearch(("ns",), query="apple", limit=5)
        assert sorted(hit.key for hit in healed[:3]) == ["k0", "k1", "k2"]


async def test_healing_the_index_keeps_each_items_latest_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Changes not mirrored are applied with the next commit, but never over a later one:
    an item deleted, or rewritten, since its mirroring failed stays deleted, or rewritten."""
    async with SqliteStore.open(tmp_path / "h.db", index=INDEX) as store:
        vectors = store._readers._vectors
        assert vectors is not None
        await store.aput(("ns",), "keep", {"text": "apple"})
        mend = break_index(monkeypatch, vectors, "upsert")
        with pytest.raises(WriterError):
            await store.abatch([PutOp(("ns",), key, {"text": "apple"}) for key in "ab"])
        mend()
        await store.abatch([PutOp(("ns",), "a", None), PutOp(("ns",), "b", {"text": "dog"})])
        apples = await store.asearch(("ns",), query="apple", limit=3)
        assert [hit.key for hit in apples][:1] == ["keep"]
        assert [hit.key for hit in await store.asearch(("ns",), query="dog", limit=1)] == ["b"]
        assert {hit.key for hit in apples} == {"keep", "b"}  # "a" is gone for good


async def test_an_item_the_index_keeps_rejecting_fails_no_later_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Repairing the index is the writer's business: an item that cannot be mirrored
    fails no later write, and leaves the index rather than stay there stale."""
    async with SqliteStore.open(tmp_path / "p.db", index=INDEX) as store:
        vectors = store._readers._vectors
        assert vectors is not None
        real_upsert, real_load = vectors.upsert, vectors.load
        await store.aput(("ns",), "bad", {"text": "apple"})
        raw: sqlite3.Connection = store._writer._conn._conn
        (bad,) = raw.execute("SELECT id FROM items WHERE key = 'bad'").fetchone()

        def upsert(updates: list[tuple[int, Any]]) -> None:
            if any(item_id == bad for item_id, _ in updates):
                raise RuntimeError("the index rejects this item")
            real_upsert(updates)

        def load(item_ids: Any, *rest: Any) -> None:
            if bad in list(item_ids):
                raise RuntimeError("the index rejects this item")
            real_load(item_ids, *rest)

        monkeypatch.setattr(vectors, "upsert", upsert)
        monkeypatch.setattr(vectors, "load", load)
        with pytest.raises(WriterError):
            await store.aput(("ns",), "bad", {"text": "apple pie"})  # rewritten
        for n in range(5):
            await store.aput(("ns",), f"k{n}", {"text": "dog"})
        await store.abatch([PutOp(("ns",), f"b{n}", {"text": "dog"}) for n in range(50)])
        found = await store.asearch(("ns",), query="dog", limit=100)
        assert len(found) == 55 and "bad" not in {hit.key for hit in found}
        assert store._writer._mirror.unmirrored == set()
        assert (await store.aget(("ns",), "bad")) is not None  # still stored


async def test_a_damaged_blob_does_not_hold_back_the_repair_of_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Items are reloaded from the vectors table; one whose blob is damaged leaves the
    index, the others get their latest vectors."""
    async with SqliteStore.open(tmp_path / "d.db", index=INDEX) as store:
        vectors = store._readers._vectors
        assert vectors is not None
        await store.abatch([PutOp(("ns",), f"k{n}", {"text": "apple"}) for n in range(10)])
        mend = break_index(monkeypatch, vectors, "upsert")
        with pytest.raises(WriterError):  # rewritten in SQL, stale in the index
            await store.abatch([PutOp(("ns",), f"k{n}", {"text": "dog"}) for n in range(10)])
        mend()
        raw: sqlite3.Connection = store._writer._conn._conn
        raw.execute(
            "UPDATE vectors SET embedding = x'00' WHERE item_id ="
            " (SELECT id FROM items WHERE key = 'k0')"
        )
        monkeypatch.setattr(logging.getLogger("memlane.store.sqlite.writer"), "disabled", True)
        await store.aput(("ns",), "after", {"text": "sun"})
        dogs = await store.asearch(("ns",), query="dog", limit=20)
        assert sorted(hit.key for hit in dogs[:9]) == [f"k{n}" for n in range(1, 10)]
        assert "k0" not in {hit.key for hit in dogs}
        assert store._writer._mirror.unmirrored == set()


async def test_a_sweep_whose_mirroring_fails_gets_a_writer_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with SqliteStore.open(tmp_path / "s.db", index=INDEX) as store:
        stamp = datetime(2024, 1, 2, tzinfo=UTC)
        await store.aimport([ImportItem(("ns",), "old", {"text": "apple"}, stamp, stamp,
                                        expires_at=datetime(2024, 1, 3, tzinfo=UTC))])
        raw: sqlite3.Connection = store._writer._conn._conn  # white box: shrink a limit
        raw.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 10_000)
        vectors = store._readers._vectors
        assert vectors is not None
        break_index(monkeypatch, vectors, "remove")
        outcomes = await asyncio.gather(  # one batch; its transaction fails (too long)
            store.aput(("ns",), "long", {"text": "x" * 20_000}),
            store.asweep_expired(),
            return_exceptions=True,
        )
        assert isinstance(outcomes[0], sqlite3.DataError | sqlite3.OperationalError)
        assert isinstance(outcomes[1], WriterError), outcomes


async def test_an_import_already_expired_and_swept_in_its_batch_leaves_the_index(
    tmp_path: Path,
) -> None:
    async with SqliteStore.open(tmp_path / "e.db", index=INDEX) as store:
        stamp = datetime(2024, 1, 2, tzinfo=UTC)
        past = ImportItem(("ns",), "old", {"text": "apple"}, stamp, stamp,
                          expires_at=datetime(2024, 1, 3, tzinfo=UTC))
        swept = await asyncio.gather(store.aimport([past]), store.asweep_expired())
        assert swept[1] == 1 and store._writer.batches == 1  # both in one transaction
        vectors = store._readers._vectors
        assert vectors is not None and vectors.item_count == 0
        assert store._readers._scopes is not None and len(store._readers._scopes) == 0


async def test_a_delete_whose_mirroring_failed_leaves_the_index_with_the_next_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with SqliteStore.open(tmp_path / "del.db", index=INDEX) as store:
        vectors = store._readers._vectors
        assert vectors is not None
        await store.aput(("ns",), "gone", {"text": "apple"})
        raw: sqlite3.Connection = store._writer._conn._conn
        (gone,) = raw.execute("SELECT id FROM items WHERE key = 'gone'").fetchone()
        mend = break_index(monkeypatch, vectors, "remove")
        with pytest.raises(WriterError):
            await store.adelete(("ns",), "gone")
        assert gone in vectors  # deleted in SQL, still in the index
        mend()
        await store.aput(("ns",), "next", {"text": "dog"})
        assert gone not in vectors and not store._writer._mirror.unmirrored


async def test_cancelled_callers_leave_the_store_working(tmp_path: Path) -> None:
    async with SqliteStore.open(tmp_path / "x.db", mailbox_capacity=8) as store:
        acknowledged: list[str] = []

        async def put(key: str, tasks: anyio.abc.TaskGroup) -> None:
            await store.aput(("ns",), key, {"ok": True})
            acknowledged.append(key)
            if len(acknowledged) == 100:  # cancel the rest while they wait for commits
                tasks.cancel_scope.cancel()

        async with anyio.create_task_group() as tasks:
            for n in range(2_000):
                tasks.start_soon(put, f"k{n}", tasks)
        assert 100 <= len(acknowledged) < 2_000
        for key in acknowledged:
            assert await store.aget(("ns",), key) is not None
        await store.aput(("ns",), "after", {"ok": True})
        item = await store.aget(("ns",), "after")
        assert item is not None and item.value == {"ok": True}


async def test_a_full_mailbox_makes_producers_wait(tmp_path: Path) -> None:
    async with SqliteStore.open(tmp_path / "b.db", mailbox_capacity=4, max_batch=2) as store:
        async with anyio.create_task_group() as tasks:
            for n in range(300):
                tasks.start_soon(store.aput, ("ns",), f"k{n}", {"n": n})
                assert len(store._writer.mailbox) <= 4
        assert len(await store.asearch(("ns",), limit=1000)) == 300


async def test_an_idle_writer_keeps_no_batch_alive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a batch is answered, neither the writer nor the connection's thread holds it
    (its values, its vectors), nor its error's traceback: a big import must not stay in
    memory until the next write. (Both used to keep the last batch until another came.)"""

    def batch_left(prefix: str) -> int:
        gc.collect()
        return sum(
            isinstance(o, PreparedPut) and o.key.startswith(prefix) for o in gc.get_objects()
        )

    async def settled(prefix: str) -> int:
        for _ in range(50):  # the writer task lets go a loop turn or two after the answer
            if not batch_left(prefix):
                break
            await asyncio.sleep(0)
        return batch_left(prefix)

    async with SqliteStore.open(tmp_path / "idle.db", index=INDEX) as store:
        await store.abatch([PutOp(("ns",), f"idle-{i}", {"text": "apple"}) for i in range(300)])
        assert await settled("idle-") == 0
        assert await store.aget(("ns",), "idle-299") is not None
        vectors = store._readers._vectors
        assert vectors is not None
        break_index(monkeypatch, vectors, "upsert")
        # (pytest's log capture would keep the logged error's traceback, and the batch)
        monkeypatch.setattr(logging.getLogger("memlane.store.sqlite.writer"), "disabled", True)
        with pytest.raises(WriterError):
            await store.abatch([PutOp(("ns",), f"fail-{i}", {"text": "dog"}) for i in range(300)])
        assert await settled("fail-") == 0


async def test_close_commits_everything_queued(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    async with SqliteStore.open(path) as store:
        tasks = [asyncio.create_task(store.aput(("ns",), f"k{n}", {"n": n})) for n in range(500)]
        await asyncio.sleep(0)  # every task has queued its put
        await store.aclose()
        await asyncio.gather(*tasks)
        with pytest.raises(StoreClosedError):
            await store.aput(("ns",), "late", {"n": 0})
    async with SqliteStore.open(path) as store:
        assert len(await store.asearch(("ns",), limit=1000)) == 500


async def test_a_broken_writer_fails_callers_instead_of_hanging(tmp_path: Path) -> None:
    async with SqliteStore.open(tmp_path / "w.db") as store:
        await store.aput(("ns",), "before", {"ok": True})
        await store._writer._conn.close()  # white box: pull the connection away
        with anyio.fail_after(10):
            with pytest.raises((WriterError, ValueError, sqlite3.Error)):
                await store.aput(("ns",), "after", {"ok": False})


# ---- readers -----------------------------------------------------------------------------

async def test_concurrent_gets_share_thread_hops(tmp_path: Path) -> None:
    async with SqliteStore.open(tmp_path / "g.db", inline_reads=False) as store:
        await store.abatch([PutOp(("ns",), f"k{n}", {"n": n}) for n in range(100)])
        hops_before = store.get_hops
        items = await asyncio.gather(*(store.aget(("ns",), f"k{n}") for n in range(100)))
        assert [item.value["n"] for item in items if item] == list(range(100))
        assert store.get_hops - hops_before <= 10, "100 concurrent gets coalesced"


async def test_small_reads_run_inline_and_large_ones_go_to_the_pool(tmp_path: Path) -> None:
    async with SqliteStore.open(tmp_path / "i.db", index=INDEX) as store:
        inline = store._readers._inline
        assert inline is not None
        await store.abatch(
            [PutOp(("users", f"u{n % 50}"), f"k{n}", {"text": "apple", "n": n})
             for n in range(5_000)]
        )
        hops, answered = store.get_hops, inline.inline_reads
        assert (await store.aget(("users", "u1"), "k1")) is not None
        assert len(await store.asearch(("users", "u1"), query="apple", limit=5)) == 5
        assert store.get_hops == hops and inline.inline_reads >= answered + 2
        # a crowd of gets arriving together is coalesced into few hops instead
        keys = [(("users", f"u{n % 50}"), f"k{n}") for n in range(200)]
        items = await asyncio.gather(*(store.aget(ns, key) for ns, key in keys))
        assert [item.key for item in items if item] == [key for _, key in keys]
        assert 1 <= store.get_hops - hops <= 20
        handed_off = inline.handed_off
        # a filter that must scan every row exceeds the inline budget: a pooled reader
        # answers it, with the same result as an unbounded query would give
        page = await store.asearch(("users",), filter={"n": {"$gte": 4_990}}, limit=20)
        assert sorted(item.value["n"] for item in page) == list(range(4_990, 5_000))
        assert inline.handed_off > handed_off


async def test_crowds_keep_coalescing_and_a_lone_get_goes_inline_again(tmp_path: Path) -> None:
    async with SqliteStore.open(tmp_path / "h.db") as store:
        inline = store._readers._inline
        assert inline is not None
        await store.abatch([PutOp(("ns",), f"k{n}", {"n": n}) for n in range(300)])

        async def reader(first: int) -> list[int]:
            found = []
            for n in range(first, 300, 50):
                item = await store.aget(("ns",), f"k{n}")
                assert item is not None
                found.append(item.value["n"])
            return found

        hops = store.get_hops
        results = await asyncio.gather(*(reader(first) for first in range(50)))
        assert sorted(n for found in results for n in found) == list(range(300))
        assert store.get_hops - hops <= 12, "six rounds of 50 gets: a few hops each"
        # after the crowd: a lone get may take one hop, then lone gets run inline again
        await store.aget(("ns",), "k1")
        answered = inline.inline_reads
        item = await store.aget(("ns",), "k2")
        assert item is not None and inline.inline_reads == answered + 1


async def test_reads_see_acknowledged_writes_immediately(tmp_path: Path) -> None:
    async with SqliteStore.open(tmp_path / "r.db", index=INDEX) as store:

        async def write_then_read(n: int) -> None:
            await store.aput(("ns", str(n)), "k", {"text": "apple", "n": n})
            item = await store.aget(("ns", str(n)), "k")
            assert item is not None and item.value["n"] == n
            hits = await store.asearch(("ns", str(n)), query="apple")
            assert [hit.value["n"] for hit in hits] == [n]

        async with anyio.create_task_group() as tasks:
            for n in range(100):
                tasks.start_soon(write_then_read, n)


# ---- opening, locking, lifecycle ---------------------------------------------------------

async def test_reopening_with_other_dims_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    async with SqliteStore.open(path, index=INDEX) as store:
        await store.aput(("ns",), "k", {"text": "apple"})
    with pytest.raises(ValueError, match="dims"):
        async with SqliteStore.open(path, index=IndexConfig(dims=8, embed=keyword_embed)):
            pass


async def test_reopening_many_multi_vector_items_restores_every_search(tmp_path: Path) -> None:
    """The bulk loader: items with one or several vectors come back with the same scores."""
    path = tmp_path / "bulk.db"
    index = IndexConfig(dims=KEYWORD_DIMS, embed=keyword_embed, fields=["text", "tags[*]"])
    words = ["apple", "banana", "cherry", "dog", "cat"]
    async with SqliteStore.open(path, index=index) as store:
        for i in range(300):
            tags = [words[(i + j) % 5] for j in range(i % 3)]
            await store.aput(("docs", str(i % 7)), f"k{i}", {"text": words[i % 5], "tags": tags})
        await store.adelete(("docs", "0"), "k0")
        before = [await store.asearch(("docs",), query=w, limit=20) for w in words]
    async with SqliteStore.open(path, index=index) as store:
        after = [await store.asearch(("docs",), query=w, limit=20) for w in words]
    assert after == before
    assert all(len(page) == 20 for page in after)


async def test_a_damaged_vector_blob_is_named_on_open(tmp_path: Path) -> None:
    path = tmp_path / "damaged.db"
    async with SqliteStore.open(path, index=INDEX) as store:
        await store.aput(("ns",), "k", {"text": "apple"})
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE vectors SET embedding = x'00010203ff'")
    with pytest.raises(ValueError, match=r"5 bytes.*damaged"):
        async with SqliteStore.open(path, index=INDEX):
            pass


async def test_the_schema_records_its_migrations(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with SqliteStore.open(path):
        pass
    with sqlite3.connect(path) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM memlane_migrations")]
        assert versions == [1, 2, 3]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize("bad", [":memory:", ""])
async def test_a_path_that_is_no_file_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="file path"):
        async with SqliteStore.open(bad):
            pass


async def test_sync_calls_on_the_loop_thread_name_the_async_method(tmp_path: Path) -> None:
    async with SqliteStore.open(tmp_path / "y.db") as store:
        with pytest.raises(RuntimeError, match=r"await store\.aput"):
            store.put(("ns",), "k", {"v": 1})
        with pytest.raises(RuntimeError, match=r"await store\.asearch"):
            store.search(("ns",))

        def from_a_thread() -> object:
            store.put(("ns",), "k", {"v": 2})
            return store.get(("ns",), "k")

        item = await anyio.to_thread.run_sync(from_a_thread)
        assert item is not None and item.value == {"v": 2}  # type: ignore[attr-defined]


def test_open_sync_serves_scripts_without_a_loop(tmp_path: Path) -> None:
    path = tmp_path / "sync.db"
    with SqliteStore.open_sync(path, index=INDEX) as store:
        store.put(("docs",), "a", {"text": "jazz music"})
        run_in_threads(lambda n: store.put(("docs",), f"t{n}", {"text": "rock"}), 8)
        assert [hit.key for hit in store.search(("docs",), query="jazz", limit=1)] == ["a"]
        assert len(store.search(("docs",), limit=100)) == 9
    with pytest.raises(StoreClosedError):
        store.get(("docs",), "a")


async def test_the_sweeper_deletes_expired_items_on_its_interval(tmp_path: Path) -> None:
    clock = FakeClock()
    ttl = TTLConfig(default_ttl=1, sweep_interval_minutes=0.0005)  # every 30 ms
    path = tmp_path / "ttl.db"
    async with SqliteStore.open(path, ttl=ttl, clock=clock) as store:
        await store.aput(("ns",), "old", {"v": 1})
        await store.aput(("ns",), "kept", {"v": 1}, ttl=None)
        clock.advance(120)

        def rows() -> int:
            with sqlite3.connect(path) as conn:
                return int(conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])

        with anyio.fail_after(10):
            # Waiting for a condition another component brings about: poll the file.
            while await anyio.to_thread.run_sync(rows) != 1:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        assert await store.aget(("ns",), "kept") is not None
        assert await store.asweep_expired() == 0


async def test_reads_refresh_ttl_through_the_writer(tmp_path: Path) -> None:
    clock = FakeClock()
    async with SqliteStore.open(tmp_path / "rt.db", ttl={"default_ttl": 1}, clock=clock) as store:
        await store.aput(("ns",), "k", {"v": 1})
        clock.advance(50)
        assert await store.aget(("ns",), "k") is not None
        await store.aput(("ns",), "flush", {"v": 0})  # the touch is committed by now
        clock.advance(50)
        assert await store.aget(("ns",), "k") is not None
        clock.advance(61)
        assert await store.aget(("ns",), "k") is None
        assert await store.asweep_expired() == 2


def test_the_private_aiosqlite_hook_exists() -> None:
    """connection.py runs whole units of work through this; fail loudly if it moves."""
    import aiosqlite

    assert callable(getattr(aiosqlite.Connection, "_execute", None))


async def test_an_async_call_from_another_event_loop_is_refused(tmp_path: Path) -> None:
    async with SqliteStore.open(tmp_path / "loops.db") as store:

        def other_loop() -> None:
            asyncio.run(store.aput(("ns",), "k", {"v": 1}))

        with pytest.raises(RuntimeError, match="sync methods"):
            await anyio.to_thread.run_sync(other_loop)
        await store.aput(("ns",), "k", {"v": 2})
        item = await store.aget(("ns",), "k")
        assert item is not None and item.value == {"v": 2}


async def test_synchronous_full_is_offered(tmp_path: Path) -> None:
    path = tmp_path / "full.db"
    async with SqliteStore.open(path, synchronous="FULL", index=INDEX) as store:
        await asyncio.gather(*(store.aput(("ns",), f"k{n}", {"text": "apple"}) for n in range(50)))
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 50
    with pytest.raises(ValueError, match="synchronous"):
        async with SqliteStore.open(path, synchronous="OFF"):  # type: ignore[arg-type]
            pass


async def test_a_fallback_commit_still_indexes_a_put_that_was_superseded(tmp_path: Path) -> None:
    """Two callers put one key in one batch; the later one makes the transaction fail.
    The earlier put then commits on its own, and must be searchable."""
    async with SqliteStore.open(tmp_path / "f.db", index=INDEX) as store:
        raw: sqlite3.Connection = store._writer._conn._conn  # white box: shrink a limit
        raw.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 10_000)
        first = asyncio.ensure_future(store.aput(("ns",), "k", {"text": "apple"}))
        second = asyncio.ensure_future(store.aput(("ns",), "k", {"text": "dog " * 5_000}))
        results = await asyncio.gather(first, second, return_exceptions=True)
        assert results[0] is None
        assert isinstance(results[1], sqlite3.DataError | sqlite3.OperationalError)
        hits = await store.asearch(("ns",), query="apple")
        assert [(hit.key, hit.value) for hit in hits] == [("k", {"text": "apple"})]


async def test_aimport_keeps_given_timestamps_and_expiry(tmp_path: Path) -> None:
    clock = FakeClock()
    created = datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    updated = datetime(2024, 6, 1, tzinfo=UTC)
    async with SqliteStore.open(tmp_path / "i.db", index=INDEX, clock=clock) as store:
        await store.aput(("ns",), "old", {"text": "dog"})
        await store.aimport([
            ImportItem(("ns",), "old", {"text": "apple"}, created, updated),
            ImportItem(("ns",), "ttl", {"text": "jazz"}, created, updated, ttl_minutes=1),
            ImportItem(("ns",), "gone", {"text": "rock"}, created, updated,
                       expires_at=datetime.fromtimestamp(clock.now - 1, UTC)),
        ])
        item = await store.aget(("ns",), "old")
        assert item is not None and item.value == {"text": "apple"}
        assert (item.created_at, item.updated_at) == (created, updated)
        hits = await store.asearch(("ns",), query="apple")
        assert hits[0].key == "old"
        assert await store.aget(("ns",), "gone") is None
        assert await store.aget(("ns",), "ttl", refresh_ttl=False) is not None
        clock.advance(61)
        assert await store.aget(("ns",), "ttl") is None
        await store.aput(("ns",), "new", {"text": "sun"})
        newest = (await store.asearch(("ns",), limit=1))[0]
        assert newest.key == "new", "later writes are stamped after imported ones"
        with pytest.raises(ValueError, match="timezone-aware"):
            await store.aimport([ImportItem(("ns",), "k", {}, datetime(2024, 1, 1), updated)])
        with pytest.raises(InvalidNamespaceError):
            await store.aimport([ImportItem(("a.b",), "k", {}, created, updated)])


def test_the_inline_budget_counts_every_statement_of_a_read(tmp_path: Path) -> None:
    from memlane.store.sqlite.inline import InlineReader, TooMuchWork

    path = tmp_path / "budget.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x INTEGER)")
        conn.executemany("INSERT INTO t VALUES (?)", [(n,) for n in range(3_000)])
    reader = InlineReader(path, budget=20_000)

    def scan(raw: sqlite3.Connection, n: int = 0) -> int:
        # distinct statements: SQLite's own step counter would add up over a reused one
        return int(raw.execute(f"SELECT sum(x) + {n} FROM t").fetchone()[0]) - n

    one = reader.run(scan)  # one scan fits the budget
    with pytest.raises(TooMuchWork):  # ten of them in one read do not
        reader.run(lambda raw: [scan(raw, n) for n in range(1, 11)])
    assert reader.run(scan) == one  # the next read starts with a fresh budget
    reader.close()
    with pytest.raises(StoreClosedError):
        reader.run(scan)


async def test_reads_racing_close_succeed_or_raise_store_closed(tmp_path: Path) -> None:
    """Reads in flight or arriving while the store closes: each one either answers or
    raises StoreClosedError, never an error of a connection closed underneath it."""
    path = tmp_path / "m.db"
    async with SqliteStore.open(path, index=INDEX) as store:
        await store.abatch([PutOp(("docs",), f"k{i}", {"text": f"apple {i}"}) for i in range(300)])
    for attempt in range(6):
        store = await SqliteStore.open(
            path, index=INDEX, inline_reads=attempt % 2 == 0
        ).__aenter__()
        outcomes: list[BaseException | None] = []

        async def read(
            n: int, store: SqliteStore = store, outcomes: list[BaseException | None] = outcomes
        ) -> None:
            for _ in range(1 + n % 7):  # later reads of a task arrive during the close
                try:
                    if n % 3 == 0:
                        await store.aget(("docs",), f"k{n}")
                    elif n % 3 == 1:
                        await store.asearch(("docs",), filter={"text": f"apple {n}"})
                    else:
                        await store.asearch(("docs",), query="apple", limit=5)
                except Exception as exc:
                    outcomes.append(exc)
                else:
                    outcomes.append(None)

        with anyio.fail_after(30):  # a read left behind by the close would hang here
            async with anyio.create_task_group() as tg:
                for n in range(60):
                    tg.start_soon(read, n)
                tg.start_soon(store.aclose)
        unexpected = [e for e in outcomes if e is not None and not isinstance(e, StoreClosedError)]
        assert not unexpected, unexpected
        assert len(outcomes) == sum(1 + n % 7 for n in range(60))


async def test_rewrites_keep_item_ids_dense_and_never_reuse_a_deleted_one(tmp_path: Path) -> None:
    """With an index, only new keys take fresh ids (the index maps ids to rows through an
    array indexed by id): rewriting items does not spend ids, a deleted item's id is
    never given to another item, and searches stay right."""
    path = tmp_path / "ids.db"
    async with SqliteStore.open(path, index=INDEX) as store:
        for round_ in range(30):
            await store.abatch(
                [PutOp(("ns",), f"k{i}", {"text": f"apple {round_}"}) for i in range(10)]
            )
        async with anyio.create_task_group() as tasks:  # concurrent rewrites and new keys
            for i in range(20):
                tasks.start_soon(store.aput, ("ns",), f"k{i}", {"text": "banana"})
        await store.adelete(("ns",), "k3")
        await store.aput(("ns",), "late", {"text": "cherry"})
        hits = await store.asearch(("ns",), query="cherry", limit=1)
        assert [hit.key for hit in hits] == ["late"]
        found = await store.asearch(("ns",), query="banana", limit=50)
        assert [hit.value["text"] for hit in found[:19]] == ["banana"] * 19
        assert {hit.key for hit in found} == {f"k{i}" for i in range(20)} - {"k3"} | {"late"}
    ids = dict(sqlite3.connect(path).execute("SELECT key, id FROM items").fetchall())
    assert sorted(ids.values()) == [*range(1, 4), *range(5, 21), 21]
    assert ids["late"] == 21  # not k3's id 4

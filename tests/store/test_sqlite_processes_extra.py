"""More on several stores sharing one SqliteStore file: what the tests with real child
processes (``test_sqlite_processes.py``) leave unchecked.

Most of these open two stores on one file in this process: each has its own writer, vector
index, scope map and follower, exactly as two processes would, while the test can hold a
thread at a chosen point, shorten the change log's keep time, or look at what a follower
holds in memory. No fixed sleeps: every wait is for a condition, with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memlane import HashingEmbeddings, IndexConfig, SqliteStore
from memlane.store.sqlite import follower as follower_module
from memlane.store.sqlite import inline as inline_module
from memlane.store.sqlite import lease
from memlane.store.sqlite import mirror as mirror_module
from memlane.store.sqlite import store as store_module
from memlane.store.sqlite import writer as writer_module
from memlane.store.sqlite.follower import Follower
from memlane.store.sqlite.policies import INLINE_FOLLOW_ITEMS, INLINE_FOLLOW_WINDOW
from memlane.store.sqlite.schema import apply_migrations, configure
from memlane.store.sqlite.stored_vectors import replace_items
from memlane.store.types import PutOp
from memlane.vectors import VectorIndex

pytestmark = pytest.mark.anyio

DIMS = 64


def config() -> IndexConfig:
    return IndexConfig(dims=DIMS, embed=HashingEmbeddings(dims=DIMS), fields=("text",))


def text_of(key: str, version: int) -> str:
    """A text only this key at this version has (as in ``process_child.py``)."""
    return f"{key} v{version} {key}-{version}"


async def put(store: SqliteStore, ns: tuple[str, ...], key: str, version: int) -> None:
    await store.aput(ns, key, {"text": text_of(key, version), "v": version})


async def top(store: SqliteStore, ns: tuple[str, ...], key: str, version: int) -> Any:
    """The best hit of a vector query for ``key`` at ``version``: (key, version, score)."""
    hits = await store.asearch(ns, query=text_of(key, version), limit=1)
    return None if not hits else (hits[0].key, hits[0].value["v"], hits[0].score)


async def finds(store: SqliteStore, ns: tuple[str, ...], key: str, version: int) -> bool:
    """Whether a vector query for ``key`` at ``version`` finds exactly it, first."""
    found = await top(store, ns, key, version)
    return found is not None and found[:2] == (key, version) and found[2] > 0.999


def follower_of(store: SqliteStore) -> Follower:
    follower = store._readers._follower
    assert follower is not None
    return follower

def hold_the_next_follow(
    monkeypatch: pytest.MonkeyPatch, store: SqliteStore
) -> tuple[_WatchedLock, threading.Event, threading.Event]:
    """Watch who waits for ``store``'s mirror lock, and hold its next follow once it has
    read the tables (``held`` is then set) until the test sets ``go``."""
    follower = follower_of(store)
    watched = _WatchedLock(follower.lock)
    follower.lock = watched  # type: ignore[assignment]
    held, go = threading.Event(), threading.Event()
    # on the follower's thread, which may wait: not on the loop's (small catch-ups run there)
    monkeypatch.setattr(follower_module, "INLINE_FOLLOW_ITEMS", 0)

    def held_replace(vectors: Any, ids: Sequence[int], rows: Sequence[Any]) -> None:
        if vectors is follower._mirror._vectors and not held.is_set():
            held.set()
            assert go.wait(10), "the test never let the follow go on"
        replace_items(vectors, ids, rows)

    monkeypatch.setattr(mirror_module, "replace_items", held_replace)
    return watched, held, go



def connect_to(path: Path) -> contextlib.closing[sqlite3.Connection]:
    """A plain connection to the store file, closed after use."""
    return contextlib.closing(sqlite3.connect(path, isolation_level=None))


def item_id(path: Path, ns: str, key: str) -> int:
    with connect_to(path) as conn:
        row = conn.execute(
            "SELECT id FROM items WHERE namespace = ? AND key = ?", (ns, key)
        ).fetchone()
    assert row is not None
    return int(row[0])


def latest_seq(path: Path) -> int:
    with connect_to(path) as conn:
        return int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0])


async def until(condition: Callable[[], bool], what: str, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.002)


def log_keeps_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Writers trim the change log at every commit, down to their previous row; followers
    look only when a read asks (a follower that could not run for ``LOG_KEEP_S``)."""
    monkeypatch.setattr(writer_module, "LOG_KEEP_S", 0.0)
    monkeypatch.setattr(writer_module, "LOG_TRIM_EVERY_S", 0.0)
    monkeypatch.setattr(store_module, "FOLLOW_EVERY_S", 3600.0)


class _WatchedLock:
    """The mirror lock, telling when the writer waits for it (a blocking ``acquire``) and
    when the follower (``with lock:``) finds it taken."""

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self.writer_waits = threading.Event()
        self.follower_waits = threading.Event()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if blocking:
            self.writer_waits.set()
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> bool:
        if self._lock.acquire(blocking=False):
            return True
        self.follower_waits.set()
        return self._lock.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()


async def test_a_follow_in_flight_never_overwrites_this_processes_newer_mirror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B writes v1 of an item; A's follower reads v1 and is held just before applying it;
    meanwhile A's own writer writes v2. v2 must end up in A's index (the mirror lock makes
    A's writer commit and mirror only after the follow), not the follow's older v1."""
    path = tmp_path / "lock.db"
    ns = ("users", "u1")
    async with (
        SqliteStore.open(path, index=config()) as a,
        SqliteStore.open(path, index=config()) as b,
    ):
        watched, held, go = hold_the_next_follow(monkeypatch, a)
        await put(b, ns, "k", 1)
        search = asyncio.create_task(top(a, ns, "k", 1))  # A catches up: held with v1 read
        write = asyncio.create_task(asyncio.sleep(0))
        try:
            await until(held.is_set, "A's follow to read v1")
            write = asyncio.create_task(put(a, ns, "k", 2))
            await until(
                lambda: watched.writer_waits.is_set() or write.done(),
                "A's writer to wait for the mirror lock (or to finish)",
            )
        finally:
            go.set()
            await asyncio.gather(search, write)
        assert await finds(a, ns, "k", 2), await top(a, ns, "k", 2)
        assert await finds(b, ns, "k", 2), await top(b, ns, "k", 2)


async def test_an_idle_store_keeps_up_with_the_others_without_reading(tmp_path: Path) -> None:
    """The background follower: a store that reads nothing still applies B's commits (so
    it never falls behind the trimmed log and reloads everything)."""
    path = tmp_path / "idle.db"
    async with (
        SqliteStore.open(path, index=config()) as a,
        SqliteStore.open(path, index=config()) as b,
    ):
        for n in range(5):
            await put(b, ("n",), f"k{n}", n)
        newest = latest_seq(path)
        follower = follower_of(a)
        await until(
            lambda: follower.applied >= newest, "A's follower to apply B's commits", within=5
        )
        assert item_id(path, "n", "k4") in follower._mirror._vectors  # type: ignore[operator]


async def test_a_delete_elsewhere_leaves_this_processes_index_and_scope_map(
    tmp_path: Path,
) -> None:
    """B deletes an item A holds in memory: after A's next catch-up its vector index and
    its scope map no longer list it (a search would hide it by the table anyway, so only
    memory shows it: without this an index keeps every item ever deleted elsewhere)."""
    path = tmp_path / "delete.db"
    async with (
        SqliteStore.open(path, index=config()) as a,
        SqliteStore.open(path, index=config()) as b,
    ):
        await put(b, ("users", "a"), "gone", 1)
        await put(b, ("users", "b"), "kept", 1)
        assert await finds(a, ("users", "a"), "gone", 1)
        gone = item_id(path, "users.a", "gone")
        follower = follower_of(a)
        vectors, scopes = follower._mirror._vectors, follower._mirror._scopes
        assert vectors is not None and scopes is not None
        assert gone in vectors
        await b.adelete(("users", "a"), "gone")
        assert await top(a, ("users", "a"), "gone", 1) is None  # A catches up here
        assert gone not in vectors
        under = scopes.ids_under("users.a", time.time())
        assert isinstance(under, np.ndarray) and gone not in under.tolist()
        assert len(scopes) == 1


@contextlib.asynccontextmanager
async def two_stores(path: Path) -> AsyncIterator[tuple[SqliteStore, SqliteStore]]:
    """Two indexed stores on one file, as two processes would have."""
    async with (
        SqliteStore.open(path, index=config()) as a,
        SqliteStore.open(path, index=config()) as b,
    ):
        yield a, b


def no_background_follow(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only reads catch up (patch before the stores open)."""
    monkeypatch.setattr(store_module, "FOLLOW_EVERY_S", 3600.0)


async def put_many(store: SqliteStore, ns: tuple[str, ...], keys: list[str]) -> None:
    """One transaction (one change-log row) writing ``keys`` at version 1."""
    await store.abatch(
        [PutOp(ns, key, {"text": text_of(key, 1), "v": 1}) for key in keys]
    )


FOLLOWED_NS = ("users", "u1")
MANY_KEYS = [f"k{n}" for n in range(INLINE_FOLLOW_ITEMS + 72)]  # past the inline limit


async def test_a_small_catch_up_runs_on_the_loop_and_a_large_one_on_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Changes naming up to INLINE_FOLLOW_ITEMS items are applied on the loop's thread
    (no hop); one more item sends the catch-up to the follower's thread. Both are seen."""
    no_background_follow(monkeypatch)
    path = tmp_path / "inline.db"
    ns = ("users", "u1")
    async with two_stores(path) as (a, b):
        follower = follower_of(a)
        small = [f"s{n}" for n in range(INLINE_FOLLOW_ITEMS)]
        await put_many(b, ns, small)
        assert await finds(a, ns, small[-1], 1)
        assert (follower.followed, follower.followed_inline) == (1, 1)
        large = [f"l{n}" for n in range(INLINE_FOLLOW_ITEMS + 1)]
        await put_many(b, ns, large)
        assert await finds(a, ns, large[-1], 1)
        assert await finds(a, ("users",), large[0], 1)
        assert (follower.followed, follower.followed_inline) == (2, 1)


async def test_a_few_foreign_changes_behind_a_large_own_commit_go_to_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B's 3 items, then A's own commit of many: the log rows since A's last look are too
    large to read on the loop (A's own rows are read too), so the thread applies B's."""
    no_background_follow(monkeypatch)
    ns = ("users", "u1")
    async with two_stores(tmp_path / "window.db") as (a, b):
        follower = follower_of(a)
        await put_many(b, ns, ["b0", "b1", "b2"])
        own = [f"a{n}" for n in range(INLINE_FOLLOW_WINDOW * INLINE_FOLLOW_ITEMS + 1)]
        await put_many(a, ("users", "u2"), own)
        assert await finds(a, ns, "b1", 1)
        assert (follower.followed, follower.followed_inline) == (1, 0)


async def test_an_inline_catch_up_out_of_budget_goes_to_the_thread_having_changed_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop's read of the log and the rows stops at its step budget: nothing was
    applied (reading and applying are separate steps), and the thread does it all."""
    no_background_follow(monkeypatch)
    monkeypatch.setattr(inline_module, "_TICK", 1)  # count every VM step
    path = tmp_path / "budget.db"
    ns = ("users", "u1")
    async with two_stores(path) as (a, b):
        follower = follower_of(a)
        follower._inline.budget = 40  # VM steps: too few to read the log and the rows
        keys = [f"k{n}" for n in range(20)]
        await put_many(b, ns, keys)
        before = follower.applied
        assert await finds(a, ns, keys[7], 1)
        assert follower._inline.handed_off >= 1
        assert follower.followed == 1 and follower.followed_inline == 0
        assert follower.applied == latest_seq(path) > before
        for key in keys:
            assert await finds(a, ns, key, 1)


def record_catch_ups(follower: Follower) -> list[float]:
    """When each ``catch_up`` call began (so a test knows a read has asked for one)."""
    calls: list[float] = []
    catch_up = follower.catch_up

    async def recorded() -> None:
        calls.append(time.monotonic())
        await catch_up()

    follower.catch_up = recorded  # type: ignore[method-assign]
    return calls


async def test_a_read_arriving_after_a_catch_ups_snapshot_waits_for_it_and_looks_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A's follow on the thread has read the tables (held there); B then acknowledges k2;
    a read of k2 that began after that must not take the held follow as covering it."""
    no_background_follow(monkeypatch)
    path = tmp_path / "again.db"
    ns = ("users", "u1")
    async with two_stores(path) as (a, b):
        _, held, go = hold_the_next_follow(monkeypatch, a)
        calls = record_catch_ups(follower_of(a))
        await put(b, ns, "k1", 1)
        first = asyncio.create_task(finds(a, ns, "k1", 1))
        second = None
        try:
            await until(held.is_set, "A's follow to read k1")
            await put(b, ns, "k2", 1)
            second = asyncio.create_task(finds(a, ns, "k2", 1))
            await until(lambda: len(calls) == 2, "the read of k2 to ask for a catch-up")
        finally:
            go.set()
        assert await first
        assert second is not None and await second


async def test_a_read_arriving_before_a_catch_ups_snapshot_is_covered_by_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read that starts while a catch-up waits for the mirror lock (before its snapshot)
    waits for that one catch-up only, though B committed again meanwhile."""
    no_background_follow(monkeypatch)
    path = tmp_path / "covered.db"
    ns = ("users", "u1")
    async with two_stores(path) as (a, b):
        follower = follower_of(a)
        watched = _WatchedLock(follower.lock)
        follower.lock = watched  # type: ignore[assignment]
        reads: list[int | None] = []  # every look at the log, on either thread
        read = follower._read

        def counted(raw: sqlite3.Connection, limit: int | None) -> Any:
            reads.append(limit)
            return read(raw, limit)

        follower._read = counted  # type: ignore[method-assign]
        calls = record_catch_ups(follower)
        await put(b, ns, "k1", 1)
        assert watched._lock.acquire(blocking=False)  # as A's writer does while mirroring
        try:
            first = asyncio.create_task(finds(a, ns, "k1", 1))
            await until(watched.follower_waits.is_set, "A's follow to wait for the lock")
            second = asyncio.create_task(finds(a, ns, "k1", 1))
            await until(lambda: len(calls) == 2, "the second read to ask for a catch-up")
            await put(b, ns, "k2", 1)  # after both reads began, before the follow's snapshot
        finally:
            watched._lock.release()
        assert await first and await second
        assert reads == [None], "the second read looked at the log again"
        assert await finds(a, ns, "k2", 1)


def hold_thread_follows(follower: Follower) -> tuple[threading.Event, threading.Event]:
    """Hold each catch-up on the follower's thread before it starts (``entered`` is then
    set) until the test sets ``go``."""
    entered, go = threading.Event(), threading.Event()
    follow = follower._follow

    def held(raw: sqlite3.Connection, version: Any, running: Any) -> None:
        entered.set()
        assert go.wait(10), "the test never let the follow go on"
        follow(raw, version, running)

    follower._follow = held  # type: ignore[method-assign]
    return entered, go


async def a_read_and_a_waiter(
    a: SqliteStore, b: SqliteStore, entered: threading.Event
) -> tuple[asyncio.Task[bool], asyncio.Task[bool]]:
    """B writes MANY_KEYS; A's first read starts a thread catch-up (held: ``entered`` is
    set) and a second read, begun after it, waits for that catch-up."""
    calls = record_catch_ups(follower_of(a))
    await put_many(b, FOLLOWED_NS, MANY_KEYS)
    first = asyncio.create_task(finds(a, FOLLOWED_NS, MANY_KEYS[0], 1))
    await until(entered.is_set, "the thread catch-up to start")
    second = asyncio.create_task(finds(a, FOLLOWED_NS, MANY_KEYS[0], 1))
    await until(lambda: len(calls) == 2, "the second read to wait")
    return first, second


async def test_a_cancelled_catch_up_covers_none_of_its_waiters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read that started a thread catch-up is cancelled (a timeout) before it ran: a
    read waiting for it must still see B's acknowledged write (the catch-up runs on)."""
    no_background_follow(monkeypatch)
    async with two_stores(tmp_path / "c.db") as (a, b):
        follower = follower_of(a)
        entered, go = hold_thread_follows(follower)
        try:
            first, second = await a_read_and_a_waiter(a, b, entered)
            first.cancel()  # e.g. asyncio.wait_for timing out the first search
            await asyncio.gather(first, return_exceptions=True)
            for _ in range(20):  # loop turns: a waiter taking it as covered returns now
                await asyncio.sleep(0)
            go.set()
            ok = await asyncio.wait_for(second, 5)
        finally:
            go.set()
        assert ok, "B's acknowledged write is missing from A's vector search"


def before_mirror_reads(follower: Follower, hook: Callable[[], None]) -> None:
    """Call ``hook`` in each of the follower's reads of the tables (inside its snapshot),
    before the read itself."""
    mirror = follower._mirror
    read = mirror.read

    def hooked(*args: Any) -> Any:
        hook()
        return read(*args)

    mirror.read = hooked  # type: ignore[method-assign, assignment]


async def test_a_failed_catch_up_covers_none_of_its_waiters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thread catch-up fails once (a read error): its caller gets the error, a read
    waiting for it looks again and sees B's acknowledged write."""
    no_background_follow(monkeypatch)
    async with two_stores(tmp_path / "f.db") as (a, b):
        follower = follower_of(a)
        entered, go = hold_thread_follows(follower)
        failed: list[int] = []

        def fail_once() -> None:  # e.g. SQLITE_BUSY past busy_timeout, a damaged page
            if not failed:
                failed.append(1)
                raise sqlite3.OperationalError("database is locked")

        before_mirror_reads(follower, fail_once)
        try:
            first, second = await a_read_and_a_waiter(a, b, entered)
        finally:
            go.set()
        with pytest.raises(sqlite3.OperationalError):
            await first
        assert await second, "a waiter took a failed catch-up as covering it"


async def test_a_read_arriving_during_a_catch_ups_read_transaction_is_not_covered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A's thread catch-up is held inside its read transaction (its snapshot taken); B then
    acknowledges "late": a read of it that begins now must look again (so the catch-up's
    time must be taken before its snapshot, not after its reads)."""
    no_background_follow(monkeypatch)
    async with two_stores(tmp_path / "t.db") as (a, b):
        follower = follower_of(a)
        entered, go = threading.Event(), threading.Event()

        def hold_once() -> None:
            if not entered.is_set():
                entered.set()
                assert go.wait(10), "the test never let the follow go on"

        before_mirror_reads(follower, hold_once)
        calls = record_catch_ups(follower)
        await put_many(b, FOLLOWED_NS, MANY_KEYS)
        first = asyncio.create_task(finds(a, FOLLOWED_NS, MANY_KEYS[0], 1))
        try:
            await until(entered.is_set, "the thread catch-up to be inside its snapshot")
            await put_many(b, FOLLOWED_NS, ["late"])
            second = asyncio.create_task(finds(a, FOLLOWED_NS, "late", 1))
            await until(lambda: len(calls) == 2, "the second read to wait")
        finally:
            go.set()
        assert await first
        assert await second, "a read that began after the catch-up's snapshot was covered"


async def test_a_commit_landing_during_a_full_reload_is_followed_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``_reload_all`` must take the log's position in its own snapshot: a commit landing
    while it reloads is not in memory, so ``applied`` must stay before it."""
    log_keeps_nothing(monkeypatch)
    async with two_stores(tmp_path / "r.db") as (a, b):
        await put(b, FOLLOWED_NS, "k0", 0)
        assert await finds(a, FOLLOWED_NS, "k0", 0)
        for n in range(1, 4):
            await put(b, FOLLOWED_NS, f"k{n}", n)  # trimmed past A
        follower = follower_of(a)
        mirror = follower._mirror
        reload_all = mirror.reload_all
        held, go = threading.Event(), threading.Event()

        def held_reload_all(raw: sqlite3.Connection) -> None:
            reload_all(raw)
            held.set()
            assert go.wait(10)

        mirror.reload_all = held_reload_all  # type: ignore[method-assign]
        first = asyncio.create_task(finds(a, FOLLOWED_NS, "k3", 3))
        try:
            await until(held.is_set, "A's full reload to have read the tables")
            await put(b, FOLLOWED_NS, "late", 1)
        finally:
            go.set()
        assert await first
        assert follower.reloads == 1
        assert await finds(a, FOLLOWED_NS, "late", 1), "a commit during the reload was skipped"


async def test_a_store_behind_the_trimmed_log_reloads_its_index_and_scope_map(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B's commits are trimmed from the log before A applied them: A's next vector read
    reloads everything (``Follower._reload``), deletes included."""
    log_keeps_nothing(monkeypatch)
    path = tmp_path / "trim.db"
    async with (
        SqliteStore.open(path, index=config()) as a,
        SqliteStore.open(path, index=config()) as b,
    ):
        await put(b, ("t", "x"), "old", 1)
        assert await finds(a, ("t", "x"), "old", 1)  # in A's memory
        old = item_id(path, "t.x", "old")
        await b.adelete(("t", "x"), "old")
        for n in range(4):
            await put(b, ("t", f"y{n}"), f"k{n}", n)
        with connect_to(path) as conn:
            (first,) = conn.execute("SELECT MIN(seq) FROM changes").fetchone()
        follower = follower_of(a)
        assert first > follower.applied + 1, "the log was not trimmed past A"
        for n in range(4):
            assert await finds(a, ("t",), f"k{n}", n)
            assert await finds(a, ("t", f"y{n}"), f"k{n}", n)  # through the scope map
        assert follower.reloads == 1
        assert old not in follower._mirror._vectors  # type: ignore[operator]
        assert follower.applied == latest_seq(path)


async def test_closing_gives_the_sweeper_lease_up_at_once(tmp_path: Path) -> None:
    """Not only once it runs out: the lease row is gone when ``aclose`` returns."""
    path = tmp_path / "lease.db"
    me = f"{os.getpid()}:"

    def holder() -> tuple[str, float] | None:
        with connect_to(path) as conn:
            return lease.holder(conn)

    store = await SqliteStore.open(path, ttl={"sweep_interval_minutes": 0.0005})  # 30 ms
    try:
        await until(
            lambda: (held := holder()) is not None and held[0].startswith(me),
            "the store to take the lease",
        )
    finally:
        await store.aclose()
    assert holder() is None


def test_a_migration_waiting_for_the_write_lock_finds_it_done(tmp_path: Path) -> None:
    """Two openers both read "schema 2" and wait for the write lock; the second to get it
    must find migration 3 applied by the first and skip it (the re-check under the lock)."""
    path = tmp_path / "old.db"
    with connect_to(path) as conn:
        configure(conn, synchronous="NORMAL", busy_timeout_ms=10_000)
        apply_migrations(conn, 1)
        conn.execute("DROP TABLE changes")  # back to a schema 2 file
        conn.execute("DELETE FROM memlane_meta WHERE name = 'next_item_id'")
        conn.execute("DELETE FROM memlane_migrations WHERE version = 3")
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # both openers queue behind this write lock
    waiting = [threading.Event(), threading.Event()]
    errors: list[BaseException] = []

    def opener(n: int) -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            configure(conn, synchronous="NORMAL", busy_timeout_ms=10_000)

            def trace(statement: str) -> None:
                if statement.startswith("BEGIN IMMEDIATE"):
                    waiting[n].set()  # read schema 2, now waiting for the lock

            conn.set_trace_callback(trace)
            apply_migrations(conn, 2 + n)
        except BaseException as exc:
            errors.append(exc)
        finally:
            waiting[n].set()
            conn.close()

    threads = [threading.Thread(target=opener, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    try:
        for event in waiting:
            assert event.wait(10)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    for thread in threads:
        thread.join(20)
    assert not errors, errors
    with connect_to(path) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM memlane_migrations")]
        ids = conn.execute("SELECT value FROM memlane_meta WHERE name = 'next_item_id'").fetchall()
    assert versions == [1, 2, 3]
    assert len(ids) == 1


# ---- problems a review found, fixed ----------------------------------------------------


async def test_own_commits_after_a_trimmed_foreign_one_do_not_hide_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A's follower has not applied B's commit when A's own writer trims it from the log
    (in production: a follower that could not run for ``LOG_KEEP_S``, e.g. its process
    paused, then A's writer commits first). The log past A's ``applied`` then holds only
    A's own commits: the fast path takes that for "nothing foreign", not for a gap."""
    log_keeps_nothing(monkeypatch)
    path = tmp_path / "gap.db"
    async with (
        SqliteStore.open(path, index=config()) as a,
        SqliteStore.open(path, index=config()) as b,
    ):
        await put(b, ("g",), "foreign", 1)  # seq 1, not yet applied by A
        await put(a, ("g",), "own0", 1)  # seq 2
        await put(a, ("g",), "own1", 1)  # seq 3: A's writer trims seq 1 away
        assert await a.aget(("g",), "foreign") is not None  # the table has it
        assert await finds(a, ("g",), "foreign", 1)  # A's index does not


async def test_healing_a_failed_mirror_never_undoes_a_newer_foreign_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A's mirror of x=v2 fails (x is healed after A's next commit). The heal reads x=v2,
    then B writes x=v3 and A's follower applies it; the heal then loads v2 over it."""
    path = tmp_path / "heal.db"
    ns = ("n",)
    async with (
        SqliteStore.open(path, index=config()) as a,
        SqliteStore.open(path, index=config()) as b,
    ):
        found = a._readers._vectors
        assert found is not None
        vectors: VectorIndex = found
        await put(a, ns, "x", 1)
        upsert, failing = vectors.upsert, [MemoryError("the mirror fails, once")]

        def upsert_failing_once(updates: Any) -> None:
            if failing:
                raise failing.pop()
            upsert(updates)

        monkeypatch.setattr(vectors, "upsert", upsert_failing_once)
        with pytest.raises(writer_module.WriterError):
            await put(a, ns, "x", 2)  # committed, not mirrored: x is healed later
        held, go = threading.Event(), threading.Event()

        class Held:
            """A's index, held just before the heal applies what it read."""

            dims = vectors.dims

            def remove(self, ids: Any) -> None:
                vectors.remove(ids)

            def load(self, *args: Any) -> None:
                held.set()
                assert go.wait(10)
                vectors.load(*args)

        def held_replace(index: Any, ids: Sequence[int], rows: Sequence[Any]) -> None:
            replace_items(Held() if index is vectors else index, ids, rows)  # type: ignore[arg-type]

        monkeypatch.setattr(mirror_module, "replace_items", held_replace)
        monkeypatch.setattr(follower_module, "INLINE_FOLLOW_ITEMS", 0)  # may wait: a thread
        follower = follower_of(a)
        watched = _WatchedLock(follower.lock)
        follower.lock = watched  # type: ignore[assignment]
        other = asyncio.create_task(put(a, ns, "y", 1))  # this commit heals x (read: v2)
        try:
            await until(held.is_set, "the heal to read x")
            await put(b, ns, "x", 3)
            search = asyncio.create_task(finds(a, ns, "x", 3))  # A's follower applies v3
            await until(
                lambda: search.done() or watched.follower_waits.is_set(),
                "A's follow to apply v3 (or to wait for the heal)",
            )
        finally:
            go.set()
        await other
        await search
        assert await finds(a, ns, "x", 3), await top(a, ns, "x", 3)


async def test_a_slow_follow_in_one_process_does_not_block_the_others_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A's follow is slow (held here); A's writer has begun its transaction and waits for
    the mirror lock, holding SQLite's write lock: B's write times out."""
    path = tmp_path / "stall.db"
    async with (
        SqliteStore.open(path, index=config()) as a,
        SqliteStore.open(path, index=config(), busy_timeout_ms=300) as b,
    ):
        watched, held, go = hold_the_next_follow(monkeypatch, a)
        await put(b, ("n",), "x", 1)
        search = asyncio.create_task(top(a, ("n",), "x", 1))
        write = None
        try:
            await until(held.is_set, "A's follow to start")
            write = asyncio.create_task(put(a, ("n",), "y", 1))
            await until(watched.writer_waits.is_set, "A's writer to wait for the mirror lock")
            await put(b, ("n",), "z", 1)  # B's write, while A's follow is slow
        finally:
            go.set()
            await asyncio.gather(search, *([write] if write else []), return_exceptions=True)


async def test_writes_of_an_unindexed_store_reach_an_indexed_one(tmp_path: Path) -> None:
    """A store without an index opens a file that has none; another opens it with an
    index (recording it); what the first writes then is never embedded, even by the
    next indexed open."""
    path = tmp_path / "mixed.db"
    async with SqliteStore.open(path) as plain, SqliteStore.open(path, index=config()):
        await put(plain, ("n",), "k", 1)
    async with SqliteStore.open(path, index=config()) as indexed:
        assert await finds(indexed, ("n",), "k", 1)


async def test_embedding_pending_items_never_overwrites_a_newer_write(tmp_path: Path) -> None:
    """An index=False store wrote k=v2 (marked); an indexed open embeds it (slowly) while a
    running indexed store writes k=v3 with its vectors; the opener then stores v2's
    vectors for the row holding v3, for good."""
    path = tmp_path / "pending.db"
    ns = ("n",)
    hashing = HashingEmbeddings(dims=DIMS)
    embedding, release = asyncio.Event(), asyncio.Event()

    async def slow(texts: Sequence[str]) -> Any:
        embedding.set()
        await release.wait()
        return hashing(texts)

    async with SqliteStore.open(path, index=config()) as running:
        await put(running, ns, "k", 1)
        async with SqliteStore.open(path, index=False) as unindexed:
            await put(unindexed, ns, "k", 2)  # marked for embedding at the next indexed open
        opening = asyncio.ensure_future(
            SqliteStore.open(path, index=IndexConfig(dims=DIMS, embed=slow, fields=("text",)))
        )
        try:
            await asyncio.wait_for(embedding.wait(), 10)  # the opener read k at v2
            await put(running, ns, "k", 3)  # with its own vectors
        finally:
            release.set()
        opened = await opening
        await opened.aclose()
    async with SqliteStore.open(path, index=config()) as again:
        assert await finds(again, ns, "k", 3), await top(again, ns, "k", 3)


async def test_an_item_created_elsewhere_and_deleted_here_leaves_no_trace_in_the_map(
    tmp_path: Path,
) -> None:
    """B creates an item; A deletes it before A's follower has applied B's commit: the
    follow must not add the deleted item to A's scope map."""
    path = tmp_path / "gone.db"
    async with (
        SqliteStore.open(path, index=config()) as a,
        SqliteStore.open(path, index=config()) as b,
    ):
        await put(a, ("s",), "other", 1)
        await put(a, ("elsewhere",), "k", 1)  # so that "s" is not the whole store
        await a.asearch(("s",), query="x")  # A has caught up so far
        await put(b, ("s",), "fleeting", 1)
        await a.adelete(("s",), "fleeting")  # A's own commit, after B's
        await a.asearch(("s",), query="x")  # A follows B's commit now
        scopes = follower_of(a)._mirror._scopes
        assert scopes is not None
        ids = scopes.ids_under("s", time.time())
        assert isinstance(ids, np.ndarray), ids
        assert ids.tolist() == [item_id(path, "s", "other")]


async def test_a_long_way_behind_is_caught_up_off_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With more than PROBE_SEQS changes to look at, the loop's thread lists no more than
    that many log rows: the follower's thread reads and applies them all."""
    from memlane.store.sqlite import changelog
    from memlane.store.sqlite.policies import PROBE_SEQS

    monkeypatch.setattr(store_module, "FOLLOW_EVERY_S", 3600.0)  # only reads catch up
    listed: list[int] = []
    real = changelog.seqs_since

    def counted(raw: sqlite3.Connection, seq: int, limit: int) -> list[int]:
        found = real(raw, seq, limit)
        listed.append(len(found))
        return found

    monkeypatch.setattr(changelog, "seqs_since", counted)
    path = tmp_path / "behind.db"
    async with (
        SqliteStore.open(path, index=config()) as a,
        SqliteStore.open(path, index=config()) as b,
    ):
        await a.asearch(("n",), query="x")
        for n in range(PROBE_SEQS + 20):  # one commit each
            await put(b, ("n",), f"k{n}", n)
        assert await finds(a, ("n",), f"k{PROBE_SEQS + 19}", PROBE_SEQS + 19)
        assert await finds(a, ("n",), "k0", 0)
        assert follower_of(a).applied == latest_seq(path)
    assert listed and max(listed) <= PROBE_SEQS + 1

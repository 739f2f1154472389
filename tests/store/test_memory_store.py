"""InMemoryStore beyond the shared contract: sync calls anywhere, threads, the sweeper."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest
from tests.conftest import KEYWORD_DIMS, FakeClock, keyword_embed, run_in_threads

from memlane import IndexConfig, InMemoryStore, StoreClosedError, TTLConfig


@pytest.mark.anyio
async def test_sync_methods_work_inside_a_running_event_loop() -> None:
    async def embed(texts: Sequence[str]) -> list[list[float]]:
        return keyword_embed(texts)

    store = InMemoryStore(index=IndexConfig(dims=KEYWORD_DIMS, embed=embed, fields=["text"]))
    store.put(("ns",), "k", {"text": "jazz"})  # an async embed function, called synchronously
    assert [hit.key for hit in store.search(("ns",), query="jazz")] == ["k"]
    item = store.get(("ns",), "k")
    assert item is not None and item.value == {"text": "jazz"}


def test_many_threads_write_and_read_at_once() -> None:
    store = InMemoryStore(
        index=IndexConfig(dims=KEYWORD_DIMS, embed=keyword_embed, fields=["text"])
    )
    def work(thread: int) -> None:
        for n in range(200):
            store.put(("t", str(thread)), f"k{n}", {"text": "apple dog", "n": n})
            if n % 20 == 0:
                store.search(("t",), query="apple", limit=5)
                store.delete(("t", str(thread)), f"k{n - 1}")

    run_in_threads(work, 8)
    per_thread = 200 - len(range(20, 200, 20))  # k{n-1} deleted for n = 20, 40, ...
    assert len(store.search(("t",), limit=10_000)) == 8 * per_thread
    assert len(store.search(("t",), query="apple", limit=10_000)) == 8 * per_thread


def test_the_sweeper_thread_deletes_expired_items_and_stops_on_close() -> None:
    clock = FakeClock()
    store = InMemoryStore(
        ttl=TTLConfig(default_ttl=1, sweep_interval_minutes=0.0005), clock=clock
    )
    store.put(("ns",), "old", {"v": 1})
    store.put(("ns",), "kept", {"v": 1}, ttl=None)
    clock.advance(120)
    deadline = time.monotonic() + 10
    while len(store) != 1:  # the sweeper, not a read, must remove it
        assert time.monotonic() < deadline, "the sweeper never ran"
        time.sleep(0.01)
    store.close()
    assert store._sweeper is not None and not store._sweeper.is_alive()
    with pytest.raises(StoreClosedError):
        store.get(("ns",), "kept")


def test_sweep_expired_reports_how_many_it_deleted() -> None:
    clock = FakeClock()
    store = InMemoryStore(ttl={"default_ttl": 1}, clock=clock)
    for n in range(5):
        store.put(("ns",), f"k{n}", {"n": n}, ttl=1 if n < 3 else None)
    clock.advance(61)
    assert store.sweep_expired() == 3
    assert len(store) == 2
    assert store.sweep_expired() == 0


def test_event_loops_in_several_threads_write_concurrently() -> None:
    """Each loop gets its own write batches; none sees another's futures."""
    import asyncio

    store = InMemoryStore(
        index=IndexConfig(dims=KEYWORD_DIMS, embed=keyword_embed, fields=["text"])
    )

    def work(thread: int) -> None:
        async def main() -> None:
            async def writer(task: int) -> None:
                for n in range(10):
                    await store.aput(("t", str(thread)), f"{task}-{n}", {"text": "apple"})

            await asyncio.gather(*(writer(task) for task in range(50)))

        asyncio.run(main())

    run_in_threads(work, 4)
    assert len(store) == 4 * 50 * 10
    assert len(store.search(("t", "2"), query="apple", limit=1000)) == 500


@pytest.mark.anyio
async def test_closing_with_writes_queued_fails_them_instead_of_hanging() -> None:
    import asyncio

    import anyio

    store = InMemoryStore(
        index=IndexConfig(dims=KEYWORD_DIMS, embed=keyword_embed, fields=["text"])
    )
    tasks = [
        asyncio.ensure_future(store.aput(("ns",), f"k{n}", {"text": "apple"})) for n in range(300)
    ]
    await asyncio.sleep(0)  # every put is queued; the first batch may be running
    store.close()
    with anyio.fail_after(10):
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(o is None or isinstance(o, StoreClosedError) for o in outcomes)
    assert any(isinstance(o, StoreClosedError) for o in outcomes)


@pytest.mark.anyio
async def test_a_namespace_searched_before_sees_later_puts_and_deletes() -> None:
    store = InMemoryStore(
        index=IndexConfig(dims=KEYWORD_DIMS, embed=keyword_embed, fields=["text"])
    )
    for n in range(3):
        await store.aput(("users", "u1"), f"k{n}", {"text": "apple"})
    await store.aput(("users", "u2"), "other", {"text": "apple"})

    async def keys() -> list[str]:
        hits = await store.asearch(("users", "u1"), query="apple", limit=10)
        return sorted(hit.key for hit in hits)

    assert await keys() == ["k0", "k1", "k2"]
    await store.aput(("users", "u1"), "k3", {"text": "apple"})
    assert await keys() == ["k0", "k1", "k2", "k3"]
    await store.adelete(("users", "u1"), "k0")
    await store.aput(("users", "u1"), "k1", {"text": "apple dog"})  # an overwrite
    assert await keys() == ["k1", "k2", "k3"]


@pytest.mark.anyio
async def test_a_write_failing_while_applied_fails_only_its_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    store = InMemoryStore()
    real_apply = store._apply

    def apply(put, value, vectors, now):  # type: ignore[no-untyped-def]
        if put.key == "bad":
            raise RuntimeError("cannot apply 'bad'")
        real_apply(put, value, vectors, now)

    monkeypatch.setattr(store, "_apply", apply)
    outcomes = await asyncio.gather(
        *(store.aput(("ns",), key, {"v": 1}) for key in ("a", "bad", "c")),
        return_exceptions=True,
    )
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], RuntimeError)
    assert [item.key for item in await store.asearch(("ns",))] in (["a", "c"], ["c", "a"])


def test_a_hit_expiring_during_a_search_costs_one_more_search_not_a_full_scan() -> None:
    clock = FakeClock()
    store = InMemoryStore(
        index=IndexConfig(dims=3, embed=lambda texts: [[1.0, 0.5, 0.0] for _ in texts]),
        clock=clock,
    )
    store.put(("ns",), "short", {"text": "x"}, ttl=1)
    for n in range(500):
        store.put(("ns",), f"k{n}", {"text": "x"}, ttl=None)
    search = store._vectors_search
    ks: list[int] = []

    def search_then_expire(job):  # type: ignore[no-untyped-def]
        ks.append(job.k)
        hits = search(job)
        clock.advance(61)  # "short" expires between finding the hits and reading them
        return hits

    store._vectors_search = search_then_expire  # type: ignore[method-assign]
    page = store.search(("ns",), query="x", limit=10)
    assert len(page) == 10 and "short" not in [item.key for item in page]
    assert ks == [10, 20], "one retry fills the page"

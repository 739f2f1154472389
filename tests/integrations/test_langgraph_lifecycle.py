"""LangGraph's own index configs and lifecycle calls on ``LangGraphStore``, on every backend.

Code moved from ``PostgresStore``/``AsyncPostgresStore`` or LangGraph's SQLite stores keeps
its ``text_fields``/``distance_type``/``ann_index_config`` keys and its ``setup()``,
``sweep_ttl()``, ``start_ttl_sweeper()`` and ``stop_ttl_sweeper()`` calls, sync or awaited.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest

pytest.importorskip("langgraph")

from tests.conftest import FakeClock
from tests.integrations.conftest import AdapterFactory

from memlane import IndexConfig
from memlane.integrations.langgraph import LangGraphStore, index_config

pytestmark = pytest.mark.anyio

T = TypeVar("T")
DIMS = 3


def raw_embed(texts: Sequence[str]) -> list[list[float]]:
    """``"x y z"`` embeds as the vector [x, y, z], norms and all."""
    return [[float(part) for part in text.split()] for text in texts]


POSTGRES_INDEX = {
    "dims": DIMS,
    "embed": raw_embed,
    "text_fields": ["text"],
    "distance_type": "inner_product",
    "ann_index_config": {"kind": "hnsw", "m": 16, "ef_construction": 64, "vector_type": "vector"},
}


async def in_thread(call: Callable[[], T]) -> T:
    """Run a sync store call off the event loop, as LangGraph runs sync nodes."""
    return await anyio.to_thread.run_sync(call)


# ---- LangGraph's index keys --------------------------------------------------------------


def test_postgres_index_config_keys_map_to_memlane() -> None:
    config = index_config(POSTGRES_INDEX)
    assert config == IndexConfig(dims=DIMS, embed=raw_embed, fields=("text",),
                                 distance="inner_product")
    assert config is not None and config.ann is None  # ann_index_config: checked, ignored
    one = index_config({"dims": DIMS, "embed": raw_embed, "text_fields": "text",
                        "distance_type": "l2", "ann_index_config": {"kind": "ivfflat",
                                                                    "nlist": 100}})
    assert one is not None and one.fields == ("text",) and one.distance == "l2"
    assert index_config({"dims": DIMS, "embed": raw_embed, "fields": "a.b"}).fields == ("a.b",)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"distance_type": "hamming"}, "distance must be one of"),
        ({"text_fields": ["a"], "fields": ["b"]}, "both text_fields"),
        ({"distance_type": "l2", "distance": "cosine"}, "both distance_type"),
        ({"ann_index_config": {"kind": "diskann"}}, "kind must be one of"),
        ({"ann_index_config": {"vector_type": "bit"}}, "vector_type must be one of"),
        ({"ann_index_config": "hnsw"}, "must be a dict"),
    ],
)
def test_bad_langgraph_index_keys_raise(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        index_config({"dims": DIMS, "embed": raw_embed, **extra})


async def test_distance_type_sets_the_scores(make_adapter: AdapterFactory) -> None:
    store = await make_adapter(index=POSTGRES_INDEX)
    assert store.index_config is not None
    assert store.index_config["distance_type"] == "inner_product"
    await store.aput(("d",), "long", {"text": "4 0 0"})
    await store.aput(("d",), "unit", {"text": "0.6 0.8 0"})
    hits = await store.asearch(("d",), query="1 1 0")
    assert [(hit.key, hit.score) for hit in hits] == [("long", 4.0), ("unit", pytest.approx(1.4))]
    l2 = await make_adapter(index={**POSTGRES_INDEX, "distance_type": "l2"})
    await l2.aput(("d",), "near", {"text": "1 1 1"})
    await l2.aput(("d",), "far", {"text": "4 0 0"})
    hits = await l2.asearch(("d",), query="1 1 0")
    far = pytest.approx(-(10**0.5))
    assert [(hit.key, hit.score) for hit in hits] == [("near", -1.0), ("far", far)]


async def test_sqlite_factory_takes_a_postgres_index_config(tmp_path: Path) -> None:
    async with LangGraphStore.sqlite(tmp_path / "m.db", index=POSTGRES_INDEX) as store:
        await store.setup()
        await store.aput(("d",), "k", {"text": "2 0 0"})
        assert [hit.score for hit in await store.asearch(("d",), query="3 0 0")] == [6.0]


# ---- setup and TTL sweeping: awaited ----------------------------------------------------


class SweepSpy:
    """Counts the store's sweeps and lets a test wait for the n-th (no sleeping)."""

    def __init__(self, adapter: LangGraphStore) -> None:
        self.count = 0
        self.done = threading.Condition()
        store = adapter.store
        sync_sweep, async_sweep = store.sweep_expired, store.asweep_expired

        def sweep() -> int:
            return self._counted(sync_sweep())

        async def asweep() -> int:
            return self._counted(await async_sweep())

        store.sweep_expired = sweep  # type: ignore[method-assign]
        store.asweep_expired = asweep  # type: ignore[method-assign]

    def _counted(self, swept: int) -> int:
        with self.done:
            self.count += 1
            self.done.notify_all()
        return swept

    def wait_for(self, count: int) -> None:
        with self.done:
            assert self.done.wait_for(lambda: self.count >= count, timeout=30)


async def test_setup_and_sweep_ttl_awaited(make_adapter: AdapterFactory, clock: FakeClock) -> None:
    store = await make_adapter(ttl={"default_ttl": 1}, clock=clock)
    assert await store.setup() is None
    store.setup()  # not awaited: nothing to do, and no "never awaited" warning
    await store.aput(("t",), "old", {"v": 1})
    await store.aput(("t",), "kept", {"v": 2}, ttl=None)
    assert await store.sweep_ttl() == 0
    clock.advance(120)
    assert await store.sweep_ttl() == 1
    assert [item.key for item in await store.asearch(("t",))] == ["kept"]


async def test_ttl_sweeper_task_sweeps_until_stopped(
    make_adapter: AdapterFactory, clock: FakeClock
) -> None:
    store = await make_adapter(ttl={"default_ttl": 1, "sweep_interval_minutes": 60}, clock=clock)
    spy = SweepSpy(store)
    await store.aput(("t",), "old", {"v": 1})
    clock.advance(120)
    task = await store.start_ttl_sweeper(sweep_interval_minutes=1e-5)  # every 0.6 ms
    assert isinstance(task, asyncio.Task)
    assert await store.start_ttl_sweeper() is task  # already running: the same task
    await in_thread(lambda: spy.wait_for(2))
    assert await store.stop_ttl_sweeper(timeout=30) is True
    assert task.done() and task.result() is None
    assert await store.aget(("t",), "old") is None and await store.sweep_ttl() == 0
    assert await store.stop_ttl_sweeper() is True  # none running


async def test_without_ttl_config_the_sweeper_is_done_at_once(make_adapter: AdapterFactory) -> None:
    store = await make_adapter()
    task = await store.start_ttl_sweeper()
    await task
    assert task.done() and await store.stop_ttl_sweeper() is True
    future = await in_thread(store.start_ttl_sweeper)
    assert isinstance(future, concurrent.futures.Future) and future.result(timeout=0) is None


# ---- setup and TTL sweeping: sync, from a worker thread ---------------------------------


async def test_setup_sweep_and_sweeper_thread_sync(
    make_adapter: AdapterFactory, clock: FakeClock
) -> None:
    store = await make_adapter(ttl={"default_ttl": 1}, clock=clock)
    spy = SweepSpy(store)

    def scenario() -> tuple[Any, ...]:
        setup = store.setup()
        store.put(("t",), "old", {"v": 1})
        clock.advance(120)
        swept = store.sweep_ttl()
        store.put(("t",), "older", {"v": 2})
        clock.advance(120)
        future = store.start_ttl_sweeper(sweep_interval_minutes=1e-5)
        again = store.start_ttl_sweeper()
        spy.wait_for(spy.count + 2)
        stopped = store.stop_ttl_sweeper(timeout=30)
        return setup, swept, future, again, stopped, store.get(("t",), "older")

    setup, swept, future, again, stopped, older = await in_thread(scenario)
    assert setup is None and swept == 1 and older is None
    assert isinstance(future, concurrent.futures.Future) and again is future
    assert stopped is True and future.result(timeout=30) is None
    assert await in_thread(lambda: store.stop_ttl_sweeper(timeout=0)) is True


async def test_cancelling_the_sweeper_future_stops_its_thread(
    make_adapter: AdapterFactory,
) -> None:
    store = await make_adapter(ttl={"default_ttl": 1})

    def scenario() -> bool:
        future = store.start_ttl_sweeper(sweep_interval_minutes=60)
        assert future.cancel()
        return bool(store.stop_ttl_sweeper(timeout=30))

    assert await in_thread(scenario) is True

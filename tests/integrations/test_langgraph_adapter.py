"""LangGraph-store behaviour through ``LangGraphStore``, on every memlane backend.

Each test talks LangGraph's API only (its ops, items and errors); memlane runs underneath.
Sync calls go through a worker thread, as LangGraph runs sync nodes and tools.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict, TypeVar

import anyio
import pytest

pytest.importorskip("langgraph")

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore as LGBaseStore
from langgraph.store.base import GetOp, ListNamespacesOp, MatchCondition, PutOp, SearchOp
from langgraph.store.base import InvalidNamespaceError as LGInvalidNamespaceError
from langgraph.store.base import Item as LGItem
from langgraph.store.base import SearchItem as LGSearchItem
from tests.conftest import KEYWORD_DIMS, FakeClock, keyword_embed
from tests.integrations.conftest import AdapterFactory, KeywordEmbeddings

import memlane
from memlane import InMemoryStore, SqliteStore
from memlane.integrations.langgraph import (
    LangGraphStore,
    from_langgraph_item,
    index_config,
    to_langgraph_item,
    ttl_config,
)

pytestmark = pytest.mark.anyio

T = TypeVar("T")
KEYWORD_INDEX = {"dims": KEYWORD_DIMS, "embed": keyword_embed, "fields": ["text"]}


async def in_thread(call: Callable[[], T]) -> T:
    """Run a sync store call off the event loop, as LangGraph runs sync nodes."""
    return await anyio.to_thread.run_sync(call)


# ---- batch and item types ----------------------------------------------------------------


async def test_batch_results_are_aligned_and_reads_see_the_state_before_the_batch(
    make_adapter: AdapterFactory,
) -> None:
    store = await make_adapter()
    ns = ("users", "u1")
    results = await store.abatch([
        PutOp(ns, "a", {"text": "first"}),
        GetOp(ns, "a"),
        PutOp(ns, "b", {"text": "second"}),
        SearchOp(("users",)),
        ListNamespacesOp(),
        PutOp(ns, "a", {"text": "later wins"}),
    ])
    assert results == [None, None, None, [], [], None]

    got, found, listed, missing = await store.abatch([
        GetOp(ns, "a"), SearchOp(("users",)), ListNamespacesOp(), GetOp(ns, "zz"),
    ])
    assert isinstance(got, LGItem) and got.value == {"text": "later wins"}
    assert got.namespace == ns and got.key == "a"
    assert got.created_at.tzinfo is not None and got.updated_at >= got.created_at
    assert [type(item) for item in found] == [LGSearchItem, LGSearchItem]
    assert {item.key for item in found} == {"a", "b"}
    assert all(item.score is None for item in found)
    assert listed == [ns]
    assert missing is None


async def test_sync_api_runs_every_op_type(make_adapter: AdapterFactory) -> None:
    store = await make_adapter()
    ns = ("docs", "d1")

    def scenario() -> tuple[Any, ...]:
        store.put(ns, "k", {"n": 1})
        store.put(ns, "k2", {"n": 2})
        item = store.get(ns, "k")
        hits = store.search(("docs",), filter={"n": 2})
        spaces = store.list_namespaces(prefix=("docs",))
        store.delete(ns, "k")
        batch = store.batch([GetOp(ns, "k"), GetOp(ns, "k2")])
        return item, hits, spaces, batch

    item, hits, spaces, batch = await in_thread(scenario)
    assert isinstance(item, LGItem) and item.value == {"n": 1}
    assert [hit.key for hit in hits] == ["k2"]
    assert spaces == [ns]
    assert batch[0] is None and batch[1].value == {"n": 2}


async def test_overwrite_keeps_created_at_and_moves_updated_at(
    make_adapter: AdapterFactory,
) -> None:
    store = await make_adapter()
    await store.aput(("a",), "k", {"v": 1})
    first = await store.aget(("a",), "k")
    await store.aput(("a",), "k", {"v": 2})
    second = await store.aget(("a",), "k")
    assert first is not None and second is not None
    assert second.value == {"v": 2}
    assert second.created_at == first.created_at
    assert second.updated_at > first.updated_at


def test_items_convert_both_ways_without_loss() -> None:
    moment = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    item = memlane.Item(value={"a": [1, {"b": None}]}, key="k", namespace=("x", "y"),
                        created_at=moment, updated_at=moment)
    hit = memlane.SearchItem(value={"a": 1}, key="k", namespace=("x",), created_at=moment,
                             updated_at=moment, score=0.5)
    assert from_langgraph_item(to_langgraph_item(item)) == item
    assert from_langgraph_item(to_langgraph_item(hit)) == hit
    converted = to_langgraph_item(hit)
    assert isinstance(converted, LGSearchItem) and converted.score == 0.5
    assert converted.dict() == {**item.dict(), "namespace": ["x"], "value": {"a": 1},
                                "score": 0.5}


# ---- namespaces and errors ---------------------------------------------------------------


@pytest.mark.parametrize("namespace", [("users", "a.b"), ("users", ""), ("langgraph", "x")])
async def test_bad_namespaces_raise_what_langgraph_users_catch(
    make_adapter: AdapterFactory, namespace: tuple[str, ...]
) -> None:
    store = await make_adapter()
    with pytest.raises(LGInvalidNamespaceError):
        await store.aput(namespace, "k", {"a": 1})  # LangGraph's own checks
    with pytest.raises(LGInvalidNamespaceError) as caught:
        await store.abatch([PutOp(namespace, "k", {"a": 1})])  # the adapter's (and memlane's)
    assert isinstance(caught.value, memlane.InvalidNamespaceError)
    with pytest.raises(LGInvalidNamespaceError):
        await in_thread(lambda: store.put(namespace, "k", {"a": 1}))
    assert await store.alist_namespaces() == []


async def test_values_that_are_not_json_objects_are_refused(make_adapter: AdapterFactory) -> None:
    store = await make_adapter()
    with pytest.raises(ValueError, match="NaN"):
        await store.aput(("a",), "k", {"x": float("nan")})
    with pytest.raises(TypeError):
        await store.aput(("a",), "k", {"when": datetime.now(UTC)})
    with pytest.raises(ValueError, match=r"\$regex"):
        await store.asearch(("a",), filter={"n": {"$regex": "x"}})


async def test_a_closed_store_raises_store_closed(make_adapter: AdapterFactory) -> None:
    store = await make_adapter()
    await store.store.aclose()
    with pytest.raises(memlane.StoreClosedError):
        await store.aget(("a",), "k")


# ---- listing -----------------------------------------------------------------------------


async def test_list_namespaces_prefix_suffix_wildcards_depth_and_paging(
    make_adapter: AdapterFactory,
) -> None:
    store = await make_adapter()
    spaces = [
        ("users", "u1", "memories"), ("users", "u1", "prefs"), ("users", "u2", "memories"),
        ("teams", "t1", "memories"), ("usersx", "u9"),
    ]
    await store.abatch([PutOp(ns, "k", {"v": 1}) for ns in spaces])
    assert await store.alist_namespaces() == sorted(spaces)
    assert await store.alist_namespaces(prefix=("users",)) == sorted(spaces[:3])
    assert await store.alist_namespaces(suffix=("memories",)) == sorted(
        [spaces[0], spaces[2], spaces[3]]
    )
    assert await store.alist_namespaces(prefix=("users", "*", "memories")) == [
        spaces[0], spaces[2]
    ]
    assert await store.alist_namespaces(max_depth=1) == [("teams",), ("users",), ("usersx",)]
    assert await store.alist_namespaces(prefix=("users",), max_depth=2) == [
        ("users", "u1"), ("users", "u2")
    ]
    assert await store.alist_namespaces(limit=2, offset=1) == sorted(spaces)[1:3]
    both = ListNamespacesOp(
        match_conditions=(MatchCondition("prefix", ("users",)),
                          MatchCondition("suffix", ("prefs",))),
    )
    assert (await store.abatch([both]))[0] == [("users", "u1", "prefs")]
    await store.adelete(("usersx", "u9"), "k")
    assert ("usersx", "u9") not in await store.alist_namespaces()


# ---- search and filters ------------------------------------------------------------------


async def test_filters_and_namespace_scope(make_adapter: AdapterFactory) -> None:
    store = await make_adapter()
    docs = {
        "a": {"kind": "note", "n": 1, "tags": ["x", "y"], "profile": {"lang": "en"}},
        "b": {"kind": "note", "n": 5, "tags": ["y"], "profile": {"lang": "fr"}},
        "c": {"kind": "task", "n": 10, "tags": [], "profile": {"lang": "en"}},
    }
    for key, value in docs.items():
        await store.aput(("docs",), key, value)
    await store.aput(("docsx",), "d", {"kind": "note", "n": 1})

    async def keys(**kwargs: Any) -> list[str]:
        return sorted(item.key for item in await store.asearch(("docs",), **kwargs))

    assert await keys() == ["a", "b", "c"]
    assert await keys(filter={"kind": "note"}) == ["a", "b"]
    assert await keys(filter={"n": {"$gte": 5}}) == ["b", "c"]
    assert await keys(filter={"n": {"$gt": 1, "$lt": 10}}) == ["b"]
    assert await keys(filter={"n": {"$ne": 5}}) == ["a", "c"]
    assert await keys(filter={"profile.lang": "en"}) == ["a", "c"]
    assert await keys(filter={"tags": "x"}) == ["a"]
    assert await keys(filter={"kind": "note", "profile.lang": "fr"}) == ["b"]
    assert await keys(filter={"n": 10.0}) == ["c"]
    assert await keys(filter={"n": "10"}) == []
    assert [i.key for i in await store.asearch(("docs",), limit=1, offset=1)] == ["b"]


async def test_search_without_query_is_newest_first(make_adapter: AdapterFactory) -> None:
    store = await make_adapter()
    for key in ["first", "second", "third"]:
        await store.aput(("log",), key, {"v": key})
    assert [item.key for item in await store.asearch(("log",))] == ["third", "second", "first"]


# ---- vector search -----------------------------------------------------------------------


async def test_vector_search_with_langchain_embeddings_in_langgraph_index_shape(
    make_adapter: AdapterFactory,
) -> None:
    index = {"dims": KEYWORD_DIMS, "embed": KeywordEmbeddings.as_langchain(), "fields": ["text"]}
    store = await make_adapter(index=index)
    assert store.index_config is not None and store.index_config["dims"] == KEYWORD_DIMS
    await store.aput(("m",), "jazz", {"text": "jazz music", "lang": "en"})
    await store.aput(("m",), "rock", {"text": "rock music", "lang": "fr"})
    await store.aput(("m",), "food", {"text": "pizza food", "lang": "en"})
    await store.aput(("m",), "hidden", {"text": "jazz jazz jazz"}, index=False)
    await store.aput(("m",), "other", {"text": "food", "alt": "jazz"}, index=["alt"])

    hits = await store.asearch(("m",), query="jazz", limit=3)
    assert {hit.key for hit in hits[:2]} == {"jazz", "other"}
    assert "hidden" not in {hit.key for hit in hits}
    assert all(isinstance(hit, LGSearchItem) and hit.score is not None for hit in hits)
    assert hits[0].score >= hits[-1].score  # type: ignore[operator]

    filtered = await store.asearch(("m",), query="music", filter={"lang": "fr"})
    assert [hit.key for hit in filtered] == ["rock"]
    sync_hits = await in_thread(lambda: store.search(("m",), query="pizza", limit=1))
    assert [hit.key for hit in sync_hits] == ["food"]


async def test_provider_model_strings_resolve_through_langchain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import langchain.embeddings

    seen: list[str] = []

    def fake_init(model: str, **kwargs: Any) -> Any:
        seen.append(model)
        return KeywordEmbeddings.as_langchain()

    monkeypatch.setattr(langchain.embeddings, "init_embeddings", fake_init)
    config = index_config({"dims": KEYWORD_DIMS, "embed": "acme:keywords-1"})
    assert seen == ["acme:keywords-1"]
    assert config is not None and config.fields == ("$",)
    store = LangGraphStore(InMemoryStore(index=config))
    await store.aput(("m",), "k", {"text": "travel to tokyo"})
    assert (await store.asearch(("m",), query="tokyo"))[0].key == "k"

    monkeypatch.undo()
    with pytest.raises(ValueError, match="nosuchprovider"):
        index_config({"dims": 8, "embed": "nosuchprovider:model"})


# ---- TTL ---------------------------------------------------------------------------------


async def test_ttl_expiry_default_and_refresh(
    make_adapter: AdapterFactory, clock: FakeClock
) -> None:
    store = await make_adapter(ttl={"default_ttl": 10, "refresh_on_read": True,
                                    "omit_expired": True}, clock=clock)
    assert store.supports_ttl and store.ttl_config is not None
    assert store.ttl_config["default_ttl"] == 10
    await store.aput(("t",), "short", {"v": 1}, ttl=1)
    await store.aput(("t",), "default", {"v": 2})  # the store's default_ttl (10 minutes)
    await store.aput(("t",), "forever", {"v": 3}, ttl=None)
    clock.advance(2 * 60)
    assert await store.aget(("t",), "short") is None
    assert await store.aget(("t",), "default") is not None  # read refreshes: now + 10 min
    await store.adelete(("t",), "absent")  # SqliteStore commits refreshes with the next write
    clock.advance(9 * 60)
    assert (await store.aget(("t",), "default", refresh_ttl=False)) is not None
    clock.advance(2 * 60)
    assert await store.aget(("t",), "default") is None
    assert [item.key for item in await store.asearch(("t",))] == ["forever"]
    assert await store.alist_namespaces() == [("t",)]


async def test_sync_put_without_ttl_uses_the_store_default(
    make_adapter: AdapterFactory, clock: FakeClock
) -> None:
    store = await make_adapter(ttl={"default_ttl": 1}, clock=clock)
    await in_thread(lambda: store.put(("t",), "k", {"v": 1}))
    clock.advance(61)
    assert await store.aget(("t",), "k") is None


def test_ttl_config_accepts_langgraph_shape() -> None:
    config = ttl_config({"default_ttl": 5, "refresh_on_read": False, "omit_expired": False,
                         "sweep_interval_minutes": 3})
    assert config == memlane.TTLConfig(default_ttl=5, refresh_on_read=False,
                                       sweep_interval_minutes=3)
    assert ttl_config(None) is None


# ---- LangGraph graphs on the adapter -----------------------------------------------------


class CountState(TypedDict):
    user: str
    visits: int


@dataclass
class GraphContext:
    app: str


def _count_visit(state: CountState, runtime: Runtime[GraphContext]) -> dict[str, int]:
    assert runtime.store is not None
    ns = (runtime.context.app, state["user"])
    item = runtime.store.get(ns, "visits")
    visits = (item.value["n"] if item else 0) + 1
    runtime.store.put(ns, "visits", {"n": visits})
    return {"visits": visits}


async def _acount_visit(state: CountState, runtime: Runtime[GraphContext]) -> dict[str, int]:
    assert runtime.store is not None
    ns = (runtime.context.app, state["user"])
    item = await runtime.store.aget(ns, "visits")
    visits = (item.value["n"] if item else 0) + 1
    await runtime.store.aput(ns, "visits", {"n": visits})
    return {"visits": visits}


def _graph(node: Any, store: LGBaseStore) -> Any:
    builder = StateGraph(CountState, context_schema=GraphContext)
    builder.add_node("count", node)
    builder.add_edge(START, "count")
    builder.add_edge("count", END)
    return builder.compile(store=store)


async def test_state_graph_compiled_with_the_adapter(make_adapter: AdapterFactory) -> None:
    store = await make_adapter()
    async_graph = _graph(_acount_visit, store)
    sync_graph = _graph(_count_visit, store)
    context = GraphContext(app="demo")
    first = await async_graph.ainvoke({"user": "u1", "visits": 0}, context=context)
    second = await sync_graph.ainvoke({"user": "u1", "visits": 0}, context=context)
    assert (first["visits"], second["visits"]) == (1, 2)
    item = await store.store.aget(("demo", "u1"), "visits")  # memlane underneath
    assert item is not None and item.value == {"n": 2}


def test_sync_graph_invoke_on_both_stores(tmp_path: Any) -> None:
    context = GraphContext(app="demo")
    memory = LangGraphStore.in_memory()
    assert _graph(_count_visit, memory).invoke({"user": "u", "visits": 0},
                                               context=context)["visits"] == 1
    with LangGraphStore.sqlite_sync(tmp_path / "graph.db") as durable:
        graph = _graph(_count_visit, durable)
        for expected in (1, 2, 3):
            result = graph.invoke({"user": "u", "visits": 0}, context=context)
            assert result["visits"] == expected
        assert isinstance(durable.store, SqliteStore)


async def test_sqlite_factory_accepts_langgraph_config_shapes(tmp_path: Any) -> None:
    async with LangGraphStore.sqlite(tmp_path / "s.db", index=KEYWORD_INDEX,
                                     ttl={"default_ttl": 60, "omit_expired": True}) as store:
        await store.aput(("p",), "k", {"text": "paris travel"})
        assert (await store.asearch(("p",), query="paris"))[0].key == "k"
        assert store.ttl_config is not None and store.ttl_config["default_ttl"] == 60

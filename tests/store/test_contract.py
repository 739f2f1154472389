"""CONTRACT.md section 2, row by row, against every backend (the ``make_store`` fixture)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import UTC
from typing import Any

import anyio
import anyio.abc
import pytest
from tests.conftest import KEYWORD_DIMS, FakeClock, StoreFactory, keyword_embed

from memlane import (
    GetOp,
    IndexConfig,
    InvalidNamespaceError,
    ListNamespacesOp,
    MatchCondition,
    PutOp,
    SearchOp,
    StoreClosedError,
    TTLConfig,
)
from memlane.store.base import BaseStore

pytestmark = pytest.mark.anyio

KEYWORD_INDEX = IndexConfig(dims=KEYWORD_DIMS, embed=keyword_embed, fields=["text"])


# ---- namespace ---------------------------------------------------------------------------

BAD_NAMESPACES: list[tuple[Any, str]] = [
    ((), "empty"),
    (("users", ""), "empty label"),
    (("users", "a.b"), "'a.b'"),
    (("users", 7), "7"),
    (("langgraph", "x"), "'langgraph'"),
    ("users", "'users'"),
]


@pytest.mark.parametrize(("namespace", "named"), BAD_NAMESPACES)
async def test_every_write_path_rejects_a_bad_namespace_naming_it(
    make_store: StoreFactory, namespace: Any, named: str
) -> None:
    store = await make_store()
    for attempt in (
        lambda: store.aput(namespace, "k", {"a": 1}),
        lambda: store.abatch([PutOp(namespace, "k", {"a": 1})]),
    ):
        with pytest.raises(InvalidNamespaceError, match=re.escape(named)):
            await attempt()
    assert issubclass(InvalidNamespaceError, ValueError)
    assert await store.alist_namespaces() == []


async def test_sync_put_rejects_a_bad_namespace(make_store: StoreFactory) -> None:
    store = await make_store()

    def put_from_a_thread() -> None:
        store.put(("a.b",), "k", {"a": 1})

    with pytest.raises(InvalidNamespaceError, match=r"'a\.b'"):
        await anyio.to_thread.run_sync(put_from_a_thread)


# ---- key ---------------------------------------------------------------------------------

async def test_int_key_is_converted_and_empty_or_none_key_raises(
    make_store: StoreFactory,
) -> None:
    store = await make_store()
    await store.aput(("ns",), 5, {"n": 5})  # type: ignore[arg-type]
    item = await store.aget(("ns",), "5")
    assert item is not None and item.key == "5"
    for bad in ("", None, 1.5, True):
        with pytest.raises(ValueError, match="key"):
            await store.aput(("ns",), bad, {"a": 1})  # type: ignore[arg-type]


async def test_keys_are_unique_within_a_namespace_only(make_store: StoreFactory) -> None:
    store = await make_store()
    await store.aput(("a",), "k", {"v": "a"})
    await store.aput(("b",), "k", {"v": "b"})
    first, second = await store.aget(("a",), "k"), await store.aget(("b",), "k")
    assert first is not None and first.value == {"v": "a"}
    assert second is not None and second.value == {"v": "b"}


# ---- value -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("value", "error", "named"),
    [
        ([1, 2], TypeError, "dict"),
        ("text", TypeError, "dict"),
        ({"x": math.nan}, ValueError, "NaN"),
        ({"x": [1, math.inf]}, ValueError, "inf"),
        ({"x": {1: "a"}}, TypeError, "1"),
        ({"x": object()}, TypeError, "object"),
        ({"x": {"y"}}, TypeError, "set"),
        ({"x": 2**70}, ValueError, "JSON"),
    ],
)
async def test_bad_values_raise_at_the_call_site_and_store_nothing(
    make_store: StoreFactory, value: Any, error: type[Exception], named: str
) -> None:
    store = await make_store()
    with pytest.raises(error, match=named):
        await store.aput(("ns",), "k", value)
    with pytest.raises(error):
        await store.abatch([PutOp(("ns",), "ok", {"fine": 1}), PutOp(("ns",), "k", value)])
    assert await store.aget(("ns",), "k") is None
    assert await store.aget(("ns",), "ok") is None, "a batch with a bad op applies nothing"


async def test_the_store_keeps_copies_in_and_out(make_store: StoreFactory) -> None:
    store = await make_store()
    value: dict[str, Any] = {"list": [1, 2], "nested": {"a": "b"}}
    await store.aput(("ns",), "k", value)
    value["list"].append(3)
    value["nested"]["a"] = "changed"
    item = await store.aget(("ns",), "k")
    assert item is not None and item.value == {"list": [1, 2], "nested": {"a": "b"}}
    item.value["list"].append(99)
    again = await store.aget(("ns",), "k")
    assert again is not None and again.value == {"list": [1, 2], "nested": {"a": "b"}}
    found = await store.asearch(("ns",))
    found[0].value["nested"]["a"] = "mutated"
    final = await store.aget(("ns",), "k")
    assert final is not None and final.value["nested"] == {"a": "b"}


async def test_values_round_trip_json_types_exactly(make_store: StoreFactory) -> None:
    store = await make_store()
    value = {"s": "é ✓ \u0001", "i": -(2**62), "f": 0.1, "b": False, "n": None, "l": [[], {}]}
    await store.aput(("ns",), "k", value)
    item = await store.aget(("ns",), "k")
    assert item is not None and item.value == value
    assert list(item.value) == list(value), "key order is preserved"


# ---- put ---------------------------------------------------------------------------------

async def test_put_replaces_keeps_created_at_and_advances_updated_at(
    make_store: StoreFactory,
) -> None:
    store = await make_store()
    await store.aput(("ns",), "k", {"a": 1, "b": 2})
    first = await store.aget(("ns",), "k")
    await store.aput(("ns",), "k", {"c": 3})
    second = await store.aget(("ns",), "k")
    assert first is not None and second is not None
    assert second.value == {"c": 3}, "put replaces the whole value, no merge"
    assert second.created_at == first.created_at
    assert second.updated_at > first.updated_at
    assert second.updated_at.tzinfo == UTC and first.created_at.tzinfo == UTC


async def test_updated_at_is_strictly_increasing_even_within_one_microsecond(
    make_store: StoreFactory, clock: FakeClock
) -> None:
    store = await make_store(clock=clock)  # time stands still
    stamps = []
    for n in range(5):
        await store.aput(("ns",), "k", {"n": n})
        item = await store.aget(("ns",), "k")
        assert item is not None
        stamps.append(item.updated_at)
    assert stamps == sorted(stamps) and len(set(stamps)) == 5


async def test_item_dict_form(make_store: StoreFactory) -> None:
    store = await make_store()
    await store.aput(("a", "b"), "k", {"x": 1})
    item = await store.aget(("a", "b"), "k")
    assert item is not None
    form = item.dict()
    assert form["namespace"] == ["a", "b"] and form["key"] == "k" and form["value"] == {"x": 1}
    assert form["created_at"] == item.created_at.isoformat()


# ---- delete ------------------------------------------------------------------------------

async def test_delete_by_none_or_delete_and_missing_is_a_no_op(make_store: StoreFactory) -> None:
    store = await make_store()
    await store.aput(("ns",), "a", {"x": 1})
    await store.aput(("ns",), "b", {"x": 2})
    await store.aput(("ns",), "a", None)
    await store.adelete(("ns",), "b")
    await store.adelete(("ns",), "never-existed")
    await store.adelete(("other",), "never-existed")
    assert await store.aget(("ns",), "a") is None
    assert await store.aget(("ns",), "b") is None
    assert await store.alist_namespaces() == [], "no ghost namespaces after deletes"


async def test_delete_removes_the_items_vectors(make_store: StoreFactory) -> None:
    store = await make_store(index=KEYWORD_INDEX)
    await store.aput(("ns",), "fruit", {"text": "apple banana"})
    await store.aput(("ns",), "pet", {"text": "dog cat"})
    await store.adelete(("ns",), "fruit")
    hits = await store.asearch(("ns",), query="apple", limit=10)
    assert [hit.key for hit in hits] == ["pet"]


# ---- batch -------------------------------------------------------------------------------

async def test_batch_results_align_and_reads_see_the_state_before_the_writes(
    make_store: StoreFactory,
) -> None:
    store = await make_store()
    await store.aput(("ns",), "k", {"v": "old"})
    results = await store.abatch(
        [
            GetOp(("ns",), "k"),
            PutOp(("ns",), "k", {"v": "new"}),
            GetOp(("ns",), "k"),
            SearchOp(("ns",)),
            ListNamespacesOp(),
            PutOp(("fresh",), "x", {"v": 1}),
            ListNamespacesOp(),
        ]
    )
    assert len(results) == 7
    assert results[0] is not None and results[0].value == {"v": "old"}  # type: ignore[union-attr]
    assert results[1] is None
    assert results[2] is not None and results[2].value == {"v": "old"}  # type: ignore[union-attr]
    assert [item.value for item in results[3]] == [{"v": "old"}]  # type: ignore[union-attr]
    assert results[4] == [("ns",)] and results[6] == [("ns",)]
    item = await store.aget(("ns",), "k")
    assert item is not None and item.value == {"v": "new"}
    assert await store.alist_namespaces() == [("fresh",), ("ns",)]


async def test_two_puts_to_one_key_in_a_batch_the_later_wins(make_store: StoreFactory) -> None:
    store = await make_store()
    await store.abatch(
        [
            PutOp(("ns",), "k", {"v": 1}),
            PutOp(("ns",), "k", {"v": 2}),
            PutOp(("ns",), "gone", {"v": 1}),
            PutOp(("ns",), "gone", None),
        ]
    )
    item = await store.aget(("ns",), "k")
    assert item is not None and item.value == {"v": 2}
    assert await store.aget(("ns",), "gone") is None


async def test_batch_rejects_an_unknown_op_and_applies_nothing(make_store: StoreFactory) -> None:
    store = await make_store()
    with pytest.raises(TypeError, match="unknown store operation"):
        await store.abatch([PutOp(("ns",), "k", {"v": 1}), ("not", "an", "op")])  # type: ignore[list-item]
    assert await store.aget(("ns",), "k") is None


# ---- search scope ------------------------------------------------------------------------

async def test_search_prefix_matches_whole_labels_literally(make_store: StoreFactory) -> None:
    store = await make_store()
    for namespace in [("a",), ("a", "b"), ("ab",), ("A",), ("*",), ("x", "a")]:
        await store.aput(namespace, "k", {"ns": "/".join(namespace)})

    async def found(prefix: tuple[str, ...]) -> set[str]:
        return {item.value["ns"] for item in await store.asearch(prefix, limit=100)}

    assert await found(("a",)) == {"a", "a/b"}
    assert await found(()) == {"a", "a/b", "ab", "A", "*", "x/a"}
    assert await found(("a", "b")) == {"a/b"}
    assert await found(("*",)) == {"*"}, "labels are literal, no wildcards"
    assert await found(("A",)) == {"A"}, "case-sensitive"
    assert await found(("a", "b", "c")) == set()


# ---- filter ------------------------------------------------------------------------------

FILTER_DOCS: dict[str, dict[str, Any]] = {
    "ann": {"name": "ann", "age": 30, "tags": ["x", "y"], "profile": {"lang": "en"}},
    "bob": {"name": "bob", "age": 30.0, "tags": ["y"], "profile": {"lang": "fr"}, "vip": True},
    "cid": {"name": "cid", "age": "30", "tags": [], "profile": None},
    "dee": {"name": "dee", "age": 45, "vip": False, "score": 1},
}


@pytest.mark.parametrize(
    ("filter_", "expected"),
    [
        ({"profile.lang": "en"}, {"ann"}),
        ({"age": 30}, {"ann", "bob"}),
        ({"age": "30"}, {"cid"}),
        ({"tags": "x"}, {"ann"}),
        ({"tags": ["y"]}, {"bob"}),
        ({"profile": {"lang": "fr"}}, {"bob"}),
        ({"vip": None}, {"ann", "cid"}),
        ({"profile": None}, {"cid", "dee"}),
        ({"vip": True}, {"bob"}),
        ({"score": True}, set()),
        ({"age": {"$gte": 30, "$lt": 45}}, {"ann", "bob"}),
        ({"age": {"$gt": "20"}}, {"cid"}),
        ({"name": {"$in": ["ann", "dee"]}}, {"ann", "dee"}),
        ({"name": {"$nin": ["ann", "dee"]}}, {"bob", "cid"}),
        ({"vip": {"$exists": True}}, {"bob", "dee"}),
        ({"tags": {"$contains": ["x", "y"]}}, {"ann"}),
        ({"name": {"$ne": "ann"}}, {"bob", "cid", "dee"}),
        ({"$or": [{"name": "ann"}, {"age": 45}]}, {"ann", "dee"}),
        ({"$and": [{"age": 30}, {"tags": "y"}]}, {"ann", "bob"}),
        ({"$not": {"vip": True}}, {"ann", "cid", "dee"}),
        ({"age": 30, "profile.lang": "fr"}, {"bob"}),
    ],
)
async def test_filters_follow_one_language_on_every_backend(
    make_store: StoreFactory, filter_: dict[str, Any], expected: set[str]
) -> None:
    store = await make_store()
    for key, value in FILTER_DOCS.items():
        await store.aput(("people",), key, value)
    found = await store.asearch(("people",), filter=filter_, limit=100)
    assert {item.key for item in found} == expected


@pytest.mark.parametrize(
    ("filter_", "named"),
    [({"a": {"$regex": "x"}}, r"\$regex"), ({"a": {"$in": 3}}, r"\$in"), ([1], "filter")],
)
async def test_malformed_filters_raise_naming_the_problem(
    make_store: StoreFactory, filter_: Any, named: str
) -> None:
    store = await make_store()
    with pytest.raises(ValueError, match=named):
        await store.asearch(("ns",), filter=filter_)


# ---- search without a query --------------------------------------------------------------

async def test_search_without_query_is_newest_first_with_no_score(
    make_store: StoreFactory,
) -> None:
    store = await make_store()
    for key in ["c", "a", "b"]:
        await store.aput(("ns",), key, {"k": key})
    await store.aput(("ns",), "c", {"k": "c", "touched": True})
    found = await store.asearch(("ns",))
    assert [item.key for item in found] == ["c", "b", "a"]
    assert all(item.score is None for item in found)
    page = await store.asearch(("ns",), limit=1, offset=1)
    assert [item.key for item in page] == ["b"]
    assert await store.asearch(("ns",), limit=0) == []


async def test_an_empty_query_is_no_query(make_store: StoreFactory) -> None:
    """As on every LangGraph backend: ``query=""`` is a filter search and embeds nothing
    (a real embedding API may reject empty input)."""
    calls: list[list[str]] = []

    def embed(texts: list[str]) -> list[list[float]]:
        calls.append(list(texts))
        return keyword_embed(texts)

    store = await make_store(index=IndexConfig(dims=KEYWORD_DIMS, embed=embed, fields=["text"]))
    for key, text in [("a", "apple"), ("b", "dog"), ("c", "apple pie")]:
        await store.aput(("ns",), key, {"text": text, "fruit": text != "dog"})
    calls.clear()
    found = await store.asearch(("ns",), query="")
    assert [item.key for item in found] == ["c", "b", "a"]
    assert all(item.score is None for item in found)
    filtered = await store.asearch(("ns",), query="", filter={"fruit": True})
    assert [item.key for item in filtered] == ["c", "a"]
    assert calls == []


# ---- search with a query -----------------------------------------------------------------

async def test_query_ranks_by_cosine_similarity(make_store: StoreFactory) -> None:
    store = await make_store(index=KEYWORD_INDEX)
    await store.aput(("docs",), "fruit", {"text": "apple banana cherry"})
    await store.aput(("docs",), "pets", {"text": "dog cat"})
    await store.aput(("docs",), "mixed", {"text": "apple dog"})
    hits = await store.asearch(("docs",), query="apple")
    assert [hit.key for hit in hits] == ["mixed", "fruit", "pets"]
    assert hits[0].score is not None and hits[1].score is not None and hits[2].score is not None
    assert hits[0].score > hits[1].score > hits[2].score
    assert hits[0].score == pytest.approx(1 / math.sqrt(2), abs=0.01)


async def test_an_items_score_is_its_best_vector_and_paging_counts_items(
    make_store: StoreFactory,
) -> None:
    store = await make_store(
        index=IndexConfig(dims=KEYWORD_DIMS, embed=keyword_embed, fields=["notes[*]"])
    )
    await store.aput(("ns",), "many", {"notes": ["dog", "cat", "apple"]})
    await store.aput(("ns",), "one", {"notes": ["apple banana"]})
    await store.aput(("ns",), "none", {"notes": ["rust"]})
    hits = await store.asearch(("ns",), query="apple", limit=10)
    assert [hit.key for hit in hits] == ["many", "one", "none"], "distinct items, max-pooled"
    page = await store.asearch(("ns",), query="apple", limit=1, offset=1)
    assert [hit.key for hit in page] == ["one"]


async def test_query_search_pages_are_full_at_any_filter_selectivity(
    make_store: StoreFactory,
) -> None:
    store = await make_store(index=KEYWORD_INDEX)
    ops = [
        PutOp(("bulk", str(n % 7)), f"k{n}", {"text": "apple dog", "rare": n % 50 == 0, "n": n})
        for n in range(300)
    ]
    await store.abatch(ops)
    rare = await store.asearch(("bulk",), query="apple", filter={"rare": True}, limit=10)
    assert sorted(hit.value["n"] for hit in rare) == [0, 50, 100, 150, 200, 250]
    broad = await store.asearch(("bulk",), query="apple", filter={"rare": False}, limit=25,
                                offset=250)
    assert len(broad) == 25
    narrow = await store.asearch(("bulk", "3"), query="apple", limit=100)
    assert len(narrow) == len([n for n in range(300) if n % 7 == 3])


async def test_items_without_vectors_are_not_returned_by_a_query(
    make_store: StoreFactory,
) -> None:
    store = await make_store(index=KEYWORD_INDEX)
    await store.aput(("ns",), "indexed", {"text": "apple"})
    await store.aput(("ns",), "skipped", {"text": "apple"}, index=False)
    await store.aput(("ns",), "no-field", {"other": "apple"})
    hits = await store.asearch(("ns",), query="apple")
    assert [hit.key for hit in hits] == ["indexed"]
    assert {item.key for item in await store.asearch(("ns",))} == {
        "indexed", "skipped", "no-field"
    }


async def test_without_an_index_a_query_is_ignored(make_store: StoreFactory) -> None:
    store = await make_store()
    await store.aput(("ns",), "a", {"text": "apple"})
    await store.aput(("ns",), "b", {"text": "dog"})
    hits = await store.asearch(("ns",), query="apple", filter={"text": "dog"})
    assert [(hit.key, hit.score) for hit in hits] == [("b", None)]


# ---- index fields ------------------------------------------------------------------------

async def test_per_put_index_paths_override_the_fields(make_store: StoreFactory) -> None:
    store = await make_store(index=KEYWORD_INDEX)
    await store.aput(("ns",), "by-title", {"text": "dog", "title": "apple"}, index=["title"])
    await store.aput(("ns",), "whole", {"text": "dog", "title": "apple"}, index=["$"])
    await store.aput(("ns",), "default", {"text": "dog", "title": "apple"})
    hits = {hit.key: hit.score for hit in await store.asearch(("ns",), query="apple")}
    assert hits["by-title"] == pytest.approx(1.0, abs=0.01)
    assert hits["default"] is not None and hits["default"] < 0.1
    assert hits["whole"] is not None and 0.3 < hits["whole"] < 0.95


async def test_overwriting_replaces_all_vectors(make_store: StoreFactory) -> None:
    store = await make_store(
        index=IndexConfig(dims=KEYWORD_DIMS, embed=keyword_embed, fields=["notes[*]"])
    )
    await store.aput(("ns",), "k", {"notes": ["apple", "banana", "cherry"]})
    await store.aput(("ns",), "other", {"notes": ["dog"]})
    await store.aput(("ns",), "k", {"notes": ["rust"]})
    hits = {hit.key: hit.score for hit in await store.asearch(("ns",), query="apple banana")}
    assert hits["k"] is not None and hits["k"] < 0.1, "no stale vector survives an overwrite"
    await store.aput(("ns",), "k", {"notes": ["apple"]}, index=False)
    assert [hit.key for hit in await store.asearch(("ns",), query="apple")] == ["other"]


async def test_index_config_as_a_plain_dict(make_store: StoreFactory) -> None:
    store = await make_store(index={"dims": KEYWORD_DIMS, "embed": keyword_embed,
                                    "fields": ["text"]})
    await store.aput(("ns",), "k", {"text": "jazz"})
    hits = await store.asearch(("ns",), query="jazz")
    assert hits[0].score == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"dims": 0, "embed": keyword_embed}, "dims"),
        ({"dims": 3}, "embed"),
        ({"dims": 3, "embed": keyword_embed, "fields": "text"}, "fields"),
        ({"dims": 3, "embed": keyword_embed, "fields": ["a..b"]}, "a..b"),
        ({"dims": 3, "embed": keyword_embed, "colour": 1}, "colour"),
    ],
)
async def test_a_bad_index_config_is_refused(
    make_store: StoreFactory, config: dict[str, Any], named: str
) -> None:
    with pytest.raises((ValueError, TypeError), match=named):
        await make_store(index=config)


async def test_a_bad_per_put_index_is_refused(make_store: StoreFactory) -> None:
    store = await make_store(index=KEYWORD_INDEX)
    with pytest.raises(ValueError, match=r"a\[x\]"):
        await store.aput(("ns",), "k", {"a": [1]}, index=["a[x]"])
    with pytest.raises(ValueError, match="index"):
        await store.aput(("ns",), "k", {"a": [1]}, index="a")  # type: ignore[arg-type]


# ---- embeddings --------------------------------------------------------------------------

class CountingEmbed:
    def __init__(self, dims: int = KEYWORD_DIMS) -> None:
        self.calls: list[int] = []
        self.dims = dims

    def __call__(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(len(texts))
        return keyword_embed(texts)


async def test_one_embed_call_per_batch(make_store: StoreFactory) -> None:
    embed = CountingEmbed()
    store = await make_store(index=IndexConfig(dims=KEYWORD_DIMS, embed=embed, fields=["text"]))
    await store.abatch([PutOp(("ns",), f"k{n}", {"text": "apple"}) for n in range(20)])
    assert embed.calls == [20]


async def test_concurrent_puts_all_land_and_share_embed_calls(make_store: StoreFactory) -> None:
    embed = CountingEmbed()
    store = await make_store(index=IndexConfig(dims=KEYWORD_DIMS, embed=embed, fields=["text"]))

    async def writer(task: int) -> None:
        for n in range(5):
            await store.aput(("w", str(task % 4)), f"{task}-{n}", {"text": "apple", "n": n})

    async with anyio.create_task_group() as tasks:
        for task in range(100):
            tasks.start_soon(writer, task)
    assert sum(embed.calls) == 500
    assert len(embed.calls) <= 500 / 5, "puts arriving together are embedded together"
    assert len(await store.asearch(("w",), query="apple", limit=1000)) == 500
    item = await store.aget(("w", "3"), "99-4")
    assert item is not None and item.value == {"text": "apple", "n": 4}


async def test_an_embed_failure_among_concurrent_puts_fails_only_its_caller(
    make_store: StoreFactory,
) -> None:
    calls: list[int] = []

    def embed(texts: Sequence[str]) -> list[list[float]]:
        calls.append(len(texts))
        if "poison" in texts:
            raise RuntimeError("the model refused 'poison'")
        return keyword_embed(texts)

    store = await make_store(index=IndexConfig(dims=KEYWORD_DIMS, embed=embed, fields=["text"]))
    outcomes: dict[str, BaseException | None] = {}

    async def put(key: str, text: str) -> None:
        try:
            await store.aput(("ns",), key, {"text": text})
            outcomes[key] = None
        except Exception as exc:
            outcomes[key] = exc

    async with anyio.create_task_group() as tasks:
        for n in range(50):
            tasks.start_soon(put, f"k{n}", "poison" if n == 25 else "apple")
    assert isinstance(outcomes.pop("k25"), RuntimeError)
    assert all(outcome is None for outcome in outcomes.values())
    assert await store.aget(("ns",), "k25") is None
    assert len(await store.asearch(("ns",), query="apple", limit=100)) == 49
    assert max(calls) > 1, "the healthy puts were embedded together"
    # the poisoned batch was halved to find the culprit, not retried put by put
    embed_calls = len(calls) - 1  # the search's query
    assert embed_calls <= 2 + 2 * 6, calls


async def test_cancelled_writers_leave_the_store_working(make_store: StoreFactory) -> None:
    store = await make_store(index=KEYWORD_INDEX)
    acknowledged: list[str] = []

    async def put(key: str, tasks: anyio.abc.TaskGroup) -> None:
        await store.aput(("ns",), key, {"text": "apple"})
        acknowledged.append(key)
        if len(acknowledged) == 100:  # cancel the rest while they wait for their writes
            tasks.cancel_scope.cancel()

    async with anyio.create_task_group() as tasks:
        for n in range(2_000):
            tasks.start_soon(put, f"k{n}", tasks)
    assert 100 <= len(acknowledged) < 2_000
    found = {item.key for item in await store.asearch(("ns",), limit=2_000)}
    assert found >= set(acknowledged)  # an acknowledged write stands
    await store.aput(("ns",), "after", {"text": "dog"})
    hits = await store.asearch(("ns",), query="dog", limit=1)
    assert [hit.key for hit in hits] == ["after"]


@pytest.mark.parametrize(
    ("bad_vector", "named"),
    [
        ([1.0, 2.0], "expected 3 numbers, got 2"),
        ([math.nan] * 3, "NaN|nan|finite"),
        ([1.0, math.inf, 0.0], "inf|finite"),
    ],
)
async def test_a_bad_embedding_fails_the_put_and_applies_nothing(
    make_store: StoreFactory, bad_vector: list[float], named: str
) -> None:
    def embed(texts: Sequence[str]) -> list[list[float]]:
        return [bad_vector if text == "poison" else [1.0, 0.0, 0.0] for text in texts]

    store = await make_store(index=IndexConfig(dims=3, embed=embed, fields=["text"]))
    with pytest.raises(ValueError, match=named):
        await store.abatch(
            [PutOp(("ns",), "good", {"text": "fine"}), PutOp(("ns",), "bad", {"text": "poison"})]
        )
    assert await store.aget(("ns",), "good") is None
    assert await store.aget(("ns",), "bad") is None
    await store.aput(("ns",), "good", {"text": "fine"})
    assert (await store.aget(("ns",), "good")) is not None


async def test_async_embed_functions_work(make_store: StoreFactory) -> None:
    async def embed(texts: Sequence[str]) -> list[list[float]]:
        return keyword_embed(texts)

    store = await make_store(index=IndexConfig(dims=KEYWORD_DIMS, embed=embed, fields=["text"]))
    await store.aput(("ns",), "k", {"text": "rock music"})
    hits = await store.asearch(("ns",), query="music")
    assert hits and hits[0].key == "k"


# ---- TTL ---------------------------------------------------------------------------------

async def settle(store: BaseStore) -> None:
    """Reads refresh TTL through the writer (SQLite): a refresh is committed no later than
    the next acknowledged write, so a write-and-delete is the point to observe it from."""
    await store.aput(("zz-settle",), "k", {})
    await store.adelete(("zz-settle",), "k")


async def test_expired_items_are_never_returned_even_before_a_sweep(
    make_store: StoreFactory, clock: FakeClock
) -> None:
    store = await make_store(
        clock=clock, ttl=TTLConfig(default_ttl=1, refresh_on_read=False), index=KEYWORD_INDEX
    )
    await store.aput(("ns",), "short", {"text": "apple"})
    await store.aput(("ns",), "long", {"text": "apple"}, ttl=10)
    await store.aput(("keep",), "forever", {"text": "apple"}, ttl=None)
    await store.aput(("gone",), "soon", {"text": "apple"}, ttl=0.5)
    clock.advance(61)
    assert await store.aget(("ns",), "short") is None
    assert await store.aget(("ns",), "long") is not None
    assert {item.key for item in await store.asearch(())} == {"long", "forever"}
    assert {hit.key for hit in await store.asearch((), query="apple")} == {"long", "forever"}
    assert await store.alist_namespaces() == [("keep",), ("ns",)]
    clock.advance(3600 * 24 * 365)
    assert await store.aget(("keep",), "forever") is not None


async def test_reads_refresh_ttl_unless_told_not_to(
    make_store: StoreFactory, clock: FakeClock
) -> None:
    store = await make_store(clock=clock, ttl=TTLConfig(default_ttl=1))
    await store.aput(("ns",), "k", {"v": 1})
    await store.aput(("ns",), "s", {"v": 2})
    clock.advance(50)
    assert await store.aget(("ns",), "k") is not None  # refreshes k
    assert await store.aget(("ns",), "s", refresh_ttl=False) is not None  # does not
    await settle(store)
    clock.advance(50)
    assert await store.aget(("ns",), "k") is not None
    assert await store.aget(("ns",), "s") is None
    await store.asearch(("ns",))  # refreshes k through search
    await settle(store)
    clock.advance(50)
    assert await store.aget(("ns",), "k", refresh_ttl=False) is not None


async def test_refresh_on_read_false_needs_an_explicit_refresh(
    make_store: StoreFactory, clock: FakeClock
) -> None:
    store = await make_store(clock=clock, ttl=TTLConfig(default_ttl=1, refresh_on_read=False))
    await store.aput(("ns",), "a", {"v": 1})
    await store.aput(("ns",), "b", {"v": 1})
    clock.advance(50)
    await store.aget(("ns",), "a", refresh_ttl=True)
    await store.aget(("ns",), "b")
    await settle(store)
    clock.advance(50)
    assert await store.aget(("ns",), "a") is not None
    assert await store.aget(("ns",), "b") is None


async def test_ttl_accepts_fractions_and_refuses_nonsense(
    make_store: StoreFactory, clock: FakeClock
) -> None:
    store = await make_store(clock=clock)
    await store.aput(("ns",), "k", {"v": 1}, ttl=0.25)
    clock.advance(14)
    assert await store.aget(("ns",), "k", refresh_ttl=False) is not None
    clock.advance(2)
    assert await store.aget(("ns",), "k") is None
    for bad in (0, -1, math.nan, "5", True):
        with pytest.raises(ValueError, match="ttl"):
            await store.aput(("ns",), "k", {"v": 1}, ttl=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="default_ttl"):
        TTLConfig(default_ttl=-5)


async def test_an_expired_key_put_again_starts_fresh(
    make_store: StoreFactory, clock: FakeClock
) -> None:
    store = await make_store(clock=clock)
    await store.aput(("ns",), "k", {"v": 1}, ttl=1)
    first = await store.aget(("ns",), "k")
    clock.advance(120)
    await store.aput(("ns",), "k", {"v": 2}, ttl=1)
    second = await store.aget(("ns",), "k")
    assert first is not None and second is not None
    assert second.value == {"v": 2} and second.created_at > first.created_at


# ---- list_namespaces ---------------------------------------------------------------------

async def test_list_namespaces_matching_depth_sorting_and_paging(
    make_store: StoreFactory,
) -> None:
    store = await make_store()
    for namespace in [
        ("users", "u1", "memories"),
        ("users", "u2", "memories"),
        ("users", "u2", "prefs"),
        ("docs", "d1"),
        ("users",),
    ]:
        await store.aput(namespace, "k", {"x": 1})
    assert await store.alist_namespaces() == [
        ("docs", "d1"),
        ("users",),
        ("users", "u1", "memories"),
        ("users", "u2", "memories"),
        ("users", "u2", "prefs"),
    ]
    assert await store.alist_namespaces(prefix=("users", "*", "memories")) == [
        ("users", "u1", "memories"),
        ("users", "u2", "memories"),
    ]
    assert await store.alist_namespaces(suffix=("prefs",)) == [("users", "u2", "prefs")]
    assert await store.alist_namespaces(suffix=("*", "memories"), prefix=("users",)) == [
        ("users", "u1", "memories"),
        ("users", "u2", "memories"),
    ]
    assert await store.alist_namespaces(max_depth=2) == [
        ("docs", "d1"),
        ("users",),
        ("users", "u1"),
        ("users", "u2"),
    ]
    assert await store.alist_namespaces(max_depth=1, limit=1, offset=1) == [("users",)]
    results = await store.abatch(
        [ListNamespacesOp(match_conditions=(MatchCondition("prefix", ("docs",)),))]
    )
    assert results[0] == [("docs", "d1")]


async def test_list_namespaces_refuses_bad_arguments(make_store: StoreFactory) -> None:
    store = await make_store()
    with pytest.raises(ValueError, match="max_depth"):
        await store.alist_namespaces(max_depth=0)
    with pytest.raises(ValueError, match="limit"):
        await store.alist_namespaces(limit=-1)
    with pytest.raises(ValueError, match="prefix"):
        await store.alist_namespaces(prefix="users")  # type: ignore[arg-type]


# ---- sync calls and lifecycle ------------------------------------------------------------

async def test_after_close_every_call_raises(make_store: StoreFactory) -> None:
    store = await make_store()
    await store.aput(("ns",), "k", {"v": 1})
    await store.aclose()
    for call in (
        lambda: store.aget(("ns",), "k"),
        lambda: store.aput(("ns",), "k", {"v": 2}),
        lambda: store.asearch(("ns",)),
        lambda: store.alist_namespaces(),
    ):
        with pytest.raises(StoreClosedError):
            await call()


@pytest.mark.parametrize("call", ["put", "get", "search", "query"])
async def test_a_task_looping_on_store_calls_lets_other_tasks_run(
    make_store: StoreFactory, call: str
) -> None:
    """Every async call yields to the loop: a tight loop of any one kind of call (answered
    inline, without any thread hop) cannot starve the loop's other tasks."""
    store = await make_store(index=KEYWORD_INDEX)
    await store.aput(("ns",), "k0", {"text": "apple"})
    other_ran = anyio.Event()
    loops_before_other: list[int] = []
    calls = {
        "put": lambda i: store.aput(("ns",), f"k{i % 10}", {"text": "apple"}),
        "get": lambda i: store.aget(("ns",), "k0"),
        "search": lambda i: store.asearch(("ns",), filter={"text": "apple"}),
        "query": lambda i: store.asearch(("ns",), query="apple"),
    }

    async def busy() -> None:
        for i in range(2_000):  # bounded, so a regression fails instead of hanging
            if other_ran.is_set():
                loops_before_other.append(i)
                return
            await calls[call](i)

    async def other() -> None:
        other_ran.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(busy)
        tg.start_soon(other)
    assert loops_before_other and loops_before_other[0] < 10

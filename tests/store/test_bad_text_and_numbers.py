"""Lone surrogates and out-of-range numbers: refused at the call site with ``ValueError`` on
every store, before anything reaches a writer batch (where one caller's bad text would make
the whole batch retry one put at a time)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from tests.conftest import KEYWORD_DIMS, StoreFactory, keyword_embed

from memlane import IndexConfig, SqliteStore, TTLConfig
from memlane.store.types import PutOp

KEYWORD_INDEX = IndexConfig(dims=KEYWORD_DIMS, embed=keyword_embed, fields=["text"])

pytestmark = pytest.mark.anyio

LONE = "\ud800"

Call = Callable[[Any], Awaitable[Any]]

SURROGATE_CALLS: list[tuple[str, Call]] = [
    ("value", lambda s: s.aput(("ns",), "k", {"text": f"hi {LONE}"})),
    ("value", lambda s: s.aput(("ns",), "k", {"nested": [{"deep": LONE}]})),
    ("key", lambda s: s.aput(("ns",), "k", {f"x{LONE}": 1})),
    ("key", lambda s: s.aput(("ns",), f"k{LONE}", {"v": 1})),
    ("namespace label", lambda s: s.aput(("ns", LONE), "k", {"v": 1})),
    ("key", lambda s: s.aget(("ns",), LONE)),
    ("namespace label", lambda s: s.aget((LONE,), "k")),
    ("namespace_prefix label", lambda s: s.asearch((LONE,))),
    ("query", lambda s: s.asearch(("ns",), query=f"music {LONE}")),
    ("filter key", lambda s: s.asearch(("ns",), filter={f"f{LONE}": 1})),
    ("operand", lambda s: s.asearch(("ns",), filter={"f": LONE})),
    ("operand key", lambda s: s.asearch(("ns",), filter={"f": {"$eq": {LONE: 1}}})),
    ("prefix label", lambda s: s.alist_namespaces(prefix=("ns", LONE))),
    ("suffix label", lambda s: s.alist_namespaces(suffix=(LONE,))),
    ("key", lambda s: s.adelete(("ns",), LONE)),
]


@pytest.mark.parametrize(("named", "call"), SURROGATE_CALLS)
async def test_a_lone_surrogate_is_refused_at_the_call_site(
    make_store: StoreFactory, named: str, call: Call
) -> None:
    store = await make_store(index=KEYWORD_INDEX)
    with pytest.raises(ValueError, match=rf"{named}.*lone surrogate '\\ud800'"):
        await call(store)


async def test_a_surrogate_fails_only_its_own_batch_and_no_other_caller(
    make_store: StoreFactory,
) -> None:
    store = await make_store()
    with pytest.raises(ValueError, match=r"value\['text'\].*lone surrogate"):
        await store.abatch([PutOp(("ns",), "good", {"text": "ok"}),
                            PutOp(("ns",), "bad", {"text": LONE})])
    assert await store.aget(("ns",), "good") is None, "a batch with a bad op applies nothing"
    await store.aput(("ns",), "pair", {"text": json.loads(r'"\ud83d\ude00 is fine"')})
    item = await store.aget(("ns",), "pair")
    assert item is not None and item.value["text"] == "\U0001f600 is fine"


@pytest.mark.parametrize(
    ("named", "call"),
    [
        ("limit", lambda s: s.asearch(("ns",), limit=2**63)),
        ("offset", lambda s: s.asearch(("ns",), offset=2**64)),
        ("limit", lambda s: s.alist_namespaces(limit=2**63)),
        ("offset", lambda s: s.alist_namespaces(offset=10**30)),
        ("ttl", lambda s: s.aput(("ns",), "k", {"v": 1}, ttl=2**1024)),
        ("ttl", lambda s: s.aput(("ns",), "k", {"v": 1}, ttl=10**400)),
    ],
)
async def test_numbers_out_of_range_are_a_value_error_on_every_store(
    make_store: StoreFactory, named: str, call: Call
) -> None:
    store = await make_store()
    with pytest.raises(ValueError, match=named):
        await call(store)
    assert await store.asearch(("ns",), limit=2**63 - 1) == []


async def test_the_largest_limit_and_a_huge_max_depth_work_alike(make_store: StoreFactory) -> None:
    store = await make_store()
    await store.aput(("a", "b"), "k", {"v": 1}, ttl=1e300)
    assert [i.key for i in await store.asearch(("a",), limit=2**63 - 1)] == ["k"]
    assert await store.alist_namespaces(max_depth=2**70, limit=2**63 - 1) == [("a", "b")]
    assert await store.asearch(("a",), offset=2**63 - 1) == []


@pytest.mark.parametrize(
    "config",
    [
        {"default_ttl": 2**1024},
        {"sweep_interval_minutes": 2**1024},
        {"sweep_interval_minutes": 1e300},
    ],
)
async def test_a_ttl_config_out_of_range_is_a_value_error(
    config: dict[str, Any], tmp_path: Any
) -> None:
    with pytest.raises(ValueError, match="TTLConfig"):
        TTLConfig(**config)
    with pytest.raises(ValueError, match="TTLConfig"):
        async with SqliteStore.open(tmp_path / "s.db", ttl=config):
            pass

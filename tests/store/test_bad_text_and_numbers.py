"""Lone surrogates, NUL and out-of-range numbers: refused at the call site with ``ValueError`` on
every store, before anything reaches a writer batch (where one caller's bad text would make
the whole batch retry one put at a time)."""

from __future__ import annotations

import asyncio
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

Call = Callable[[Any, str], Awaitable[Any]]  # (store, the bad text) -> the call

BAD_TEXT_CALLS: list[tuple[str, Call]] = [
    ("value", lambda s, x: s.aput(("ns",), "k", {"text": f"hi {x}"})),
    ("value", lambda s, x: s.aput(("ns",), "k", {"nested": [{"deep": x}]})),
    ("key", lambda s, x: s.aput(("ns",), "k", {f"x{x}": 1})),
    ("key", lambda s, x: s.aput(("ns",), f"k{x}", {"v": 1})),
    ("namespace label", lambda s, x: s.aput(("ns", x), "k", {"v": 1})),
    ("key", lambda s, x: s.aget(("ns",), x)),
    ("namespace label", lambda s, x: s.aget((x,), "k")),
    ("namespace_prefix label", lambda s, x: s.asearch((x,))),
    ("query", lambda s, x: s.asearch(("ns",), query=f"music {x}")),
    ("filter key", lambda s, x: s.asearch(("ns",), filter={f"f{x}": 1})),
    ("operand", lambda s, x: s.asearch(("ns",), filter={"f": x})),
    ("operand key", lambda s, x: s.asearch(("ns",), filter={"f": {"$eq": {x: 1}}})),
    ("prefix label", lambda s, x: s.alist_namespaces(prefix=("ns", x))),
    ("suffix label", lambda s, x: s.alist_namespaces(suffix=(x,))),
    ("key", lambda s, x: s.adelete(("ns",), x)),
]


# What each store refuses, and how its error says so: a lone surrogate (UTF-8 cannot hold
# it) and NUL (PostgreSQL's text and jsonb cannot: refused by every store alike).
BAD_TEXT = {"surrogate": (LONE, r"lone surrogate '\\ud800'"), "nul": ("\x00", r"U\+0000 \(NUL\)")}


@pytest.mark.parametrize("bad", sorted(BAD_TEXT))
@pytest.mark.parametrize(("named", "call"), BAD_TEXT_CALLS)
async def test_bad_text_is_refused_at_the_call_site(
    make_store: StoreFactory, named: str, call: Call, bad: str
) -> None:
    store = await make_store(index=KEYWORD_INDEX)
    text, message = BAD_TEXT[bad]
    with pytest.raises(ValueError, match=rf"{named}.*{message}"):
        await call(store, text)


@pytest.mark.parametrize("bad", sorted(BAD_TEXT))
async def test_bad_text_fails_only_its_own_batch_and_no_other_caller(
    make_store: StoreFactory, bad: str
) -> None:
    store = await make_store()
    text, message = BAD_TEXT[bad]
    with pytest.raises(ValueError, match=rf"value\['text'\].*{message}"):
        await store.abatch([PutOp(("ns",), "good", {"text": "ok"}),
                            PutOp(("ns",), "bad", {"text": f"a{text}b"})])
    assert await store.aget(("ns",), "good") is None, "a batch with a bad op applies nothing"
    await store.aput(("ns",), "pair", {"text": json.loads(r'"\ud83d\ude00 is fine"')})
    item = await store.aget(("ns",), "pair")
    assert item is not None and item.value["text"] == "\U0001f600 is fine"


async def test_one_callers_nul_fails_no_concurrent_callers_write(
    make_store: StoreFactory,
) -> None:
    store = await make_store()

    async def put(n: int) -> None:
        text = "bad \x00" if n == 25 else f"good {n}"
        await store.aput(("ns",), f"k{n}", {"text": text, "n": n})

    outcomes = await asyncio.gather(*(put(n) for n in range(50)), return_exceptions=True)
    failed = [n for n, outcome in enumerate(outcomes) if outcome is not None]
    assert failed == [25] and isinstance(outcomes[25], ValueError)
    stored = await store.asearch(("ns",), limit=100)
    assert sorted(item.value["n"] for item in stored) == [n for n in range(50) if n != 25]


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


async def test_a_namespace_and_key_over_the_size_limit_are_refused_on_every_store(
    make_store: StoreFactory,
) -> None:
    """At most 2,048 UTF-8 bytes together (PostgreSQL's index holds ~2,700): refused at the
    call site everywhere, naming the limit; at the limit it is stored on every store."""
    from memlane.store.ops import MAX_KEY_BYTES

    store = await make_store()
    namespace = ("users", "é" * 100)  # stored as "users.éé...": 5 + 1 + 200 bytes
    at_limit = "k" * (MAX_KEY_BYTES - 206)
    await store.aput(namespace, at_limit, {"v": 1})
    assert await store.aget(namespace, at_limit) is not None
    with pytest.raises(ValueError, match=r"2,049 bytes.*at most 2,048"):
        await store.aput(namespace, at_limit + "k", {"v": 2})
    with pytest.raises(ValueError, match="at most 2,048"):
        await store.aput(("a",), "€" * 1_000, {"v": 3})  # 3,000 bytes in 1,000 characters

"""manage_memory_tool / search_memory_tool: namespaces filled from context, users kept apart."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from tests.conftest import KEYWORD_DIMS, FakeClock, StoreFactory, keyword_embed

from memlane import IndexConfig, PutOp, TTLConfig
from memlane.agents import (
    ScriptedModel,
    ToolMessage,
    ToolRuntime,
    create_agent,
    manage_memory_tool,
    search_memory_tool,
)
from memlane.store.base import BaseStore

pytestmark = pytest.mark.anyio


@dataclass
class Context:
    user_id: str


def results(run: dict[str, list[Any]]) -> list[ToolMessage]:
    return [m for m in run["messages"] if isinstance(m, ToolMessage)]


async def test_create_update_delete_and_search_in_the_users_namespace(store: BaseStore) -> None:
    manage, search = manage_memory_tool(), search_memory_tool()
    assert set(manage.parameters["properties"]) == {"action", "content", "id"}
    assert "runtime" not in search.parameters["properties"]

    def create_turn(messages: list[Any]) -> list[dict[str, Any]]:
        return [{"name": "manage_memory", "args": {"action": "create", "content": "likes jazz"}}]

    agent = create_agent(
        ScriptedModel([create_turn, "noted"]), [manage, search], store=store, context_schema=Context
    )
    run = await agent.ainvoke({"messages": ["I like jazz"]}, context={"user_id": "alice"})
    created = results(run)[0]
    assert created.status == "success" and created.content.startswith("created memory ")
    key = created.content.removeprefix("created memory ")
    item = await store.aget(("memories", "alice"), key)
    assert item is not None and item.value == {"content": "likes jazz"}

    update = {"action": "update", "id": key, "content": "likes jazz and rock"}
    agent = create_agent(
        ScriptedModel([[{"name": "manage_memory", "args": update}], "ok"]),
        [manage],
        store=store,
        context_schema=Context,
    )
    await agent.ainvoke({"messages": ["also rock"]}, context=Context("alice"))
    item = await store.aget(("memories", "alice"), key)
    assert item is not None and item.value == {"content": "likes jazz and rock"}

    agent = create_agent(
        ScriptedModel([[{"name": "search_memory", "args": {"query": "music"}}], "ok"]),
        [search],
        store=store,
        context_schema=Context,
    )
    alice = await agent.ainvoke({"messages": ["?"]}, context=Context("alice"))
    found = json.loads(results(alice)[0].content)
    assert [(f["id"], f["value"]) for f in found] == [(key, {"content": "likes jazz and rock"})]
    # bob sees nothing of alice's, and cannot update or delete her memory by id
    bob = await agent.ainvoke({"messages": ["?"]}, context=Context("bob"))
    assert json.loads(results(bob)[0].content) == []
    attacks = [
        {"name": "manage_memory", "args": {"action": "update", "id": key, "content": "x"}},
        {"name": "manage_memory", "args": {"action": "delete", "id": key}},
        {
            "name": "manage_memory",
            "args": {"action": "create", "content": "x", "namespace": ["memories", "alice"]},
        },
    ]
    agent = create_agent(
        ScriptedModel([attacks, "ok"]), [manage], store=store, context_schema=Context
    )
    run = await agent.ainvoke({"messages": ["hack"]}, context=Context("bob"))
    update_msg, _delete_msg, create_msg = results(run)
    assert update_msg.status == "error" and "no memory" in update_msg.content
    assert create_msg.status == "success"
    item = await store.aget(("memories", "alice"), key)
    assert item is not None and item.value == {"content": "likes jazz and rock"}
    assert len(await store.asearch(("memories", "alice"))) == 1

    agent = create_agent(
        ScriptedModel([[{"name": "manage_memory", "args": {"action": "delete", "id": key}}], "ok"]),
        [manage],
        store=store,
        context_schema=Context,
    )
    await agent.ainvoke({"messages": ["forget it"]}, context=Context("alice"))
    assert await store.aget(("memories", "alice"), key) is None


async def test_namespace_needs_the_context_field_and_a_clean_value(store: BaseStore) -> None:
    manage = manage_memory_tool(("users", "{user_id}", "notes"), actions=["create"])
    action = manage.parameters["properties"]["action"]
    assert action.get("enum", [action.get("const")]) == ["create"]
    turn = [{"name": "manage_memory", "args": {"action": "create", "content": "x"}}]
    agent = create_agent(ScriptedModel([turn, "ok"]), [manage], store=store)
    missing = results(await agent.ainvoke({"messages": ["x"]}, context={"team": "t"}))[0]
    assert missing.status == "error" and "user_id" in missing.content
    dotted = results(await agent.ainvoke({"messages": ["x"]}, context={"user_id": "a.b"}))[0]
    assert dotted.status == "error"
    fine = results(
        await agent.ainvoke({"messages": ["x"]}, config={"configurable": {"user_id": "carol"}})
    )[0]
    assert fine.status == "success"
    assert await store.asearch(("users", "carol", "notes")) != []
    with pytest.raises(ValueError):
        manage_memory_tool(actions=["explode"])  # type: ignore[list-item]


# ---- the tools on every backend, with the README's IndexConfig(fields=["text"]) ----------

TEXT_INDEX = IndexConfig(dims=KEYWORD_DIMS, embed=keyword_embed, fields=["text"])


def runtime_for(store: BaseStore, **context: str) -> ToolRuntime[Any]:
    return ToolRuntime(context, store)


async def create(store: BaseStore, content: str, namespace: tuple[str, ...], **ctx: str) -> str:
    out = await manage_memory_tool(namespace).ainvoke(
        {"action": "create", "content": content}, runtime_for(store, **ctx)
    )
    return str(out).removeprefix("created memory ")


async def test_memories_are_embedded_whatever_fields_the_store_indexes(
    make_store: StoreFactory,
) -> None:
    store = await make_store(index=TEXT_INDEX)
    key = await create(store, "likes jazz", DEFAULT, user_id="alice")
    search = search_memory_tool()
    found = await search.ainvoke({"query": "jazz"}, runtime_for(store, user_id="alice"))
    assert [f["id"] for f in found] == [key] and found[0]["score"] > 0
    # an update is embedded too: the new text is what a query finds
    update = {"action": "update", "id": key, "content": "likes pizza"}
    await manage_memory_tool().ainvoke(update, runtime_for(store, user_id="alice"))
    found = await search.ainvoke({"query": "pizza"}, runtime_for(store, user_id="alice"))
    assert [f["value"] for f in found] == [{"content": "likes pizza"}]
    # the store's own fields still apply to what the application writes itself
    await store.aput(("memories", "alice"), "note", {"text": "rock music"})
    found = await search.ainvoke({"query": "rock", "limit": 1}, runtime_for(store, user_id="alice"))
    assert [f["id"] for f in found] == ["note"]


DEFAULT = ("memories", "{user_id}")
BY_ORG = ("memories", "{org}", "{user_id}")


async def test_search_reads_exactly_its_namespace_not_those_below(
    make_store: StoreFactory,
) -> None:
    store = await make_store(index=TEXT_INDEX)
    # two templates of different depths under one root: org "acme" and user "acme"
    carol = await create(store, "jazz carol", BY_ORG, org="acme", user_id="carol")
    mine = await create(store, "jazz acme", DEFAULT, user_id="acme")
    secret = {"content": "jazz secret"}
    await store.aput(("memories", "bob", "private"), "p", secret, index=["content"])
    search, by_org = search_memory_tool(DEFAULT), search_memory_tool(BY_ORG)
    for args in ({"query": "jazz"}, {"query": "jazz", "filter": {"content": {"$exists": True}}}):
        found = await search.ainvoke(args, runtime_for(store, user_id="acme"))
        assert [f["id"] for f in found] == [mine]
        assert await search.ainvoke(args, runtime_for(store, user_id="bob")) == []
        found = await by_org.ainvoke(args, runtime_for(store, org="acme", user_id="carol"))
        assert [f["id"] for f in found] == [carol]
    # include_children=True is the prefix search, and each result says where it lives
    wide = search_memory_tool(DEFAULT, include_children=True)
    found = await wide.ainvoke({"query": "jazz"}, runtime_for(store, user_id="acme"))
    assert sorted((tuple(f["namespace"]), f["id"]) for f in found) == sorted(
        [(("memories", "acme"), mine), (("memories", "acme", "carol"), carol)]
    )
    with pytest.raises(TypeError):
        search_memory_tool(include_children="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("query", ["jazz", ""])
async def test_exact_namespace_pages_are_full_when_items_below_outrank_them(
    make_store: StoreFactory, query: str
) -> None:
    store = await make_store(index=TEXT_INDEX)
    here, below = ("memories", "acme"), ("memories", "acme", "carol")
    # 30 items below rank first (more "jazz", newer); the namespace's own 12 come after
    ops = [PutOp(here, f"m{n:02}", {"content": "jazz"}, ["content"]) for n in range(12)]
    ops += [PutOp(below, f"c{n:02}", {"content": "jazz jazz"}, ["content"]) for n in range(30)]
    for op in ops:  # one at a time: updated_at orders them
        await store.abatch([op])
    search = search_memory_tool(DEFAULT)
    runtime = runtime_for(store, user_id="acme")
    ranked = await store.asearch(here, query=query, limit=100)
    expected = [i.key for i in ranked if i.namespace == here]
    assert len(expected) == 12
    pages = [
        [f["id"] for f in await search.ainvoke({"query": query, "limit": 5, "offset": o}, runtime)]
        for o in (0, 5, 10)
    ]
    assert pages == [expected[0:5], expected[5:10], expected[10:12]]


async def test_exact_search_refreshes_only_the_items_it_returns(
    make_store: StoreFactory, clock: FakeClock
) -> None:
    store = await make_store(index=TEXT_INDEX, ttl=TTLConfig(default_ttl=1), clock=clock)
    mine = await create(store, "jazz", DEFAULT, user_id="acme")
    below = {"content": "jazz jazz"}
    await store.aput(("memories", "acme", "carol"), "c", below, index=["content"])
    clock.advance(50)
    search = search_memory_tool(DEFAULT)
    found = await search.ainvoke({"query": "jazz"}, runtime_for(store, user_id="acme"))
    assert [f["id"] for f in found] == [mine]
    await store.aput(("other",), "x", {})  # SqliteStore commits queued refreshes by then
    clock.advance(50)  # 100 s after the writes: only the item the search returned was refreshed
    assert await store.aget(("memories", "acme"), mine, refresh_ttl=False) is not None
    assert await store.aget(("memories", "acme", "carol"), "c", refresh_ttl=False) is None

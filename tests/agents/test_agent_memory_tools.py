"""manage_memory_tool / search_memory_tool: namespaces filled from context, users kept apart."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from memlane.agents import (
    ScriptedModel,
    ToolMessage,
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

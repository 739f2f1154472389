"""EXAMPLES.md section 1: a store with semantic search, filtered and ranked.

Runs offline: HashingEmbeddings stands in for a real embedding model. The same calls run
on InMemoryStore (sync) and on a durable SqliteStore (async twins).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from memlane import HashingEmbeddings, IndexConfig, InMemoryStore, SqliteStore

MEMORIES = {
    "a-memory": {
        "rules": ["User likes short, direct language", "User only speaks English & python"],
        "my-key": "my-value",
    },
    "food": {"rules": ["User is vegetarian", "User loves spicy food"], "my-key": "my-value"},
    "travel": {"rules": ["User plans a trip to Tokyo in spring"], "my-key": "other-value"},
}


def show(title: str, items: list) -> None:  # type: ignore[type-arg]
    print(title)
    for item in items:
        score = f"{item.score:.3f}" if item.score is not None else "  -  "
        print(f"  {score}  {item.key:<9} {item.value['rules'][0]}")


def in_memory() -> None:
    embed = HashingEmbeddings(dims=256)
    store = InMemoryStore(index=IndexConfig(embed=embed, dims=256, fields=["rules[*]"]))
    user_id = "my-user"
    application_context = "chitchat"
    namespace = (user_id, application_context)
    for key, value in MEMORIES.items():
        store.put(namespace, key, value)
    item = store.get(namespace, "a-memory")
    assert item is not None
    print(f"get -> {item.key}: {item.value}")
    items = store.search(namespace, filter={"my-key": "my-value"}, query="language preferences")
    show("search(query='language preferences', filter={'my-key': 'my-value'})", items)
    show("search(query='what food does the user eat')",
         store.search(namespace, query="what food does the user eat"))


async def durable(folder: Path) -> None:
    embed = HashingEmbeddings(dims=256)
    index = IndexConfig(embed=embed, dims=256, fields=["rules[*]"])
    namespace = ("my-user", "chitchat")
    async with SqliteStore.open(folder / "memories.db", index=index) as store:
        for key, value in MEMORIES.items():
            await store.aput(namespace, key, value)
    async with SqliteStore.open(folder / "memories.db", index=index) as store:  # reopened
        items = await store.asearch(namespace, query="trip abroad", limit=2)
        show("SqliteStore, after reopening: asearch(query='trip abroad', limit=2)", items)


if __name__ == "__main__":
    print("== InMemoryStore")
    in_memory()
    print("== SqliteStore")
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(durable(Path(tmp)))

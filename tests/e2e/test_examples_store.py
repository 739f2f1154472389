"""EXAMPLES.md section 1, nearly verbatim, on both stores; and the example script runs."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from memlane import IndexConfig, InMemoryStore, SqliteStore

ROOT = Path(__file__).resolve().parents[2]


def embed(texts: Sequence[str]) -> list[list[float]]:
    # any embedding function; memlane.HashingEmbeddings works offline
    return [[1.0, 2.0] for _ in texts]


VALUE = {
    "rules": ["User likes short, direct language", "User only speaks English & python"],
    "my-key": "my-value",
}


def test_example_one_on_the_in_memory_store() -> None:
    store = InMemoryStore(index=IndexConfig(embed=embed, dims=2))
    user_id = "my-user"
    application_context = "chitchat"
    namespace = (user_id, application_context)
    store.put(namespace, "a-memory", VALUE)
    item = store.get(namespace, "a-memory")
    items = store.search(namespace, filter={"my-key": "my-value"}, query="language preferences")
    assert item is not None and item.value == VALUE
    assert [found.key for found in items] == ["a-memory"]
    assert items[0].score == pytest.approx(1.0)


@pytest.mark.anyio
async def test_example_one_on_the_sqlite_store(tmp_path: Path) -> None:
    async with SqliteStore.open(tmp_path / "m.db", index=IndexConfig(embed=embed, dims=2)) as store:
        namespace = ("my-user", "chitchat")
        await store.aput(namespace, "a-memory", VALUE)
        item = await store.aget(namespace, "a-memory")
        items = await store.asearch(
            namespace, filter={"my-key": "my-value"}, query="language preferences"
        )
        assert item is not None and item.value == VALUE
        assert [found.key for found in items] == ["a-memory"]
        assert items[0].score == pytest.approx(1.0)


def test_the_store_example_script_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "store_basics.py")],
        capture_output=True, text=True, timeout=120, check=True,
    )
    assert "a-memory" in result.stdout and "after reopening" in result.stdout

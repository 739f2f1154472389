"""An indexed file remembers its index: opening it without one, or with another, never
silently loses meaning (no ignored ``query=``, no items left without vectors)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import KEYWORD_DIMS, StoreFactory, keyword_embed

from memlane import IndexConfig, IndexConfigError, SqliteStore

pytestmark = pytest.mark.anyio

INDEX = IndexConfig(dims=KEYWORD_DIMS, embed=keyword_embed, fields=["text"])


def rows(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT namespace, key, value FROM items ORDER BY id").fetchall()


async def indexed_file(tmp_path: Path) -> Path:
    path = tmp_path / "s.db"
    async with SqliteStore.open(path, index=INDEX) as store:
        await store.aput(("u",), "jazz", {"text": "jazz music"})
        await store.aput(("u",), "rain", {"text": "rain weather"})
    return path


async def test_opening_an_indexed_file_without_an_index_is_refused_naming_the_fix(
    tmp_path: Path,
) -> None:
    path = await indexed_file(tmp_path)
    before = rows(path)
    with pytest.raises(IndexConfigError) as caught:
        async with SqliteStore.open(path):
            pass
    message = str(caught.value)
    assert f"dims={KEYWORD_DIMS}" in message and "fields=['text']" in message
    assert "index=False" in message and "IndexConfig(" in message
    with pytest.raises(IndexConfigError), SqliteStore.open_sync(path):
        pass
    assert rows(path) == before
    async with SqliteStore.open(path, index=INDEX) as store:  # nothing was harmed
        assert (await store.asearch(("u",), query="music", limit=1))[0].key == "jazz"


async def test_other_fields_or_dims_are_refused(tmp_path: Path) -> None:
    path = await indexed_file(tmp_path)
    other_fields = IndexConfig(dims=KEYWORD_DIMS, embed=keyword_embed, fields=["body"])
    with pytest.raises(IndexConfigError, match=r"fields=\['text'\].*\['body'\]"):
        async with SqliteStore.open(path, index=other_fields):
            pass
    other_dims = IndexConfig(dims=KEYWORD_DIMS + 1, embed=keyword_embed, fields=["text"])
    with pytest.raises(IndexConfigError, match=f"dims={KEYWORD_DIMS}"):
        async with SqliteStore.open(path, index=other_dims):
            pass


async def test_index_false_refuses_queries_and_the_next_indexed_open_embeds_its_writes(
    tmp_path: Path,
) -> None:
    path = await indexed_file(tmp_path)
    async with SqliteStore.open(path, index=False) as store:
        with pytest.raises(IndexConfigError, match="index=False"):
            await store.asearch(("u",), query="music")
        assert [i.key for i in await store.asearch(("u",), query="")] == ["rain", "jazz"]
        await store.aput(("u",), "rock", {"text": "rock music"})  # new: marked
        await store.aput(("u",), "rain", {"text": "sun travel"})  # overwritten: re-marked
        await store.adelete(("u",), "jazz")  # its vectors go with it
        await store.aput(("u",), "own", {"text": "x", "body": "tokyo"}, index=["body"])
        await store.aput(("u",), "quiet", {"text": "python"}, index=False)
    async with SqliteStore.open(path, index=INDEX) as store:
        music = await store.asearch(("u",), query="music", limit=10)
        assert music[0].key == "rock" and "jazz" not in {i.key for i in music}
        assert (await store.asearch(("u",), query="sun", limit=1))[0].key == "rain"
        assert (await store.asearch(("u",), query="tokyo", limit=1))[0].key == "own"
        found = {i.key for i in await store.asearch(("u",), query="python", limit=10)}
        assert "quiet" not in found, "an index=False put stays without vectors"
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM pending_vectors").fetchone() == (0,)


async def test_a_failing_embedder_fails_the_catch_up_open_and_keeps_the_marks(
    tmp_path: Path,
) -> None:
    path = await indexed_file(tmp_path)
    async with SqliteStore.open(path, index=False) as store:
        await store.aput(("u",), "rock", {"text": "rock music"})

    def broken(texts: list[str]) -> list[list[float]]:
        raise ConnectionError("embedding service down")

    with pytest.raises(Exception, match="embedding service down"):
        async with SqliteStore.open(
            path, index=IndexConfig(dims=KEYWORD_DIMS, embed=broken, fields=["text"])
        ):
            pass
    async with SqliteStore.open(path, index=INDEX) as store:
        assert (await store.asearch(("u",), query="rock", limit=1))[0].key == "rock"


async def test_a_file_from_before_fields_were_recorded_records_them(tmp_path: Path) -> None:
    path = await indexed_file(tmp_path)
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM memlane_meta WHERE name = 'index'")
        conn.execute("DROP TABLE pending_vectors")  # back to a schema 1 file
        conn.execute("DROP TABLE changes")
        conn.execute("DELETE FROM memlane_meta WHERE name = 'next_item_id'")
        conn.execute("DELETE FROM memlane_migrations WHERE version >= 2")
    with pytest.raises(IndexConfigError, match=f"dims={KEYWORD_DIMS}"):
        async with SqliteStore.open(path):
            pass
    async with SqliteStore.open(path, index=INDEX) as store:
        assert (await store.asearch(("u",), query="jazz", limit=1))[0].key == "jazz"
    with sqlite3.connect(path) as conn:
        (recorded,) = conn.execute("SELECT value FROM memlane_meta WHERE name = 'index'").fetchone()
    assert '"fields":["text"]' in recorded


async def test_index_false_refuses_queries_on_every_store(make_store: StoreFactory) -> None:
    store = await make_store(index=False)
    await store.aput(("u",), "k", {"text": "jazz"})
    with pytest.raises(IndexConfigError, match="query= needs an index"):
        await store.asearch(("u",), query="jazz")
    assert [i.key for i in await store.asearch(("u",), filter={"text": "jazz"})] == ["k"]


async def test_a_file_first_opened_with_an_index_embeds_what_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "plain.db"
    async with SqliteStore.open(path) as store:
        await store.aput(("u",), "k", {"text": "jazz"})
        assert await store.asearch(("u",), query="jazz")  # no index: query is ignored
    async with SqliteStore.open(path, index=INDEX) as store:  # k gets its vector now
        await store.aput(("u",), "k2", {"text": "jazz music"})
        assert [i.key for i in await store.asearch(("u",), query="jazz")] == ["k", "k2"]

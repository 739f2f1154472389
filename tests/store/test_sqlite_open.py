"""Opening SqliteStore: the awaitable form, links to an open file, foreign files, after close."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from pathlib import Path

import pytest

from memlane import SqliteStore, StoreLockedError
from memlane.store.types import StoreClosedError

pytestmark = pytest.mark.anyio


async def test_await_open_then_aclose(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "a.db")
    await store.aput(("x",), "k", {"a": 1})
    item = await store.aget(("x",), "k")
    assert item is not None and item.value == {"a": 1}
    await store.aclose()
    with pytest.raises(AttributeError, match="async with"):
        _ = SqliteStore.open(tmp_path / "a.db").aput  # type: ignore[attr-defined]


async def test_a_symlink_to_an_open_file_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    async with SqliteStore.open(db):
        os.symlink(db, tmp_path / "link.db")
        with pytest.raises(StoreLockedError):
            async with SqliteStore.open(tmp_path / "link.db"):
                pass


def test_a_foreign_sqlite_file_is_refused_untouched(tmp_path: Path) -> None:
    asyncio.run(_refuse_foreign_files(tmp_path))


async def _refuse_foreign_files(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE items (x)")
    conn.commit()
    conn.close()
    before = foreign.read_bytes()
    with pytest.raises(ValueError):
        async with SqliteStore.open(foreign):
            pass
    assert foreign.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["foreign.db"]
    text = tmp_path / "text.db"
    text.write_text("hello")
    with pytest.raises(ValueError):
        async with SqliteStore.open(text):
            pass
    assert not (tmp_path / "text.db.lock").exists()


def test_sync_calls_after_close_always_raise_store_closed(tmp_path: Path) -> None:
    with SqliteStore.open_sync(tmp_path / "s.db") as store:
        store.put(("x",), "k", {"a": 1})
    errors: list[BaseException] = []

    def put() -> None:
        try:
            store.put(("x",), "k", {"a": 2})
        except BaseException as exc:
            errors.append(exc)

    for _ in range(6):
        thread = threading.Thread(target=put)
        thread.start()
        thread.join()
    assert [type(e) for e in errors] == [StoreClosedError] * 6

"""Opening SqliteStore: the awaitable form, links to an open file, foreign files, after close."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import sqlite3
import sys
import threading
from pathlib import Path

import anyio
import pytest

from memlane import PutOp, SqliteStore, StoreFileMissingError, StoreLockedError
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


async def test_a_hard_link_to_an_open_file_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    async with SqliteStore.open(db) as store:
        await store.aput(("x",), "k", {"a": 1})
        os.link(db, tmp_path / "hard.db")
        with pytest.raises(StoreLockedError, match="hard links"):
            async with SqliteStore.open(tmp_path / "hard.db"):
                pass
        await store.aput(("x",), "k2", {"a": 2})  # the open store was not disturbed
        assert await store.aget(("x",), "k2") is not None


CHILD_OPEN = """
import asyncio, sys
from memlane import SqliteStore, StoreLockedError
async def main():
    try:
        async with SqliteStore.open(sys.argv[1]):
            print("opened")
    except StoreLockedError:
        print("locked")
asyncio.run(main())
"""


@pytest.mark.parametrize("link", ["hard", "symbolic"])
async def test_another_process_opening_a_link_to_an_open_file_is_refused(
    tmp_path: Path, link: str
) -> None:
    db = tmp_path / "a.db"
    other = tmp_path / "other.db"
    async with SqliteStore.open(db) as store:
        await store.aput(("x",), "k", {"a": 1})
        (os.link if link == "hard" else os.symlink)(db, other)
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD_OPEN, str(other), stdout=asyncio.subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(child.communicate(), 60)
        assert out.decode().strip() == "locked"
        await store.aput(("x",), "k2", {"a": 2})
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD_OPEN, str(other), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(child.communicate(), 60)
    assert out.decode().strip() == "opened", "closing the store released the lock"


@pytest.mark.parametrize("loss", ["directory removed", "file moved", "file replaced"])
async def test_writes_fail_once_the_file_is_no_longer_at_its_path(
    tmp_path: Path, loss: str
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    db = folder / "a.db"
    async with SqliteStore.open(db) as store:
        await store.aput(("x",), "k", {"a": 1})
        if loss == "directory removed":
            shutil.rmtree(folder)
        elif loss == "file moved":
            db.rename(tmp_path / "moved.db")
        else:
            db.rename(tmp_path / "moved.db")
            db.write_bytes(b"")
        # unlinked: the very next write fails; moved away: within PATH_CHECK_S (what is
        # written meanwhile is safe in the moved file)
        with anyio.fail_after(10), pytest.raises(
            StoreFileMissingError, match=r"a\.db was deleted, moved or replaced"
        ):
            for n in itertools.count():
                await store.aput(("x",), f"k{n}", {"a": n})
                assert loss != "directory removed", "an unlinked file fails the next write"
                await anyio.sleep(0.05)
        with pytest.raises(StoreFileMissingError):
            await store.abatch([PutOp(("x",), f"b{n}", {"n": n}) for n in range(100)])
        item = await store.aget(("x",), "k")  # reads still answer from the open file
        assert item is not None and item.value == {"a": 1}


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

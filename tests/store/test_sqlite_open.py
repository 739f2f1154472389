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


async def test_a_symlink_to_an_open_file_shares_it(tmp_path: Path) -> None:
    """Two stores of one process on one file (by any name) share it, and closing one leaves
    the other's locks alone: it keeps writing and reading."""
    db = tmp_path / "a.db"
    os.symlink(db, tmp_path / "link.db")
    async with SqliteStore.open(db) as store:
        await store.aput(("x",), "k", {"a": 1})
        for other in (db, tmp_path / "link.db"):
            async with SqliteStore.open(other) as second:
                await second.aput(("x",), other.name, {"a": 2})
                assert await store.aget(("x",), other.name) is not None
            await store.aput(("x",), f"after {other.name}", {"a": 3})  # not disturbed
        assert len(await store.asearch(("x",), limit=10)) == 5
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


async def test_a_hard_linked_file_is_refused(tmp_path: Path) -> None:
    """SQLite names the WAL after the path: two names of one file would not share it."""
    db = tmp_path / "a.db"
    async with SqliteStore.open(db) as store:
        await store.aput(("x",), "k", {"a": 1})
    os.link(db, tmp_path / "hard.db")
    for name in (db, tmp_path / "hard.db"):
        with pytest.raises(ValueError, match="2 hard links"):
            async with SqliteStore.open(name):
                pass
    os.unlink(tmp_path / "hard.db")
    async with SqliteStore.open(db) as store:
        assert await store.aget(("x",), "k") is not None


async def test_exclusive_refuses_links_and_other_stores(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    async with SqliteStore.open(db, exclusive=True) as store:
        await store.aput(("x",), "k", {"a": 1})
        os.symlink(db, tmp_path / "link.db")
        for other in (db, tmp_path / "link.db"):
            with pytest.raises(StoreLockedError, match="exclusive=True"):
                async with SqliteStore.open(other):
                    pass
        await store.aput(("x",), "k2", {"a": 2})  # the open store was not disturbed
        assert await store.aget(("x",), "k2") is not None
    async with SqliteStore.open(db) as store:
        with pytest.raises(StoreLockedError, match="asks for it alone"):
            async with SqliteStore.open(tmp_path / "link.db", exclusive=True):
                pass


CHILD_OPEN = """
import asyncio, sys
from memlane import SqliteStore, StoreLockedError
async def main():
    try:
        async with SqliteStore.open(sys.argv[1], exclusive=sys.argv[2] == "exclusive"):
            print("opened")
    except StoreLockedError:
        print("locked")
asyncio.run(main())
"""


async def _open_in_child(path: Path, mode: str) -> str:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD_OPEN, str(path), mode, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(child.communicate(), 60)
    return out.decode().strip()


async def test_another_process_shares_a_file_unless_one_is_exclusive(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    other = tmp_path / "other.db"
    async with SqliteStore.open(db) as store:
        await store.aput(("x",), "k", {"a": 1})
        os.symlink(db, other)
        assert await _open_in_child(other, "shared") == "opened"
        assert await _open_in_child(other, "exclusive") == "locked"
        await store.aput(("x",), "k2", {"a": 2})
    async with SqliteStore.open(db, exclusive=True):
        assert await _open_in_child(other, "shared") == "locked"
    assert await _open_in_child(other, "exclusive") == "opened", "closing released the lock"


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

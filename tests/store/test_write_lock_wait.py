"""Another connection (another process, a backup tool) holding SQLite's write lock never
freezes the event loop: the writer waits for the lock on its connection's thread."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import anyio
import pytest

from memlane import SqliteStore

pytestmark = pytest.mark.anyio


class Heartbeat:
    """Ticks every 5 ms on the loop; records the longest gap between ticks."""

    def __init__(self, wanted: int) -> None:
        self.ticks = 0
        self.longest = 0.0
        self.reached = anyio.Event()  # set after ``wanted`` ticks
        self._wanted = wanted

    async def run(self) -> None:
        last = anyio.current_time()
        while True:
            await anyio.sleep(0.005)
            now = anyio.current_time()
            self.longest = max(self.longest, now - last)
            self.ticks += 1
            if self.ticks >= self._wanted:
                self.reached.set()
            last = now


def hold_write_lock(path: Path, taken: threading.Event, release: threading.Event) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    taken.set()
    release.wait(30)
    conn.execute("ROLLBACK")
    conn.close()


async def test_a_write_waits_for_another_connections_lock_off_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with SqliteStore.open(path) as store:
        await store.aput(("ns",), "before", {"v": 0})
        taken, release = threading.Event(), threading.Event()
        holder = threading.Thread(target=hold_write_lock, args=(path, taken, release))
        holder.start()
        try:
            await anyio.to_thread.run_sync(taken.wait)
            heartbeat = Heartbeat(wanted=40)
            done = anyio.Event()
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(heartbeat.run)

                async def put() -> None:
                    await store.aput(("ns",), "blocked", {"v": 1})  # small: an inline batch
                    done.set()

                tasks.start_soon(put)
                with anyio.fail_after(10):
                    await heartbeat.reached.wait()  # the loop runs on while the put waits
                assert not done.is_set(), "the lock is still held: the put cannot be committed"
                release.set()
                with anyio.fail_after(10):
                    await done.wait()
                tasks.cancel_scope.cancel()
        finally:
            release.set()
            await anyio.to_thread.run_sync(holder.join)
        assert heartbeat.longest < 1.0, f"the loop froze for {heartbeat.longest:.2f} s"
        item = await store.aget(("ns",), "blocked")
        assert item is not None and item.value == {"v": 1}

"""Following the other processes' commits into this process's vector index and scope map.

Each process sharing a file holds its own in-memory vector index and scope map; gets,
filters and ``list_namespaces`` read the tables and need nothing more. Before a read that
does depend on the in-memory state (a vector or scoped query), :meth:`Follower.catch_up`:

1. asks ``PRAGMA data_version`` on the loop's thread whether any connection committed
   since the last look (microseconds, no thread hop);
2. if so, lists the change log's sequence numbers since the last applied one: when all of
   them are this process's own commits (its writer mirrored those before acknowledging
   them), that is all;
3. otherwise, on a thread, in one read transaction: reads the foreign changes and reloads
   their items from the tables into the index and the map (``changelog.py``), or reloads
   everything when the log was trimmed past the last applied change.

So a write acknowledged by any process before a read starts is visible to that read.

**The mirror lock.** The follower reloads items from the tables; this process's writer
mirrors its own commit from memory. Both hold :attr:`Follower.lock` from before the
writer's ``COMMIT`` until its mirror is applied, and for the follower's whole read-and-apply:
so the follower never reads a row state that the writer then overwrites with an older one
in memory, nor the other way round.

One catch-up runs at a time; a read arriving meanwhile waits for it and looks again.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from pathlib import Path

import aiosqlite
import numpy as np

from memlane.store.sqlite import changelog
from memlane.store.sqlite.changelog import Change
from memlane.store.sqlite.connection import run_on_connection_thread
from memlane.store.sqlite.mirror import Mirror
from memlane.store.sqlite.policies import PROBE_SEQS
from memlane.store.sqlite.schema import READER_PRAGMAS
from memlane.store.types import StoreClosedError

__all__ = ["Follower"]

log = logging.getLogger(__name__)



class Follower:
    """Applies the commits of other processes' writers to this process's in-memory state."""

    def __init__(
        self,
        path: Path,
        conn: aiosqlite.Connection,
        *,
        mirror: Mirror,
        applied: int,
    ) -> None:
        self.lock = threading.Lock()  # the mirror lock: see the module docstring
        self._conn = conn  # read transactions of a catch-up, on its own thread
        # The probe lives on the loop's thread and never waits for a lock (busy_timeout 0).
        self._probe = sqlite3.connect(str(path), isolation_level=None)
        for pragma in READER_PRAGMAS:
            self._probe.execute(pragma)
        self._probe.execute("PRAGMA busy_timeout = 0")
        self._mirror = mirror  # shared with this process's writer
        self.applied = applied  # every change up to this seq is in the index and the map
        self._own: set[int] = set()  # own seqs past ``applied``, already mirrored
        # None: look at the log on the first catch-up (commits may have landed since the
        # snapshot ``applied`` was read in, before this connection existed).
        self._version: int | None = None
        self._running: asyncio.Future[None] | None = None
        self._closed = False
        self.followed = 0  # foreign changes applied (stats and tests)
        self.reloads = 0  # full reloads after falling behind the log's trim

    def committed(self, seq: int) -> None:
        """This process's writer mirrored its own commit ``seq`` (with :attr:`lock` held)."""
        if seq == self.applied + 1:
            self.applied = seq
            while self.applied + 1 in self._own:
                self.applied += 1
                self._own.discard(self.applied)
        elif seq > self.applied:
            self._own.add(seq)

    async def catch_up(self) -> None:
        """Apply every commit made by another process before this call."""
        while self._running is not None:
            await asyncio.shield(self._running)  # then look again: it may have started early
        if self._closed:
            raise StoreClosedError("the store is closed")
        version = self._data_version()
        if version is not None and (version == self._version or self._only_own(version)):
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._running = done
        try:
            await run_on_connection_thread(self._conn, lambda raw: self._follow(raw, version))
        finally:
            self._running = None
            done.set_result(None)

    def close(self) -> None:
        self._closed = True
        self._probe.close()

    # ---- on the loop's thread ------------------------------------------------------------

    def _data_version(self) -> int | None:
        """None when it cannot be told without waiting (busy: a WAL reset, rare)."""
        try:
            return int(self._probe.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.OperationalError:
            return None

    def _only_own(self, version: int) -> bool:
        """Whether everything committed since the last look was this process's own (then
        recorded as seen); False also when that cannot be told without waiting."""
        if not self.lock.acquire(blocking=False):
            return False
        try:
            try:
                seqs = changelog.seqs_since(self._probe, self.applied, PROBE_SEQS + 1)
            except sqlite3.OperationalError:
                return False  # busy (a WAL reset, rare): the thread will wait for it
            if len(seqs) > PROBE_SEQS:
                return False  # a long way behind: not work for the loop's thread
            if seqs and seqs[0] != self.applied + 1:
                return False  # the log was trimmed past what this process applied
            if any(seq not in self._own for seq in seqs):
                return False
            if seqs:
                self.applied = seqs[-1]
                self._own.difference_update(seqs)
            self._version = version
            return True
        finally:
            self.lock.release()

    # ---- on the follow connection's thread ------------------------------------------------

    def _follow(self, raw: sqlite3.Connection, version: int | None) -> None:
        with self.lock:
            raw.execute("BEGIN")  # one snapshot for the log and the rows it names
            try:
                changes = changelog.read_since(raw, self.applied)
                if changes and changes[0].seq != self.applied + 1:
                    self._reload(raw)  # trimmed past what this process applied
                else:
                    foreign = [change for change in changes if change.seq not in self._own]
                    if foreign:
                        self._apply(raw, foreign, changes)
                if changes:
                    self.applied = changes[-1].seq
                    self._own = {seq for seq in self._own if seq > self.applied}
            finally:
                raw.execute("COMMIT")
            self._version = version

    def _apply(
        self, raw: sqlite3.Connection, foreign: list[Change], window: list[Change]
    ) -> None:
        """Apply ``foreign`` changes; ``window``: every change read, own ones included (an
        item another process created may have been deleted since by this one's writer)."""
        ids = np.unique(np.concatenate([change.item_ids for change in foreign])).tolist()
        removed = [pair for change in foreign for pair in change.removed]
        # ids are never reused: an id deleted anywhere in the window is gone for good
        gone = {item_id for change in window for _, item_id in change.removed}
        added = [pair for change in foreign for pair in change.added if pair[1] not in gone]
        self._mirror.reload(raw, ids, added, removed)
        self.followed += len(foreign)

    def _reload(self, raw: sqlite3.Connection) -> None:
        log.info("memlane: this process fell behind the change log; reloading its index")
        self._mirror.reload_all(raw)
        self._own.clear()
        self.reloads += 1

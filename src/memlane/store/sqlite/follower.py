"""Following the other processes' commits into this process's vector index and scope map.

Each process sharing a file holds its own in-memory vector index and scope map; gets,
filters and ``list_namespaces`` read the tables and need nothing more. Before a read that
does depend on the in-memory state (a vector or scoped query), :meth:`Follower.catch_up`:

1. asks ``PRAGMA data_version`` on the loop's thread whether any connection committed
   since the last look (microseconds, no thread hop);
2. if so, on the loop's thread within a bounded budget (as small reads do, ``inline.py``),
   in one read transaction: lists the change log's sequence numbers since the last applied
   one; when all of them are this process's own commits (its writer mirrored those before
   acknowledging them), that is all; when the others' changes name at most
   ``INLINE_FOLLOW_ITEMS`` items, it reads those items from the tables and applies them;
3. otherwise (more items, the budget ran out, a lock was taken), the same on a thread,
   or a reload of everything when the log was trimmed past the last applied change.

So a write acknowledged by any process before a read starts is visible to that read.
Reading and applying are separate steps (``Mirror.read``, ``Mirror.reload``): a read that
ran out of budget changed nothing, and goes to the thread as it is.

**The mirror lock.** The follower reloads items from the tables; this process's writer
mirrors its own commit from memory. Both hold :attr:`Follower.lock` from before the
writer's ``COMMIT`` until its mirror is applied, and for the follower's whole read-and-apply:
so the follower never reads a row state that the writer then overwrites with an older one
in memory, nor the other way round. The loop's thread only ever tries the lock.

One catch-up on the thread runs at a time, to its end even when the read that started it
gives up. A read arriving meanwhile waits for it; if that catch-up finished and its snapshot
was taken after the read began, it covers the read, which then waits no longer (else, or
when it failed, the read looks again).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import aiosqlite
import numpy as np

from memlane.store.sqlite import changelog
from memlane.store.sqlite.changelog import Change
from memlane.store.sqlite.connection import run_on_connection_thread
from memlane.store.sqlite.inline import InlineReader, TooMuchWork
from memlane.store.sqlite.mirror import Mirror, Reload
from memlane.store.sqlite.policies import INLINE_FOLLOW_ITEMS, INLINE_FOLLOW_WINDOW, PROBE_SEQS
from memlane.store.sqlite.schema import FOLLOWER_PRAGMAS
from memlane.store.types import StoreClosedError

__all__ = ["Follower"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Caught:
    """What one read of the log found: the last seq it saw (None: nothing new), the
    others' changes read from the tables (None: none), or that the log was trimmed past
    what this process applied (``behind``: reload everything)."""

    last: int | None = None
    reload: Reload | None = None
    followed: int = 0  # how many of the others' changes ``reload`` holds
    behind: bool = False


class _Run:
    """A catch-up in progress on the thread: readers wait for ``done``; ``snapshot_from``:
    a time before its read transaction's snapshot (set by the thread)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.done: asyncio.Future[None] = loop.create_future()
        self.snapshot_from = float("inf")
        self.finished = False  # set by the thread once its read-and-apply completed


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
        # Lives on the loop's thread: never waits for a lock, bounded work (``inline.py``).
        self._inline = InlineReader(path, pragmas=FOLLOWER_PRAGMAS)
        self._mirror = mirror  # shared with this process's writer
        self.applied = applied  # every change up to this seq is in the index and the map
        self._own: set[int] = set()  # own seqs past ``applied``, already mirrored
        # None: look at the log on the first catch-up (commits may have landed since the
        # snapshot ``applied`` was read in, before this connection existed).
        self._version: int | None = None
        self._running: _Run | None = None
        self._closed = False
        self.followed = 0  # foreign changes applied (stats and tests)
        self.followed_inline = 0  # of which applied on the loop's thread
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
        asked = time.monotonic()
        while self._running is not None:
            running = self._running
            await asyncio.shield(running.done)
            if running.finished and running.snapshot_from > asked:
                return  # it applied a snapshot taken after this call began: it covers it
        if self._closed:
            raise StoreClosedError("the store is closed")
        version = self._inline.data_version()
        if version is not None and (version == self._version or self._follow_inline(version)):
            return
        running = self._running = _Run(asyncio.get_running_loop())
        job = asyncio.ensure_future(
            run_on_connection_thread(self._conn, lambda raw: self._follow(raw, version, running))
        )

        def finish(job: asyncio.Future[None]) -> None:  # when the thread is done, not when
            if not job.cancelled():  # the caller gives up (a cancelled search, a timeout)
                job.exception()  # the caller sees it, if it still waits; others look again
            if self._running is running:
                self._running = None
            running.done.set_result(None)

        job.add_done_callback(finish)
        await asyncio.shield(job)

    def close(self) -> None:
        self._closed = True
        self._inline.close()

    # ---- on the loop's thread ------------------------------------------------------------

    def _follow_inline(self, version: int) -> bool:
        """Catch up here when that is small work; False when it is for the thread."""
        if not self.lock.acquire(blocking=False):
            return False  # this process's writer is mirroring: the thread will wait for it
        try:
            try:
                caught = self._inline.run(lambda raw: self._read(raw, INLINE_FOLLOW_ITEMS))
            except TooMuchWork:
                return False
            self._apply(caught)
            self.followed_inline += caught.followed
            self._version = version
            return True
        finally:
            self.lock.release()

    # ---- on the follow connection's thread ------------------------------------------------

    def _follow(self, raw: sqlite3.Connection, version: int | None, running: _Run) -> None:
        with self.lock:
            running.snapshot_from = time.monotonic()
            caught = self._read(raw, None)
            if caught.behind:
                self._reload_all(raw)
            else:
                self._apply(caught)
            self._version = version
            running.finished = True

    # ---- either thread, with the mirror lock held -----------------------------------------

    def _read(self, raw: sqlite3.Connection, limit: int | None) -> _Caught:
        """In one read transaction: what the log holds past ``applied``, and the others'
        changes from the tables. ``limit``: at most that many items, or :class:`TooMuchWork`
        (nothing in memory has changed then)."""
        raw.execute("BEGIN")  # one snapshot for the log and the rows it names
        try:
            seqs = changelog.seqs_since(raw, self.applied, PROBE_SEQS + 1)
            if limit is not None and len(seqs) > PROBE_SEQS:
                raise TooMuchWork("a long way behind the log")
            if not seqs:
                return _Caught()
            if seqs[0] != self.applied + 1:
                if limit is not None:
                    raise TooMuchWork("behind the log's trim")
                return _Caught(behind=True)
            own = self._own
            if len(seqs) <= PROBE_SEQS and all(seq in own for seq in seqs):
                return _Caught(last=seqs[-1])
            if limit is not None:
                # the rows read here, own ones included, stay small payloads for the loop
                logged = changelog.ids_logged_since(raw, self.applied)
                if logged > INLINE_FOLLOW_WINDOW * limit:
                    raise TooMuchWork(f"the log names {logged} items since the last look")
            changes = changelog.read_since(raw, self.applied)
            foreign = [change for change in changes if change.seq not in own]
            reload = self._read_foreign(raw, foreign, changes, limit) if foreign else None
            return _Caught(last=changes[-1].seq, reload=reload, followed=len(foreign))
        finally:
            raw.execute("COMMIT")

    def _read_foreign(
        self,
        raw: sqlite3.Connection,
        foreign: list[Change],
        window: list[Change],
        limit: int | None,
    ) -> Reload:
        """The tables' state of ``foreign`` changes' items; ``window``: every change read,
        own ones included (an item another process created may have been deleted since by
        this one's writer)."""
        ids = np.unique(np.concatenate([change.item_ids for change in foreign])).tolist()
        if limit is not None and len(ids) > limit:
            raise TooMuchWork(f"{len(ids)} items changed elsewhere")
        removed = [pair for change in foreign for pair in change.removed]
        # ids are never reused: an id deleted anywhere in the window is gone for good
        gone = {item_id for change in window for _, item_id in change.removed}
        added = [pair for change in foreign for pair in change.added if pair[1] not in gone]
        return self._mirror.read(raw, ids, added, removed)

    def _apply(self, caught: _Caught) -> None:
        """Memory only: the others' changes into the index and the map; ``applied`` on."""
        if caught.reload is not None:
            self._mirror.reload(caught.reload)
            self.followed += caught.followed
        if caught.last is not None:
            self.applied = caught.last
            self._own = {seq for seq in self._own if seq > caught.last}

    def _reload_all(self, raw: sqlite3.Connection) -> None:
        log.info("memlane: this process fell behind the change log; reloading its index")
        raw.execute("BEGIN")  # the tables and the log's position in one snapshot
        try:
            latest = changelog.latest_seq(raw)
            self._mirror.reload_all(raw)
        finally:
            raw.execute("COMMIT")
        self.applied = latest
        self._own.clear()  # every own commit was mirrored before we took the lock
        self.reloads += 1

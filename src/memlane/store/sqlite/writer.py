"""The writer actor: the one task that owns the write connection.

Callers validate and serialise in their own task, then post a request and await its
future. The writer takes everything waiting (up to ``max_batch``), and for that batch:

1. embeds all new texts in one call (per request only to isolate a failing one);
2. coalesces ops on the same key (the last wins) into a ``Batch``;
3. runs it in one ``BEGIN IMMEDIATE`` transaction, one thread hop or inline on the loop
   when small: ``transaction.apply`` (SQL only) returns the ``Changes``;
4. applies the committed changes to the vector index and scope map on that same thread
   (``mirror.py``), holding the follower's lock from before ``COMMIT`` (``follower.py``);
5. resolves each caller's future, so an acknowledged write is visible to every reader.

One bad request fails only its own caller: a failed embed call is retried on halves of the
batch until the requests at fault are found (``isolate.py``), a failed transaction request
by request. If the writer itself stops, every queued caller gets an error instead
of waiting forever.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import sqlite3
import time
from functools import partial
from pathlib import Path
from typing import TypeVar

import aiosqlite

from memlane.store.durable_writer import DurableWriter, PreparedBatch
from memlane.store.embedding_stage import Entry, coalesce
from memlane.store.indexing import Indexer
from memlane.store.mailbox import MailboxClosed
from memlane.store.settle import settle_fairly
from memlane.store.sqlite import changelog
from memlane.store.sqlite.connection import run_on_connection_thread
from memlane.store.sqlite.follower import Follower
from memlane.store.sqlite.lease import release as release_lease
from memlane.store.sqlite.mirror import Mirror, MirrorError
from memlane.store.sqlite.policies import (
    CHECKPOINT_BYTES,
    INLINE_COMMIT_ROWS,
    LOG_KEEP_S,
    LOG_TRIM_EVERY_S,
    MIRROR_LOCK_WAIT_S,
    PATH_CHECK_S,
    WRITE_LOCK_POLL_S,
)
from memlane.store.sqlite.transaction import Batch, Changes, Layout, SweepPlan, apply
from memlane.store.timestamps import Clock
from memlane.store.types import StoreClosedError
from memlane.store.write_requests import (
    SweepRequest,
    TouchRequest,
    WriteRequest,
    WriterError,
)

__all__ = [
    "StoreFileMissingError",
    "SweepRequest",
    "TouchRequest",
    "WriteRequest",
    "Writer",
    "WriterError",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


class StoreFileMissingError(WriterError):
    """The store's file is no longer at its path (deleted, its directory removed, moved or
    replaced): writes would go to a file nobody can open again, so they are refused."""


class _Busy(Exception):
    """An inline commit found the write lock taken (by another connection or process)."""


def _writer_error(exc: MirrorError, what: str) -> WriterError:
    cause = exc.__cause__
    error = WriterError(f"the store's writer failed on {what}: {cause!r}")
    error.__cause__ = cause
    return error


def _sweep_plan(sweeps: list[SweepRequest]) -> SweepPlan | None:
    """The sweep a batch's requests ask for, if any."""
    if not sweeps:
        return None
    lease = next((r.lease for r in sweeps if r.lease is not None), None)
    return SweepPlan(any(r.lease is None for r in sweeps), lease)


class Writer(DurableWriter):
    """Owns the write connection; see the module docstring for one batch's life."""

    def __init__(
        self,
        conn: aiosqlite.Connection,
        *,
        indexer: Indexer | None,
        mirror: Mirror,
        clock: Clock,
        capacity: int = 10_000,
        max_batch: int = 2_048,
        follower: Follower | None = None,
        log_changes: bool = False,
        inline_max: int = INLINE_COMMIT_ROWS,
        checkpoint_bytes: int = CHECKPOINT_BYTES,
        defer_embedding: bool = False,
        busy_timeout_ms: int = 5_000,
        file: tuple[Path, tuple[int, int], int] | None = None,
    ) -> None:
        self._conn = conn
        self._file = file  # the store's path, (st_dev, st_ino) and a descriptor: _check_file
        self._next_path_check = 0.0
        self._file_gone = False
        # The connection itself never waits for the write lock (busy_timeout 0): an inline
        # commit must not, and the thread path waits in ``_begin_waiting``.
        self._busy_timeout_ms = int(busy_timeout_ms)
        conn._conn.execute("PRAGMA busy_timeout = 0")
        # index=False on an indexed file: rows keep their vector bookkeeping (stale vectors
        # go, ids are kept) and each written item is marked for embedding (``pending.py``).
        self._raw: sqlite3.Connection = conn._conn  # for inline commits of small batches
        # Vector blobs make rows ~1.5 KB each: a smaller batch still commits in microseconds.
        self._inline_max = inline_max if indexer is None else inline_max // 4  # see policies
        self._checkpoint_bytes = checkpoint_bytes
        self._since_checkpoint = 0
        self._mirror = mirror  # the vector index and scope map, shared with the follower
        self._layout = Layout(
            indexed=indexer is not None or defer_embedding,
            mark_pending=defer_embedding,
            log=log_changes,
        )
        # Other processes follow this file: each transaction logs what it changed
        # (``changelog.py``) and is mirrored here under the follower's lock.
        self._follower = follower
        self._logged: collections.deque[tuple[float, int]] = collections.deque()  # for trims
        self._next_trim = 0.0
        super().__init__(indexer=indexer, clock=clock, capacity=capacity, max_batch=max_batch)
        self.sweeps = 0  # how many transactions swept (for tests and stats)

    # ---- what callers use ----------------------------------------------------------------

    async def sweep(self, lease: tuple[str, float] | None = None) -> int:
        """Delete expired items now (with ``lease``: only while holding the sweeper lease);
        return how many."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        try:
            self.mailbox.put_nowait(SweepRequest(future, lease))
        except MailboxClosed:
            raise StoreClosedError("the store is closed") from None
        return await future

    async def _finish(self, batch: PreparedBatch) -> None:
        """Commit a prepared batch, mirror it into the vector index, resolve its callers."""
        writes, failed = batch.writes, batch.failed
        now = self._clock.now()
        try:
            changes = await self._commit(
                Batch(batch.survivors, batch.stamps, batch.touches, _sweep_plan(batch.sweeps), now)
            )
        except MirrorError:
            raise  # committed: retrying request by request would write it all again
        except Exception as exc:
            if len(writes) - len(failed) <= 1 and not batch.touches and not batch.sweeps:
                for n in range(len(writes)):
                    failed.setdefault(n, exc)
                changes = Changes()
            else:
                changes = await self._commit_one_by_one(
                    batch.entries, failed, batch.touches, batch.sweeps, now
                )
        self.batches += 1
        await self._checkpoint_if_due(changes, batch.survivors)
        for sweep in batch.sweeps:
            if not sweep.future.done():
                sweep.future.set_result(changes.swept)
        await settle_fairly([(request.future, failed.get(n)) for n, request in enumerate(writes)])

    # ---- the transaction -----------------------------------------------------------------

    async def _commit(self, batch: Batch) -> Changes:
        follower = self._follower

        def transaction(raw: sqlite3.Connection, how: str) -> Changes:
            """``how``: "inline" on the loop (never waits: ``_Busy`` instead), "thread"
            (waits for SQLite's lock, briefly for the follower's), "locked" (the follower's
            lock first, then SQLite's: after "thread" found the follower busy)."""
            self._check_file()
            locked = False
            try:
                if how == "locked" and follower is not None:
                    locked = follower.lock.acquire()
                if how == "inline":
                    try:
                        raw.execute("BEGIN IMMEDIATE")
                    except sqlite3.OperationalError as exc:
                        if _is_busy(exc):
                            raise _Busy from exc  # nothing written: wait on the thread
                        raise
                else:
                    _begin_waiting(raw, self._busy_timeout_ms / 1000)
                changes = apply(raw, batch, self._layout)
                if changes.seq:
                    self._trim_log(raw, changes.seq)
                if follower is not None and not locked:
                    # Held from before COMMIT until mirrored: see follower.py. Holding
                    # SQLite's write lock, wait for it only briefly: a long catch-up
                    # would stall every process's writes; roll back and queue for it.
                    if how == "inline":
                        locked = follower.lock.acquire(blocking=False)
                    else:
                        locked = follower.lock.acquire(timeout=MIRROR_LOCK_WAIT_S)
                    if not locked:
                        raise _Busy
                raw.execute("COMMIT")
            except BaseException:
                if raw.in_transaction:
                    raw.execute("ROLLBACK")
                if locked:
                    assert follower is not None
                    follower.lock.release()
                raise
            if changes.layout is not None:
                self._layout = changes.layout  # another process gave the file an index
            try:
                # Mirrored here, on the connection's thread: the event loop stays free for
                # other tasks meanwhile (the index takes writes from any thread). The
                # repair too, under the lock: it reloads from the tables, as a follow does.
                self._mirror.apply(changes)
                self._mirror.repair(raw)
            finally:
                if locked:
                    assert follower is not None
                    if changes.seq:
                        follower.committed(changes.seq)
                    follower.lock.release()
            if changes.swept_now:
                self.sweeps += 1
            return changes

        small = len(batch.entries) + len(batch.touches) <= self._inline_max
        if self._inline_max and small and batch.sweep is None and not self._mirror.unmirrored:
            # A small batch commits in microseconds: less than the thread hop would cost.
            # No checkpoint (see _checkpoint_if_due) nor repair runs here. The loop never
            # waits for a lock: the batch goes to the connection's thread instead.
            try:
                return transaction(self._raw, "inline")
            except _Busy:
                pass
        try:
            return await run_on_connection_thread(self._conn, partial(transaction, how="thread"))
        except _Busy:
            return await run_on_connection_thread(self._conn, partial(transaction, how="locked"))

    def _trim_log(self, raw: sqlite3.Connection, seq: int) -> None:
        """Trim the change log to the last ``LOG_KEEP_S`` of this writer's commits, at most
        every ``LOG_TRIM_EVERY_S`` (inside the transaction that logged ``seq``)."""
        clock = time.monotonic()
        self._logged.append((clock, seq))
        if clock < self._next_trim:
            return
        self._next_trim = clock + LOG_TRIM_EVERY_S
        below = 0
        while self._logged and self._logged[0][0] < clock - LOG_KEEP_S:
            below = self._logged.popleft()[1]
        if below:
            changelog.trim(raw, below)

    async def give_up_lease(self, owner: str) -> None:
        """Release the sweeper lease (the store closing, after the writer stopped), so that
        another process takes the sweeping over at its next interval."""

        def release(raw: sqlite3.Connection) -> None:
            _begin_waiting(raw, self._busy_timeout_ms / 1000)
            try:
                release_lease(raw, owner)
                raw.execute("COMMIT")
            except BaseException:
                raw.execute("ROLLBACK")
                raise

        await run_on_connection_thread(self._conn, release)

    def _check_file(self) -> None:
        """Refuse to commit into a file that is no longer the one at the store's path.

        An unlinked file (deleted, its directory removed, replaced) would take the commit
        and lose it when the process exits: its link count, read from the open descriptor,
        is checked before every commit. A file moved elsewhere keeps its data; the path
        itself is looked up at most every ``PATH_CHECK_S``.
        """
        if self._file is None:
            return
        path, identity, fd = self._file
        gone = self._file_gone or os.fstat(fd).st_nlink == 0
        now = time.monotonic()
        if not gone and now >= self._next_path_check:
            self._next_path_check = now + PATH_CHECK_S
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                gone = True
            else:
                gone = (stat.st_dev, stat.st_ino) != identity
        if gone:
            self._file_gone = True  # for good: the path never turns back into this file
            raise StoreFileMissingError(
                f"the store file {path} was deleted, moved or replaced while the store was "
                f"open (was its directory removed?); this write was not committed. Close "
                f"the store and open it again at a path that exists"
            )

    async def _checkpoint_if_due(self, changes: Changes, entries: list[Entry]) -> None:
        """Checkpoint the WAL on the connection's thread after about ``checkpoint_bytes``.

        Automatic checkpoints are off on the write connection, so that an inline commit
        never turns into copying megabytes on the event loop. The WAL file's size is no
        guide (it is reused, not shrunk), so the writer counts what it wrote.
        """
        written = changes.written + sum(vectors.nbytes for _, vectors in changes.upserted)
        self._since_checkpoint += written * 2  # pages of the table and its indexes
        if self._since_checkpoint >= self._checkpoint_bytes:
            self._since_checkpoint = 0
            try:
                await run_on_connection_thread(self._conn, self._checkpoint_wal)
            except Exception as exc:
                # The batch is committed (durable in the WAL): its callers succeed. Only
                # the WAL keeps growing until a checkpoint works; retry after a quarter more.
                self._since_checkpoint = self._checkpoint_bytes - self._checkpoint_bytes // 4
                log.warning(
                    "memlane: the WAL checkpoint failed (%r); committed writes are safe in "
                    "the WAL, the checkpoint is retried later", exc,
                )

    @staticmethod
    def _checkpoint_wal(raw: sqlite3.Connection) -> None:
        raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    async def _commit_one_by_one(
        self,
        entries: list[Entry],
        failed: dict[int, BaseException],
        touches: list[tuple[float, int]],
        sweeps: list[SweepRequest],
        now: float,
    ) -> Changes:
        """After a failed batch transaction: one transaction per request, to find the bad one."""
        total = Changes()
        for request in sorted({e.request for e in entries} - set(failed)):
            own = coalesce([e for e in entries if e.request == request], failed)
            stamps = [self._clock.next_stamp() for _ in own]
            try:
                await self._embed_alone(own)
                changes = await self._commit(Batch(own, stamps, now=now))
            except MirrorError as exc:
                # Committed, but not mirrored: this caller learns the writer failed on its
                # write; those committed and mirrored before it keep their success.
                failed[request] = _writer_error(exc, "this write")
                continue
            except Exception as exc:
                failed[request] = exc
                continue
            total.upserted.extend(changes.upserted)
            total.removed.extend(changes.removed)
        if touches or sweeps:
            try:
                changes = await self._commit(Batch([], [], touches, _sweep_plan(sweeps), now))
            except Exception as exc:
                error = _writer_error(exc, "this sweep") if isinstance(exc, MirrorError) else exc
                for sweep in sweeps:
                    if not sweep.future.done():
                        sweep.future.set_exception(error)
            else:
                total.removed.extend(changes.removed)
                total.swept = changes.swept
        return total

def _is_busy(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY, or one of its extended codes (BUSY_RECOVERY, BUSY_SNAPSHOT, ...)."""
    return exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY


def _begin_waiting(raw: sqlite3.Connection, wait_s: float) -> None:
    """``BEGIN IMMEDIATE``, retrying while another connection holds the write lock, for up
    to ``wait_s`` (on the connection's thread, never the loop's)."""
    deadline = time.monotonic() + wait_s
    pause = WRITE_LOCK_POLL_S[0]
    while True:
        try:
            raw.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            left = deadline - time.monotonic()
            if not _is_busy(exc) or left <= 0:
                raise
        time.sleep(min(pause, left))
        pause = min(pause * 2, WRITE_LOCK_POLL_S[1])

"""SqliteStore: a durable store; writes go through one batching writer, reads never do.

Open it with ``async with SqliteStore.open(path) as store`` (or ``open_sync`` in scripts).
Any number of processes may open one file at once (``uvicorn --workers 4``): each has its
own writer, readers and vector index, writes are serialised by SQLite's write lock, and
each process follows the others' commits (``follower.py``; docs/deployment.md).
``exclusive=True`` asks for the file alone instead (:class:`StoreLockedError` otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import anyio

from memlane.store.durable_store import DurableStore
from memlane.store.indexing import Indexer
from memlane.store.loop_bound import Opening
from memlane.store.ops import (
    PreparedGet,
    PreparedList,
    PreparedSearch,
)
from memlane.store.sqlite import changelog
from memlane.store.sqlite.connection import connect, run_on_connection_thread
from memlane.store.sqlite.follower import Follower
from memlane.store.sqlite.inline import InlineReader
from memlane.store.sqlite.mirror import Mirror
from memlane.store.sqlite.pending import embed_pending
from memlane.store.sqlite.policies import (
    CLOSE_GIVE_UP_S,
    FOLLOW_EVERY_S,
    INLINE_COMMIT_ROWS,
    SWEEPER_LEASE_INTERVALS,
)
from memlane.store.sqlite.reader import Readers
from memlane.store.sqlite.schema import (
    FOLLOWER_PRAGMAS,
    Synchronous,
    apply_migrations,
    check_index,
    configure,
    recorded_index,
)
from memlane.store.sqlite.scopes import ScopeMap
from memlane.store.sqlite.stored_vectors import load_vectors
from memlane.store.sqlite.writer import Writer
from memlane.store.timestamps import Clock
from memlane.store.types import (
    IndexConfig,
    Item,
    SearchItem,
    StoreClosedError,
    TTLConfig,
)
from memlane.vectors import VectorIndex

__all__ = ["SqliteStore", "StoreLockedError"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class StoreLockedError(RuntimeError):
    """The file is open with ``exclusive=True`` elsewhere, or open at all when this open
    asked for ``exclusive=True``."""


@dataclass(slots=True)
class _Held:
    fd: int
    stores: int
    exclusive: bool


class _FileLock:
    """A ``flock`` on the database file itself, held until the store closes: shared by
    default (any number of processes open one file together), exclusive with
    ``exclusive=True``.

    Locking the file, not a name, covers every way to reach it: a symlink, a hard link,
    another relative path. The OS drops the lock if the process dies. ``flock`` and the
    POSIX locks SQLite takes do not interact, but closing any descriptor of a file drops
    this process's POSIX locks on it: so a process keeps one descriptor per store file,
    shared by its stores on that file (counted), closed after the last one's connections.
    """

    # (st_dev, st_ino) of the store files this process has open -> their one descriptor.
    _held: ClassVar[dict[tuple[int, int], _Held]] = {}
    _held_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, db_path: Path, *, exclusive: bool = False) -> None:
        self.db_path = db_path
        self.exclusive = exclusive
        self._fd: int | None = None
        self.inode: tuple[int, int] | None = None

    def acquire(self) -> None:
        """Create the file if needed (an empty file is a new database) and lock it."""
        with self._held_lock:
            try:
                stat = os.stat(self.db_path)
            except FileNotFoundError:
                stat = None
            if stat is not None and stat.st_nlink > 1:
                raise _hard_linked(self.db_path, stat.st_nlink)
            if stat is not None and (stat.st_dev, stat.st_ino) in self._held:
                self._share((stat.st_dev, stat.st_ino))
                return
            # Only now may a descriptor of it be opened and closed: no store of this
            # process has SQLite locks on it.
            _refuse_foreign(self.db_path)
            fd = os.open(self.db_path, os.O_RDWR | os.O_CREAT, 0o644)
            fstat = os.fstat(fd)
            inode = (fstat.st_dev, fstat.st_ino)
            if fstat.st_nlink > 1:
                os.close(fd)
                raise _hard_linked(self.db_path, fstat.st_nlink)
            if inode in self._held:  # the path was swapped for a file we hold, meanwhile
                self._share(inode)  # fd stays open: closing it would drop that store's locks
                return
            mode = fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # held by another process: no SQLite lock of ours on it
                raise self._locked("another process") from None
            self._held[inode] = _Held(fd, 1, self.exclusive)
            self._fd, self.inode = fd, inode

    def _share(self, inode: tuple[int, int]) -> None:
        held = self._held[inode]
        if held.exclusive or self.exclusive:
            raise self._locked("another store of this process")
        held.stores += 1
        self._fd, self.inode = held.fd, inode

    def identity(self) -> tuple[Path, tuple[int, int], int] | None:
        """The path, (st_dev, st_ino) and the lock's descriptor of the locked file."""
        if self._fd is None or self.inode is None:
            return None
        return self.db_path, self.inode, self._fd

    def _locked(self, where: str) -> StoreLockedError:
        if self.exclusive:
            return StoreLockedError(
                f"{self.db_path} is already open in {where} (symlinks and hard links "
                f"included), and exclusive=True asks for it alone; open it without "
                f"exclusive=True to share it"
            )
        return StoreLockedError(
            f"{self.db_path} is open with exclusive=True in {where} (symlinks and hard "
            f"links included); that store must close before this one can open the file"
        )

    def release(self) -> None:
        if self._fd is None or self.inode is None:
            return
        with self._held_lock:
            held = self._held[self.inode]
            held.stores -= 1
            if not held.stores:
                del self._held[self.inode]
                fcntl.flock(held.fd, fcntl.LOCK_UN)
                os.close(held.fd)
        self._fd = self.inode = None


def _hard_linked(path: Path, links: int) -> ValueError:
    return ValueError(
        f"{path} has {links} hard links: SQLite keeps a database's WAL beside the name it "
        f"was opened by, so stores opened by two names of one file would not see each "
        f"other's commits (and could corrupt it). Open it by one name (a symlink is fine) "
        f"and remove the other links"
    )


class SqliteStore(DurableStore[Writer]):
    """The contract on a SQLite file (WAL): see CONTRACT.md section 2 and docs/sqlite.md."""

    def __init__(
        self,
        *,
        path: Path,
        index_config: IndexConfig | None,
        ttl_config: TTLConfig | None,
        indexer: Indexer | None,
        writer: Writer,
        readers: Readers,
        clock: Clock,
    ) -> None:
        self.path = path
        self._clock = clock
        self.index_config = index_config
        self.ttl_config = ttl_config
        self._indexer = indexer
        self._queries = True  # False when opened with index=False: ``query=`` raises
        self._writer = writer
        self._readers = readers
        self._bind_to_running_loop(f"at {path}")
        self._closing: asyncio.Task[None] | None = None
        self._resources = contextlib.AsyncExitStack()  # connections and the lock: see _open
        self._tasks: list[asyncio.Task[None]] = []
        self._sweeper: str | None = None  # this store's sweeper lease owner, once it sweeps

    # ---- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str], /, **options: Any) -> Opening[SqliteStore]:
        """Open (creating or upgrading) the store at ``path``: see :meth:`_open` for options.

        Either ``async with SqliteStore.open(path) as store:`` (closed on exit) or
        ``store = await SqliteStore.open(path)`` and later ``await store.aclose()``.
        """
        return Opening(lambda: cls._open(path, **options), "SqliteStore.open(path)")

    @classmethod
    async def _open(
        cls,
        path: str | os.PathLike[str],
        *,
        index: IndexConfig | dict[str, Any] | Literal[False] | None = None,
        ttl: TTLConfig | dict[str, Any] | None = None,
        synchronous: Synchronous = "NORMAL",
        readers: int = 2,
        busy_timeout_ms: int = 5_000,
        mailbox_capacity: int = 10_000,
        max_batch: int = 2_048,
        clock: Callable[[], float] | None = None,
        inline_reads: bool = True,
        exclusive: bool = False,
    ) -> SqliteStore:
        """Open (creating or upgrading) the store at ``path``; ``aclose`` closes it.

        ``synchronous="NORMAL"`` (default): a commit survives a crash of the process; a
        power loss may undo the last few commits, never corrupt the file. ``"FULL"`` also
        survives power loss, at the cost of an fsync per batch.

        ``inline_reads`` (default on): small reads (a get, one namespace) run on the loop's
        thread within a bounded number of SQLite steps instead of hopping to a reader
        thread; larger ones still go to the ``readers`` pool (see ``sqlite/inline.py``).

        ``exclusive``: refuse to share the file with other stores (``StoreLockedError``);
        by default any number of processes open it together (docs/deployment.md).

        ``index``: the file records the dims and fields it was indexed with; another config,
        or none, raises ``IndexConfigError``. ``index=False`` opens an indexed file without
        its embedder: ``query=`` raises, and what is written is embedded at the next open
        with the index (before that open returns).
        """
        db_path = _check_path(path)
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be 'NORMAL' or 'FULL', got {synchronous!r}")
        if isinstance(readers, bool) or not isinstance(readers, int) or readers < 1:
            raise ValueError(f"readers must be a positive int, got {readers!r}")
        index_disabled = index is False
        index_config = None if index is False else IndexConfig.coerce(index)
        ttl_config = TTLConfig.coerce(ttl)
        indexer = Indexer(index_config) if index_config else None
        lock = _FileLock(db_path, exclusive=bool(exclusive))
        # Each resource has one owner: this stack, until the store takes it whole. Closed in
        # reverse order (connections before the lock), on failure here or at ``aclose``.
        resources = contextlib.AsyncExitStack()
        try:
            await anyio.to_thread.run_sync(lock.acquire)
            resources.callback(lock.release)
            store_clock = Clock(clock)
            writer_conn = await connect(db_path)
            resources.push_async_callback(writer_conn.close)

            def prepare(raw: sqlite3.Connection) -> tuple[int, bool, bool]:
                configure(raw, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms)
                apply_migrations(raw, store_clock.next_stamp())
                raw.execute("BEGIN IMMEDIATE")  # processes opening at once: one at a time
                try:
                    check_index(raw, index_config, disabled=index_disabled, path=str(db_path))
                    defer = index_disabled and recorded_index(raw) is not None
                    (pending,) = raw.execute(
                        "SELECT EXISTS(SELECT 1 FROM pending_vectors)"
                    ).fetchone()
                    (newest,) = raw.execute("SELECT MAX(updated_at) FROM items").fetchone()
                    raw.execute("COMMIT")
                except BaseException:
                    raw.execute("ROLLBACK")
                    raise
                return int(newest or 0), defer, bool(pending)

            newest_stamp, defer, pending = await run_on_connection_thread(writer_conn, prepare)
            store_clock.observe(newest_stamp)
            if indexer is not None and pending:
                await embed_pending(writer_conn, indexer)
            reader_conns = []
            for _ in range(readers):
                conn = await connect(db_path, read_only=True)
                resources.push_async_callback(conn.close)
                await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
                reader_conns.append(conn)
            vectors = scopes = follower = None
            if index_config is not None:
                config = index_config
                vectors = VectorIndex(config.dims, ann=config.ann, distance=config.distance)
                scopes = ScopeMap()
            mirror = Mirror(vectors, scopes)
            if index_config is not None:

                def load(raw: sqlite3.Connection) -> int:
                    assert vectors is not None and scopes is not None
                    raw.execute("BEGIN")  # one snapshot: the tables and the log's position
                    try:
                        applied = changelog.latest_seq(raw)
                        load_vectors(raw, vectors)
                        scopes.load(raw)
                    finally:
                        raw.execute("COMMIT")
                    return applied

                applied = await run_on_connection_thread(writer_conn, load)
                follow_conn = await connect(db_path, read_only=True, pragmas=FOLLOWER_PRAGMAS)
                resources.push_async_callback(follow_conn.close)
                await follow_conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
                follower = Follower(db_path, follow_conn, mirror=mirror, applied=applied)
                resources.callback(follower.close)
            writer = Writer(
                writer_conn,
                indexer=indexer,
                mirror=mirror,
                clock=store_clock,
                capacity=mailbox_capacity,
                max_batch=max_batch,
                follower=follower,
                log_changes=indexer is not None or defer,
                # FULL fsyncs each commit: always on the connection's thread
                inline_max=INLINE_COMMIT_ROWS if synchronous == "NORMAL" else 0,
                defer_embedding=defer,
                busy_timeout_ms=busy_timeout_ms,
                file=lock.identity(),
            )
            inline = None
            if inline_reads:
                inline = InlineReader(db_path)
                resources.callback(inline.close)
            reader_pool = Readers(
                reader_conns,
                vectors=vectors,
                clock=store_clock,
                touch=writer.touch,
                inline=inline,
                scopes=scopes,
                follower=follower,
            )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await resources.aclose()
            raise
        store = cls(
            path=db_path,
            index_config=index_config,
            ttl_config=ttl_config,
            indexer=indexer,
            writer=writer,
            readers=reader_pool,
            clock=store_clock,
        )
        store._queries = not index_disabled
        store._resources = resources.pop_all()
        # Plain tasks, not a task group: an exception raised by the caller's code inside
        # ``async with`` must reach it as itself, not wrapped in an ExceptionGroup.
        store._tasks.append(asyncio.create_task(writer.run(), name="memlane-writer"))
        if follower is not None:
            store._tasks.append(
                asyncio.create_task(_follow_forever(follower), name="memlane-follower")
            )
        if ttl_config is not None and ttl_config.sweep_interval_minutes:
            store._tasks.append(
                asyncio.create_task(
                    store._sweep_forever(ttl_config.sweep_interval_minutes),
                    name="memlane-ttl-sweeper",
                )
            )
        return store


    # ---- the batch entry points ----------------------------------------------------------

    async def _get(self, op: PreparedGet) -> Item | None:
        return await self._readers.get(op.namespace, op.key, op.refresh_ttl)

    async def _search(self, op: PreparedSearch) -> list[SearchItem]:
        query = None
        if op.query is not None and self._indexer is not None:
            query = await self._indexer.embedder.aembed_query(op.query)
        return await self._readers.search(op, query)

    async def _list(self, op: PreparedList) -> list[tuple[str, ...]]:
        return await self._readers.list_namespaces(op)

    # ---- TTL -----------------------------------------------------------------------------

    async def asweep_expired(self) -> int:
        self._check_async()
        return await self._writer.sweep()

    async def _sweep_forever(self, interval_minutes: float) -> None:
        """Sweep every interval while this process holds the sweeper lease (``lease.py``):
        one sweeper among the processes sharing the file, taken over when it stops."""
        self._sweeper = f"{os.getpid()}:{secrets.token_hex(4)}"
        lease = (self._sweeper, SWEEPER_LEASE_INTERVALS * interval_minutes * 60)
        while True:
            await asyncio.sleep(interval_minutes * 60)
            try:
                await self._writer.sweep(lease)
            except StoreClosedError:
                return
            except Exception:  # a failed sweep is retried on the next interval
                log.exception("memlane TTL sweep failed")

    # ---- closing -------------------------------------------------------------------------

    async def aclose(self, give_up_after: float | None = CLOSE_GIVE_UP_S) -> None:
        """Stop taking work, commit everything queued, stop the writer, close connections.

        Past ``give_up_after`` seconds (``None``: no limit) the writes still queued or being
        embedded are given up: their callers get ``StoreClosedError``; a commit under way
        finishes first. Nothing acknowledged is lost either way.
        """
        if self._closing is None:
            self._closed = True
            self._closing = asyncio.ensure_future(self._shut_down())
        try:
            await asyncio.wait_for(asyncio.shield(self._closing), give_up_after)
        except TimeoutError:
            log.warning(
                "memlane: closing %s took over %s s; the writes still queued fail with "
                "StoreClosedError", self.path, give_up_after,
            )
            self._tasks[0].cancel()  # the writer: see Writer.run's clean-up
            await asyncio.shield(self._closing)

    async def _shut_down(self) -> None:
        self._writer.mailbox.close()
        await self._writer.stopped.wait()
        if self._sweeper is not None:
            try:
                await self._writer.give_up_lease(self._sweeper)
            except Exception:  # it runs out by itself
                log.warning("memlane: could not give up the sweeper lease", exc_info=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._readers.shut()
        await self._resources.aclose()

    @property
    def writer_batches(self) -> int:
        """How many batches the writer has committed (a gauge of batching under load)."""
        return self._writer.batches

    @property
    def get_hops(self) -> int:
        """How many reader thread hops gets have cost (a gauge of get coalescing)."""
        return self._readers.get_hops


_SQLITE_HEADER = b"SQLite format 3\x00"


async def _follow_forever(follower: Follower) -> None:
    """Keep up with the other processes between reads too, so that a read rarely has more
    than a few changes to catch up on, and an idle process never falls behind the log."""
    failing = False
    while True:
        await asyncio.sleep(FOLLOW_EVERY_S)
        try:
            await follower.catch_up()
        except StoreClosedError:
            return
        except Exception:  # retried on the next round; reads catch up themselves anyway
            if not failing:  # once per failing spell, not 50 times a second
                log.exception("memlane: following the other processes' commits failed")
            failing = True
        else:
            if failing:
                log.warning("memlane: following the other processes' commits works again")
            failing = False


def _refuse_foreign(db_path: Path) -> None:
    """Refuse, touching nothing, a file that is not empty and not a memlane store.

    Opening would otherwise add memlane's tables to someone else's database and switch it
    to WAL. Read with a read-only, immutable connection: no journal, no lock, no change.
    """
    try:
        with open(db_path, "rb") as file:
            header = file.read(len(_SQLITE_HEADER))
    except FileNotFoundError:
        return
    if not header:
        return  # an empty file is a new database
    if header != _SQLITE_HEADER:
        raise ValueError(
            f"{db_path} is not a SQLite database (nor empty); memlane opens only its own "
            f"store files: give the path of a new file or a memlane store"
        )
    uri = f"{db_path.resolve().as_uri()}?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    try:
        tables = {
            row[0]
            for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
    finally:
        conn.close()
    if tables and "memlane_migrations" not in tables:
        raise ValueError(
            f"{db_path} is a SQLite database but not a memlane store (it has the tables "
            f"{sorted(tables)[:5]}); memlane left it untouched: give the path of a new file "
            f"or a memlane store"
        )


def _check_path(path: str | os.PathLike[str]) -> Path:
    text = os.fspath(path)
    if not text or text == ":memory:" or text.startswith("file:"):
        raise ValueError(
            f"SqliteStore needs a file path, got {text!r}; use InMemoryStore for a store "
            f"without a file"
        )
    db_path = Path(text)
    if db_path.is_dir():
        raise ValueError(f"{db_path} is a directory; give the path of a database file")
    if not db_path.parent.exists():
        raise FileNotFoundError(f"the folder {db_path.parent} does not exist")
    return db_path

"""aiosqlite connections, and running a whole unit of work on a connection's own thread.

aiosqlite gives each connection a dedicated thread. A statement per await costs a thread
hop each (~85 us here); a writer batch or a group of reads is instead one function run on
that thread (~45 us in all). aiosqlite has no public name for that, so this module is the
only place that uses ``Connection._execute``; ``aiosqlite`` is pinned to versions that have it,
and a test checks it is still there.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import aiosqlite

from memlane.store.sqlite.schema import READER_PRAGMAS

__all__ = ["connect", "run_on_connection_thread"]

T = TypeVar("T")


async def connect(
    path: Path, *, read_only: bool = False, pragmas: Sequence[str] = READER_PRAGMAS
) -> aiosqlite.Connection:
    """Open a connection in autocommit mode: transactions are explicit (BEGIN IMMEDIATE);
    a ``read_only`` one runs ``pragmas``."""
    conn = await aiosqlite.connect(str(path), isolation_level=None, check_same_thread=False)
    if read_only:
        for pragma in pragmas:
            await conn.execute(pragma)
    return conn


async def run_on_connection_thread(
    conn: aiosqlite.Connection, fn: Callable[[sqlite3.Connection], T]
) -> T:
    """Run ``fn(raw_connection)`` on the connection's thread; one hop for the whole unit.

    aiosqlite's thread keeps the last function it ran, and its result or exception, until
    its next job. So the function, its result and its exception (whose traceback holds the
    function's frames) pass through lists emptied as they are used: a writer batch (its
    values, its vectors) is not kept alive while the store sits idle.
    """
    raw: sqlite3.Connection = conn._conn  # the sqlite3 connection aiosqlite owns
    todo = [fn]
    done: list[T] = []
    failed: list[BaseException] = []

    def call() -> None:
        try:
            done.append(todo.pop()(raw))
        except BaseException as exc:  # re-raised on the loop, below
            failed.append(exc)

    await conn._execute(call)  # type: ignore[no-untyped-call]
    if failed:
        raise failed.pop()
    return done.pop()

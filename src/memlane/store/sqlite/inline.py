"""Small reads answered on the event loop's own thread, within a bounded amount of work.

Why. A read on a pooled reader connection costs a thread hop there and back, ~0.3 ms on a
small VM: ten times what a primary-key lookup or one user's namespace costs SQLite. So
the store keeps one more read-only connection that lives on the loop's thread, and tries
small reads on it first:

* A **step budget** bounds the time a read may hold the loop: SQLite's progress handler
  counts the virtual-machine steps of all the read's statements together and aborts the
  read past ``budget`` (measured here: ~25-60M steps/s, so the default 20,000 is well
  under 1 ms). An aborted read is simply re-run on a pooled
  reader in its worker thread, as before, so a large scan never blocks the loop for long.
* **Never waits for a lock**: ``busy_timeout`` is 0, so a read that would have to wait
  (a WAL reset racing a checkpoint, rare) fails at once and goes to a pooled reader.

Reads stay correct either way: in WAL mode each statement reads the last committed
snapshot, and the writer resolves callers only after their commit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from memlane.store.sqlite.policies import INLINE_READ_STEPS
from memlane.store.sqlite.schema import READER_PRAGMAS
from memlane.store.types import StoreClosedError

__all__ = ["DEFAULT_BUDGET", "InlineReader", "TooMuchWork"]

T = TypeVar("T")

DEFAULT_BUDGET = INLINE_READ_STEPS  # VM steps per read (every statement of it)
_TICK = 1_000  # how often SQLite calls back to count steps


class TooMuchWork(Exception):
    """The read needs more than the inline budget (or would wait for a lock)."""


class InlineReader:
    """A read-only connection owned by the loop's thread; ``run`` or raise TooMuchWork."""

    def __init__(
        self, path: Path, *, budget: int = DEFAULT_BUDGET, pragmas: Sequence[str] = READER_PRAGMAS
    ) -> None:
        self.budget = budget
        self.inline_reads = 0  # reads answered here (tests and benchmarks read these)
        self.handed_off = 0  # reads that went to a pooled reader instead
        self._conn = sqlite3.connect(str(path), isolation_level=None)
        for pragma in pragmas:
            self._conn.execute(pragma)
        self._conn.execute("PRAGMA busy_timeout = 0")
        self._closed = False

    def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)``, all its statements together capped at ``budget`` steps."""
        if self._closed:
            raise StoreClosedError("the store is closed")
        steps = 0

        def tick() -> bool:  # SQLite's counter restarts per statement: keep our own
            nonlocal steps
            steps += _TICK
            return steps > self.budget  # true aborts the running statement

        self._conn.set_progress_handler(tick, _TICK)
        try:
            result = fn(self._conn)
        except sqlite3.OperationalError as exc:  # interrupted, or busy/locked
            self.handed_off += 1
            raise TooMuchWork(str(exc)) from exc
        finally:
            self._conn.set_progress_handler(None, 0)
        self.inline_reads += 1
        return result

    def data_version(self) -> int | None:
        """``PRAGMA data_version``: it changes whenever another connection commits. None
        when that cannot be told without waiting (busy: a WAL reset, rare)."""
        if self._closed:
            raise StoreClosedError("the store is closed")
        try:
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.OperationalError:
            return None

    def close(self) -> None:
        self._closed = True
        self._conn.close()

"""Run a user's sync function from async code: in a worker thread, or inline once proven quick.

Why. Sync user code (an embedding function) may block for a long time, so the async path
runs it in a worker thread. But a thread hop costs ~0.1-0.4 ms on small machines, which
dwarfs a function that answers from a cache or a lookup table in microseconds: for such a
function the hop *is* the latency of a search. So each call site keeps a
:class:`QuickCallGate`: calls go to a thread, timed there; after ``streak`` calls in a row
each finished within ``quick_s``, calls run inline on the event loop, still timed; one
inline call slower than ``slow_s`` sends it back to threads, and the streak it must
earn again doubles. After ``max_demotions`` such slips it stays in threads for good, so a
function that is only sometimes quick holds the loop at most a few times.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import anyio.to_thread

__all__ = ["QuickCallGate"]

T = TypeVar("T")

_QUICK_S = 100e-6  # inline costs less than a thread hop below this (measured ~0.1-0.4 ms)
_SLOW_S = 1e-3  # an inline call this slow held the loop too long: back to threads
_STREAK = 16
_MAX_DEMOTIONS = 4


def _timed(fn: Callable[[T], object], arg: T) -> tuple[object, float]:
    started = time.perf_counter()
    result = fn(arg)
    return result, time.perf_counter() - started


class QuickCallGate:
    """Decides, call by call, whether a sync function runs inline or in a worker thread."""

    def __init__(
        self,
        *,
        quick_s: float = _QUICK_S,
        slow_s: float = _SLOW_S,
        streak: int = _STREAK,
        max_demotions: int = _MAX_DEMOTIONS,
    ) -> None:
        self.quick_s = quick_s
        self.slow_s = slow_s
        self.inline = False
        self.demotions = 0
        self._max_demotions = max_demotions
        self._needed = streak
        self._streak = 0

    async def run(self, fn: Callable[[T], object], arg: T) -> object:
        """``fn(arg)``, inline or in a thread; exceptions propagate unchanged."""
        if self.inline:
            started = time.perf_counter()
            try:
                return fn(arg)
            finally:
                if time.perf_counter() - started > self.slow_s:
                    self._demote()
        result, elapsed = await anyio.to_thread.run_sync(_timed, fn, arg)
        self._observe(elapsed)
        return result

    def _observe(self, elapsed: float) -> None:
        if elapsed > self.quick_s or self.demotions >= self._max_demotions:
            self._streak = 0
            return
        self._streak += 1
        if self._streak >= self._needed:
            self.inline = True

    def _demote(self) -> None:
        self.inline = False
        self.demotions += 1
        self._streak = 0
        self._needed *= 2

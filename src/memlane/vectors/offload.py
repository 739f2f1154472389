"""Run a user's sync function from async code: in a worker thread, or inline once proven quick.

Why. Sync user code (an embedding function) may block for a long time, so the async path
runs it in a worker thread. But a thread hop costs ~0.1-0.4 ms on small machines, which
dwarfs a function that answers from a cache or a lookup table in microseconds: for such a
function the hop *is* the latency of a search. So each call site keeps a
:class:`QuickCallGate`: calls go to a thread, timed there; after ``streak`` calls in a row
each quick, calls run inline on the event loop, still timed; one inline call slower than
``slow_s`` sends it back to threads, and the streak it must earn again doubles. After
``max_demotions`` such slips it stays in threads for good, so a function that is only
sometimes quick holds the loop at most a few times.

"Quick" in a thread means at most ``quick_s`` of the thread's own CPU time and at most
``wait_s`` of wall time. CPU time, because under load a worker thread's wall time is mostly
waiting for the GIL (measured: 1,000 concurrent writers kept a 5 us lookup above 100 us of
wall time, so it never went inline and every put paid a hop). The wall-time cap keeps a
function that waits on a network (little CPU, milliseconds of wall time) in threads.
Inline, a slip is a call that took more than ``slow_s`` of wall time, set to the GIL's
5 ms switch interval because the loop thread, too, may wait that long for a worker thread
(``thread_time`` is not used there: it is a system call, ~2 us idle and far more under load,
more than the functions it would time).
Only small calls (``small=True``: a query, a put's few texts) are ever run inline; a large
batch always goes to a thread and teaches the gate nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import anyio.to_thread

__all__ = ["QuickCallGate"]

T = TypeVar("T")

_QUICK_S = 100e-6  # inline costs less than a thread hop below this (measured ~0.1-0.4 ms)
_WAIT_S = 5e-3  # more wall time than this in a thread: it waits on something, keep it there
_SLOW_S = 5e-3  # an inline call this long held the loop too long: back to threads
_STREAK = 16
_MAX_DEMOTIONS = 4


def _timed(fn: Callable[[T], object], arg: T) -> tuple[object, float, float]:
    """``fn(arg)``, its wall time and the CPU time this thread spent on it."""
    started, cpu_started = time.perf_counter(), time.thread_time()
    result = fn(arg)
    return result, time.perf_counter() - started, time.thread_time() - cpu_started


class QuickCallGate:
    """Decides, call by call, whether a sync function runs inline or in a worker thread."""

    def __init__(
        self,
        *,
        quick_s: float = _QUICK_S,
        wait_s: float = _WAIT_S,
        slow_s: float = _SLOW_S,
        streak: int = _STREAK,
        max_demotions: int = _MAX_DEMOTIONS,
    ) -> None:
        self.quick_s = quick_s
        self.wait_s = wait_s
        self.slow_s = slow_s
        self.inline = False
        self.demotions = 0
        self._max_demotions = max_demotions
        self._needed = streak
        self._streak = 0

    async def run(self, fn: Callable[[T], object], arg: T, *, small: bool = True) -> object:
        """``fn(arg)``, inline or in a thread; exceptions propagate unchanged."""
        if not small:
            return await anyio.to_thread.run_sync(fn, arg, abandon_on_cancel=True)
        if self.inline:
            started = time.perf_counter()
            try:
                return fn(arg)
            finally:
                if time.perf_counter() - started > self.slow_s:
                    self._demote()
        result, wall, cpu = await anyio.to_thread.run_sync(_timed, fn, arg, abandon_on_cancel=True)
        self._observe(wall, cpu)
        return result

    def _observe(self, wall: float, cpu: float) -> None:
        quick = cpu <= self.quick_s and wall <= self.wait_s
        if not quick or self.demotions >= self._max_demotions:
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

"""Timestamps: UTC, microsecond precision, strictly increasing within a store.

Two writes in the same microsecond still get distinct, ordered ``updated_at`` values, so
"newest first" is a total order and an overwrite is always visibly newer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

__all__ = ["Clock", "from_micros", "to_micros"]

_ONE_MICRO = 1


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(moment: datetime) -> int:
    """A UTC datetime as whole microseconds since the epoch (exact, no float rounding)."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    """Inverse of :func:`to_micros`."""
    return _EPOCH + timedelta(microseconds=micros)


class Clock:
    """Wall-clock seconds for TTL plus strictly increasing write stamps.

    ``time_source`` is injectable so tests can move time forward without sleeping.
    """

    def __init__(self, time_source: Callable[[], float] | None = None) -> None:
        self._time = time_source or time.time
        self._last_stamp = 0

    def now(self) -> float:
        """Seconds since the epoch, from the time source."""
        return self._time()

    def next_stamp(self) -> int:
        """Microseconds since the epoch, greater than any stamp this clock issued before."""
        stamp = int(self._time() * 1_000_000)
        if stamp <= self._last_stamp:
            stamp = self._last_stamp + _ONE_MICRO
        self._last_stamp = stamp
        return stamp

    def observe(self, stamp: int) -> None:
        """Make later stamps exceed ``stamp`` (e.g. the newest one found in a reopened file)."""
        self._last_stamp = max(self._last_stamp, stamp)

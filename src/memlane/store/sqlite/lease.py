"""One TTL sweeper among the processes sharing a file: a lease kept in ``memlane_meta``.

Every process with a sweep interval wakes at that interval, but only the holder of the
lease sweeps: the claim is checked and renewed inside the sweep's own write transaction,
so two processes never both believe they hold it. A holder that dies stops renewing; the
first process to wake after the lease ran out takes it over. A store that closes gives
its lease up at once. ``asweep_expired()`` called by hand always sweeps.
"""

from __future__ import annotations

import sqlite3

import orjson

__all__ = ["claim", "holder", "release"]

_READ = "SELECT value FROM memlane_meta WHERE name = 'sweeper'"
_WRITE = "INSERT OR REPLACE INTO memlane_meta (name, value) VALUES ('sweeper', ?)"
_DELETE = "DELETE FROM memlane_meta WHERE name = 'sweeper' AND value = ?"


def holder(raw: sqlite3.Connection) -> tuple[str, float] | None:
    """The lease's owner and the time (seconds since the epoch) it runs out, if any."""
    row = raw.execute(_READ).fetchone()
    if row is None:
        return None
    held = orjson.loads(row[0])
    return str(held["owner"]), float(held["until"])


def claim(raw: sqlite3.Connection, owner: str, seconds: float, now: float) -> bool:
    """Take or renew the lease for ``seconds`` (inside a write transaction); False while
    another owner's lease runs."""
    held = holder(raw)
    if held is not None and held[0] != owner and held[1] > now:
        return False
    raw.execute(_WRITE, (orjson.dumps({"owner": owner, "until": now + seconds}).decode(),))
    return True


def release(raw: sqlite3.Connection, owner: str) -> None:
    """Give the lease up if ``owner`` holds it (a store closing)."""
    row = raw.execute(_READ).fetchone()
    if row is not None and orjson.loads(row[0])["owner"] == owner:
        raw.execute(_DELETE, (row[0],))

"""Which item ids live in each namespace, kept in memory beside the vector index.

Why. A scoped vector search ("top 10 in this user's namespace") needs the ids of the
namespace's items before it can ask the index. One SQL statement answered that in
~30-60 us, the largest share of what SqliteStore added to InMemoryStore's query.
Measured interleaved in one process (one user's 100 items, p50): 0.28 -> 0.22 ms at 100k
items, 0.32 -> 0.26 ms at 1M. The map costs ~120 bytes an item (a set entry and its int;
112 MiB at 1M items), under a tenth of a 384-dim vector's 1,536 bytes.

The writer keeps the map as it keeps the vector index: after each commit, on the
connection's thread, before any caller of the batch is answered, so an acknowledged write
is in it. Readers take a lock for a few dictionary lookups; a prefix spanning many
namespaces is left to SQL. An item id stays in the map until its row is deleted or swept,
so an expired item waiting for the sweeper would still be listed: the map keeps a lower
bound of every stored expiry, and from it until the next sweep it answers "ask SQL"
(a scope could be mostly expired items). So every id it gives is of a live item. If
updating the map ever fails, it is emptied, marked broken, and readers go back to SQL until
the store is reopened.
"""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Iterable
from enum import Enum

import numpy as np
import numpy.typing as npt
import orjson

__all__ = ["ASK_SQL", "MAX_NAMESPACES", "ScopeMap", "Unknown"]

I64 = npt.NDArray[np.int64]
Member = tuple[str, int]  # (namespace as stored, item id)


class Unknown(Enum):
    """``ids_under``'s answer when SQL should say: the prefix spans many namespaces (SQL's
    range scan is then cheaper, and bounded by the inline reader's budget), or the map is
    broken."""

    ASK_SQL = "ask SQL"


ASK_SQL = Unknown.ASK_SQL
# A prefix spanning more namespaces than this is left to SQL: gathering their ids here would
# be Python work per namespace on the event loop, with the map's lock held.
MAX_NAMESPACES = 64


class ScopeMap:
    """Namespace (its stored text) -> ids of its items, with whole-label prefix lookups."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._members: dict[str, set[int]] = {}
        self._arrays: dict[str, I64] = {}  # sorted ids per namespace, built on demand
        # every proper prefix of a namespace -> the namespaces strictly below it
        self._below: dict[str, set[str]] = {}
        self._total = 0
        self.broken = False
        # No stored item expires before this (a lower bound): until then, no expired item
        # waits for the sweeper, so every id listed is live.
        self.expires_from = math.inf

    def __len__(self) -> int:
        return self._total

    def load(self, raw: sqlite3.Connection) -> None:
        """Fill the map from the items table, replacing what it held (a store opening, or a
        process that fell behind the change log): one row per namespace."""
        rows = raw.execute(
            "SELECT namespace, json_group_array(id) FROM items GROUP BY namespace"
        ).fetchall()
        (earliest,) = raw.execute(
            "SELECT MIN(expires_at) FROM items WHERE expires_at IS NOT NULL"
        ).fetchone()
        with self._lock:
            self._members, self._arrays, self._below = {}, {}, {}
            self._total = 0
            self.broken = False
            self.expires_from = math.inf if earliest is None else float(earliest)
            for namespace, ids in rows:
                members = set(orjson.loads(ids))
                self._members[namespace] = members
                self._total += len(members)
                for prefix in _proper_prefixes(namespace):
                    self._below.setdefault(prefix, set()).add(namespace)

    def apply(
        self,
        added: Iterable[Member],
        removed: Iterable[Member],
        expiries: Iterable[float] = (),
        expiry_floor: float | None = None,
    ) -> None:
        """Record a committed transaction: ``removed`` first, then ``added``; ``expiries``
        of the rows it wrote, and after a sweep the earliest expiry left in the table."""
        with self._lock:
            if expiry_floor is not None:  # read after all of the transaction's writes
                self.expires_from = expiry_floor
            else:
                self.expires_from = min(self.expires_from, *expiries, math.inf)
            try:
                for namespace, item_id in removed:
                    self._remove(namespace, item_id)
                for namespace, item_id in added:
                    self._add(namespace, item_id)
            except BaseException:
                self._broken()  # half applied: nobody may trust it any more
                raise

    def ids_under(self, prefix: str, now: float) -> I64 | Unknown | None:
        """Ascending ids of the items in namespace ``prefix`` or below it (whole labels),
        ``None`` when that is every item in the store, or ``ASK_SQL`` (also whenever an
        expired item may wait for the sweeper: SQL lists the live ones). The arrays
        returned are read-only."""
        with self._lock:
            if self.broken or now >= self.expires_from:
                return ASK_SQL
            inside = self._below.get(prefix, set())
            if len(inside) >= MAX_NAMESPACES:
                return ASK_SQL
            names = [*inside, prefix] if prefix in self._members else list(inside)
            if sum(len(self._members[name]) for name in names) == self._total:
                return None
            parts = [self._array(name) for name in names]
        if not parts:
            return np.empty(0, dtype=np.int64)
        if len(parts) == 1:
            return parts[0]
        return np.sort(np.concatenate(parts))

    def _broken(self) -> None:
        self.broken = True
        self._members, self._arrays, self._below = {}, {}, {}  # its memory back

    def _array(self, namespace: str) -> I64:
        array = self._arrays.get(namespace)
        if array is None:
            members = self._members[namespace]
            array = np.fromiter(sorted(members), dtype=np.int64, count=len(members))
            array.flags.writeable = False  # shared by every search of the namespace
            self._arrays[namespace] = array
        return array

    def _add(self, namespace: str, item_id: int) -> None:
        members = self._members.get(namespace)
        if members is None:
            members = self._members[namespace] = set()
            for prefix in _proper_prefixes(namespace):
                self._below.setdefault(prefix, set()).add(namespace)
        if item_id not in members:
            members.add(item_id)
            self._total += 1
            self._arrays.pop(namespace, None)

    def _remove(self, namespace: str, item_id: int) -> None:
        members = self._members.get(namespace)
        if members is None or item_id not in members:
            return
        members.remove(item_id)
        self._total -= 1
        self._arrays.pop(namespace, None)
        if not members:
            del self._members[namespace]
            for prefix in _proper_prefixes(namespace):
                below = self._below[prefix]
                below.discard(namespace)
                if not below:
                    del self._below[prefix]


def _proper_prefixes(namespace: str) -> list[str]:
    """``"a.b.c"`` -> ``["a", "a.b"]``: labels never contain '.'."""
    labels = namespace.split(".")
    return [".".join(labels[:depth]) for depth in range(1, len(labels))]

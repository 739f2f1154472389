"""Item id -> the global row where the item's block of vectors starts.

Why an array indexed by the id: the stores number their items densely (SQLite's rowids,
InMemoryStore's counter), so ``starts[item_id]`` costs 8 bytes an id and looks up a
user's 100 items in one numpy take (~2 us). A dict cost ~140 bytes an entry and, at 100k
items, ~40 us for the same 100 lookups (a few cache misses each); sorted arrays with
``searchsorted`` cost ~20 probes an id. Ids far above the item count would make the
array mostly empty, so it may grow to ``slots_per_item`` times the item count (plus 64k
slots) and ids past that go to a dict. The index sets ``slots_per_item`` so the array
never costs more than a quarter of the vectors' own memory (48 slots an item at 384
dims): ids skipped by rewrites (SqliteStore) or numbered by a caller its own way fit
until they are that sparse. Negative ids are never present.

Not thread-safe on its own: the index mutates it under its publication mutex.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["Directory"]

I64 = npt.NDArray[np.int64]
_MISSING = -1
_SLACK = 1 << 16  # slots the array may always have (512 KiB), whatever the item count


class Directory:
    """A map from item ids to block starts; ``-1`` stands for "not present"."""

    def __init__(self, slots_per_item: int = 4) -> None:
        self._slots_per_item = slots_per_item
        self._dense: I64 = np.empty(0, dtype=np.int64)  # starts by id, -1 where absent
        self._dense_live = 0
        self._sparse: dict[int, int] = {}  # ids past the array (see the module docstring)

    def __len__(self) -> int:
        return self._dense_live + len(self._sparse)

    def get(self, item_id: int) -> int:
        if 0 <= item_id < len(self._dense):
            return int(self._dense[item_id])
        return self._sparse.get(item_id, _MISSING)

    def get_many(self, ids: I64) -> I64:
        """Starts of ``ids`` (``-1`` where absent), vectorised."""
        dense = self._dense
        if not len(ids):
            return np.empty(0, dtype=np.int64)
        if not self._sparse and int(ids.max()) < len(dense) and int(ids.min()) >= 0:
            found: I64 = dense[ids]  # the common case: one take
            return found
        out = np.full(len(ids), _MISSING, dtype=np.int64)
        inside = (ids >= 0) & (ids < len(dense))
        out[inside] = dense[ids[inside]]
        if self._sparse:
            get = self._sparse.get
            outside = np.flatnonzero(~inside)
            out[outside] = np.fromiter(
                (get(item, _MISSING) for item in ids[outside].tolist()), np.int64, len(outside)
            )
        return out

    def set_many(self, ids: I64, starts: I64) -> None:
        """Point each id at its new start (ids unique)."""
        if not len(ids):
            return
        if int(ids.min()) < 0:
            raise ValueError(f"item ids are >= 0, got {int(ids.min())}")
        dense = self._dense
        if int(ids.max()) < len(dense):  # the common case: every id fits the array
            self._dense_live += int((dense[ids] < 0).sum())
            dense[ids] = starts
            return
        self._reserve(ids)
        dense = self._dense
        inside = ids < len(dense)
        hit = ids[inside]
        self._dense_live += int((dense[hit] < 0).sum())
        dense[hit] = starts[inside]
        if not inside.all():
            outside = ~inside
            self._sparse.update(zip(ids[outside].tolist(), starts[outside].tolist(), strict=True))

    def drop_many(self, ids: I64) -> None:
        """Forget ids (absent ones are ignored)."""
        dense = self._dense
        hit = np.unique(ids[(ids >= 0) & (ids < len(dense))])
        live = hit[dense[hit] >= 0]
        dense[live] = _MISSING
        self._dense_live -= len(live)
        if self._sparse:
            pop = self._sparse.pop
            for item in ids[ids >= len(dense)].tolist():
                pop(item, None)

    def ids(self) -> I64:
        """Every id present, ascending."""
        dense: I64 = np.flatnonzero(self._dense >= 0).astype(np.int64)
        if not self._sparse:
            return dense
        sparse = np.fromiter(self._sparse, dtype=np.int64, count=len(self._sparse))
        return np.concatenate([dense, np.sort(sparse)])

    def __contains__(self, item_id: object) -> bool:
        if isinstance(item_id, bool) or not isinstance(item_id, (int, np.integer)):
            return False
        if not 0 <= int(item_id) < 2**63:
            return False
        return self.get(int(item_id)) >= 0

    def _reserve(self, ids: I64) -> None:
        """Grow the array to cover as many of ``ids`` as keeps it dense enough."""
        size = len(self._dense)
        limit = self._slots_per_item * (len(self) + len(ids)) + _SLACK
        fitting = ids[ids < limit]
        if not len(fitting) or int(fitting.max()) < size:
            return  # the rest go to the dict
        top_id = int(fitting.max())
        grown = np.full(min(max(top_id + 1, 2 * size), limit), _MISSING, dtype=np.int64)
        grown[:size] = self._dense
        self._dense = grown
        # ids that were past the array and now fit move into it
        moving = [item for item in self._sparse if item < len(grown)]
        for item in moving:
            grown[item] = self._sparse.pop(item)
            self._dense_live += 1

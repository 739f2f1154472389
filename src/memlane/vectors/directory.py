"""Item id -> the global row where the item's block of vectors starts.

Why an array indexed by the id: the stores number their items densely (SQLite's rowids,
InMemoryStore's counter), so ``starts[item_id]`` costs 8 bytes an id and looks up a
user's 100 items in one numpy take (~2 us). A dict cost ~140 bytes an entry and, at 100k
items, ~40 us for the same 100 lookups (a few cache misses each); sorted arrays with
``searchsorted`` cost ~20 probes an id. Ids far above the item count (a caller numbering
items its own way) would make the array mostly empty: those go to a dict instead.

Not thread-safe on its own: the index mutates it under its publication mutex.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["Directory"]

I64 = npt.NDArray[np.int64]
_MISSING = -1
# The array may reach 4x the item count plus this many slots (512 KiB) before an id goes
# to the dict instead: ids of a dense numbering never do.
_SLACK = 1 << 16
_GROWTH = 4


class Directory:
    """A map from item ids to block starts; ``-1`` stands for "not present"."""

    def __init__(self) -> None:
        self._dense: I64 = np.empty(0, dtype=np.int64)  # starts by id, -1 where absent
        self._dense_live = 0
        self._sparse: dict[int, int] = {}  # ids past the array (see the module docstring)

    def __len__(self) -> int:
        return self._dense_live + len(self._sparse)

    def get(self, item_id: int) -> int:
        if item_id < len(self._dense):
            return int(self._dense[item_id])
        return self._sparse.get(item_id, _MISSING)

    def get_many(self, ids: I64) -> I64:
        """Starts of ``ids`` (``-1`` where absent), vectorised."""
        dense = self._dense
        if not len(ids):
            return np.empty(0, dtype=np.int64)
        if not self._sparse and int(ids.max()) < len(dense):
            found: I64 = dense[ids]  # the common case: one take
            return found
        out = np.full(len(ids), _MISSING, dtype=np.int64)
        inside = ids < len(dense)
        out[inside] = dense[ids[inside]]
        if self._sparse:
            get = self._sparse.get
            for pos in np.flatnonzero(~inside).tolist():
                out[pos] = get(int(ids[pos]), _MISSING)
        return out

    def set_many(self, ids: I64, starts: I64) -> None:
        """Point each id at its new start (ids unique)."""
        if not len(ids):
            return
        self._reserve(int(ids.max()), len(ids))
        dense = self._dense
        inside = ids < len(dense)
        hit = ids[inside]
        self._dense_live += int((dense[hit] < 0).sum())
        dense[hit] = starts[inside]
        if not inside.all():
            outside = ~inside
            self._sparse.update(zip(ids[outside].tolist(), starts[outside].tolist(), strict=True))

    def load(self, ids: I64, starts: I64) -> None:
        """Add many new ids at once (a reopened store's items)."""
        self.set_many(ids, starts)

    def drop_many(self, ids: I64) -> None:
        """Forget ids (absent ones are ignored)."""
        dense = self._dense
        hit = np.unique(ids[ids < len(dense)])
        live = hit[dense[hit] >= 0]
        dense[live] = _MISSING
        self._dense_live -= len(live)
        if self._sparse:
            pop = self._sparse.pop
            for item in ids[ids >= len(dense)].tolist():
                pop(item, None)

    def __contains__(self, item_id: object) -> bool:
        if isinstance(item_id, bool) or not isinstance(item_id, (int, np.integer)):
            return False
        if not 0 <= int(item_id) < 2**63:
            return False
        return self.get(int(item_id)) >= 0

    def _reserve(self, top_id: int, adding: int) -> None:
        """Grow the array to cover ``top_id`` if that keeps it dense enough."""
        size = len(self._dense)
        if top_id < size:
            return
        limit = _GROWTH * (len(self) + adding) + _SLACK
        if top_id >= limit:
            return  # leave it to the dict, and keep the array as it is
        grown = np.full(min(max(top_id + 1, 2 * size), limit), _MISSING, dtype=np.int64)
        grown[:size] = self._dense
        self._dense = grown
        # ids that were past the array and now fit move into it
        moving = [item for item in self._sparse if item < len(grown)]
        for item in moving:
            grown[item] = self._sparse.pop(item)
            self._dense_live += 1

"""Item id -> the global row where the item's block of vectors starts.

Why not a plain dict: a million ``int -> int`` entries cost ~140 MB of Python objects
(measured), a tenth of the vectors themselves. Items bulk-loaded when a store reopens go
into two sorted int64 arrays (16 bytes an item, looked up with ``searchsorted``); only
items written after that live in a dict. Lookups of many ids are vectorised either way.

Not thread-safe on its own: the index mutates it under its publication mutex.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["Directory"]

I64 = npt.NDArray[np.int64]
_MISSING = -1


class Directory:
    """A map from item ids to block starts; ``-1`` stands for "not present"."""

    def __init__(self) -> None:
        self._base_ids: I64 = np.empty(0, dtype=np.int64)  # sorted, unique
        self._base_starts: I64 = np.empty(0, dtype=np.int64)  # -1 once removed
        self._base_live = 0
        self._extra: dict[int, int] = {}

    def __len__(self) -> int:
        return self._base_live + len(self._extra)

    def get(self, item_id: int) -> int:
        start = self._extra.get(item_id)
        if start is not None:
            return start
        pos = self._base_pos(np.asarray([item_id], dtype=np.int64))[0]
        return int(self._base_starts[pos]) if pos >= 0 else _MISSING

    def get_many(self, ids: I64) -> I64:
        """Starts of ``ids`` (``-1`` where absent), vectorised."""
        out = np.full(len(ids), _MISSING, dtype=np.int64)
        if len(self._base_ids):
            pos = self._base_pos(ids)
            found = pos >= 0
            out[found] = self._base_starts[pos[found]]
        if self._extra:
            get = self._extra.get
            extra = np.fromiter((get(item, _MISSING) for item in ids.tolist()), np.int64, len(ids))
            np.copyto(out, extra, where=extra != _MISSING)
        return out

    def set_many(self, ids: I64, starts: I64) -> None:
        """Point each id at its new start (ids unique)."""
        in_base = np.zeros(len(ids), dtype=bool)
        if len(self._base_ids):
            pos = self._base_pos(ids)
            in_base = pos >= 0
            hit = pos[in_base]
            self._base_live += int((self._base_starts[hit] < 0).sum())
            self._base_starts[hit] = starts[in_base]
        if not in_base.all():
            rest = ~in_base
            self._extra.update(zip(ids[rest].tolist(), starts[rest].tolist(), strict=True))

    def drop_many(self, ids: I64) -> None:
        """Forget ids (absent ones are ignored)."""
        if len(self._base_ids):
            pos = self._base_pos(ids)
            hit = pos[pos >= 0]
            live = hit[self._base_starts[hit] >= 0]
            self._base_starts[live] = _MISSING
            self._base_live -= len(live)
        if self._extra:
            pop = self._extra.pop
            for item in ids.tolist():
                pop(item, None)

    def load(self, ids: I64, starts: I64) -> None:
        """Add many new ids at once into the array part (ids unique and not present)."""
        keep = self._base_starts >= 0
        all_ids = np.concatenate([self._base_ids[keep], ids])
        all_starts = np.concatenate([self._base_starts[keep], starts])
        order = np.argsort(all_ids, kind="stable")
        self._base_ids, self._base_starts = all_ids[order], all_starts[order]
        self._base_live = len(all_ids)

    def __contains__(self, item_id: object) -> bool:
        if isinstance(item_id, bool) or not isinstance(item_id, (int, np.integer)):
            return False
        if not 0 <= int(item_id) < 2**63:
            return False
        return self.get(int(item_id)) >= 0

    def _base_pos(self, ids: I64) -> I64:
        """Positions of ids in the array part, ``-1`` where absent."""
        base = self._base_ids
        if not len(base):
            return np.full(len(ids), -1, dtype=np.int64)
        pos = np.searchsorted(base, ids)
        clipped = np.minimum(pos, len(base) - 1)
        found = base[clipped] == ids
        return np.where(found, clipped, -1)

"""Committed changes into this process's vector index and scope map, and their repair.

After each commit the writer applies the transaction's :class:`Changes` here, on the
connection's thread, before any caller of the batch is answered (so an acknowledged write
is in the index). A failure never fails the batch's callers quietly and never leaves the
index silently stale:

* the scope map, if updating it fails, empties itself and is marked broken: scoped
  searches ask SQL from then on (no caller's write fails for it);
* the vector index, if updating it fails, has the transaction's items remembered as
  *unmirrored*; after each later commit, :meth:`Mirror.repair` reloads up to
  ``REPAIR_SLICE`` of them from the vectors table (the truth, so every item gets its latest
  state), one by one when a reload fails, and an item that cannot be reloaded at all (a
  damaged blob) leaves the index: missing beats stale.
"""

from __future__ import annotations

import itertools
import logging
import sqlite3

from memlane.store.sqlite.scopes import ScopeMap
from memlane.store.sqlite.stored_vectors import reload_items
from memlane.store.sqlite.transaction import Changes, touched
from memlane.vectors import VectorIndex

__all__ = ["REPAIR_SLICE", "Mirror", "MirrorError"]

log = logging.getLogger(__name__)

# Items repaired per commit after a failed mirror: bounds the extra work of one commit.
REPAIR_SLICE = 4_096


class MirrorError(Exception):
    """Committed, but the vector index could not take the change (see the module)."""


class Mirror:
    """Applies committed changes to the in-memory state; repairs what it could not."""

    def __init__(self, vectors: VectorIndex | None, scopes: ScopeMap | None) -> None:
        self._vectors = vectors
        self._scopes = scopes
        # Items whose entry in the vector index may be stale: mirroring their commit failed.
        self.unmirrored: set[int] = set()

    def apply(self, changes: Changes) -> None:
        """Mirror one committed transaction; :class:`MirrorError` if the index failed."""
        self._apply_to_scopes(changes)
        try:
            self._apply_to_index(changes)
        except Exception as exc:
            raise MirrorError(exc) from exc

    def _apply_to_scopes(self, changes: Changes) -> None:
        if self._scopes is None or self._scopes.broken:
            return
        try:
            self._scopes.apply(
                changes.joined, changes.left, changes.expiries, changes.expiry_floor
            )
        except Exception:
            log.exception("memlane's scope map failed; scoped searches go to SQL from now on")

    def _apply_to_index(self, changes: Changes) -> None:
        if self._vectors is None:
            return
        try:
            if changes.removed:
                self._vectors.remove(changes.removed)
            if changes.upserted:
                self._vectors.upsert(changes.upserted)
        except Exception:
            self.unmirrored.update(touched(changes))
            raise
        if self.unmirrored:  # these items are now right in the index
            self.unmirrored.difference_update(touched(changes))

    def repair(self, raw: sqlite3.Connection) -> None:
        """Reload up to ``REPAIR_SLICE`` unmirrored items from the vectors table (on the
        connection's thread, after a commit); a failure here is logged, never raised."""
        if not self.unmirrored or self._vectors is None:
            return
        item_ids = list(itertools.islice(self.unmirrored, REPAIR_SLICE))
        try:
            reload_items(raw, self._vectors, item_ids)
        except Exception:
            # One by one, so that the items at fault do not hold the others back.
            item_ids = [item_id for item_id in item_ids if self._repair_one(raw, item_id)]
        self.unmirrored.difference_update(item_ids)

    def _repair_one(self, raw: sqlite3.Connection, item_id: int) -> bool:
        """Reload one item, or drop it from the index; False: try again later."""
        assert self._vectors is not None
        try:
            reload_items(raw, self._vectors, [item_id])
            return True
        except Exception:
            log.exception("memlane could not reload item %d into the vector index", item_id)
        try:
            self._vectors.remove([item_id])
            return True
        except Exception:
            return False

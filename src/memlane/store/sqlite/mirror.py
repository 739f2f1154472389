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

The follower (``follower.py``) brings other processes' commits in through the same door:
:meth:`Mirror.reload` makes the index and the map hold what the tables hold for some items,
:meth:`Mirror.reload_all` for every item.
"""

from __future__ import annotations

import itertools
import logging
import math
import sqlite3

from memlane.store.sqlite.scopes import ScopeMap
from memlane.store.sqlite.stored_vectors import load_vectors, reload_items
from memlane.store.sqlite.transaction import Changes, touched
from memlane.vectors import VectorIndex

__all__ = ["REPAIR_SLICE", "Mirror", "MirrorError"]

log = logging.getLogger(__name__)

# Items repaired per commit after a failed mirror: bounds the extra work of one commit.
REPAIR_SLICE = 4_096
_EARLIEST_EXPIRY = "SELECT MIN(expires_at) FROM items WHERE expires_at IS NOT NULL"


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
        self.unmirrored.difference_update(self._reload_vectors(raw, item_ids))

    def reload(
        self,
        raw: sqlite3.Connection,
        item_ids: list[int],
        added: list[tuple[str, int]],
        removed: list[tuple[str, int]],
    ) -> None:
        """Make the index hold what the tables hold for ``item_ids`` and the scope map
        gain ``added`` and lose ``removed`` ((namespace, id) pairs): another process's
        changes, inside the caller's read transaction."""
        self._reload_vectors(raw, item_ids)
        if self._scopes is None or self._scopes.broken:
            return
        # The true earliest expiry now: a lower bound for the scope map (see scopes.py).
        (floor,) = raw.execute(_EARLIEST_EXPIRY).fetchone()
        earliest = math.inf if floor is None else float(floor)
        try:
            self._scopes.apply(added, removed, expiry_floor=earliest)
        except Exception:
            log.exception("memlane's scope map failed; scoped searches go to SQL from now on")

    def reload_all(self, raw: sqlite3.Connection) -> None:
        """Make the index and the scope map hold what the tables hold, every item (inside
        the caller's read transaction)."""
        if self._vectors is not None:
            stored = {row[0] for row in raw.execute("SELECT item_id FROM vectors")}
            self._vectors.remove(i for i in self._vectors.item_ids().tolist() if i not in stored)
            load_vectors(raw, self._vectors)
            self.unmirrored.clear()
        if self._scopes is not None:
            self._scopes.load(raw)

    def _reload_vectors(self, raw: sqlite3.Connection, item_ids: list[int]) -> list[int]:
        """Reload ``item_ids`` from the vectors table (the truth, so each gets its latest
        state); the ids now right in the index (those that could be neither reloaded nor
        removed are left out: try again later)."""
        if self._vectors is None:
            return item_ids
        try:
            reload_items(raw, self._vectors, item_ids)
            return item_ids
        except Exception:
            # One by one, so that the items at fault do not hold the others back.
            return [item_id for item_id in item_ids if self._reload_one(raw, item_id)]

    def _reload_one(self, raw: sqlite3.Connection, item_id: int) -> bool:
        """Reload one item, or drop it from the index (missing beats stale)."""
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

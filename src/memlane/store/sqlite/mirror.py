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
:meth:`Mirror.read` reads what the tables hold for some items (SQL only) and
:meth:`Mirror.reload` applies it (memory only); :meth:`Mirror.reload_all` does both for
every item.
"""

from __future__ import annotations

import itertools
import logging
import math
import sqlite3
from dataclasses import dataclass

from memlane.store.sqlite.scopes import ScopeMap
from memlane.store.sqlite.stored_vectors import load_vectors, read_rows, replace_items
from memlane.store.sqlite.transaction import Changes, touched
from memlane.vectors import VectorIndex

__all__ = ["REPAIR_SLICE", "Mirror", "MirrorError", "Reload"]

log = logging.getLogger(__name__)

# Items repaired per commit after a failed mirror: bounds the extra work of one commit.
REPAIR_SLICE = 4_096
_EARLIEST_EXPIRY = "SELECT MIN(expires_at) FROM items WHERE expires_at IS NOT NULL"


@dataclass(frozen=True, slots=True)
class Reload:
    """What the tables held for another process's changes, read in one snapshot
    (:meth:`Mirror.read`, which needs the file) and applied by :meth:`Mirror.reload`
    (memory only): so the read may run within a bounded budget, and fail, before anything
    in memory changed."""

    item_ids: list[int]  # every item the changes touched
    rows: list[tuple[int, bytes]]  # (item id, stored vectors) of those that have vectors
    added: list[tuple[str, int]]  # (namespace, id) of the items created
    removed: list[tuple[str, int]]  # (namespace, id) of the items deleted
    earliest: float  # the earliest expiry in the table then: the scope map's lower bound


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
            rows = read_rows(raw, item_ids)
        except Exception:
            log.exception("memlane could not read vectors to repair its index; will retry")
            return
        self.unmirrored.difference_update(self._replace_vectors(item_ids, rows))

    def read(
        self,
        raw: sqlite3.Connection,
        item_ids: list[int],
        added: list[tuple[str, int]],
        removed: list[tuple[str, int]],
    ) -> Reload:
        """What the tables hold for another process's changes (inside the caller's read
        transaction): ``item_ids`` changed, ``added`` and ``removed`` ((namespace, id)
        pairs) joined and left namespaces. SQL only; :meth:`reload` applies it."""
        rows = read_rows(raw, item_ids) if self._vectors is not None else []
        earliest = math.inf
        if self._scopes is not None and not self._scopes.broken:
            (floor,) = raw.execute(_EARLIEST_EXPIRY).fetchone()
            earliest = math.inf if floor is None else float(floor)
        return Reload(item_ids, rows, added, removed, earliest)

    def reload(self, reload: Reload) -> None:
        """Make the index and the scope map hold what :meth:`read` found. Memory only."""
        self.unmirrored.difference_update(self._replace_vectors(reload.item_ids, reload.rows))
        if self._scopes is None or self._scopes.broken:
            return
        try:
            self._scopes.apply(reload.added, reload.removed, expiry_floor=reload.earliest)
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

    def _replace_vectors(
        self, item_ids: list[int], rows: list[tuple[int, bytes]]
    ) -> list[int]:
        """Make the index hold ``rows`` for ``item_ids``; the ids now right in the index
        (those that could be neither replaced nor removed are left out: try again later)."""
        if self._vectors is None:
            return item_ids
        try:
            replace_items(self._vectors, item_ids, rows)
            return item_ids
        except Exception:
            # One by one, so that the items at fault do not hold the others back.
            by_id = dict(rows)
            return [item_id for item_id in item_ids if self._replace_one(item_id, by_id)]

    def _replace_one(self, item_id: int, by_id: dict[int, bytes]) -> bool:
        """Replace one item, or drop it from the index (missing beats stale)."""
        assert self._vectors is not None
        try:
            row = [(item_id, by_id[item_id])] if item_id in by_id else []
            replace_items(self._vectors, [item_id], row)
            return True
        except Exception:
            log.exception("memlane could not reload item %d into the vector index", item_id)
        try:
            self._vectors.remove([item_id])
            return True
        except Exception:
            return False

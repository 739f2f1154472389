"""The mirror stage alone: committed changes into a fake vector index and a real scope map,
and the repair of what the index refused."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest

from memlane.store.sqlite.mirror import Mirror, MirrorError
from memlane.store.sqlite.schema import apply_migrations
from memlane.store.sqlite.scopes import ScopeMap
from memlane.store.sqlite.transaction import Changes


class FakeIndex:
    """Item id -> vectors; ``refuse`` makes upserts of those ids fail."""

    dims = 2

    def __init__(self) -> None:
        self.items: dict[int, list[list[float]]] = {}
        self.refuse: set[int] = set()

    def upsert(self, updates: list[tuple[int, np.ndarray]]) -> None:
        if any(item_id in self.refuse for item_id, _ in updates):
            raise RuntimeError("refused")
        for item_id, vectors in updates:
            self.items[item_id] = vectors.tolist()

    def remove(self, item_ids: Iterable[int]) -> None:
        for item_id in item_ids:
            self.items.pop(item_id, None)

    def load(self, ids: np.ndarray, counts: np.ndarray, matrix: np.ndarray) -> None:
        if any(int(i) in self.refuse for i in ids):
            raise RuntimeError("refused")
        start = 0
        for item_id, count in zip(ids.tolist(), counts.tolist(), strict=True):
            self.items[item_id] = matrix[start : start + count].tolist()
            start += count


def vec(*values: float) -> np.ndarray:
    return np.array([values], dtype=np.float32)


def test_changes_reach_the_index_and_the_scope_map() -> None:
    index, scopes = FakeIndex(), ScopeMap()
    mirror = Mirror(index, scopes)  # type: ignore[arg-type]
    mirror.apply(Changes(upserted=[(1, vec(1, 0)), (2, vec(0, 1))],
                         joined=[("a", 1), ("b", 2), ("c", 3)]))
    mirror.apply(Changes(removed=[2], left=[("b", 2)]))
    assert index.items == {1: [[1.0, 0.0]]}
    assert scopes.ids_under("a", 0).tolist() == [1]  # type: ignore[union-attr]
    assert scopes.ids_under("b", 0).tolist() == []  # type: ignore[union-attr]


def test_a_refused_item_is_remembered_and_repaired_from_the_table(tmp_path: Path) -> None:
    raw = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    apply_migrations(raw, 0)
    index = FakeIndex()
    mirror = Mirror(index, None)  # type: ignore[arg-type]
    index.refuse = {7}
    with pytest.raises(MirrorError):
        mirror.apply(Changes(upserted=[(7, vec(1, 0))]))
    assert mirror.unmirrored == {7}
    raw.execute("INSERT INTO vectors VALUES (7, ?)", (vec(0.6, 0.8).tobytes(),))
    mirror.repair(raw)  # still refused: the item leaves the index instead of staying stale
    assert mirror.unmirrored == set() and 7 not in index.items
    index.refuse = set()
    with pytest.raises(MirrorError):
        index.refuse = {8}
        mirror.apply(Changes(upserted=[(8, vec(1, 0))]))
    index.refuse = set()
    raw.execute("INSERT INTO vectors VALUES (8, ?)", (vec(0.0, 1.0).tobytes(),))
    mirror.repair(raw)  # now the table's latest state is loaded
    assert mirror.unmirrored == set() and index.items[8] == [[0.0, 1.0]]
    raw.close()


def test_a_later_successful_write_of_an_item_clears_it() -> None:
    index = FakeIndex()
    mirror = Mirror(index, None)  # type: ignore[arg-type]
    index.refuse = {3}
    with pytest.raises(MirrorError):
        mirror.apply(Changes(upserted=[(3, vec(1, 0))]))
    index.refuse = set()
    mirror.apply(Changes(upserted=[(3, vec(0, 1))]))
    assert mirror.unmirrored == set() and index.items[3] == [[0.0, 1.0]]


def test_a_failing_scope_map_breaks_itself_and_fails_nobody() -> None:
    scopes = ScopeMap()
    mirror = Mirror(None, scopes)
    mirror.apply(Changes(joined=[("a", 1)]))
    mirror.apply(Changes(joined=[(None, 2)]))  # type: ignore[list-item]
    assert scopes.broken

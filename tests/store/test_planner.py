"""The search planner alone: which plan a scoped or filtered vector search gets, on a bare
sqlite3 connection and a small real vector index."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memlane import SearchOp
from memlane.store.ops import PreparedSearch, prepare_ops
from memlane.store.sqlite.planner import CandidateIds, RankedRows, WholeIndex, plan_search
from memlane.store.sqlite.schema import apply_migrations
from memlane.store.sqlite.scopes import ScopeMap
from memlane.vectors import VectorIndex

NOW = 1_000.0
QUERY = np.array([1.0, 0.0], dtype=np.float32)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[sqlite3.Connection, VectorIndex, ScopeMap]]:
    raw = sqlite3.connect(tmp_path / "p.db", isolation_level=None)
    apply_migrations(raw, 0)
    index = VectorIndex(2)
    rows = [(n, "a" if n < 30 else "a.c", f"k{n}", f'{{"n": {n}}}', 1, 1, None, None)
            for n in range(1, 41)]
    raw.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    angles = np.linspace(0, 1, 40)
    vectors = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    index.upsert([(n + 1, vectors[n : n + 1]) for n in range(40)])
    scopes = ScopeMap()
    scopes.load(raw)
    yield raw, index, scopes
    raw.close()


def search(prefix: tuple[str, ...], **options: Any) -> PreparedSearch:
    (op,) = prepare_ops([SearchOp(prefix, options.pop("filter", None), 3, 0, "q")])
    assert isinstance(op, PreparedSearch)
    return op


def test_a_prefix_over_the_whole_store_searches_the_whole_index(setup: Any) -> None:
    raw, index, scopes = setup
    for known in (scopes, None):  # from the scope map, or asked of SQL
        plan = plan_search(raw, search(("a",)), QUERY, NOW, index=index, scopes=known,
                           inline_rows=100)
        assert plan == WholeIndex()


def test_few_candidates_are_ranked_on_the_spot(setup: Any) -> None:
    raw, index, scopes = setup
    for known in (scopes, None):
        plan = plan_search(raw, search(("a", "c")), QUERY, NOW, index=index, scopes=known,
                           inline_rows=100)
        assert isinstance(plan, RankedRows)
        assert [item.key for item, _, _ in plan.found] == ["k30", "k31", "k32"]
    plan = plan_search(raw, search(("a",), filter={"n": {"$gte": 10}}), QUERY, NOW,
                       index=index, scopes=scopes, inline_rows=100)
    assert isinstance(plan, RankedRows)
    assert [item.key for item, _, _ in plan.found] == ["k10", "k11", "k12"]


def test_many_candidates_go_to_the_search_workers_as_ids(setup: Any) -> None:
    raw, index, scopes = setup
    plan = plan_search(raw, search(("a",), filter={"n": {"$lt": 30}}), QUERY, NOW,
                       index=index, scopes=scopes, inline_rows=5)
    assert isinstance(plan, CandidateIds)
    assert sorted(plan.ids.tolist()) == list(range(1, 30))

"""The scope map: which item ids live under a namespace prefix, in memory (SqliteStore)."""

from __future__ import annotations

import math
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.conftest import KEYWORD_DIMS, FakeClock, keyword_embed

from memlane import ImportItem, IndexConfig, PutOp, SqliteStore
from memlane.store.sqlite.scopes import ASK_SQL, MAX_NAMESPACES, ScopeMap

INDEX = IndexConfig(dims=KEYWORD_DIMS, embed=keyword_embed, fields=["text"])
NOW = 1_000.0


def ids(found: np.ndarray | None) -> list[int] | None:
    return None if found is None else found.tolist()


def test_prefixes_match_whole_labels_and_ids_come_ascending() -> None:
    scopes = ScopeMap()
    scopes.apply(
        [("a", 9), ("a.b", 3), ("a.b.c", 1), ("a-x", 4), ("ab", 5), ("a.bc", 6), ("z", 2)], []
    )
    assert ids(scopes.ids_under("a", NOW)) == [1, 3, 6, 9]  # not "a-x" nor "ab"
    assert ids(scopes.ids_under("a.b", NOW)) == [1, 3]  # not "a.bc"
    assert ids(scopes.ids_under("a.b.c", NOW)) == [1]
    assert ids(scopes.ids_under("q", NOW)) == []
    assert scopes.ids_under("a.b.c.d", NOW) is not None and len(scopes) == 7


def test_a_prefix_over_every_item_answers_none() -> None:
    scopes = ScopeMap()
    scopes.apply([("users.u1", 1), ("users.u2", 2)], [])
    assert scopes.ids_under("users", NOW) is None  # search the whole index instead
    scopes.apply([("other", 3)], [])
    assert ids(scopes.ids_under("users", NOW)) == [1, 2]


def test_removed_items_and_emptied_namespaces_leave() -> None:
    scopes = ScopeMap()
    scopes.apply([("a.b", 1), ("a.b", 2), ("a.c", 3), ("d", 4)], [])
    assert ids(scopes.ids_under("a.b", NOW)) == [1, 2]
    scopes.apply([("a.b", 5)], [("a.b", 1), ("a.c", 3), ("a.c", 99)])  # 99: never there
    assert ids(scopes.ids_under("a", NOW)) == [2, 5]
    assert ids(scopes.ids_under("a.c", NOW)) == [] and len(scopes) == 3
    assert "a.c" not in scopes._members and scopes._below["a"] == {"a.b"}  # no husk left
    scopes.apply([("a.b", 2)], [])  # a rewrite: already a member
    assert len(scopes) == 3


@pytest.mark.anyio
async def test_the_store_keeps_the_map_in_step_and_rebuilds_it_on_open(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with SqliteStore.open(path, index=INDEX) as store:
        scopes = store._readers._scopes
        assert scopes is not None
        await store.abatch([PutOp(("u", str(n % 3)), f"k{n}", {"text": "apple"}) for n in range(9)])
        await store.adelete(("u", "0"), "k0")
        await store.aput(("v",), "x", {"text": "dog"})
        raw: sqlite3.Connection = store._writer._conn._conn
        truth = dict(raw.execute("SELECT key, id FROM items").fetchall())
        assert ids(scopes.ids_under("u.0", NOW)) == sorted([truth["k3"], truth["k6"]])
        hits = await store.asearch(("u", "0"), query="apple", limit=10)
        assert sorted(hit.key for hit in hits) == ["k3", "k6"]
        assert len(scopes) == 9
    async with SqliteStore.open(path, index=INDEX) as store:
        scopes = store._readers._scopes
        assert scopes is not None and len(scopes) == 9
        assert ids(scopes.ids_under("u.0", NOW)) == sorted([truth["k3"], truth["k6"]])
        assert ids(scopes.ids_under("u", NOW)) == sorted(v for k, v in truth.items() if k != "x")


@pytest.mark.anyio
async def test_swept_items_leave_the_map(tmp_path: Path) -> None:
    async with SqliteStore.open(tmp_path / "t.db", index=INDEX) as store:
        stamp = datetime(2024, 1, 2, tzinfo=UTC)
        await store.aput(("u", "1"), "live", {"text": "apple"})
        await store.aimport([ImportItem(("u", "1"), "old", {"text": "apple"}, stamp, stamp,
                                        expires_at=datetime(2024, 1, 3, tzinfo=UTC))])
        scopes = store._readers._scopes
        assert scopes is not None and len(scopes) == 2
        assert [hit.key for hit in await store.asearch(("u",), query="apple")] == ["live"]
        assert await store.asweep_expired() == 1
        assert len(scopes) == 1
        assert scopes.expires_from == math.inf  # nothing left expires: the map answers again


@pytest.mark.anyio
async def test_a_broken_map_sends_scoped_searches_back_to_sql(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If updating the map fails, no write fails for it and searches stay right."""
    async with SqliteStore.open(tmp_path / "b.db", index=INDEX) as store:
        scopes = store._readers._scopes
        assert scopes is not None
        await store.aput(("u", "1"), "a", {"text": "apple"})

        def broken(*args: object) -> None:
            raise MemoryError("no room")

        monkeypatch.setattr(scopes, "_add", broken)
        await store.aput(("u", "1"), "b", {"text": "apple"})  # succeeds
        assert scopes.broken and scopes.ids_under("u.1", NOW) is ASK_SQL and not scopes._members
        hits = await store.asearch(("u", "1"), query="apple", limit=5)
        assert sorted(hit.key for hit in hits) == ["a", "b"]


def test_from_the_earliest_expiry_until_a_sweep_sql_answers() -> None:
    """Until then every listed id is live; after it an expired item may wait for the
    sweeper, and SQL lists the live ones (a scope could be mostly expired items)."""
    scopes = ScopeMap()
    scopes.apply([("a", 1), ("b", 2)], [], [NOW + 60])
    assert ids(scopes.ids_under("a", NOW)) == [1]
    assert scopes.ids_under("a", NOW + 60) is ASK_SQL
    scopes.apply([], [("a", 1)], [], expiry_floor=math.inf)  # a sweep took the expired one
    assert ids(scopes.ids_under("b.c", NOW + 60)) == []
    # an import already past its expiry, swept in its own transaction: the floor, read
    # after the transaction's writes, is what counts
    scopes.apply([], [], [NOW - 5], expiry_floor=math.inf)
    assert ids(scopes.ids_under("b", NOW + 60)) is None


def test_a_prefix_over_many_namespaces_is_left_to_sql() -> None:
    scopes = ScopeMap()
    scopes.apply([(f"users.u{n}", n) for n in range(MAX_NAMESPACES)] + [("other", 999)], [])
    assert scopes.ids_under("users", NOW) is ASK_SQL  # Python work per namespace: SQL's job
    assert ids(scopes.ids_under("users.u3", NOW)) == [3]
    scopes.apply([], [("users.u0", 0)])
    assert ids(scopes.ids_under("users", NOW)) == list(range(1, MAX_NAMESPACES))


@pytest.mark.anyio
async def test_a_scope_full_of_expired_items_asks_sql_for_the_live_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Expired items stay in the map until swept; a search does not page through them all
    (each round asks the index for twice as many), it soon asks SQL for the live ids."""
    import memlane.store.sqlite.reader as reader_module

    stamp = datetime(2024, 1, 2, tzinfo=UTC)
    gone = datetime(2024, 1, 3, tzinfo=UTC)
    async with SqliteStore.open(tmp_path / "x.db", index=INDEX) as store:
        await store.aimport([ImportItem(("s",), f"old{n}", {"text": "apple"}, stamp, stamp,
                                        expires_at=gone) for n in range(600)])
        await store.abatch([PutOp(("s",), f"new{n}", {"text": "apple pie"}) for n in range(3)])
        await store.aput(("t",), "elsewhere", {"text": "apple"})
        fetches = []
        real = reader_module.rows_by_id

        def counted(*args: Any) -> Any:
            fetches.append(1)
            return real(*args)

        monkeypatch.setattr(reader_module, "rows_by_id", counted)
        found = await store.asearch(("s",), query="apple", limit=3)
        assert sorted(hit.key for hit in found) == ["new0", "new1", "new2"]
        assert len(fetches) <= 5, fetches  # k = 3, 6, 12, then the live ids: not 3 ... 768


@pytest.mark.anyio
async def test_a_search_over_a_whole_store_prefix_never_returns_another_namespace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the prefix covered every item, the whole index is searched without ids; an
    item another namespace gains meanwhile must still stay out of the page."""
    async with SqliteStore.open(tmp_path / "w.db", index=INDEX) as store:
        await store.aput(("a",), "mine", {"text": "apple"})
        coalescer = store._readers._coalescer
        assert coalescer is not None
        real_search = coalescer.search

        async def search_after_a_commit(*args: Any) -> Any:
            await store.aput(("b",), "theirs", {"text": "apple"})  # lands meanwhile
            return await real_search(*args)

        monkeypatch.setattr(coalescer, "search", search_after_a_commit)
        found = await store.asearch(("a",), query="apple", limit=5)
        assert [(hit.namespace, hit.key) for hit in found] == [(("a",), "mine")]


@pytest.mark.anyio
async def test_a_written_expiry_sends_scoped_searches_to_sql_once_it_passes(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with SqliteStore.open(tmp_path / "e.db", index=INDEX, clock=clock) as store:
        scopes = store._readers._scopes
        assert scopes is not None
        await store.aput(("u", "1"), "keep", {"text": "apple"})
        await store.aput(("u", "1"), "brief", {"text": "apple"}, ttl=1)
        assert scopes.expires_from == pytest.approx(clock.now + 60)
        assert scopes.ids_under("u.1", clock.now) is not ASK_SQL  # the map still answers
        clock.advance(61)
        assert scopes.ids_under("u", clock.now) is ASK_SQL  # "brief" expired, not swept
        found = await store.asearch(("u",), query="apple", limit=5)
        assert [hit.key for hit in found] == ["keep"]

"""list_namespaces walks an index: same answers as the reference rule, a page's worth of work.

The reference is ``list_matching_namespaces`` over every live namespace (filter, truncate,
de-duplicate, sort, page). The walks must agree with it on data made to trip them: labels
that are text prefixes of others (``("a",)``, ``("ab",)``), characters that sort below the
stored separator ``"."`` (``("a", "b") < ("a-b",)`` though ``"a-b" < "a.b"`` as text),
``"*"`` labels, and namespaces whose items have all expired. At 20k namespaces, a page
visits about ``offset + limit`` namespaces and runs a few hundred SQLite VM instructions per
step, not a scan.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import FakeClock, StoreFactory

import memlane.store.namespaces as namespaces_module
from memlane import MatchCondition, PutOp, SqliteStore
from memlane.store.base import BaseStore
from memlane.store.namespaces import list_matching_namespaces
from memlane.store.sorted_namespaces import SortedNamespaces
from memlane.store.sqlite.codec import encode_namespace
from memlane.store.sqlite.connection import run_on_connection_thread
from memlane.store.sqlite.reader import _namespace_scan, _namespace_seek, seek_sql
from memlane.store.text_walk import TextOrderWalk

pytestmark = pytest.mark.anyio

Name = tuple[str, ...]

TRICKY: list[Name] = [
    ("a",), ("a", "b"), ("a", "b", "c"), ("a", "b-c"), ("a", "b", "c-d", "e"), ("a", " "),
    ("a", "*"), ("a", "\x01b"), ("a-b",), ("a-b", "x"), ("a!",), ("a\x01",), ("ab",),
    ("ab", "c"), ("a/",), ("a/", "b"), ("*",), ("*", "c"), ("\x01",), ("é",), ("\U0010ffff",),
    ("a\U0010ffff", "z"), ("\ud7ff",), ("\ue000", "c"), ("users", "u1", "memories"),
    ("users", "u1", "prefs"), ("users", "u2", "memories"), ("users", "u-2", "memories"),
    ("users-x", "u1"), ("usersx", "u1", "memories"), ("mixed",),
]
EXPIRED_ONLY: list[Name] = [("dead",), ("a", "dead"), ("a-b", "y"), ("a", "b", "c", "gone")]
PREFIXES: list[Name | None] = [
    None, ("a",), ("a", "b"), ("a", "*"), ("*",), ("*", "c"), ("a-b",), ("ab",), ("a", "dead"),
    ("users",), ("users", "*", "memories"), ("users", "u1"), ("nope",), ("a", "b", "c"),
    ("a.b",), ("",), ("\U0010ffff",), ("\ud7ff",),
]
SUFFIXES: list[Name | None] = [None, ("c",), ("*",), ("memories",), ("b", "*"), ("dead",)]
DEPTHS: list[int | None] = [None, 1, 2, 3]
PAGES = [(100, 0), (1, 0), (2, 1), (3, 2), (0, 0), (5, 100)]


async def fill(store: BaseStore, clock: FakeClock, live: list[Name], dead: list[Name]) -> None:
    """``live`` namespaces with a live item, ``dead`` ones whose only items expire; ``("mixed",)``
    also gets an expired item beside its live one."""
    await store.abatch([PutOp(name, "k", {"v": 1}, None, 1.0) for name in [*dead, ("mixed",)]])
    await store.abatch([PutOp(name, "live", {"v": 1}) for name in live])
    clock.advance(120)


def reference(
    live: list[Name], prefix: Name | None, suffix: Name | None, depth: int | None, page: Any
) -> list[Name]:
    return list_matching_namespaces(live, conditions(prefix, suffix), depth, *page)


def conditions(prefix: Name | None, suffix: Name | None) -> list[MatchCondition]:
    found = [MatchCondition("prefix", prefix)] if prefix is not None else []
    return found + ([MatchCondition("suffix", suffix)] if suffix is not None else [])


def queries() -> Iterator[tuple[Name | None, Name | None, int | None, tuple[int, int]]]:
    for prefix in PREFIXES:
        for suffix in SUFFIXES:
            for depth in DEPTHS:
                for page in PAGES:
                    yield prefix, suffix, depth, page


async def check_all(store: BaseStore, live: list[Name]) -> None:
    for prefix, suffix, depth, (limit, offset) in queries():
        got = await store.alist_namespaces(
            prefix=prefix, suffix=suffix, max_depth=depth, limit=limit, offset=offset
        )
        want = reference(live, prefix, suffix, depth, (limit, offset))
        assert got == want, (prefix, suffix, depth, limit, offset)


@pytest.mark.parametrize("misses", [namespaces_module.WALK_MISSES, 0], ids=["walk", "scan"])
async def test_walk_agrees_with_the_reference_on_tricky_namespaces(
    make_store: StoreFactory, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, misses: int
) -> None:
    """``scan``: the fallback for sparse matches, taken at the first miss."""
    monkeypatch.setattr(namespaces_module, "WALK_MISSES", misses)
    store = await make_store(clock=clock)
    await fill(store, clock, TRICKY, EXPIRED_ONLY)
    await check_all(store, TRICKY)


async def test_tuple_order_wins_over_the_stored_text_order(
    make_store: StoreFactory, clock: FakeClock
) -> None:
    """``"a-b" < "a.b"`` as stored text, but a label that ends sorts first as a tuple."""
    store = await make_store(clock=clock)
    await fill(store, clock, [("a-b",), ("a", "b"), ("a", "b-c"), ("a", "b", "c")], [])
    assert await store.alist_namespaces(limit=1) == [("a", "b")]
    assert await store.alist_namespaces(limit=2, offset=1) == [("a", "b", "c"), ("a", "b-c")]
    assert await store.alist_namespaces(max_depth=1) == [("a",), ("a-b",)]
    assert await store.alist_namespaces(max_depth=2, limit=2) == [("a", "b"), ("a", "b-c")]


def random_namespaces(rng: random.Random, count: int) -> list[Name]:
    """Short labels over characters either side of the dot, so they collide and nest."""
    alphabet = ["a", "b", "-", "!", "/", "\x01", "é"]
    found: set[Name] = set()
    while len(found) < count:
        depth = rng.randint(1, 4)
        found.add(tuple(
            "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 3)))
            for _ in range(depth)
        ))
    return sorted(found)


async def test_walk_agrees_with_the_reference_on_random_namespaces(
    make_store: StoreFactory, clock: FakeClock
) -> None:
    rng = random.Random(14)
    names = random_namespaces(rng, 400)
    dead = [name for name in names if rng.random() < 0.2]
    live = [name for name in names if name not in dead] + [("mixed",)]
    store = await make_store(clock=clock)
    await fill(store, clock, live, dead)
    for _ in range(300):
        base = rng.choice(names)
        prefix = base[: rng.randint(1, len(base))] if rng.random() < 0.7 else None
        if prefix is not None and rng.random() < 0.3:
            prefix = tuple("*" if rng.random() < 0.4 else label for label in prefix)
        suffix = base[-rng.randint(1, len(base)) :] if rng.random() < 0.2 else None
        depth = rng.choice(DEPTHS)
        limit, offset = rng.choice([(100, 0), (3, 0), (5, 7), (1, 40), (1000, 0)])
        got = await store.alist_namespaces(
            prefix=prefix, suffix=suffix, max_depth=depth, limit=limit, offset=offset
        )
        want = reference(live, prefix, suffix, depth, (limit, offset))
        assert got == want, (prefix, suffix, depth, limit, offset)


def test_sqlite_steps_go_in_tuple_order_with_any_characters() -> None:
    """The SQLite walk alone, on many small random stores: every step, and every jump past
    a subtree, lands where sorted tuples say (characters either side of the dot, the last
    code point, those around the surrogate gap)."""
    rng = random.Random(3)
    alphabet = ["a", "-", "/", "\x01", "\U0010ffff", "\ud7ff", "\ue000", ",", "0"]
    for _ in range(300):
        names = sorted({
            tuple("".join(rng.choices(alphabet, k=rng.randint(1, 3)))
                  for _ in range(rng.randint(1, 4)))
            for _ in range(rng.randint(0, 30))
        })
        dead = {name for name in names if rng.random() < 0.2}
        live = [name for name in names if name not in dead]
        raw = sqlite3.connect(":memory:")
        raw.execute(
            "CREATE TABLE items (namespace TEXT, key TEXT, expires_at REAL,"
            " UNIQUE (namespace, key))"
        )
        raw.executemany(
            "INSERT INTO items VALUES (?, 'k', ?)",
            [(encode_namespace(name), 1.0 if name in dead else None) for name in names],
        )
        walk = TextOrderWalk(_namespace_seek(raw, 5.0), _namespace_scan(raw, 5.0))
        walked, step = [], walk.first(())
        while step is not None:
            walked.append(step)
            step = walk.after(step, subtree=False)
        assert walked == live, names
        for name in rng.sample(names, min(5, len(names))):
            cut = name[: rng.randint(1, len(name))]
            past = [other for other in live if other > cut and other[: len(cut)] != cut]
            assert walk.after(cut, subtree=True) == (past[0] if past else None), (names, cut)
            later = [other for other in live if other > cut]
            assert walk.after(cut, subtree=False) == (later[0] if later else None), (names, cut)
            under = [other for other in live if other[: len(cut)] == cut]
            first = walk.first(cut)
            if under:
                assert first == under[0], (names, cut)
            else:  # anything not under the prefix ends the walk
                assert first is None or first[: len(cut)] != cut, (names, cut)
        raw.close()


# ---- at scale: work counted, not timed ----------------------------------------------------

USERS = 10_000  # two namespaces each: 20k


def user_namespace(n: int) -> Name:
    return ("users", f"u{n // 2:05d}", ("memories", "prefs")[n % 2])


class Visits:
    """Counts the namespaces a listing checks against its conditions (each store checks
    every one it visits)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = namespaces_module.matches_conditions

        def counted(namespace: Name, found: Any) -> bool:
            self.count += 1
            return real(namespace, found)

        monkeypatch.setattr(namespaces_module, "matches_conditions", counted)

    def take(self) -> int:
        count, self.count = self.count, 0
        return count


class VmSteps:
    """SQLite VM instructions run on the store's reader connections, in tens (SQLite calls
    the handler every ten, carrying the count over a statement's runs)."""

    def __init__(self) -> None:
        self.tens = 0

    def tick(self) -> int:
        self.tens += 1
        return 0

    async def install(self, store: BaseStore) -> None:
        def install(raw: sqlite3.Connection) -> None:
            raw.set_progress_handler(self.tick, 10)

        for conn in store._readers._pool._connections:  # type: ignore[attr-defined]
            await run_on_connection_thread(conn, install)

    def take(self) -> int:
        tens, self.tens = self.tens, 0
        return tens


SCALE_CASES: list[tuple[dict[str, Any], list[Name], int]] = [
    # arguments, the answer, at most this many namespaces visited
    ({"limit": 10}, [user_namespace(n) for n in range(10)], 10),
    ({"prefix": ("users", "u05000")}, [user_namespace(10_000), user_namespace(10_001)], 3),
    ({"max_depth": 1}, [("users",)], 1),
    ({"max_depth": 2, "limit": 3}, [("users", f"u{n:05d}") for n in range(3)], 3),
    ({"limit": 2, "offset": 40}, [user_namespace(n) for n in (40, 41)], 42),
    (
        {"prefix": ("users", "u09998"), "max_depth": 2, "limit": 5},
        [("users", "u09998")],
        1,
    ),
]


async def test_sparse_matches_fall_back_to_one_scan_of_the_range(
    make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A suffix that matches one namespace in 2,000: the walk gives up after its misses and
    one pass over the range finds the rest; the answer is the same."""
    monkeypatch.setattr(namespaces_module, "WALK_MISSES", 50)
    store = await make_store()
    names = [("users", f"u{n:04d}", "x" if n % 2_000 == 1_999 else "y") for n in range(6_000)]
    await store.abatch([PutOp(name, "k", {"v": 1}) for name in names])
    visits = Visits(monkeypatch)
    found = await store.alist_namespaces(prefix=("users",), suffix=("x",), limit=2, offset=1)
    assert found == [("users", "u3999", "x"), ("users", "u5999", "x")]
    assert visits.take() == 51 + 6_000  # the walk's misses, then the scan
    monkeypatch.setattr(namespaces_module, "WALK_MISSES", 5_000)
    assert await store.alist_namespaces(suffix=("x",), limit=1) == [("users", "u1999", "x")]
    assert visits.take() == 2_000  # found before giving up: no scan


async def test_a_page_visits_about_a_page_of_20k_namespaces(
    make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await make_store()
    names = [user_namespace(n) for n in range(2 * USERS)]
    for start in range(0, len(names), 5_000):
        await store.abatch([PutOp(name, "k", {"v": 1}) for name in names[start : start + 5_000]])
    visits = Visits(monkeypatch)
    steps = VmSteps()
    if make_store.backend == "sqlite":
        await steps.install(store)
    for arguments, answer, most in SCALE_CASES:
        steps.take()
        assert await store.alist_namespaces(**arguments) == answer, arguments
        assert visits.take() <= most, arguments
        # at most ~1,000 instructions a namespace visited; a pass over 20k runs ~180k
        assert steps.take() <= 100 * (most + 2), arguments


async def test_the_seeks_use_the_namespace_index(tmp_path: Path) -> None:
    """SQLite's query plans: every seek is a range search of the (namespace, key) index."""
    async with SqliteStore.open(tmp_path / "plans.db") as store:
        await store.aput(("a",), "k", {"v": 1})
        found = await run_on_connection_thread(
            store._readers._pool._connections[0], _seek_plans  # type: ignore[attr-defined]
        )
    assert len(found) == 1 + 1 + 4, found
    index = "SEARCH items USING INDEX sqlite_autoindex_items_1 (namespace>"
    assert all(plan.startswith(index) for plan in found), found


def _seek_plans(raw: sqlite3.Connection) -> list[str]:
    found = []
    for bounded, open_end in [(1, False), (0, True), (3, True)]:
        params = [*("a", "b", 0.0) * bounded, *(("a", 0.0) if open_end else ())]
        sql = f"EXPLAIN QUERY PLAN {seek_sql(bounded, open_end)}"
        found += [str(row[-1]) for row in raw.execute(sql, params) if "items" in row[-1]]
    return found


def test_sorted_namespaces_keeps_order_through_chunk_splits_and_removals() -> None:
    rng = random.Random(7)
    names = sorted(encode_namespace(name) for name in random_namespaces(rng, 3_000))
    shuffled = names[:]
    rng.shuffle(shuffled)
    kept = SortedNamespaces()
    for name in shuffled:
        kept.add(name)
    gone = set(rng.sample(names, 1_500))
    for name in gone:
        kept.discard(name)
    kept.discard("not.there")
    left = [name for name in names if name not in gone]
    assert list(kept.iter_from("", inclusive=True)) == left
    assert len(kept) == len(left)
    for name in rng.sample(names, 50):
        after = [other for other in left if other > name]
        assert list(kept.iter_from(name, inclusive=False)) == after
        assert list(kept.iter_from(name, inclusive=True)) == [o for o in left if o >= name]


async def test_a_page_deep_into_the_range_falls_back_to_one_scan(
    make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Walking on to a deep offset would cost more steps than one scan costs rows."""
    monkeypatch.setattr(namespaces_module, "WALK_MISSES", 50)
    store = await make_store()
    names = [("users", f"u{n:04d}") for n in range(3_000)]
    await store.abatch([PutOp(name, "k", {"v": 1}) for name in names])
    visits = Visits(monkeypatch)
    assert await store.alist_namespaces(offset=2_000, limit=2) == names[2_000:2_002]
    assert visits.take() == 51 + 3_000  # the walk's steps, then the scan
    assert await store.alist_namespaces(offset=30, limit=10) == names[30:40]
    assert visits.take() == 40  # as many still wanted as the walk may take: no scan

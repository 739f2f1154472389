"""Filter size limits: wide filters answer alike on every store, and a filter too deep or too
large is refused with the same ``ValueError`` naming the limit (never a SQLite error or a
``RecursionError``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import pytest
from tests.conftest import StoreFactory

from memlane.store.filters import MAX_DEPTH, MAX_NODES, parse_filter

pytestmark = pytest.mark.anyio

VALUES: list[Any] = [*range(40), *(i + 0.5 for i in range(10)), *(f"s{i}" for i in range(30)),
                     True, None, [1, "s1"], {"k": 2}]


async def fill(store: Any) -> dict[str, dict[str, Any]]:
    """One item per value, each with the value as "id" and a number as "n"."""
    items = {f"k{i}": {"id": v, "n": i} for i, v in enumerate(VALUES)}
    for key, value in items.items():
        await store.aput(("ns",), key, value)
    return items


async def keys(store: Any, spec: dict[str, Any]) -> set[str]:
    return {item.key for item in await store.asearch(("ns",), filter=spec, limit=1000)}


def expected(items: dict[str, dict[str, Any]], spec: dict[str, Any]) -> set[str]:
    flt = parse_filter(spec)
    return {key for key, value in items.items() if flt.matches(value)}


# ---------------------------------------------------------------------------------------------
# Wide filters work on every store


async def test_an_or_of_20000_branches_answers_alike(make_store: StoreFactory) -> None:
    store = await make_store()
    items = await fill(store)
    branches: list[dict[str, Any]] = [{"id": v} for v in range(10, 112_000, 7)]
    branches += [{"id": f"s{i}"} for i in range(0, 43_978, 11)]
    branches += [{"n": {"$gt": 48}}, {"id": 2.5}, {"id": None}]
    spec = {"$or": branches}
    assert len(spec["$or"]) == 20_000
    found = await keys(store, spec)
    assert found == expected(items, spec)
    hits = {repr(items[k]["id"]) for k in found}
    assert hits >= {"10", "17", "38", "'s0'", "'s11'", "2.5", "None"}


@pytest.mark.parametrize("op", ["$in", "$nin"])
async def test_in_of_100000_values_answers_alike(make_store: StoreFactory, op: str) -> None:
    store = await make_store()
    items = await fill(store)
    values: list[Any] = [*range(5, 50_005), *(f"s{i}" for i in range(3, 50_002)), 0.5]
    spec = {"id": {op: values}}
    assert len(values) == 100_000
    found = await keys(store, spec)
    assert found == expected(items, spec)
    assert ("k5" in found) is (op == "$in")


async def test_an_and_of_thousands_of_conditions_answers_alike(make_store: StoreFactory) -> None:
    """Branches on many fields do not merge into one $in: the SQL nests them in balanced
    groups, within SQLite's expression depth (1000) and parser stack."""
    store = await make_store()
    items = await fill(store)
    and_spec = {"$and": [{f"gone{i}": {"$ne": i}} for i in range(900)] + [{"n": {"$lt": 9}}]}
    or_spec = {"$or": [{f"f{i}": {"$gte": i}} for i in range(1_500)] + [{"id": [1, "s1"]}]}
    assert await keys(store, and_spec) == expected(items, and_spec) == {f"k{i}" for i in range(9)}
    assert await keys(store, or_spec) == expected(items, or_spec) == {f"k{len(VALUES) - 2}"}


# ---------------------------------------------------------------------------------------------
# Too deep: the same ValueError on every store, even thousands of levels deep


def nest_not(depth: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"id": 1}
    for _ in range(depth):
        spec = {"$not": spec}
    return spec


def nest_logic(depth: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"id": 1}
    for i in range(depth):
        spec = {"$or" if i % 2 else "$and": [{"n": {"$gt": i}}, spec]}
    return spec


def nest_dict(depth: int) -> dict[str, Any]:
    value: Any = 1
    for _ in range(depth):
        value = {"k": value}
    return {"id": value}


def nest_list(depth: int) -> dict[str, Any]:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return {"id": {"$contains": value}}


def nest_fields(depth: int) -> dict[str, Any]:
    """Dicts of several conditions, each holding the next."""
    spec: dict[str, Any] = {"id": 1}
    for i in range(depth):
        spec = {"n": {"$gte": i}, "$not": spec}
    return spec


NESTINGS: list[Callable[[int], dict[str, Any]]] = [
    nest_not, nest_logic, nest_dict, nest_list, nest_fields
]


def deepest_accepted(nest: Callable[[int], dict[str, Any]]) -> int:
    for depth in range(4 * MAX_DEPTH):
        try:
            parse_filter(nest(depth + 1))
        except ValueError:
            return depth
    raise AssertionError(f"{nest.__name__} nested {4 * MAX_DEPTH} deep is accepted")


@pytest.mark.parametrize("nest", NESTINGS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("depth", [None, 10_000])
async def test_too_deep_is_the_same_value_error_everywhere(
    make_store: StoreFactory, nest: Callable[[int], dict[str, Any]], depth: int | None
) -> None:
    """Just past the limit and 10,000 levels deep (beyond Python's recursion limit)."""
    store = await make_store()
    await fill(store)
    spec = nest(deepest_accepted(nest) + 1 if depth is None else depth)
    with pytest.raises(ValueError, match=rf"nests .* over the limit of {MAX_DEPTH} \(MAX_DEPTH\)"):
        await store.asearch(("ns",), filter=spec)


@pytest.mark.parametrize("nest", NESTINGS, ids=lambda f: f.__name__)
async def test_the_deepest_accepted_filter_answers_alike(
    make_store: StoreFactory, nest: Callable[[int], dict[str, Any]]
) -> None:
    store = await make_store()
    items = await fill(store)
    depth = deepest_accepted(nest)
    assert depth >= MAX_DEPTH // 4, "the limit counts SQL levels, not far from the nesting"
    spec = nest(depth)
    assert await keys(store, spec) == expected(items, spec)


# Every accepted filter compiles: the costliest shapes, nested as deep as accepted, in the
# costliest position (the nested filter last, where SQLite's parser holds the most).

LEAVES: list[dict[str, Any]] = [
    {"id": "x"},
    {"id": {"$ne": 1.5}},
    {"id": {"$nin": ["x", 1, True, None, [1], {"k": 1}]}},
    {"id": {"$gte": 1, "$lt": "z"}},
    {"id": {"$exists": False}},
    {"id": [1, {"k": [2, {"j": 3}]}]},
    {"id": {"$contains": ["x", 1, [2, {"k": [3]}]]}},
    {"id": {"$in": [{f"k{i}": [i] for i in range(20)}, "x"]}},
]
WRAPS: list[Callable[[dict[str, Any], int], dict[str, Any]]] = [
    lambda spec, i: {"$not": spec},
    lambda spec, i: {"$and": [{f"f{j}": j} for j in range(15)] + [spec]},
    lambda spec, i: {"$or": [{f"f{j}": {"$gt": j}} for j in range(15)] + [spec]},
    lambda spec, i: {"$or" if i % 2 else "$and": [{"n": {"$gt": 1}}, spec]},
    lambda spec, i: {"$not": {"$or": [{"n": {"$gt": 1}}, spec]}},
    lambda spec, i: {"n": {"$gt": 1}, "$not": spec},
    lambda spec, i: {"$or": [{f"f{j}": {"$gt": j}} for j in range(300)] + [spec]},
]


@pytest.mark.parametrize("wrap", range(len(WRAPS)))
@pytest.mark.parametrize("leaf", range(len(LEAVES)))
async def test_costly_shapes_at_the_depth_limit_answer_alike(
    make_store: StoreFactory, leaf: int, wrap: int
) -> None:
    store = await make_store()
    items = await fill(store)
    spec = LEAVES[leaf]
    for i in range(4 * MAX_DEPTH):
        try:
            parse_filter(deeper := WRAPS[wrap](spec, i))
        except ValueError as error:
            assert "MAX_DEPTH" in str(error)
            break
        spec = deeper
    else:
        raise AssertionError(f"nested {4 * MAX_DEPTH} deep is accepted")
    assert i > 0
    assert await keys(store, spec) == expected(items, spec)


# ---------------------------------------------------------------------------------------------
# Too large


async def test_too_many_nodes_is_the_same_value_error_everywhere(
    make_store: StoreFactory,
) -> None:
    store = await make_store()
    items = await fill(store)
    largest = {"$and": [{f"f{i}": {"$exists": False}} for i in range(MAX_NODES - 1)]}
    assert await keys(store, largest) == expected(items, largest) == set(items)
    too_large = {"$and": [*largest["$and"], {"n": 1}]}
    with pytest.raises(ValueError, match=rf"over the limit of {MAX_NODES} \(MAX_NODES\)"):
        await store.asearch(("ns",), filter=too_large)


@pytest.mark.parametrize("leaf", range(len(LEAVES)))
def test_the_largest_filters_fit_the_default_sqlite_variable_limit(leaf: int) -> None:
    """Builds differ (32,766 variables by default, 250,000 on Debian): every accepted filter
    fits the smaller, so no store refuses what another answers."""
    conn = sqlite3.connect(":memory:")
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 32_766)
    conn.execute("CREATE TABLE items (value TEXT)")
    conn.execute("""INSERT INTO items VALUES ('{"id": 1}')""")
    def branches(count: int) -> list[dict[str, Any]]:
        return [{f"f{i}": LEAVES[leaf]["id"]} for i in range(count)]

    count = 1
    while True:
        assert count < 4 * MAX_NODES, "no node limit"
        try:
            parse_filter({"$and": branches(count * 2)})
        except ValueError:
            break
        count *= 2
    low, high = count, count * 2  # accepted, refused: bisect
    while high - low > 1:
        mid = (low + high) // 2
        try:
            parse_filter({"$and": branches(mid)})
            low = mid
        except ValueError as error:
            assert "MAX_NODES" in str(error)
            high = mid
    where, params = parse_filter({"$and": branches(low)}).to_sql("items.value")
    prefix = ["ns", "ns.", "ns/", 0.0]  # what the SQLite store binds before the filter
    conn.execute(f"SELECT count(*) FROM items WHERE {' AND '.join('?' * 4)} AND {where} "
                 f"LIMIT ? OFFSET ?", [*prefix, *params, 10, 0]).fetchall()
    conn.close()

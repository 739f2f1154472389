"""The jsonb condition a PostgresStore pushes into SQL for a filter never drops a value the
filter matches (the predicate then decides), and narrows what it can: random filters and
values (the strategies of test_filters.py) against a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

psycopg = pytest.importorskip("psycopg")

from tests.store.test_filters import cases  # noqa: E402

from memlane.store.filters import parse_filter  # noqa: E402


@pytest.fixture(scope="module")
def conn(postgres_dsn: str) -> Iterator[Any]:
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        yield connection


def pushed_matches(conn: Any, spec: Any, docs: list[dict[str, Any]]) -> set[int] | None:
    """The docs the filter's jsonb superset lets through (None: it pushes nothing)."""
    pushed = parse_filter(spec).jsonb_superset("d.value")
    if pushed is None:
        return None
    text, params = pushed
    rows = conn.execute(
        f"SELECT d.n FROM (SELECT (ordinality - 1)::int AS n, value FROM"
        f" jsonb_array_elements(%s::jsonb) WITH ORDINALITY) AS d WHERE {text}",
        [orjson.dumps(docs).decode(), *params],
    ).fetchall()
    return {row[0] for row in rows}


@settings(max_examples=300, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
])
@given(cases())
def test_the_pushed_condition_keeps_every_match(
    conn: Any, case: tuple[list[dict[str, Any]], dict[str, Any]]
) -> None:
    docs, spec = case
    matched = {n for n, doc in enumerate(docs) if parse_filter(spec).matches(doc)}
    passed = pushed_matches(conn, spec, docs)
    if passed is not None:
        assert matched <= passed, (spec, docs)


# The operators the condition pushes, on values built to probe jsonb against the predicate:
# 1 against 1.0 and True, lists holding the operand, and integers near and beyond 2**63
# (the predicate compares those as the nearest float, jsonb exactly).
SCALARS = [0, 1, 1.0, -1, True, False, "x", "1", "", 2**53 - 1, 2.0**53, 2**63 - 1, 2**63,
           2**63 + 1, 2**64 - 1, 2.0**63, 2.0**64, 9007199254740993, 0.1, -0.0]
scalar = st.sampled_from(SCALARS)
operand = st.sampled_from([x for x in SCALARS if not (type(x) is int and x >= 2**63)])
field_value = scalar | st.lists(scalar | st.lists(scalar, max_size=2), max_size=3)
pushed_filter = st.one_of(
    st.builds(lambda x: {"f": x}, operand),
    st.builds(lambda xs: {"f": {"$in": xs}}, st.lists(operand, min_size=1, max_size=3)),
    st.builds(lambda xs: {"f": {"$contains": xs}}, st.lists(operand, max_size=2)),
    st.builds(lambda x: {"g.f": x}, operand),
    st.just({"f": {"$exists": True}}),
)
probe_docs = st.lists(
    st.one_of(
        st.builds(lambda v: {"f": v}, field_value),
        st.builds(lambda v: {"g": {"f": v}}, field_value),
        st.builds(lambda v: {"g": [{"f": v}]}, field_value),  # a list is not walked
        st.just({}),
    ),
    min_size=1, max_size=6,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
])
@given(probe_docs, pushed_filter)
@example([{"f": 2**63 + 1}], {"f": 2.0**63})  # the predicate: equal as floats; jsonb: not
@example([{"f": [2**64 - 1]}], {"f": {"$in": [2.0**64]}})
def test_the_pushed_operators_keep_every_match(
    conn: Any, docs: list[dict[str, Any]], spec: dict[str, Any]
) -> None:
    matched = {n for n, doc in enumerate(docs) if parse_filter(spec).matches(doc)}
    passed = pushed_matches(conn, spec, docs)
    if passed is not None:
        assert matched <= passed, (spec, docs)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"tag": 1}, {0, 3}),  # 1 == 1.0, and a list holding it
        ({"tag": {"$in": ["x", True]}}, {1, 2}),
        ({"tags": {"$contains": ["x"]}}, {4}),
        ({"a.b": "deep"}, {5}),
        ({"$and": [{"tag": 1}, {"n": {"$gt": 3}}]}, {0, 3}),  # the range stays in Python
        ({"$or": [{"tag": "x"}, {"missing": {"$exists": True}}]}, {1}),
    ],
)
def test_the_pushed_condition_narrows(conn: Any, spec: Any, expected: set[int]) -> None:
    docs = [
        {"tag": 1.0, "n": 5},
        {"tag": "x"},
        {"tag": True},
        {"tag": [2, 1]},
        {"tags": ["x", "y"]},
        {"a": {"b": "deep"}},
    ]
    assert pushed_matches(conn, spec, docs) == expected


@pytest.mark.parametrize(
    "spec",
    [{"n": {"$ne": 1}}, {"$not": {"tag": 1}}, {"n": {"$gt": 1}}, {"n": 2**60},
     {"n": None}, {"d": {"x": 1}}, {"$or": [{"tag": 1}, {"n": {"$lt": 0}}]}],
)
def test_what_jsonb_cannot_decide_alike_is_not_pushed(spec: Any) -> None:
    assert parse_filter(spec).jsonb_superset("value::jsonb") is None


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("spec", "offset"),
    [
        ({"tag": 7}, 3),  # pushed past the first page
        ({"n": {"$gte": 1_190}}, 0),  # a range: nothing pushed, every page in Python
        ({"n": 3}, 0),  # one match, the oldest: found past two pages
        ({"$or": [{"tag": 1}, {"tag": 2}]}, 5),
        ({"n": {"$gte": 0}}, 495),  # every row: the page spans the first page's end
    ],
)
async def test_a_filtered_search_past_the_first_page_gives_the_right_page(
    postgres_dsn: str, spec: dict[str, Any], offset: int
) -> None:
    """1,200 items, newest first: the page after the first 500 rows comes through the pushed
    condition after the last row seen, and equals the predicate's own answer."""
    from tests.conftest import fresh_schema

    from memlane import PostgresStore, PutOp

    async with PostgresStore.open(postgres_dsn, schema=fresh_schema()) as store:
        for start in range(0, 1_200, 300):  # oldest first: n ascending is updated_at ascending
            await store.abatch([
                PutOp(("u", str(n % 3)), f"k{n:04d}", {"n": n, "tag": n % 97})
                for n in range(start, start + 300)
            ])
        found = await store.asearch(("u",), filter=spec, limit=10, offset=offset)
        matches = parse_filter(spec).matches
        expected = [n for n in reversed(range(1_200)) if matches({"n": n, "tag": n % 97})]
        assert [item.value["n"] for item in found] == expected[offset : offset + 10]

"""The filter language: every rule checked on both compilations (predicate and SQLite SQL)."""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Iterator, Mapping
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memlane.store.filters import Filter, parse_filter


class Table:
    """An in-memory SQLite table of orjson rows, as the SQLite store keeps values."""

    def __init__(self, values: list[dict[str, Any]]) -> None:
        self.conn = sqlite3.connect(":memory:")
        self.conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, value TEXT NOT NULL)")
        self.conn.executemany(
            "INSERT INTO items (id, value) VALUES (?, ?)",
            [(i, orjson.dumps(v).decode()) for i, v in enumerate(values)],
        )

    def select(self, flt: Filter) -> set[int]:
        where, params = flt.to_sql("items.value")
        rows = self.conn.execute(f"SELECT id FROM items WHERE {where}", params).fetchall()
        return {row[0] for row in rows}


def sql_matches(flt: Filter, values: list[dict[str, Any]]) -> set[int]:
    """Indexes of ``values`` the filter's SQL selects."""
    table = Table(values)
    try:
        return table.select(flt)
    finally:
        table.conn.close()


def py_matches(flt: Filter, values: list[dict[str, Any]]) -> set[int]:
    return {i for i, v in enumerate(values) if flt.matches(v)}


def check(spec: Mapping[str, Any] | None, value: dict[str, Any], expected: bool) -> None:
    flt = parse_filter(spec)
    assert flt.matches(value) is expected, f"predicate: {spec!r} on {value!r}"
    assert (sql_matches(flt, [value]) == {0}) is expected, f"SQL: {spec!r} on {value!r}"


# ---------------------------------------------------------------------------------------------
# The rules, one table row each: (filter, value, expected)

PROFILE = {"profile": {"lang": "en", "age": 30}, "tags": ["x", "y"], "n": 10, "flag": True}

RULES: list[tuple[str, Mapping[str, Any] | None, dict[str, Any], bool]] = [
    ("none filter matches all", None, PROFILE, True),
    ("empty filter matches all", {}, PROFILE, True),
    ("plain equality", {"n": 10}, PROFILE, True),
    ("plain inequality", {"n": 11}, PROFILE, False),
    ("dotted path", {"profile.lang": "en"}, PROFILE, True),
    ("dotted path miss", {"profile.lang": "fr"}, PROFILE, False),
    ("dotted path through scalar", {"n.x": 1}, PROFILE, False),
    ("dotted path never enters lists", {"l.a": 1}, {"l": [{"a": 1}]}, False),
    ("keys AND together", {"n": 10, "profile.lang": "en"}, PROFILE, True),
    ("keys AND together, one fails", {"n": 10, "profile.lang": "fr"}, PROFILE, False),
    ("None matches missing", {"gone": None}, PROFILE, True),
    ("None matches null", {"z": None}, {"z": None}, True),
    ("None does not match a value", {"n": None}, PROFILE, False),
    ("None does not match a list holding null", {"l": None}, {"l": [None]}, False),
    ("scalar in list field", {"tags": "x"}, PROFILE, True),
    ("scalar not in list field", {"tags": "z"}, PROFILE, False),
    ("number in list field", {"l": 2}, {"l": [1, 2.0]}, True),
    ("bool in list field", {"l": True}, {"l": [1, True]}, True),
    ("bool not equal to 1 in list", {"l": True}, {"l": [1]}, False),
    ("list equals list", {"tags": ["x", "y"]}, PROFILE, True),
    ("list order matters", {"tags": ["y", "x"]}, PROFILE, False),
    ("list does not match a list holding it", {"l": [1]}, {"l": [[1], 2]}, False),
    ("list 1 == 1.0 inside", {"l": [1, 2]}, {"l": [1.0, 2]}, True),
    ("list bool != int inside", {"l": [1]}, {"l": [True]}, False),
    ("dict equals dict, any key order", {"profile": {"age": 30, "lang": "en"}}, PROFILE, True),
    ("dict with fewer keys differs", {"profile": {"lang": "en"}}, PROFILE, False),
    ("dict with null vs missing key", {"d": {"a": None}}, {"d": {}}, False),
    ("empty dict equals empty dict", {"d": {}}, {"d": {}}, True),
    ("empty dict is not a list", {"d": {}}, {"d": []}, False),
    ("10 == 10.0", {"n": 10.0}, PROFILE, True),
    ("10.0 == 10", {"n": 10}, {"n": 10.0}, True),
    ("'10' != 10", {"n": "10"}, PROFILE, False),
    ("10 != '10'", {"s": 10}, {"s": "10"}, False),
    ("True != 1", {"n": True}, {"n": 1}, False),
    ("1 != True", {"flag": 1}, PROFILE, False),
    ("False != 0", {"n": False}, {"n": 0}, False),
    ("0 != False", {"n": 0}, {"n": False}, False),
    ("True == True", {"flag": True}, PROFILE, True),
    ("big int exact", {"n": 2**63 - 1}, {"n": 2**63 - 1}, True),
    ("big int off by one", {"n": 2**63 - 2}, {"n": 2**63 - 1}, False),
    ("int vs close float is exact", {"n": 2**53 + 1}, {"n": float(2**53)}, False),
    ("$eq", {"n": {"$eq": 10}}, PROFILE, True),
    ("$eq scalar in list", {"tags": {"$eq": "y"}}, PROFILE, True),
    ("$ne", {"n": {"$ne": 10}}, PROFILE, False),
    ("$ne on missing is true", {"gone": {"$ne": 1}}, PROFILE, True),
    ("$ne None means present", {"gone": {"$ne": None}}, PROFILE, False),
    ("$ne on list holding value", {"tags": {"$ne": "x"}}, PROFILE, False),
    ("$gt number", {"n": {"$gt": 9}}, PROFILE, True),
    ("$gt number equal", {"n": {"$gt": 10}}, PROFILE, False),
    ("$gte number equal", {"n": {"$gte": 10.0}}, PROFILE, True),
    ("$lt number", {"n": {"$lt": 10.5}}, PROFILE, True),
    ("$lte number", {"n": {"$lte": 9}}, PROFILE, False),
    ("combined range in", {"n": {"$gte": 1, "$lt": 11}}, PROFILE, True),
    ("combined range out", {"n": {"$gte": 1, "$lt": 5}}, PROFILE, False),
    ("range string", {"s": {"$gt": "apple"}}, {"s": "banana"}, True),
    ("range string code points", {"s": {"$lt": "a"}}, {"s": "Z"}, True),
    ("range string vs non-ascii", {"s": {"$gt": "z"}}, {"s": "é"}, True),
    ("range string above BMP", {"s": {"$gt": "\uffff"}}, {"s": "😀"}, True),
    ("range string never matches number", {"n": {"$gt": "1"}}, PROFILE, False),
    ("range number never matches string", {"s": {"$gt": 1}}, {"s": "5"}, False),
    ("range never matches bool", {"flag": {"$gte": 0}}, PROFILE, False),
    ("range never matches null", {"z": {"$lt": 1}}, {"z": None}, False),
    ("range never matches missing", {"gone": {"$lt": 1}}, PROFILE, False),
    ("range never matches a list", {"l": {"$gt": 0}}, {"l": [1, 2]}, False),
    ("range never matches a dict", {"profile": {"$gt": 0}}, PROFILE, False),
    ("$in", {"n": {"$in": [1, 10]}}, PROFILE, True),
    ("$in miss", {"n": {"$in": [1, "10", True]}}, PROFILE, False),
    ("$in empty", {"n": {"$in": []}}, PROFILE, False),
    ("$in with None matches missing", {"gone": {"$in": [None, 1]}}, PROFILE, True),
    ("$in list field holds one", {"tags": {"$in": ["q", "y"]}}, PROFILE, True),
    ("$in structural", {"tags": {"$in": [["x", "y"]]}}, PROFILE, True),
    ("$in dict structural", {"profile": {"$in": [{"lang": "en", "age": 30.0}]}}, PROFILE, True),
    ("$in bool", {"flag": {"$in": [1, True]}}, PROFILE, True),
    ("$in bool not int", {"n": {"$in": [True]}}, {"n": 1}, False),
    ("$nin", {"n": {"$nin": [1, 2]}}, PROFILE, True),
    ("$nin hit", {"n": {"$nin": [10]}}, PROFILE, False),
    ("$nin on missing is true", {"gone": {"$nin": [1]}}, PROFILE, True),
    ("$exists true", {"n": {"$exists": True}}, PROFILE, True),
    ("$exists true on null", {"z": {"$exists": True}}, {"z": None}, True),
    ("$exists false", {"gone": {"$exists": False}}, PROFILE, True),
    ("$exists false on present", {"n": {"$exists": False}}, PROFILE, False),
    ("$exists nested", {"profile.lang": {"$exists": True}}, PROFILE, True),
    ("$contains one", {"tags": {"$contains": "x"}}, PROFILE, True),
    ("$contains missing one", {"tags": {"$contains": "z"}}, PROFILE, False),
    ("$contains all of", {"tags": {"$contains": ["x", "y"]}}, PROFILE, True),
    ("$contains not all of", {"tags": {"$contains": ["x", "z"]}}, PROFILE, False),
    ("$contains [] on a list", {"tags": {"$contains": []}}, PROFILE, True),
    ("$contains needs a list", {"s": {"$contains": "x"}}, {"s": "x"}, False),
    ("$contains not substring", {"s": {"$contains": "a"}}, {"s": "abc"}, False),
    ("$contains number", {"l": {"$contains": 1}}, {"l": [1.0]}, True),
    ("$contains not bool for 1", {"l": {"$contains": 1}}, {"l": [True]}, False),
    ("$contains dict element", {"l": {"$contains": {"a": 1}}}, {"l": [{"a": 1.0}]}, True),
    ("$contains list element", {"l": {"$contains": [[1]]}}, {"l": [[1], 2]}, True),
    ("$contains null element", {"l": {"$contains": None}}, {"l": [None]}, True),
    ("$and", {"$and": [{"n": 10}, {"flag": True}]}, PROFILE, True),
    ("$and one fails", {"$and": [{"n": 10}, {"flag": False}]}, PROFILE, False),
    ("$or", {"$or": [{"n": 1}, {"flag": True}]}, PROFILE, True),
    ("$or none", {"$or": [{"n": 1}, {"flag": False}]}, PROFILE, False),
    ("$not", {"$not": {"n": 10}}, PROFILE, False),
    ("$not of missing test is true", {"$not": {"gone": 1}}, PROFILE, True),
    ("$not of range on missing is true", {"$not": {"gone": {"$gt": 1}}}, PROFILE, True),
    ("$not of range on string is true", {"$not": {"s": {"$gt": 1}}}, {"s": "x"}, True),
    ("nested logic", {"$or": [{"$and": [{"n": 10}, {"$not": {"tags": "x"}}]}, {"gone": None}]},
     PROFILE, True),
    ("logic beside fields", {"n": 10, "$or": [{"flag": False}]}, PROFILE, False),
    ("key with space", {"a b": 1}, {"a b": 1}, True),
    ("key with quote", {'q"': 1}, {'q"': 1}, True),
    ("key with bracket", {"x[0]": 1}, {"x[0]": 1}, True),
    ("key with dollar", {"a.$b": 1}, {"a": {"$b": 1}}, True),
    ("key with backslash", {"c\\d": 1}, {"c\\d": 1}, True),
    ("key with newline", {"e\nf": 1}, {"e\nf": 1}, True),
    ("key non-ascii", {"é": "ü"}, {"é": "ü"}, True),
    ("quoted key not confused", {"a b": 1}, {"a": {"b": 1}}, False),
    ("dict operand with $ key is literal", {"d": {"x": {"$gt": 1}}}, {"d": {"x": {"$gt": 1}}},
     True),
    ("$eq dict with $ keys is literal", {"d": {"$eq": {"$gt": 1}}}, {"d": {"$gt": 1.0}}, True),
    ("$ne and range on one field", {"n": {"$ne": 5, "$gte": 1}}, {"n": 7}, True),
    ("$ne and range on one field, excluded", {"n": {"$ne": 7, "$gte": 1}}, {"n": 7}, False),
    ("two ranges, string and number", {"n": {"$gte": 1, "$lte": "z"}}, {"n": 7}, False),
    ("string with NUL is exact", {"s": "x"}, {"s": "x\x00y"}, False),
    ("string with NUL in list", {"l": "x"}, {"l": ["x\x00"]}, False),
    ("u64 int beyond int64 vs float", {"n": {"$gte": 2.0**63}}, {"n": 2**63 + 1}, True),
]


@pytest.mark.parametrize(
    ("spec", "value", "expected"), [r[1:] for r in RULES], ids=[r[0] for r in RULES]
)
def test_rule(spec: Mapping[str, Any] | None, value: dict[str, Any], expected: bool) -> None:
    check(spec, value, expected)


def test_is_empty() -> None:
    assert parse_filter(None).is_empty
    assert parse_filter({}).is_empty
    assert not parse_filter({"a": 1}).is_empty
    assert parse_filter({}).to_sql("items.value") == ("1", [])


def test_tuples_are_lists() -> None:
    check({"l": {"$in": (1, 2)}}, {"l": 2}, True)
    check({"l": (1, 2)}, {"l": [1, 2]}, True)


# ---------------------------------------------------------------------------------------------
# Errors


BAD: list[tuple[Any, str]] = [
    ({"a": {"$regex": "x"}}, "$regex"),
    ({"a": {"$foo": 1}}, "$foo"),
    ({"$foo": 1}, "$foo"),
    ({"$eq": 1}, "$eq"),
    ({"a": {"$in": 1}}, "$in"),
    ({"a": {"$in": "ab"}}, "$in"),
    ({"a": {"$nin": {"x": 1}}}, "$nin"),
    ({"a": {"$exists": 1}}, "$exists"),
    ({"a": {"$exists": "yes"}}, "$exists"),
    ({"a": {"$gt": {"x": 1}}}, "$gt"),
    ({"a": {"$gte": [1]}}, "$gte"),
    ({"a": {"$lt": None}}, "$lt"),
    ({"a": {"$lte": True}}, "$lte"),
    ({"a": {"$gt": float("nan")}}, "$gt"),
    ({"a": float("inf")}, "inf"),
    ({"a": {"$in": [float("-inf")]}}, "$in"),
    ({"a": 2**64}, "64-bit"),
    ({"$and": {"a": 1}}, "$and"),
    ({"$and": []}, "$and"),
    ({"$or": [1]}, "$or"),
    ({"$or": "a"}, "$or"),
    ({"$not": [{"a": 1}]}, "$not"),
    ({"a": {"$not": {"$gt": 1}}}, "$not"),
    ({"": 1}, "''"),
    ({"a..b": 1}, "a..b"),
    ({".a": 1}, ".a"),
    ({"a.": 1}, "a."),
    ({'a"[': 1}, 'a"['),
    ({"a": {"$eq": {'x".y': 1}}}, 'x".y'),
    ({"a": {"$gt": 1, "b": 2}}, "mixes"),
    ({"a": {1: 2}}, "keys must be strings"),
    ({1: 2}, "strings"),
    ({"a": {1, 2}}, "set"),
    ({"a": object()}, "object"),
    ({"a": "\ud800"}, "Unicode"),
]


@pytest.mark.parametrize(("spec", "named"), BAD, ids=[repr(b[0])[:40] for b in BAD])
def test_bad_filter_names_the_problem(spec: Any, named: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_filter(spec)
    assert named in str(info.value)


@pytest.mark.parametrize("spec", [[("a", 1)], "a", 1, ["a"]])
def test_non_dict_filter(spec: Any) -> None:
    with pytest.raises(ValueError, match="filter must be a dict"):
        parse_filter(spec)


def test_unknown_operator_lists_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"\$regex.*\$contains"):
        parse_filter({"a": {"$regex": "^x"}})


def test_unqualified_json_each_column_is_refused() -> None:
    with pytest.raises(ValueError, match="qualify"):
        parse_filter({"a": 1}).to_sql("value")


# ---------------------------------------------------------------------------------------------
# No key or value in SQL text


def test_no_key_or_value_reaches_sql_text() -> None:
    secret_keys = ["k'ey; DROP", "nm\"x", "spé cial", "inner"]
    secret_values = ["v'; DROP TABLE items; --", "zz9", "ttt", "dd"]
    spec = {
        f"{secret_keys[0]}.{secret_keys[1]}": secret_values[0],
        secret_keys[2]: {
            "$in": [secret_values[1], 12345],
            "$ne": {secret_keys[3]: secret_values[2]},
        },
        "$or": [{"x": {"$contains": [secret_values[3], 98765]}}, {"y": {"$gt": 4242.5}}],
        "$not": {"w": [secret_values[2], 777]},
    }
    sql, params = parse_filter(spec).to_sql("items.value")
    for secret in [*secret_keys, *secret_values, "12345", "98765", "4242", "777"]:
        assert secret not in sql
    assert "'" not in sql.replace("'text'", "").replace("'integer'", "").replace(
        "'real'", "").replace("'true'", "").replace("'false'", "").replace("'null'", "").replace(
        "'array'", "").replace("'object'", "")
    assert sql.count("?") == len(params)
    assert sql_matches(parse_filter(spec), [{"x": 1}]) == set()


# ---------------------------------------------------------------------------------------------
# Property: the predicate and the SQL agree on random values and filters

KEYS = ["a", "b", "c", "a b", 'q"', "x[", "$", "é", "n\\"]
# NUL is refused in operands (and in stored values) by every store; U+0001 stands in for
# the low characters.
STRINGS = ["", "x", "y", "X", "10", "é", "😀", "x\x01", "x\x01y", "a b", "\n"]
INTS = [0, 1, -1, 2, 10, 2**53 + 1, 2**63 - 1, -(2**63)]
FLOATS = [0.0, -0.0, 1.0, 1.5, -2.5, 10.0, 2.0**53, 2.0**63, 2.0**64, 1e300, 5e-324]

scalar_operands = st.one_of(  # mostly small sets of values, so that equal values recur
    st.none(),
    st.booleans(),
    st.sampled_from(INTS),
    st.integers(-3, 3),
    st.integers(-3, 3),
    st.sampled_from(FLOATS),
    st.sampled_from(STRINGS),
    st.sampled_from(STRINGS[:4]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet="xyé\x01", max_size=3),
)
stored_scalars = st.one_of(scalar_operands, st.sampled_from([2**63, 2**63 + 1, 2**64 - 1]))
keys = st.one_of(st.sampled_from(["a", "b"]), st.sampled_from(KEYS))  # common names hit more


def json_values(scalars: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=4)
        | st.dictionaries(keys, children, max_size=4),
        max_leaves=8,
    )


documents = st.dictionaries(keys, json_values(stored_scalars), min_size=1, max_size=4)


def sub_values(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for child in value.values():
            yield from sub_values(child)
    elif isinstance(value, list):
        for child in value:
            yield from sub_values(child)


def field_values(doc: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every (dotted path, value) a filter key can reach in ``doc``."""
    for key, value in doc.items():
        path = f"{prefix}.{key}" if prefix else key
        yield path, value
        if isinstance(value, dict):
            yield from field_values(value, path)


def variant(value: Any, rnd: random.Random) -> Any:
    """An equal value in another form: dict keys shuffled, some ints written as floats."""
    if isinstance(value, dict):
        items = list(value.items())
        rnd.shuffle(items)
        return {k: variant(v, rnd) for k, v in items}
    if isinstance(value, list):
        return [variant(v, rnd) for v in value]
    if type(value) is int and abs(value) < 2**53 and rnd.random() < 0.5:
        return float(value)
    return value


def near(value: Any, rnd: random.Random) -> Any:
    """A value that differs subtly: True for 1, "1" for 1, a key or element dropped..."""
    if isinstance(value, dict) and value:
        key = rnd.choice(list(value))
        if rnd.random() < 0.3:
            return {k: v for k, v in value.items() if k != key}
        return {**value, key: near(value[key], rnd)}
    if isinstance(value, list) and value:
        i = rnd.randrange(len(value))
        if rnd.random() < 0.3:
            return value[:i] + value[i + 1 :]
        return [*value[:i], near(value[i], rnd), *value[i + 1 :]]
    if type(value) is bool:
        return rnd.choice([int(value), float(value), not value, str(value).lower()])
    if type(value) in (int, float):
        if value in (0, 1):
            return rnd.choice([bool(value), str(value), value + 1, None])
        return rnd.choice([str(value), -value, value + 1, value / 2])
    if isinstance(value, str):
        return rnd.choice([value + "\x01", value[:-1], value.upper(), 1, None, [value]])
    return rnd.choice([False, 0, "", [], {}])


def is_operand(value: Any) -> bool:
    """Values a filter may hold (stored values may also hold ints beyond 64 bits)."""
    return all(
        not (type(v) is int and not -(2**63) <= v < 2**63) for v in sub_values(value)
    )


def plain(operand: Any) -> Any:
    """An operand as a plain filter value: a dict with '$' keys must go through $eq."""
    if isinstance(operand, dict) and any(k.startswith("$") for k in operand):
        return {"$eq": operand}
    return operand


class Pool:
    """What the generated documents hold, so that generated filters hit them."""

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.fields: dict[str, list[Any]] = {}
        for doc in docs:
            for path, value in field_values(doc):
                if not path.startswith("$"):  # a top-level '$' name reads as an operator
                    self.fields.setdefault(path, []).append(value)
        self.paths = sorted(self.fields)
        self.scalar_paths = [p for p in self.paths if any(
            not isinstance(v, dict | list) for v in self.fields[p])]
        self.values = [v for doc in docs for v in list(sub_values(doc))[1:] if is_operand(v)]


@st.composite
def operands(draw: st.DrawFn, pool: Pool, path: str) -> Any:
    """Mostly the path's own values (or their elements), else any piece, else anything."""
    here = [v for v in pool.fields.get(path, []) if is_operand(v)]
    here += [e for v in here if isinstance(v, list) for e in v]
    source = draw(st.integers(0, 4))
    rnd = random.Random(draw(st.integers(0, 9)))
    if source <= 1 and here:
        return variant(draw(st.sampled_from(here)), rnd)
    if source == 2 and here:
        altered = near(draw(st.sampled_from(here)), rnd)
        return altered if is_operand(altered) else None
    if source == 3 and pool.values:
        return variant(draw(st.sampled_from(pool.values)), rnd)
    return draw(json_values(scalar_operands))


RANGE_OPERANDS = [*INTS, *FLOATS, *STRINGS, 0.5, "a", "z"]


@st.composite
def conditions(draw: st.DrawFn, pool: Pool, path: str) -> Any:
    if draw(st.integers(0, 3)) == 0:
        return plain(draw(operands(pool, path)))
    ops: dict[str, Any] = {}
    names = st.sampled_from(["$eq", "$ne", "$in", "$nin", "$exists", "$contains"])
    names |= st.sampled_from(["$gt", "$gte", "$lt", "$lte"])
    how_many = 2 if draw(st.integers(0, 2)) == 0 else 1
    for op in draw(st.lists(names, min_size=1, max_size=how_many, unique=True)):
        here = pool.fields.get(path, [])
        if op in ("$gt", "$gte", "$lt", "$lte"):
            ranged = [v for v in here if type(v) in (int, float, str) and is_operand(v)]
            ranged = ranged or [v for v in pool.values if type(v) in (int, float, str)]
            from_docs = bool(ranged) and draw(st.integers(0, 3)) > 0
            ops[op] = draw(st.sampled_from(ranged if from_docs else RANGE_OPERANDS))
        elif op in ("$in", "$nin"):
            ops[op] = draw(st.lists(operands(pool, path), max_size=3))
        elif op == "$exists":
            ops[op] = draw(st.booleans())
        elif op == "$contains":
            held = [e for v in here if isinstance(v, list) for e in v if is_operand(e)]
            from_docs = bool(held) and draw(st.integers(0, 3)) > 0
            one: st.SearchStrategy[Any] = st.sampled_from(held) if from_docs else operands(
                pool, path
            )
            several = draw(st.booleans())
            ops[op] = draw(st.lists(one, max_size=2)) if several else draw(one)
        else:
            ops[op] = draw(operands(pool, path))
    return ops


@st.composite
def filters(draw: st.DrawFn, pool: Pool, depth: int = 0) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    for _ in range(draw(st.sampled_from([1, 1, 1, 2] if depth == 0 else [0, 1, 1, 2]))):
        if bool(pool.scalar_paths) and draw(st.booleans()):
            path = draw(st.sampled_from(pool.scalar_paths))
        elif bool(pool.paths) and draw(st.integers(0, 3)) > 0:
            path = draw(st.sampled_from(pool.paths))
        else:  # a path no document has, or a longer one
            path = draw(st.lists(keys, min_size=1, max_size=3).filter(lambda p: p[0] != "$")
                        .map(".".join))
        spec[path] = draw(conditions(pool, path))
    if depth < 2 and draw(st.integers(0, 2)) == 0:
        op = draw(st.sampled_from(["$and", "$or", "$not"]))
        if op == "$not":
            spec[op] = draw(filters(pool, depth + 1))
        else:
            spec[op] = draw(st.lists(filters(pool, depth + 1), min_size=1, max_size=3))
    return spec


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    docs = draw(st.lists(documents, min_size=1, max_size=5))
    return docs, draw(filters(Pool(docs)))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_predicate_and_sql_agree(case: tuple[list[dict[str, Any]], dict[str, Any]]) -> None:
    docs, spec = case
    flt = parse_filter(spec)
    assert py_matches(flt, docs) == sql_matches(flt, docs)


@st.composite
def wide_cases(draw: st.DrawFn) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Lists wider than one SQL group (16): $and/$or of many branches, some of them equalities
    on one field (an $or merges those into one $in), and long $in/$nin lists (json_each)."""
    docs = draw(st.lists(documents, min_size=1, max_size=5))
    pool = Pool(docs)
    path = draw(st.sampled_from(pool.paths)) if pool.paths else "a"
    equalities = st.builds(lambda x: {path: plain(x)}, operands(pool, path))
    branches = draw(st.lists(filters(pool, 1) | equalities, min_size=17, max_size=40))
    many = draw(st.lists(operands(pool, path), min_size=2, max_size=40))
    branches.append({path: {draw(st.sampled_from(["$in", "$nin"])): many}})
    return docs, {draw(st.sampled_from(["$and", "$or"])): branches}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wide_cases())
def test_predicate_and_sql_agree_on_wide_filters(
    case: tuple[list[dict[str, Any]], dict[str, Any]],
) -> None:
    docs, spec = case
    flt = parse_filter(spec)
    assert py_matches(flt, docs) == sql_matches(flt, docs)


@settings(max_examples=150, deadline=None)
@given(documents, st.data())
def test_equality_is_structural(doc: dict[str, Any], data: st.DataObject) -> None:
    """Every field equals a reshuffled, int-as-float copy of itself, and the predicate and SQL
    agree on near misses (True for 1, "1" for 1, a key dropped...), at every depth."""
    rnd = random.Random(data.draw(st.integers(0, 999)))
    table = Table([doc])
    for path, value in field_values(doc):
        if path.startswith("$") or not is_operand(value):
            continue  # a top-level name starting with '$' reads as an operator
        specs: list[tuple[dict[str, Any], bool | None]] = []
        if value is not None:
            specs.append(({path: plain(variant(value, rnd))}, True))
            specs.append(({path: {"$in": [variant(value, rnd)]}}, True))
        for _ in range(3):
            other = near(value, rnd)
            if is_operand(other):
                specs += [({path: plain(other)}, None), ({path: {"$in": [other, "x"]}}, None),
                          ({path: {"$contains": other}}, None), ({path: {"$ne": other}}, None)]
        for spec, expected in specs:
            flt = parse_filter(spec)
            assert flt.matches(doc) == (table.select(flt) == {0}), spec
            assert expected is None or flt.matches(doc) is expected, spec
    table.conn.close()


# ---------------------------------------------------------------------------------------------
# Speed: the in-memory store runs the predicate over many values per search


def test_predicate_is_fast() -> None:
    values: list[dict[str, Any]] = [
        {"n": i, "tags": ["x", str(i % 7)], "profile": {"lang": "en" if i % 2 else "fr"}}
        for i in range(100_000)
    ]
    flt = parse_filter({"profile.lang": "en", "n": {"$gte": 10, "$lt": 90_000}, "tags": "3"})
    matches = flt.matches
    start = time.perf_counter()
    hits = sum(1 for v in values if matches(v))
    elapsed = time.perf_counter() - start
    assert hits == sum(
        1 for v in values
        if v["profile"]["lang"] == "en" and 10 <= v["n"] < 90_000 and "3" in v["tags"]
    )
    assert elapsed < 0.5, f"100k values took {elapsed:.3f}s"

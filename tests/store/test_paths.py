"""JSON paths for index fields: each syntax form, what is skipped, and malformed paths."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memlane.store.paths import JsonPath, compile_path, extract_texts

DOC: dict[str, Any] = {
    "text": "hello",
    "info": {"name": "Ada", "bio": "math", "age": 36, "tags": ["a", "b"], "none": None},
    "rules": [{"text": "r1", "n": 1}, {"text": "r2"}, {"n": 3}],
    "nums": [1, 2.5, True, None, "s"],
    "empty": [],
    "nothing": None,
    "flag": False,
    "a b": "spaced",
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("text", ["hello"]),
        ("info.name", ["Ada"]),
        ("info.age", ["36"]),
        ("flag", ["false"]),
        ("info.tags", ['["a","b"]']),
        ("info", [orjson.dumps(DOC["info"]).decode()]),
        ("nums[0]", ["1"]),
        ("nums[1]", ["2.5"]),
        ("nums[-1]", ["s"]),
        ("nums[-5]", ["1"]),
        ("nums[*]", ["1", "2.5", "true", "s"]),
        ("rules[*].text", ["r1", "r2"]),
        ("rules[0].text", ["r1"]),
        ("rules[-1].n", ["3"]),
        ("info.{name,bio}", ["Ada", "math"]),
        ("info.{bio,name}", ["math", "Ada"]),
        ("info.{name, bio}", ["Ada", "math"]),
        ("{text,info.name}", ["hello", "Ada"]),
        ("info.{tags[0],age}", ["a", "36"]),
        ("rules[*].{text,n}", ["r1", "1", "r2", "3"]),
        ("info.*", ["Ada", "math", "36", '["a","b"]']),
        ("rules.*", [orjson.dumps(r).decode() for r in DOC["rules"]]),  # '*' on a list
        ("rules[*].*", ["r1", "1", "r2", "3"]),
        ("info.tags.*", ["a", "b"]),
        ("a b", ["spaced"]),
        ("$", [orjson.dumps(DOC).decode()]),
        ("$.info.name", ["Ada"]),
    ],
)
def test_extract(path: str, expected: list[str]) -> None:
    assert compile_path(path).extract(DOC) == expected


@pytest.mark.parametrize(
    "path",
    [
        "missing",
        "info.missing",
        "text.deeper",
        "nothing",
        "info.none",
        "nums[5]",
        "nums[-6]",
        "empty[0]",
        "empty[*]",
        "text[0]",
        "info[*]",
        "info.{missing,none}",
        "text.{a,b}",
        "nothing.*",
    ],
)
def test_missing_none_and_out_of_range_yield_nothing(path: str) -> None:
    assert compile_path(path).extract(DOC) == []


@pytest.mark.parametrize(
    "path",
    ["", "a..b", ".a", "a.", "a[", "a[x]", "a[]", "a[1.5]", "a[ 1]", "{}", "{a,}", "{,a}",
     "{a", "a}", "a,b", "a]", "a[0]b", "[0]", "$.", "{ }", "a.{b}c"],
)
def test_malformed_paths_are_refused(path: str) -> None:
    with pytest.raises(ValueError) as info:
        compile_path(path)
    assert repr(path) in str(info.value)
    assert "'[*]'" in str(info.value)  # names the allowed syntax


@pytest.mark.parametrize("path", [None, 1, ["a"]])
def test_non_string_paths_are_refused(path: Any) -> None:
    with pytest.raises(ValueError, match="must be a str"):
        compile_path(path)


def test_extract_texts_keeps_path_order() -> None:
    paths = [compile_path(p) for p in ["info.name", "rules[*].text", "missing", "text"]]
    assert extract_texts(DOC, paths) == ["Ada", "r1", "r2", "hello"]
    assert extract_texts(DOC, []) == []


def test_json_path_keeps_source_and_compares_by_it() -> None:
    path = compile_path("rules[*].text")
    assert isinstance(path, JsonPath)
    assert path.source == "rules[*].text"
    assert path == compile_path("rules[*].text")
    assert hash(path) == hash(compile_path("rules[*].text"))
    assert path != compile_path("rules[0].text")
    assert "rules[*].text" in repr(path)


def test_non_ascii_stays_readable() -> None:
    assert compile_path("$").extract({"t": "é😀"}) == ['{"t":"é😀"}']
    assert compile_path("t").extract({"t": "é😀"}) == ["é😀"]


def test_string_in_a_list_is_not_json_quoted() -> None:
    assert compile_path("l[*]").extract({"l": ["x", ["y"], {"z": 1}]}) == ["x", '["y"]', '{"z":1}']


# ---------------------------------------------------------------------------------------------
# Properties

NAMES = st.sampled_from(["a", "b", "c", "d e"])
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=3),
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(NAMES, children, max_size=4),
    max_leaves=6,
)
documents = st.dictionaries(NAMES, json_values, max_size=4)


def expected_texts(node: Any) -> list[str]:
    if node is None:
        return []
    return [node if isinstance(node, str) else orjson.dumps(node).decode()]


@settings(max_examples=100, deadline=None)
@given(documents, st.lists(NAMES, min_size=1, max_size=3))
def test_dotted_path_agrees_with_direct_indexing(doc: dict[str, Any], keys: list[str]) -> None:
    node: Any = doc
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    assert compile_path(".".join(keys)).extract(doc) == expected_texts(node)


@settings(max_examples=100, deadline=None)
@given(documents, NAMES, st.integers(-6, 6))
def test_star_and_index_agree_with_python(doc: dict[str, Any], key: str, index: int) -> None:
    value = doc.get(key)
    each = compile_path(f"{key}[*]").extract(doc)
    at = compile_path(f"{key}[{index}]").extract(doc)
    if isinstance(value, list):
        assert each == [t for item in value for t in expected_texts(item)]
        in_range = -len(value) <= index < len(value)
        assert at == (expected_texts(value[index]) if in_range else [])
    else:
        assert each == [] and at == []
    wild = compile_path(f"{key}.*").extract(doc)
    if isinstance(value, dict | list):
        items = value.values() if isinstance(value, dict) else value
        assert wild == [t for item in items for t in expected_texts(item)]
    else:
        assert wild == []


@settings(max_examples=100, deadline=None)
@given(documents, st.lists(NAMES, min_size=1, max_size=3))
def test_multi_field_is_the_fields_in_order(doc: dict[str, Any], names: list[str]) -> None:
    multi = compile_path("{" + ",".join(names) + "}").extract(doc)
    assert multi == [t for name in names for t in compile_path(name).extract(doc)]
    assert compile_path("$").extract(doc) == [orjson.dumps(doc).decode()]

"""The filter language: parsed once into a small AST, compiled to a Python predicate and to SQL.

Both compilations must give the same answers on every value (a property test checks this), so
the in-memory and SQLite stores behave alike. Decisions taken where the contract is silent:

* Dotted keys walk nested **objects** only: ``"a.b"`` never looks inside a list, and a key that
  itself contains a ``.`` cannot be addressed. A key containing ``"`` together with ``[`` or
  ``.`` cannot be written as a SQLite JSON path and is refused (for every store alike). A filter
  key starting with ``$`` is an operator, so a top-level field named ``$x`` cannot be filtered.
* A dict value with ``$`` keys is an operator dict; to compare with such a dict literally, write
  ``{"$eq": {...}}``. A dict with no ``$`` keys is structural equality, even if empty.
* Equality with a scalar (``str``, number, ``bool``) also matches a list field holding an equal
  element (one level deep). ``None`` matches a missing field or ``null`` only, never a list
  holding ``null``. A list or dict value is structural equality only (key order irrelevant,
  ``1 == 1.0``, ``True != 1``); it never matches a list *containing* it: use ``$contains``.
* ``$ne`` and ``$nin`` are the exact negations of ``$eq`` and ``$in``: true on a missing field,
  false on a list containing the value.
* ``$exists: True`` means the key is present, even if its value is ``null``.
* Ranges (``$gt $gte $lt $lte``) compare a number field with a number operand, a string field with
  a string operand (code-point order); anything else, **including a list field**, never matches.
  (Matching when "some element" is in range makes ``{"$gt": 5, "$lt": 3}`` match ``[1, 9]``.)
* ``$contains`` needs a list field; given a list operand, every element must be held (so ``[]``
  matches any list). Elements compare structurally.
* ``$and``/``$or`` take non-empty lists of filters, ``$not`` a filter; they may nest anywhere a
  filter may, not inside a field's operator dict. Logic is two-valued throughout.
* Operands must be JSON: finite floats and integers within signed 64 bits (SQLite's range).
* Two SQLite quirks are mirrored by the predicate so the answers stay identical: an integer
  beyond signed 64 bits in a stored value compares as the nearest float, and a string range test
  sees a stored string only up to its first U+0000 (equality is exact: it compares JSON text).
  Stores refuse NUL in new values and operands; the mirror stays for files written before.

Limits, checked by ``parse_filter`` and so raised as the same ``ValueError`` by every store:
a filter nests at most ``MAX_DEPTH`` (20) levels and holds at most ``MAX_NODES`` (2,000) nodes.
A level is each ``$and``, ``$or``, ``$not``, dict of several conditions, test on a field and list
or dict inside an operand, and a list of more than 16 items is one more level per factor of 16
(the SQL nests it as a balanced tree of groups, under ``SQLITE_MAX_EXPR_DEPTH``); the depth is
checked before recursing, so a filter nested 10,000 deep raises no ``RecursionError``. 20 is
below what SQLite 3.40's fixed 100-entry parser stack compiles for the costliest shapes (24).
A node is each condition, logical operator, and item of a list or dict operand; the values of
one ``$in``/``$nin`` list do not count (they are one JSON parameter read by ``json_each``, so
100,000 values are fine), and ``$or`` branches that test equality on one field merge into one
``$in`` (an ``$or`` of 20,000 ids is one node). 2,000 nodes bind at most ~10,000 parameters:
within the 32,766 of most builds, and SQLite 3.40 compiles parameters in quadratic time (10,000
take ~0.7 s).

``to_sql`` expects the column to hold ``orjson.dumps(value)`` as TEXT and to be qualified
(``items.value``), because inside ``json_each`` a bare ``value`` names the table function's own
column. Every key and operand is passed as a ``?`` parameter, never spliced into the SQL text.
"""

from __future__ import annotations

import math
import operator
import reprlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from memlane.store.types import check_unicode

__all__ = ["Filter", "parse_filter"]

Predicate = Callable[[Any], bool]


class _Missing:
    """The value of a field that is not there (distinct from JSON null)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Final = _Missing()
_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1

_RANGE_OPS: Final = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_PY_CMP: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "$gt": operator.gt,
    "$gte": operator.ge,
    "$lt": operator.lt,
    "$lte": operator.le,
}
_FIELD_OPS: Final = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists",
                     "$contains")
_LOGIC_OPS: Final = ("$and", "$or", "$not")
_ALLOWED: Final = f"field operators {', '.join(_FIELD_OPS)}; logical operators $and, $or, $not"

WIDE: Final = 256  # see Filter.wide
MAX_DEPTH: Final = 20
"""Most levels a filter may nest (see the module docstring for what counts as a level)."""
MAX_NODES: Final = 2_000
"""Most conditions, logical operators and operand items a filter may hold."""
_GROUP: Final = 16  # SQL joins at most this many terms flat, then nests balanced groups

_SHOW: Final = reprlib.Repr()
_SHOW.maxlevel, _SHOW.maxstring, _SHOW.maxother = 3, 60, 60


def _show(value: Any) -> str:
    """A short repr for error messages; safe on values nested thousands of levels deep."""
    return _SHOW.repr(value)[:80]


def _levels(width: int) -> int:
    """SQL nesting levels of a list of ``width`` terms, joined in groups of ``_GROUP``."""
    levels = 1
    while width > _GROUP:
        width = -(-width // _GROUP)
        levels += 1
    return levels


def _too_deep(depth: str) -> ValueError:
    return ValueError(
        f"filter nests {depth} levels deep, over the limit of {MAX_DEPTH} (MAX_DEPTH): "
        f"each $and, $or, $not, dict of several conditions, test on a field, and list or dict "
        f"inside a value is a level, and a list of more than {_GROUP} items one more level per "
        f"factor of {_GROUP}"
    )


def _enter(depth: int) -> int:
    """The depth one level down, refused beyond ``MAX_DEPTH`` before recursing further."""
    if depth >= MAX_DEPTH:
        raise _too_deep(f"more than {MAX_DEPTH}")
    return depth + 1

# ---------------------------------------------------------------------------------------------
# AST


@dataclass(frozen=True, slots=True)
class _In:
    """The field equals one of ``operands`` (``$eq`` is a one-element ``$in``)."""

    path: tuple[str, ...]
    operands: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class _Range:
    path: tuple[str, ...]
    op: str
    operand: int | float | str


@dataclass(frozen=True, slots=True)
class _Exists:
    path: tuple[str, ...]
    present: bool


@dataclass(frozen=True, slots=True)
class _Contains:
    path: tuple[str, ...]
    operands: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class _And:
    children: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Or:
    children: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Not:
    child: _Node


_Node = _In | _Range | _Exists | _Contains | _And | _Or | _Not

# ---------------------------------------------------------------------------------------------
# Parsing


def parse_filter(spec: Mapping[str, Any] | None) -> Filter:
    """Check ``spec`` and compile it; raise ``ValueError`` naming what is wrong."""
    if spec is None:
        return Filter(_And(()))
    if not isinstance(spec, Mapping):
        raise ValueError(
            f"filter must be a dict such as {{'field': value}} or None, "
            f"got {type(spec).__name__} {_show(spec)}"
        )
    node = _parse_filter_dict(spec, 0)
    _check_size(node)
    return Filter(node)


def _parse_filter_dict(spec: Mapping[Any, Any], depth: int) -> _Node:
    """``depth`` counts the levels above; each is checked before recursing (no RecursionError
    on a filter nested thousands deep)."""
    if len(spec) > 1:
        depth = _enter(depth)
    nodes: list[_Node] = []
    for key, condition in spec.items():
        if not isinstance(key, str):
            raise ValueError(f"filter keys must be strings, got {_show(key)}")
        if key in ("$and", "$or"):
            nodes.append(_parse_logic_list(key, condition, depth))
        elif key == "$not":
            if not isinstance(condition, Mapping):
                raise ValueError(f"'$not' takes a filter dict, got {_show(condition)}")
            nodes.append(_Not(_parse_filter_dict(condition, _enter(depth))))
        elif key.startswith("$"):
            if key in _FIELD_OPS:
                raise ValueError(
                    f"operator {key!r} must be applied to a field, as in "
                    f"{{'field': {{{key!r}: ...}}}}; at the top level only $and, $or, $not"
                )
            raise ValueError(f"unknown filter operator {key!r}; allowed: {_ALLOWED}")
        else:
            nodes.extend(_parse_condition(_parse_field_path(key), key, condition, depth))
    return nodes[0] if len(nodes) == 1 else _And(tuple(nodes))


def _parse_logic_list(op: str, condition: Any, depth: int) -> _Node:
    if (
        not isinstance(condition, list | tuple)
        or not condition
        or not all(isinstance(sub, Mapping) for sub in condition)
    ):
        raise ValueError(f"{op!r} takes a non-empty list of filter dicts, got {_show(condition)}")
    depth = _enter(depth)
    children = tuple(_parse_filter_dict(sub, depth) for sub in condition)
    return _And(children) if op == "$and" else _Or(_merge_equalities(children))


def _merge_equalities(children: tuple[_Node, ...]) -> tuple[_Node, ...]:
    """``$or`` branches testing equality on one field become one ``$in`` (same answers, and a
    20,000-branch ``$or`` of ids compiles to one ``json_each`` parameter)."""
    merged: dict[tuple[str, ...], list[Any]] = {}
    out: list[_Node | tuple[str, ...]] = []
    for child in children:
        if isinstance(child, _In):
            if child.path not in merged:
                merged[child.path] = []
                out.append(child.path)
            merged[child.path].extend(child.operands)
        else:
            out.append(child)
    if len(out) == len(children):
        return children
    return tuple(_In(n, tuple(merged[n])) if isinstance(n, tuple) else n for n in out)


def _parse_field_path(key: str) -> tuple[str, ...]:
    check_unicode(key, "filter key")
    parts = tuple(key.split("."))
    if not all(parts):
        raise ValueError(
            f"bad filter key {key!r}: use a field name or a dotted path such as 'profile.lang' "
            f"(no empty parts)"
        )
    for part in parts:
        _sql_key_segment(part)  # refuse keys that SQLite cannot address, here, for all stores
    return parts


def _parse_condition(
    path: tuple[str, ...], key: str, condition: Any, depth: int
) -> list[_Node]:
    if not isinstance(condition, Mapping) or not any(
        isinstance(k, str) and k.startswith("$") for k in condition
    ):
        return [_In(path, (_json_operand(condition, key, depth),))]
    plain = [k for k in condition if not (isinstance(k, str) and k.startswith("$"))]
    if plain:
        raise ValueError(
            f"filter on {key!r} mixes operators with plain keys {_show(plain)}: use only "
            f"operators ({', '.join(_FIELD_OPS)}) or only plain keys (structural equality)"
        )
    return [_parse_operator(path, key, op, operand, depth) for op, operand in condition.items()]


def _parse_operator(path: tuple[str, ...], key: str, op: str, operand: Any, depth: int) -> _Node:
    where = f"{op!r} on {key!r}"
    if op in ("$eq", "$ne"):
        node: _Node = _In(path, (_json_operand(operand, where, depth),))
        return _Not(node) if op == "$ne" else node
    if op in ("$in", "$nin"):
        if not isinstance(operand, list | tuple):
            raise ValueError(f"{where} takes a list of values, got {_show(operand)}")
        node = _In(path, tuple(_json_operand(item, where, depth) for item in operand))
        return _Not(node) if op == "$nin" else node
    if op in _RANGE_OPS:
        if isinstance(operand, bool) or not isinstance(operand, int | float | str):
            raise ValueError(f"{where} takes a number or a string, got {_show(operand)}")
        return _Range(path, op, _json_operand(operand, where, depth))
    if op == "$exists":
        if not isinstance(operand, bool):
            raise ValueError(f"{where} takes True or False, got {_show(operand)}")
        return _Exists(path, operand)
    if op == "$contains":
        items = operand if isinstance(operand, list | tuple) else [operand]
        return _Contains(path, tuple(_json_operand(item, where, depth) for item in items))
    if op in _LOGIC_OPS:
        raise ValueError(
            f"{where}: {op!r} is allowed only at filter level, as in "
            f"{{{op!r}: ...}} around whole filters, not inside a field's operators"
        )
    raise ValueError(f"unknown filter operator {op!r} on {key!r}; allowed: {_ALLOWED}")


def _json_operand(value: Any, where: str, depth: int) -> Any:
    """A checked copy of a filter operand: JSON types only, tuples become lists."""
    if value is None or isinstance(value, bool | str):
        if isinstance(value, str):
            check_unicode(value, f"{where}: operand")
        return value
    if isinstance(value, int):
        if not _I64_MIN <= value <= _I64_MAX:
            raise ValueError(f"{where}: integer {value} is outside the signed 64-bit range")
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value!r} is not allowed; numbers must be finite")
        return float(value)
    if isinstance(value, list | tuple):
        inner = _enter(depth)
        return [_json_operand(item, where, inner) for item in value]
    if isinstance(value, Mapping):
        inner = _enter(depth)
        result: dict[str, Any] = {}
        for k, item in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{where}: dict keys must be strings, got {_show(k)}")
            check_unicode(k, f"{where}: operand key")
            _sql_key_segment(k)
            result[k] = _json_operand(item, where, inner)
        return result
    raise ValueError(
        f"{where}: {_show(value)} is a {type(value).__name__}; filter values must be JSON "
        f"(str, int, float, bool, None, list, dict)"
    )


# ---------------------------------------------------------------------------------------------
# Size: the levels and nodes of the SQL that ``to_sql`` writes, checked here for every store


def _check_size(node: _Node) -> None:
    """Refuse a filter whose SQL would nest deeper than ``MAX_DEPTH`` levels (wide lists nest
    as balanced groups) or hold more than ``MAX_NODES`` nodes, so that every accepted filter
    compiles on SQLite and both stores answer alike."""
    depth, nodes = _size(node)
    if depth > MAX_DEPTH:
        raise _too_deep(str(depth))
    if nodes > MAX_NODES:
        raise ValueError(
            f"filter holds {nodes} conditions, logical operators and operand items, over the "
            f"limit of {MAX_NODES} (MAX_NODES); the values of one $in or $nin list do not "
            f"count, so test many values of one field with $in"
        )


def _size(node: _Node) -> tuple[int, int]:
    """(SQL nesting levels, nodes); the caller has bounded the depth, so recursion is safe."""
    if isinstance(node, _And | _Or):
        if not node.children:
            return 0, 1
        sizes = [_size(child) for child in node.children]
        return (_levels(len(sizes)) + max(d for d, _ in sizes),
                1 + sum(n for _, n in sizes))
    if isinstance(node, _Not):
        depth, nodes = _size(node.child)
        return depth + 1, nodes + 1
    if isinstance(node, _In):
        arrays = [_operand_size(x) for x in node.operands if type(x) is list]
        objects = [_operand_size(x) for x in node.operands if type(x) is dict]
        (in_array, array_nodes), (in_object, object_nodes) = (
            _list_size(1 + len(arrays), arrays), _list_size(len(objects), objects)
        )
        return 1 + max(in_array, in_object), 1 + array_nodes + object_nodes
    if isinstance(node, _Contains):
        sizes = [_operand_size(x) for x in node.operands]
        depth, nodes = _list_size(1 + len(sizes), sizes)
        return 1 + depth, 1 + nodes
    return 1, 1


def _list_size(width: int, sizes: list[tuple[int, int]]) -> tuple[int, int]:
    if not width:
        return 0, 0
    return _levels(width) + max((d for d, _ in sizes), default=0), sum(n for _, n in sizes)


def _operand_size(x: Any) -> tuple[int, int]:
    """An operand compared structurally: a level per list or dict (plus its width)."""
    if type(x) is list:
        items = [_operand_size(item) for item in x]
    elif type(x) is dict:
        items = [_operand_size(item) for item in x.values()]
    else:
        return 0, 1
    depth, nodes = _list_size(2 + len(items), items)
    return depth, 1 + nodes


# ---------------------------------------------------------------------------------------------
# The compiled filter


class Filter:
    """A parsed filter: ``matches`` (a Python predicate) and ``to_sql`` give the same answers.

    ``matches`` is the compiled closure itself (an attribute, not a method) so that the hot
    loop of an in-memory search pays one call per value.
    """

    __slots__ = ("_node", "matches")

    matches: Callable[[Mapping[str, Any]], bool]

    def __init__(self, node: _Node) -> None:
        self._node = node
        self.matches = _compile(node)

    @property
    def is_empty(self) -> bool:
        """True when the filter accepts every value (``None`` or ``{}``)."""
        return self._node == _And(())

    @property
    def wide(self) -> bool:
        """More than ``WIDE`` conditions and operand values: compiling it to SQL is work for
        a reader thread, not the loop's inline connection."""
        seen, stack = 0, [self._node]
        while stack and seen <= WIDE:
            node = stack.pop()
            seen += 1
            if isinstance(node, _In | _Contains):
                seen += len(node.operands)
            elif isinstance(node, _And | _Or):
                stack.extend(node.children)
            elif isinstance(node, _Not):
                stack.append(node.child)
        return seen > WIDE

    def to_sql(self, column: str) -> tuple[str, list[Any]]:
        """A boolean SQL expression over ``column`` (orjson JSON text) and its parameters."""
        if column.strip().lower() in _JSON_EACH_COLUMNS:
            raise ValueError(
                f"column {column!r} clashes with a json_each column; qualify it, e.g. "
                f"'items.{column.strip()}'"
            )
        return _render(_sql(self._node, column))

    def jsonb_superset(self, column: str) -> tuple[str, list[Any]] | None:
        """A PostgreSQL condition over ``column`` (a ``jsonb`` expression) that holds for
        every value this filter matches, and perhaps for some more: the rows a PostgresStore
        search fetches, which ``matches`` then decides. ``None``: no condition to push (all
        rows). Only what ``jsonb`` compares as the predicate does goes in (equality and
        ``$in`` of strings, booleans and numbers below 2**53, ``$exists: True``,
        ``$contains`` of those); anything else stands for "true", never "false"."""
        return _superset(self._node, column)

    def __repr__(self) -> str:
        return f"Filter({self._node!r})"


# ---------------------------------------------------------------------------------------------
# Python predicate


def _getter(path: tuple[str, ...]) -> Callable[[Any], Any]:
    """Read the field at ``path``; ``_MISSING`` when absent or when a step is not an object."""
    if len(path) == 1:
        (key,) = path
        return lambda value: value.get(key, _MISSING)
    if len(path) == 2:
        first, second = path

        def two(value: Any) -> Any:
            node = value.get(first, _MISSING)
            return node.get(second, _MISSING) if type(node) is dict else _MISSING

        return two

    head, rest = path[0], path[1:]

    def deep(value: Any) -> Any:
        node = value.get(head, _MISSING)
        for key in rest:
            if type(node) is not dict:
                return _MISSING
            node = node.get(key, _MISSING)
        return node

    return deep


def _as_sqlite_number(v: int | float) -> int | float:
    """SQLite reads an integer beyond 64 bits as a float; compare it the same way."""
    return float(v) if type(v) is int and v > _I64_MAX else v


def _field_path(node: _Node) -> tuple[str, ...] | None:
    """The field a test reads (``$ne``/``$nin`` included), or None for logic nodes."""
    if isinstance(node, _Not):
        return _field_path(node.child)
    if isinstance(node, _And | _Or):
        return None
    return node.path


def _py_test(node: _Node) -> Predicate:
    """The test on the field's value, for a node that ``_field_path`` accepts."""
    if isinstance(node, _Not):
        return _negate(_py_test(node.child))
    if isinstance(node, _In):
        return _py_in(node.operands)
    if isinstance(node, _Range):
        return _py_range(node.op, node.operand)
    if isinstance(node, _Exists):
        present = node.present
        return lambda v: (v is not _MISSING) is present
    assert isinstance(node, _Contains)
    return _py_contains(node.operands)


def _negate(pred: Predicate) -> Predicate:
    return lambda v: not pred(v)


def _all_of(tests: Sequence[Predicate]) -> Predicate:
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests
        return lambda v: first(v) and second(v)

    def every(v: Any) -> bool:
        for test in tests:  # noqa: SIM110 - a plain loop beats all() over a generator here
            if not test(v):
                return False
        return True

    return every


def _any_of(tests: Sequence[Predicate]) -> Predicate:
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests
        return lambda v: first(v) or second(v)
    return lambda v: any(test(v) for test in tests)


def _compile(node: _Node) -> Predicate:
    """Closures built once; the tests on one field share a single read of that field."""
    if isinstance(node, _Or):
        return _any_of([_compile(child) for child in node.children])
    children = node.children if isinstance(node, _And) else (node,)
    if not children:
        return lambda value: True
    by_path: dict[tuple[str, ...], list[_Node]] = {}
    preds: list[Predicate] = []
    for child in children:
        path = _field_path(child)
        if path is not None:
            by_path.setdefault(path, []).append(child)
        elif isinstance(child, _Not):
            preds.append(_negate(_compile(child.child)))
        else:
            preds.append(_compile(child))
    fields = [_on_field(path, nodes) for path, nodes in by_path.items()]
    return _all_of(fields + preds)


def _on_field(path: tuple[str, ...], nodes: list[_Node]) -> Predicate:
    only = nodes[0]
    if len(nodes) == 1 and len(path) == 1 and isinstance(only, _In) and len(only.operands) == 1:
        key, x = path[0], only.operands[0]
        if type(x) is str:  # the commonest filter, fused into one closure: {"kind": "note"}
            return lambda value: (
                (v := value.get(key, _MISSING)) == x or (type(v) is list and x in v)
            )
    numeric = [n for n in nodes if isinstance(n, _Range) and not isinstance(n.operand, str)]
    tests = [_py_test(node) for node in nodes if node not in numeric]
    if numeric:  # {"$gte": 1, "$lt": 5}: one type check for both bounds
        tests.insert(0, _py_number_range([(_PY_CMP[n.op], n.operand) for n in numeric]))
    test = _all_of(tests)
    if len(path) == 1:
        key = path[0]
        return lambda value: test(value.get(key, _MISSING))
    get = _getter(path)
    return lambda value: test(get(value))


def _py_in(operands: Sequence[Any]) -> Predicate:
    """Equality with any operand; scalars also match a list field holding them."""
    strs = frozenset(x for x in operands if type(x) is str)
    nums = frozenset(x for x in operands if type(x) in (int, float))
    bools = tuple(x for x in operands if type(x) is bool)
    nullable = any(x is None for x in operands)
    list_eqs = [_py_struct(x) for x in operands if type(x) is list]
    dict_eqs = [_py_struct(x) for x in operands if type(x) is dict]

    if len(operands) == 1 and (strs or nums):  # the common case: one scalar
        x = operands[0]
        if strs:
            return lambda v: v == x or (type(v) is list and x in v)

        def one_number(v: Any) -> bool:
            t = type(v)
            if t is int:
                return bool((v if v <= _I64_MAX else float(v)) == x)
            if t is float:
                return bool(v == x)
            if t is list:
                return any(type(e) in (int, float) and _as_sqlite_number(e) == x for e in v)
            return False

        return one_number

    def held(e: Any) -> bool:
        t = type(e)
        if t is str:
            return e in strs
        if t is int or t is float:
            return _as_sqlite_number(e) in nums
        return t is bool and e in bools

    def test(v: Any) -> bool:
        t = type(v)
        if t is str:
            return v in strs
        if t is int or t is float:
            return _as_sqlite_number(v) in nums
        if t is bool:
            return v in bools
        if v is None or v is _MISSING:
            return nullable
        if t is list:
            return any(held(e) for e in v) or any(eq(v) for eq in list_eqs)
        if t is dict:
            return any(eq(v) for eq in dict_eqs)
        return False

    return test


def _py_struct(x: Any) -> Predicate:
    """Structural equality with ``x``: no list containment, dict key order irrelevant."""
    if x is None:
        return lambda v: v is None
    if type(x) is bool:
        return lambda v: v is x
    if type(x) is str:
        return lambda v: type(v) is str and v == x
    if type(x) in (int, float):
        return lambda v: type(v) in (int, float) and _as_sqlite_number(v) == x
    if type(x) is list:
        items = [_py_struct(item) for item in x]
        n = len(items)
        return lambda v: (
            type(v) is list and len(v) == n and all(eq(e) for eq, e in zip(items, v, strict=True))
        )
    fields = [(k, _py_struct(item)) for k, item in x.items()]
    n = len(fields)
    return lambda v: (
        type(v) is dict and len(v) == n and all(eq(v.get(k, _MISSING)) for k, eq in fields)
    )


def _py_range(op: str, x: int | float | str) -> Predicate:
    cmp = _PY_CMP[op]
    if type(x) is str:

        def text_range(v: Any) -> bool:
            if type(v) is not str:
                return False
            nul = v.find("\0")
            return cmp(v if nul < 0 else v[:nul], x)

        return text_range
    return _py_number_range([(cmp, x)])


def _py_number_range(bounds: list[tuple[Callable[[Any, Any], bool], Any]]) -> Predicate:
    """A number (never a bool) within all ``bounds``."""

    def number_range(v: Any) -> bool:
        t = type(v)
        if t is int:
            if v > _I64_MAX:
                v = float(v)
        elif t is not float:
            return False
        for cmp, x in bounds:  # noqa: SIM110 - a plain loop beats all() over a generator
            if not cmp(v, x):
                return False
        return True

    return number_range


def _py_contains(operands: Sequence[Any]) -> Predicate:
    holds = _all_of([_py_holds(x) for x in operands]) if operands else (lambda v: True)
    return lambda v: type(v) is list and holds(v)


def _py_holds(x: Any) -> Predicate:
    """A list has an element structurally equal to ``x``."""
    if type(x) is str:
        return lambda items: x in items  # only a str equals a str
    if x is None:
        return lambda items: any(e is None for e in items)
    eq = _py_struct(x)
    return lambda items: any(eq(e) for e in items)


# ---------------------------------------------------------------------------------------------
# SQL
#
# SQL is built as tuples of parts, each a literal SQL string or a _Param, so that a fragment used
# twice carries its parameters twice and placeholders stay in textual order. Every fragment is a
# 0/1 expression, never NULL, so NOT composes with two-valued logic.


@dataclass(frozen=True, slots=True)
class _Param:
    value: Any


_Part = str | _Param
_Frag = tuple[_Part, ...]
_ELEM: Final = "ml_elem"  # alias of json_each rows; unlikely to clash with the caller's names
_MEMBER: Final = "ml_member"  # alias of the rows of a JSON array of operands
_JSON_EACH_COLUMNS: Final = frozenset(
    {"key", "value", "type", "atom", "id", "parent", "fullkey", "path", "json", "root"}
)


def _frag(*parts: _Part | _Frag) -> _Frag:
    out: list[_Part] = []
    for part in parts:
        if isinstance(part, tuple):
            out.extend(part)
        else:
            out.append(part)
    return tuple(out)


def _join(sep: str, frags: Iterable[_Frag]) -> _Frag:
    """``(a SEP b SEP ...)``; beyond ``_GROUP`` terms, a balanced tree of parenthesised groups,
    so that SQLite's expression tree stays shallow (``SQLITE_MAX_EXPR_DEPTH``, 1000) even for
    an ``$or`` of 100,000 branches."""
    terms = list(frags)
    while len(terms) > _GROUP:
        size = -(-len(terms) // _GROUP)
        terms = [_flat(sep, terms[i : i + size]) for i in range(0, len(terms), size)]
    return _flat(sep, terms)


def _flat(sep: str, terms: Sequence[_Frag]) -> _Frag:
    out: list[_Part | _Frag] = []
    for i, frag in enumerate(terms):
        if i:
            out.append(sep)
        out.append(frag)
    return _frag("(", *out, ")")


def _render(frag: _Frag) -> tuple[str, list[Any]]:
    text: list[str] = []
    params: list[Any] = []
    for part in frag:
        if isinstance(part, _Param):
            text.append("?")
            params.append(part.value)
        else:
            text.append(part)
    return "".join(text), params


def _sql_key_segment(key: str) -> str:
    """``key`` as one step of a SQLite JSON path, matching orjson's escaping of the stored key."""
    escaped = orjson.dumps(key).decode()[1:-1]
    if '"' not in escaped:
        return f'."{escaped}"'
    if "[" not in escaped and "." not in escaped:
        return f".{escaped}"  # the unquoted form ends only at '.' or '['
    raise ValueError(
        f"key {key!r} holds both '\"' and '[' or '.', which a SQLite JSON path cannot address"
    )


@dataclass(frozen=True, slots=True)
class _Loc:
    """Where a JSON node sits: a document expression and a path (a parameter or expression)."""

    doc: str
    base: str | None  # a SQL path expression, or None when the path is only ``suffix``
    suffix: str

    @property
    def path(self) -> _Frag:
        if self.base is None:
            return (_Param("$" + self.suffix),)
        if not self.suffix:
            return (self.base,)
        return _frag("(", self.base, " || ", _Param(self.suffix), ")")

    def child(self, step: str) -> _Loc:
        return _Loc(self.doc, self.base, self.suffix + step)

    def call(self, function: str) -> _Frag:
        return _frag(f"{function}({self.doc}, ", self.path, ")")

    def as_json(self) -> _Frag:
        return _frag(f"({self.doc} -> ", self.path, ")")


def _field_loc(column: str, path: tuple[str, ...]) -> _Loc:
    return _Loc(column, None, "".join(_sql_key_segment(k) for k in path))


def _sql(node: _Node, column: str) -> _Frag:
    if isinstance(node, _And | _Or):
        if not node.children:
            return ("1",) if isinstance(node, _And) else ("0",)
        sep = " AND " if isinstance(node, _And) else " OR "
        return _join(sep, (_sql(child, column) for child in node.children))
    if isinstance(node, _Not):
        return _frag("(NOT ", _sql(node.child, column), ")")
    loc = _field_loc(column, node.path)
    if isinstance(node, _In):
        return _sql_in(loc, node.operands)
    if isinstance(node, _Range):
        return _sql_range(loc, node.op, node.operand)
    if isinstance(node, _Exists):
        return _frag("(", loc.call("json_type"), " IS NOT NULL)" if node.present else " IS NULL)")
    return _sql_contains(loc, node.operands)


def _one_of(values: Sequence[Any]) -> _Frag:
    """``IN`` one parameter, or a JSON array of them read by ``json_each`` (one ``?`` for any
    number of values: no "too many SQL variables", no expression per value)."""
    if len(values) == 1:
        return _frag(" IN (", _Param(values[0]), ")")
    array = _Param(orjson.dumps(values).decode())
    return _frag(f" IN (SELECT {_MEMBER}.value FROM json_each(", array, f") AS {_MEMBER})")


def _sql_in(loc: _Loc, operands: Sequence[Any]) -> _Frag:
    strs = [orjson.dumps(x).decode() for x in operands if type(x) is str]
    nums = [x for x in operands if type(x) in (int, float)]
    nullable = any(x is None for x in operands)
    branches: list[_Part | _Frag] = []
    if strs:  # compare JSON text: exact even for strings holding U+0000
        branches += [" WHEN 'text' THEN ", loc.as_json(), _one_of(strs)]
    if nums:
        for json_type in ("integer", "real"):
            branches += [f" WHEN '{json_type}' THEN ", loc.call("json_extract"), _one_of(nums)]
    flags = {x for x in operands if type(x) is bool}
    for flag in sorted(flags):
        branches.append(f" WHEN '{_json_bool(flag)}' THEN 1")
    if nullable:  # the CASE subject below reads a missing field as 'null'
        branches.append(" WHEN 'null' THEN 1")
    in_array: list[_Frag] = []
    if strs or nums or flags:
        in_array.append(_exists_element(loc, _sql_element_in(strs, nums, flags)))
    in_array += [_sql_struct(loc, x) for x in operands if type(x) is list]
    if in_array:
        branches += [" WHEN 'array' THEN ", _join(" OR ", in_array)]
    in_object = [_sql_struct(loc, x) for x in operands if type(x) is dict]
    if in_object:
        branches += [" WHEN 'object' THEN ", _join(" OR ", in_object)]
    if not branches:
        return ("0",)
    subject = _frag("IFNULL(", loc.call("json_type"), ", 'null')") if nullable else loc.call(
        "json_type"
    )
    return _frag("(CASE ", subject, *branches, " ELSE 0 END)")


def _json_bool(flag: bool) -> str:
    return "true" if flag else "false"


def _sql_element_in(strs: list[str], nums: list[Any], flags: set[bool]) -> _Frag:
    """A json_each row holds one of the scalar operands (null excluded)."""
    alternatives: list[_Frag] = []
    if strs:
        alternatives.append(_frag(f"({_ELEM}.type = 'text' AND ({_ELEM}.json -> {_ELEM}.fullkey)",
                                  _one_of(strs), ")"))
    if nums:
        alternatives.append(_frag(f"({_ELEM}.type IN ('integer', 'real') AND {_ELEM}.value",
                                  _one_of(nums), ")"))
    alternatives += [(f"{_ELEM}.type = '{_json_bool(flag)}'",) for flag in sorted(flags)]
    return _join(" OR ", alternatives)


def _exists_element(loc: _Loc, condition: _Frag) -> _Frag:
    return _frag("EXISTS (SELECT 1 FROM ", loc.call("json_each"), f" AS {_ELEM} WHERE ",
                 condition, ")")


def _sql_struct(loc: _Loc, x: Any) -> _Frag:
    """The node at ``loc`` structurally equals ``x`` (0/1, never NULL)."""
    json_type = loc.call("json_type")
    if x is None:
        return _frag("(", json_type, " IS 'null')")
    if type(x) is bool:
        return _frag("(", json_type, f" IS '{_json_bool(x)}')")
    if type(x) is str:
        return _frag("(", loc.as_json(), " IS ", _Param(orjson.dumps(x).decode()), ")")
    if type(x) in (int, float):
        return _number_test(loc, "=", x)
    if type(x) is list:
        parts = [_frag("(", json_type, " IS 'array')"),
                 _frag("(", loc.call("json_array_length"), f" = {len(x)})")]
        parts += [_sql_struct(loc.child(f"[{i}]"), item) for i, item in enumerate(x)]
        return _join(" AND ", parts)
    parts = [_frag("(", json_type, " IS 'object')"),
             _frag("((SELECT count(*) FROM ", loc.call("json_each"), f") = {len(x)})")]
    parts += [_sql_struct(loc.child(_sql_key_segment(k)), item) for k, item in x.items()]
    return _join(" AND ", parts)


def _number_test(loc: _Loc, sql_op: str, x: int | float) -> _Frag:
    extract = loc.call("json_extract")
    return _frag("(CASE ", loc.call("json_type"),
                 " WHEN 'integer' THEN ", extract, f" {sql_op} ", _Param(x),
                 " WHEN 'real' THEN ", extract, f" {sql_op} ", _Param(x), " ELSE 0 END)")


def _sql_range(loc: _Loc, op: str, x: int | float | str) -> _Frag:
    sql_op = _RANGE_OPS[op]
    if isinstance(x, str):
        return _frag("(CASE ", loc.call("json_type"), " WHEN 'text' THEN ",
                     loc.call("json_extract"), f" {sql_op} ", _Param(x), " ELSE 0 END)")
    return _number_test(loc, sql_op, x)


def _sql_contains(loc: _Loc, operands: Sequence[Any]) -> _Frag:
    element = _Loc(f"{_ELEM}.json", f"{_ELEM}.fullkey", "")
    parts = [_frag("(", loc.call("json_type"), " IS 'array')")]
    parts += [_exists_element(loc, _sql_struct(element, x)) for x in operands]
    return _join(" AND ", parts)


# ---------------------------------------------------------------------------------------------
# A jsonb condition implied by the filter (PostgresStore pushes it into SQL; the predicate
# still decides). jsonb equality is structural with numbers compared as numbers (1 = 1.0) and
# booleans apart from numbers, as the predicate's; only numbers below 2**53 go in, since the
# predicate compares a stored integer beyond 64 bits as the nearest float and jsonb exactly.

_JSONB_SAFE = 2**53


def _jsonb_scalar(x: Any) -> bool:
    if type(x) in (str, bool):
        return True
    return type(x) in (int, float) and abs(x) < _JSONB_SAFE


def _superset(node: _Node, column: str) -> tuple[str, list[Any]] | None:
    if isinstance(node, _And):
        parts = [p for child in node.children if (p := _superset(child, column)) is not None]
        return _joined(" AND ", parts) if parts else None
    if isinstance(node, _Or):
        found = [_superset(child, column) for child in node.children]
        kept = [p for p in found if p is not None]
        if not found or len(kept) < len(found):
            return None  # a branch without a condition: any row may match
        return _joined(" OR ", kept)
    if isinstance(node, _Not | _Range):
        return None
    field = f"({column} #> %s::text[])"
    path = list(node.path)
    if isinstance(node, _Exists):
        return (f"({field} IS NOT NULL)", [path]) if node.present else None
    if not node.operands or not all(_jsonb_scalar(x) for x in node.operands):
        return None
    if isinstance(node, _Contains):  # a list holding every operand
        return f"({field} @> %s::jsonb)", [path, orjson.dumps(list(node.operands)).decode()]
    # equal to one of the operands, or a list holding one
    values = [orjson.dumps(x).decode() for x in node.operands]
    wrapped = [f"[{value}]" for value in values]
    return (
        f"({field} = ANY(%s::jsonb[]) OR {field} @> ANY(%s::jsonb[]))",
        [path, values, path, wrapped],
    )


def _joined(sep: str, parts: list[tuple[str, list[Any]]]) -> tuple[str, list[Any]]:
    params: list[Any] = []
    for _, part_params in parts:
        params.extend(part_params)
    return "(" + sep.join(text for text, _ in parts) + ")", params

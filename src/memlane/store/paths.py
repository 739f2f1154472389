"""JSON paths for index fields: which texts of a value get embedded, one vector per text.

The syntax is LangGraph's index ``fields``:

* ``a.b``        nested keys
* ``l[0]``, ``l[-1]``  a list element (negative counts from the end)
* ``l[*]``       every element of a list, each its own text
* ``*``          every value of a dict (or element of a list), each its own text
* ``{a,b}``      several fields in one segment, in that order (``info.{name,bio}``); each
  alternative is itself a path (``{name,address.city}``) and the rest of the path applies to each
* ``$``          the whole value; ``$.a`` is the same as ``a``

A string found at the end of a path is taken as it is; any other value (number, bool, list,
dict) becomes its JSON text (orjson). A missing key, an index out of range or ``None`` yields
nothing, never an error: paths describe what to embed when present.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

__all__ = ["JsonPath", "compile_path", "extract_texts"]

_SYNTAX: Final = (
    "use keys joined by '.', with '[0]', '[-1]' or '[*]' for list elements, '*' for every "
    "value, '{a,b}' for several fields, or '$' for the whole value (e.g. 'info.{name,bio}', "
    "'rules[*].text')"
)
_INDEX: Final = re.compile(r"-?\d+")
_NAME_END: Final = frozenset(".[]{},")


@dataclass(frozen=True, slots=True)
class _Key:
    name: str


@dataclass(frozen=True, slots=True)
class _Index:
    index: int


@dataclass(frozen=True, slots=True)
class _Each:
    """``[*]``: the elements of a list."""


@dataclass(frozen=True, slots=True)
class _Wild:
    """``*``: the values of a dict or the elements of a list."""


@dataclass(frozen=True, slots=True)
class _Multi:
    alternatives: tuple[tuple[_Step, ...], ...]


_Step = _Key | _Index | _Each | _Wild | _Multi


class JsonPath:
    """A compiled path; ``extract`` returns the texts it selects from a value."""

    __slots__ = ("_steps", "source")

    def __init__(self, source: str, steps: tuple[_Step, ...]) -> None:
        self.source = source
        self._steps = steps

    def extract(self, value: Mapping[str, Any]) -> list[str]:
        """The texts at this path in ``value``, in document order; ``[]`` when nothing is there."""
        return [_as_text(node) for node in _select(value, self._steps) if node is not None]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JsonPath) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)

    def __repr__(self) -> str:
        return f"JsonPath({self.source!r})"


def compile_path(path: str) -> JsonPath:
    """Parse ``path`` once; raise ``ValueError`` naming it and the allowed syntax."""
    if not isinstance(path, str):
        raise ValueError(f"a JSON path must be a str, got {type(path).__name__} {path!r:.60}")
    if path == "$":
        return JsonPath(path, ())
    try:
        steps = _Parser(path, 2 if path.startswith("$.") else 0).parse()
    except ValueError as exc:
        raise ValueError(f"bad JSON path {path!r}: {exc}; {_SYNTAX}") from None
    return JsonPath(path, steps)


def extract_texts(value: Mapping[str, Any], paths: Sequence[JsonPath]) -> list[str]:
    """The texts of every path, path by path, in order."""
    return [text for path in paths for text in path.extract(value)]


def _as_text(node: Any) -> str:
    return node if isinstance(node, str) else orjson.dumps(node).decode()


def _select(node: Any, steps: tuple[_Step, ...]) -> Iterator[Any]:
    """Every node reached by ``steps`` from ``node`` (missing branches yield nothing)."""
    if not steps:
        yield node
        return
    step, rest = steps[0], steps[1:]
    if isinstance(step, _Key):
        if isinstance(node, Mapping) and step.name in node:
            yield from _select(node[step.name], rest)
    elif isinstance(step, _Index):
        if isinstance(node, list) and -len(node) <= step.index < len(node):
            yield from _select(node[step.index], rest)
    elif isinstance(step, _Each | _Wild):
        if isinstance(node, list):
            children: Any = node
        elif isinstance(step, _Wild) and isinstance(node, Mapping):
            children = node.values()
        else:
            return
        for child in children:
            yield from _select(child, rest)
    else:
        for alternative in step.alternatives:
            for found in _select(node, alternative):
                yield from _select(found, rest)


class _Parser:
    """A small recursive-descent parser: ``segment ('.' segment | '[' index ']')*``."""

    def __init__(self, text: str, start: int) -> None:
        self.text = text
        self.pos = start
        self.depth = 0  # inside how many '{...}'

    def parse(self) -> tuple[_Step, ...]:
        steps = self.path()
        if self.pos < len(self.text):
            raise ValueError(f"unexpected {self.text[self.pos]!r} at position {self.pos}")
        return steps

    def path(self) -> tuple[_Step, ...]:
        """A path up to the end of the text, or up to a ',' or '}' closing an alternative."""
        steps = [self.segment()]
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == ".":
                self.pos += 1
                steps.append(self.segment())
            elif char == "[":
                steps.append(self.index())
            else:
                break
        return tuple(steps)

    def segment(self) -> _Step:
        if self.pos < len(self.text) and self.text[self.pos] == "{":
            return self.multi()
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _NAME_END:
            self.pos += 1
        name = self.text[start : self.pos]
        if self.depth:  # '{a, b}': spaces around alternatives are layout
            name = name.rstrip(" ")
        if not name:
            where = "at the end" if self.pos >= len(self.text) else f"at position {self.pos}"
            raise ValueError(f"a key is missing {where}")
        return _Wild() if name == "*" else _Key(name)

    def index(self) -> _Step:
        close = self.text.find("]", self.pos)
        if close < 0:
            raise ValueError(f"'[' at position {self.pos} is not closed")
        inner = self.text[self.pos + 1 : close]
        self.pos = close + 1
        if inner == "*":
            return _Each()
        if _INDEX.fullmatch(inner):
            return _Index(int(inner))
        raise ValueError(f"list index [{inner}] must be an integer or '*'")

    def multi(self) -> _Step:
        opened = self.pos
        self.pos += 1
        self.depth += 1
        alternatives: list[tuple[_Step, ...]] = []
        while True:
            self.skip_spaces()
            alternatives.append(self.path())
            self.skip_spaces()
            if self.pos >= len(self.text):
                raise ValueError(f"'{{' at position {opened} is not closed")
            char = self.text[self.pos]
            self.pos += 1
            if char == "}":
                self.depth -= 1
                return _Multi(tuple(alternatives))
            if char != ",":
                raise ValueError(f"unexpected {char!r} at position {self.pos - 1}")

    def skip_spaces(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] == " ":
            self.pos += 1

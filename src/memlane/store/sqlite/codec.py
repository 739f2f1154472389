"""How items are laid out in SQLite rows, and back.

A namespace is stored as its labels joined with ``"."``: labels may not contain a dot, so
the join is unambiguous, and a prefix is a range of that text (``"a"`` or ``"a." .. "a/"``),
which the ``UNIQUE (namespace, key)`` index serves directly.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import orjson

from memlane.store.timestamps import from_micros
from memlane.store.types import Item, ItemFields, SearchItem

__all__ = [
    "ITEM_COLUMNS",
    "ItemRow",
    "encode_namespace",
    "is_storable",
    "prefix_condition",
    "row_to_item",
    "row_to_search_item",
]

ITEM_COLUMNS = "id, namespace, key, value, created_at, updated_at, ttl_minutes"


class ItemRow(NamedTuple):
    """A row of ``SELECT {ITEM_COLUMNS}``, by name (``ItemRow._make(row)`` is one
    ``tuple.__new__``: no per-field work)."""

    id: int
    namespace: str  # as stored: labels joined with '.'
    key: str
    value: str  # JSON text
    created_at: int  # microseconds since the epoch
    updated_at: int
    ttl_minutes: float | None

    @property
    def expiring(self) -> bool:
        """Whether a read refreshes its expiry (it has a TTL)."""
        return self.ttl_minutes is not None


def encode_namespace(namespace: tuple[str, ...]) -> str:
    return ".".join(namespace)


@functools.lru_cache(maxsize=4096)
def decode_namespace(text: str) -> tuple[str, ...]:
    """Cached: reads decode the same few namespaces over and over."""
    return tuple(text.split("."))


def is_storable(labels: tuple[str, ...]) -> bool:
    """Whether labels could belong to a stored namespace (reads of others find nothing)."""
    for label in labels:  # noqa: SIM110 - a plain loop: this is on every get's path
        if not label or "." in label:
            return False
    return True


def prefix_condition(prefix: tuple[str, ...], column: str = "namespace") -> tuple[str, list[Any]]:
    """SQL matching whole-label prefixes; ``()`` matches everything."""
    if not prefix:
        return "1", []
    text = encode_namespace(prefix)
    return (
        f"({column} = ? OR ({column} > ? AND {column} < ?))",
        [text, text + ".", text + "/"],  # '/' follows '.': every "text.<more>" is in range
    )


def _fields(row: ItemRow) -> ItemFields:
    return (
        orjson.loads(row.value),
        row.key,
        decode_namespace(row.namespace),
        from_micros(row.created_at),
        from_micros(row.updated_at),
    )


def row_to_item(row: ItemRow) -> Item:
    return Item._trusted(*_fields(row))


def row_to_search_item(row: ItemRow, score: float | None) -> SearchItem:
    return SearchItem._scored(_fields(row), score)

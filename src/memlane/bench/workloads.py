"""The data every system under test gets: the same items, vectors and queries.

Embedding cost is not what is measured, so the embed function is a table lookup: an
item's text starts with ``#<row>``, a query's with ``?<row>``, and both map to rows of
fixed, seeded random unit vectors. Every system is handed the very same function.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "ITEMS_PER_USER",
    "TOPICS",
    "Dataset",
    "Item",
    "make_items",
    "unit_vectors",
]

ITEMS_PER_USER = 100  # one user's namespace holds ~100 memories, whatever the store size
TOPICS = 100  # ``{"topic": "t7"}`` matches 1% of the items
PINNED_EVERY = 1_000  # ``{"kind": "pinned"}`` matches 0.1%: a filter that must scan

_WORDS = ("memory", "user", "prefers", "short", "direct", "answers", "likes", "jazz",
          "lives", "in", "paris", "works", "on", "rust")

Item = tuple[tuple[str, ...], str, dict[str, Any]]


def unit_vectors(count: int, dims: int, seed: int) -> np.ndarray:
    """``count`` seeded random unit vectors (float32), generated in chunks to bound memory."""
    rng = np.random.default_rng(seed)
    out = np.empty((count, dims), dtype=np.float32)
    for start in range(0, count, 8_192):
        stop = min(count, start + 8_192)
        chunk = rng.standard_normal((stop - start, dims), dtype=np.float32)
        chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
        out[start:stop] = chunk
    return out


def user_of(row: int, users: int) -> str:
    return f"u{row % users}"


def make_item(row: int, users: int, rng: random.Random, prefix: str = "m") -> Item:
    """One ~200-byte memory: text (embedded), a topic, sometimes ``kind: pinned``."""
    text = f"#{row} " + " ".join(rng.choice(_WORDS) for _ in range(10))
    value: dict[str, Any] = {
        "text": text,
        "topic": f"t{row % TOPICS}",
        "n": row,
        "tags": ["bench", f"g{row % 5}"],
        "pad": "x" * 40,
    }
    if row % PINNED_EVERY == 7:
        value["kind"] = "pinned"
    return ("users", user_of(row, users), "memories"), f"{prefix}{row}", value


def make_items(start: int, stop: int, users: int, seed: int = 7, prefix: str = "m") -> list[Item]:
    """Items for rows ``start..stop``; rows map to vector rows through their text."""
    rng = random.Random(seed * 1_000_003 + start)
    return [make_item(row, users, rng, prefix) for row in range(start, stop)]


@dataclass
class Dataset:
    """``size`` items plus room for the rows that write scenarios add later.

    ``vectors`` has one row per item row (prefilled and written); ``queries`` are item
    vectors with noise, so that a query has true near neighbours.
    """

    size: int
    dims: int
    extra_rows: int
    queries_count: int = 256
    seed: int = 11
    vectors: np.ndarray = field(init=False)
    queries: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.vectors = unit_vectors(self.size + self.extra_rows, self.dims, self.seed)
        rng = np.random.default_rng(self.seed + 1)
        picks = rng.integers(0, self.size, self.queries_count)
        noisy = self.vectors[picks] + 0.5 * unit_vectors(self.queries_count, self.dims, 3)
        self.queries = (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)

    @property
    def users(self) -> int:
        return max(1, self.size // ITEMS_PER_USER)

    def items(self, start: int = 0, stop: int | None = None, prefix: str = "m") -> list[Item]:
        return make_items(start, self.size if stop is None else stop, self.users, prefix=prefix)

    def chunks(self, chunk: int = 2_000) -> Iterator[list[Item]]:
        for start in range(0, self.size, chunk):
            yield self.items(start, min(self.size, start + chunk))

    def query_text(self, q: int) -> str:
        return f"?{q % self.queries_count}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """The lookup 'embedding' every system gets: ``#row`` -> item, ``?q`` -> query."""
        out = np.empty((len(texts), self.dims), dtype=np.float32)
        for i, text in enumerate(texts):
            token = text.split(" ", 1)[0]
            table = self.queries if token[0] == "?" else self.vectors
            out[i] = table[int(token[1:]) % len(table)]
        return out

    def index_config(self) -> dict[str, Any]:
        """LangGraph's dict shape, which memlane accepts too: one config for every system."""
        return {"dims": self.dims, "embed": self.embed, "fields": ["text"]}

    def user_rows(self, user: str) -> np.ndarray:
        """The rows of one user's namespace (for the ceilings, which know them up front)."""
        index = int(user[1:])
        return np.arange(index, self.size, self.users)

"""From puts to vectors: which texts each put embeds, and one embed call for a whole batch.

Both backends use this: the in-memory store per ``batch`` call, the SQLite writer per
writer batch. A per-row embedding problem (wrong length, NaN) is attributed to its put.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import orjson

from memlane.store.ops import PreparedPut
from memlane.store.paths import JsonPath, compile_path, extract_texts
from memlane.store.types import IndexConfig
from memlane.vectors import EmbeddedTexts, Embedder

__all__ = ["EmbedPlan", "Indexer", "PutVectors", "decode_fields", "encode_fields"]

Vectors = npt.NDArray[np.float32]
IndexPaths = Literal[False] | tuple[JsonPath, ...] | None  # a put's ``index``, prepared


@dataclass(slots=True)
class PutVectors:
    """The outcome for one put: its vectors ``(k, dims)``, or why it cannot be embedded."""

    vectors: Vectors | None
    error: str | None = None


@dataclass(slots=True)
class EmbedPlan:
    """The texts of several puts, flattened for one embed call, with each put's span."""

    texts: list[str]
    spans: list[tuple[int, int]]

    def split(self, embedded: EmbeddedTexts | None, dims: int) -> list[PutVectors]:
        """Give each put its rows; a bad row fails only the put it belongs to."""
        outcomes: list[PutVectors] = []
        for start, stop in self.spans:
            if start == stop or embedded is None:
                outcomes.append(PutVectors(np.zeros((0, dims), dtype=np.float32)))
                continue
            errors = [embedded.errors[row] for row in range(start, stop) if row in embedded.errors]
            if errors:
                outcomes.append(PutVectors(None, "; ".join(errors)))
            else:
                outcomes.append(PutVectors(embedded.vectors[start:stop]))
        return outcomes


class Indexer:
    """The store's index configuration, compiled once: embedder and default field paths."""

    def __init__(self, config: IndexConfig) -> None:
        self.config = config
        self.dims = config.dims
        # cosine search wants unit vectors; inner_product and l2 score the raw ones
        self.embedder = Embedder(
            config.embed,
            config.dims,
            timeout=config.embed_timeout,
            normalize=config.distance == "cosine",
        )
        self.default_paths: tuple[JsonPath, ...] = tuple(compile_path(p) for p in config.fields)

    def texts_for(self, index: IndexPaths, value: dict[str, Any]) -> list[str]:
        """The texts one value embeds: none for ``index=False``, else its paths' texts."""
        if index is False:
            return []
        return extract_texts(value, self.default_paths if index is None else index)

    def embeds_nothing(self, puts: Iterable[tuple[PreparedPut, dict[str, Any]]]) -> bool:
        """True when no put has text to embed (deletes, ``index=False``, values without the
        indexed fields): such writes need not wait for an embed call."""
        return not any(
            not put.is_delete and self.texts_for(put.index, value) for put, value in puts
        )

    def plan(self, puts: Sequence[tuple[PreparedPut, dict[str, Any]]]) -> EmbedPlan:
        """Flatten the texts of ``puts`` (deletes contribute none) for one embed call."""
        return self.plan_values(
            [(False if put.is_delete else put.index, value) for put, value in puts]
        )

    def plan_values(self, values: Sequence[tuple[IndexPaths, dict[str, Any]]]) -> EmbedPlan:
        """Flatten the texts of ``values``, each with its own paths, for one embed call."""
        texts: list[str] = []
        spans: list[tuple[int, int]] = []
        for index, value in values:
            start = len(texts)
            texts.extend(self.texts_for(index, value))
            spans.append((start, len(texts)))
        return EmbedPlan(texts, spans)


def encode_fields(index: IndexPaths) -> str | None:
    """A put's own index paths as JSON, to embed it later (``None``: the store's fields)."""
    return None if not index else orjson.dumps([path.source for path in index]).decode()


def decode_fields(fields: str | None) -> tuple[JsonPath, ...] | None:
    """The paths :func:`encode_fields` wrote."""
    if fields is None:
        return None
    return tuple(compile_path(source) for source in orjson.loads(fields))

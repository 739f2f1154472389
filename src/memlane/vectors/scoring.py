"""Exact scoring helpers shared by every search path (flat, filtered, batched, approximate).

Canonical scores are computed in float64 and rounded once to float32, so every path reports
the same numbers as a float64 numpy reference; ties are broken by the smaller item id. The
score is the one LangGraph's Postgres store reports for its ``distance_type``: a dot product
for ``cosine`` (of unit vectors, so the cosine similarity ``1 - (a <=> b)``) and for
``inner_product`` (of the raw vectors, ``-(a <#> b)``), minus the Euclidean distance for
``l2`` (``-(a <-> b)``). Higher is better for all three.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

__all__ = [
    "DISTANCES",
    "Distance",
    "Scorer",
    "best_per_item",
    "canonical",
    "canonical_l2",
    "scorer",
    "top",
]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
Distance = Literal["cosine", "inner_product", "l2"]
DISTANCES: tuple[str, ...] = get_args(Distance)
Scorer = Callable[[F32 | npt.NDArray[np.float64], F32], F32]


def canonical(block: F32 | npt.NDArray[np.float64], q: F32) -> F32:
    """Canonical scores of the rows of ``block`` (float32, or already widened to float64)
    against one query."""
    wide = block.astype(np.float64, copy=False)
    return (wide @ q.astype(np.float64)).astype(np.float32)


def canonical_l2(block: F32 | npt.NDArray[np.float64], q: F32) -> F32:
    """Canonical ``l2`` scores: minus the float64 Euclidean distance of each row to the query
    (the differences are taken first: no cancellation when a row is close to the query)."""
    diff = block.astype(np.float64, copy=False) - q.astype(np.float64)
    distances: npt.NDArray[np.float64] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return (-distances).astype(np.float32)


def scorer(distance: str) -> Scorer:
    """The canonical score function of a distance (one of ``DISTANCES``)."""
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {list(DISTANCES)}, got {distance!r}")
    return canonical_l2 if distance == "l2" else canonical


# Up to this many candidates ``top`` sorts in Python: numpy's sorts give up the GIL, and
# winning it back costs up to the interpreter's switch interval while another thread is
# busy. Beyond it numpy's speed wins (Python's sort with a key grows ~0.25 us an item).
_PYTHON_SORT_MAX = 48


def top(items: I64, scores: F32, k: int) -> list[tuple[int, float]]:
    """The k best (item, score), best first, ties by smaller item id."""
    if len(items) <= _PYTHON_SORT_MAX:
        pairs = sorted(zip(scores.tolist(), items.tolist(), strict=True), key=_best_first)
        return [(item, score) for score, item in pairs[:k]]
    if len(items) > k:
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        keep = scores >= kth  # keeps every tie with the k-th score
        items, scores = items[keep], scores[keep]
    order = np.lexsort((items, -scores))[:k]
    return list(zip(items[order].tolist(), scores[order].astype(np.float64).tolist(), strict=True))


def _best_first(pair: tuple[float, int]) -> tuple[float, int]:
    return -pair[0], pair[1]


def best_per_item(owners: I64, scores: F32) -> tuple[I64, F32]:
    """Group row scores by owner and keep each owner's maximum."""
    if len(owners) == 0:
        return owners, scores
    order = np.argsort(owners, kind="stable")
    owners, scores = owners[order], scores[order]
    firsts = np.flatnonzero(np.concatenate(([True], owners[1:] != owners[:-1])))
    return owners[firsts], np.maximum.reduceat(scores, firsts)

"""An ``Embedder`` that keeps the vectors as the embedding function returned them.

Why. ``Embedder`` L2-normalises every row, which is what cosine search wants; the
``inner_product`` and ``l2`` distances score the raw vectors (as LangGraph's Postgres
store does), so their norms must survive. ``RawEmbedder`` reuses all of ``Embedder`` (sync
and async dispatch, offloading, validation, per-row errors) and only swaps the rows back.

How. The user's embedder is wrapped in a tap that passes every call on unchanged and keeps
what came back. The tap finds where to keep it through the texts themselves: the first text
of each call is tagged with a per-call box (a ``str`` subclass, stripped before the user's
function sees it), so the raw output reaches its caller whatever thread or event loop the
call ran on and however many calls run at once. Rows that failed validation stay zero (their
put fails anyway). ``HashingEmbeddings`` is not wrapped: its rows are unit vectors already.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from memlane.vectors.embeddings import EmbeddedTexts, Embedder, HashingEmbeddings

__all__ = ["RawEmbedder"]

F32 = npt.NDArray[np.float32]


class _Box:
    """What one call's embedding function returned (``query``: from an ``embed_query``)."""

    def __init__(self) -> None:
        self.raw: Any = None
        self.query = False
        self.filled = False

    def keep(self, raw: Any, query: bool) -> Any:
        self.raw, self.query, self.filled = raw, query, True
        return raw


class _Tagged(str):
    """A text carrying the box of the call it belongs to."""

    box: _Box

    def __new__(cls, text: str, box: _Box) -> _Tagged:
        tagged = super().__new__(cls, text)
        tagged.box = box
        return tagged


def _box_of(text: object) -> _Box | None:
    return text.box if isinstance(text, _Tagged) else None


def _plain(texts: Sequence[str]) -> list[str]:
    """The texts as the user's function must see them: plain ``str``."""
    out = list(texts)
    if out:
        out[0] = str.__str__(out[0])
    return out


def _keep(raw: Any, box: _Box | None, query: bool) -> Any:
    """Record ``raw`` in the box; an awaitable is recorded once it is awaited."""
    if box is None:
        return raw
    if inspect.isawaitable(raw):
        return _keep_later(raw, box, query)
    return box.keep(raw, query)


async def _keep_later(raw: Awaitable[Any], box: _Box, query: bool) -> Any:
    return box.keep(await raw, query)


class _Tap:
    """Stands in for the user's embedder inside ``Embedder``: the same methods, each
    passing its call on and keeping the result in the caller's box."""

    def __init__(self, embed: Any) -> None:
        self.wrapped = embed
        for name in ("embed_documents", "embed_query", "aembed_documents", "aembed_query"):
            method = getattr(embed, name, None)
            if callable(method):
                tapped = _tap_async if name.startswith("a") else _tap_sync
                setattr(self, name, tapped(method, query=name.endswith("query")))

    def __call__(self, texts: Sequence[str]) -> Any:
        return _keep(self.wrapped(_plain(texts)), _box_of(texts[0]), query=False)

    def __repr__(self) -> str:
        return repr(self.wrapped)


class _AsyncTap(_Tap):
    """The tap of an async callable (``Embedder`` awaits it directly)."""

    async def __call__(self, texts: Sequence[str]) -> Any:
        raw = await self.wrapped(_plain(texts))
        return _keep(raw, _box_of(texts[0]), query=False)


def _tap_sync(method: Callable[[Any], Any], *, query: bool) -> Callable[[Any], Any]:
    def tapped(arg: Any) -> Any:
        plain = str.__str__(arg) if query else _plain(arg)
        return _keep(method(plain), _box_of(arg if query else arg[0]), query)

    return tapped


def _tap_async(method: Callable[[Any], Any], *, query: bool) -> Callable[[Any], Any]:
    async def tapped(arg: Any) -> Any:
        plain = str.__str__(arg) if query else _plain(arg)
        return _keep(await method(plain), _box_of(arg if query else arg[0]), query)

    return tapped


def _wants_tap(embed: Any) -> bool:
    """Anything ``Embedder`` would call (it refuses the rest with its own error)."""
    if isinstance(embed, HashingEmbeddings):
        return False
    docs = (getattr(embed, name, None) for name in ("embed_documents", "aembed_documents"))
    return any(callable(method) for method in docs) or callable(embed)


def _is_async(embed: Any) -> bool:
    return inspect.iscoroutinefunction(embed) or inspect.iscoroutinefunction(
        getattr(embed, "__call__", None)  # noqa: B004 - callable objects with async __call__
    )


def _raw_rows(raw: Any, embedded: EmbeddedTexts) -> F32:
    """The rows of ``raw`` as float32, converted exactly as ``Embedder`` converts them
    before it normalises; rows ``Embedder`` refused stay zero."""
    shape = embedded.vectors.shape
    try:
        arr = np.asarray(raw)
    except (ValueError, TypeError):
        arr = None
    if arr is not None and arr.shape == shape and arr.dtype.kind in "fiu":
        with np.errstate(over="ignore", invalid="ignore"):
            out = np.array(arr, dtype=np.float32, order="C")
    else:
        out = np.zeros(shape, dtype=np.float32)
        for row in range(shape[0]):
            if row not in embedded.errors:
                out[row] = np.asarray(raw[row]).astype(np.float32)
    for row in embedded.errors:
        out[row] = 0.0
    return out


class RawEmbedder(Embedder):
    """``Embedder`` whose vectors are the embedding function's own, not L2-normalised."""

    def __init__(self, embed: Any, dims: int, **options: Any) -> None:
        if _wants_tap(embed):
            embed = (_AsyncTap if _is_async(embed) else _Tap)(embed)
        super().__init__(embed, dims, **options)

    def embed_texts(self, texts: Sequence[str]) -> EmbeddedTexts:
        box, tagged = _tag(texts)
        return _unnormalised(super().embed_texts(tagged), box)

    async def aembed_texts(self, texts: Sequence[str]) -> EmbeddedTexts:
        box, tagged = _tag(texts)
        return _unnormalised(await super().aembed_texts(tagged), box)

    def embed_query(self, text: str) -> F32:
        box = _Box()
        return _query_row(super().embed_query(_Tagged(text, box)), box)

    async def aembed_query(self, text: str) -> F32:
        box = _Box()
        return _query_row(await super().aembed_query(_Tagged(text, box)), box)


def _tag(texts: Sequence[str]) -> tuple[_Box, list[str]]:
    box, tagged = _Box(), list(texts)
    if tagged:
        tagged[0] = _Tagged(tagged[0], box)
    return box, tagged


def _unnormalised(embedded: EmbeddedTexts, box: _Box) -> EmbeddedTexts:
    """``embedded`` with the raw rows; unchanged when nothing was kept (hashing, or an
    inner call that already swapped them)."""
    if not box.filled:
        return embedded
    return EmbeddedTexts(_raw_rows(box.raw, embedded), embedded.errors)


def _query_row(vector: F32, box: _Box) -> F32:
    """The raw query vector: ``embed_query``'s own output, or the first row of a batch."""
    if not box.filled:
        return vector
    raw = box.raw
    if box.query:
        if isinstance(raw, np.ndarray) and raw.ndim == 2 and raw.shape[0] == 1:
            raw = raw[0]
        raw = [raw]
    row: F32 = _raw_rows(raw, EmbeddedTexts(vector[None, :], {}))[0]
    return row

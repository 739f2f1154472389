"""Embedding adapters: any user embedding object behind one sync and one async interface.

The store embeds the texts of a whole writer batch in one call and the query outside the
writer. ``Embedder`` hides what kind of object the user gave (sync or async callable,
LangChain-style object, ``HashingEmbeddings``) and checks what came back: the wrong number
of vectors fails the call, a bad single row (wrong length, NaN/inf, not numbers) is
reported for that row only, so the store can fail just the put that owns it.

Exceptions raised by the user's embed function propagate unchanged (not wrapped), so the
caller sees the provider's own error type and can fail the batch with it.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import numpy as np
import numpy.typing as npt

from memlane.vectors.offload import QuickCallGate

__all__ = [
    "EmbeddedTexts",
    "Embedder",
    "EmbeddingError",
    "EmbeddingTimeoutError",
    "HashingEmbeddings",
]

T = TypeVar("T")
F32 = npt.NDArray[np.float32]

# Up to this many characters the async path runs HashingEmbeddings inline on the loop.
# Measured: a worker-thread hop costs 60-100 us and makes the call ~2x slower in total,
# while inline costs ~75 us fixed + ~35 us per 1000 chars, so the loop is held < 0.25 ms.
_INLINE_HASHING_CHARS = 4_000


# Only calls with this few texts (a query, a put's fields) may run inline; see offload.py.
_INLINE_MAX_TEXTS = 8


class EmbeddingError(ValueError):
    """The embedding function returned something that is not a usable embedding."""


class EmbeddingTimeoutError(EmbeddingError):
    """An async embed call did not return within ``IndexConfig.embed_timeout``: the provider
    may be down or hung. Its writes were not applied; nothing is retried for it."""


@dataclass
class EmbeddedTexts:
    """Row-aligned embeddings of a batch of texts.

    ``vectors`` is ``(n, dims)`` float32, C-contiguous, each row L2-normalised (a zero
    vector stays zero). ``errors`` maps a row index to why that row is unusable; such rows
    are zero.
    """

    vectors: F32
    errors: dict[int, str]


_F32_TINY = float(np.finfo(np.float32).tiny)
_F32_MAX = float(np.finfo(np.float32).max)


def _unit_rows(m: npt.NDArray[np.float64] | F32) -> F32:
    """L2-normalise rows as float32, leaving zero rows zero."""
    out = np.ascontiguousarray(m, dtype=np.float32)
    return _scale_rows(out, _squared_norms(out))


def _squared_norms(rows: F32) -> npt.NDArray[np.float64]:
    """Each row's sum of squares, in float64: finite exactly when the whole row is (a
    float32 squared stays far below float64's range, NaN and inf carry through)."""
    squares: npt.NDArray[np.float64] = np.einsum("ij,ij->i", rows, rows, dtype=np.float64)
    return squares


def _scale_rows(out: F32, squares: npt.NDArray[np.float64]) -> F32:
    """Divide each row by its norm in place; zero rows stay zero."""
    norms = np.sqrt(squares)
    plain = (norms >= _F32_TINY) & (norms <= _F32_MAX)
    if not plain.all():
        # A norm outside float32's normal range (finite values near its limits, or tiny
        # ones) would round to inf or a coarse subnormal: divide those rows in float64.
        odd = ~plain & (norms > 0)
        out[odd] = out[odd] / norms[odd, None]
        norms = np.where(plain, norms, 1.0)
    out /= norms[:, None].astype(np.float32)
    return out


def _row_problem(row: Any, dims: int) -> tuple[F32 | None, str | None]:
    """Convert one embedding row, or say what is wrong with it."""
    try:
        arr = np.asarray(row)
    except (ValueError, TypeError) as exc:
        return None, f"not a list of numbers ({exc})"
    if arr.dtype.kind not in "fiu":
        return None, f"not a list of numbers (got element type {arr.dtype})"
    if arr.ndim != 1 or arr.shape[0] != dims:
        got = arr.shape[0] if arr.ndim == 1 else f"shape {arr.shape}"
        return None, f"expected {dims} numbers, got {got}"
    with np.errstate(over="ignore", invalid="ignore"):
        f32 = arr.astype(np.float32)
    if not np.isfinite(f32).all():
        return None, "contains NaN or inf (or a value outside float32 range)"
    return f32, None


def _to_matrix(raw: Any, n: int, dims: int, normalize: bool = True) -> EmbeddedTexts:
    """Validate an embed function's output for ``n`` texts; see the module docstring.
    ``normalize=False`` keeps each row as given (the inner_product and l2 distances)."""
    if isinstance(raw, (str, bytes, dict)) or not hasattr(raw, "__len__"):
        raise EmbeddingError(
            f"embed function returned {type(raw).__name__}, expected a list of {n} vectors"
        )
    if len(raw) != n:
        raise EmbeddingError(f"embed function returned {len(raw)} vectors for {n} texts")
    # Fast path: a well-formed numeric matrix converts in one numpy call.
    try:
        arr = np.asarray(raw)
    except (ValueError, TypeError):
        arr = None
    if arr is not None and arr.ndim == 2 and arr.shape == (n, dims) and arr.dtype.kind in "fiu":
        with np.errstate(over="ignore", invalid="ignore"):
            out = np.array(arr, dtype=np.float32, order="C")
            squares = _squared_norms(out)  # also the finiteness check: one pass, not two
        finite = np.isfinite(squares)
        errors: dict[int, str] = {}
        if not finite.all():
            for i in np.flatnonzero(~finite).tolist():
                errors[i] = "contains NaN or inf (or a value outside float32 range)"
            out[~finite] = 0.0
            squares[~finite] = 0.0
        return EmbeddedTexts(_scale_rows(out, squares) if normalize else out, errors)
    # Slow path: something is off; find out row by row.
    out = np.zeros((n, dims), dtype=np.float32)
    errors = {}
    for i, row in enumerate(raw):
        vec, problem = _row_problem(row, dims)
        if problem is not None:
            errors[i] = problem
        else:
            out[i] = vec
    return EmbeddedTexts(_unit_rows(out) if normalize else out, errors)


def _first_row(m: F32) -> F32:
    row: F32 = m[0]
    return row


def _run_coroutine_blocking(make: Callable[[], Awaitable[T]]) -> T:
    """Run an awaitable to completion from sync code, with or without a running loop here.

    With no loop in this thread, ``asyncio.run`` suffices. Inside a running loop's thread
    (a sync call made from async code) that loop cannot be re-entered, so the coroutine runs
    on a private loop in a fresh helper thread; the helper owns nothing shared, so this
    cannot deadlock unless the embed function itself waits on the blocked caller's loop.
    """

    async def main() -> T:
        return await make()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    box: list[Any] = []

    def helper() -> None:
        try:
            box.append((True, asyncio.run(main())))
        except BaseException as exc:
            box.append((False, exc))

    t = threading.Thread(target=helper, name="memlane-embed-helper", daemon=True)
    t.start()
    t.join()
    ok, value = box[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def _is_async_callable(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - callable objects with async __call__
    )


class Embedder:
    """Wraps any user embedding object behind one sync and one async interface.

    ``embed`` may be a sync callable ``texts -> list[list[float]]`` (or an array), an async
    callable (or one that returns an awaitable), an object with ``embed_documents`` /
    ``embed_query`` (and optionally ``aembed_documents`` / ``aembed_query``), or a
    ``HashingEmbeddings``. The async path runs sync user code in a worker thread until
    it has proven quick (a cache, a lookup), then inline: see ``offload.py``.
    ``HashingEmbeddings`` runs inline for small inputs.
    """

    def __init__(
        self, embed: Any, dims: int, *, timeout: float | None = None, normalize: bool = True
    ) -> None:
        if isinstance(dims, bool) or not isinstance(dims, int) or dims <= 0:
            raise ValueError(f"dims must be a positive int, got {dims!r}")
        self.dims = dims
        self.normalize = normalize  # unit rows for cosine; raw ones for inner_product, l2
        self.timeout = timeout  # for the async calls; a blocking call cannot be abandoned
        self._embed = embed
        self._hashing = embed if isinstance(embed, HashingEmbeddings) else None
        if self._hashing is not None and self._hashing.dims != dims:
            raise ValueError(
                f"HashingEmbeddings has dims={self._hashing.dims} but the index has dims={dims}"
            )
        docs = getattr(embed, "embed_documents", None)
        adocs = getattr(embed, "aembed_documents", None)
        self._docs: Callable[[list[str]], Any] | None = docs if callable(docs) else None
        self._adocs: Callable[[list[str]], Any] | None = adocs if callable(adocs) else None
        query = getattr(embed, "embed_query", None)
        aquery = getattr(embed, "aembed_query", None)
        self._query: Callable[[str], Any] | None = query if callable(query) else None
        self._aquery: Callable[[str], Any] | None = aquery if callable(aquery) else None
        self._fn: Callable[[list[str]], Any] | None = None
        self._fn_is_async = False
        if self._docs is None and self._adocs is None:
            if not callable(embed):
                raise TypeError(
                    "embed must be a callable (texts -> vectors), an async callable, or an "
                    "object with embed_documents/aembed_documents; got "
                    f"{type(embed).__name__}"
                )
            self._fn = embed
            self._fn_is_async = _is_async_callable(embed)
        # Set once a sync-looking callable is seen to return an awaitable.
        self._fn_returns_awaitable = False
        self._docs_gate = QuickCallGate()  # batches and queries cost differently
        self._query_gate = QuickCallGate()

    def __repr__(self) -> str:
        return f"Embedder({self._embed!r}, dims={self.dims})"

    # -- documents ------------------------------------------------------------------

    def embed_texts(self, texts: Sequence[str]) -> EmbeddedTexts:
        """Embed a batch (blocking). Raises EmbeddingError if the vector count is wrong."""
        texts = list(texts)
        if not texts:
            return self._empty()
        if self._hashing is not None:
            return EmbeddedTexts(self._hashing.embed_array(texts), {})
        if self._docs is not None:
            raw = self._docs(texts)
        elif self._adocs is not None:
            adocs = self._adocs
            raw = _run_coroutine_blocking(lambda: adocs(texts))
        else:
            raw = self._call_fn_blocking(texts)
        return _to_matrix(raw, len(texts), self.dims, self.normalize)

    async def aembed_texts(self, texts: Sequence[str]) -> EmbeddedTexts:
        """Embed a batch without blocking the event loop, within ``timeout``."""
        texts = list(texts)
        return await self._within_timeout(self._aembed(texts, self._docs_gate), len(texts))

    async def _aembed(self, texts: list[str], gate: QuickCallGate) -> EmbeddedTexts:
        if not texts:
            return self._empty()
        if self._hashing is not None:
            return EmbeddedTexts(await self._ahashing(texts), {})
        if self._adocs is not None:
            raw = await self._adocs(texts)
        elif self._docs is not None:
            raw = await gate.run(self._docs, texts, small=len(texts) <= _INLINE_MAX_TEXTS)
        else:
            raw = await self._call_fn_async(texts, gate)
        return _to_matrix(raw, len(texts), self.dims, self.normalize)

    # -- queries --------------------------------------------------------------------

    def embed_query(self, text: str) -> F32:
        """Embed one query (blocking): ``(dims,)`` float32, normalised."""
        if self._hashing is not None:
            return _first_row(self._hashing.embed_array([text]))
        if self._query is not None:
            return self._check_query(self._query(text))
        if self._aquery is not None:
            aquery = self._aquery
            return self._check_query(_run_coroutine_blocking(lambda: aquery(text)))
        return self._query_row(self.embed_texts([text]))

    async def aembed_query(self, text: str) -> F32:
        """Embed one query without blocking the event loop, within ``timeout``."""
        return await self._within_timeout(self._aembed_query(text), 1)

    @property
    def quick(self) -> bool:
        """True when embedding runs inline on the loop (``HashingEmbeddings``, or a sync
        function proven quick): such a call cannot hang, nor be abandoned."""
        return self._hashing is not None or self._docs_gate.inline

    async def _within_timeout(self, call: Awaitable[T], count: int) -> T:
        """Await ``call``; past ``timeout`` abandon it (a worker thread running a sync
        function is left to finish on its own) and raise ``EmbeddingTimeoutError``."""
        if self.timeout is None or self.quick:
            return await call
        with anyio.move_on_after(self.timeout) as scope:
            return await call
        if scope.cancelled_caught:
            raise EmbeddingTimeoutError(
                f"embedding {count} text(s) did not finish within {self.timeout:g} s "
                f"(IndexConfig.embed_timeout); the embedding provider may be down or hung"
            )
        raise AssertionError("unreachable")  # pragma: no cover

    async def _aembed_query(self, text: str) -> F32:
        if self._hashing is not None:
            return _first_row(await self._ahashing([text]))
        if self._aquery is not None:
            return self._check_query(await self._aquery(text))
        if self._query is not None:
            return self._check_query(await self._query_gate.run(self._query, text))
        return self._query_row(await self._aembed([text], self._query_gate))

    # -- helpers --------------------------------------------------------------------

    def _empty(self) -> EmbeddedTexts:
        return EmbeddedTexts(np.zeros((0, self.dims), dtype=np.float32), {})

    async def _ahashing(self, texts: list[str]) -> F32:
        assert self._hashing is not None
        if sum(map(len, texts)) <= _INLINE_HASHING_CHARS:
            return self._hashing.embed_array(texts)
        return await anyio.to_thread.run_sync(
            self._hashing.embed_array, texts, abandon_on_cancel=True
        )

    def _call_fn_blocking(self, texts: list[str]) -> Any:
        fn = self._fn
        assert fn is not None
        if self._fn_is_async:
            return _run_coroutine_blocking(lambda: fn(texts))
        raw = fn(texts)
        if inspect.isawaitable(raw):
            self._fn_returns_awaitable = True
            return _run_coroutine_blocking(lambda: raw)
        return raw

    async def _call_fn_async(self, texts: list[str], gate: QuickCallGate) -> Any:
        fn = self._fn
        assert fn is not None
        if self._fn_is_async or self._fn_returns_awaitable:
            raw = fn(texts)
        else:
            raw = await gate.run(fn, texts, small=len(texts) <= _INLINE_MAX_TEXTS)
        if inspect.isawaitable(raw):
            self._fn_returns_awaitable = True
            raw = await raw
        return raw

    def _check_query(self, raw: Any) -> F32:
        if isinstance(raw, np.ndarray) and raw.ndim == 2 and raw.shape[0] == 1:
            raw = raw[0]
        return self._query_row(_to_matrix([raw], 1, self.dims, self.normalize))

    @staticmethod
    def _query_row(result: EmbeddedTexts) -> F32:
        if 0 in result.errors:
            raise EmbeddingError(f"query embedding: {result.errors[0]}")
        return _first_row(result.vectors)


# --------------------------------------------------------------------------------------
# HashingEmbeddings: offline, deterministic, model-free.

_NON_WORD = re.compile(r"[^\w\x00]+")
_MASK64 = (1 << 64) - 1
_P = 0x100000001B3  # FNV-64 prime: odd, so invertible mod 2**64
_P_INV = pow(_P, -1, 1 << 64)
_SALT_WORD = np.uint64(0x9E3779B97F4A7C15)
_SALT_BIGRAM = np.uint64(0xC2B2AE3D27D4EB4F)
_SALT_CHAR = np.uint64(0x165667B19E3779F9)
_U27, _U30, _U31 = np.uint64(27), np.uint64(30), np.uint64(31)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_ASCII_WORD_BYTES = bytes(
    c if c == 0 or c >= 128 or chr(c).isalnum() or c == ord("_") else 32 for c in range(256)
)
_CHUNK = 2048  # texts per vectorised pass: bounds the temporary arrays to a few MB


def _mix64(z: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64's finaliser, vectorised and in place: spreads every bit over the output."""
    z ^= z >> _U30
    z *= _M1
    z ^= z >> _U27
    z *= _M2
    z ^= z >> _U31
    return z


class _Powers:
    """Cached tables of P**i and P**-i mod 2**64, grown on demand (shared, read-only)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.fwd = np.ones(1, dtype=np.uint64)
        self.inv = np.ones(1, dtype=np.uint64)

    def upto(self, n: int) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
        fwd, inv = self.fwd, self.inv
        if len(fwd) >= n:
            return fwd, inv
        with self._lock:
            size = max(n, 2 * len(self.fwd))
            steps = np.empty(size, dtype=np.uint64)
            steps[0] = 1
            steps[1:] = _P
            fwd = np.cumprod(steps, dtype=np.uint64)  # wraps mod 2**64 by design
            steps[1:] = _P_INV
            inv = np.cumprod(steps, dtype=np.uint64)
            self.fwd, self.inv = fwd, inv
        return fwd, inv


_POWERS = _Powers()


class HashingEmbeddings:
    """Feature-hashing embeddings: offline, deterministic across processes, no model.

    Features of the lower-cased text: word unigrams, word bigrams and character 3-grams
    within words (with word-boundary marks), each hashed with a fixed 64-bit hash (never
    Python's salted ``hash``) to a signed bucket of ``dims``; rows are L2-normalised. Texts
    sharing words and word pieces get clearly higher cosine than unrelated ones. All hashing
    is vectorised with numpy over a whole batch, so large corpora embed quickly.
    """

    def __init__(
        self,
        dims: int = 384,
        *,
        word_weight: float = 1.0,
        bigram_weight: float = 0.7,
        char_weight: float = 0.3,
        stop_word_weight: float = 0.15,
        seed: int = 0,
    ) -> None:
        if isinstance(dims, bool) or not isinstance(dims, int) or dims <= 0:
            raise ValueError(f"dims must be a positive int, got {dims!r}")
        self.dims = dims
        self._weights = (float(word_weight), float(bigram_weight), float(char_weight))
        self._stop_weight = float(stop_word_weight)
        self._seed = np.uint64(seed & _MASK64)

    def __repr__(self) -> str:
        return f"HashingEmbeddings(dims={self.dims})"

    def __call__(self, texts: Sequence[str]) -> F32:
        return self.embed_array(texts)

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """LangChain-style: one list of floats per text."""
        return self.embed_array(texts).tolist()  # type: ignore[no-any-return]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_array([text])[0].tolist()  # type: ignore[no-any-return]

    async def aembed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return self.embed_documents(texts)

    async def aembed_query(self, text: str) -> list[float]:
        return self.embed_query(text)

    def embed_array(self, texts: Sequence[str]) -> F32:
        """Embed texts into a ``(n, dims)`` float32 array of unit (or zero) rows."""
        texts = list(texts)
        for t in texts:
            if not isinstance(t, str):
                raise TypeError(f"HashingEmbeddings embeds str, got {type(t).__name__}")
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        for start in range(0, len(texts), _CHUNK):
            chunk = texts[start : start + _CHUNK]
            out[start : start + len(chunk)] = self._embed_chunk(chunk)
        return out

    def _embed_chunk(self, texts: list[str]) -> F32:
        n, dims = len(texts), self.dims
        b, row_of_byte = _byte_stream(texts)
        inner = b != 32  # inside a word

        # Words: their hashes, and each word's weight factor (stop words count little).
        starts = np.flatnonzero(inner[1:] & ~inner[:-1]) + 1
        ends = np.flatnonzero(inner[:-1] & ~inner[1:]) + 1  # exclusive
        words = _word_hashes(b, starts, ends)
        word_rows = row_of_byte[starts]
        at = np.minimum(np.searchsorted(_STOP_HASHES, words), len(_STOP_HASHES) - 1)
        factor = np.where(_STOP_HASHES[at] == words, self._stop_weight, 1.0)

        # Bigrams: consecutive words of the same text, weighted by the lesser word.
        same = word_rows[1:] == word_rows[:-1]
        bigrams = (words[:-1][same] * np.uint64(_P)) ^ words[1:][same]
        big_rows = word_rows[1:][same]
        big_factor = np.minimum(factor[:-1], factor[1:])[same]

        # Character 3-grams: windows whose middle byte is inside a word (" wo", "wor",
        # "ord", "rd "), never across words or texts. The 24-bit value is the key itself.
        # Those middle bytes are exactly the word bytes, in order: word i owns len(i).
        mid_in = inner[1:-1]
        tri = (b[:-2] | (b[1:-1] << np.uint64(8)) | (b[2:] << np.uint64(16)))[mid_in]
        tri_rows = row_of_byte[1:-1][mid_in]
        tri_factor = np.repeat(factor, ends - starts)

        keys = np.concatenate([words ^ _SALT_WORD, bigrams ^ _SALT_BIGRAM, tri ^ _SALT_CHAR])
        keys ^= self._seed
        hashes = _mix64(keys)
        ww, bw, cw = self._weights
        weights = np.concatenate([factor * ww, big_factor * bw, tri_factor * cw])
        weights.view(np.uint64)[...] ^= hashes << np.uint64(63)  # hash bit 0 -> sign bit
        # Fast range reduction: high 32 bits times dims, shifted down (no modulo).
        hashes >>= np.uint64(32)
        hashes *= np.uint64(dims)
        hashes >>= np.uint64(32)
        index = np.concatenate([word_rows, big_rows, tri_rows])
        index *= dims
        index += hashes.view(np.int64)
        flat = np.bincount(index, weights=weights, minlength=n * dims).astype(
            np.float64, copy=False
        )
        return _unit_rows(flat.reshape(n, dims))


def _byte_stream(texts: list[str]) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]]:
    """Lower-cased texts as one byte array where every non-word byte is a space.

    Returns the bytes (as uint64, ready for hashing) and the text index of each byte. The
    stream starts and ends with a space; runs of spaces are harmless (only word bytes start
    features). All the work is a few C-level passes over the whole batch.
    """
    joined = "\x00".join(texts)  # NUL separates texts
    if joined.count("\x00") != len(texts) - 1:  # a text holds NULs of its own
        joined = "\x00".join(t.replace("\x00", " ") for t in texts)
    if joined.isascii():
        data = joined.encode("ascii").lower()
    else:  # Unicode-aware word characters, as the str regex \w defines them
        data = _NON_WORD.sub(" ", joined.lower()).encode()
    raw = np.frombuffer(b" " + data.translate(_ASCII_WORD_BYTES) + b" ", np.uint8)
    sep = raw == 0
    return np.where(sep, np.uint8(32), raw).astype(np.uint64), np.cumsum(sep)


def _word_hashes(
    b: npt.NDArray[np.uint64], starts: npt.NDArray[np.intp], ends: npt.NDArray[np.intp]
) -> npt.NDArray[np.uint64]:
    """A 64-bit hash of each word's bytes: polynomial, from one prefix sum (mod 2**64)."""
    fwd, inv = _POWERS.upto(len(b) + 1)
    prefix = np.zeros(len(b) + 1, dtype=np.uint64)
    np.cumsum((b + np.uint64(1)) * fwd[: len(b)], out=prefix[1:])
    return _mix64((prefix[ends] - prefix[starts]) * inv[starts])


def _stop_hashes() -> npt.NDArray[np.uint64]:
    b, _ = _byte_stream([" ".join(_STOP_WORDS)])
    inner = b != 32
    starts = np.flatnonzero(inner[1:] & ~inner[:-1]) + 1
    ends = np.flatnonzero(inner[:-1] & ~inner[1:]) + 1
    return np.unique(_word_hashes(b, starts, ends))


# Common English function words: they match everywhere, so they weigh little.
_STOP_WORDS = (  # noqa: SIM905 - a word list reads best as one string
    "a an the and or but if of at by for with about to from in on into onto over under "
    "up down out off as is am are was were be been being have has had do does did i me "
    "my we our you your he him his she her it its they them their this that these those "
    "what which who whom there here then than so not no nor too very can will just s t"
).split()
_STOP_HASHES = _stop_hashes()

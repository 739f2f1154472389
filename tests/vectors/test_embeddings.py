"""Embedder over every kind of embed object, output validation, and HashingEmbeddings."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import threading
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from memlane.vectors import EmbeddedTexts, Embedder, EmbeddingError, HashingEmbeddings

pytestmark = pytest.mark.anyio
DIMS = 4


def fake_vector(text: str) -> list[float]:
    """A deterministic, non-normalised vector per text."""
    return [float(len(text)), 1.0, float(text.count("a")), 2.0]


def normalised(text: str) -> np.ndarray:
    v = np.array(fake_vector(text), dtype=np.float32)
    return v / np.linalg.norm(v)


class Recorder:
    """Counts calls and remembers which thread ran them."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.threads: list[int] = []

    def record(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        self.threads.append(threading.get_ident())
        return [fake_vector(t) for t in texts]


class SyncFn(Recorder):
    def __call__(self, texts: Sequence[str]) -> list[list[float]]:
        return self.record(texts)


class AsyncFn(Recorder):
    async def __call__(self, texts: Sequence[str]) -> list[list[float]]:
        await asyncio.sleep(0)
        return self.record(texts)


class LangChainStyle(Recorder):
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.record(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.record([text])[0]


class AsyncLangChainStyle(LangChainStyle):
    def __init__(self) -> None:
        super().__init__()
        self.async_calls = 0

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        self.async_calls += 1
        return self.embed_documents(texts)

    async def aembed_query(self, text: str) -> list[float]:
        self.async_calls += 1
        return self.embed_query(text)


def returns_awaitable(texts: Sequence[str]) -> Any:
    async def later() -> list[list[float]]:
        return [fake_vector(t) for t in texts]

    return later()


def check(result: EmbeddedTexts, texts: list[str]) -> None:
    assert result.errors == {}
    assert result.vectors.dtype == np.float32 and result.vectors.flags.c_contiguous
    np.testing.assert_allclose(result.vectors, [normalised(t) for t in texts], rtol=1e-6)


TEXTS = ["alpha", "banana", "c"]
KINDS = [SyncFn, AsyncFn, LangChainStyle, AsyncLangChainStyle]


@pytest.mark.parametrize("kind", KINDS)
async def test_each_kind_sync_and_async(kind: type[Recorder]) -> None:
    embed = kind()
    embedder = Embedder(embed, DIMS)
    check(await embedder.aembed_texts(TEXTS), TEXTS)
    check(await asyncio.to_thread(embedder.embed_texts, TEXTS), TEXTS)
    np.testing.assert_allclose(await embedder.aembed_query("abba"), normalised("abba"), 1e-6)
    np.testing.assert_allclose(
        await asyncio.to_thread(embedder.embed_query, "abba"), normalised("abba"), 1e-6
    )


async def test_async_path_keeps_sync_code_off_the_event_loop() -> None:
    loop_thread = threading.get_ident()
    for embed in (SyncFn(), LangChainStyle()):
        embedder = Embedder(embed, DIMS)
        await embedder.aembed_texts(TEXTS)
        await embedder.aembed_query("q")
        assert loop_thread not in embed.threads
    objects = AsyncLangChainStyle()
    embedder = Embedder(objects, DIMS)
    await embedder.aembed_texts(TEXTS)
    await embedder.aembed_query("q")
    assert objects.async_calls == 2  # the object's own async methods were used


def test_sync_path_without_a_loop() -> None:
    for embed in (AsyncFn(), returns_awaitable, AsyncLangChainStyle()):
        embedder = Embedder(embed, DIMS)
        check(embedder.embed_texts(TEXTS), TEXTS)
        np.testing.assert_allclose(embedder.embed_query("abba"), normalised("abba"), 1e-6)


async def test_sync_path_inside_a_running_loop_with_an_async_embed() -> None:
    # A sync call made from async code: this thread's loop is busy, so it must not be used.
    for embed in (AsyncFn(), returns_awaitable):
        embedder = Embedder(embed, DIMS)
        check(embedder.embed_texts(TEXTS), TEXTS)
        np.testing.assert_allclose(embedder.embed_query("abba"), normalised("abba"), 1e-6)
    check(await Embedder(returns_awaitable, DIMS).aembed_texts(TEXTS), TEXTS)


async def test_numpy_output_and_hashing_kind() -> None:
    embedder = Embedder(lambda texts: np.array([fake_vector(t) for t in texts]), DIMS)
    check(embedder.embed_texts(TEXTS), TEXTS)
    hashing = HashingEmbeddings(64)
    embedder = Embedder(hashing, 64)
    texts = ["the cat sat", "a dog ran"]
    expected = hashing(texts)
    np.testing.assert_array_equal(embedder.embed_texts(texts).vectors, expected)
    np.testing.assert_array_equal((await embedder.aembed_texts(texts)).vectors, expected)
    np.testing.assert_array_equal(await embedder.aembed_query("the cat sat"), expected[0])
    big = ["some longer text " * 30] * 20  # above the inline limit: runs in a worker thread
    np.testing.assert_array_equal((await embedder.aembed_texts(big)).vectors, hashing(big))


async def test_zero_texts_make_no_call() -> None:
    embed = SyncFn()
    embedder = Embedder(embed, DIMS)
    for result in (embedder.embed_texts([]), await embedder.aembed_texts([])):
        assert result.vectors.shape == (0, DIMS) and result.vectors.dtype == np.float32
        assert result.errors == {}
    assert embed.calls == []


@pytest.mark.parametrize("count", [2, 4])
async def test_wrong_number_of_vectors_fails_the_call(count: int) -> None:
    embedder = Embedder(lambda texts: [[1.0] * DIMS] * count, DIMS)
    with pytest.raises(EmbeddingError, match=f"{count} vectors for 3 texts"):
        embedder.embed_texts(TEXTS)
    with pytest.raises(EmbeddingError):
        await embedder.aembed_texts(TEXTS)
    with pytest.raises(EmbeddingError, match="expected a list"):
        Embedder(lambda texts: None, DIMS).embed_texts(TEXTS)


def test_rows_near_float32s_limit_are_still_normalised() -> None:
    """Finite values whose norm lies outside float32's normal range give a unit vector,
    not a silent zero one (an item nobody could find) nor one longer than 1."""
    rows = np.array(
        [[3e38, 3e38, 3e38, 3e38], [0.0, 3.0, 4.0, 0.0], [1e-45, 1e-45, 0.0, 0.0]],
        dtype=np.float32,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning either
        result = Embedder(lambda texts: rows, DIMS).embed_texts(["big", "plain", "tiny"])
    assert result.errors == {}
    np.testing.assert_allclose(result.vectors[0], [0.5, 0.5, 0.5, 0.5], rtol=1e-6)
    np.testing.assert_allclose(result.vectors[1], [0.0, 0.6, 0.8, 0.0], rtol=1e-6)
    np.testing.assert_allclose(result.vectors[2], [0.5**0.5, 0.5**0.5, 0, 0], rtol=1e-6)


async def test_bad_rows_are_reported_per_row() -> None:
    rows: list[Any] = [
        [1.0, 0.0, 0.0, 0.0],
        [1.0, 2.0],  # wrong length
        [1.0, float("nan"), 0.0, 0.0],
        [float("inf"), 0.0, 0.0, 0.0],
        ["a", "b", "c", "d"],  # not numbers
        [0.0, 0.0, 0.0, 0.0],  # zero stays zero, and is fine
        [1e300, 0.0, 0.0, 0.0],  # overflows float32
        [None, 1.0, 1.0, 1.0],
        [0.0, 3.0, 4.0, 0.0],
    ]
    embedder = Embedder(lambda texts: rows, DIMS)
    result = embedder.embed_texts([str(i) for i in range(len(rows))])
    assert set(result.errors) == {1, 2, 3, 4, 6, 7}
    assert "expected 4 numbers, got 2" in result.errors[1]
    assert "NaN" in result.errors[2] and "inf" in result.errors[3]
    assert "not a list of numbers" in result.errors[4]
    for i in result.errors:
        assert not result.vectors[i].any()
    np.testing.assert_array_equal(result.vectors[0], [1, 0, 0, 0])
    np.testing.assert_array_equal(result.vectors[5], [0, 0, 0, 0])
    np.testing.assert_allclose(result.vectors[8], [0, 0.6, 0.8, 0], rtol=1e-6)
    # A numpy matrix of the right shape takes the fast path; its bad rows are still caught.
    matrix = np.array([[1, 0, 0, 0], [np.nan, 0, 0, 0]], dtype=np.float64)
    fast = Embedder(lambda texts: matrix, DIMS).embed_texts(["x", "y"])
    assert list(fast.errors) == [1]
    wrong_width = Embedder(lambda texts: np.ones((2, 3)), DIMS).embed_texts(["x", "y"])
    assert set(wrong_width.errors) == {0, 1}


async def test_bad_query_embedding_raises() -> None:
    embedder = Embedder(lambda texts: [[float("nan")] * DIMS for _ in texts], DIMS)
    with pytest.raises(EmbeddingError, match="query embedding: contains NaN"):
        embedder.embed_query("q")
    with pytest.raises(EmbeddingError, match="query embedding"):
        await embedder.aembed_query("q")

    class ShortQuery(LangChainStyle):
        def embed_query(self, text: str) -> list[float]:
            return [1.0]

    with pytest.raises(EmbeddingError, match="expected 4 numbers, got 1"):
        Embedder(ShortQuery(), DIMS).embed_query("q")


async def test_embed_exceptions_propagate_unchanged() -> None:
    class Boom(Exception):
        pass

    def sync_boom(texts: Sequence[str]) -> list[list[float]]:
        raise Boom("provider down")

    async def async_boom(texts: Sequence[str]) -> list[list[float]]:
        raise Boom("provider down")

    for fn in (sync_boom, async_boom):
        embedder = Embedder(fn, DIMS)
        with pytest.raises(Boom, match="provider down"):
            await embedder.aembed_texts(TEXTS)
        with pytest.raises(Boom):
            embedder.embed_texts(TEXTS)  # async_boom: raised through the helper thread


def test_construction_is_validated() -> None:
    for dims in (0, -3, 2.5, True, "4"):
        with pytest.raises(ValueError, match="dims"):
            Embedder(SyncFn(), dims)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="embed_documents"):
        Embedder(object(), DIMS)
    with pytest.raises(TypeError):
        Embedder("not an embedder", DIMS)
    with pytest.raises(ValueError, match="dims=8"):
        Embedder(HashingEmbeddings(8), 16)
    with pytest.raises(ValueError):
        HashingEmbeddings(0)


# -- HashingEmbeddings ---------------------------------------------------------------

SIMILAR = [
    ("The cat sat on the mat.", "A cat was sitting on the mat"),
    ("I love programming in Python", "Python programming is what I love"),
    ("The weather is sunny today", "Today it is sunny weather outside"),
    ("User prefers dark mode in the editor", "dark mode preferred by the user"),
    ("The meeting was moved to Friday afternoon", "Friday afternoon meeting rescheduled"),
]
UNRELATED = [
    "Quarterly revenue grew by twelve percent",
    "The mitochondria is the powerhouse of the cell",
    "Install the package with pip",
    "She bought a new bicycle yesterday",
    "It is what it is",
]


def test_hashing_similar_texts_score_clearly_higher() -> None:
    h = HashingEmbeddings(384)
    unrelated = h(UNRELATED)
    for a, b in SIMILAR:
        va, vb = h([a, b])
        assert float(va @ vb) > float((unrelated @ va).max()) + 0.2, (a, b)


def test_hashing_vectors_are_unit_rows_and_batch_independent() -> None:
    h = HashingEmbeddings(128)
    texts = ["Hello, World!", "", "   ", "naïve café — déjà vu", "x\x00y", "hello world"]
    batch = h(texts)
    assert batch.shape == (6, 128) and batch.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batch[[0, 3, 4, 5]], axis=1), 1, rtol=1e-6)
    assert not batch[1].any() and not batch[2].any()  # no words: zero vector
    np.testing.assert_array_equal(batch[0], batch[5])  # case and punctuation are ignored
    for i, text in enumerate(texts):  # a text embeds the same alone or in any batch
        np.testing.assert_array_equal(h([text])[0], batch[i])
    many = [f"document number {i} about topic {i % 7}" for i in range(5000)]  # > one chunk
    np.testing.assert_array_equal(h(many)[4321], h([many[4321]])[0])
    assert h.embed_documents(["a b"]) == [h.embed_query("a b")]
    with pytest.raises(TypeError):
        h([b"bytes"])  # type: ignore[list-item]


async def test_hashing_async_methods() -> None:
    h = HashingEmbeddings(32)
    assert await h.aembed_documents(["a b c"]) == h.embed_documents(["a b c"])
    assert await h.aembed_query("a b c") == h.embed_query("a b c")


_DIGEST_SCRIPT = """
import hashlib, sys
from memlane.vectors import HashingEmbeddings
texts = ["The quick brown fox", "jumps over the lazy dog", "naïve café", ""]
print(hashlib.sha256(HashingEmbeddings(256)(texts).tobytes()).hexdigest())
"""


def test_hashing_is_deterministic_across_processes() -> None:
    digests = set()
    for seed in ("1", "2"):  # different str-hash salts must not matter
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", _DIGEST_SCRIPT], env=env, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        digests.add(out.stdout.strip())
    texts = ["The quick brown fox", "jumps over the lazy dog", "naïve café", ""]
    digests.add(hashlib.sha256(HashingEmbeddings(256)(texts).tobytes()).hexdigest())
    assert len(digests) == 1

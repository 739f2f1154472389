"""``Embedder(normalize=False)``: raw vectors, for the inner_product and l2 distances.

Every kind of embedder ``Embedder`` accepts must come back with its own vectors (norms kept,
converted to float32 as ``Embedder`` converts them), the user's function must see plain
``str`` texts, bad rows must still fail alone, and concurrent calls must never swap results.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from memlane.vectors import Embedder, EmbeddingError, HashingEmbeddings

pytestmark = pytest.mark.anyio



def vector(text: str) -> list[float]:
    """A vector far from unit length that depends on the text: [len, 2, -0.1]."""
    return [float(len(text)), 2.0, -0.1]


def sync_fn(texts: Sequence[str]) -> list[list[float]]:
    return [vector(text) for text in texts]


async def async_fn(texts: Sequence[str]) -> list[list[float]]:
    return sync_fn(texts)


def awaitable_fn(texts: Sequence[str]) -> Any:
    return async_fn(texts)  # a sync-looking callable that returns an awaitable


class Documents:
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return sync_fn(texts)

    def embed_query(self, text: str) -> list[float]:
        return vector(text)


class AsyncDocuments:
    async def aembed_documents(self, texts: list[str]) -> np.ndarray:
        return np.array(sync_fn(texts), dtype=np.float64)

    async def aembed_query(self, text: str) -> np.ndarray:
        return np.array([vector(text)])  # (1, dims): Embedder takes its row


EMBEDDERS = [sync_fn, async_fn, awaitable_fn, Documents(), AsyncDocuments()]


def want(*texts: str) -> np.ndarray:
    return np.array([[len(t), 2.0, -0.1] for t in texts], dtype=np.float32)


@pytest.mark.parametrize("embed", EMBEDDERS, ids=lambda e: getattr(e, "__name__", type(e).__name__))
async def test_every_embedder_kind_keeps_its_vectors(embed: Any) -> None:
    raw = Embedder(embed, 3, normalize=False)
    texts = ["ab", "cdef", "g"]
    np.testing.assert_array_equal(raw.embed_texts(texts).vectors, want(*texts))
    np.testing.assert_array_equal((await raw.aembed_texts(texts)).vectors, want(*texts))
    np.testing.assert_array_equal(raw.embed_query("abcde"), want("abcde")[0])
    np.testing.assert_array_equal(await raw.aembed_query("abcde"), want("abcde")[0])
    unit = Embedder(embed, 3).embed_texts(texts).vectors
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-6)  # as before


async def test_a_sync_call_inside_a_running_loop_keeps_the_vectors() -> None:
    """The async function then runs on a private loop in a helper thread."""
    raw = Embedder(async_fn, 3, normalize=False)
    np.testing.assert_array_equal(raw.embed_texts(["abc"]).vectors, want("abc"))
    np.testing.assert_array_equal(raw.embed_query("ab"), want("ab")[0])


async def test_bad_rows_fail_alone_and_good_rows_stay_raw() -> None:
    def partly_bad(texts: Sequence[str]) -> list[Any]:
        return [[float("nan"), 1.0, 1.0] if t == "bad" else vector(t) for t in texts]

    embedded = await Embedder(partly_bad, 3, normalize=False).aembed_texts(["ok", "bad", "fine"])
    assert list(embedded.errors) == [1]
    np.testing.assert_array_equal(embedded.vectors[[0, 2]], want("ok", "fine"))
    assert not embedded.vectors[1].any()
    with pytest.raises(EmbeddingError, match="returned 1 vectors for 2 texts"):
        Embedder(lambda texts: [[1.0, 2.0, 3.0]], 3, normalize=False).embed_texts(["a", "b"])


async def test_concurrent_calls_get_their_own_vectors() -> None:
    async def slow(texts: Sequence[str]) -> list[list[float]]:
        await asyncio.sleep(0)  # interleave with the other calls
        return sync_fn(texts)

    raw = Embedder(slow, 3, normalize=False)
    texts = [["x" * n] * (n % 3 + 1) for n in range(1, 40)]
    results = await asyncio.gather(*(raw.aembed_texts(batch) for batch in texts))
    for batch, embedded in zip(texts, results, strict=True):
        np.testing.assert_array_equal(embedded.vectors, want(*batch))


def test_hashing_embeddings_and_refused_objects_behave_as_in_embedder() -> None:
    hashing = HashingEmbeddings(16)
    np.testing.assert_array_equal(
        Embedder(hashing, 16, normalize=False).embed_texts(["a b"]).vectors,
        hashing.embed_array(["a b"]),
    )
    with pytest.raises(TypeError, match="embed must be a callable"):
        Embedder(object(), 3, normalize=False)

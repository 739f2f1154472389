"""A hung embedding provider: its callers fail with ``EmbeddingTimeoutError`` (no halving
retries), writes that need no embedding go ahead beside it, and closing never hangs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest
from tests.conftest import KEYWORD_DIMS, StoreFactory, keyword_embed

from memlane import EmbeddingTimeoutError, IndexConfig, PutOp, SqliteStore, StoreClosedError

pytestmark = pytest.mark.anyio


class HungEmbedder:
    """An async embed function that never answers until released; counts its calls."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.release = anyio.Event()
        self.started = anyio.Event()

    async def __call__(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(len(texts))
        self.started.set()
        await self.release.wait()
        return keyword_embed(texts)


def index_with(embed: HungEmbedder, timeout: float | None) -> IndexConfig:
    return IndexConfig(dims=KEYWORD_DIMS, embed=embed, fields=["text"], embed_timeout=timeout)


async def test_a_hung_embed_call_fails_its_callers_once_without_halving(
    make_store: StoreFactory,
) -> None:
    embed = HungEmbedder()
    store = await make_store(index=index_with(embed, 0.3))
    outcomes: dict[int, BaseException | None] = {}

    async def put(n: int) -> None:
        try:
            await store.aput(("ns",), f"k{n}", {"text": f"apple {n}"})
            outcomes[n] = None
        except Exception as exc:
            outcomes[n] = exc

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tasks:
            for n in range(16):
                tasks.start_soon(put, n)
    assert all(isinstance(e, EmbeddingTimeoutError) for e in outcomes.values()), outcomes
    assert "embed_timeout" in str(outcomes[0])
    assert len(embed.calls) <= 3, f"a timeout is not retried on halves: {embed.calls}"
    assert await store.asearch(("ns",)) == []
    with pytest.raises(EmbeddingTimeoutError):
        await store.asearch(("ns",), query="apple")


async def test_writes_needing_no_embedding_commit_beside_a_hung_embed_call(
    make_store: StoreFactory,
) -> None:
    embed = HungEmbedder()
    store = await make_store(index=index_with(embed, None))
    await store.aput(("ns",), "old", {"text": "x"}, index=False)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(store.aput, ("ns",), "slow", {"text": "apple"})
        with anyio.fail_after(10):
            await embed.started.wait()
        same_key_done = anyio.Event()

        async def same_key() -> None:  # must wait: it follows the hung put to "slow"
            await store.aput(("ns",), "slow", {"text": "last"}, index=False)
            same_key_done.set()

        tasks.start_soon(same_key)
        with anyio.fail_after(10):  # the embed call is still hung meanwhile
            await store.aput(("ns",), "quick", {"text": "y"}, index=False)
            await store.adelete(("ns",), "old")
            await store.aput(("ns",), "empty", {"other": "no text field"})
        assert not embed.release.is_set() and not same_key_done.is_set()
        assert await store.aget(("ns",), "old") is None
        assert (await store.aget(("ns",), "quick")) is not None
        embed.release.set()
    item = await store.aget(("ns",), "slow")
    assert item is not None and item.value == {"text": "last"}, "per-key order kept"


async def test_close_has_a_deadline_with_a_hung_embed_call(tmp_path: Path) -> None:
    embed = HungEmbedder()
    store = await SqliteStore.open(tmp_path / "s.db", index=index_with(embed, None))
    await store.aput(("ns",), "kept", {"text": "z"}, index=False)
    outcome: list[BaseException] = []

    async def put() -> None:
        try:
            await store.aput(("ns",), "hung", {"text": "apple"})
        except BaseException as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(put)
        with anyio.fail_after(10):
            await embed.started.wait()
            await store.aclose(give_up_after=0.2)
    assert len(outcome) == 1 and isinstance(outcome[0], StoreClosedError)
    async with SqliteStore.open(tmp_path / "s.db", index=index_with(HungEmbedder(), 5)) as again:
        assert await again.aget(("ns",), "kept") is not None
        assert await again.aget(("ns",), "hung") is None


def test_embed_timeout_is_validated() -> None:
    for bad in (0, -1, float("inf"), "5", True):
        with pytest.raises(ValueError, match="embed_timeout"):
            IndexConfig(dims=3, embed=keyword_embed, embed_timeout=bad)  # type: ignore[arg-type]


class SlowForOne(HungEmbedder):
    """Hangs only on the text ``"slow"`` (until released); embeds anything else at once."""

    async def __call__(self, texts: Sequence[str]) -> list[list[float]]:
        if "slow" in texts:
            return await super().__call__(texts)
        return keyword_embed(texts)


async def test_a_big_batch_waits_behind_an_earlier_write_to_one_of_its_keys(
    make_store: StoreFactory,
) -> None:
    """A big batch runs off the loop, but never ahead of a queued write to one of its keys:
    the later write to a key wins."""
    embed = SlowForOne()
    store = await make_store(index=index_with(embed, None))
    ops = [PutOp(("ns",), f"k{n}", {"text": "fast"}) for n in range(400)]
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(store.aput, ("ns",), "k7", {"text": "slow"})
        with anyio.fail_after(10):
            await embed.started.wait()
        batch_done = anyio.Event()

        async def batch() -> None:
            await store.abatch(ops)
            batch_done.set()

        tasks.start_soon(batch)
        with anyio.move_on_after(1):  # time enough for a batch that did not wait to land
            await batch_done.wait()
        assert not batch_done.is_set(), "it waits for the earlier write to k7"
        embed.release.set()
    item = await store.aget(("ns",), "k7")
    assert item is not None and item.value == {"text": "fast"}

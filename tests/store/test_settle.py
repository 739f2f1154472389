"""settle_fairly: a big batch's callers are woken a slice per loop turn, other tasks run in
between, every caller gets its own outcome, and cancellation leaves nobody waiting."""

from __future__ import annotations

import asyncio

import pytest

from memlane.store.settle import SLICE, settle_fairly

pytestmark = pytest.mark.anyio


async def test_other_tasks_run_between_slices_and_each_caller_gets_its_outcome() -> None:
    loop = asyncio.get_running_loop()
    count = 4 * SLICE
    futures: list[asyncio.Future[None]] = [loop.create_future() for _ in range(count)]
    woken: list[str] = []

    async def caller(n: int) -> None:
        try:
            await futures[n]
            woken.append("ok")
        except KeyError:
            woken.append("error")

    async def bystander() -> None:
        woken.append("bystander")

    callers = [asyncio.ensure_future(caller(n)) for n in range(count)]
    await asyncio.sleep(0)  # every caller is waiting
    outcomes = [(f, KeyError(n) if n % 7 == 0 else None) for n, f in enumerate(futures)]
    settling = asyncio.ensure_future(settle_fairly(outcomes))
    await asyncio.sleep(0)  # the first slice is resolved
    side = asyncio.ensure_future(bystander())
    await settling
    await asyncio.gather(*callers, side)
    assert woken.count("error") == len(range(0, count, 7))
    assert woken.count("ok") == count - woken.count("error")
    assert woken.index("bystander") < count, "the bystander ran before the last slice woke"


async def test_cancelling_the_settler_still_resolves_everyone() -> None:
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[None]] = [loop.create_future() for _ in range(3 * SLICE)]
    settling = asyncio.ensure_future(settle_fairly([(f, None) for f in futures]))
    await asyncio.sleep(0)
    settling.cancel()
    with pytest.raises(asyncio.CancelledError):
        await settling
    assert all(f.done() and f.result() is None for f in futures)


async def test_a_cancelled_caller_is_skipped() -> None:
    loop = asyncio.get_running_loop()
    gone: asyncio.Future[None] = loop.create_future()
    kept: asyncio.Future[None] = loop.create_future()
    gone.cancel()
    await settle_fairly([(gone, None), (kept, ValueError("bad"))])
    assert gone.cancelled()
    with pytest.raises(ValueError, match="bad"):
        kept.result()

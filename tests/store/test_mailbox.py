"""The writer's mailbox: backpressure that costs O(1) per waiting producer."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import pytest

from memlane.store.mailbox import Mailbox


class NoScanDeque(deque[Any]):
    """A waiters deque that fails on any linear search: waiting must cost O(1) per waiter."""

    def __contains__(self, item: object) -> bool:
        raise AssertionError("the waiters deque was searched")

    def remove(self, value: Any) -> None:
        raise AssertionError("a waiter was searched for and removed")

    def index(self, *args: Any) -> int:
        raise AssertionError("the waiters deque was searched")


@pytest.mark.anyio
async def test_waiting_for_space_never_searches_the_waiters() -> None:
    """Each woken waiter searched the whole deque for itself: 40k concurrent puts took
    30 s instead of 4x the 0.6 s of 10k, 100k took minutes and froze the loop
    (``benchmarks/burst.py`` measures it)."""
    mailbox: Mailbox[int] = Mailbox(1)
    mailbox._putters = NoScanDeque()
    mailbox.put_nowait(-1)
    producers = [asyncio.ensure_future(mailbox.put(n)) for n in range(2_000)]
    await asyncio.sleep(0)  # every producer is waiting now
    for producer in producers[::3]:
        producer.cancel()  # cancelled waiters are skipped, not searched for
    taken: list[int] = []
    while len(taken) < 1 + len(producers) - len(producers[::3]):
        taken.extend(await mailbox.get_batch(1_000))
    outcomes = await asyncio.gather(*producers, return_exceptions=True)
    assert all(o is None or isinstance(o, asyncio.CancelledError) for o in outcomes), {
        type(o).__name__ for o in outcomes
    }
    kept = [n for n in range(2_000) if n % 3]
    assert sorted(taken) == [-1, *kept]


@pytest.mark.anyio
async def test_a_cancelled_waiter_takes_no_space_and_passes_its_turn_on() -> None:
    mailbox: Mailbox[str] = Mailbox(1)
    mailbox.put_nowait("first")
    gone = asyncio.ensure_future(mailbox.put("cancelled"))
    kept = asyncio.ensure_future(mailbox.put("kept"))
    await asyncio.sleep(0)
    gone.cancel()
    assert await mailbox.get_batch(10) == ["first"]
    await asyncio.wait_for(kept, 1)
    assert await mailbox.get_batch(10) == ["kept"]
    assert gone.cancelled()


@pytest.mark.anyio
async def test_a_waiter_cancelled_after_its_wake_up_wakes_the_next() -> None:
    mailbox: Mailbox[str] = Mailbox(1)
    mailbox.put_nowait("first")
    woken = asyncio.ensure_future(mailbox.put("woken"))
    nxt = asyncio.ensure_future(mailbox.put("next"))
    await asyncio.sleep(0)
    assert await mailbox.get_batch(10) == ["first"]  # wakes ``woken`` (one slot free)
    woken.cancel()  # before it ran: its wake-up must go to ``nxt``
    await asyncio.wait_for(nxt, 1)
    assert await mailbox.get_batch(10) == ["next"]


@pytest.mark.anyio
async def test_a_cancelled_wait_leaves_a_newer_wait_to_be_woken() -> None:
    """The writer cancels a ``wait`` once an embed call ends; that wait's clean-up runs
    later and must not forget the getter of the ``get_batch`` that came after it (the
    writer then slept through ``close`` and the store never closed)."""
    mailbox: Mailbox[str] = Mailbox(10)
    stale = asyncio.ensure_future(mailbox.wait())
    await asyncio.sleep(0)

    async def writer_step() -> list[str]:
        stale.cancel()  # as the writer does: its clean-up runs after this step
        return await mailbox.get_batch(10)

    newer = asyncio.ensure_future(writer_step())
    for _ in range(3):
        await asyncio.sleep(0)
    assert stale.cancelled()
    mailbox.close()
    assert await asyncio.wait_for(newer, 1) == []
    assert mailbox.take(5) == []

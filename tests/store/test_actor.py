"""The batching actor alone (``store/actor.py``), with a toy store: batches, pipelining,
failure isolation, stopping."""

from __future__ import annotations

import asyncio

import pytest

from memlane.store.actor import BatchActor
from memlane.store.mailbox import Mailbox

pytestmark = pytest.mark.anyio

Posted = tuple[int, "asyncio.Future[None]"]


class Toy(BatchActor[Posted, list[Posted]]):
    """Prepares by recording, finishes by resolving; ``gate`` holds finishes back."""

    def __init__(self, *, pipelined: bool, max_batch: int = 100, detached: bool = True) -> None:
        super().__init__(
            Mailbox(1_000), max_batch=max_batch, pipelined=pipelined, detached=detached
        )
        self.events: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.stopped = 0
        self.noted = asyncio.Event()

    def note(self, event: str) -> None:
        self.events.append(event)
        self.noted.set()

    async def seen(self, event: str) -> None:
        while event not in self.events:
            self.noted.clear()
            await self.noted.wait()

    async def _prepare(self, batch: list[Posted]) -> list[Posted]:
        if any(n < 0 for n, _ in batch):
            raise ValueError("a bad batch")
        self.note(f"prepare {[n for n, _ in batch]}")
        return batch

    async def _finish(self, batch: list[Posted]) -> None:
        await self.gate.wait()
        self.note(f"finish {[n for n, _ in batch]}")
        for _, future in batch:
            future.set_result(None)

    def _batch_failed(self, batch: list[Posted], error: Exception) -> None:
        self._fail(batch, error)

    def _stopped_error(self) -> BaseException:
        return RuntimeError("stopped")

    def _fail(self, requests: list[Posted], error: BaseException) -> None:
        for _, future in requests:
            if not future.done():
                future.set_exception(error)

    def _on_stop(self) -> None:
        self.stopped += 1

    def post(self, n: int) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.mailbox.put_nowait((n, future))
        return future


async def test_what_waits_becomes_one_batch_and_a_bad_batch_fails_alone() -> None:
    toy = Toy(pipelined=False)
    first = [toy.post(n) for n in range(3)]
    task = asyncio.ensure_future(toy.run())
    await asyncio.gather(*first)
    bad = toy.post(-1)
    with pytest.raises(ValueError, match="bad batch"):
        await bad
    await toy.post(7)
    toy.mailbox.close()
    await task
    assert toy.events == ["prepare [0, 1, 2]", "finish [0, 1, 2]", "prepare [7]", "finish [7]"]
    assert toy.stopped == 1


async def test_pipelined_the_next_batch_is_prepared_while_one_finishes_in_order() -> None:
    toy = Toy(pipelined=True)
    toy.gate.clear()  # the first finish waits
    task = asyncio.ensure_future(toy.run())
    first = toy.post(1)
    await toy.seen("prepare [1]")
    second = toy.post(2)
    await toy.seen("prepare [2]")  # prepared while [1] has not finished
    assert "finish [1]" not in toy.events
    toy.gate.set()
    await asyncio.gather(first, second)
    assert toy.events.index("finish [1]") < toy.events.index("finish [2]")
    toy.mailbox.close()
    await task


async def test_stopping_fails_what_is_queued_and_lets_a_finish_under_way_end() -> None:
    toy = Toy(pipelined=False, max_batch=1)
    toy.gate.clear()
    task = asyncio.ensure_future(toy.run())
    running = toy.post(1)
    await toy.seen("prepare [1]")
    queued = toy.post(2)
    task.cancel()  # as a close past its deadline does
    await asyncio.sleep(0)
    toy.gate.set()  # the finish under way still ends, and its caller hears so
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(running, 5)
    with pytest.raises(RuntimeError, match="stopped"):
        await queued


async def test_an_inline_finish_cancelled_fails_its_callers() -> None:
    toy = Toy(pipelined=False, detached=False)
    toy.gate.clear()
    task = asyncio.ensure_future(toy.run(until_idle=True))
    running = toy.post(1)
    await toy.seen("prepare [1]")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(RuntimeError, match="stopped"):
        await asyncio.wait_for(running, 5)


async def test_until_idle_stops_when_nothing_waits_and_keeps_the_mailbox_open() -> None:
    toy = Toy(pipelined=False, detached=False)
    done = toy.post(1)
    await toy.run(until_idle=True)
    await done
    assert not toy.mailbox.closed and toy.stopped == 1
    again = toy.post(2)
    await toy.run(until_idle=True)
    await again

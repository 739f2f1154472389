"""WriteCombiner: batches, per-request outcomes, and no caller left waiting when its task
is cancelled (a loop shutting down), even before the task's first step."""

from __future__ import annotations

import asyncio

import pytest

from memlane.store.combiner import WriteCombiner

pytestmark = pytest.mark.anyio


async def test_requests_arriving_together_run_as_one_batch_with_their_own_outcomes() -> None:
    seen: list[list[int]] = []

    async def run(batch: list[int]) -> list[BaseException | None]:
        seen.append(batch)
        return [ValueError(n) if n == 3 else None for n in batch]

    combiner: WriteCombiner[int] = WriteCombiner(run)
    outcomes = await asyncio.gather(*(combiner.submit(n) for n in range(6)), return_exceptions=True)
    assert seen == [[0, 1, 2, 3, 4, 5]]
    assert isinstance(outcomes[3], ValueError)
    assert [o for n, o in enumerate(outcomes) if n != 3] == [None] * 5


async def test_a_task_cancelled_before_its_first_step_fails_its_callers_and_writes_go_on() -> None:
    async def run(batch: list[str]) -> list[BaseException | None]:
        return [None] * len(batch)

    combiner: WriteCombiner[str] = WriteCombiner(run)
    first = asyncio.ensure_future(combiner.submit("a"))
    await asyncio.sleep(0)  # "a" is queued and the write task created, not yet run
    queue = next(iter(combiner._actors.values()))
    assert queue.task is not None
    queue.task.cancel()  # as a loop shutting down cancels every task
    with pytest.raises(RuntimeError, match="cancelled"):
        await asyncio.wait_for(first, 5)
    await asyncio.wait_for(combiner.submit("b"), 5)  # a new task serves later writes


async def test_a_batch_that_raises_fails_every_caller_in_it_and_later_ones_run() -> None:
    calls: list[list[int]] = []

    async def run(batch: list[int]) -> list[BaseException | None]:
        calls.append(batch)
        if len(calls) == 1:
            raise OSError("disk on fire")
        return [None] * len(batch)

    combiner: WriteCombiner[int] = WriteCombiner(run)
    outcomes = await asyncio.gather(*(combiner.submit(n) for n in range(3)), return_exceptions=True)
    assert all(isinstance(o, OSError) for o in outcomes)
    later = await asyncio.wait_for(asyncio.gather(*(combiner.submit(n) for n in range(3))), 5)
    assert later == [None, None, None] and calls[1] == [0, 1, 2]

"""One shared call for many callers' requests, and, when it raises, which requests are at fault.

Both stores' writers embed a whole batch's texts in one call. If that call raises, only
the requests that make it fail may fail. Retrying request by request costs a call each
(64 for an InMemoryStore batch, up to 2,048 for SqliteStore's), which a rate-limited
remote model punishes. So a failing part is halved, and each half that still fails is
halved again: one bad request among n costs about ``2 * log2(n)`` calls more. When both
halves of a split fail (several bad requests, or a model that is down), halving on would
cost up to ``2n`` calls, so each request of that part is tried alone instead: never more
than about ``n + 2 * log2(n)`` calls in all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

__all__ = ["call_isolating"]

G = TypeVar("G")
R = TypeVar("R")


async def call_isolating(
    groups: Sequence[G],
    call: Callable[[list[G]], Awaitable[Sequence[R]]],
    *,
    unsplittable: tuple[type[Exception], ...] = (),
) -> list[R | Exception]:
    """``call(groups)`` (one result per group); if it raises, each group's own outcome:
    its result from a call that succeeded, or the exception of the call it failed alone.

    An ``unsplittable`` error (a timeout: the provider, not a request, is at fault, and
    each retry would wait as long again) fails every group of the call that raised it.
    """
    outcomes: list[R | Exception] = [Exception("not attempted")] * len(groups)
    try:
        _fill(outcomes, range(len(groups)), await call(list(groups)))
    except unsplittable as exc:
        outcomes = [exc] * len(groups)
    except Exception as exc:
        await _split(groups, call, list(range(len(groups))), exc, outcomes, unsplittable)
    return outcomes


async def _split(
    groups: Sequence[G],
    call: Callable[[list[G]], Awaitable[Sequence[R]]],
    part: list[int],
    error: Exception,
    outcomes: list[R | Exception],
    unsplittable: tuple[type[Exception], ...],
) -> None:
    """``part`` failed as a whole with ``error``: find its failing groups."""
    if len(part) == 1:
        outcomes[part[0]] = error
        return
    halves = [part[: len(part) // 2], part[len(part) // 2 :]]
    failures: list[tuple[list[int], Exception]] = []
    for at, half in enumerate(halves):
        try:
            _fill(outcomes, half, await call([groups[n] for n in half]))
        except unsplittable as exc:
            for failed_half, half_error in failures:  # no more calls: each keeps its error
                for n in failed_half:
                    outcomes[n] = half_error
            for n in [m for rest in halves[at:] for m in rest]:
                outcomes[n] = exc
            return
        except Exception as exc:
            failures.append((half, exc))
    if len(failures) == 1:
        await _split(groups, call, *failures[0], outcomes, unsplittable)
        return
    timed_out: Exception | None = None
    for half, half_error in failures:  # both halves failed: each group alone
        if len(half) == 1 or timed_out is not None:
            for n in half:
                outcomes[n] = timed_out or half_error
            continue
        for n in half:
            if timed_out is not None:
                outcomes[n] = timed_out
                continue
            try:
                _fill(outcomes, [n], await call([groups[n]]))
            except unsplittable as exc:
                outcomes[n] = timed_out = exc
            except Exception as alone:
                outcomes[n] = alone


def _fill(outcomes: list[R | Exception], part: Sequence[int], results: Sequence[R]) -> None:
    if len(results) != len(part):
        raise RuntimeError(f"expected {len(part)} results, got {len(results)}")
    for n, result in zip(part, results, strict=True):
        outcomes[n] = result

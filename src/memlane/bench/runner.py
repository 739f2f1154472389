"""Repeats, warm-up, interleaving and medians: how one figure is measured honestly.

Every system in a row is measured in the same process and run: a warm-up trial each
(discarded), then ``repeats`` rounds in which every system runs one trial, the order
rotating from round to round so that no system always runs first (or last, on a warmer
or more fragmented machine). A system whose trial raises is skipped with the reason.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from memlane.bench.systems import COUNTERPARTS

__all__ = ["Outcome", "Row", "Session", "Trial", "drive", "interleave"]

Trial = Callable[[], Awaitable[float]]


@dataclass
class Outcome:
    """One system's figures in one row: every repeat's value, or why there are none."""

    values: list[float] = field(default_factory=list)
    skipped: str | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def to_json(self) -> dict[str, Any]:
        if self.skipped is not None or not self.values:
            return {"skipped": self.skipped or "no value was measured"}
        return {"median": self.median, "min": min(self.values), "max": max(self.values),
                "values": self.values}


@dataclass
class Row:
    """One figure measured for several systems: a scenario at one setting and size."""

    scenario: str
    variant: str
    metric: str
    unit: str
    higher_is_better: bool
    items: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    # references that did other work in this row (say why in ``note``): no ratio against them
    unlike: tuple[str, ...] = ()

    def skip(self, system: str, reason: str) -> None:
        self.outcomes[system] = Outcome(skipped=reason)

    def ratios(self) -> dict[str, float]:
        """memlane's advantage over each reference: > 1 means memlane did better."""
        found: dict[str, float] = {}
        for ours, references in COUNTERPARTS.items():
            mine = self.outcomes.get(ours)
            if mine is None or mine.skipped or not mine.values:
                continue
            for ref in references:
                if ref in self.unlike:
                    continue
                theirs = self.outcomes.get(ref)
                if theirs is None or theirs.skipped or not theirs.values:
                    continue
                a, b = mine.median, theirs.median
                if a > 0 and b > 0:
                    found[f"{ours} vs {ref}"] = a / b if self.higher_is_better else b / a
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "variant": self.variant,
            "items": self.items,
            "params": self.params,
            "metric": self.metric,
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            "note": self.note,
            "results": {key: outcome.to_json() for key, outcome in self.outcomes.items()},
            "unlike": list(self.unlike),
            "ratios": self.ratios(),
        }


async def interleave(
    row: Row,
    trials: dict[str, Trial],
    repeats: int,
    *,
    warmup: bool = True,
    on_trial: Callable[[str], None] | None = None,
    slow: float = float("inf"),
    limit: float = float("inf"),
) -> Row:
    """Fill ``row`` with ``repeats`` interleaved trials of each system (after a warm-up).

    Time guards, both noted in the row: a system whose warm-up trial took longer than
    ``slow`` seconds is measured once instead of ``repeats`` times; one that took longer
    than ``limit`` is not measured again (the cold figure is given in the skip reason).
    """
    from memlane.bench.systems import SYSTEMS

    live = {key: trial for key, trial in trials.items() if key not in row.outcomes}
    rounds = {key: repeats for key in live}
    for key in list(live):
        row.outcomes[key] = Outcome()
        if not warmup:
            continue
        started = time.perf_counter()
        cold = await _attempt(row, live, key, give_up_s=max(2 * limit, 30.0))
        took = time.perf_counter() - started
        label = SYSTEMS[key].label if key in SYSTEMS else key
        if cold is not None and took > limit:
            row.skip(key, f"one cold trial took {took:.0f} s (limit {limit:.0f} s), not "
                          f"repeated; it measured {cold:.3g} {row.unit}")
            del live[key]
        elif cold is not None and took > slow and repeats > 1:
            rounds[key] = 1
            row.note += f"; {label}: 1 repeat (a trial takes {took:.0f} s)"
    for round_ in range(repeats):
        keys = [key for key in live if rounds[key] > round_]
        shift = round_ % len(keys) if keys else 0
        for key in keys[shift:] + keys[:shift]:
            value = await _attempt(row, live, key)
            if value is not None:
                row.outcomes[key].values.append(value)
            if on_trial is not None:
                on_trial(f"{row.scenario}: {row.variant} [{key}]")
    return row


async def _attempt(row: Row, live: dict[str, Trial], key: str,
                   give_up_s: float = float("inf")) -> float | None:
    if key not in live:
        return None
    try:
        if give_up_s == float("inf"):
            return await live[key]()
        return await asyncio.wait_for(live[key](), give_up_s)
    except TimeoutError:
        row.skip(key, f"a trial did not finish within {give_up_s:.0f} s; stopped, not measured")
        del live[key]
        return None
    except Exception as exc:  # one system's failure is a skip note, never the run's end
        from memlane.bench.systems import describe_failure

        row.skip(key, f"failed: {describe_failure(exc)}")
        del live[key]
        return None


async def drive(op: Callable[[int], Awaitable[Any]], count: int, concurrency: int) -> float:
    """Seconds to run ``op(0..count-1)`` with ``concurrency`` tasks pulling from one queue."""
    cursor = iter(range(count))

    async def worker() -> None:
        for i in cursor:
            await op(i)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    return time.perf_counter() - started


@dataclass
class Session:
    """The rows measured so far, and where each finished trial is reported."""

    repeats: int
    slow: float = float("inf")
    limit: float = float("inf")
    on_trial: Callable[[str], None] = lambda label: None
    on_step: Callable[[str], None] = lambda label: None
    rows: list[Row] = field(default_factory=list)

    async def measure(self, row: Row, trials: dict[str, Trial], *, warmup: bool = True,
                      repeats: int | None = None) -> Row:
        """Measure ``row`` (keeping the skips already recorded in it) and keep it."""
        self.on_step(f"{row.scenario}: {row.variant}"
                     + (f" at {row.items:,} items" if row.items else ""))
        await interleave(row, trials, self.repeats if repeats is None else repeats,
                         warmup=warmup, on_trial=self.on_trial, slow=self.slow,
                      limit=self.limit)
        self.rows.append(row)
        return row

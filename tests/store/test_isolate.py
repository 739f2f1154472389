"""call_isolating: one call for every group; a failure costs few calls and fails only its groups."""

from __future__ import annotations

import math

import pytest

from memlane.store.isolate import call_isolating

pytestmark = pytest.mark.anyio


class Model:
    """Doubles its inputs; raises on any call that contains a bad one."""

    def __init__(self, bad: set[int]) -> None:
        self.bad = bad
        self.calls: list[list[int]] = []

    async def __call__(self, groups: list[int]) -> list[int]:
        self.calls.append(groups)
        wrong = self.bad.intersection(groups)
        if wrong:
            raise ValueError(f"cannot embed {sorted(wrong)}")
        return [2 * g for g in groups]


async def test_a_healthy_batch_is_one_call() -> None:
    model = Model(set())
    assert await call_isolating(list(range(64)), model) == [2 * g for g in range(64)]
    assert model.calls == [list(range(64))]


@pytest.mark.parametrize("n", [2, 7, 64, 2_048])
async def test_one_bad_group_fails_alone_in_about_two_log_n_calls(n: int) -> None:
    for bad in {0, n // 3, n - 1}:
        model = Model({bad})
        outcomes = await call_isolating(list(range(n)), model)
        assert isinstance(outcomes[bad], ValueError) and str(bad) in str(outcomes[bad])
        assert [o for i, o in enumerate(outcomes) if i != bad] == [
            2 * g for g in range(n) if g != bad
        ]
        assert len(model.calls) <= 1 + 2 * math.ceil(math.log2(n))


async def test_a_model_that_is_down_costs_about_one_call_per_group() -> None:
    n = 64
    model = Model(set(range(n)))
    outcomes = await call_isolating(list(range(n)), model)
    assert all(isinstance(o, ValueError) for o in outcomes)
    assert len(model.calls) <= n + 3


@pytest.mark.parametrize(("bad", "most_calls"), [({3, 4}, 20), ({3, 4, 40, 63}, 64 + 3)])
async def test_several_bad_groups_each_fail_with_their_own_error(
    bad: set[int], most_calls: int
) -> None:
    """Bad groups close together are still found by halving; spread over both halves of a
    split, each group of that part is tried alone."""
    model = Model(bad)
    outcomes = await call_isolating(list(range(64)), model)
    for g, outcome in enumerate(outcomes):
        if g in bad:
            assert isinstance(outcome, ValueError) and str(outcome) == f"cannot embed [{g}]"
        else:
            assert outcome == 2 * g
    assert len(model.calls) <= most_calls


async def test_a_call_returning_the_wrong_number_of_results_is_an_error() -> None:
    async def short(groups: list[int]) -> list[int]:
        return groups[:-1]

    outcomes = await call_isolating([1, 2], short)
    assert all(isinstance(o, RuntimeError) and "expected" in str(o) for o in outcomes)

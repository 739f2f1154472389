"""How memlane is held against the references: the direction of each ratio, the rows it is
not computed for, the ceiling chosen, and the order trials run in."""

from __future__ import annotations

from pathlib import Path

import pytest

from memlane.bench.report import _best_ceiling, build_tables, load_rows, write_json
from memlane.bench.runner import Outcome, Row, interleave

pytestmark = pytest.mark.anyio


def row(higher_is_better: bool, unlike: tuple[str, ...] = (), **medians: float) -> Row:
    made = Row("writes", "test", "x", "x", higher_is_better, unlike=unlike)
    for key, value in medians.items():
        made.outcomes[key.replace("_", "-")] = Outcome(values=[value])
    return made


def test_a_ratio_above_one_means_memlane_did_better_either_way() -> None:
    throughput = row(True, memlane_sqlite=200.0, langgraph_sqlite=100.0)
    latency = row(False, memlane_sqlite=1.0, langgraph_sqlite=4.0)
    assert throughput.ratios()["memlane-sqlite vs langgraph-sqlite"] == 2.0
    assert latency.ratios()["memlane-sqlite vs langgraph-sqlite"] == 4.0


def test_no_ratio_against_a_skipped_or_unlike_reference() -> None:
    skipped = row(True, memlane_sqlite=200.0)
    skipped.skip("langgraph-sqlite", "not installed")
    assert "memlane-sqlite vs langgraph-sqlite" not in skipped.ratios()
    unlike = row(False, unlike=("langgraph-sqlite",), memlane_sqlite=5.0, langgraph_sqlite=9.0)
    assert "memlane-sqlite vs langgraph-sqlite" not in unlike.ratios()
    cells = build_tables([unlike])[0].body[0]
    assert not any("×" in cell for cell in cells), "the table prints no ratio either"


def test_an_unlike_reference_stays_unlike_in_a_reloaded_results_json(tmp_path: Path) -> None:
    """Plots redrawn from a past run's results.json must not bring the ratio back."""
    unlike = row(False, unlike=("langgraph-sqlite",), memlane_sqlite=5.0, langgraph_sqlite=9.0)
    write_json(tmp_path / "results.json", [unlike], {}, {})
    (reloaded,) = load_rows(tmp_path / "results.json")
    assert reloaded.unlike == ("langgraph-sqlite",)
    assert "memlane-sqlite vs langgraph-sqlite" not in reloaded.ratios()


def test_the_best_ceiling_is_the_fastest_one() -> None:
    assert _best_ceiling(row(True, sqlite3=5.0, numpy=9.0, faiss_flat=7.0)) == "numpy"
    assert _best_ceiling(row(False, numpy=9.0, faiss_flat=7.0)) == "faiss-flat"


async def test_trials_interleave_and_rotate_the_order_each_repeat() -> None:
    order: list[str] = []

    def trial(key: str):  # type: ignore[no-untyped-def]
        async def run() -> float:
            order.append(key)
            return 1.0

        return run

    measured = Row("writes", "test", "x", "x", True)
    keys = ["memlane-sqlite", "langgraph-sqlite", "sqlite3"]
    await interleave(measured, {key: trial(key) for key in keys}, repeats=3, warmup=False)
    assert order == [*keys, *keys[1:], keys[0], *keys[2:], *keys[:2]]
    assert all(len(measured.outcomes[key].values) == 3 for key in keys)

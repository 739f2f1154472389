"""``memlane bench --quick`` end to end: well-formed output, never the figures themselves.

One run (the quick preset: ~1 minute on two cores) through the console script, shared by
the tests below.
It needs neither rich nor matplotlib: without matplotlib the plots are skipped with a
note, and the plot test is skipped too.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from memlane.bench.plan import FAMILIES
from memlane.bench.systems import SYSTEMS

pytestmark = pytest.mark.slow

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench")
    script = shutil.which("memlane", path=str(Path(sys.executable).parent))
    command = [script] if script else [sys.executable, "-m", "memlane.cli"]
    done = subprocess.run([*command, "bench", "--quick", "--plain", "--out", str(out)],
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return out, json.loads((out / "results.json").read_text()), done.stdout


def test_every_family_is_measured_or_skipped_with_a_reason(
        run: tuple[Path, dict[str, Any], str]) -> None:
    _, results, _ = run
    families = {row["scenario"] for row in results["rows"]}
    assert families == set(FAMILIES)
    for row in results["rows"]:
        assert row["metric"] and row["unit"] and isinstance(row["higher_is_better"], bool)
        assert row["results"], row
        for key, result in row["results"].items():
            assert key in SYSTEMS
            if "skipped" in result:
                assert isinstance(result["skipped"], str) and result["skipped"]
                continue
            values = [result["median"], result["min"], result["max"], *result["values"]]
            assert all(math.isfinite(v) and v >= 0 for v in values), (row["variant"], key)
            assert result["min"] <= result["median"] <= result["max"]
            if row["scenario"] != "peak_memory":  # growth above a baseline may be 0
                assert result["median"] > 0, (row["variant"], key)
        for name, value in row["ratios"].items():
            assert value > 0, name
        # memlane's own stores never skip: they are what is measured.
        for key in ("memlane-sqlite", "memlane-memory", "memlane-agent"):
            assert "skipped" not in row["results"].get(key, {}), (row["variant"], key)


def test_results_json_records_the_machine_and_the_plan(
        run: tuple[Path, dict[str, Any], str]) -> None:
    _, results, _ = run
    meta = results["meta"]
    for field in ("python", "sqlite", "cpu_count", "load_before", "load_after", "started",
                  "seconds", "platform"):
        assert meta[field], field
    assert meta["versions"]["memlane"]
    assert meta["plan"]["preset"] == "quick"
    assert meta["plan"]["sizes"] == [1000, 10000]


def test_report_and_table(run: tuple[Path, dict[str, Any], str]) -> None:
    out, results, stdout = run
    report = (out / "report.md").read_text()
    assert report.startswith("# memlane bench")
    for title in ("## Writes", "## Gets", "## Vector search", "## Filtered search",
                  "## Reopen", "## Peak memory", "## Agent loop"):
        assert title in report
        assert title[3:] in stdout  # the same tables on standard output
    if results["plots_skipped"]:
        assert "pip install 'memlane[bench]'" in results["plots_skipped"]


def test_plots_are_written(run: tuple[Path, dict[str, Any], str]) -> None:
    pytest.importorskip("matplotlib")
    out, results, _ = run
    assert set(results["plots"]) == {"throughput_vs_concurrency.png", "latency_vs_size.png",
                                     "reopen_memory_vs_size.png", "ratios.png"}
    for name in results["plots"]:
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
        assert f"![{name}]({name})" in (out / "report.md").read_text()


def test_plots_redrawn_from_results_json(run: tuple[Path, dict[str, Any], str],
                                         tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from memlane.bench.plots import write_plots
    from memlane.bench.report import load_rows

    out, results, _ = run
    rows = load_rows(out / "results.json")
    assert len(rows) == len(results["rows"])
    assert write_plots(rows, tmp_path, (1000, 10000)) == results["plots"]


def test_bad_options_are_usage_errors(tmp_path: Path) -> None:
    from memlane.cli import main

    assert main(["bench", "--smoke", "--sizes", "ten", "--out", str(tmp_path)]) == 2
    assert main(["bench", "--smoke", "--scenarios", "nope", "--out", str(tmp_path)]) == 2
    assert main(["bench", "--smoke", "--repeats", "0", "--out", str(tmp_path)]) == 2

"""PNG plots of a run (matplotlib, Agg): how cost grows with concurrency and with N.

Every figure says what it measures in its title, its axes carry units, and sizes that
span decades are on log axes. Missing points (a skipped system) are simply not drawn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memlane.bench.runner import Row
from memlane.bench.systems import SYSTEMS

__all__ = ["write_plots"]

STYLE = {  # colour per system, dashed for the ceilings
    "memlane-sqlite": ("tab:blue", "-", "o"),
    "memlane-memory": ("tab:cyan", "-", "s"),
    "langgraph-sqlite": ("tab:red", "-", "o"),
    "langgraph-memory": ("tab:orange", "-", "s"),
    "sqlite3": ("tab:gray", "--", "^"),
    "faiss-flat": ("tab:green", "--", "^"),
    "numpy": ("tab:olive", "--", "v"),
    "memlane-agent": ("tab:blue", "-", "o"),
    "langchain-agent": ("tab:red", "-", "o"),
}


def _median(row: Row, key: str) -> float | None:
    outcome = row.outcomes.get(key)
    if outcome is None or outcome.skipped or not outcome.values:
        return None
    return outcome.median


def _lines(ax: Any, points: dict[str, list[tuple[float, float]]]) -> None:
    for key, xy in points.items():
        xy = sorted(p for p in xy if p[1] is not None and p[1] > 0)
        if not xy:
            continue
        colour, dash, marker = STYLE.get(key, ("black", "-", "o"))
        ax.plot([p[0] for p in xy], [p[1] for p in xy], linestyle=dash, marker=marker,
                color=colour, label=SYSTEMS[key].label)


def _series(rows: list[Row], x_of: Callable[[Row], float]) -> dict[str, list[tuple[float, float]]]:
    points: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        for key in row.outcomes:
            value = _median(row, key)
            if value is not None:
                points.setdefault(key, []).append((x_of(row), value))
    return points


def _tick(value: float) -> str:
    """An axis label: 0.05, 2, 50, 1,000, 100,000 (no 5e+01, no 50.0)."""
    if value <= 0:
        return ""
    return f"{value:,.0f}" if value >= 1_000 else f"{value:g}"


def _finish(ax: Any, title: str, xlabel: str, ylabel: str) -> None:
    from matplotlib.ticker import FuncFormatter

    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(FuncFormatter(lambda value, _: _tick(value)))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: _tick(v) if f"{v:g}"[0] in "25"
                                               else ""))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


@dataclass
class _Panel:
    """One log-log panel: the rows it draws, their x value, and its labels."""

    rows: list[Row]
    x_of: Callable[[Row], float]
    title: str
    xlabel: str
    ylabel: str


def _pick(rows: list[Row], scenario: str, match: dict[str, Any],
          keep: Callable[[Row], bool] = lambda row: True) -> list[Row]:
    return [r for r in rows if r.scenario == scenario and keep(r)
            and all(r.params.get(k) == v for k, v in match.items())]


def _figure(plt: Any, out: Path, shape: tuple[int, int], figsize: tuple[float, float],
            suptitle: str, panels: list[_Panel]) -> bool:
    """Draw ``panels`` on a grid and save it; whether any panel had data."""
    fig, axes = plt.subplots(*shape, figsize=figsize)
    for ax, panel in zip(getattr(axes, "flat", axes), panels, strict=True):
        _lines(ax, _series(panel.rows, panel.x_of))
        _finish(ax, panel.title, panel.xlabel, panel.ylabel)
    fig.suptitle(suptitle)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return any(panel.rows for panel in panels)


def _by_items(row: Row) -> float:
    return float(row.items or 0)


def _by_param(knob: str) -> Callable[[Row], float]:
    return lambda row: float(row.params[knob])


def throughput_plot(plt: Any, rows: list[Row], out: Path, size: int) -> bool:
    specs: list[tuple[str, dict[str, Any], str, str, str]] = [
        ("writes", {"index": False}, "writers", "puts/s", "Writes, no index"),
        ("writes", {"index": True}, "writers", "puts/s", "Writes, with index"),
        ("gets", {}, "readers", "gets/s", "Gets of existing keys"),
    ]
    panels = [
        _Panel(_pick(rows, scenario, match, lambda r: r.items == size), _by_param(knob),
               title, f"concurrent {knob} (tasks)", f"throughput ({unit}, log)")
        for scenario, match, knob, unit, title in specs
    ]
    return _figure(plt, out, (1, 3), (15, 4.8),
                   f"Throughput vs concurrency, store holding {size:,} items "
                   "(median of repeats; dashed: raw sqlite3 ceiling, one transaction)", panels)


def latency_plot(plt: Any, rows: list[Row], out: Path) -> bool:
    specs: list[tuple[str, dict[str, Any], str]] = [
        ("vector_search", {"scope": "store", "concurrency": 1}, "Vector search, whole store"),
        ("vector_search", {"scope": "namespace", "concurrency": 1},
         "Vector search, one user's namespace"),
        ("filter_search", {"query": False}, "Filter only (0.1% match)"),
        ("filter_search", {"query": True}, "Filter plus query (1% match)"),
    ]
    panels = [
        _Panel(_pick(rows, scenario, match), _by_items, title,
               "items in the store (N, log)", "latency (ms per query, log)")
        for scenario, match, title in specs
    ]
    return _figure(plt, out, (2, 2), (12, 9),
                   "Latency vs store size: one query at a time, top 10 "
                   "(median of repeats; dashed: FAISS flat / numpy ceilings)", panels)


def scaling_plot(plt: Any, rows: list[Row], out: Path) -> bool:
    x_label, reopen_label = "items in the store (N, log)", "seconds to first get (log)"
    panels = [
        _Panel(_pick(rows, "reopen", {"index": False}), _by_items, "Reopen, no index",
               x_label, reopen_label),
        _Panel(_pick(rows, "reopen", {"index": True}), _by_items,
               "Reopen, with index (vectors loaded)", x_label, reopen_label),
        _Panel(_pick(rows, "peak_memory", {}, lambda r: "above" in r.variant), _by_items,
               "Peak memory above baseline (child process per system;\n"
               "indexed, except LangGraph AsyncSqliteStore)", x_label, "MiB (log)"),
    ]
    return _figure(plt, out, (1, 3), (15, 4.8),
                   "Reopen time and memory vs store size (median of repeats)", panels)


def ratio_plot(plt: Any, rows: list[Row], out: Path) -> bool:
    """One bar per comparable row at its largest size: memlane vs its LangGraph twin."""
    from matplotlib.ticker import FuncFormatter

    pairs = [("memlane-sqlite", "langgraph-sqlite", "tab:blue", "SqliteStore vs AsyncSqliteStore"),
             ("memlane-memory", "langgraph-memory", "tab:cyan", "InMemoryStore vs InMemoryStore"),
             ("memlane-agent", "langchain-agent", "tab:purple", "create_agent vs create_agent")]
    latest: dict[tuple[str, str], Row] = {}
    for row in rows:
        if not any(f"{a} vs {b}" in row.ratios() for a, b, _, _ in pairs):
            continue
        name = (row.scenario, row.variant)
        if name not in latest or (row.items or 0) > (latest[name].items or 0):
            latest[name] = row
    if not latest:
        return False
    labels = [f"{r.scenario.replace('_', ' ')}: {r.variant}"
              + (f" (N={r.items:,})" if r.items else "") for r in latest.values()]
    fig, ax = plt.subplots(figsize=(11, 0.42 * len(labels) * 2 + 1.8))
    height = 0.38
    placed: dict[str, tuple[list[float], list[float]]] = {a: ([], []) for a, *_ in pairs}
    for i, row in enumerate(latest.values()):
        found = row.ratios()
        present = [a for a, b, *_ in pairs if f"{a} vs {b}" in found]
        for j, ours in enumerate(present):
            ref = next(b for a, b, *_ in pairs if a == ours)
            placed[ours][0].append(i + (j - (len(present) - 1) / 2) * height)
            placed[ours][1].append(found[f"{ours} vs {ref}"])
    for ours, _, colour, legend in pairs:
        ys, xs = placed[ours]
        if xs:
            bars = ax.barh(ys, xs, height=height, color=colour, label=f"memlane {legend}")
            ax.bar_label(bars, labels=[f"{x:.2g}×" if x < 10 else f"{x:.0f}×" for x in xs],
                         fontsize=7, padding=2)
    ax.axvline(1, color="black", linewidth=1)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{_tick(value)}×"))
    ax.set_xlabel("how many times better memlane did (log; right of 1: memlane faster or "
                  "smaller)")
    ax.set_title("memlane vs LangGraph / LangChain: ratio of medians\n"
                 "same data, same process, interleaved; each row at its largest size")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


def write_plots(rows: list[Row], folder: Path, sizes: tuple[int, ...]) -> list[str]:
    """Write the PNGs into ``folder``; return their file names. Needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    jobs: list[tuple[str, Callable[[Path], bool]]] = [
        ("throughput_vs_concurrency.png",
         lambda path: throughput_plot(plt, rows, path, min(sizes))),
        ("latency_vs_size.png", lambda path: latency_plot(plt, rows, path)),
        ("reopen_memory_vs_size.png", lambda path: scaling_plot(plt, rows, path)),
        ("ratios.png", lambda path: ratio_plot(plt, rows, path)),
    ]
    for name, job in jobs:
        if job(folder / name):
            written.append(name)
        else:
            (folder / name).unlink(missing_ok=True)
    return written

"""``memlane bench``: run the suite, then write results.json, report.md and the plots.

rich and matplotlib come with the ``bench`` extra and are optional: without rich the
progress is plain lines on stderr, without matplotlib the plots are skipped with a note.
A LangGraph reference that is missing or fails is skipped with its reason, never a crash.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import os
import platform
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "run"]

PACKAGES = ("memlane", "langgraph", "langgraph-checkpoint-sqlite", "langchain",
            "langchain-core", "faiss-cpu", "numpy", "aiosqlite", "orjson", "rich", "matplotlib")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from memlane.bench.plan import FAMILIES

    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="sizes 1k and 10k, 3 repeats: under 2 minutes on 2 cores")
    size.add_argument("--smoke", action="store_true",
                      help="tiny sizes, 1 repeat, 32-dim vectors: checks that every scenario "
                           "runs in seconds; its figures mean nothing")
    parser.add_argument("--sizes", metavar="N,N,...",
                        help="store sizes to run (e.g. 10000,100000); overrides the preset")
    parser.add_argument("--repeats", type=int, metavar="R", help="measured repeats per figure")
    parser.add_argument("--scenarios", metavar="NAME,...",
                        help=f"a subset of: {', '.join(FAMILIES)}")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="output folder (default: results/<timestamp>/)")
    parser.add_argument("--plain", action="store_true", help="plain progress lines, no rich")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")


def _plan(args: argparse.Namespace) -> Any:
    """The preset chosen, with the command line's overrides; bad values are usage errors."""
    try:
        return _checked_plan(args)
    except ValueError as exc:
        from memlane.cli import UsageError

        raise UsageError(str(exc)) from None


def _checked_plan(args: argparse.Namespace) -> Any:
    from memlane.bench.plan import FAMILIES, PRESETS

    plan = PRESETS["smoke" if args.smoke else "quick" if args.quick else "full"]
    sizes = families = None
    if args.sizes:
        try:
            sizes = tuple(int(part.replace("_", "")) for part in args.sizes.split(","))
        except ValueError:
            raise ValueError(f"--sizes {args.sizes!r}: write numbers, e.g. 1000,10000") from None
        if any(n <= 0 for n in sizes):
            raise ValueError("--sizes must be positive")
    if args.scenarios:
        families = tuple(name.strip() for name in args.scenarios.split(",") if name.strip())
        unknown = set(families) - set(FAMILIES)
        if unknown:
            raise ValueError(f"--scenarios: unknown {sorted(unknown)}; choose from {FAMILIES}")
    if args.repeats is not None and args.repeats < 1:
        raise ValueError("--repeats must be at least 1")
    return plan.with_overrides(sizes=sizes, repeats=args.repeats, families=families)


def _versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def run(args: argparse.Namespace) -> int:
    import anyio

    from memlane.bench import report
    from memlane.bench.progress import PlainDisplay, make_display
    from memlane.bench.suite import planned_steps, run_suite
    from memlane.bench.systems import INSTALL_HINT

    plan = _plan(args)
    started = dt.datetime.now().astimezone()
    out: Path = args.out or Path("results") / started.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "load_before": _load(),
        "versions": _versions(),
        "plan": plan.to_json(),
        "command": " ".join(["memlane", *sys.argv[1:]]) if sys.argv else "memlane bench",
    }
    display = make_display(planned_steps(plan), plain=args.plain)
    if isinstance(display, PlainDisplay) and not args.plain:
        display.note(f"(plain progress: rich is not installed; {INSTALL_HINT} for a live view)")
    clock = time.perf_counter()
    try:
        rows, extra = anyio.run(run_suite, plan, display)
    finally:
        display.close()
    meta["seconds"] = time.perf_counter() - clock
    meta["skipped_sizes"] = extra.get("skipped_sizes", {})
    meta["load_after"] = _load()

    plots: list[str] = []
    plots_note = None
    if args.no_plots:
        plots_note = "skipped (--no-plots)"
    else:
        try:
            from memlane.bench.plots import write_plots

            plots = write_plots(rows, out, plan.sizes)
        except ImportError:
            plots_note = f"skipped: matplotlib is not installed ({INSTALL_HINT})"
    tables = report.build_tables(rows)
    compact = report.build_tables(rows, spread="pct")
    report.write_json(out / "results.json", rows, meta,
                      {**extra, "plots": plots, "plots_skipped": plots_note})
    (out / "report.md").write_text(report.markdown(tables, meta, plots, plots_note))
    _print_tables(compact, plain=args.plain)
    for size, reason in meta["skipped_sizes"].items():
        print(f"size {int(size):,} skipped: {reason}")
    print(f"\nload average {meta['load_before']} before, {meta['load_after']} after; "
          f"{meta['seconds']:.0f} s")
    if plots_note:
        print(f"plots: {plots_note}")
    print(f"wrote {out}/results.json, report.md" + (f" and {len(plots)} plots" if plots else ""))
    return 0


def _print_tables(tables: list[Any], plain: bool) -> None:
    from memlane.bench.report import plain_text

    if not plain:
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:
            plain = True
    if plain:
        print(plain_text(tables))
        return
    console = Console()
    if not console.is_terminal:
        console = Console(width=220)  # a file or a pipe: no reason to wrap the columns
    for table in tables:
        shown = Table(title=table.title, title_justify="left", header_style="bold")
        for i, header in enumerate(table.headers):
            shown.add_column(header, justify="left" if i in (0, 2) else "right")
        for cells in table.body:
            shown.add_row(*cells)
        console.print(shown)
        for i, note in enumerate(table.notes, 1):
            console.print(f"  [{i}] {note}", style="dim", highlight=False, markup=False)

"""The run's outputs for people and programs: tables, results.json and report.md.

One table per scenario family: a column per system (median, with min-max over repeats),
then memlane's ratio to its LangGraph counterpart and to the fastest raw ceiling. A ratio
is how many times better memlane did (above 1: memlane faster or smaller).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memlane.bench.runner import Outcome, Row
from memlane.bench.systems import SYSTEMS

__all__ = ["Table", "build_tables", "load_rows", "markdown", "number", "plain_text",
           "write_json"]

TITLES = {
    "writes": "Writes (puts/s, higher is better)",
    "gets": "Gets (gets/s, higher is better)",
    "vector_search": "Vector search (top 10)",
    "filter_search": "Filtered search (ms per query, lower is better)",
    "reopen": "Reopen (seconds to the first get, lower is better)",
    "peak_memory": "Peak memory (MiB, lower is better; one child process per system)",
    "agent_loop": "Agent loop (scripted model)",
}
PAIRS = {"memlane-sqlite": "langgraph-sqlite", "memlane-memory": "langgraph-memory",
         "memlane-agent": "langchain-agent"}
REF_SHORT = {"langgraph-sqlite": "LG", "langgraph-memory": "LG", "langchain-agent": "LangChain"}
CEILING_KEYS = ("sqlite3", "faiss-flat", "numpy")


def number(value: float) -> str:
    """Three significant figures, thousands separated: 12,345 / 123 / 12.3 / 1.23 / 0.0123."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def ratio_text(value: float) -> str:
    return f"{value:.2g}×" if value < 10 else f"{value:,.0f}×"


@dataclass
class Table:
    """A family's rows as text cells; ``notes`` are the numbered skip reasons."""

    title: str
    headers: list[str]
    body: list[list[str]]
    notes: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)


HEADERS = {"memlane-sqlite": "memlane SQLite", "memlane-memory": "memlane memory",
           "langgraph-sqlite": "LG SQLite", "langgraph-memory": "LG memory",
           "memlane-agent": "memlane loop", "langchain-agent": "LangChain loop"}


def _cell(outcome: Outcome | None, notes: list[str], spread: str) -> str:
    if outcome is None:
        return ""
    if outcome.skipped or not outcome.values:
        reason = outcome.skipped or "no value"
        if reason not in notes:
            notes.append(reason)
        return f"skipped [{notes.index(reason) + 1}]"
    text = number(outcome.median)
    low, high = min(outcome.values), max(outcome.values)
    if len(outcome.values) > 1 and spread == "range":
        text += f" ({number(low)}–{number(high)})"
    elif len(outcome.values) > 1 and outcome.median > 0:
        text += f" ±{(high - low) / 2 / outcome.median:.0%}"
    return text


def _best_ceiling(row: Row) -> str | None:
    """The fastest ceiling measured in ``row`` (the one memlane is held against)."""
    found = {k: row.outcomes[k].median for k in CEILING_KEYS
             if k in row.outcomes and row.outcomes[k].values and not row.outcomes[k].skipped}
    if not found:
        return None
    pick = max if row.higher_is_better else min
    return pick(found, key=lambda k: found[k])


def build_tables(rows: list[Row], spread: str = "range") -> list[Table]:
    """One table per family; ``spread`` is "range" (min–max) or "pct" (± half the range)."""
    tables: list[Table] = []
    for family in dict.fromkeys(row.scenario for row in rows):
        group = [row for row in rows if row.scenario == family]
        keys = [key for key in HEADERS if any(key in row.outcomes for row in group)]
        has_ceiling = any(k in row.outcomes for row in group for k in CEILING_KEYS)
        pairs = [(ours, ref) for ours, ref in PAIRS.items()
                 if any(ours in row.outcomes for row in group)
                 and any(ref in row.outcomes for row in group)]
        headers = ["setting", "N", "unit", *(HEADERS[k] for k in keys)]
        if has_ceiling:
            headers.append("best ceiling")
        headers += [f"{SYSTEMS[ours].short} ÷ {REF_SHORT[ref]}" for ours, ref in pairs]
        if has_ceiling:
            headers += [f"{SYSTEMS[ours].short} ÷ ceiling" for ours in ("memlane-sqlite",
                                                                   "memlane-memory")
                        if ours in keys]
        table = Table(TITLES.get(family, family), headers, [], rows=group)
        for row in group:
            arrow = "↑" if row.higher_is_better else "↓"
            cells = [row.variant, f"{row.items:,}" if row.items else "", f"{row.unit} {arrow}"]
            cells += [_cell(row.outcomes.get(key), table.notes, spread) for key in keys]
            ratios = row.ratios()
            best = _best_ceiling(row)
            if has_ceiling:
                cells.append(f"{number(row.outcomes[best].median)} {SYSTEMS[best].short}"
                             if best else "")
            cells += [ratio_text(ratios[f"{a} vs {b}"]) if f"{a} vs {b}" in ratios else ""
                      for a, b in pairs]
            if has_ceiling:
                cells += [ratio_text(ratios[f"{ours} vs {best}"])
                          if best and f"{ours} vs {best}" in ratios else ""
                          for ours in ("memlane-sqlite", "memlane-memory") if ours in keys]
            table.body.append(cells)
        tables.append(table)
    return tables


def plain_text(tables: list[Table]) -> str:
    """Fixed-width text, for a terminal without rich and for the wrapper scripts."""
    out: list[str] = []
    for table in tables:
        widths = [max(len(h), *(len(r[i]) for r in table.body)) for i, h in
                  enumerate(table.headers)]
        out.append(f"\n{table.title}")
        out.append("  ".join(h.ljust(w) for h, w in zip(table.headers, widths, strict=True)))
        for body in table.body:
            out.append("  ".join(c.ljust(w) for c, w in zip(body, widths, strict=True)))
        out.extend(f"  [{i}] {note}" for i, note in enumerate(table.notes, 1))
    return "\n".join(out)


def markdown(tables: list[Table], meta: dict[str, Any], plots: list[str],
             plots_note: str | None) -> str:
    """report.md: what was run where, then a table per family, then the plots."""
    plan = meta["plan"]
    lines = [
        "# memlane bench",
        "",
        f"Run {meta['started']} ({meta['seconds']:.0f} s, preset `{plan['preset']}`): "
        f"Python {meta['python']}, SQLite {meta['sqlite']}, {meta['cpu_count']} CPUs, "
        f"{meta['platform']}; load average {meta['load_before']} before, "
        f"{meta['load_after']} after.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".",
        "",
        f"Sizes {', '.join(f'{n:,}' for n in plan['sizes'])} items, {plan['dims']}-dim "
        f"vectors, {plan['repeats']} repeats after a warm-up: each cell is the median "
        "(min–max). Systems run interleaved in one process; the order rotates per repeat. "
        "A ratio (÷) is how many times better memlane did than the named system (above 1: "
        "memlane faster or smaller); the ceiling ratio is against the best raw ceiling of "
        "the row (sqlite3, FAISS flat or numpy on the same rows and vectors). LG = LangGraph. "
        "Each table's notes give every skip's reason and every time guard applied.",
        "",
    ]
    for size, reason in meta.get("skipped_sizes", {}).items():
        lines += [f"Size {int(size):,} skipped for the in-process scenarios: {reason}.", ""]
    for table in tables:
        lines += [f"## {table.title}", "",
                  "| " + " | ".join(table.headers) + " |",
                  "|" + "|".join("---" for _ in table.headers) + "|"]
        lines += ["| " + " | ".join(cells) + " |" for cells in table.body]
        notes = [f"* {row.variant}"
                 + (f" (N={row.items:,})" if row.items and "repeat" in row.note else "")
                 + f": {row.note}" for row in table.rows if row.note]
        lines += ["", *dict.fromkeys(notes)]
        lines += [""] + [f"[{i}] {note}  " for i, note in enumerate(table.notes, 1)] + [""]
    if plots:
        lines += ["## Plots", ""] + [f"![{name}]({name})" for name in plots] + [""]
    if plots_note:
        lines += [f"Plots: {plots_note}", ""]
    return "\n".join(lines)


def write_json(path: Path, rows: list[Row], meta: dict[str, Any], extra: dict[str, Any]
               ) -> None:
    from memlane.bench.systems import unavailable

    data = {
        "schema": 1,
        "meta": meta,
        "systems": {key: {"label": s.label, "kind": s.kind, "unavailable": unavailable(key)}
                    for key, s in SYSTEMS.items()},
        "rows": [row.to_json() for row in rows],
        **extra,
    }
    path.write_text(json.dumps(data, indent=2, default=str))


def load_rows(path: Path) -> list[Row]:
    """The rows of a results.json written by :func:`write_json` (to re-plot a past run)."""
    rows = []
    for data in json.loads(path.read_text())["rows"]:
        row = Row(data["scenario"], data["variant"], data["metric"], data["unit"],
                  data["higher_is_better"], data["items"], data["params"], data["note"],
                  unlike=tuple(data.get("unlike", ())))
        for key, result in data["results"].items():
            row.outcomes[key] = Outcome(values=list(result.get("values", [])),
                                        skipped=result.get("skipped"))
        rows.append(row)
    return rows

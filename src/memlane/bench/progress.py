"""The live display while a run goes: rich's progress bar, or plain lines without rich."""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol

__all__ = ["Display", "PlainDisplay", "RichDisplay", "make_display"]


class Display(Protocol):
    def step(self, label: str) -> None: ...
    def trial(self, label: str) -> None: ...
    def note(self, text: str) -> None: ...
    def close(self) -> None: ...


class PlainDisplay:
    """One line per row on stderr, with the elapsed time: enough for logs and CI."""

    def __init__(self, total: int, quiet: bool = False) -> None:
        self.total = total
        self.done = 0
        self.quiet = quiet
        self.started = time.perf_counter()

    def step(self, label: str) -> None:
        self.done += 1
        if not self.quiet:
            elapsed = time.perf_counter() - self.started
            print(f"[{min(self.done, self.total)}/{self.total} {elapsed:5.0f}s] {label}",
                  file=sys.stderr, flush=True)

    def trial(self, label: str) -> None:
        pass

    def note(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


class RichDisplay:
    """A rich progress bar (rows done of rows planned) and the trial running now."""

    def __init__(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = Console(stderr=True)
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(),
                                 console=self.console, transient=False)
        self.task: Any = self.progress.add_task("starting", total=total)
        self.progress.start()
        self.label = ""

    def step(self, label: str) -> None:
        if self.label:
            self.progress.advance(self.task)
        self.label = label
        self.progress.update(self.task, description=label)

    def trial(self, label: str) -> None:
        self.progress.update(self.task, description=label)

    def note(self, text: str) -> None:
        self.progress.console.print(text)

    def close(self) -> None:
        task = self.progress.tasks[0]
        self.progress.update(self.task, completed=task.total, description="done")
        self.progress.stop()


def make_display(total: int, plain: bool = False, quiet: bool = False) -> Display:
    """rich when it is installed (and wanted), plain lines otherwise."""
    if not plain and not quiet:
        try:
            return RichDisplay(total)
        except ImportError:
            pass
    return PlainDisplay(total, quiet=quiet)

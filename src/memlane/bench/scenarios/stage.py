"""The filled stores of one size, shared by the scenarios that read and write them.

For each size every store system is opened twice, without and with an index, and filled
with the same items through its own ``abatch``. A system that cannot open (not installed,
the sqlite-vec extension missing, too big to prefill in time) is recorded with its reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from memlane.bench.plan import Plan
from memlane.bench.runner import Row
from memlane.bench.systems import STORES, StoreHandle, describe_failure, unavailable
from memlane.bench.workloads import Dataset

__all__ = ["Stage"]


@dataclass
class Stage:
    """Open handles by ``(system key, indexed)``, and skip reasons for the rest."""

    data: Dataset
    plan: Plan
    folder: Path
    handles: dict[tuple[str, bool], StoreHandle] = field(default_factory=dict)
    skipped: dict[tuple[str, bool], str] = field(default_factory=dict)
    fill_seconds: dict[str, float] = field(default_factory=dict)

    async def build(self, indexed_too: bool, plain_too: bool,
                    progress: Callable[[str], None]) -> None:
        import time

        for system in STORES:
            for indexed in (False, True):
                if (indexed and not indexed_too) or (not indexed and not plain_too):
                    continue
                where = (system.key, indexed)
                reason = unavailable(system.key)
                if reason is None and system.kind == "reference" and (
                        self.data.size > self.plan.langgraph_max_items):
                    reason = (f"not run above {self.plan.langgraph_max_items:,} items "
                              "(prefilling it would not fit the time budget)")
                if reason is not None:
                    self.skipped[where] = reason
                    continue
                progress(f"filling {system.label} ({'index' if indexed else 'no index'}, "
                         f"{self.data.size:,} items)")
                path = self.folder / f"{system.key}-{self.data.size}-{int(indexed)}.db"
                handle = StoreHandle(system, path, self.data.index_config() if indexed else None)
                started = time.perf_counter()
                try:
                    await handle.open()
                    for chunk in self.data.chunks():
                        await handle.fill(chunk)
                except Exception as exc:
                    await handle.close()
                    self.skipped[where] = describe_failure(exc)
                    continue
                self.fill_seconds[f"{system.key}{'+index' if indexed else ''}"] = (
                    time.perf_counter() - started)
                self.handles[where] = handle

    def apply_skips(self, row: Row, indexed: bool, keys: list[str] | None = None) -> None:
        """Record, in ``row``, why each wanted store system is missing at this setting."""
        for system in STORES:
            if keys is not None and system.key not in keys:
                continue
            reason = self.skipped.get((system.key, indexed))
            if reason is not None:
                row.skip(system.key, reason)

    async def close(self) -> None:
        for handle in self.handles.values():
            await handle.close()
        self.handles.clear()

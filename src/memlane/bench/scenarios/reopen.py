"""Reopen: seconds from opening a filled store file to its first answered get.

The durable stores only. With an index, memlane loads every vector into FAISS on open, so
this is the figure that grows with N. The file was just written: the page cache is warm.
"""

from __future__ import annotations

from memlane.bench.runner import Row, Session, Trial
from memlane.bench.scenarios.stage import Stage
from memlane.bench.systems import STORES, StoreHandle

__all__ = ["run"]


def reopen_trial(handle: StoreHandle, probe: tuple[tuple[str, ...], str]) -> Trial:
    async def trial() -> float:
        return await handle.reopen(probe)

    return trial


async def run(session: Session, stage: Stage) -> None:
    data = stage.data
    probe = (("users", "u0", "memories"), "m0")
    durable = [system.key for system in STORES if system.durable]
    for indexed in (False, True):
        row = Row("reopen", f"{'with' if indexed else 'no'} index", "seconds to first get", "s",
                  False, items=data.size, params={"index": indexed},
                  note="open the file, then one get; warm page cache"
                       + (f"; loads {data.size:,} vectors" if indexed else ""))
        stage.apply_skips(row, indexed, durable)
        trials = {key: reopen_trial(handle, probe)
                  for (key, is_indexed), handle in stage.handles.items()
                  if is_indexed == indexed and handle.system.durable}
        await session.measure(row, trials)

"""Gets: gets/s of existing keys at 1 and 100 concurrent readers.

The keys are a seeded sample of the size's items, the same for every system; a missing
item fails the trial. The ceiling is one plain SELECT (and JSON decode) per key.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from memlane.bench.runner import Row, Session, Trial, drive
from memlane.bench.scenarios.ceilings import RawSqlite
from memlane.bench.scenarios.stage import Stage
from memlane.bench.workloads import user_of

__all__ = ["get_trial", "run", "sample_keys"]

Key = tuple[tuple[str, ...], str]


def sample_keys(size: int, users: int, count: int, seed: int = 3) -> list[Key]:
    rng = random.Random(seed)
    rows = [rng.randrange(size) for _ in range(count)]
    return [(("users", user_of(row, users), "memories"), f"m{row}") for row in rows]


def get_trial(get: Callable[[tuple[str, ...], str], Awaitable[Any]], keys: Sequence[Key],
              readers: int) -> Trial:
    async def one(i: int) -> None:
        if await get(*keys[i]) is None:
            raise AssertionError(f"missing {keys[i]}")

    async def trial() -> float:
        return len(keys) / await drive(one, len(keys), readers)

    return trial


async def run(session: Session, stage: Stage, raw: RawSqlite) -> None:
    data, plan = stage.data, stage.plan
    keys = sample_keys(data.size, data.users, plan.get_ops)

    async def raw_trial() -> float:
        return len(keys) / raw.get_seconds(keys)

    for readers in plan.readers:
        row = Row("gets", f"{readers} reader{'s' if readers > 1 else ''}", "gets/s", "gets/s",
                  True, items=data.size, params={"readers": readers},
                  note=f"{len(keys):,} gets of existing keys per trial; the sqlite3 ceiling "
                       "reads them one after another")
        stage.apply_skips(row, False)
        trials = {key: get_trial(handle.store.aget, keys, readers)
                  for (key, indexed), handle in stage.handles.items() if not indexed}
        trials["sqlite3"] = raw_trial
        await session.measure(row, trials)

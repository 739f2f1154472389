"""Filtered search: a filter alone (no index needed), and a filter plus a query.

Filter alone: ``{"kind": "pinned"}`` matches 0.1% of the items, so finding 10 means
scanning (or indexing) most of the store. Filter plus query: the top 10 by meaning among
the 1% of items with one topic. Both over the whole store, one query at a time, in ms.
"""

from __future__ import annotations

from typing import Any

from memlane.bench.runner import Row, Session, Trial, drive
from memlane.bench.scenarios.stage import Stage
from memlane.bench.workloads import Dataset

__all__ = ["run"]

LIMIT = 10


def filter_trial(store: Any, data: Dataset, with_query: bool, queries: int) -> Trial:
    async def one(i: int) -> None:
        if with_query:
            await store.asearch(("users",), query=data.query_text(i),
                                filter={"topic": f"t{i % 100}"}, limit=LIMIT)
        else:
            hits = await store.asearch(("users",), filter={"kind": "pinned"}, limit=LIMIT)
            if not hits and data.size >= 1_000:
                raise AssertionError("the pinned filter found nothing")

    async def trial() -> float:
        return await drive(one, queries, 1) / queries * 1000

    return trial


async def run(session: Session, stage: Stage) -> None:
    data, plan = stage.data, stage.plan
    for with_query in (False, True):
        row = Row(
            "filter_search",
            "filter plus query (1% match)" if with_query else "filter only (0.1% match)",
            "ms per query", "ms", False, items=data.size, params={"query": with_query},
            note='{"topic": ...} plus a vector query, top 10' if with_query
            else '{"kind": "pinned"}, first 10 matches, no query',
        )
        stage.apply_skips(row, with_query)
        trials = {key: filter_trial(handle.store, data, with_query, plan.search_ops)
                  for (key, indexed), handle in stage.handles.items() if indexed == with_query}
        await session.measure(row, trials)

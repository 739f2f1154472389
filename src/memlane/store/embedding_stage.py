"""The writers' embedding stage, shared by every durable store (SQLite, PostgreSQL).

A writer batch holds many callers' requests; each request's puts succeed or fail together.
:func:`coalesce` keeps the last put per key among the requests still alive, and
:meth:`EmbeddingStage.embed` embeds those in one call, splitting the call (``isolate.py``)
when it raises so that one caller's bad text fails only that caller's request, and failing
a request whose own vectors came back wrong (length, NaN) with an ``EmbeddingError``.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio.to_thread
import numpy as np

from memlane.store.indexing import EmbedPlan, Indexer
from memlane.store.isolate import call_isolating
from memlane.store.ops import PreparedPut
from memlane.store.settle import SLICE
from memlane.vectors import EmbeddingError, EmbeddingTimeoutError

__all__ = ["EmbeddingStage", "Entry", "bad_vectors", "coalesce"]


@dataclass(slots=True)
class Entry:
    """A put inside a writer batch, with its vectors once embedded."""

    request: int  # the request (caller) it belongs to, by number within the batch
    put: PreparedPut
    vectors: np.ndarray | None = None
    embedded: bool = False
    error: str | None = None


def coalesce(entries: list[Entry], failed: dict[int, BaseException]) -> list[Entry]:
    """The last op per key among requests that have not failed."""
    last: dict[tuple[tuple[str, ...], str], Entry] = {}
    for entry in entries:
        if entry.request not in failed:
            last[(entry.put.namespace, entry.put.key)] = entry
    return list(last.values())


class EmbeddingStage:
    """Embeds a batch's surviving puts with the store's :class:`Indexer`."""

    def __init__(self, indexer: Indexer) -> None:
        self.indexer = indexer

    async def embed(self, entries: list[Entry], failed: dict[int, BaseException]) -> list[Entry]:
        """Embed the surviving puts in one call; isolate failures to their requests (into
        ``failed``); return the survivors, coalesced."""
        while True:
            survivors = coalesce(entries, failed)
            todo = [e for e in survivors if not e.embedded and not e.put.is_delete]
            if not todo:
                return survivors
            by_request: dict[int, list[Entry]] = {}
            for entry in todo:
                by_request.setdefault(entry.request, []).append(entry)
            groups = list(by_request.values())
            for group, outcome in zip(
                groups, await call_isolating(
                    groups, self._embed_groups, unsplittable=(EmbeddingTimeoutError,)
                ), strict=True
            ):
                if isinstance(outcome, Exception):
                    failed[group[0].request] = outcome
                    for entry in group:
                        entry.embedded = True
            for entry in todo:
                if entry.error is not None and entry.request not in failed:
                    failed[entry.request] = bad_vectors(entry)

    async def _embed_groups(self, groups: list[list[Entry]]) -> list[None]:
        """Embed several requests' entries in one call (``call_isolating`` splits them)."""
        await self.embed_entries([entry for group in groups for entry in group])
        return [None] * len(groups)

    async def embed_entries(self, group: list[Entry]) -> None:
        """Embed ``group`` in one call, setting each entry's vectors or error."""
        indexer = self.indexer

        def plan_texts() -> EmbedPlan:
            return indexer.plan([(e.put, e.put.value()) for e in group])

        # Decoding thousands of values to find their texts is work for a thread.
        plan = await anyio.to_thread.run_sync(plan_texts) if len(group) > SLICE else plan_texts()
        embedded = await indexer.embedder.aembed_texts(plan.texts) if plan.texts else None
        for entry, outcome in zip(group, plan.split(embedded, indexer.dims), strict=True):
            entry.vectors, entry.error, entry.embedded = outcome.vectors, outcome.error, True


def bad_vectors(entry: Entry) -> EmbeddingError:
    """The error of a put whose vectors came back unusable."""
    return EmbeddingError(
        f"cannot index the put to {entry.put.namespace!r}/{entry.put.key!r}: {entry.error}"
    )

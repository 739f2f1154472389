"""Stored values cost what they hold: no serialiser buffer kept alive per item."""

from __future__ import annotations

import tracemalloc

from memlane import InMemoryStore
from memlane.store.ops import prepare_put


def _traced(build: object) -> int:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = build()  # type: ignore[operator]
        used: int = tracemalloc.get_traced_memory()[0] - before
        del kept
        return used
    finally:
        tracemalloc.stop()


def test_in_memory_items_of_50_bytes_cost_well_under_a_kilobyte() -> None:
    """orjson's bytes kept its 4 KB buffer: 100k items of ~50 B held 478 MB (now 78 MB)."""
    count = 5_000

    def build() -> InMemoryStore:
        store = InMemoryStore()
        for i in range(count):
            store.put(("u", str(i % 50)), f"k{i}", {"text": f"item {i} says hello", "n": i})
        return store

    per_item = _traced(build) / count
    assert per_item < 1_500, f"{per_item:.0f} bytes per 50-byte item"


def test_a_queued_put_of_1_kb_costs_about_1_kb() -> None:
    """A put waiting in SqliteStore's mailbox held 8 KB for a 1 KB value (now ~1.2 KB)."""
    count = 2_000

    def build() -> list[object]:
        value = {"text": "x" * 1_000}
        return [prepare_put(("u",), f"k{i}", value, None, None, None) for i in range(count)]

    per_put = _traced(build) / count
    assert per_put < 2_000, f"{per_put:.0f} bytes per queued 1 KB put"

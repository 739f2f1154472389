"""Faulting a chunk's pages in ahead of its writer (``prefault.py``): the pages become
resident and their contents stay as they were, written before or during."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

from memlane.vectors import VectorIndex, prefault

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or prefault._madvise is None,
    reason="MADV_POPULATE_WRITE is Linux 5.14+",
)

_PAGE = 4096


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE


def test_populate_makes_rows_resident_and_keeps_what_they_hold() -> None:
    rows = np.empty((16_384, 1_024), dtype=np.float32)  # 64 MiB, untouched
    rows[0] = 7.0
    rows[-1] = 9.0
    before = resident_bytes()
    assert prefault.populate([rows], 0, 8_192)  # the first half: 32 MiB
    grown = resident_bytes() - before
    assert grown >= 0.9 * 8_192 * 1_024 * 4, grown
    assert (rows[0] == 7.0).all() and (rows[-1] == 9.0).all()


def test_the_prefaulter_runs_ahead_of_the_rows_written_on_a_thread() -> None:
    rows = np.empty((65_536, 256), dtype=np.float32)  # 64 MiB, 1 KiB a row
    faulter = prefault.Prefaulter(row_bytes=1_024)
    before = resident_bytes()
    populated = faulter.ahead([rows], written=4_096, populated=0)  # 4 MiB written
    assert populated == 4_096 + 4_096  # as many bytes ahead as were written
    deadline = time.monotonic() + 10
    while faulter._busy.is_set():
        assert time.monotonic() < deadline, "the prefault thread never finished"
        time.sleep(0.001)
    assert resident_bytes() - before >= 0.9 * 4_096 * 1_024
    # near its end: the next call goes further; far from it: nothing to do
    assert faulter.ahead([rows], written=4_200, populated=populated) == populated
    assert faulter.ahead([rows], written=6_200, populated=populated) > populated


def test_an_index_keeps_its_tail_chunk_faulted_in_ahead() -> None:
    """Rows written after the prefault are exact (the thread never changes contents)."""
    index = VectorIndex(64)
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((3_000, 64)).astype(np.float32)
    for start in range(0, 2_900, 100):
        ids = np.arange(start, start + 100, dtype=np.int64)
        index.load(ids, np.ones(100, dtype=np.int64), vectors[start : start + 100])
    faulter = index._prefaulter
    assert faulter is not None
    deadline = time.monotonic() + 10
    while faulter._busy.is_set():  # writes meanwhile leave the mark where it was
        assert time.monotonic() < deadline, "the prefault thread never finished"
        time.sleep(0.001)
    ids = np.arange(2_900, 3_000, dtype=np.int64)
    index.load(ids, np.ones(100, dtype=np.int64), vectors[2_900:])
    tail = index._snap.chunks[index._tail]  # type: ignore[index]
    assert tail is not None and tail.populated > 3_000
    for item in (0, 1_234, 2_999):
        hits = index.search(vectors[item], 1)
        assert hits[0][0] == item

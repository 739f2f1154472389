"""Faulting a chunk's pages in ahead of its writer, on a background thread.

Why. The first write to a page of a chunk faults the page in. numpy asks for 2 MiB huge
pages on big arrays, and on a fresh VM one took 2-6 ms to fault in (its memory backed by
the host on first touch): a commit's mirror or a catch-up that crossed one paid that on
the caller's path (benchmarks/README.md, "Many processes, one file"). Linux's
``MADV_POPULATE_WRITE`` (5.14+) faults a range in without changing its contents, so a
background thread may run it ahead of the rows written while the writer goes on (a write
to a page being faulted in simply waits for that page). The call goes through ctypes,
which releases the GIL. On other systems, or an older kernel, this does nothing.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
import threading
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["Prefaulter", "populate"]

_MADV_POPULATE_WRITE = 23  # linux/mman.h
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
# How far ahead of the rows written a chunk is kept faulted in: as many bytes as were
# written, within these bounds (a small store stays small, a large one is 8 MiB ahead).
AHEAD_MIN_BYTES = 256 * 1024
AHEAD_MAX_BYTES = 8 * 2**20

Madvise = Callable[[int, int, int], int]


def _libc_madvise() -> Madvise | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_madvise = _libc_madvise()


def populate(arrays: Sequence[np.ndarray], start: int, stop: int) -> bool:
    """Fault rows ``[start, stop)`` of C-contiguous ``arrays`` in; blocks (GIL released).
    False when the system cannot (then no later call tries)."""
    global _madvise
    madvise = _madvise
    if madvise is None:
        return False
    for array in arrays:
        row = array.strides[0]
        begin, end = array.ctypes.data + start * row, array.ctypes.data + stop * row
        begin -= begin % _PAGE  # madvise wants a page-aligned start
        if end > begin and madvise(begin, end - begin, _MADV_POPULATE_WRITE) != 0:
            if ctypes.get_errno() == errno.EINVAL:  # a kernel before 5.14
                _madvise = None
            return False
    return True


class Prefaulter:
    """Keeps a chunk faulted in ahead of its rows written, one background thread at a time.

    ``ahead`` is called by the index's one writer after each append; it only records the
    new target and starts a thread, so the writer never waits for a page fault it did not
    reach itself.
    """

    def __init__(self, row_bytes: int) -> None:
        self._row_bytes = row_bytes
        self._busy = threading.Event()  # set while a thread is populating

    def ahead(self, arrays: Sequence[np.ndarray], written: int, populated: int) -> int:
        """Start populating past ``populated`` rows if ``written`` came near it; returns
        the new populated mark (the rows a thread has been asked to fault in)."""
        rows = min(AHEAD_MAX_BYTES, max(AHEAD_MIN_BYTES, written * self._row_bytes))
        rows //= self._row_bytes
        target = min(len(arrays[0]), written + rows)
        if populated - written >= rows // 2 or target <= populated or self._busy.is_set():
            return populated  # still far enough ahead, full, or a thread is on it
        if _madvise is None:
            return len(arrays[0])  # nothing to do here, ever
        self._busy.set()
        start = max(populated, written)

        def run() -> None:
            try:
                populate(arrays, start, target)
            finally:
                self._busy.clear()

        threading.Thread(target=run, name="memlane-prefault", daemon=True).start()
        return target

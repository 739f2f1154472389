"""Which calls are too big for the event loop: one rule for both stores.

Work that grows with a call's input (many ops to check and serialise, a filter of thousands
of branches to compile, a page of thousands of items to build, a value of megabytes to
decode) runs in a worker thread, so that no call holds the loop for long; small calls stay
on the loop, where they cost no thread hop. The thresholds keep every call's loop time
under a few milliseconds; ``benchmarks/loop_stalls.py`` measures the stalls (figures in
``benchmarks/README.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from memlane.store.filters import WIDE
from memlane.store.types import ListNamespacesOp, Op, SearchOp

__all__ = ["BIG_VALUE_CHARS", "is_heavy"]

# More ops than this in one call are checked and serialised off the loop.
MANY_OPS = 256
# A search or listing that may return more than this many results is answered off the loop.
MANY_RESULTS = 1_000
# A filter with more than this many keys and list elements is compiled off the loop (the
# same bound as ``Filter.wide``, which routes its SQL to a reader thread).
WIDE_FILTER = WIDE
# A stored value longer than this (JSON text) is decoded off the loop.
BIG_VALUE_CHARS = 1 << 20


def is_heavy(ops: Sequence[Op]) -> bool:
    """True when checking or answering ``ops`` may take the loop more than a moment."""
    if len(ops) > MANY_OPS:
        return True
    for op in ops:
        if isinstance(op, SearchOp | ListNamespacesOp) and _many(op.limit, op.offset):
            return True
        if isinstance(op, SearchOp) and _wider_than(op.filter, WIDE_FILTER):
            return True
    return False


def _many(limit: Any, offset: Any) -> bool:
    if isinstance(limit, bool) or not isinstance(limit, int):
        return False  # refused by validation, on the loop
    extra = offset if isinstance(offset, int) and not isinstance(offset, bool) else 0
    return limit + extra > MANY_RESULTS


def _wider_than(spec: Any, cap: int) -> bool:
    """Whether ``spec`` holds more than ``cap`` dict keys and list elements (stops early)."""
    seen = 0
    stack = [spec]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            seen += len(node)
            stack.extend(node.values())
        elif isinstance(node, list | tuple):
            seen += len(node)
            stack.extend(node)
        if seen > cap:
            return True
    return False

"""The SQLite store's tuned knobs, in one place, each with the measurement behind it.

The figures are in ``docs/sqlite.md`` and ``benchmarks/README.md``; a knob changes only with
a benchmark run before and after.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CHECKPOINT_BYTES",
    "CLOSE_GIVE_UP_S",
    "FOLLOW_EVERY_S",
    "GET_BATCH",
    "GET_KEY_CHUNK",
    "INLINE_COMMIT_ROWS",
    "INLINE_COMMIT_ROWS_WITH_VECTORS",
    "INLINE_FOLLOW_ITEMS",
    "INLINE_FOLLOW_WINDOW",
    "INLINE_READ_STEPS",
    "LOG_KEEP_S",
    "LOG_TRIM_EVERY_S",
    "MIRROR_LOCK_WAIT_S",
    "PATH_CHECK_S",
    "PENDING_CHUNK",
    "PROBE_SEQS",
    "SLICE",
    "SWEEPER_LEASE_INTERVALS",
    "WRITE_LOCK_POLL_S",
]

# Writes --------------------------------------------------------------------------------

# A batch this small commits on the loop's thread: it takes microseconds, less than the
# ~0.3 ms thread hop (docs/sqlite.md, "Shape" and "The thread-hop detail"). Rows with
# vectors are ~1.5 KB each, so fewer of them.
INLINE_COMMIT_ROWS: Final = 32
INLINE_COMMIT_ROWS_WITH_VECTORS: Final = INLINE_COMMIT_ROWS // 4

# The writer checkpoints the WAL itself, on the connection's thread, after about this much
# written, so that an inline commit never turns into copying megabytes on the loop.
CHECKPOINT_BYTES: Final = 32 * 2**20

# A batch of more puts than this is prepared in slices, yielding to the loop between them
# (benchmarks/README.md, "Loop stalls of big calls").
SLICE: Final = 4_096

# How often the writer looks the store's path up again (a moved file); an unlinked file is
# noticed before the very next commit. A lookup per commit cost ~5% of a lone writer's puts/s.
PATH_CHECK_S: Final = 1.0

# How long ``aclose`` waits for queued writes by default: a few embed calls' worth, so that
# leaving ``async with`` never hangs on a provider that stopped answering.
CLOSE_GIVE_UP_S: Final = 120.0

# Items embedded per call and per transaction when a file opened with ``index=False`` is
# opened with its index again.
PENDING_CHUNK: Final = 256

# How long the change log keeps a transaction's row (``changelog.py``): a process whose
# follower looked longer ago than this (its loop blocked, the machine paused) reloads its
# whole index instead. Followers look at least every ``FOLLOW_EVERY_S``, so this is slack.
LOG_KEEP_S: Final = 60.0
LOG_TRIM_EVERY_S: Final = 1.0
FOLLOW_EVERY_S: Final = 0.02
# At most this many log rows are listed on the loop's thread to tell whether they are all
# this process's own commits (~30-50 us); more go to the follower's thread.
PROBE_SEQS: Final = 256
# A catch-up whose other processes' changes name at most this many items runs on the loop's
# thread (its reads within INLINE_READ_STEPS), skipping two thread hops; more go to the
# follower's thread (docs/deployment.md, "How a process follows the others").
INLINE_FOLLOW_ITEMS: Final = 128
# And on the loop's thread the log rows since the last look may name at most this many
# times INLINE_FOLLOW_ITEMS ids in all, this process's own rows included: they are read
# whole, so their size is bounded before they are read.
INLINE_FOLLOW_WINDOW: Final = 4

# While another process holds SQLite's write lock, a writer retries BEGIN IMMEDIATE after
# these pauses (doubling from the first to the second, seconds): an attempt costs
# microseconds, a pause longer than another process's commit leaves the lock idle
# (benchmarks/README.md, "Many processes, one file").
WRITE_LOCK_POLL_S: Final = (0.0002, 0.002)

# How long a writer holding SQLite's write lock waits for its follower's lock (a catch-up in
# progress) before it rolls back and waits for the follower first: other processes' writes
# wait on that write lock meanwhile.
MIRROR_LOCK_WAIT_S: Final = 0.02

# The sweeper lease lasts this many sweep intervals (``lease.py``): its holder renews it
# at every sweep, so a sweeper that died is replaced within about that many intervals.
SWEEPER_LEASE_INTERVALS: Final = 2.5

# Reads ---------------------------------------------------------------------------------

# SQLite VM steps an inline read (on the loop's thread) may take before it moves to a reader
# thread: a get or one user's namespace fits (docs/sqlite.md, "Small reads skip the hop").
INLINE_READ_STEPS: Final = 20_000

# Gets answered per thread hop (larger hops win: the work is GIL-bound), and keys per
# compound lookup statement (300 parameters, far below SQLite's limit).
GET_BATCH: Final = 256
GET_KEY_CHUNK: Final = 100

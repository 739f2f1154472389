"""The SQLite writer under faults around its commits: a failing checkpoint, a locked file."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from memlane import SqliteStore


@pytest.mark.anyio
async def test_a_failing_wal_checkpoint_fails_no_committed_write(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A checkpoint that raised (a full disk, an fsync EIO) after the commit gave every
    caller of that durable batch a WriterError."""
    path = tmp_path / "store.db"
    attempts: list[int] = []
    async with SqliteStore.open(path) as store:
        writer = store._writer
        writer._checkpoint_bytes = 1  # every batch is due for a checkpoint

        def failing(raw: sqlite3.Connection) -> None:
            attempts.append(1)
            raise sqlite3.OperationalError("disk I/O error")

        writer._checkpoint_wal = failing  # type: ignore[method-assign]
        with caplog.at_level(logging.WARNING, logger="memlane"):
            await store.aput(("users",), "a", {"n": 1})
            await store.aput(("users",), "b", {"n": 2})
        assert len(attempts) == 2  # retried, not given up
        assert "checkpoint failed" in caplog.text
        assert any(r.name.startswith("memlane.") for r in caplog.records)
        del writer._checkpoint_wal  # the disk is back: checkpoints work again
        await store.aput(("users",), "c", {"n": 3})
    async with SqliteStore.open(path) as store:
        assert [(await store.aget(("users",), k)) is not None for k in "abc"] == [True] * 3

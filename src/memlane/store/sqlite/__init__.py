"""SqliteStore: a durable SQLite store with one batching writer task and WAL readers."""

from memlane.store.sqlite.store import SqliteStore, StoreLockedError
from memlane.store.sqlite.writer import StoreFileMissingError, WriterError

__all__ = ["SqliteStore", "StoreFileMissingError", "StoreLockedError", "WriterError"]

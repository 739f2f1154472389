"""BaseStore: backends implement ``abatch``/``batch``; everything else is built on them.

The convenience methods (``put/get/search/delete/list_namespaces`` and their ``a*`` twins)
only build ops, so every backend behaves the same way for the same calls.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Literal, Self, cast

from memlane.store.types import (
    NOT_PROVIDED,
    GetOp,
    Item,
    ListNamespacesOp,
    MatchCondition,
    NamespacePath,
    NotProvided,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
)

__all__ = ["BaseStore"]


def _list_op(
    prefix: NamespacePath | None,
    suffix: NamespacePath | None,
    max_depth: int | None,
    limit: int,
    offset: int,
) -> ListNamespacesOp:
    conditions: list[MatchCondition] = []
    if prefix is not None:
        conditions.append(MatchCondition("prefix", prefix))
    if suffix is not None:
        conditions.append(MatchCondition("suffix", suffix))
    return ListNamespacesOp(
        match_conditions=tuple(conditions) or None, max_depth=max_depth, limit=limit, offset=offset
    )


class BaseStore(ABC):
    """A store of JSON documents under hierarchical namespaces; see CONTRACT.md."""

    supports_ttl: bool = True

    @abstractmethod
    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """Run ``ops``; results aligned with them. Reads see the state before the writes."""

    @abstractmethod
    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """The blocking twin of :meth:`abatch`."""

    # ---- async convenience methods -------------------------------------------------------

    async def aget(
        self, namespace: tuple[str, ...], key: str, *, refresh_ttl: bool | None = None
    ) -> Item | None:
        """The item at ``namespace``/``key``, or ``None``."""
        return cast(Item | None, (await self.abatch([GetOp(namespace, key, refresh_ttl)]))[0])

    async def aput(
        self,
        namespace: tuple[str, ...],
        key: str,
        value: dict[str, Any] | None,
        index: Literal[False] | list[str] | None = None,
        *,
        ttl: float | NotProvided | None = NOT_PROVIDED,
    ) -> None:
        """Store ``value`` (replacing any earlier one), or delete when ``value`` is None."""
        await self.abatch([PutOp(namespace, key, value, index, ttl)])

    async def adelete(self, namespace: tuple[str, ...], key: str) -> None:
        """Delete the item; deleting a missing item is a no-op."""
        await self.abatch([PutOp(namespace, key, None)])

    async def asearch(
        self,
        namespace_prefix: tuple[str, ...],
        /,
        *,
        query: str | None = None,
        filter: dict[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
        refresh_ttl: bool | None = None,
    ) -> list[SearchItem]:
        """Items under ``namespace_prefix`` matching ``filter``, ranked by ``query`` if given."""
        op = SearchOp(namespace_prefix, filter, limit, offset, query, refresh_ttl)
        return cast(list[SearchItem], (await self.abatch([op]))[0])

    async def alist_namespaces(
        self,
        *,
        prefix: NamespacePath | None = None,
        suffix: NamespacePath | None = None,
        max_depth: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[tuple[str, ...]]:
        """Namespaces holding live items, sorted; ``"*"`` in prefix/suffix matches one label."""
        op = _list_op(prefix, suffix, max_depth, limit, offset)
        return cast(list[tuple[str, ...]], (await self.abatch([op]))[0])

    # ---- sync convenience methods --------------------------------------------------------

    def _sync_batch(self, ops: list[Op], async_name: str) -> list[Result]:
        """Run ``ops`` blocking; ``async_name`` names the ``a*`` method for error messages."""
        return self.batch(ops)

    def get(
        self, namespace: tuple[str, ...], key: str, *, refresh_ttl: bool | None = None
    ) -> Item | None:
        """Blocking twin of :meth:`aget`."""
        return cast(Item | None, self._sync_batch([GetOp(namespace, key, refresh_ttl)], "aget")[0])

    def put(
        self,
        namespace: tuple[str, ...],
        key: str,
        value: dict[str, Any] | None,
        index: Literal[False] | list[str] | None = None,
        *,
        ttl: float | NotProvided | None = NOT_PROVIDED,
    ) -> None:
        """Blocking twin of :meth:`aput`."""
        self._sync_batch([PutOp(namespace, key, value, index, ttl)], "aput")

    def delete(self, namespace: tuple[str, ...], key: str) -> None:
        """Blocking twin of :meth:`adelete`."""
        self._sync_batch([PutOp(namespace, key, None)], "adelete")

    def search(
        self,
        namespace_prefix: tuple[str, ...],
        /,
        *,
        query: str | None = None,
        filter: dict[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
        refresh_ttl: bool | None = None,
    ) -> list[SearchItem]:
        """Blocking twin of :meth:`asearch`."""
        op = SearchOp(namespace_prefix, filter, limit, offset, query, refresh_ttl)
        return cast(list[SearchItem], self._sync_batch([op], "asearch")[0])

    def list_namespaces(
        self,
        *,
        prefix: NamespacePath | None = None,
        suffix: NamespacePath | None = None,
        max_depth: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[tuple[str, ...]]:
        """Blocking twin of :meth:`alist_namespaces`."""
        op = _list_op(prefix, suffix, max_depth, limit, offset)
        return cast(list[tuple[str, ...]], self._sync_batch([op], "alist_namespaces")[0])

    # ---- lifecycle -----------------------------------------------------------------------

    @abstractmethod
    async def asweep_expired(self) -> int:
        """Delete expired items now (they are never returned anyway); return how many."""

    @abstractmethod
    def sweep_expired(self) -> int:
        """Blocking twin of :meth:`asweep_expired`."""

    async def aclose(self, give_up_after: float | None = None) -> None:
        """Release resources; later calls raise ``StoreClosedError``. ``give_up_after`` (seconds)
        bounds the wait for queued writes where a store has any (SqliteStore)."""
        self.close()

    @abstractmethod
    def close(self) -> None:
        """Blocking twin of :meth:`aclose`."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

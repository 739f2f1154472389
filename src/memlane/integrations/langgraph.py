"""Present any memlane store as a LangGraph ``BaseStore``.

LangGraph and LangChain code (``StateGraph.compile(store=...)``, ``create_agent(store=...)``,
``ToolRuntime.store``) talks to :class:`LangGraphStore`; memlane does the work underneath.
Ops, items and errors are translated at this boundary only, so the memlane store keeps its
own semantics (see ``docs/from-langgraph.md`` for the differences LangGraph users notice).

Needs the ``langgraph`` extra: ``pip install 'memlane[langgraph]'``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from langgraph.store.base import BaseStore as LGBaseStore
from langgraph.store.base import GetOp as LGGetOp
from langgraph.store.base import InvalidNamespaceError as LGInvalidNamespaceError
from langgraph.store.base import Item as LGItem
from langgraph.store.base import ListNamespacesOp as LGListNamespacesOp
from langgraph.store.base import NotProvided as LGNotProvided
from langgraph.store.base import PutOp as LGPutOp
from langgraph.store.base import SearchItem as LGSearchItem
from langgraph.store.base import SearchOp as LGSearchOp
from langgraph.store.base import TTLConfig as LGTTLConfig
from langgraph.store.base import validate_op_namespace

from memlane.store.base import BaseStore
from memlane.store.memory import InMemoryStore
from memlane.store.sqlite import SqliteStore
from memlane.store.types import (
    NOT_PROVIDED,
    GetOp,
    IndexConfig,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
)
from memlane.store.types import InvalidNamespaceError as MemlaneInvalidNamespaceError

__all__ = [
    "InvalidNamespaceError",
    "LangGraphStore",
    "from_langgraph_item",
    "index_config",
    "resolve_embed",
    "to_langgraph_item",
    "to_langgraph_result",
    "to_memlane_op",
    "ttl_config",
]


class InvalidNamespaceError(LGInvalidNamespaceError, MemlaneInvalidNamespaceError):
    """A bad namespace: catchable as LangGraph's error and as memlane's (both ValueErrors)."""


# ---- configuration: LangGraph's shapes to memlane's -------------------------------------


def resolve_embed(embed: Any) -> Any:
    """Turn a ``"provider:model"`` string into LangChain embeddings; pass anything else on.

    memlane itself accepts callables, async callables and ``Embeddings`` objects.
    """
    if not isinstance(embed, str):
        return embed
    try:
        from langchain.embeddings import init_embeddings
    except ImportError as exc:
        raise ImportError(
            f"embed={embed!r} names a model; resolving it needs LangChain "
            f"(pip install langchain and the provider's package), or pass an embeddings "
            f"object or a function instead"
        ) from exc
    return init_embeddings(embed)


def index_config(index: IndexConfig | Mapping[str, Any] | None) -> IndexConfig | None:
    """Accept LangGraph's index dict (``dims``, ``embed``, ``fields``) or an ``IndexConfig``."""
    if index is None or isinstance(index, IndexConfig):
        return index
    config = dict(index)
    if "embed" in config:
        config["embed"] = resolve_embed(config["embed"])
    return IndexConfig.coerce(config)


def ttl_config(ttl: TTLConfig | Mapping[str, Any] | None) -> TTLConfig | None:
    """Accept LangGraph's TTL dict. ``omit_expired`` is dropped: memlane always omits."""
    if ttl is None or isinstance(ttl, TTLConfig):
        return ttl
    config = {name: value for name, value in ttl.items() if name != "omit_expired"}
    return TTLConfig.coerce(config)


def _langgraph_ttl(config: TTLConfig | None) -> LGTTLConfig | None:
    """The memlane store's TTL settings in LangGraph's shape, so LangGraph's convenience
    methods resolve an omitted ``ttl`` to the store's default instead of "never"."""
    if config is None:
        return None
    result = LGTTLConfig(
        default_ttl=config.default_ttl,
        refresh_on_read=config.refresh_on_read,
        omit_expired=True,
    )
    if config.sweep_interval_minutes is not None:
        result["sweep_interval_minutes"] = int(config.sweep_interval_minutes)
    return result


# ---- items and ops, both ways -----------------------------------------------------------


def _item_fields(item: Item | LGItem) -> dict[str, Any]:
    """The fields both libraries' items share (their constructors take the same names)."""
    return {
        "namespace": item.namespace,
        "key": item.key,
        "value": item.value,
        "created_at": item.created_at,
        "updated_at": item.updated_at,
    }


def to_langgraph_item(item: Item) -> LGItem:
    """A memlane ``Item``/``SearchItem`` as LangGraph's (same fields, tz-aware datetimes)."""
    if isinstance(item, SearchItem):
        return LGSearchItem(**_item_fields(item), score=item.score)
    return LGItem(**_item_fields(item))


def from_langgraph_item(item: LGItem) -> Item:
    """A LangGraph ``Item``/``SearchItem`` as memlane's."""
    if isinstance(item, LGSearchItem):
        return SearchItem(**_item_fields(item), score=item.score)
    return Item(**_item_fields(item))


def to_memlane_op(op: Any) -> Op:
    """Translate one LangGraph op; memlane validates it when the batch runs."""
    if isinstance(op, LGPutOp):
        value = op.value
        if isinstance(value, Mapping) and not isinstance(value, dict):
            value = dict(value)  # LangGraph accepts any Mapping; memlane stores dicts
        ttl = NOT_PROVIDED if isinstance(op.ttl, LGNotProvided) else op.ttl
        return PutOp(op.namespace, op.key, value, op.index, ttl)
    if isinstance(op, LGGetOp):
        return GetOp(op.namespace, op.key, op.refresh_ttl)
    if isinstance(op, LGSearchOp):
        return SearchOp(
            op.namespace_prefix, op.filter, op.limit, op.offset, op.query, op.refresh_ttl
        )
    if isinstance(op, LGListNamespacesOp):
        conditions = None
        if op.match_conditions:
            conditions = tuple(
                MatchCondition(condition.match_type, tuple(condition.path))
                for condition in op.match_conditions
            )
        return ListNamespacesOp(conditions, op.max_depth, op.limit, op.offset)
    if isinstance(op, GetOp | PutOp | SearchOp | ListNamespacesOp):
        return op  # already memlane's: pass through
    raise TypeError(
        f"unknown store operation {op!r}: expected GetOp, PutOp, SearchOp or ListNamespacesOp"
    )


def to_langgraph_result(result: Result) -> Any:
    """A memlane result in LangGraph's types (items converted, namespaces as they are)."""
    if isinstance(result, Item):
        return to_langgraph_item(result)
    if isinstance(result, list):
        return [to_langgraph_item(entry) if isinstance(entry, Item) else entry
                for entry in result]
    return result


def _validate(ops: Iterable[Any]) -> list[Any]:
    """LangGraph's own label checks first, so callers see the errors LangGraph raises."""
    checked = list(ops)
    for op in checked:
        if isinstance(op, LGGetOp | LGPutOp | LGSearchOp | LGListNamespacesOp):
            try:
                validate_op_namespace(op)
            except LGInvalidNamespaceError as exc:
                raise InvalidNamespaceError(str(exc)) from exc
    return checked


def _convert(ops: Iterable[Any]) -> list[Op]:
    return [to_memlane_op(op) for op in _validate(ops)]


@contextmanager
def _mapped_errors() -> Iterator[None]:
    """Re-raise memlane's namespace error as one LangGraph users catch too."""
    try:
        yield
    except InvalidNamespaceError:
        raise
    except MemlaneInvalidNamespaceError as exc:
        raise InvalidNamespaceError(str(exc)) from exc


# ---- the adapter ------------------------------------------------------------------------


class LangGraphStore(LGBaseStore):
    """A LangGraph ``BaseStore`` backed by a memlane store.

    Every op type runs, sync and async, through the memlane store's ``batch``/``abatch``;
    results come back as LangGraph ``Item``/``SearchItem``. The adapter does not own the
    store: close the memlane store as usual (or use :meth:`sqlite` / :meth:`in_memory`).
    """

    supports_ttl = True

    def __init__(self, store: BaseStore) -> None:
        if not isinstance(store, BaseStore):
            raise TypeError(f"LangGraphStore wraps a memlane store, got {type(store).__name__}")
        self.store = store
        self.ttl_config = _langgraph_ttl(getattr(store, "ttl_config", None))
        config: IndexConfig | None = getattr(store, "index_config", None)
        self.index_config: dict[str, Any] | None = None
        if config is not None:
            self.index_config = {
                "dims": config.dims, "embed": config.embed, "fields": list(config.fields)
            }

    def __repr__(self) -> str:
        return f"LangGraphStore({self.store!r})"

    def batch(self, ops: Iterable[Any]) -> list[Any]:
        memlane_ops = _convert(ops)
        with _mapped_errors():
            results = self.store.batch(memlane_ops)
        return [to_langgraph_result(result) for result in results]

    async def abatch(self, ops: Iterable[Any]) -> list[Any]:
        memlane_ops = _convert(ops)
        with _mapped_errors():
            results = await self.store.abatch(memlane_ops)
        return [to_langgraph_result(result) for result in results]

    # ---- ready-made stores in LangGraph's configuration shapes ---------------------------

    @classmethod
    def in_memory(
        cls,
        *,
        index: IndexConfig | Mapping[str, Any] | None = None,
        ttl: TTLConfig | Mapping[str, Any] | None = None,
    ) -> LangGraphStore:
        """A memlane ``InMemoryStore`` behind the adapter (the drop-in for LangGraph's)."""
        return cls(InMemoryStore(index=index_config(index), ttl=ttl_config(ttl)))

    @classmethod
    @asynccontextmanager
    async def sqlite(
        cls,
        path: str | os.PathLike[str],
        *,
        index: IndexConfig | Mapping[str, Any] | None = None,
        ttl: TTLConfig | Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncIterator[LangGraphStore]:
        """A memlane ``SqliteStore`` at ``path`` behind the adapter; closed on exit."""
        async with SqliteStore.open(
            path, index=index_config(index), ttl=ttl_config(ttl), **options
        ) as store:
            yield cls(store)

    @classmethod
    @contextmanager
    def sqlite_sync(
        cls,
        path: str | os.PathLike[str],
        *,
        index: IndexConfig | Mapping[str, Any] | None = None,
        ttl: TTLConfig | Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Iterator[LangGraphStore]:
        """As :meth:`sqlite`, for scripts and sync graphs (the store runs its own loop)."""
        with SqliteStore.open_sync(
            path, index=index_config(index), ttl=ttl_config(ttl), **options
        ) as store:
            yield cls(store)

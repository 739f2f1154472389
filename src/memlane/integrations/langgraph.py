"""Present any memlane store as a LangGraph ``BaseStore``.

LangGraph and LangChain code (``StateGraph.compile(store=...)``, ``create_agent(store=...)``,
``ToolRuntime.store``) talks to :class:`LangGraphStore`; memlane does the work underneath.
Ops, items and errors are translated at this boundary only, so the memlane store keeps its
own semantics (see ``docs/from-langgraph.md`` for the differences LangGraph users notice).

Needs the ``langgraph`` extra: ``pip install 'memlane[langgraph]'``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
)
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
    StoreClosedError,
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


log = logging.getLogger(__name__)


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


# LangGraph's names for memlane's index keys (PostgresIndexConfig, SqliteIndexConfig).
_LANGGRAPH_INDEX_KEYS = {"text_fields": "fields", "distance_type": "distance"}
_ANN_KINDS = ("hnsw", "ivfflat", "flat")
_VECTOR_TYPES = ("vector", "halfvec")


def index_config(index: IndexConfig | Mapping[str, Any] | None) -> IndexConfig | None:
    """Accept LangGraph's index dict or an ``IndexConfig``.

    LangGraph's keys: ``dims``, ``embed``, ``fields`` (or ``text_fields``; a single string
    is one path), ``distance_type`` (``"cosine"``, ``"inner_product"``, ``"l2"``: memlane's
    ``distance``) and ``ann_index_config``, which is checked and ignored: LangGraph's
    Postgres store builds that pgvector index but its search query never uses it (it orders
    by a score expression under filters, so Postgres scans), so its results are exact, as
    memlane's default search is. memlane's own approximate index is ``ann``.
    """
    if index is None or isinstance(index, IndexConfig):
        return index
    config = dict(index)
    for theirs, ours in _LANGGRAPH_INDEX_KEYS.items():
        if theirs in config:
            value = config.pop(theirs)
            if config.get(ours, value) != value:
                raise ValueError(
                    f"index config gives both {theirs}={value!r} and {ours}={config[ours]!r}"
                )
            config[ours] = value
    if isinstance(config.get("fields"), str):
        config["fields"] = [config["fields"]]
    if "ann_index_config" in config:
        _check_ann_index_config(config.pop("ann_index_config"))
    if "embed" in config:
        config["embed"] = resolve_embed(config["embed"])
    return IndexConfig.coerce(config)


def _check_ann_index_config(ann: Any) -> None:
    """Refuse what LangGraph's Postgres store refuses (a kind or vector type it lacks)."""
    if not isinstance(ann, Mapping):
        raise ValueError(f"ann_index_config must be a dict such as {{'kind': 'hnsw'}}, got {ann!r}")
    if ann.get("kind", "hnsw") not in _ANN_KINDS:
        raise ValueError(f"ann_index_config kind must be one of {list(_ANN_KINDS)}, got "
                         f"{ann['kind']!r}")
    if ann.get("vector_type", "vector") not in _VECTOR_TYPES:
        raise ValueError(f"ann_index_config vector_type must be one of {list(_VECTOR_TYPES)}, "
                         f"got {ann['vector_type']!r}")


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
                "dims": config.dims,
                "embed": config.embed,
                "fields": list(config.fields),
                "distance_type": config.distance,
            }
        self._sweeper: _Sweeper | None = None

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

    # ---- LangGraph's lifecycle methods ---------------------------------------------------
    #
    # LangGraph's sync stores (PostgresStore, SqliteStore) and async ones (AsyncPostgresStore,
    # AsyncSqliteStore) spell these alike, blocking in one and ``async`` in the other. One
    # adapter serves both: called with an event loop running in this thread, each returns an
    # awaitable (``await store.setup()``); otherwise it does the work and returns the result.

    def setup(self) -> Any:
        """Nothing to migrate: a memlane store is ready once open. Kept for code that calls
        ``store.setup()`` or ``await store.setup()``."""
        return _Done(None) if _in_event_loop() else None

    def sweep_ttl(self) -> Any:
        """Delete expired items now; return how many (``await`` it in async code). memlane
        never returns expired items, so this only frees their space."""
        if _in_event_loop():
            return self.store.asweep_expired()
        return self.store.sweep_expired()

    def start_ttl_sweeper(self, sweep_interval_minutes: float | None = None) -> Any:
        """Sweep every ``sweep_interval_minutes`` (else the TTL config's, else 5) until
        :meth:`stop_ttl_sweeper`. Sync: returns a ``concurrent.futures.Future`` (cancel it to
        stop); async: ``await`` it for an ``asyncio.Task``. Without a TTL config nothing runs
        and the result is already done, as in LangGraph. A running sweeper is returned again.

        The memlane store also sweeps by itself when its ``TTLConfig`` sets
        ``sweep_interval_minutes``; both are harmless together.
        """
        minutes = self._sweep_minutes(sweep_interval_minutes)
        if _in_event_loop():
            return self._astart_sweeper(minutes)
        if self._sweeper is None or self._sweeper.finished():
            self._sweeper = _Sweeper.thread(self.store, minutes)
        return self._sweeper.handle

    async def _astart_sweeper(self, minutes: float | None) -> asyncio.Task[None]:
        if self._sweeper is None or self._sweeper.finished():
            self._sweeper = _Sweeper.task(self.store, minutes)
        handle = self._sweeper.handle
        if not isinstance(handle, asyncio.Task):
            raise RuntimeError("a TTL sweeper thread is running; stop it first")
        return handle

    def stop_ttl_sweeper(self, timeout: float | None = None) -> Any:
        """Stop the sweeper; True once it stopped (or none ran), False if ``timeout`` seconds
        passed first. ``await`` it in async code; a sweeper task stops from its own loop."""
        sweeper = self._sweeper
        if _in_event_loop():
            return _Done(True) if sweeper is None else sweeper.astop(timeout)
        return True if sweeper is None else sweeper.stop(timeout)

    def _sweep_minutes(self, given: float | None) -> float | None:
        """The interval, checked as ``TTLConfig`` checks it; None: no TTL, nothing to run."""
        config: TTLConfig | None = getattr(self.store, "ttl_config", None)
        if config is None:
            return None
        minutes = given or config.sweep_interval_minutes or 5
        interval = TTLConfig(sweep_interval_minutes=minutes).sweep_interval_minutes
        assert interval is not None
        return interval

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


# ---- the TTL sweeper behind start_ttl_sweeper ---------------------------------------------


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class _Done:
    """An awaitable that is already finished: dropping it unawaited warns about nothing."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, Any]:
        return self.value
        yield  # a generator that returns at once


class _Sweeper:
    """A loop calling the store's sweep every ``minutes`` until stopped: a daemon thread
    (``handle``: a ``concurrent.futures.Future``) or a task (``handle``: the task)."""

    def __init__(self, handle: concurrent.futures.Future[None] | asyncio.Task[None]) -> None:
        self.handle = handle
        self._stop = threading.Event()
        self._astop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def thread(cls, store: BaseStore, minutes: float | None) -> _Sweeper:
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        sweeper = cls(future)
        if minutes is None:
            future.set_result(None)
            return sweeper
        future.add_done_callback(lambda done: sweeper._stop.set())  # cancelling it stops
        sweeper._thread = threading.Thread(
            target=sweeper._run_thread, args=(store, minutes), name="memlane-lg-ttl-sweeper",
            daemon=True,
        )
        sweeper._thread.start()
        return sweeper

    def _run_thread(self, store: BaseStore, minutes: float) -> None:
        try:
            while not self._stop.wait(minutes * 60):
                if not _swept(store.sweep_expired):
                    break
        finally:
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                assert isinstance(self.handle, concurrent.futures.Future)
                self.handle.set_result(None)

    @classmethod
    def task(cls, store: BaseStore, minutes: float | None) -> _Sweeper:
        stop = asyncio.Event()

        async def run() -> None:
            while minutes is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=minutes * 60)
                    return
                if not await _aswept(store.asweep_expired):
                    return

        sweeper = cls(asyncio.get_running_loop().create_task(run(), name="memlane-lg-ttl-sweeper"))
        sweeper._astop = stop
        return sweeper

    def finished(self) -> bool:
        return self.handle.done()

    def stop(self, wait: float | None) -> bool:
        """Blocking: stop a sweeper thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(wait)
            return not self._thread.is_alive()
        return self.handle.done()  # a task stops from its loop: see astop

    async def astop(self, wait: float | None) -> bool:
        """Stop a sweeper task (or thread, waited for in a worker thread)."""
        if self._astop is None:
            return await asyncio.to_thread(self.stop, wait)
        self._astop.set()
        assert isinstance(self.handle, asyncio.Task)
        await asyncio.wait({self.handle}, timeout=wait)
        return self.handle.done()


def _swept(sweep: Callable[[], int]) -> bool:
    """One sweep; False once the store is closed. A failed sweep is retried next time."""
    try:
        sweep()
    except StoreClosedError:
        return False
    except Exception:
        log.exception("memlane TTL sweep failed")
    return True


async def _aswept(sweep: Callable[[], Awaitable[int]]) -> bool:
    try:
        await sweep()
    except StoreClosedError:
        return False
    except Exception:
        log.exception("memlane TTL sweep failed")
    return True

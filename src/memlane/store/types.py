"""The store's public value types: items, the four operations, configs and errors.

The shapes follow LangGraph's store so that code written against it runs on memlane with
only its imports changed; the semantics are the tighter ones of CONTRACT.md.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Literal, NamedTuple, Self, TypeAlias

__all__ = [
    "NOT_PROVIDED",
    "GetOp",
    "ImportItem",
    "IndexConfig",
    "IndexConfigError",
    "InvalidNamespaceError",
    "Item",
    "ListNamespacesOp",
    "MatchCondition",
    "NamespacePath",
    "NotProvided",
    "Op",
    "PutOp",
    "Result",
    "SearchItem",
    "SearchOp",
    "StoreClosedError",
    "TTLConfig",
]


class NotProvided(Enum):
    """Sentinel type: tells "argument omitted" apart from an explicit ``None``."""

    NOT_PROVIDED = "NOT_PROVIDED"

    def __repr__(self) -> str:
        return "NOT_PROVIDED"


NOT_PROVIDED = NotProvided.NOT_PROVIDED


class InvalidNamespaceError(ValueError):
    """A namespace is not a non-empty tuple of non-empty, dot-free string labels."""


class IndexConfigError(ValueError):
    """A store's index configuration does not fit the file, or a query needs an index the
    store was opened without (``index=False``)."""


class StoreClosedError(RuntimeError):
    """The store was closed; it accepts no more calls."""


# What a store reads back for an item: value, key, namespace, created_at, updated_at.
ItemFields: TypeAlias = tuple[dict[str, Any], str, tuple[str, ...], datetime, datetime]


class Item:
    """A stored document: its namespace, key, JSON value and timestamps (UTC)."""

    __slots__ = ("created_at", "key", "namespace", "updated_at", "value")

    def __init__(
        self,
        *,
        value: dict[str, Any],
        key: str,
        namespace: tuple[str, ...],
        created_at: datetime,
        updated_at: datetime,
    ) -> None:
        self.value = value
        self.key = key
        self.namespace = tuple(namespace)
        self.created_at = created_at
        self.updated_at = updated_at

    @classmethod
    def _trusted(
        cls,
        value: dict[str, Any],
        key: str,
        namespace: tuple[str, ...],
        created_at: datetime,
        updated_at: datetime,
    ) -> Self:
        """Build from values a store already checked (skips the keyword-argument path)."""
        item = cls.__new__(cls)
        item.value, item.key, item.namespace = value, key, namespace
        item.created_at, item.updated_at = created_at, updated_at
        return item

    def dict(self) -> dict[str, Any]:
        """A plain-dict form, timestamps as ISO 8601 strings (as LangGraph's ``Item.dict``)."""
        return {
            "namespace": list(self.namespace),
            "key": self.key,
            "value": self.value,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Item):
            return NotImplemented
        return (
            self.namespace == other.namespace
            and self.key == other.key
            and self.value == other.value
            and self.created_at == other.created_at
            and self.updated_at == other.updated_at
        )

    def __hash__(self) -> int:
        return hash((self.namespace, self.key))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(namespace={self.namespace!r}, key={self.key!r}, "
            f"value={self.value!r}, created_at={self.created_at.isoformat()!r}, "
            f"updated_at={self.updated_at.isoformat()!r})"
        )


class SearchItem(Item):
    """An item returned by search, with its relevance ``score`` (``None`` without a query)."""

    __slots__ = ("score",)

    def __init__(
        self,
        *,
        value: dict[str, Any],
        key: str,
        namespace: tuple[str, ...],
        created_at: datetime,
        updated_at: datetime,
        score: float | None = None,
    ) -> None:
        super().__init__(
            value=value, key=key, namespace=namespace, created_at=created_at, updated_at=updated_at
        )
        self.score = score

    @classmethod
    def _scored(cls, fields: ItemFields, score: float | None) -> SearchItem:
        """From a store's trusted ``(value, key, namespace, created_at, updated_at)``."""
        found = cls._trusted(*fields)
        found.score = score
        return found

    def dict(self) -> dict[str, Any]:
        result = super().dict()
        result["score"] = self.score
        return result

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SearchItem):
            return NotImplemented
        return super().__eq__(other) and self.score == other.score

    __hash__ = Item.__hash__

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, score={self.score!r})"


NamespacePath: TypeAlias = tuple[str, ...]
"""A namespace pattern for listing: labels, where ``"*"`` matches any one label."""


class MatchCondition(NamedTuple):
    """Keeps namespaces whose first (``prefix``) or last (``suffix``) labels match ``path``."""

    match_type: Literal["prefix", "suffix"]
    path: NamespacePath


class GetOp(NamedTuple):
    """Read one item by namespace and key."""

    namespace: tuple[str, ...]
    key: str
    refresh_ttl: bool | None = None


class PutOp(NamedTuple):
    """Store (``value`` a dict) or delete (``value`` None) one item.

    ``index``: ``None`` uses the store's fields, ``False`` stores no vector, a list of paths
    overrides the fields for this item. ``ttl`` in minutes: omitted means the store's
    default, ``None`` never expires.
    """

    namespace: tuple[str, ...]
    key: str
    value: dict[str, Any] | None
    index: Literal[False] | list[str] | None = None  # type: ignore[assignment]  # shadows tuple.index, as in LangGraph
    ttl: float | NotProvided | None = NOT_PROVIDED


class SearchOp(NamedTuple):
    """Find items under a namespace prefix by filter and, optionally, by meaning."""

    namespace_prefix: tuple[str, ...]
    filter: dict[str, Any] | None = None
    limit: int = 10
    offset: int = 0
    query: str | None = None
    refresh_ttl: bool | None = None


class ListNamespacesOp(NamedTuple):
    """List the namespaces that hold live items, optionally matched and truncated."""

    match_conditions: tuple[MatchCondition, ...] | None = None
    max_depth: int | None = None
    limit: int = 100
    offset: int = 0


class ImportItem(NamedTuple):
    """An item brought in from elsewhere with its own timestamps (``SqliteStore.aimport``).

    Datetimes must be timezone-aware. ``expires_at`` None with a ``ttl_minutes`` means the
    TTL starts at import; both None means the item never expires.
    """

    namespace: tuple[str, ...]
    key: str
    value: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    ttl_minutes: float | None = None
    expires_at: datetime | None = None


Op: TypeAlias = GetOp | PutOp | SearchOp | ListNamespacesOp
Result: TypeAlias = Item | list[SearchItem] | list[tuple[str, ...]] | None


EmbedFunction: TypeAlias = Callable[[Sequence[str]], Any]
Distance: TypeAlias = Literal["cosine", "inner_product", "l2"]
DISTANCES: tuple[str, ...] = ("cosine", "inner_product", "l2")  # as vectors/scoring.py


@dataclass(frozen=True)
class IndexConfig:
    """How items are embedded for semantic search.

    ``embed``: a sync or async callable ``texts -> vectors``, an object with
    ``embed_documents``/``embed_query`` (or their ``aembed_*`` twins), or
    ``HashingEmbeddings(dims)``. ``fields``: JSON paths whose text is embedded, one vector per
    extracted text; ``["$"]`` (the default) embeds the whole value as JSON. ``ann``: optional
    approximate-index settings; exact search is the default. ``distance``: how scores are
    computed, as LangGraph's Postgres store does: ``"cosine"`` (the default: vectors are
    L2-normalised, the score is the cosine similarity), ``"inner_product"`` (the raw
    vectors' dot product) or ``"l2"`` (minus the Euclidean distance); higher is better.
    ``embed_timeout``: seconds one async embed call may take before its callers fail with
    ``EmbeddingTimeoutError`` (``None``: no limit).
    """

    dims: int
    embed: Any
    fields: tuple[str, ...] = ("$",)
    ann: dict[str, Any] | None = None
    distance: Distance = "cosine"
    embed_timeout: float | None = 60.0

    def __post_init__(self) -> None:
        if isinstance(self.dims, bool) or not isinstance(self.dims, int) or self.dims <= 0:
            raise ValueError(f"IndexConfig.dims must be a positive int, got {self.dims!r}")
        if self.embed is None:
            raise ValueError("IndexConfig.embed is required: a callable or an embeddings object")
        fields: Any = self.fields
        if fields is None:
            fields = ("$",)
        if isinstance(fields, str) or not isinstance(fields, Sequence):
            raise ValueError(
                f"IndexConfig.fields must be a list of JSON paths such as ['text'], got {fields!r}"
            )
        if not fields:
            raise ValueError("IndexConfig.fields must name at least one path (use ['$'])")
        for path in fields:
            if not isinstance(path, str) or not path:
                raise ValueError(f"IndexConfig.fields holds an invalid path {path!r}")
        object.__setattr__(self, "fields", tuple(fields))
        if self.distance not in DISTANCES:
            raise ValueError(
                f"IndexConfig.distance must be one of {list(DISTANCES)}, got {self.distance!r}"
            )
        if self.embed_timeout is not None:
            timeout = self.embed_timeout
            if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not (
                0 < timeout < math.inf
            ):
                raise ValueError(
                    f"IndexConfig.embed_timeout must be a positive number of seconds or None, "
                    f"got {timeout!r}"
                )
        if self.ann is not None:
            if not isinstance(self.ann, dict):
                raise ValueError(f"IndexConfig.ann must be a dict or None, got {self.ann!r}")
            from memlane.vectors.ann import AnnConfig  # store uses vectors, never the reverse

            AnnConfig.parse(self.ann)  # a ValueError naming the bad key or value

    @classmethod
    def coerce(cls, config: IndexConfig | dict[str, Any] | None) -> IndexConfig | None:
        """Accept an ``IndexConfig``, LangGraph's dict shape, or ``None``."""
        if config is None or isinstance(config, IndexConfig):
            return config
        if not isinstance(config, dict):
            raise TypeError(
                f"index must be an IndexConfig or a dict with 'dims' and 'embed', got {config!r}"
            )
        unknown = set(config) - {"dims", "embed", "fields", "ann", "distance", "embed_timeout"}
        if unknown:
            raise ValueError(f"index config has unknown keys {sorted(unknown)}")
        if "dims" not in config or "embed" not in config:
            raise ValueError("index config needs both 'dims' and 'embed'")
        return cls(
            dims=config["dims"],
            embed=config["embed"],
            fields=config.get("fields") or ("$",),
            ann=config.get("ann"),
            distance=config.get("distance", "cosine"),
            embed_timeout=config.get("embed_timeout", 60.0),
        )


@dataclass(frozen=True)
class TTLConfig:
    """Time-to-live settings, in minutes (fractions allowed).

    ``default_ttl``: applied to puts that omit ``ttl`` (``None``: never expire).
    ``refresh_on_read``: reads push expiry forward unless ``refresh_ttl=False`` is passed.
    ``sweep_interval_minutes``: how often the store deletes expired items (``None``: never
    sweep; expired items are still never returned).
    """

    default_ttl: float | None = None
    refresh_on_read: bool = True
    sweep_interval_minutes: float | None = None

    def __post_init__(self) -> None:
        if self.default_ttl is not None:
            validate_ttl_minutes(self.default_ttl, "TTLConfig.default_ttl")
        if not isinstance(self.refresh_on_read, bool):
            raise ValueError(
                f"TTLConfig.refresh_on_read must be a bool, got {self.refresh_on_read!r}"
            )
        if self.sweep_interval_minutes is not None:
            interval = validate_ttl_minutes(
                self.sweep_interval_minutes, "TTLConfig.sweep_interval_minutes"
            )
            if interval * 60 > threading.TIMEOUT_MAX:
                raise ValueError(
                    f"TTLConfig.sweep_interval_minutes {interval!r} is longer than a timer can "
                    f"wait ({threading.TIMEOUT_MAX / 60:.0f} minutes); use None to never sweep"
                )

    @classmethod
    def coerce(cls, config: TTLConfig | dict[str, Any] | None) -> TTLConfig | None:
        """Accept a ``TTLConfig``, LangGraph's dict shape, or ``None``."""
        if config is None or isinstance(config, TTLConfig):
            return config
        if not isinstance(config, dict):
            raise TypeError(f"ttl must be a TTLConfig or a dict, got {config!r}")
        unknown = set(config) - {"default_ttl", "refresh_on_read", "sweep_interval_minutes"}
        if unknown:
            raise ValueError(f"ttl config has unknown keys {sorted(unknown)}")
        return cls(**config)


def validate_ttl_minutes(ttl: object, what: str = "ttl") -> float:
    """Return ``ttl`` as float minutes, or raise naming the bad value."""
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise ValueError(f"{what} must be a positive number of minutes or None, got {ttl!r}")
    try:
        value = float(ttl)
    except OverflowError:
        raise ValueError(
            f"{what} {ttl!r:.40} is too large for a float; use None to never expire"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a positive, finite number of minutes, got {ttl!r}")
    return value


def check_unicode(
    text: str, what: str, error: type[ValueError] = ValueError
) -> str:
    """Return ``text``, or refuse a lone surrogate (``"\\ud800"``, what an unpaired JSON escape
    decodes to): UTF-8 cannot hold one, so it would fail later, inside a writer batch. And
    refuse U+0000 (NUL), on every backend alike: PostgreSQL's text and jsonb cannot hold
    it, and one backend refusing what another keeps would break the shared contract."""
    if "\x00" in text:
        raise error(
            f"{what} {text!r:.80} holds U+0000 (NUL) at index {text.index(chr(0))}; memlane "
            f"refuses NUL in every store (PostgreSQL cannot store it): remove or replace it"
        )
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise error(
                f"{what} {text!r:.80} holds a lone surrogate {text[exc.start]!r} at index "
                f"{exc.start}; text must be valid Unicode (an escape such as \\ud83d needs "
                f"its low half)"
            ) from None
    return text

"""Validate and normalise operations at the call site, before any backend sees them.

Every backend receives already-checked ops: namespaces are tuples, keys are strings, values
are private copies serialised once with orjson, filters are parsed, TTLs resolved. A bad
argument raises here, in the caller's task, naming the bad value; nothing is queued.
"""

from __future__ import annotations

import enum
import math
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson

from memlane.store.filters import Filter, parse_filter
from memlane.store.namespaces import (
    validate_key,
    validate_limit_offset,
    validate_list_namespaces_args,
    validate_namespace,
    validate_namespace_prefix,
)
from memlane.store.paths import JsonPath, compile_path
from memlane.store.timestamps import to_micros
from memlane.store.types import (
    NOT_PROVIDED,
    GetOp,
    ImportItem,
    IndexConfigError,
    ListNamespacesOp,
    MatchCondition,
    NotProvided,
    Op,
    PutOp,
    SearchOp,
    TTLConfig,
    check_unicode,
    validate_ttl_minutes,
)

__all__ = [
    "PreparedGet",
    "PreparedList",
    "PreparedOp",
    "PreparedPut",
    "PreparedSearch",
    "encode_value",
    "prepare_get",
    "prepare_imports",
    "prepare_op",
    "prepare_ops",
    "prepare_put",
]


@dataclass(slots=True, frozen=True)
class PreparedGet:
    namespace: tuple[str, ...]
    key: str
    refresh_ttl: bool


@dataclass(slots=True)
class PreparedPut:
    """A checked put (``encoded`` set) or delete (``encoded`` None).

    ``index``: ``False`` no vectors, ``None`` the store's fields, else these paths.
    ``ttl_minutes``: resolved against the store's default; ``None`` never expires.
    Not frozen only because frozen construction costs a microsecond per put; never mutated.
    """

    namespace: tuple[str, ...]
    key: str
    encoded: bytes | None
    index: Literal[False] | tuple[JsonPath, ...] | None
    ttl_minutes: float | None
    imported: tuple[int, int, float | None] | None = None  # created, updated (us), expires (s)

    @property
    def is_delete(self) -> bool:
        return self.encoded is None

    def value(self) -> dict[str, Any]:
        """A fresh copy of the value (never shared with the caller or the store)."""
        assert self.encoded is not None, "a delete has no value"
        result: dict[str, Any] = orjson.loads(self.encoded)
        return result


@dataclass(slots=True, frozen=True)
class PreparedSearch:
    namespace_prefix: tuple[str, ...]
    filter: Filter
    limit: int
    offset: int
    query: str | None
    refresh_ttl: bool


@dataclass(slots=True, frozen=True)
class PreparedList:
    conditions: tuple[MatchCondition, ...]
    max_depth: int | None
    limit: int
    offset: int


PreparedOp = PreparedGet | PreparedPut | PreparedSearch | PreparedList


_JSON_SCALARS = (str, int, bool, type(None), uuid.UUID, enum.Enum)


def _check_json(value: Any, where: str) -> None:
    """Refuse anything JSON cannot hold faithfully (NaN, inf, sets, objects, non-str keys)."""
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            check_unicode(node, path)
            continue
        if isinstance(node, _JSON_SCALARS):
            continue
        if isinstance(node, float):
            if not math.isfinite(node):
                raise ValueError(f"{path} is {node!r}; JSON cannot hold NaN or infinity")
            continue
        if isinstance(node, dict):
            for child_key, child in node.items():
                if not isinstance(child_key, str):
                    raise TypeError(
                        f"{path} has a key {child_key!r} of type {type(child_key).__name__}; "
                        f"JSON object keys must be str"
                    )
                check_unicode(child_key, f"{path} key")
                stack.append((child, f"{path}[{child_key!r}]"))
            continue
        if isinstance(node, list | tuple):
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(node))
            continue
        raise TypeError(
            f"{path} is a {type(node).__name__} ({node!r:.60}); values may hold only JSON "
            f"types (dict, list, str, int, float, bool, None): convert it first"
        )


# orjson would turn these into strings or dicts; memlane refuses them instead (the walker
# then names where they are). UUIDs and enums are stored in their JSON forms.
_STRICT = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def encode_value(value: Any) -> bytes:
    """Check that ``value`` is a JSON object and serialise it once (orjson).

    orjson refuses what JSON cannot hold, except NaN and infinity, which it writes as
    ``null``, and NUL, which it escapes: only a value whose JSON holds ``null`` or
    ``\\u0000`` is walked to look for them.
    """
    if not isinstance(value, dict):
        raise TypeError(
            f"value must be a dict (a JSON object) or None to delete, "
            f"got {type(value).__name__} {value!r:.60}"
        )
    try:
        encoded = orjson.dumps(value, option=_STRICT)
    except orjson.JSONEncodeError as exc:
        _check_json(value, "value")  # raises naming the culprit, when it can find it
        raise ValueError(f"value cannot be stored as JSON: {exc}") from None
    if b"null" in encoded or b"\\u0000" in encoded:  # NaN, infinity or NUL may be in it
        _check_json(value, "value")
    # orjson's bytes keep its whole output buffer (4 KB for a 50-byte value, 8 KB for 1 KB):
    # an exact-size copy, since the store keeps these bytes for as long as the item lives.
    return memoryview(encoded).tobytes()


def _resolve_ttl(ttl: float | NotProvided | None, config: TTLConfig | None) -> float | None:
    if ttl is NOT_PROVIDED:
        return config.default_ttl if config is not None else None
    if ttl is None:
        return None
    return validate_ttl_minutes(ttl)


def _prepare_index(index: Any) -> Literal[False] | tuple[JsonPath, ...] | None:
    if index is None or index is False:
        return index
    if index is True:
        return None
    if isinstance(index, str) or not isinstance(index, list | tuple):
        raise ValueError(
            f"index must be False, None, or a list of JSON paths such as ['text'], got {index!r}"
        )
    return tuple(compile_path(path) for path in index)


def _check_refresh(refresh_ttl: Any) -> None:
    if refresh_ttl is not None and not isinstance(refresh_ttl, bool):
        raise ValueError(f"refresh_ttl must be True, False or None, got {refresh_ttl!r}")


# A namespace and key together, in UTF-8 bytes: PostgreSQL's btree holds an index entry of
# at most ~2,700 bytes, and every store refuses what one of them cannot keep.
MAX_KEY_BYTES = 2_048


def _check_key_size(namespace: tuple[str, ...], key: str) -> None:
    """The namespace as stored (labels joined with ".") and the key, in UTF-8 bytes."""
    chars = len(key) + sum(map(len, namespace)) + len(namespace) - 1
    if chars * 4 <= MAX_KEY_BYTES:  # cannot be over, whatever the characters
        return
    size = len(key.encode()) + sum(len(label.encode()) for label in namespace) + len(namespace) - 1
    if size > MAX_KEY_BYTES:
        raise ValueError(
            f"the namespace and key of a put take {size:,} bytes in UTF-8 (key {key!r:.40}); "
            f"every store keeps at most {MAX_KEY_BYTES:,} together (PostgreSQL's index "
            f"limit): shorten the key or the labels"
        )


def prepare_put(
    namespace: Any,
    key: Any,
    value: Any,
    index: Any,
    ttl: float | NotProvided | None,
    ttl_config: TTLConfig | None,
) -> PreparedPut:
    """Check one put or delete (``value`` None)."""
    checked_namespace = validate_namespace(namespace)
    checked_key = validate_key(key)
    _check_key_size(checked_namespace, checked_key)
    if value is None:
        return PreparedPut(checked_namespace, checked_key, None, False, None)
    return PreparedPut(
        checked_namespace,
        checked_key,
        encode_value(value),
        _prepare_index(index),
        _resolve_ttl(ttl, ttl_config),
    )


def prepare_get(
    namespace: Any, key: Any, refresh_ttl: Any, ttl_config: TTLConfig | None
) -> PreparedGet:
    """Check one get; ``refresh_ttl=None`` follows the store's ``refresh_on_read``."""
    _check_refresh(refresh_ttl)
    if refresh_ttl is None:
        refresh_ttl = ttl_config.refresh_on_read if ttl_config is not None else True
    return PreparedGet(validate_namespace_lookup(namespace), validate_key(key), refresh_ttl)


QUERY_NEEDS_INDEX = (
    "query= needs an index, and this store was opened with index=False; open it with its "
    "index (IndexConfig) to search by meaning, or search with filters only (query=None)"
)


def prepare_op(
    op: Op, ttl_config: TTLConfig | None = None, *, queries: bool = True
) -> PreparedOp:
    """Check one op and return its normalised form; raise naming the bad value.

    ``queries=False`` (a store opened with ``index=False``) refuses a non-empty ``query``
    rather than ignore it: the file has an index, and silence would lose its meaning.
    """
    refresh_default = ttl_config.refresh_on_read if ttl_config is not None else True
    if isinstance(op, PutOp):
        return prepare_put(op.namespace, op.key, op.value, op.index, op.ttl, ttl_config)
    if isinstance(op, GetOp):
        return prepare_get(op.namespace, op.key, op.refresh_ttl, ttl_config)
    if isinstance(op, SearchOp):
        _check_refresh(op.refresh_ttl)
        validate_limit_offset(op.limit, op.offset)
        if op.query is not None and not isinstance(op.query, str):
            raise ValueError(f"query must be a str or None, got {op.query!r}")
        if op.query:
            check_unicode(op.query, "query")
            if not queries:
                raise IndexConfigError(QUERY_NEEDS_INDEX)
        refresh = refresh_default if op.refresh_ttl is None else op.refresh_ttl
        return PreparedSearch(
            validate_namespace_prefix(op.namespace_prefix),
            parse_filter(op.filter),
            op.limit,
            op.offset,
            None if op.query == "" else op.query,
            refresh,
        )
    if isinstance(op, ListNamespacesOp):
        conditions = validate_list_namespaces_args(
            op.match_conditions, op.max_depth, op.limit, op.offset
        )
        return PreparedList(conditions, op.max_depth, op.limit, op.offset)
    raise TypeError(f"unknown store operation {op!r}: expected GetOp, PutOp, SearchOp or "
                    f"ListNamespacesOp")


def validate_namespace_lookup(namespace: Any) -> tuple[str, ...]:
    """Reads accept any tuple of string labels; a namespace that cannot exist finds nothing."""
    if isinstance(namespace, str) or not isinstance(namespace, tuple | list) or not namespace:
        raise ValueError(f"namespace must be a non-empty tuple of string labels, got {namespace!r}")
    for label in namespace:
        if not isinstance(label, str):
            raise ValueError(f"namespace labels must be strings, got {namespace!r}")
        check_unicode(label, "namespace label")
    return namespace if type(namespace) is tuple else tuple(namespace)


def prepare_ops(
    ops: Any, ttl_config: TTLConfig | None = None, *, queries: bool = True
) -> list[PreparedOp]:
    """Check a whole batch before any of it runs, so a bad op applies nothing."""
    return [prepare_op(op, ttl_config, queries=queries) for op in as_op_list(ops)]


def as_op_list(ops: Any) -> list[Any]:
    """``ops`` as a list (a generator is read once), refusing a dict or a string."""
    if isinstance(ops, list):
        return ops
    if isinstance(ops, dict | str | bytes):
        raise TypeError(f"ops must be an iterable of store operations, got {ops!r:.60}")
    try:
        return list(ops)
    except TypeError:
        raise TypeError(f"ops must be an iterable of store operations, got {ops!r:.60}") from None


def prepare_imports(items: list[ImportItem], now: float) -> list[PreparedPut]:
    """Check and serialise imported items, keeping their own timestamps and expiry."""
    puts: list[PreparedPut] = []
    for item in items:
        put = prepare_put(item.namespace, item.key, item.value, None, item.ttl_minutes, None)
        created, updated = _aware_micros(item.created_at), _aware_micros(item.updated_at)
        if item.expires_at is not None:
            expires: float | None = _aware_micros(item.expires_at) / 1_000_000
        elif item.ttl_minutes is not None:
            expires = now + float(item.ttl_minutes) * 60
        else:
            expires = None
        put.imported = (created, updated, expires)
        puts.append(put)
    return puts


def _aware_micros(moment: datetime) -> int:
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise ValueError(f"imported timestamps must be timezone-aware datetimes, got {moment!r}")
    return to_micros(moment)

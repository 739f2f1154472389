"""One memory in transit, and the reason an item was skipped."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from memlane.store.types import ImportItem

__all__ = ["EXPORT_FORMAT", "MissingDependencyError", "Record", "Skipped", "decode_row"]


EXPORT_FORMAT = 1
"""Version of the JSONL export; its header line is ``{"memlane_export": 1, ...}``."""


class MissingDependencyError(ImportError):
    """A source needs an optional package that is not installed."""


# ---- records -----------------------------------------------------------------------------


class Record(ImportItem):
    """One item as read from a source, with the timestamps and expiry to keep. It is an
    :class:`~memlane.store.types.ImportItem`, so ``SqliteStore.aimport`` takes it as is."""

    __slots__ = ()

    def to_json(self) -> dict[str, Any]:
        """The JSONL form: LangGraph's ``Item.dict()`` plus the TTL fields."""
        return {
            "namespace": list(self.namespace),
            "key": self.key,
            "value": self.value,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "ttl_minutes": self.ttl_minutes,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }


@dataclass(slots=True, frozen=True)
class Skipped:
    """An item that was not copied, and why."""

    namespace: tuple[str, ...] | str
    key: str
    reason: str


def _utc(value: Any, what: str) -> datetime:
    """A timestamp from a source (datetime or ISO text; naive means UTC) as aware UTC."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value.strip())
    else:
        raise ValueError(f"{what} is {value!r}, not a timestamp")
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def decode_row(
    namespace: tuple[str, ...],
    key: Any,
    value: Any,
    created_at: Any,
    updated_at: Any,
    ttl_minutes: Any,
    expires_at: Any,
) -> Record | Skipped:
    """One source row as a :class:`Record`, or as :class:`Skipped` naming what is wrong."""
    key_text = str(key)
    try:
        if isinstance(value, bytes | bytearray | memoryview | str):
            value = orjson.loads(bytes(value) if not isinstance(value, str) else value)
        if not isinstance(value, dict):
            return Skipped(
                namespace, key_text, f"the value is a {type(value).__name__}, not a JSON object"
            )
        created = _utc(created_at, "created_at")
        updated = _utc(updated_at, "updated_at") if updated_at is not None else created
        expires = _utc(expires_at, "expires_at") if expires_at is not None else None
        ttl = float(ttl_minutes) if ttl_minutes is not None else None
    except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
        return Skipped(namespace, key_text, f"unreadable row: {exc}")
    return Record(namespace, key_text, value, created, updated, ttl, expires)


# ---- sources -----------------------------------------------------------------------------

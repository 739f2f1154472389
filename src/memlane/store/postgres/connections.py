"""Telling a lost connection from a failed statement (a lost one is replaced and, where
nothing can have been applied, the work retried)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import errors as pg_errors

__all__ = ["Connection", "is_lost"]

Connection = psycopg.AsyncConnection[tuple[Any, ...]]

# The server ended the session (a restart, pg_terminate_backend, a crash): psycopg may
# still call the connection open until its next use.
_ENDED = (pg_errors.AdminShutdown, pg_errors.CrashShutdown, pg_errors.CannotConnectNow)


def is_lost(conn: Connection, exc: psycopg.OperationalError) -> bool:
    """Whether ``exc`` means ``conn`` is gone (then it must not be used again)."""
    return isinstance(exc, _ENDED) or conn.closed or conn.broken

"""ToolRuntime, what a tool call receives besides its arguments, and context coercion.

The runtime carries the caller's context (per invoke, e.g. the user id), the store, the
run's state and a stream writer. Tools declare it as a parameter; the model never sees it.
Context is checked once at the start of a run, so a missing or malformed context fails
before any model or tool call instead of deep inside a tool.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import TypeAdapter, ValidationError
from typing_extensions import is_typeddict

from memlane.store.base import BaseStore

__all__ = ["ContextError", "ToolRuntime", "coerce_context", "context_coercer"]

ContextT = TypeVar("ContextT")


def _no_writer(_chunk: Any) -> None:
    """The stream writer outside ``astream``: custom events go nowhere."""


@dataclass(slots=True)
class ToolRuntime(Generic[ContextT]):
    """What the agent hands a tool call: context, store, state, call id, config, writer.

    ``state`` is ``{"messages": [...]}``, the run's messages so far (read it, don't mutate).
    ``stream_writer(chunk)`` sends ``chunk`` to ``astream`` consumers as a custom event.
    """

    context: ContextT
    store: BaseStore | None = None
    state: dict[str, Any] = field(default_factory=dict)
    tool_call_id: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    stream_writer: Callable[[Any], None] = _no_writer


class ContextError(TypeError):
    """The ``context`` given to a run does not fit the agent's ``context_schema``."""


def _schema_name(schema: Any) -> str:
    return getattr(schema, "__name__", repr(schema))


def _instance_check(schema: Any) -> type | None:
    """The class to test ``isinstance`` against, or None (TypedDicts can't be tested)."""
    if not isinstance(schema, type) or is_typeddict(schema):
        return None
    return schema


def context_coercer(schema: Any) -> Callable[[Any], Any]:
    """A function turning a run's ``context=`` into an instance of ``schema``.

    Built once per agent: an instance of the schema passes with one ``isinstance`` check; a
    mapping is validated into the schema (a
    dataclass, pydantic model or TypedDict); ``None`` is accepted only when every field of
    the schema has a default. Anything else raises :class:`ContextError` naming the schema.
    """
    if schema is None:
        return _identity
    adapter: TypeAdapter[Any] = TypeAdapter(schema)
    cls = _instance_check(schema)
    name = _schema_name(schema)

    def coerce(value: Any) -> Any:
        if cls is not None and isinstance(value, cls):
            return value
        if value is None:
            try:
                return adapter.validate_python({})
            except ValidationError as exc:
                missing = [".".join(map(str, e["loc"])) for e in exc.errors() if e["loc"]]
                raise ContextError(
                    f"this agent needs context={name}(...) (context_schema={name}); "
                    f"none was given and the required fields {missing} have no defaults"
                ) from None
        if not isinstance(value, Mapping):
            raise ContextError(
                f"context must be a {name} or a dict of its fields, got {type(value).__name__}"
            )
        try:
            return adapter.validate_python(value)
        except ValidationError as exc:
            raise ContextError(f"context does not fit {name}: {exc}") from None

    return coerce


def _identity(value: Any) -> Any:
    return value


def coerce_context(schema: Any, value: Any) -> Any:
    """One-off form of :func:`context_coercer` (builds the validator each call)."""
    return context_coercer(schema)(value)

"""Memory tools ready to hand to an agent: manage (create/update/delete) and search memories.

The namespace is a template such as ``("memories", "{user_id}")`` filled from the runtime
context on every call (falling back to ``config["configurable"]``), never from the
model's arguments: one agent serves many users and no user can name another's namespace.
Each placeholder fills exactly one label, and the value must be a non-empty string, so a
crafted value cannot widen or shift the namespace.
"""

# No ``from __future__ import annotations`` here: the tool functions are defined inside
# factories and their hints (with a Literal built at run time) must be real objects.

import string
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from memlane.agents.runtime import ToolRuntime
from memlane.agents.tools import Tool
from memlane.store.base import BaseStore

__all__ = ["manage_memory_tool", "search_memory_tool"]

DEFAULT_NAMESPACE = ("memories", "{user_id}")
Action = Literal["create", "update", "delete"]


def _lookup(runtime: ToolRuntime[Any], key: str) -> Any:
    context = runtime.context
    if isinstance(context, Mapping):
        if key in context:
            return context[key]
    elif context is not None and hasattr(context, key):
        return getattr(context, key)
    configurable = runtime.config.get("configurable") if runtime.config else None
    if isinstance(configurable, Mapping) and key in configurable:
        return configurable[key]
    raise ValueError(
        f"the memory namespace needs {key!r}, but the runtime context has no such field "
        "(pass it in context=... when invoking the agent)"
    )


class _Namespace:
    """A namespace template, parsed once; ``fill(runtime)`` gives the concrete namespace."""

    def __init__(self, template: Sequence[str]) -> None:
        if isinstance(template, str) or not template:
            raise ValueError(f"namespace must be a non-empty tuple of labels, got {template!r}")
        self.labels = tuple(template)
        self.fields: list[list[str]] = []
        for label in self.labels:
            if not isinstance(label, str):
                raise TypeError(f"namespace labels must be str, got {label!r}")
            names = [f for _, f, _, _ in string.Formatter().parse(label) if f is not None]
            if any(not n or not n.isidentifier() for n in names):
                raise ValueError(f"namespace label {label!r}: placeholders must be {{name}}")
            self.fields.append(names)

    def fill(self, runtime: ToolRuntime[Any]) -> tuple[str, ...]:
        out = []
        for label, names in zip(self.labels, self.fields, strict=True):
            if not names:
                out.append(label)
                continue
            values = {}
            for name in names:
                value = _lookup(runtime, name)
                if isinstance(value, bool) or not isinstance(value, str | int):
                    raise ValueError(f"context field {name!r} must be a str, got {value!r}")
                text = str(value)
                if not text:
                    raise ValueError(f"context field {name!r} is empty")
                values[name] = text
            out.append(label.format_map(values))
        return tuple(out)


def _store(runtime: ToolRuntime[Any], fallback: BaseStore | None) -> BaseStore:
    store = fallback if fallback is not None else runtime.store
    if store is None:
        raise ValueError("memory tools need a store: create_agent(..., store=store)")
    return store


def manage_memory_tool(
    namespace: Sequence[str] = DEFAULT_NAMESPACE,
    *,
    name: str = "manage_memory",
    description: str | None = None,
    actions: Sequence[Action] = ("create", "update", "delete"),
    store: BaseStore | None = None,
) -> Tool:
    """A tool that creates, updates and deletes memories (``{"content": ...}`` values).

    ``namespace`` labels may hold ``{field}`` placeholders filled from the runtime context.
    ``actions`` limits what the model may do; ``store`` overrides the agent's store.
    """
    ns = _Namespace(namespace)
    permitted = tuple(dict.fromkeys(actions))
    if not permitted or any(a not in ("create", "update", "delete") for a in permitted):
        raise ValueError(f"actions must be among create/update/delete, got {actions!r}")
    action_type: Any = Literal[permitted]

    async def manage_memory(
        runtime: ToolRuntime[Any],
        action: action_type = permitted[0],
        content: str | None = None,
        id: str | None = None,
    ) -> str:
        target = _store(runtime, store)
        where = ns.fill(runtime)
        if action == "create":
            if not content:
                raise ValueError("'create' needs the memory's content")
            key = str(uuid.uuid4())
            await target.aput(where, key, {"content": content})
            return f"created memory {key}"
        if not id:
            raise ValueError(f"{action!r} needs the id of an existing memory")
        if action == "update":
            if not content:
                raise ValueError("'update' needs the new content")
            if await target.aget(where, id) is None:
                raise ValueError(f"there is no memory with id {id!r}")
            await target.aput(where, id, {"content": content})
            return f"updated memory {id}"
        await target.adelete(where, id)
        return f"deleted memory {id}"

    default_description = (
        "Create, update or delete a long-term memory about the user. Create a memory for "
        "durable facts and preferences worth remembering; update one (by id) when it changed; "
        "delete one (by id) when it is wrong or obsolete."
    )
    return Tool(manage_memory, name=name, description=description or default_description)


def search_memory_tool(
    namespace: Sequence[str] = DEFAULT_NAMESPACE,
    *,
    name: str = "search_memory",
    description: str | None = None,
    default_limit: int = 10,
    store: BaseStore | None = None,
) -> Tool:
    """A tool that searches memories by meaning (and optional filter) in the user's namespace."""
    ns = _Namespace(namespace)

    async def search_memory(
        query: str,
        runtime: ToolRuntime[Any],
        limit: int = default_limit,
        offset: int = 0,
        filter: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        target = _store(runtime, store)
        items = await target.asearch(
            ns.fill(runtime), query=query, filter=filter, limit=max(1, min(limit, 100)),
            offset=max(0, offset),
        )
        return [
            {
                "id": item.key,
                "value": item.value,
                "score": item.score,
                "updated_at": item.updated_at.isoformat(),
            }
            for item in items
        ]

    default_description = (
        "Search long-term memories about the user by meaning. Use it to recall facts and "
        "preferences before answering."
    )
    return Tool(search_memory, name=name, description=description or default_description)

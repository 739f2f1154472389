"""Memory tools ready to hand to an agent: manage (create/update/delete) and search memories.

The namespace is a template such as ``("memories", "{user_id}")`` filled from the runtime
context on every call (falling back to ``config["configurable"]``), never from the
model's arguments: one agent serves many users and no user can name another's namespace.
Each placeholder fills exactly one label, and the value must be a non-empty string, so a
crafted value cannot widen or shift the namespace.

A tool reads and writes exactly its namespace. The store's search is a prefix search, so
``("memories", "acme")`` would also find another template's ``("memories", "acme", "carol")``;
the search tool keeps only items of its own namespace and pages on until a page is full.
``include_children=True`` asks for the prefix search instead.

Memories are ``{"content": ...}`` values, stored with ``index=["content"]`` so they are
embedded whatever fields the store's IndexConfig names.
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
from memlane.store.types import GetOp, SearchItem

__all__ = ["manage_memory_tool", "search_memory_tool"]

DEFAULT_NAMESPACE = ("memories", "{user_id}")
CONTENT_FIELD = "content"
"""The value field a memory's text lives in, and the one field the tools embed."""
Action = Literal["create", "update", "delete"]
MAX_LIMIT = 100
_MAX_CHUNK = 2048  # the largest page asked of the store while skipping other namespaces


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
            await target.aput(where, key, {CONTENT_FIELD: content}, index=[CONTENT_FIELD])
            return f"created memory {key}"
        if not id:
            raise ValueError(f"{action!r} needs the id of an existing memory")
        if action == "update":
            if not content:
                raise ValueError("'update' needs the new content")
            if await target.aget(where, id) is None:
                raise ValueError(f"there is no memory with id {id!r}")
            await target.aput(where, id, {CONTENT_FIELD: content}, index=[CONTENT_FIELD])
            return f"updated memory {id}"
        await target.adelete(where, id)
        return f"deleted memory {id}"

    default_description = (
        "Create, update or delete a long-term memory about the user. Create a memory for "
        "durable facts and preferences worth remembering; update one (by id) when it changed; "
        "delete one (by id) when it is wrong or obsolete."
    )
    return Tool(manage_memory, name=name, description=description or default_description)


async def _search_exact(
    store: BaseStore,
    namespace: tuple[str, ...],
    *,
    query: str,
    filter: dict[str, Any] | None,
    limit: int,
    offset: int,
) -> list[SearchItem]:
    """Items of exactly ``namespace``, ranked and paged as the store's own search would.

    The store's pages cover the namespace's subtree, in one order; walking them and keeping
    only this namespace's items gives the same ranking restricted to it, so pages stay full.
    When nothing lives below the namespace this is one store call. The walk reads with
    ``refresh_ttl=False`` (other namespaces' items must not be touched), then applies the
    store's refresh-on-read to the returned items alone.
    """
    want = offset + limit
    found: dict[str, SearchItem] = {}  # by key: a write between pages may repeat an item
    chunk, position = max(want, 10), 0
    while len(found) < want:
        page = await store.asearch(
            namespace, query=query, filter=filter, limit=chunk, offset=position,
            refresh_ttl=False,
        )
        for item in page:
            if item.namespace == namespace:
                found.setdefault(item.key, item)
        if len(page) < chunk:
            break
        position += len(page)
        chunk = min(chunk * 2, _MAX_CHUNK)
    items = list(found.values())[offset:want]
    ttl = getattr(store, "ttl_config", True)  # unknown store: let it decide per read
    if items and ttl is not None and getattr(ttl, "refresh_on_read", True):
        await store.abatch([GetOp(namespace, item.key) for item in items])
    return items


def search_memory_tool(
    namespace: Sequence[str] = DEFAULT_NAMESPACE,
    *,
    name: str = "search_memory",
    description: str | None = None,
    default_limit: int = 10,
    include_children: bool = False,
    store: BaseStore | None = None,
) -> Tool:
    """A tool that searches memories by meaning (and optional filter) in the user's namespace.

    It reads exactly the filled namespace; ``include_children=True`` also reads the
    namespaces below it (each result then names its ``namespace``).
    """
    ns = _Namespace(namespace)
    if not isinstance(include_children, bool):
        raise TypeError(f"include_children must be a bool, got {include_children!r}")

    async def search_memory(
        query: str,
        runtime: ToolRuntime[Any],
        limit: int = default_limit,
        offset: int = 0,
        filter: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        target = _store(runtime, store)
        where = ns.fill(runtime)
        size, skip = max(1, min(limit, MAX_LIMIT)), max(0, offset)
        if include_children:
            items = await target.asearch(
                where, query=query, filter=filter, limit=size, offset=skip
            )
        else:
            items = await _search_exact(
                target, where, query=query, filter=filter, limit=size, offset=skip
            )
        out = []
        for item in items:
            entry: dict[str, Any] = {"id": item.key}
            if include_children:
                entry["namespace"] = list(item.namespace)
            entry.update(
                value=item.value, score=item.score, updated_at=item.updated_at.isoformat()
            )
            out.append(entry)
        return out

    default_description = (
        "Search long-term memories about the user by meaning. Use it to recall facts and "
        "preferences before answering."
    )
    return Tool(search_memory, name=name, description=description or default_description)

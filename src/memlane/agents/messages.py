"""The four message kinds of a conversation and their dict/role forms.

Messages are small slotted dataclasses rather than pydantic models: a run builds several of
them per turn, so construction must cost next to nothing. ``to_dict``/``message_from_dict``
give a plain, JSON-ready form (OpenAI-style roles), and ``coerce_message`` accepts what users
pass in: message objects, role/content dicts, ``(role, content)`` pairs and plain strings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeAlias, TypedDict

import orjson

__all__ = [
    "AIMessage",
    "AnyMessage",
    "HumanMessage",
    "SystemMessage",
    "ToolCall",
    "ToolMessage",
    "coerce_message",
    "coerce_messages",
    "message_from_dict",
]


class ToolCall(TypedDict):
    """One tool call requested by the model: its id, the tool's name and the JSON arguments."""

    id: str
    name: str
    args: dict[str, Any]


@dataclass(slots=True)
class SystemMessage:
    """Instructions for the model."""

    content: str
    role: ClassVar[str] = "system"
    type: ClassVar[str] = "system"

    @property
    def text(self) -> str:
        return self.content

    def to_dict(self) -> dict[str, Any]:
        return {"role": "system", "content": self.content}


@dataclass(slots=True)
class HumanMessage:
    """What the user said."""

    content: str
    role: ClassVar[str] = "user"
    type: ClassVar[str] = "human"

    @property
    def text(self) -> str:
        return self.content

    def to_dict(self) -> dict[str, Any]:
        return {"role": "user", "content": self.content}


@dataclass(slots=True)
class AIMessage:
    """A model reply: text, and the tool calls it asks for (none ends the run)."""

    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: dict[str, int] | None = None
    role: ClassVar[str] = "assistant"
    type: ClassVar[str] = "ai"

    @property
    def text(self) -> str:
        return self.content

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [
                {"id": c["id"], "name": c["name"], "args": c["args"]} for c in self.tool_calls
            ]
        if self.usage is not None:
            out["usage"] = dict(self.usage)
        return out


@dataclass(slots=True)
class ToolMessage:
    """The result of one tool call, matched to it by ``tool_call_id``."""

    content: str
    tool_call_id: str
    name: str = ""
    status: Literal["success", "error"] = "success"
    role: ClassVar[str] = "tool"
    type: ClassVar[str] = "tool"

    @property
    def text(self) -> str:
        return self.content

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": "tool",
            "content": self.content,
            "tool_call_id": self.tool_call_id,
            "name": self.name,
            "status": self.status,
        }


AnyMessage: TypeAlias = SystemMessage | HumanMessage | AIMessage | ToolMessage

_MESSAGE_TYPES = (SystemMessage, HumanMessage, AIMessage, ToolMessage)


def _tool_call_from(raw: Any, index: int) -> ToolCall:
    if not isinstance(raw, Mapping):
        raise TypeError(f"a tool call must be a dict with id/name/args, got {raw!r}")
    # Accept the OpenAI wire shape too: {"id", "function": {"name", "arguments"}}.
    fn = raw.get("function")
    if isinstance(fn, Mapping):
        name = fn.get("name")
        args: Any = fn.get("arguments") or {}
        if isinstance(args, str | bytes):
            args = orjson.loads(args) if args else {}
    else:
        name = raw.get("name")
        args = raw.get("args", {})
    if not isinstance(name, str) or not name:
        raise ValueError(f"a tool call needs a non-empty 'name', got {raw!r}")
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        raise TypeError(f"tool call args must be a dict, got {args!r}")
    call_id = raw.get("id") or f"call_{index}"
    return {"id": str(call_id), "name": name, "args": dict(args)}


def message_from_dict(data: Mapping[str, Any]) -> AnyMessage:
    """Build a message from its dict form; ``role`` (or LangChain's ``type``) picks the kind."""
    role = data.get("role", data.get("type"))
    content = data.get("content")
    if content is None:
        content = ""
    if not isinstance(content, str):
        raise TypeError(f"message content must be a str, got {type(content).__name__}")
    if role in ("user", "human"):
        return HumanMessage(content)
    if role in ("assistant", "ai"):
        calls = data.get("tool_calls") or ()
        usage = data.get("usage")
        return AIMessage(
            content,
            [_tool_call_from(c, i) for i, c in enumerate(calls)],
            dict(usage) if usage else None,
        )
    if role == "system":
        return SystemMessage(content)
    if role == "tool":
        call_id = data.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise ValueError("a tool message needs a 'tool_call_id'")
        status = data.get("status", "success")
        if status not in ("success", "error"):
            raise ValueError(f"tool message status must be 'success' or 'error', got {status!r}")
        return ToolMessage(content, call_id, str(data.get("name") or ""), status)
    raise ValueError(
        f"unknown message role {role!r}: use 'system', 'user', 'assistant' or 'tool'"
    )


def coerce_message(value: Any) -> AnyMessage:
    """A message object as is; a dict, a ``(role, content)`` pair or a str (a user turn)."""
    if isinstance(value, _MESSAGE_TYPES):
        return value
    if isinstance(value, str):
        return HumanMessage(value)
    if isinstance(value, Mapping):
        return message_from_dict(value)
    if isinstance(value, tuple) and len(value) == 2:
        return message_from_dict({"role": value[0], "content": value[1]})
    raise TypeError(
        f"cannot use {type(value).__name__} as a message: pass a message object, "
        "a {'role': ..., 'content': ...} dict or a str"
    )


def coerce_messages(values: Iterable[Any] | str | AnyMessage) -> list[AnyMessage]:
    """A fresh list of messages from a list of anything :func:`coerce_message` accepts."""
    if isinstance(values, (str, Mapping, *_MESSAGE_TYPES)):
        return [coerce_message(values)]
    return [coerce_message(v) for v in values]

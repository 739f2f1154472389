"""ScriptedModel: a model that plays back a list of turns, for tests and offline examples.

The turn to play is the number of assistant messages since the last user message, so a
script says how the model answers one user message, and one scripted model serves any
number of concurrent runs, each from its own first turn, with no shared cursor to race on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from memlane.agents.messages import (
    AIMessage,
    AnyMessage,
    HumanMessage,
    ToolCall,
    message_from_dict,
)
from memlane.agents.tools import ToolSpec

__all__ = ["ScriptedCall", "ScriptedModel", "Turn", "turn_index"]

Turn: TypeAlias = (
    AIMessage | str | Sequence[Mapping[str, Any]] | Mapping[str, Any] | Callable[..., Any]
)
"""A reply (AIMessage), final text (str), tool calls (list of {"name", "args"[, "id"]}), an
assistant dict, or a function of the messages that returns one of those."""


@dataclass(slots=True, frozen=True)
class ScriptedCall:
    """What the scripted model was asked: the messages, system prompt and tools of one call."""

    messages: tuple[AnyMessage, ...]
    system: str | None
    tools: tuple[ToolSpec, ...]

    @property
    def tool_names(self) -> tuple[str, ...]:
        return tuple(t["name"] for t in self.tools)


def _to_message(turn: Any, index: int) -> AIMessage:
    if isinstance(turn, AIMessage):
        return turn
    if isinstance(turn, str):
        return AIMessage(turn)
    if isinstance(turn, Mapping):
        message = message_from_dict({"role": "assistant", **turn})
        assert isinstance(message, AIMessage)
        calls = message.tool_calls
    elif isinstance(turn, Sequence):
        message = message_from_dict({"role": "assistant", "tool_calls": list(turn)})
        assert isinstance(message, AIMessage)
        calls = message.tool_calls
    else:
        raise TypeError(f"a scripted turn cannot be {type(turn).__name__}: {turn!r}")
    for i, call in enumerate(calls):
        raw_id = (turn[i] if isinstance(turn, Sequence) else turn["tool_calls"][i]).get("id")
        if not raw_id:
            call["id"] = f"call_{index}_{i}"
    return message


def _fresh(template: AIMessage) -> AIMessage:
    """A copy, so no two runs share (and mutate) one message."""
    calls: list[ToolCall] = [
        {"id": c["id"], "name": c["name"], "args": dict(c["args"])} for c in template.tool_calls
    ]
    return AIMessage(template.content, calls, template.usage)


def turn_index(messages: Sequence[Any], ai: type, human: type) -> int:
    """Which turn of a script comes next: the AI messages since the last human one.

    ``ai``/``human`` are the message classes (memlane's, or another library's when a
    benchmark plays the same script to it)."""
    index = 0
    for message in reversed(messages):
        if isinstance(message, ai):
            index += 1
        elif isinstance(message, human):
            break
    return index


class ScriptedModel:
    """Replies with ``turns[k]``, k the number of assistant messages since the last user one.

    ``calls`` records every request (when ``record`` is true), so tests can check what the
    model saw: the system prompt, the tool schemas, the messages.
    """

    def __init__(self, turns: Sequence[Turn], *, record: bool = True) -> None:
        self._turns: list[AIMessage | Callable[..., Any]] = [
            t if callable(t) and not isinstance(t, AIMessage) else _to_message(t, i)
            for i, t in enumerate(turns)
        ]
        self.record = record
        self.calls: list[ScriptedCall] = []

    def __repr__(self) -> str:
        return f"ScriptedModel({len(self._turns)} turns)"

    async def achat(
        self,
        messages: Sequence[AnyMessage],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
    ) -> AIMessage:
        """The scripted reply for this point of the conversation."""
        index = turn_index(messages, AIMessage, HumanMessage)
        if self.record:
            self.calls.append(
                ScriptedCall(tuple(messages), system, tuple(tools))
            )
        if index >= len(self._turns):
            raise IndexError(
                f"ScriptedModel ran out of turns: asked for turn {index + 1} of a "
                f"{len(self._turns)}-turn script"
            )
        turn = self._turns[index]
        if isinstance(turn, AIMessage):
            return _fresh(turn)
        return _to_message(turn(list(messages)), index)

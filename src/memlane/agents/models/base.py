"""The ChatModel protocol, model errors, and turning ``"provider:name"`` strings into models.

A model is anything with ``achat(messages, *, system, tools) -> AIMessage``. The system
prompt travels separately because providers disagree on where it goes (a message for
OpenAI, a top-level field for Anthropic). Model strings are resolved when the agent is
created, so a missing API key is a start-up error that names the variable to set, not a
failure on the first user request.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from memlane.agents.messages import AIMessage, AnyMessage
from memlane.agents.tools import ToolSpec

__all__ = [
    "ChatModel",
    "MissingAPIKeyError",
    "ModelAPIError",
    "ModelConnectionError",
    "ModelError",
    "ModelTimeoutError",
    "init_chat_model",
]


@runtime_checkable
class ChatModel(Protocol):
    """A chat model that can call tools: one reply for a conversation."""

    async def achat(
        self,
        messages: Sequence[AnyMessage],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
    ) -> AIMessage:
        """The model's next message; ``tool_calls`` on it ask the agent to run tools."""
        ...


class ModelError(RuntimeError):
    """A model call failed."""


class ModelAPIError(ModelError):
    """The provider answered with an error status; ``status_code`` and ``body`` tell which."""

    def __init__(self, message: str, *, status_code: int, body: Any = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body


class ModelTimeoutError(ModelError, TimeoutError):
    """The provider did not answer in time, after every retry."""


class ModelConnectionError(ModelError, ConnectionError):
    """The provider could not be reached, after every retry."""


class MissingAPIKeyError(ModelError, ValueError):
    """A hosted model was named but its API key is not in the environment."""


_OPENAI_PREFIXES = ("gpt-", "o1", "o3", "o4", "chatgpt-")


def _key(explicit: str | None, env_var: str, model: str) -> str:
    key = explicit if explicit is not None else os.environ.get(env_var)
    if not key:
        raise MissingAPIKeyError(
            f"model {model!r} needs an API key: set {env_var} in the environment or pass "
            "api_key=...; offline, use memlane.agents.ScriptedModel"
        )
    return key


def init_chat_model(
    model: str,
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    **kwargs: Any,
) -> ChatModel:
    """A model from ``"anthropic:claude-…"``, a bare ``"claude-…"``, ``"openai:gpt-…"``.

    Keys come from ``ANTHROPIC_API_KEY``/``OPENAI_API_KEY`` unless ``api_key`` is given.
    ``base_url`` (or ``OPENAI_BASE_URL``) points the OpenAI client at any compatible server
    (vLLM, Ollama, llama.cpp, …); such a server needs no key. Other keyword arguments go to
    the client (``timeout``, ``max_retries``, ``temperature``, ``max_tokens``, …).
    """
    provider, sep, name = model.partition(":")
    if not sep:
        name = model
        if model.startswith("claude"):
            provider = "anthropic"
        elif model.startswith(_OPENAI_PREFIXES) or base_url is not None:
            provider = "openai"
        else:
            raise ValueError(
                f"cannot tell the provider of model {model!r}: write 'anthropic:{model}' or "
                f"'openai:{model}' (with base_url=... for a local OpenAI-compatible server)"
            )
    if not name:
        raise ValueError(f"model string {model!r} names no model")
    if provider == "anthropic":
        from memlane.agents.models.anthropic import AnthropicChatModel

        url = base_url or os.environ.get("ANTHROPIC_BASE_URL")
        return AnthropicChatModel(
            name, api_key=_key(api_key, "ANTHROPIC_API_KEY", model), base_url=url, **kwargs
        )
    if provider == "openai":
        from memlane.agents.models.openai import OpenAIChatModel

        url = base_url or os.environ.get("OPENAI_BASE_URL")
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        if url is None:
            key = _key(key, "OPENAI_API_KEY", model)
        return OpenAIChatModel(name, api_key=key, base_url=url, **kwargs)
    raise ValueError(
        f"unknown model provider {provider!r} in {model!r}: use 'anthropic:' or 'openai:' "
        "(any OpenAI-compatible server works as 'openai:NAME' with base_url=...)"
    )

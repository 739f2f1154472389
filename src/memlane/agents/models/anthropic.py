"""An Anthropic Messages API client with tool use, over httpx with retries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from memlane.agents.messages import (
    AIMessage,
    AnyMessage,
    HumanMessage,
    SystemMessage,
    ToolCall,
    ToolMessage,
)
from memlane.agents.models.base import ModelAPIError
from memlane.agents.models.http import JsonHttpClient
from memlane.agents.tools import ToolSpec

__all__ = ["AnthropicChatModel"]

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"


def _wire_messages(messages: Sequence[AnyMessage], system: str | None) -> tuple[str, list[Any]]:
    """Anthropic's shape: system text apart; tool results as user blocks; roles alternate."""
    system_parts = [system] if system else []
    wire: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if wire and wire[-1]["role"] == role:
            wire[-1]["content"].extend(blocks)
        else:
            wire.append({"role": role, "content": blocks})

    for message in messages:
        if isinstance(message, SystemMessage):
            system_parts.append(message.content)
        elif isinstance(message, HumanMessage):
            add("user", [{"type": "text", "text": message.content}] if message.content else [])
        elif isinstance(message, ToolMessage):
            block: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id,
                "content": message.content,
            }
            if message.status == "error":
                block["is_error"] = True
            add("user", [block])
        else:
            blocks: list[dict[str, Any]] = []
            if message.content:
                blocks.append({"type": "text", "text": message.content})
            blocks.extend(
                {"type": "tool_use", "id": c["id"], "name": c["name"], "input": c["args"]}
                for c in message.tool_calls
            )
            add("assistant", blocks)
    return "\n\n".join(system_parts), wire


def _parse_reply(data: dict[str, Any]) -> AIMessage:
    content = data.get("content")
    if not isinstance(content, list):
        raise ModelAPIError(
            f"anthropic reply has no content list: {str(data)[:300]}", status_code=200, body=data
        )
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in content:
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "tool_use":
            args = block.get("input")
            calls.append(
                {
                    "id": str(block.get("id") or f"toolu_{len(calls)}"),
                    "name": str(block.get("name") or ""),
                    "args": args if isinstance(args, dict) else {},
                }
            )
    usage = data.get("usage")
    return AIMessage(
        "".join(texts),
        calls,
        {
            "input_tokens": int(usage.get("input_tokens") or 0),
            "output_tokens": int(usage.get("output_tokens") or 0),
        }
        if isinstance(usage, dict)
        else None,
    )


class AnthropicChatModel:
    """Messages API (``POST {base_url}/v1/messages``) with tool use, over httpx."""

    def __init__(
        self,
        model: str,
        *,
        api_key: str,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        backoff: float = 0.5,
        temperature: float | None = None,
        max_tokens: int = 4096,
        extra_body: dict[str, Any] | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.extra_body = dict(extra_body or {})
        self._http = JsonHttpClient(
            provider="anthropic",
            base_url=base_url or DEFAULT_BASE_URL,
            headers={"x-api-key": api_key, "anthropic-version": API_VERSION},
            key_hint="ANTHROPIC_API_KEY",
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            http_client=http_client,
        )

    def __repr__(self) -> str:
        return f"AnthropicChatModel(model={self.model!r}, base_url={self._http.base_url!r})"

    async def achat(
        self,
        messages: Sequence[AnyMessage],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
    ) -> AIMessage:
        """One Messages API call; ``tool_use`` blocks come back as tool calls."""
        system_text, wire = _wire_messages(messages, system)
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "messages": wire,
        }
        if system_text:
            body["system"] = system_text
        if tools:
            body["tools"] = [
                {
                    "name": t["name"],
                    "description": t["description"],
                    "input_schema": t["parameters"],
                }
                for t in tools
            ]
        if self.temperature is not None:
            body["temperature"] = self.temperature
        body.update(self.extra_body)
        return _parse_reply(await self._http.post("/v1/messages", body))

    async def aclose(self) -> None:
        """Close the connection pool of the current event loop."""
        await self._http.aclose()

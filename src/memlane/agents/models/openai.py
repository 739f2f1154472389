"""An OpenAI-compatible chat-completions client with tool calling (OpenAI, vLLM, Ollama, …)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import orjson

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
from memlane.agents.tools import INVALID_JSON_KEY, ToolSpec

__all__ = ["OpenAIChatModel"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"


def _wire_message(message: AnyMessage) -> dict[str, Any]:
    if isinstance(message, HumanMessage):
        return {"role": "user", "content": message.content}
    if isinstance(message, SystemMessage):
        return {"role": "system", "content": message.content}
    if isinstance(message, ToolMessage):
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    out: dict[str, Any] = {"role": "assistant", "content": message.content or None}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call["id"],
                "type": "function",
                "function": {
                    "name": call["name"],
                    "arguments": orjson.dumps(call["args"]).decode(),
                },
            }
            for call in message.tool_calls
        ]
    return out


def _parse_arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if not raw:
        return {}
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {INVALID_JSON_KEY: str(raw)}
    return parsed if isinstance(parsed, dict) else {INVALID_JSON_KEY: str(raw)}


def _parse_reply(data: dict[str, Any]) -> AIMessage:
    try:
        message = data["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        raise ModelAPIError(
            f"openai reply has no choices[0].message: {str(data)[:300]}", status_code=200, body=data
        ) from None
    calls: list[ToolCall] = []
    for i, raw in enumerate(message.get("tool_calls") or ()):
        fn = raw.get("function") or {}
        calls.append(
            {
                "id": str(raw.get("id") or f"call_{i}"),
                "name": str(fn.get("name") or ""),
                "args": _parse_arguments(fn.get("arguments")),
            }
        )
    usage = data.get("usage")
    return AIMessage(
        message.get("content") or "",
        calls,
        {
            "input_tokens": int(usage.get("prompt_tokens") or 0),
            "output_tokens": int(usage.get("completion_tokens") or 0),
        }
        if isinstance(usage, dict)
        else None,
    )


class OpenAIChatModel:
    """Chat completions (``POST {base_url}/chat/completions``) over httpx, with retries."""

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        backoff: float = 0.5,
        temperature: float | None = None,
        max_tokens: int | None = None,
        extra_body: dict[str, Any] | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.extra_body = dict(extra_body or {})
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = JsonHttpClient(
            provider="openai",
            base_url=base_url or DEFAULT_BASE_URL,
            headers=headers,
            key_hint="OPENAI_API_KEY",
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            http_client=http_client,
        )

    def __repr__(self) -> str:
        return f"OpenAIChatModel(model={self.model!r}, base_url={self._http.base_url!r})"

    async def achat(
        self,
        messages: Sequence[AnyMessage],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
    ) -> AIMessage:
        """One chat-completions call; tool calls in the reply come back on the AIMessage."""
        wire = [{"role": "system", "content": system}] if system else []
        wire.extend(_wire_message(m) for m in messages)
        body: dict[str, Any] = {"model": self.model, "messages": wire}
        if tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t["name"],
                        "description": t["description"],
                        "parameters": t["parameters"],
                    },
                }
                for t in tools
            ]
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        body.update(self.extra_body)
        return _parse_reply(await self._http.post("/chat/completions", body))

    async def aclose(self) -> None:
        """Close the connection pool of the current event loop."""
        await self._http.aclose()

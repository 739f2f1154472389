"""The OpenAI-compatible and Anthropic clients against real HTTP servers on 127.0.0.1.

Each server speaks its API's wire format: it answers a user turn with a tool call and a
tool result with text, and it can fail with the provider's error shapes.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable
from typing import Any

import pytest
from agent_wire_server import Recorded, Reply, WireServer

from memlane.agents import HumanMessage, ToolMessage, create_agent, tool
from memlane.agents.models import (
    AnthropicChatModel,
    MissingAPIKeyError,
    ModelAPIError,
    ModelConnectionError,
    ModelTimeoutError,
    OpenAIChatModel,
    init_chat_model,
)

pytestmark = pytest.mark.anyio

StartServer = Callable[[Callable[[Recorded], Reply]], WireServer]


@tool
def weather(city: str) -> str:
    """The weather in a city.

    Args:
        city: the city's name
    """
    return f"sunny in {city}"


# ---- OpenAI chat completions -------------------------------------------------------------


def openai_reply(message: dict[str, Any], finish: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-test",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }


def openai_brain(request: Recorded) -> Reply:
    """Call the first tool for a user turn; report a tool result in text."""
    last = request.body["messages"][-1]
    if last["role"] == "tool":
        return 200, openai_reply({"role": "assistant", "content": f"Tool: {last['content']}"}), {}
    name = request.body["tools"][0]["function"]["name"]
    call = {
        "id": "call_abc",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps({"city": "Paris"})},
    }
    message = {"role": "assistant", "content": None, "tool_calls": [call]}
    return 200, openai_reply(message, "tool_calls"), {}


def openai_error(status: int, message: str, kind: str = "server_error") -> Reply:
    return status, {"error": {"message": message, "type": kind, "code": None}}, {}


async def test_openai_agent_run_over_the_wire(wire_server: StartServer) -> None:
    server = wire_server(openai_brain)
    model = OpenAIChatModel("gpt-test", api_key="sk-test", base_url=f"{server.url}/v1")
    agent = create_agent(model, [weather], system_prompt="Be brief.")
    result = await agent.ainvoke({"messages": ["weather in Paris?"]})
    await model.aclose()

    assert result["messages"][-1].content == "Tool: sunny in Paris"
    assert result["messages"][1].tool_calls == [
        {"id": "call_abc", "name": "weather", "args": {"city": "Paris"}}
    ]
    assert result["messages"][1].usage == {"input_tokens": 11, "output_tokens": 7}
    first, second = server.requests
    assert first.path == "/v1/chat/completions"
    assert first.headers["authorization"] == "Bearer sk-test"
    assert first.body["model"] == "gpt-test"
    assert first.body["messages"][0] == {"role": "system", "content": "Be brief."}
    fn = first.body["tools"][0]
    assert fn["type"] == "function" and fn["function"]["name"] == "weather"
    assert fn["function"]["parameters"]["properties"]["city"]["description"] == "the city's name"
    assistant, tool_message = second.body["messages"][-2:]
    assert assistant["tool_calls"][0]["function"] == {
        "name": "weather",
        "arguments": '{"city":"Paris"}',
    }
    assert tool_message == {"role": "tool", "tool_call_id": "call_abc", "content": "sunny in Paris"}
    assert second.body["messages"][0]["role"] == "system"


async def test_openai_retries_429_and_5xx_then_succeeds(wire_server: StartServer) -> None:
    failures = [
        (429, {"error": {"message": "slow down", "type": "rate_limit"}}, {"retry-after": "0"}),
        openai_error(503, "overloaded"),
    ]

    def flaky(request: Recorded) -> Reply:
        return failures.pop(0) if failures else openai_brain(request)

    server = wire_server(flaky)
    model = OpenAIChatModel("m", api_key="k", base_url=server.url, backoff=0.001)
    reply = await model.achat([HumanMessage("hi")], tools=[weather.spec])
    await model.aclose()
    assert reply.tool_calls[0]["name"] == "weather"
    assert len(server.requests) == 3


async def test_retries_and_the_final_model_error_are_logged(
    wire_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    failures = [openai_error(503, "overloaded"), openai_error(429, "slow down")]
    server = wire_server(lambda r: failures.pop(0) if failures else openai_error(500, "boom"))
    model = OpenAIChatModel("m", api_key="k", base_url=server.url, max_retries=2, backoff=0.001)
    with caplog.at_level(logging.WARNING, logger="memlane"), pytest.raises(ModelAPIError):
        await create_agent(model).ainvoke({"messages": ["hi"]})
    await model.aclose()
    retries = [r for r in caplog.records if r.name == "memlane.agents.models.http"]
    assert [r.levelno for r in retries] == [logging.WARNING] * 2
    assert "HTTP 503" in retries[0].getMessage() and "retry 1 of 2" in retries[0].getMessage()
    assert "HTTP 429" in retries[1].getMessage() and "retry 2 of 2" in retries[1].getMessage()
    (final,) = [r for r in caplog.records if r.name == "memlane.agents.models"]
    assert "500" in final.getMessage() and "boom" in final.getMessage()
    assert all(r.exc_info is None for r in caplog.records)

    with socket.socket() as s:  # nobody listening: transport errors, traceback at DEBUG
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    model = OpenAIChatModel(
        "m", api_key="k", base_url=f"http://127.0.0.1:{port}", max_retries=1, backoff=0.001
    )
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="memlane"), pytest.raises(ModelConnectionError):
        await model.achat([])
    await model.aclose()
    retry, trace = [r for r in caplog.records if r.name == "memlane.agents.models.http"]
    assert retry.levelno == logging.WARNING and "ConnectError" in retry.getMessage()
    assert trace.levelno == logging.DEBUG and trace.exc_info is not None


async def test_openai_errors_are_clear_and_not_retried_when_final(wire_server: StartServer) -> None:
    server = wire_server(lambda r: openai_error(400, "tools[0] is malformed", "invalid_request"))
    model = OpenAIChatModel("m", api_key="k", base_url=server.url, backoff=0.001)
    expected = r"400 \(invalid_request\): tools\[0\] is malformed"
    with pytest.raises(ModelAPIError, match=expected) as e:
        await model.achat([])
    assert e.value.status_code == 400 and len(server.requests) == 1

    server = wire_server(lambda r: openai_error(401, "bad key", "invalid_api_key"))
    model = OpenAIChatModel("m", api_key="k", base_url=server.url)
    with pytest.raises(ModelAPIError, match="OPENAI_API_KEY"):
        await model.achat([])

    server = wire_server(lambda r: openai_error(500, "boom"))
    model = OpenAIChatModel("m", api_key="k", base_url=server.url, max_retries=2, backoff=0.001)
    with pytest.raises(ModelAPIError, match=r"500.*boom.*after 3 attempts"):
        await model.achat([])
    assert len(server.requests) == 3
    await model.aclose()


async def test_openai_timeout_and_unreachable_server(wire_server: StartServer) -> None:
    server = wire_server(lambda r: (0, {}, {}))  # never answers
    model = OpenAIChatModel("m", api_key="k", base_url=server.url, timeout=0.2, max_retries=0)
    with pytest.raises(ModelTimeoutError, match="did not answer"):
        await model.achat([])
    await model.aclose()

    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    model = OpenAIChatModel(
        "m", api_key="k", base_url=f"http://127.0.0.1:{port}", max_retries=1, backoff=0.001
    )
    with pytest.raises(ModelConnectionError, match="cannot reach openai"):
        await model.achat([])
    await model.aclose()


async def test_invalid_json_arguments_reach_the_model_as_an_error(
    wire_server: StartServer,
) -> None:
    def brain(request: Recorded) -> Reply:
        if request.body["messages"][-1]["role"] == "tool":
            return 200, openai_reply({"role": "assistant", "content": "ok"}), {}
        call = {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{"}}
        return 200, openai_reply({"role": "assistant", "content": "", "tool_calls": [call]}), {}

    server = wire_server(brain)
    model = OpenAIChatModel("m", api_key="k", base_url=server.url)
    result = await create_agent(model, [weather]).ainvoke({"messages": ["hi"]})
    await model.aclose()
    failed = next(m for m in result["messages"] if isinstance(m, ToolMessage))
    assert failed.status == "error" and "not valid JSON" in failed.content


def test_sync_invoke_with_an_http_model_runs_twice(wire_server: StartServer) -> None:
    server = wire_server(openai_brain)
    agent = create_agent(OpenAIChatModel("m", api_key="k", base_url=server.url), [weather])
    for _ in range(2):  # each invoke runs on its own loop with its own connection pool
        assert agent.invoke({"messages": ["hi"]})["messages"][-1].content.startswith("Tool:")


# ---- Anthropic messages ------------------------------------------------------------------


def anthropic_reply(content: list[dict[str, Any]], stop: str = "end_turn") -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": content,
        "stop_reason": stop,
        "usage": {"input_tokens": 20, "output_tokens": 5},
    }


def anthropic_brain(request: Recorded) -> Reply:
    last = request.body["messages"][-1]
    results = [b for b in last["content"] if b.get("type") == "tool_result"]
    if results:
        text = " | ".join(
            r["content"] + (" (error)" if r.get("is_error") else "") for r in results
        )
        return 200, anthropic_reply([{"type": "text", "text": text}]), {}
    content = [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}},
        {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {}},
    ]
    return 200, anthropic_reply(content, "tool_use"), {}


async def test_anthropic_agent_run_over_the_wire(wire_server: StartServer) -> None:
    server = wire_server(anthropic_brain)
    model = AnthropicChatModel("claude-test", api_key="ak-test", base_url=server.url)
    agent = create_agent(model, [weather], system_prompt="Be brief.")
    result = await agent.ainvoke({"messages": [{"role": "system", "content": "Say hi."}, "hi"]})
    await model.aclose()

    final = result["messages"][-1]
    assert final.content == "sunny in Oslo | " + final.content.split(" | ")[1]
    assert "(error)" in final.content  # the call without a city was reported as an error
    first, second = server.requests
    assert first.path == "/v1/messages"
    assert first.headers["x-api-key"] == "ak-test"
    assert first.headers["anthropic-version"] == "2023-06-01"
    assert first.body["system"] == "Be brief.\n\nSay hi."
    assert first.body["max_tokens"] == 4096
    assert first.body["tools"][0]["input_schema"]["required"] == ["city"]
    assert first.body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assistant, user = second.body["messages"][-2:]
    assert assistant["role"] == "assistant"
    assert [b["type"] for b in assistant["content"]] == ["text", "tool_use", "tool_use"]
    assert user["role"] == "user"
    assert [(b["tool_use_id"], b.get("is_error", False)) for b in user["content"]] == [
        ("toolu_1", False),
        ("toolu_2", True),
    ]


async def test_anthropic_retries_overloaded_and_reports_errors(wire_server: StartServer) -> None:
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    failures: list[Reply] = [(529, overloaded, {"retry-after-ms": "1"})]

    def flaky(request: Recorded) -> Reply:
        return failures.pop(0) if failures else anthropic_brain(request)

    server = wire_server(flaky)
    model = AnthropicChatModel("c", api_key="k", base_url=server.url, backoff=0.001)
    reply = await model.achat([HumanMessage("hi")], tools=[weather.spec])
    assert len(server.requests) == 2 and len(reply.tool_calls) == 2

    bad = {"type": "error", "error": {"type": "invalid_request_error", "message": "bad tools"}}
    server = wire_server(lambda r: (400, bad, {}))
    model = AnthropicChatModel("c", api_key="k", base_url=server.url)
    with pytest.raises(ModelAPIError, match=r"anthropic API error 400 \(invalid_request_error\)"):
        await model.achat([])
    await model.aclose()


# ---- model strings -----------------------------------------------------------------------


def test_model_strings_resolve_with_keys_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "a-key")
    monkeypatch.setenv("OPENAI_API_KEY", "o-key")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    bare = init_chat_model("claude-sonnet-4-6")
    assert isinstance(bare, AnthropicChatModel) and bare.model == "claude-sonnet-4-6"
    assert isinstance(init_chat_model("anthropic:claude-x"), AnthropicChatModel)
    openai = init_chat_model("openai:gpt-4o-mini")
    assert isinstance(openai, OpenAIChatModel) and openai.model == "gpt-4o-mini"
    assert isinstance(init_chat_model("gpt-4o"), OpenAIChatModel)
    with pytest.raises(ValueError, match="provider"):
        init_chat_model("llama3")
    with pytest.raises(ValueError, match="unknown model provider"):
        init_chat_model("mystery:model")


def test_a_missing_key_fails_at_create_time_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(MissingAPIKeyError, match="ANTHROPIC_API_KEY"):
        create_agent(model="claude-sonnet-4-6", tools=[weather])
    with pytest.raises(MissingAPIKeyError, match="OPENAI_API_KEY"):
        create_agent(model="openai:gpt-4o", tools=[weather])


async def test_openai_base_url_from_the_environment_reaches_a_local_server(
    monkeypatch: pytest.MonkeyPatch, wire_server: StartServer
) -> None:
    """As the README shows: ``OPENAI_BASE_URL`` alone points ``openai:`` models at a
    compatible server (Ollama, vLLM, LM Studio), no key needed."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server = wire_server(openai_brain)
    monkeypatch.setenv("OPENAI_BASE_URL", f"{server.url}/v1")
    model = init_chat_model("openai:local-llama", backoff=0.001)
    result = await create_agent(model, [weather]).ainvoke({"messages": ["hi"]})
    assert result["messages"][-1].content == "Tool: sunny in Paris"
    assert server.requests[0].body["model"] == "local-llama"
    close = getattr(model, "aclose", None)
    assert close is not None
    await close()


async def test_base_url_reaches_a_local_server_without_a_key(
    monkeypatch: pytest.MonkeyPatch, wire_server: StartServer
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server = wire_server(openai_brain)
    model = init_chat_model("openai:local-llama", base_url=f"{server.url}/v1", backoff=0.001)
    result = await create_agent(model, [weather]).ainvoke({"messages": ["hi"]})
    assert result["messages"][-1].content == "Tool: sunny in Paris"
    assert "authorization" not in server.requests[0].headers
    assert server.requests[0].body["model"] == "local-llama"
    close = getattr(model, "aclose", None)
    assert close is not None
    await close()

"""@tool: names, descriptions, schemas from type hints, validation and coercion."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from memlane.agents import (
    AIMessage,
    HumanMessage,
    ToolMessage,
    ToolRuntime,
    message_from_dict,
    tool,
)
from memlane.agents.messages import coerce_message
from memlane.agents.tools import Tool, ToolArgumentsError, to_content

pytestmark = pytest.mark.anyio


class UserInfo(TypedDict):
    name: str


@dataclass
class Point:
    x: int
    y: int


class Filters(BaseModel):
    tag: str
    limit: int = 5


@dataclass
class Context:
    user_id: str


@tool
def save(user_info: UserInfo, runtime: ToolRuntime[Context]) -> str:
    """Save user info.

    Args:
        user_info: what we know about the user
    """
    return "saved"


@tool("find_things", description="Find things near a point.")
async def find(
    where: Point,
    filters: Filters,
    query: Annotated[str, "what to look for"],
    mode: Literal["fast", "exact"] = "fast",
    radius: float | None = None,
    ctx: ToolRuntime[Context] | None = None,
) -> dict[str, Any]:
    return {"where": where, "filters": filters, "query": query, "mode": mode, "radius": radius}


def test_bare_decorator_takes_name_and_docstring() -> None:
    assert isinstance(save, Tool)
    assert save.name == "save" and save.description == "Save user info."
    props = save.parameters["properties"]
    assert list(props) == ["user_info"] and save.parameters["required"] == ["user_info"]
    assert props["user_info"]["description"] == "what we know about the user"
    assert save.runtime_param == "runtime"


def test_named_decorator_with_description_and_rich_types() -> None:
    spec = find.spec
    assert spec["name"] == "find_things" and spec["description"] == "Find things near a point."
    params = spec["parameters"]
    assert set(params["properties"]) == {"where", "filters", "query", "mode", "radius"}
    assert params["required"] == ["where", "filters", "query"]
    assert params["properties"]["query"]["description"] == "what to look for"
    assert params["properties"]["mode"]["enum"] == ["fast", "exact"]
    assert params["properties"]["mode"]["default"] == "fast"
    assert params["properties"]["radius"]["default"] is None
    assert find.runtime_param == "ctx" and find.is_async


def test_arguments_are_validated_and_coerced() -> None:
    args = find.validate(
        {"where": {"x": "1", "y": 2}, "filters": {"tag": "t"}, "query": "q", "ctx": "forged"}
    )
    assert args == {"where": Point(1, 2), "filters": Filters(tag="t"), "query": "q"}
    forged = {"user_info": {"name": "J"}, "runtime": {}}
    assert save.validate(forged) == {"user_info": {"name": "J"}}
    with pytest.raises(ToolArgumentsError, match=r"where\.x") as info:
        find.validate({"where": {"x": "a", "y": 1}, "filters": {"tag": "t"}, "query": "q"})
    assert "find_things" in str(info.value)
    with pytest.raises(ToolArgumentsError, match="mode"):
        find.validate(
            {"where": {"x": 1, "y": 1}, "filters": {"tag": "t"}, "query": "q", "mode": "slow"}
        )
    with pytest.raises(ToolArgumentsError, match="JSON object"):
        find.validate(["not", "a", "dict"])


async def test_ainvoke_and_invoke_run_sync_and_async_tools() -> None:
    out = await find.ainvoke({"where": {"x": 0, "y": 0}, "filters": {"tag": "a"}, "query": "q"})
    assert out["mode"] == "fast" and out["where"] == Point(0, 0)


def test_invoke_is_the_blocking_twin() -> None:
    assert save.invoke({"user_info": {"name": "J"}}, ToolRuntime(Context("u"))) == "saved"


def test_pydantic_field_descriptions_and_plain_functions() -> None:
    def plain(n: Annotated[int, Field(description="how many", ge=1)] = 1) -> int:
        """Count."""
        return n

    t = tool(plain)
    assert t.parameters["properties"]["n"]["description"] == "how many"
    assert t.parameters.get("required", []) == []
    with pytest.raises(ToolArgumentsError):
        t.validate({"n": 0})
    assert t(3) == 3  # the tool is still callable as the function


def test_bad_tool_definitions_fail_at_decoration() -> None:
    def star(*args: int) -> None:
        """Varargs."""

    with pytest.raises(TypeError, match=r"\*args"):
        tool(star)
    with pytest.raises(ValueError, match="tool name"):
        tool("has spaces")(lambda: None)


def test_results_become_text() -> None:
    assert to_content("as is") == "as is"
    assert to_content({"b": 1, "a": [1.5, None]}) == '{"b":1,"a":[1.5,null]}'
    assert to_content(Filters(tag="x")) == '{"tag":"x","limit":5}'
    assert to_content(Point(1, 2)) == '{"x":1,"y":2}'


def test_messages_round_trip_through_dicts() -> None:
    ai = AIMessage("thinking", [{"id": "c1", "name": "save", "args": {"a": 1}}])
    tm = ToolMessage("done", "c1", "save", "error")
    for message in (HumanMessage("hi"), ai, tm):
        assert message_from_dict(message.to_dict()) == message
    assert coerce_message({"type": "ai", "content": "x"}) == AIMessage("x")
    wire = {"role": "assistant", "tool_calls": [
        {"id": "c9", "type": "function", "function": {"name": "f", "arguments": '{"k": 2}'}}
    ]}
    assert coerce_message(wire) == AIMessage("", [{"id": "c9", "name": "f", "args": {"k": 2}}])
    with pytest.raises(TypeError):
        coerce_message(42)
    with pytest.raises(ValueError, match="tool_call_id"):
        message_from_dict({"role": "tool", "content": "x"})


def test_a_tool_without_a_description_is_refused_naming_the_fix() -> None:
    """LangChain raises too: a model that sees only a name calls the tool blindly."""

    def lookup(city: str) -> str:
        return city

    with pytest.raises(ValueError, match=r"'lookup'.*docstring.*description="):
        tool(lookup)
    with pytest.raises(ValueError, match="docstring"):
        tool(description="   ")(lookup)
    described = tool(description="Look a city up.")(lookup)
    assert described.description == "Look a city up."

"""The agent loop against CONTRACT.md section 4: concurrency, order, errors, context, limits."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import anyio
import pytest

from memlane.agents import (
    AgentEvent,
    AIMessage,
    ContextError,
    HumanMessage,
    RecursionLimitError,
    ScriptedModel,
    SystemMessage,
    ToolArgumentsError,
    ToolMessage,
    ToolRuntime,
    UnknownToolError,
    create_agent,
    tool,
)
from memlane.agents.tools import ToolSpec
from memlane.store.base import BaseStore

pytestmark = pytest.mark.anyio


@dataclass
class Context:
    user_id: str


def calls(*names_args: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"name": n, "args": a} for n, a in names_args]


def tool_messages(result: dict[str, list[Any]]) -> list[ToolMessage]:
    return [m for m in result["messages"] if isinstance(m, ToolMessage)]


# ---- the basic loop ---------------------------------------------------------------------


async def test_loop_runs_tools_until_a_reply_without_calls() -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    model = ScriptedModel([calls(("add", {"a": 1, "b": "2"})), "three"])
    result = await create_agent(model, [add]).ainvoke({"messages": "what is 1+2?"})
    kinds = [type(m) for m in result["messages"]]
    assert kinds == [HumanMessage, AIMessage, ToolMessage, AIMessage]
    assert result["messages"][2].content == "3"
    assert result["messages"][2].tool_call_id == result["messages"][1].tool_calls[0]["id"]
    assert result["messages"][-1].content == "three"


async def test_input_accepts_objects_dicts_tuples_and_strings() -> None:
    model = ScriptedModel(["ok"])
    agent = create_agent(model)
    result = await agent.ainvoke(
        {
            "messages": [
                SystemMessage("be brief"),
                {"role": "user", "content": "one"},
                ("assistant", "two"),
                {"role": "human", "content": "three"},
                "four",
            ]
        }
    )
    assert [m.role for m in result["messages"]] == [
        "system", "user", "assistant", "user", "user", "assistant",
    ]
    with pytest.raises(ValueError, match="role"):
        await agent.ainvoke({"messages": [{"role": "robot", "content": "x"}]})


async def test_system_prompt_is_sent_on_every_call_but_not_returned() -> None:
    @tool
    async def ping() -> str:
        """Ping."""
        return "pong"

    model = ScriptedModel([calls(("ping", {})), calls(("ping", {})), "done"])
    agent = create_agent(model, [ping], system_prompt="You are terse.")
    result = await agent.ainvoke({"messages": ["go"]})
    assert [c.system for c in model.calls] == ["You are terse."] * 3
    assert not any(isinstance(m, SystemMessage) for m in result["messages"])
    assert all(not any(isinstance(m, SystemMessage) for m in c.messages) for c in model.calls)


def test_invoke_is_the_sync_twin() -> None:
    model = ScriptedModel(["hello"])
    result = create_agent(model).invoke({"messages": [{"role": "user", "content": "hi"}]})
    assert result["messages"][-1] == AIMessage("hello")


async def test_invoke_inside_a_loop_points_to_ainvoke() -> None:
    with pytest.raises(RuntimeError, match="ainvoke"):
        create_agent(ScriptedModel(["x"])).invoke({"messages": ["hi"]})


# ---- concurrency and order ---------------------------------------------------------------


async def test_five_async_tools_sleeping_run_together() -> None:
    @tool
    async def nap(i: int) -> str:
        """Sleep a little."""
        await anyio.sleep(0.3)
        return f"nap {i}"

    model = ScriptedModel([calls(*[("nap", {"i": i}) for i in range(5)]), "rested"])
    agent = create_agent(model, [nap])
    start = time.perf_counter()
    result = await agent.ainvoke({"messages": ["sleep"]})
    elapsed = time.perf_counter() - start
    assert elapsed < 0.8, f"5 x 0.3 s tools took {elapsed:.2f} s: they did not run concurrently"
    assert [m.content for m in tool_messages(result)] == [f"nap {i}" for i in range(5)]


async def test_five_sync_tools_sleeping_run_together_in_threads() -> None:
    @tool
    def doze(i: int) -> str:
        """Block a little (a sync tool: it runs in a worker thread)."""
        time.sleep(0.3)
        return f"doze {i}"

    model = ScriptedModel([calls(*[("doze", {"i": i}) for i in range(5)]), "rested"])
    start = time.perf_counter()
    result = await create_agent(model, [doze]).ainvoke({"messages": ["sleep"]})
    elapsed = time.perf_counter() - start
    assert elapsed < 0.8, f"5 x 0.3 s sync tools took {elapsed:.2f} s: not concurrent"
    assert [m.content for m in tool_messages(result)] == [f"doze {i}" for i in range(5)]


async def test_sync_tools_run_concurrently_in_threads() -> None:
    loop_thread = threading.get_ident()
    barrier = threading.Barrier(4, timeout=10)
    seen: list[int] = []

    @tool
    def meet(i: int) -> str:
        """Wait until all four calls are in flight at once."""
        seen.append(threading.get_ident())
        barrier.wait()  # passes only if four threads run this at the same time
        return f"met {i}"

    model = ScriptedModel([calls(*[("meet", {"i": i}) for i in range(4)]), "done"])
    result = await create_agent(model, [meet]).ainvoke({"messages": ["go"]})
    assert [m.content for m in tool_messages(result)] == [f"met {i}" for i in range(4)]
    assert loop_thread not in seen and len(set(seen)) == 4


async def test_results_follow_call_order_when_tools_finish_out_of_order() -> None:
    later_done = anyio.Event()
    finished: list[str] = []

    @tool
    async def first() -> str:
        """Finishes only after the second call finished."""
        await later_done.wait()
        finished.append("first")
        return "first result"

    @tool
    async def second() -> str:
        """Finishes at once."""
        finished.append("second")
        later_done.set()
        return "second result"

    model = ScriptedModel([calls(("first", {}), ("second", {})), "done"])
    result = await create_agent(model, [first, second]).ainvoke({"messages": ["go"]})
    assert finished == ["second", "first"]
    assert [m.content for m in tool_messages(result)] == ["first result", "second result"]


async def test_sync_results_follow_call_order_too() -> None:
    later_done = threading.Event()

    @tool
    def slow() -> str:
        """Waits for the other call."""
        assert later_done.wait(10)
        return "slow"

    @tool
    def fast() -> str:
        """Returns at once."""
        later_done.set()
        return "fast"

    model = ScriptedModel([calls(("slow", {}), ("fast", {})), "done"])
    result = await create_agent(model, [slow, fast]).ainvoke({"messages": ["go"]})
    assert [m.content for m in tool_messages(result)] == ["slow", "fast"]


async def test_max_concurrency_caps_a_turn() -> None:
    in_flight = 0
    peak = 0

    @tool
    async def work(i: int) -> int:
        """Count how many calls run at once."""
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
        in_flight -= 1
        return i

    model = ScriptedModel([calls(*[("work", {"i": i}) for i in range(6)]), "done"])
    result = await create_agent(model, [work], max_concurrency=2).ainvoke({"messages": ["go"]})
    assert peak == 2
    assert [m.content for m in tool_messages(result)] == [str(i) for i in range(6)]


async def test_cancellation_propagates_into_running_tools() -> None:
    started = anyio.Event()
    cancelled = anyio.Event()

    @tool
    async def forever() -> str:
        """Never returns."""
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()
        return "unreachable"  # pragma: no cover

    @tool
    async def quick() -> str:
        """Returns."""
        return "ok"

    model = ScriptedModel([calls(("forever", {}), ("quick", {})), "done"])
    agent = create_agent(model, [forever, quick])
    outcome: list[Any] = []

    async def run() -> None:
        outcome.append(await agent.ainvoke({"messages": ["go"]}))

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await started.wait()
        tg.cancel_scope.cancel()
    assert cancelled.is_set()
    assert outcome == []  # the run was cancelled, not turned into an error message


# ---- tool errors -------------------------------------------------------------------------


@tool
def divide(a: int, b: int) -> float:
    """Divide a by b."""
    return a / b


async def test_the_three_error_kinds_become_error_messages_and_the_loop_goes_on() -> None:
    model = ScriptedModel(
        [
            calls(("divide", {"a": 1, "b": 0}), ("divide", {"a": "x"}), ("nope", {})),
            "sorry",
        ]
    )
    result = await create_agent(model, [divide]).ainvoke({"messages": ["go"]})
    raised, invalid, unknown = tool_messages(result)
    assert [m.status for m in (raised, invalid, unknown)] == ["error"] * 3
    assert "ZeroDivisionError" in raised.content
    assert "invalid arguments" in invalid.content and "a:" in invalid.content
    assert "b:" in invalid.content and "Field required" in invalid.content
    assert "no tool named 'nope'" in unknown.content and "divide" in unknown.content
    assert result["messages"][-1].content == "sorry"
    # the model saw the errors on its next turn
    assert model.calls[-1].messages[-1] is unknown


@pytest.mark.parametrize(
    ("turn", "error"),
    [
        (calls(("divide", {"a": 1, "b": 0})), ZeroDivisionError),
        (calls(("divide", {"a": "x", "b": 1})), ToolArgumentsError),
        (calls(("nope", {})), UnknownToolError),
        (calls(("divide", {"a": 1, "b": 1}), ("divide", {"a": 1, "b": 0})), ZeroDivisionError),
    ],
)
async def test_handle_tool_errors_false_reraises(turn: Any, error: type[Exception]) -> None:
    agent = create_agent(ScriptedModel([turn, "x"]), [divide], handle_tool_errors=False)
    with pytest.raises(error):
        await agent.ainvoke({"messages": ["go"]})


async def test_handle_tool_errors_text_function_and_types() -> None:
    model = ScriptedModel([calls(("divide", {"a": 1, "b": 0})), "x"])
    fixed = await create_agent(model, [divide], handle_tool_errors="try again").ainvoke(
        {"messages": ["go"]}
    )
    assert tool_messages(fixed)[0].content == "try again"
    custom = await create_agent(
        model, [divide], handle_tool_errors=lambda e: f"bad: {type(e).__name__}"
    ).ainvoke({"messages": ["go"]})
    assert tool_messages(custom)[0].content == "bad: ZeroDivisionError"
    with pytest.raises(ZeroDivisionError):
        await create_agent(model, [divide], handle_tool_errors=(KeyError,)).ainvoke(
            {"messages": ["go"]}
        )


async def test_per_tool_timeout_becomes_an_error_message() -> None:
    never = anyio.Event()

    @tool(timeout=0.05)
    async def stuck() -> str:
        """Waits for ever."""
        await never.wait()
        return "no"  # pragma: no cover

    result = await create_agent(ScriptedModel([calls(("stuck", {})), "x"]), [stuck]).ainvoke(
        {"messages": ["go"]}
    )
    assert tool_messages(result)[0].status == "error"
    assert "timed out" in tool_messages(result)[0].content


def records(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == name]


async def test_tool_errors_are_logged_with_name_and_call_id_traceback_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    turn = [
        {"id": "call_zero", "name": "divide", "args": {"a": 1, "b": 0}},
        {"id": "call_bad", "name": "divide", "args": {"a": "x"}},
        {"id": "call_nope", "name": "nope", "args": {}},
    ]
    agent = create_agent(ScriptedModel([turn, "sorry"]), [divide])
    with caplog.at_level(logging.WARNING, logger="memlane"):
        await agent.ainvoke({"messages": ["go"]})
    (warning,) = records(caplog, "memlane.agents.tools")  # the model's mistakes are INFO
    assert warning.levelno == logging.WARNING and warning.exc_info is None
    text = warning.getMessage()
    assert "'divide'" in text and "call_zero" in text and "ZeroDivisionError" in text

    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="memlane"):
        await create_agent(ScriptedModel([turn, "sorry"]), [divide]).ainvoke({"messages": ["go"]})
    logged = records(caplog, "memlane.agents.tools")
    assert {r.levelno for r in logged} == {logging.DEBUG, logging.INFO, logging.WARNING}
    (debug,) = [r for r in logged if r.levelno == logging.DEBUG]
    assert debug.exc_info is not None and debug.exc_info[0] is ZeroDivisionError
    assert "call_zero" in debug.getMessage()
    infos = " ".join(r.getMessage() for r in logged if r.levelno == logging.INFO)
    assert "call_bad" in infos and "call_nope" in infos and "no tool named 'nope'" in infos


async def test_a_tool_without_its_store_or_context_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @tool
    async def remember(runtime: ToolRuntime[Context]) -> str:
        """Needs the store and the context."""
        assert runtime.store is not None, "no store"
        return runtime.context.user_id

    agent = create_agent(ScriptedModel([calls(("remember", {})), "x"]), [remember])
    with caplog.at_level(logging.WARNING, logger="memlane"):
        result = await agent.ainvoke({"messages": ["go"]})
    assert tool_messages(result)[0].status == "error"
    (warning,) = records(caplog, "memlane.agents.tools")
    assert "'remember'" in warning.getMessage() and "no store" in warning.getMessage()


class FailingModel:
    """A model whose every call fails."""

    async def achat(
        self, messages: Sequence[Any], *, system: str | None = None, tools: Sequence[ToolSpec] = ()
    ) -> AIMessage:
        raise RuntimeError("provider exploded")


async def test_a_model_error_is_logged_then_raised(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="memlane"), pytest.raises(RuntimeError):
        await create_agent(FailingModel()).ainvoke({"messages": ["go"]})
    warning, debug = records(caplog, "memlane.agents.models")
    assert warning.levelno == logging.WARNING and warning.exc_info is None
    assert "provider exploded" in warning.getMessage()
    assert debug.levelno == logging.DEBUG and debug.exc_info is not None


class AlwaysCallsTools:
    """A model that never stops asking for a tool: a runaway loop."""

    def __init__(self) -> None:
        self.turns = 0

    async def achat(
        self, messages: Sequence[Any], *, system: str | None = None, tools: Sequence[ToolSpec] = ()
    ) -> AIMessage:
        self.turns += 1
        return AIMessage("", [{"id": f"c{self.turns}", "name": "divide", "args": {"a": 1, "b": 1}}])


async def test_recursion_limit_stops_a_runaway_loop() -> None:
    model = AlwaysCallsTools()
    with pytest.raises(RecursionLimitError, match="recursion_limit=4") as info:
        await create_agent(model, [divide], recursion_limit=4).ainvoke({"messages": ["go"]})
    assert model.turns == 4
    assert len(info.value.messages) == 1 + 4 * 2
    model = AlwaysCallsTools()
    with pytest.raises(RecursionLimitError):
        await create_agent(model, [divide]).ainvoke(
            {"messages": ["go"]}, config={"recursion_limit": 2}
        )
    assert model.turns == 2


async def test_default_recursion_limit_is_25_model_turns() -> None:
    model = AlwaysCallsTools()
    with pytest.raises(RecursionLimitError):
        await create_agent(model, [divide]).ainvoke({"messages": ["go"]})
    assert model.turns == 25


# ---- runtime injection and context -------------------------------------------------------


async def test_runtime_is_injected_and_forged_values_are_dropped(store: BaseStore) -> None:
    seen: list[ToolRuntime[Context]] = []
    state_at_call: list[list[str]] = []

    @tool
    async def by_name(x: int, runtime: ToolRuntime[Context]) -> str:
        """Named runtime."""
        seen.append(runtime)
        state_at_call.append([m.type for m in runtime.state["messages"]])
        return "ok"

    @tool
    def by_annotation(rt: ToolRuntime[Context]) -> str:
        """Runtime under another name."""
        seen.append(rt)
        return "ok"

    model = ScriptedModel(
        [
            calls(
                ("by_name", {"x": 1, "runtime": {"context": {"user_id": "mallory"}}}),
                ("by_annotation", {"rt": "forged"}),
            ),
            "done",
        ]
    )
    agent = create_agent(model, [by_name, by_annotation], store=store, context_schema=Context)
    await agent.ainvoke({"messages": ["go"]}, context=Context("alice"), config={"tag": 1})
    assert [r.context.user_id for r in seen] == ["alice", "alice"]
    assert all(isinstance(r, ToolRuntime) and r.store is store for r in seen)
    assert {r.tool_call_id for r in seen} == {"call_0_0", "call_0_1"}
    assert seen[0].config == {"tag": 1}
    assert state_at_call == [["human", "ai"]]
    for spec in model.calls[0].tools:
        assert "runtime" not in spec["parameters"]["properties"]
        assert "rt" not in spec["parameters"]["properties"]


async def test_dict_context_is_coerced_to_the_schema() -> None:
    got: list[Any] = []

    @tool
    async def who(runtime: ToolRuntime[Context]) -> str:
        """Who is asking."""
        got.append(runtime.context)
        return runtime.context.user_id

    model = ScriptedModel([calls(("who", {})), "done"])
    agent = create_agent(model, [who], context_schema=Context)
    await agent.ainvoke({"messages": ["go"]}, context={"user_id": "u1"})
    assert got == [Context("u1")] and isinstance(got[0], Context)


@pytest.mark.parametrize("bad", [None, "user_1", {"uid": "x"}, {"user_id": ["not", "a", "str"]}])
async def test_missing_or_wrong_context_fails_before_any_model_or_tool_call(bad: Any) -> None:
    ran: list[str] = []

    @tool
    def who(runtime: ToolRuntime[Context]) -> str:
        """Who is asking."""
        ran.append("tool")  # pragma: no cover
        return "x"  # pragma: no cover

    model = ScriptedModel([calls(("who", {})), "done"])
    agent = create_agent(model, [who], context_schema=Context)
    with pytest.raises(ContextError, match="Context"):
        await agent.ainvoke({"messages": ["go"]}, context=bad)
    with pytest.raises(ContextError):
        async for _ in agent.astream({"messages": ["go"]}, context=bad):
            pass  # pragma: no cover
    assert model.calls == [] and ran == []


# ---- results -----------------------------------------------------------------------------


async def test_non_string_results_are_json() -> None:
    @dataclass
    class Point:
        x: int
        y: int

    @tool
    async def point() -> Point:
        """A point."""
        return Point(1, 2)

    @tool
    async def listing() -> list[Any]:
        """A list."""
        return [1, "a", None, {"k": True}]

    model = ScriptedModel([calls(("point", {}), ("listing", {})), "done"])
    result = await create_agent(model, [point, listing]).ainvoke({"messages": ["go"]})
    assert [m.content for m in tool_messages(result)] == [
        '{"x":1,"y":2}',
        '[1,"a",null,{"k":true}]',
    ]


# ---- streaming ---------------------------------------------------------------------------


async def test_astream_yields_messages_tool_results_as_they_finish_and_custom_events() -> None:
    second_done = anyio.Event()

    @tool
    async def slow(runtime: ToolRuntime[None]) -> str:
        """Streams progress, finishes last."""
        runtime.stream_writer({"progress": "slow started"})
        await second_done.wait()
        return "slow"

    @tool
    def fast(runtime: ToolRuntime[None]) -> str:
        """A sync tool that streams from its worker thread."""
        runtime.stream_writer("fast says hi")
        return "fast"

    @tool
    async def mark() -> str:
        """Never called."""
        return ""  # pragma: no cover

    model = ScriptedModel([calls(("slow", {}), ("fast", {})), "done"])
    agent = create_agent(model, [slow, fast, mark])
    events: list[AgentEvent] = []
    async with aclosing(agent.astream({"messages": ["go"]})) as stream:
        async for event in stream:
            events.append(event)
            if event.type == "tool" and event.data.content == "fast":
                second_done.set()
    summary = [(e.type, e.data if e.type == "custom" else e.data.content) for e in events]
    assert summary[0] == ("model", "")
    assert ("custom", {"progress": "slow started"}) in summary
    assert ("custom", "fast says hi") in summary
    tool_events = [s for s in summary if s[0] == "tool"]
    assert tool_events == [("tool", "fast"), ("tool", "slow")]  # in finishing order
    assert summary[-1] == ("model", "done")
    custom = next(e for e in events if e.type == "custom" and e.data == "fast says hi")
    assert custom.tool_name == "fast" and custom.tool_call_id == "call_0_1"
    assert events[-1].to_dict() == {
        "type": "model",
        "data": {"role": "assistant", "content": "done"},
    }


async def test_astream_raises_the_runs_error_and_can_stop_early() -> None:
    model = ScriptedModel([calls(("divide", {"a": 1, "b": 0})), "x"])
    agent = create_agent(model, [divide], handle_tool_errors=False)
    with pytest.raises(ZeroDivisionError):
        async for _ in agent.astream({"messages": ["go"]}):
            pass
    agent = create_agent(ScriptedModel([calls(("divide", {"a": 4, "b": 2})), "x"]), [divide])
    async with aclosing(agent.astream({"messages": ["go"]})) as stream:
        async for event in stream:
            assert event.type == "model"
            break


async def test_concurrent_runs_share_one_agent(store: BaseStore) -> None:
    @tool
    async def remember(fact: str, runtime: ToolRuntime[Context]) -> str:
        """Store a fact for the user."""
        assert runtime.store is not None
        await runtime.store.aput(("facts", runtime.context.user_id), "f", {"fact": fact})
        return "ok"

    def turn(messages: list[Any]) -> list[dict[str, Any]]:
        return calls(("remember", {"fact": messages[0].content}))

    agent = create_agent(
        ScriptedModel([turn, "done"], record=False), [remember], store=store, context_schema=Context
    )
    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(
                lambda i=i: agent.ainvoke({"messages": [f"fact {i}"]}, context={"user_id": f"u{i}"})
            )
    for i in range(50):
        item = await store.aget(("facts", f"u{i}"), "f")
        assert item is not None and item.value == {"fact": f"fact {i}"}

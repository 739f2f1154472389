"""create_agent and the agent loop: model turn, tool calls run concurrently, repeat.

The loop is plain code, not a graph: per run it coerces the input and the context once,
then alternates model calls and tool turns. The tool calls of one turn run in a task group
(a single call is awaited directly, skipping the group); async tools run on the loop, sync
tools in worker threads under a CapacityLimiter. Results are appended in the order of the
model's calls. Everything a tool call needs that does not depend on the call (schemas,
validators, the runtime parameter) was computed when the tool and the agent were built.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import anyio
import anyio.from_thread
import anyio.to_thread

from memlane.agents.messages import AnyMessage, ToolCall, ToolMessage, coerce_messages
from memlane.agents.models.base import ChatModel, init_chat_model
from memlane.agents.runtime import ToolRuntime, context_coercer
from memlane.agents.tools import Tool, ToolArgumentsError, ToolSpec, as_tool, to_content
from memlane.store.base import BaseStore

__all__ = [
    "DEFAULT_RECURSION_LIMIT",
    "Agent",
    "AgentEvent",
    "RecursionLimitError",
    "UnknownToolError",
    "create_agent",
]

tool_log = logging.getLogger("memlane.agents.tools")
"""Failed tool calls: WARNING with the tool's name and call id, the traceback at DEBUG."""
model_log = logging.getLogger("memlane.agents.models")
"""A model call that ended a run: WARNING, the traceback at DEBUG (retries: models.http)."""

DEFAULT_RECURSION_LIMIT = 25
"""Model turns per run; LangGraph's default of 25 steps counts model and tool steps alike."""

ErrorHandler: TypeAlias = (
    bool | str | Callable[[Exception], str] | tuple[type[Exception], ...] | type[Exception]
)
Emit: TypeAlias = Callable[["AgentEvent"], None]


class RecursionLimitError(RuntimeError):
    """A run reached ``recursion_limit`` model turns without a final answer.

    ``messages`` holds the run so far, to see what the model kept asking for.
    """

    def __init__(self, message: str, messages: list[AnyMessage]) -> None:
        super().__init__(message)
        self.messages = messages


class UnknownToolError(LookupError):
    """The model called a tool the agent does not have."""


@dataclass(slots=True, frozen=True)
class AgentEvent:
    """One thing that happened in a streamed run.

    ``type`` is ``"model"`` (``data`` is the AIMessage), ``"tool"`` (``data`` is the
    ToolMessage, sent as each call finishes) or ``"custom"`` (``data`` is what a tool passed
    to ``runtime.stream_writer``; ``tool_call_id``/``tool_name`` say which call sent it).
    """

    type: Literal["model", "tool", "custom"]
    data: Any
    tool_call_id: str | None = None
    tool_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (messages as their dicts)."""
        data = self.data.to_dict() if self.type != "custom" else self.data
        out: dict[str, Any] = {"type": self.type, "data": data}
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
            out["tool_name"] = self.tool_name
        return out


class _Failure:
    """Carries the producer's exception through the event stream to the consumer."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


def _no_writer(_chunk: Any) -> None:
    return None


def _thread_safe_emit(emit: Emit) -> Emit:
    """``emit`` callable from the loop's thread and from worker threads (sync tools)."""
    loop_thread = threading.get_ident()

    def send(event: AgentEvent) -> None:
        if threading.get_ident() == loop_thread:
            emit(event)
        else:
            anyio.from_thread.run_sync(emit, event)

    return send


def _writer(emit: Emit, call_id: str, name: str) -> Callable[[Any], None]:
    def write(chunk: Any) -> None:
        emit(AgentEvent("custom", chunk, call_id, name))

    return write


class Agent:
    """A model, its tools and a store, ready to run: ``ainvoke``, ``invoke``, ``astream``."""

    def __init__(
        self,
        model: ChatModel,
        tools: Sequence[Tool],
        *,
        store: BaseStore | None,
        context_schema: Any,
        system_prompt: str | None,
        max_concurrency: int | None,
        handle_tool_errors: ErrorHandler,
        recursion_limit: int,
        thread_limiter: anyio.CapacityLimiter | None,
    ) -> None:
        self.model = model
        self.tools: dict[str, Tool] = {}
        for t in tools:
            if t.name in self.tools:
                raise ValueError(f"two tools are named {t.name!r}; tool names must be unique")
            self.tools[t.name] = t
        self.store = store
        self.context_schema = context_schema
        self.system_prompt = system_prompt or None
        self.max_concurrency = max_concurrency
        self.handle_tool_errors = handle_tool_errors
        self.recursion_limit = recursion_limit
        self.thread_limiter = thread_limiter
        self._specs: tuple[ToolSpec, ...] = tuple(t.spec for t in self.tools.values())
        self._coerce_context = context_coercer(context_schema)
        self._tool_names = ", ".join(self.tools) or "(none)"

    def __repr__(self) -> str:
        return f"Agent(model={self.model!r}, tools=[{self._tool_names}])"

    # ---- public API ---------------------------------------------------------------------

    async def ainvoke(
        self,
        input: Mapping[str, Any] | Sequence[Any] | str,
        *,
        context: Any = None,
        config: Mapping[str, Any] | None = None,
    ) -> dict[str, list[AnyMessage]]:
        """Run to the model's final answer; ``{"messages": [...]}`` with the whole run."""
        messages = self._input_messages(input)
        ctx = self._coerce_context(context)
        await self._run(messages, ctx, dict(config) if config else {}, None)
        return {"messages": messages}

    def invoke(
        self,
        input: Mapping[str, Any] | Sequence[Any] | str,
        *,
        context: Any = None,
        config: Mapping[str, Any] | None = None,
    ) -> dict[str, list[AnyMessage]]:
        """The blocking twin of :meth:`ainvoke`, for scripts (runs its own event loop)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(
                "agent.invoke() blocks, so it cannot run inside an event loop; "
                "use `await agent.ainvoke(...)` there"
            )
        messages = self._input_messages(input)
        ctx = self._coerce_context(context)
        anyio.run(self._run_and_close, messages, ctx, dict(config) if config else {})
        return {"messages": messages}

    async def astream(
        self,
        input: Mapping[str, Any] | Sequence[Any] | str,
        *,
        context: Any = None,
        config: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[AgentEvent]:
        """Events as they happen: each model message, each tool result, custom events.

        Iterate to the end, or close the iterator (``contextlib.aclosing``) when stopping
        early, so the run is cancelled at once rather than when the iterator is collected.
        """
        messages = self._input_messages(input)
        ctx = self._coerce_context(context)
        cfg = dict(config) if config else {}
        send, receive = anyio.create_memory_object_stream[AgentEvent | _Failure](math.inf)

        async def produce() -> None:
            async with send:
                try:
                    await self._run(messages, ctx, cfg, _thread_safe_emit(send.send_nowait))
                except Exception as exc:  # handed to the consumer, never into the group
                    send.send_nowait(_Failure(exc))

        failure: Exception | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            try:
                async with receive:
                    async for item in receive:
                        if isinstance(item, _Failure):
                            failure = item.error
                            break
                        try:
                            yield item
                        except GeneratorExit:  # closed early: cancel the run, end quietly
                            break
            finally:
                tg.cancel_scope.cancel()
        if failure is not None:  # raised outside the group, so not wrapped in a group
            raise failure

    # ---- the loop -----------------------------------------------------------------------

    def _input_messages(self, input: Mapping[str, Any] | Sequence[Any] | str) -> list[AnyMessage]:
        if isinstance(input, Mapping):
            if "messages" not in input:
                raise ValueError('agent input must be {"messages": [...]}')
            return coerce_messages(input["messages"])
        if isinstance(input, str | Iterable):
            return coerce_messages(input)
        raise TypeError(f'agent input must be {{"messages": [...]}}, got {type(input).__name__}')

    async def _run_and_close(
        self, messages: list[AnyMessage], ctx: Any, config: dict[str, Any]
    ) -> None:
        try:
            await self._run(messages, ctx, config, None)
        finally:
            close = getattr(self.model, "aclose", None)
            if close is not None:
                await close()

    async def _run(
        self,
        messages: list[AnyMessage],
        ctx: Any,
        config: dict[str, Any],
        emit: Emit | None,
    ) -> None:
        limit = config.get("recursion_limit", self.recursion_limit)
        state = {"messages": messages}
        turns = 0
        model = self.model
        while True:
            if turns >= limit:
                raise RecursionLimitError(
                    f"the agent made {turns} model calls without a final answer "
                    f"(recursion_limit={limit}); raise it with create_agent(recursion_limit=...) "
                    "or config={'recursion_limit': ...} if the task needs more turns",
                    messages,
                )
            try:
                reply = await model.achat(messages, system=self.system_prompt, tools=self._specs)
            except Exception as exc:
                _log_failure(model_log, exc, f"model {model!r} failed (turn {turns + 1})")
                raise
            turns += 1
            messages.append(reply)
            if emit is not None:
                emit(AgentEvent("model", reply))
            calls = reply.tool_calls
            if not calls:
                return
            if len(calls) == 1:
                messages.append(await self._call_tool(calls[0], ctx, state, config, emit))
            else:
                messages.extend(await self._call_tools(calls, ctx, state, config, emit))

    async def _call_tools(
        self,
        calls: list[ToolCall],
        ctx: Any,
        state: dict[str, Any],
        config: dict[str, Any],
        emit: Emit | None,
    ) -> list[ToolMessage]:
        results: list[ToolMessage | None] = [None] * len(calls)
        cap = config.get("max_concurrency", self.max_concurrency)
        gate = anyio.Semaphore(cap) if cap is not None and cap < len(calls) else None

        async def one(index: int, call: ToolCall) -> None:
            if gate is None:
                results[index] = await self._call_tool(call, ctx, state, config, emit)
            else:
                async with gate:
                    results[index] = await self._call_tool(call, ctx, state, config, emit)

        try:
            async with anyio.create_task_group() as tg:
                for index, call in enumerate(calls):
                    tg.start_soon(one, index, call)
        except BaseExceptionGroup as group:  # only when handle_tool_errors lets errors out
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
        return results  # type: ignore[return-value]  # every slot was filled

    async def _call_tool(
        self,
        call: ToolCall,
        ctx: Any,
        state: dict[str, Any],
        config: dict[str, Any],
        emit: Emit | None,
    ) -> ToolMessage:
        name = call["name"]
        call_id = call["id"]
        try:
            tool = self.tools.get(name)
            if tool is None:
                raise UnknownToolError(
                    f"there is no tool named {name!r}; the tools are: {self._tool_names}"
                )
            runtime: ToolRuntime[Any] | None = None
            if tool.runtime_param is not None:
                writer = _no_writer if emit is None else _writer(emit, call_id, name)
                runtime = ToolRuntime(ctx, self.store, state, call_id, config, writer)
            fn = tool.prepare(call["args"], runtime)
            if tool.is_async:
                if tool.timeout is None:
                    out = await fn()
                else:
                    with anyio.fail_after(tool.timeout):
                        out = await fn()
            elif tool.timeout is None:
                out = await anyio.to_thread.run_sync(fn, limiter=self.thread_limiter)
            else:
                with anyio.fail_after(tool.timeout):
                    out = await anyio.to_thread.run_sync(
                        fn, limiter=self.thread_limiter, abandon_on_cancel=True
                    )
            if isinstance(out, ToolMessage):
                result = ToolMessage(out.content, call_id, name, out.status)
            else:
                result = ToolMessage(to_content(out), call_id, name)
        except Exception as exc:  # cancellation is a BaseException and passes through
            _log_tool_error(exc, name, call_id)
            result = ToolMessage(self._error_text(exc, name), call_id, name, "error")
        if emit is not None:
            emit(AgentEvent("tool", result, call_id, name))
        return result

    def _error_text(self, exc: Exception, name: str) -> str:
        """What the model is told about a failed call, or re-raise if errors are not handled."""
        handler = self.handle_tool_errors
        if handler is False:
            raise exc
        if isinstance(handler, type | tuple) and not isinstance(exc, handler):
            raise exc
        if isinstance(handler, str):
            return handler
        if callable(handler) and not isinstance(handler, type):
            return handler(exc)
        if isinstance(exc, TimeoutError):
            detail = f"tool {name!r} timed out"
        elif isinstance(exc, UnknownToolError | ToolArgumentsError):
            detail = str(exc)
        else:
            detail = f"tool {name!r} raised {type(exc).__name__}: {exc}"
        return f"Error: {detail}. Please fix your mistakes."


def _log_failure(log: logging.Logger, exc: Exception, what: str) -> None:
    """``what`` and the error at WARNING (one line, no traceback); the traceback at DEBUG."""
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    log.warning("%s: %s", what, detail)
    if log.isEnabledFor(logging.DEBUG):
        log.debug("%s: traceback", what, exc_info=exc)


def _log_tool_error(exc: Exception, name: str, call_id: str) -> None:
    """The model's own mistakes (unknown tool, bad arguments) at INFO; the tool's at WARNING.

    A mistake of the model is told to the model, which usually corrects it; an exception
    raised inside a tool (a missing store or context, a bug, a timeout) is the operator's.
    """
    what = f"tool {name!r} (call {call_id})"
    if isinstance(exc, UnknownToolError | ToolArgumentsError):
        tool_log.info("%s: %s", what, exc)
    else:
        _log_failure(tool_log, exc, f"{what} failed")


def create_agent(
    model: ChatModel | str,
    tools: Iterable[Tool | Callable[..., Any]] = (),
    *,
    store: BaseStore | None = None,
    context_schema: Any = None,
    system_prompt: str | None = None,
    max_concurrency: int | None = None,
    handle_tool_errors: ErrorHandler = True,
    recursion_limit: int = DEFAULT_RECURSION_LIMIT,
    thread_limiter: anyio.CapacityLimiter | None = None,
) -> Agent:
    """An agent: the model calls tools (given the runtime context) until it answers.

    ``model``: a ChatModel or a string (``"anthropic:claude-…"``, ``"claude-…"``,
    ``"openai:gpt-…"``), resolved now, so a missing API key fails here, naming the variable.
    ``handle_tool_errors``: True turns tool failures into error messages for the model;
    False re-raises; a str or a function ``exc -> str`` sets the text; exception types
    limit which errors are handled. ``max_concurrency`` caps the concurrent tool calls of a
    turn; sync tools also share ``thread_limiter`` (default: anyio's, 40 threads per loop).
    """
    if isinstance(model, str):
        model = init_chat_model(model)
    if not callable(getattr(model, "achat", None)):
        raise TypeError(
            f"model must be a ChatModel (with async achat) or a model string, got {model!r}"
        )
    if isinstance(recursion_limit, bool) or recursion_limit < 1:
        raise ValueError(f"recursion_limit must be a positive int, got {recursion_limit!r}")
    if max_concurrency is not None and max_concurrency < 1:
        raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency!r}")
    return Agent(
        model,
        [as_tool(t) for t in tools],
        store=store,
        context_schema=context_schema,
        system_prompt=system_prompt,
        max_concurrency=max_concurrency,
        handle_tool_errors=handle_tool_errors,
        recursion_limit=recursion_limit,
        thread_limiter=thread_limiter,
    )


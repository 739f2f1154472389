"""``@tool``: a function becomes a tool with a JSON schema derived from its type hints.

Everything about a tool that does not depend on a call is computed once, when it is
decorated: the pydantic validator (a ``TypeAdapter`` over a TypedDict of the parameters),
the JSON schema the model sees, the runtime parameter, sync or async. A call then costs one
validation and the function call itself. Defaults are applied by Python (absent arguments
are simply not passed), so a parameter with a default is optional in the schema.
"""

from __future__ import annotations

import inspect
import re
import types
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import (
    Annotated,
    Any,
    ForwardRef,
    Union,
    cast,
    get_args,
    get_origin,
    get_type_hints,
    overload,
)

import anyio
import anyio.to_thread
import orjson
from pydantic import Field, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from typing_extensions import NotRequired, Required, TypedDict  # noqa: UP035 - pydantic<3.12

from memlane.agents.runtime import ToolRuntime

__all__ = [
    "INVALID_JSON_KEY",
    "Tool",
    "ToolArgumentsError",
    "ToolSpec",
    "as_tool",
    "to_content",
    "tool",
]

INVALID_JSON_KEY = "__invalid_json__"
"""Model adapters put unparsable argument text under this key, so the model is told."""


class ToolSpec(TypedDict):
    """What a model is told about a tool: name, description, JSON schema of the arguments."""

    name: str
    description: str
    parameters: dict[str, Any]


class ToolArgumentsError(ValueError):
    """The model's arguments do not fit the tool's schema."""


_ARGS_HEADER = re.compile(r"^\s*(Args|Arguments|Parameters)\s*:\s*$")
_SECTION_HEADER = re.compile(r"^\s*(Returns|Raises|Yields|Examples?|Notes?)\s*:\s*$")
_ARG_LINE = re.compile(r"^\s*(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)$")


def _parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """The description (without Google-style sections) and per-argument descriptions."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    args: dict[str, str] = {}
    section = "summary"
    current: str | None = None
    for line in lines:
        if _ARGS_HEADER.match(line):
            section, current = "args", None
            continue
        if _SECTION_HEADER.match(line):
            section, current = "other", None
            continue
        if section == "summary":
            summary.append(line)
        elif section == "args":
            match = _ARG_LINE.match(line)
            indented = line[: len(line) - len(line.lstrip())]
            if match and (current is None or len(indented) <= 4):
                current = match.group(1).lstrip("*")
                args[current] = match.group(3).strip()
            elif current is not None and line.strip():
                args[current] = f"{args[current]} {line.strip()}".strip()
    return "\n".join(summary).strip(), args


def _is_runtime_annotation(annotation: Any) -> bool:
    if annotation is ToolRuntime:
        return True
    origin = get_origin(annotation)
    if origin is ToolRuntime:
        return True
    if origin is Annotated:
        return _is_runtime_annotation(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return any(_is_runtime_annotation(a) for a in get_args(annotation))
    if isinstance(annotation, str | ForwardRef):
        text = annotation if isinstance(annotation, str) else annotation.__forward_arg__
        return re.match(r"^\s*(\w+\.)*ToolRuntime\b", text) is not None
    return False


def _resolve_hints(func: Callable[..., Any]) -> dict[str, Any]:
    """Type hints with ``Annotated`` kept; a hint that cannot be resolved stays a string."""
    try:
        return get_type_hints(func, include_extras=True)
    except Exception:
        pass
    hints: dict[str, Any] = {}
    namespace = getattr(func, "__globals__", {})
    for name, raw in getattr(func, "__annotations__", {}).items():
        if not isinstance(raw, str):
            hints[name] = raw
            continue
        try:
            hints[name] = eval(raw, namespace)  # the annotation text, as typing would
        except Exception:
            hints[name] = raw
    return hints


def _with_description(annotation: Any, description: str | None) -> Any:
    """``Annotated`` string metadata (and docstring text) becomes a pydantic description."""
    if get_origin(annotation) is Annotated:
        base, *meta = get_args(annotation)
        has_description = any(isinstance(m, FieldInfo) and m.description for m in meta)
        texts = [m for m in meta if isinstance(m, str)]
        if texts and not has_description:
            return Annotated[base, *meta, Field(description=" ".join(texts))]
        if has_description or description is None:
            return annotation
        return Annotated[base, *meta, Field(description=description)]
    if description:
        return Annotated[annotation, Field(description=description)]
    return annotation


def _json_default(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    as_dict = getattr(value, "dict", None)
    if callable(as_dict):
        return as_dict()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def to_content(value: Any) -> str:
    """A tool's result as message text: a ``str`` as is, anything else as JSON (orjson)."""
    if isinstance(value, str):
        return value
    return orjson.dumps(value, default=_json_default, option=orjson.OPT_NON_STR_KEYS).decode()


def _format_validation_error(name: str, exc: ValidationError) -> str:
    problems = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "arguments"
        problems.append(f"{where}: {err['msg']}")
    return f"invalid arguments for tool {name!r}: " + "; ".join(problems)


class Tool:
    """A callable the agent offers to the model, with its validator and schema precomputed."""

    __slots__ = (
        "_adapter",
        "description",
        "func",
        "is_async",
        "name",
        "parameters",
        "runtime_param",
        "spec",
        "timeout",
    )

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
    ) -> None:
        if not callable(func):
            raise TypeError(f"@tool needs a function, got {func!r}")
        self.func = func
        self.name: str = name or str(getattr(func, "__name__", ""))
        if not self.name or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", self.name):
            raise ValueError(
                f"tool name {self.name!r} must be 1-64 letters, digits, '_' or '-' "
                "(what the model APIs accept)"
            )
        if description is not None and not isinstance(description, str):
            raise TypeError(f"tool description must be a str, got {description!r}")
        summary, arg_docs = _parse_docstring(inspect.getdoc(func))
        self.description = (description if description is not None else summary).strip()
        if not self.description:
            raise ValueError(
                f"tool {self.name!r} ({getattr(func, '__qualname__', func)!r}) has no description: "
                "the model would see only its name. Give the function a docstring or pass "
                "@tool(description=...)"
            )
        self.is_async = inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
            getattr(func, "__call__", None)  # noqa: B004 - async callable objects
        )
        self.timeout = timeout
        self.runtime_param: str | None = None

        fields: dict[str, Any] = {}
        defaults: dict[str, Any] = {}
        hints = _resolve_hints(func)
        for param in inspect.signature(func).parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise TypeError(
                    f"tool {self.name!r}: *args/**kwargs cannot be described to a model; "
                    "give every argument a name and a type"
                )
            if param.kind is param.POSITIONAL_ONLY:
                raise TypeError(f"tool {self.name!r}: positional-only parameters are not supported")
            annotation = hints.get(param.name, Any)
            if _is_runtime_annotation(annotation) or param.name == "runtime":
                self.runtime_param = param.name
                continue
            if isinstance(annotation, str):
                raise TypeError(
                    f"tool {self.name!r}: cannot resolve the type hint {annotation!r} of "
                    f"{param.name!r}; define it at module level"
                )
            annotation = _with_description(annotation, arg_docs.get(param.name))
            if param.default is inspect.Parameter.empty:
                fields[param.name] = Required[annotation]
            else:
                fields[param.name] = NotRequired[annotation]
                defaults[param.name] = param.default

        args_type: Any = TypedDict(f"{self.name}_arguments", fields)  # type: ignore[misc]
        self._adapter: TypeAdapter[dict[str, Any]] = cast(Any, TypeAdapter(args_type))
        schema = self._adapter.json_schema()
        schema.pop("title", None)
        schema.setdefault("properties", {})
        for key, default in defaults.items():
            try:
                orjson.dumps(default)
            except TypeError:
                continue
            schema["properties"][key]["default"] = default
        self.parameters: dict[str, Any] = schema
        self.spec: ToolSpec = {
            "name": self.name,
            "description": self.description,
            "parameters": schema,
        }

    def __repr__(self) -> str:
        return f"Tool(name={self.name!r})"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the underlying function directly (no validation, no runtime)."""
        return self.func(*args, **kwargs)

    def validate(self, args: Any) -> dict[str, Any]:
        """The model's arguments validated and coerced; unknown (and forged runtime) keys dropped.

        Raises :class:`ToolArgumentsError` with a readable account of what is wrong.
        """
        if not isinstance(args, Mapping):
            raise ToolArgumentsError(
                f"invalid arguments for tool {self.name!r}: expected a JSON object, "
                f"got {type(args).__name__}"
            )
        if INVALID_JSON_KEY in args:
            raise ToolArgumentsError(
                f"invalid arguments for tool {self.name!r}: not valid JSON: "
                f"{str(args[INVALID_JSON_KEY])[:200]}"
            )
        try:
            return self._adapter.validate_python(args)
        except ValidationError as exc:
            raise ToolArgumentsError(_format_validation_error(self.name, exc)) from None

    def prepare(self, args: Any, runtime: ToolRuntime[Any] | None) -> Callable[[], Any]:
        """A zero-argument callable that runs the tool: a coroutine function or a sync one."""
        kwargs = self.validate(args)
        if self.runtime_param is not None:
            kwargs[self.runtime_param] = runtime
        return partial(self.func, **kwargs)

    async def ainvoke(
        self,
        args: Mapping[str, Any],
        runtime: ToolRuntime[Any] | None = None,
        *,
        limiter: anyio.CapacityLimiter | None = None,
    ) -> Any:
        """Validate ``args`` and run the tool (sync tools in a worker thread); the raw result."""
        call = self.prepare(args, runtime)
        if self.is_async:
            if self.timeout is None:
                return await cast(Callable[[], Awaitable[Any]], call)()
            with anyio.fail_after(self.timeout):
                return await cast(Callable[[], Awaitable[Any]], call)()
        if self.timeout is None:
            return await anyio.to_thread.run_sync(call, limiter=limiter)
        with anyio.fail_after(self.timeout):
            return await anyio.to_thread.run_sync(call, limiter=limiter, abandon_on_cancel=True)

    def invoke(self, args: Mapping[str, Any], runtime: ToolRuntime[Any] | None = None) -> Any:
        """The blocking twin of :meth:`ainvoke` (for scripts and tests without a loop)."""
        return anyio.run(partial(self.ainvoke, args, runtime))


@overload
def tool(func: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    name: str | None = None,
    /,
    *,
    description: str | None = None,
    timeout: float | None = None,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    name_or_func: str | Callable[..., Any] | None = None,
    /,
    *,
    description: str | None = None,
    timeout: float | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a tool: ``@tool``, ``@tool("name")``, ``@tool(description=..., timeout=...)``.

    The name defaults to the function's, the description to its docstring (Google-style
    ``Args:`` lines describe the arguments). ``timeout`` (seconds) bounds one call.
    """
    if callable(name_or_func):
        return Tool(name_or_func, description=description, timeout=timeout)

    def decorate(func: Callable[..., Any]) -> Tool:
        return Tool(func, name=name_or_func, description=description, timeout=timeout)

    return decorate


def as_tool(value: Tool | Callable[..., Any]) -> Tool:
    """A :class:`Tool` as is; a plain function wrapped as ``@tool`` would."""
    return value if isinstance(value, Tool) else Tool(value)

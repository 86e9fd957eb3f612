"""Notebook functions as Gemini tools: declarations from signatures, and safe calls.

Only functions the user named (`--tools f,g`) or marked (`@gemini_magic.tool`) are
ever callable; a call to anything else goes back to the model as an error, unrun.

    @gemini_magic.tool
    def get_weather(city: str, unit: Literal["C", "F"] = "C") -> dict:
        '''Current weather for a city.

        Args:
            city: The city name, e.g. "Paris".
            unit: Temperature unit.
        '''
"""

from __future__ import annotations

import inspect
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import GeminiError
from .options import APPROVE_MODES

_default_tools: dict[str, Callable] = {}


class ToolError(GeminiError):
    kind = "tool"


def tool(fn: Callable | None = None, *, confirm: bool = False):
    """Mark a function as a default tool of every `%%gemini` cell.

    `confirm=True` asks before each call, whatever `--approve` says.

    >>> @tool(confirm=True)
    ... def delete_file(path: str) -> str: ...
    """

    def mark(f: Callable) -> Callable:
        f.__gemini_tool__ = {"confirm": confirm}
        _default_tools[f.__name__] = f
        return f

    return mark(fn) if fn is not None else mark


def default_tools() -> dict[str, Callable]:
    return dict(_default_tools)


# -- declarations -----------------------------------------------------------------------


_SECTION = re.compile(
    r"^\s*(Args|Arguments|Parameters|Params|Returns?|Raises|Yields|Examples?|Notes?|See Also)\s*:?\s*$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """The summary and the parameter descriptions of a Google, NumPy or reST docstring."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    params: dict[str, str] = {}
    summary: list[str] = []
    section = None
    current = None
    numpy_style = False
    for index, line in enumerate(lines):
        rest = re.match(r"^\s*:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$", line)  # reST
        if rest:
            current = rest.group(1)
            params[current] = rest.group(2).strip()
            section = "rest"
            continue
        if re.match(r"^\s*:(type|rtype|returns?|raises?)\b", line):
            section, current = "rest-other", None
            continue
        heading = _SECTION.match(line)
        underline = index + 1 < len(lines) and re.fullmatch(r"\s*-{3,}\s*", lines[index + 1])
        if heading or (underline and line.strip()):
            name = (heading.group(1) if heading else line.strip()).lower()
            section = "params" if name in ("args", "arguments", "parameters", "params") else "other"
            # NumPy sections are underlined; there only an unindented "name : type"
            # starts a parameter, so "    Default: C." stays in the description.
            numpy_style = bool(underline)
            current = None
            continue
        if re.fullmatch(r"\s*-{3,}\s*", line):
            continue
        if section is None:
            summary.append(line)
        elif section == "params":
            google = re.match(r"^\s{0,8}(\*{0,2}\w+)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$", line)
            numpy = re.match(r"^(\w+)\s*(?::\s*(.*))?$", line)  # "name : type", unindented
            if numpy_style:
                if numpy and not line.startswith((" ", "\t")):
                    current = numpy.group(1)
                    params[current] = ""
                elif current and line.strip():
                    params[current] = (params[current] + " " + line.strip()).strip()
            elif google and not (current and line.startswith("        ")):
                current = google.group(1).lstrip("*")
                params[current] = google.group(3).strip()
            elif current and line.strip():
                params[current] = (params[current] + " " + line.strip()).strip()
        elif section == "rest" and current and line.startswith((" ", "\t")) and line.strip():
            params[current] += " " + line.strip()
    return " ".join(" ".join(summary).split()), params


@dataclass
class BoundTool:
    """A function with its declaration and its argument validator."""

    name: str
    function: Callable
    description: str
    schema: dict  # JSON schema of the parameters
    validator: Any  # pydantic model class
    confirm: bool = False
    kind: str = "function"  # "code": runs code the model wrote (agent mode); approved by its own rule
    run: Callable | None = None  # run(call, kwargs) in place of function(**kwargs): fills call.detail as it goes

    def declaration(self) -> dict:
        return {"name": self.name, "description": self.description, "parameters_json_schema": self.schema}


def bind(function: Callable, name: str | None = None) -> BoundTool:
    """Declare a function from its signature, hints and docstring; a parameter that
    cannot be declared is an error here, before any request is sent."""
    import pydantic

    name = name or function.__name__
    if not callable(function):
        raise ToolError(f"Tool {name!r} is a {type(function).__name__}, not a function.", "Name a function.")
    summary, described = parse_docstring(inspect.getdoc(function))
    try:
        signature = inspect.signature(function)
        hints = _hints(function)
    except (TypeError, ValueError, NameError) as exc:
        raise ToolError(f"Tool {name}: cannot read its signature ({exc}).", "Use a plain Python function.") from None
    fields: dict[str, Any] = {}
    for parameter in signature.parameters.values():
        where = f"Tool {name}, parameter {parameter.name!r}"
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise ToolError(f"{where}: *args and **kwargs cannot be declared.", "Give each parameter a name and type.")
        if parameter.name not in hints:
            raise ToolError(f"{where} has no type hint.", "Add one, e.g. `city: str`.")
        annotation = hints[parameter.name]
        default = ... if parameter.default is parameter.empty else parameter.default
        try:
            pydantic.TypeAdapter(annotation).json_schema()
        except Exception as exc:
            raise ToolError(f"{where}: its type {annotation!r} cannot be declared ({type(exc).__name__}).",
                            "Use str, int, float, bool, Literal, Enum, list, dict, a dataclass or a pydantic model.") \
                from None
        fields[parameter.name] = (annotation, pydantic.Field(default, description=described.get(parameter.name)))
    model = pydantic.create_model(f"{name}_arguments", **fields)
    schema = model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    confirm = bool(getattr(function, "__gemini_tool__", {}).get("confirm"))
    return BoundTool(name, function, summary or name, schema, model, confirm)


def _hints(function: Callable) -> dict:
    import typing

    return typing.get_type_hints(function, include_extras=True)


# -- calls ------------------------------------------------------------------------------


@dataclass
class ToolCall:
    id: str | None
    name: str
    args: dict
    status: str = "pending"  # pending, running, ok, error, refused, unknown, skipped
    result: Any = None  # what goes back to the model (JSON-able)
    shown: str = ""  # a bounded text of the result, for the card
    error: str = ""
    seconds: float = 0.0
    parts: list = field(default_factory=list)  # image results, sent back as parts
    kind: str = "function"  # the tool's kind ("code" for agent mode's run_python), for the card
    edited: bool = False  # the user changed the code before it ran (the chat widget's Edit)
    detail: Any = None  # what a code run captured (agent.code_runs.CodeRun), for its card
    progress: Any = None  # () -> None: the front end shows the call again (a code run's output as it comes)
    number: int = 0  # agent mode: which code run of the answer this is (#1, #2...), in its card and question
    approved: bool | None = None  # what the user answered when asked (None: not asked)


def _run_function(function: Callable, kwargs: dict) -> Any:
    if inspect.iscoroutinefunction(function):
        import asyncio
        import concurrent.futures

        # A running event loop (ipykernel's) forbids asyncio.run in this thread;
        # a fresh thread has none.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, function(**kwargs)).result()
    return function(**kwargs)


def to_response(value: Any, limit: int = 4000, secrets: tuple = ()) -> tuple[dict, str, list]:
    """A tool's return value -> (function response, text for the card, image parts)."""
    from .context import Limits, summarize

    kind = type(value)
    if kind.__module__.startswith("PIL.") and hasattr(value, "save"):
        import io

        from .client import types

        buffer = io.BytesIO()
        value.save(buffer, format="PNG")
        blob = types().FunctionResponseBlob(mime_type="image/png", data=buffer.getvalue())
        return {"result": "image attached"}, f"<image {value.size[0]}x{value.size[1]}>", [
            types().FunctionResponsePart(inline_data=blob)]
    try:
        # Through JSON and back: what is sent is exactly valid JSON (no NaN, keys as
        # strings), whatever the function returned.
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        if len(text) <= limit:
            plain = json.loads(text)
            return (plain if isinstance(plain, dict) else {"result": plain}), text, []
    except (TypeError, ValueError):
        pass
    summary = summarize(value, Limits(chars=limit, secrets=secrets))  # scrubbed before it is cut
    return {"result": summary}, summary, []


class Toolbox:
    """The tools of one request, and the rules for calling them."""

    def __init__(self, tools: list[BoundTool], approve: str = "auto", ask: Callable | None = None,
                 code_approve: str = "ask", secrets: Callable[[], list[str]] | None = None):
        for mode in (approve, code_approve):
            if mode not in APPROVE_MODES:
                raise ToolError(f"--approve must be one of {', '.join(APPROVE_MODES)}.", "")
        self.tools = {t.name: t for t in tools}
        self.approve = approve
        # Code the model wrote (agent mode) has its own rule, "ask" unless the user opted in
        # with --approve auto: GeminiMagics.approve's default "auto" is for the user's functions.
        self.code_approve = code_approve
        self.ask = ask  # front end's question: ask(call) -> bool
        self.secrets = secrets  # -> the key(s), scrubbed from what a call shows and returns

    def kind(self, name: str) -> str:
        bound = self.tools.get(name)
        return bound.kind if bound is not None else "function"

    def __bool__(self) -> bool:
        return bool(self.tools)

    def declarations(self) -> list[dict]:
        return [t.declaration() for t in self.tools.values()]

    def needs_approval(self, call: ToolCall) -> bool:
        bound = self.tools.get(call.name)
        if bound is None:
            return False
        return self.approve == "ask" or bound.confirm or (bound.kind == "code" and self.code_approve != "auto")

    def run(self, call: ToolCall) -> ToolCall:
        """Run one call by the rules; never raises (errors go back to the model), but
        for KeyboardInterrupt: the call is marked interrupted and the interrupt goes on."""
        try:
            return self._run(call)
        finally:
            self._scrub(call)

    def _run(self, call: ToolCall) -> ToolCall:
        bound = self.tools.get(call.name)
        if bound is not None:
            call.kind = bound.kind
        if bound is None:
            call.status = "unknown"
            call.error = f"No function named {call.name!r} is available."
            call.result = {"error": call.error + f" Available: {', '.join(self.tools) or 'none'}."}
            return call
        if self.approve == "never" or (bound.kind == "code" and self.code_approve == "never"):
            return self._refuse(call, "Tool calls are switched off (--approve never).")
        if self.needs_approval(call):
            if self.ask is None:
                return self._refuse(call, "Nobody can approve this call here (no way to ask).")
            try:
                allowed = bool(self.ask(call))
            except KeyboardInterrupt:  # Ctrl-C at the question: not run, and the answer stops
                self._interrupted(call)
                raise
            except (EOFError, OSError, NotImplementedError) as exc:
                # A frontend that cannot ask (nbclient, papermill: no stdin) refuses.
                return self._refuse(call, f"Nobody can approve this call here ({type(exc).__name__}).")
            except Exception as exc:  # a bug in asking: refused, and said, never silently
                return self._refuse(call, f"Asking for approval failed ({type(exc).__name__}: {exc}).")
            call.approved = allowed
            if not allowed:
                return self._refuse(call, "The user declined this call.")
        call.status = "running"
        started = time.perf_counter()
        try:
            arguments = bound.validator.model_validate(call.args or {})
            kwargs = {name: getattr(arguments, name) for name in bound.validator.model_fields}
            value = bound.run(call, kwargs) if bound.run is not None else _run_function(bound.function, kwargs)
            call.seconds = time.perf_counter() - started
            respond = getattr(value, "tool_response", None)
            if callable(respond) and bound.run is not None:
                # A built-in tool's own answer (a code run: its outputs, its error, its figures).
                status, call.result, call.shown, call.parts = respond(call)
                call.error = call.shown if status != "ok" else ""
            else:
                secrets = tuple(s for s in (self.secrets() if self.secrets else []) if s)
                status = "ok"
                call.result, call.shown, call.parts = to_response(value, secrets=secrets)
            call.status = status
        except KeyboardInterrupt:
            call.seconds = time.perf_counter() - started
            self._interrupted(call)
            raise
        except Exception as exc:  # the model hears of it and may try again
            call.seconds = time.perf_counter() - started
            call.status = "error"
            call.error = f"{type(exc).__name__}: {exc}"
            call.result = {"error": call.error}
        return call

    @staticmethod
    def _interrupted(call: ToolCall) -> None:
        call.status = "interrupted"
        call.error = "Interrupted by the user."
        call.result = {"error": "Interrupted by the user before it finished."}

    def _scrub(self, call: ToolCall) -> None:
        """The key out of what a call returns and shows (agent code can print os.environ)."""
        secrets = [s for s in (self.secrets() if self.secrets else []) if s]
        if secrets:
            call.result = scrub_all(call.result, secrets)
            call.shown, call.error = scrub_all(call.shown, secrets), scrub_all(call.error, secrets)

    def _refuse(self, call: ToolCall, reason: str) -> ToolCall:
        call.status = "refused"
        call.error = reason
        call.result = {"error": reason + " Do not call it again; answer without it."}
        return call


def scrub_all(value: Any, secrets: list[str]) -> Any:
    """`value` (str, or JSON-like lists and dicts of them) with each secret redacted."""
    from .errors import scrub

    if isinstance(value, str):
        for secret in secrets:
            value = scrub(value, secret)
        return value
    if isinstance(value, dict):
        return {scrub_all(k, secrets): scrub_all(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_all(v, secrets) for v in value]
    return value


def resolve(names: list[str], namespace: dict) -> list[BoundTool]:
    """`--tools a,b`: bind those functions from the namespace, plus the marked defaults."""
    bound: dict[str, BoundTool] = {}
    for name, function in _default_tools.items():
        bound[name] = bind(function, name)
    for name in names:
        if name not in namespace:
            raise ToolError(f"--tools: no function named {name!r} in the notebook.", "Define it first.")
        bound[name] = bind(namespace[name], name)
    return list(bound.values())

"""Front-end parity: every option, through each front end, reaches the wire or is refused.

The rule (options.py): "Every option works the same in every front end, or is refused
there with a message that names it. Never silently dropped." So for each option of
`OPTIONS` (each flag: `chat` is both `-c NAME` and `--no-chat`) and each front end:

- refused there (`REFUSED`): the call fails with a message naming the flag
  (`flag_of`), and nothing reaches the server;
- otherwise it runs without error and its representative value is seen on the wire
  (what the fake server received; a Batch API job's items are read from the job), or,
  for an option that never travels (out, format, usage, debug, column, concurrency),
  its effect in that front end is seen (a variable, a footer, a column ...).

Front ends, each called in its own syntax: "cell" (`%%gemini` flags), "over"
(`%%gemini --over xs`), "over-api" (`%%gemini --over xs --batch-api`), "batch"
(`gemini_magic.batch(..., mode="local")`), "batch-api" (`mode="api"`), "widget"
(`ChatWidget(..., options=Options(...))`) and "ask" (`gemini_magic.ask(...)`), all
through the real SDK over real HTTP to tests/fake_gemini.
"""

from __future__ import annotations

import io
import re
import shlex
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pytest
from PIL import Image
from pydantic import BaseModel

import gemini_magic
from gemini_magic.batches import ItemError
from gemini_magic.options import OPTIONS, REFUSED, Options, flag_of
from tests.conftest import ask
from tests.fake_gemini import Error, ReceivedRequest, Reply

GENERATE = ("generateContent", "streamGenerateContent")
MODEL = "gemini-2.5-pro"  # not the default model, and in the fake's list (the widget's dropdown offers it)

# Each front end, and the entry of REFUSED that says what it cannot take.
FRONT_ENDS = {"cell": "cell", "over": "batch", "over-api": "batch-api", "batch": "batch", "batch-api": "batch-api",
              "widget": "widget", "ask": "ask"}
BATCHES = ("over", "over-api", "batch", "batch-api")
# A cell's --over takes these itself (its rows, where results go, how they are sent),
# so the items' requests never see them: REFUSED["batch"] is batch()'s keywords. A job
# has no requests in flight from here: --concurrency stays refused with --batch-api.
OWN = {"over": {"over", "out", "column", "batch_api", "concurrency"},
       "over-api": {"over", "out", "column", "batch_api"}}


def is_refused(dest: str, front: str) -> bool:
    return dest in REFUSED[FRONT_ENDS[front]] and dest not in OWN.get(front, ())


class Point(BaseModel):
    a: int


TOOL = (
    "ran = []\n"
    "def lookup(city: str) -> dict:\n"
    "    '''Weather of a city.'''\n"
    "    ran.append(city)\n"
    "    return {'city': city, 'sky': 'sunny'}\n"
)


# -- reading the wire --------------------------------------------------------------------------------


def _k(obj, camel: str):
    """A wire key in camelCase or snake_case (the SDK sends both)."""
    if not isinstance(obj, dict):
        return None
    if camel in obj:
        return obj[camel]
    return obj.get(re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower())


def gen(request, *path: str):
    """A generationConfig value: gen(req, "thinkingConfig", "thinkingBudget")."""
    value = _k(request.body, "generationConfig")
    for camel in path:
        value = _k(value, camel)
    return value


def contents(request) -> list:
    return _k(request.body, "contents") or []


def function_responses(request) -> list[dict]:
    last = contents(request)[-1] if contents(request) else {}
    return [_k(p, "functionResponse") for p in _k(last, "parts") or [] if _k(p, "functionResponse") is not None]


def tool_config_mode(request):
    return _k(_k(_k(request.body, "toolConfig"), "functionCallingConfig"), "mode")


def tool_kinds(request) -> set[str]:
    """The keys of the request's tools: functionDeclarations, googleSearch, ... (camelCase)."""
    kinds = set()
    for tool in _k(request.body, "tools") or []:
        for key, value in tool.items():
            if value is not None:
                kinds.add(re.sub(r"_([a-z])", lambda m: m.group(1).upper(), key))
    return kinds


def declared(request) -> set[str]:
    return {d["name"] for t in _k(request.body, "tools") or [] for d in _k(t, "functionDeclarations") or []}


def width(data: bytes) -> int:
    return Image.open(io.BytesIO(data)).size[0]


# -- one call through a front end -----------------------------------------------------------------------


@dataclass
class Run:
    front: str
    ip: Any
    server: Any
    start: int  # server.requests before the call: what came after is the call's
    result: Any = None
    error: BaseException | None = None
    said: str = ""  # the widget's status line (where it refuses)
    output: str = ""  # stdout and stderr, and the widget's last message

    @property
    def new(self) -> list:
        return self.server.requests[self.start:]

    def sent(self) -> list:
        """What reached the wire as generation: generate requests, and every item of a
        Batch API job made by this call (as a ReceivedRequest of its own)."""
        found = [r for r in self.new if r.action in GENERATE]
        made = sum(r.action == "batchGenerateContent" for r in self.new)
        jobs = list(self.server.batches.values())[-made:] if made else []  # in the order they were made
        for job in jobs:
            for item in job["requests"]:
                found.append(ReceivedRequest("POST", f"/v1/models/{job['model']}:generateContent", "v1",
                                             job["model"], "batchItem", {}, {}, item["request"]))
        return found

    def each(self) -> list:
        sent = self.sent()
        assert sent, f"nothing reached the server in {self.front}: {[r.action for r in self.new]}"
        return sent

    def generated(self) -> list:
        return [r for r in self.new if r.action in GENERATE]


def answers(result) -> list:
    """A front end's answers: the results of a batch, or the one answer."""
    if isinstance(result, pd.DataFrame):
        return [v for column in result.columns if column != "item" for v in result[column]]
    if isinstance(result, (list, pd.Series)):
        return list(result)
    return [result]


# -- checks: what each representative value must do where it is not refused ------------------------------


def _all(run: Run, test: Callable, what: str) -> None:
    bad = [r for r in run.each() if not test(r)]
    assert not bad, f"{run.front}: {len(bad)} of {len(run.sent())} requests lack {what}: {bad[0].body}"


def check_model(run):
    _all(run, lambda r: r.model == MODEL, f"model {MODEL}")


def config_is(path: tuple, value) -> Callable[[Run], None]:
    return lambda run: _all(run, lambda r: gen(r, *path) == value, f"generationConfig.{'.'.join(path)} == {value!r}")


def check_service_tier(run):
    _all(run, lambda r: _k(r.body, "serviceTier") == "flex", "serviceTier flex")


def check_system(run):
    _all(run, lambda r: r.system_texts() == ["Be brief."], "the system instruction")


def check_out(run):
    value = run.ip.user_ns.get("res")
    assert value is not None, f"{run.front}: --out res set no variable"
    text = value.to_string() if isinstance(value, pd.DataFrame) else str(value)
    assert "Echo: Say" in text, f"{run.front}: --out res holds {value!r}"


def check_format(run):
    assert getattr(run.ip, "rl_next_input", None) == "print(1)", f"{run.front}: -f code put no code in the next cell"


def check_json(run):
    _all(run, lambda r: gen(r, "responseMimeType") == "application/json", "responseMimeType application/json")


def check_schema(run):
    check_json(run)
    _all(run, lambda r: "a" in ((gen(r, "responseJsonSchema") or {}).get("properties") or {}),
         "responseJsonSchema of Point")


def check_stream(run):
    sent = run.each()
    assert not any(r.action == "streamGenerateContent" for r in run.new), f"{run.front} streamed with --no-stream"
    assert all(r.action in ("generateContent", "batchItem") for r in sent)


def check_interpolate(run):
    _all(run, lambda r: "Show {x}" in r.user_texts() and not any("EXPANDED" in t for t in r.user_texts()),
         "'{x}' as written")


def check_tools(run):
    _all(run, lambda r: "lookup" in declared(r), "the lookup declaration")


def check_agent(run):
    def agent(r):
        system = " ".join(str(_k(p, "text")) for p in _k(_k(r.body, "systemInstruction"), "parts") or [])
        return {"run_python", "list_variables", "inspect", "read_cells"} <= set(declared(r)) \
            and "data-analysis agent" in system
    _all(run, agent, "the agent's four tools and its instruction")


def check_approve(run):
    refused = [f for r in run.generated() for f in function_responses(r)]
    assert refused, f"{run.front}: no function response was sent back"
    assert all("--approve never" in str(_k(f, "response"))for f in refused), refused
    assert run.ip.user_ns["ran"] == [], "a tool ran under --approve never"


def check_max_steps(run):
    after = [r for r in run.generated() if r.after_tools()]
    assert after, f"{run.front}: no request after a tool call"
    for request in after:
        assert tool_config_mode(request) == "NONE", f"{run.front}: function calling not switched off: {request.body}"
        assert any("limit of 1 tool-call steps" in t for t in request.user_texts()), request.user_texts()


def server_tool(kind: str) -> Callable[[Run], None]:
    return lambda run: _all(run, lambda r: kind in tool_kinds(r), f"a {kind} tool")


def check_image(run):
    _all(run, lambda r: any(m.startswith("image/") and isinstance(d, bytes) for m, d in r.media()),
         "an inline image")


def check_downscale(run):
    _all(run, lambda r: [width(d) for m, d in r.media() if m.startswith("image/")] == [2000],
         "the image at its full 2000 px")


def check_thoughts(run):
    _all(run, lambda r: gen(r, "thinkingConfig", "includeThoughts") is True, "includeThoughts")


def check_over(run):
    assert sorted(r.last_user_text() for r in run.each()) == ["Say p", "Say q"], \
        f"{run.front}: the items of ys were not asked"


def check_column(run):
    assert isinstance(run.result, pd.DataFrame) and "ans" in run.result.columns, \
        f"{run.front}: no results under the column 'ans': {run.result!r}"
    assert list(run.result["ans"]) == ["Echo: Say a", "Echo: Say b"]


def check_batch_api(run):
    assert any(r.action == "batchGenerateContent" for r in run.new), f"{run.front}: no Batch API job was made"
    assert not run.generated(), f"{run.front}: sent generate requests besides the job"


def check_concurrency(run):
    assert len(run.generated()) >= 2, f"{run.front}: --concurrency 1 with {len(run.generated())} request(s)"
    assert run.server.responder.peak == 1, f"{run.front}: {run.server.responder.peak} requests at once"


def check_chat(run):
    history = contents(run.generated()[-1])
    roles = [_k(c, "role") for c in history]
    turns = len(gemini_magic.conversation("talk").turns)
    assert roles == ["user", "model", "user"] and turns == 2, \
        f"{run.front}: the second turn does not carry the first: {roles}; the conversation has {turns} turns"


def check_no_chat(run):
    history = contents(run.generated()[-1])
    assert len(history) == 1, f"{run.front}: --no-chat still sent the default chat's history: {history}"


def check_context(run):
    _all(run, lambda r: any("Context from the notebook" in t and "data" in t for t in r.user_texts()),
         "the notebook context")


def check_error(run):
    _all(run, lambda r: any("ZeroDivisionError" in t for t in r.user_texts()), "the last error")


def check_usage(run):
    assert re.search(r"\d[\d,]* (?:tokens )?in, \d[\d,]* out", run.output), \
        f"{run.front}: no usage shown: {run.output[-500:]!r}"


def check_dry_run(run):
    kinds = [r.action for r in run.new]
    assert "countTokens" in kinds, f"{run.front}: --dry-run counted nothing: {kinds}"
    assert not run.sent(), f"{run.front}: --dry-run sent a request for generation: {kinds}"
    from gemini_magic.counting import Count

    shown = run.output + (run.result.text() if isinstance(run.result, Count) else "")
    assert "counted, not sent" in shown, f"{run.front}: the dry run's counts were not shown: {shown[-300:]!r}"


def check_cache(run):
    resource = gemini_magic.current_session().caches.find("kept").resource
    _all(run, lambda r: _k(r.body, "cachedContent") == resource and not _k(r.body, "systemInstruction")
         and not _k(r.body, "tools"), f"cachedContent {resource} (and no system instruction or tools of its own)")


def _created(run) -> list:
    made = [r for r in run.new if r.action == "createCachedContent"]
    assert made, f"{run.front}: no cache was created: {[r.action for r in run.new]}"
    assert not run.sent(), f"{run.front}: --cache-create asked for an answer too"
    return made


def check_cache_create(run):
    assert [_k(r.body, "displayName") for r in _created(run)] == ["made"]


def check_ttl(run):
    assert [_k(r.body, "ttl") for r in _created(run)] == ["7200s"]


def check_location(run):
    def at(r):
        config = _k(_k(r.body, "toolConfig"), "retrievalConfig")
        return _k(config, "latLng") == {"latitude": 35.01, "longitude": 135.77}
    _all(run, at, "toolConfig.retrievalConfig.latLng 35.01,135.77")


def check_voice(run):
    def spoken(r):
        voice = _k(_k(_k(gen(r, "speechConfig"), "voiceConfig"), "prebuiltVoiceConfig"), "voiceName")
        return gen(r, "responseModalities") == ["AUDIO"] and voice == "Kore"
    _all(run, spoken, "responseModalities AUDIO and the voice Kore")


def check_store(run):
    resource = gemini_magic.stores().find("docs").resource

    def searched(r):
        tools = [_k(t, "fileSearch") for t in _k(r.body, "tools") or [] if _k(t, "fileSearch")]
        return any(_k(t, "fileSearchStoreNames") == [resource] for t in tools)
    _all(run, searched, f"the fileSearch tool on {resource}")


def check_debug(run):
    assert run.error is not None, f"{run.front}: the failing request did not fail"
    assert "Traceback (most recent call last)" in getattr(run.error, "debug_text", ""), \
        f"{run.front}: --debug showed no traceback: {run.error!r}"


# -- set-ups a case needs (server answers, a failing cell, a chat) -----------------------------------------


class Peak:
    """Counts the requests held at once: each waits (briefly) for a second one."""

    def __init__(self, hold: int = 2, timeout: float = 0.2):
        self.hold, self.timeout = hold, timeout
        self.now = self.peak = 0
        self.lock = threading.Lock()
        self.full = threading.Event()

    def __call__(self, request):
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
            if self.now >= self.hold:
                self.full.set()
        try:
            self.full.wait(self.timeout)
        finally:
            with self.lock:
                self.now -= 1
        return None  # the echo


def calls_lookup(request):
    """Call lookup once, then answer."""
    if request.after_tools():
        return Reply(text="Done.")
    if "lookup" in declared(request):
        return Reply(parts=[{"functionCall": {"name": "lookup", "args": {"city": "Rome"}, "id": "c1"}}])
    return None


def answering(text: str):
    def setup(ip, server):
        server.responder = lambda request: Reply(text=text)
    return setup


def using(responder):
    def setup(ip, server):
        server.responder = responder() if isinstance(responder, type) else responder
    return setup


def failing_cell(ip, server):
    result = ip.run_cell("1/0")
    assert isinstance(result.error_in_exec, ZeroDivisionError)


def default_chat_with_a_turn(ip, server):
    ip.run_line_magic("gemini", "chat talk")
    ip.run_cell_magic("gemini", "", "An earlier turn")
    assert len(gemini_magic.conversation("talk").turns) == 1


def small_caches(ip, server):
    server.cache_min_tokens = 1  # any context may be cached


def a_cache_kept(ip, server):
    small_caches(ip, server)
    gemini_magic.create_cache("kept", "The handbook: leave is 25 days a year.")


def a_store_made(ip, server):
    gemini_magic.stores().create("docs")


def error_answer(ip, server):
    server.queue(Error(400, "INVALID_ARGUMENT", "Request contains an invalid argument."))


# -- the table ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    dest: str
    value: Any  # the representative value, as a Python keyword takes it
    check: Callable[[Run], None]
    extra: dict = field(default_factory=dict)  # options the check needs besides (never where refused)
    setup: Callable | None = None
    prompt: str | None = None
    calls: int = 1  # calls through the front end (a chat needs a turn before)
    fails: bool = False  # the call is meant to fail (--debug shows how)

    @property
    def flag(self) -> str:
        return flag_of(self.dest, self.value)


CASES = [
    Case("model", MODEL, check_model),
    Case("temperature", 0.3, config_is(("temperature",), 0.3)),
    Case("top_p", 0.5, config_is(("topP",), 0.5)),
    Case("top_k", 20, config_is(("topK",), 20)),
    Case("max_tokens", 64, config_is(("maxOutputTokens",), 64)),
    Case("seed", 7, config_is(("seed",), 7)),
    Case("stop", ["END"], config_is(("stopSequences",), ["END"])),
    Case("thinking", "128", config_is(("thinkingConfig", "thinkingBudget"), 128)),
    Case("system", "Be brief.", check_system),
    Case("out", "res", check_out),
    Case("format", "code", check_format, setup=answering("```python\nprint(1)\n```")),
    Case("json", True, check_json, setup=answering('{"a": 1}')),
    Case("schema", Point, check_schema, setup=answering('{"a": 1}')),
    Case("stream", False, check_stream),
    Case("interpolate", False, check_interpolate, prompt="Show {x}"),
    Case("tools", "lookup", check_tools),
    Case("approve", "never", check_approve, extra={"tools": "lookup"}, setup=using(calls_lookup)),
    Case("max_steps", 1, check_max_steps, extra={"tools": "lookup"}, setup=using(calls_lookup)),
    Case("search", True, server_tool("googleSearch")),
    Case("code_exec", True, server_tool("codeExecution")),
    Case("url_context", True, server_tool("urlContext")),
    Case("image", ["pic"], check_image),
    Case("downscale", False, check_downscale, extra={"image": ["big"]}),
    Case("thoughts", True, check_thoughts),
    Case("over", "ys", check_over, prompt="Say {item}"),
    Case("column", "ans", check_column),
    Case("batch_api", True, check_batch_api),
    Case("concurrency", 1, check_concurrency, setup=using(Peak)),
    Case("chat", "talk", check_chat, calls=2),
    Case("chat", False, check_no_chat, setup=default_chat_with_a_turn),
    Case("context", ["data"], check_context),
    Case("error", True, check_error, setup=failing_cell),
    Case("usage", True, check_usage),
    Case("debug", True, check_debug, setup=error_answer, fails=True),
    Case("dry_run", True, check_dry_run),
    Case("service_tier", "flex", check_service_tier),
    Case("media_resolution", "low", config_is(("mediaResolution",), "MEDIA_RESOLUTION_LOW")),
    Case("store", "docs", check_store, setup=a_store_made),
    Case("maps", True, server_tool("googleMaps")),
    Case("location", "35.01,135.77", check_location, extra={"maps": True}),
    Case("aspect_ratio", "16:9", config_is(("imageConfig", "aspectRatio"), "16:9")),
    Case("image_size", "2K", config_is(("imageConfig", "imageSize"), "2K")),
    Case("voice", "Kore", check_voice),
    Case("cache", "kept", check_cache, setup=a_cache_kept),
    Case("cache_create", "made", check_cache_create, setup=small_caches),
    Case("ttl", "2h", check_ttl, extra={"cache_create": "timed"}, setup=small_caches),
    Case("agent", True, check_agent),
]


def test_the_table_covers_every_option_flag_and_front_end():
    """An option added to OPTIONS (or a flag, or a front end in REFUSED) without a case here fails."""
    dests = {o.dest for o in OPTIONS}
    assert {c.dest for c in CASES} == dests
    assert sorted(c.flag for c in CASES) == sorted(o.flags[-1] for o in OPTIONS)
    assert set(FRONT_ENDS.values()) == set(REFUSED)
    for front_end, refused in REFUSED.items():
        assert set(refused) <= dests, f"REFUSED[{front_end!r}] names no option: {set(refused) - dests}"


# -- the front ends, each in its own syntax -------------------------------------------------------------------


def cell_line(options: dict) -> str:
    """The %%gemini flags for `options` (dest -> value)."""
    words: list[str] = []
    for dest, value in options.items():
        flag = flag_of(dest, value)
        option = next(o for o in OPTIONS if o.dest == dest and flag in o.flags)
        action = option.argparse.get("action")
        if action in ("store_true", "store_const"):
            words.append(flag)
        elif action == "append":
            for item in value:
                words += [flag, shlex.quote(item)]
        else:
            text = value.__name__ if isinstance(value, type) else ",".join(value) if isinstance(value, list) else value
            words += [flag, shlex.quote(str(text))]
    return " ".join(words)


def call(front: str, ip, options: dict, prompt: str):
    """One call through `front` with `options`; (its result, what a widget said)."""
    if front in ("cell", "over", "over-api"):
        line = cell_line(options)
        if front != "cell" and "over" not in options:
            line = f"--over xs {line}"
        if front == "over-api":
            line += " --batch-api"
        return ip.run_cell_magic("gemini", line.strip(), prompt), ""
    if front in ("batch", "batch-api"):
        keywords = {k: (v if k != "tools" else [v]) for k, v in options.items()}
        rows = ip.user_ns["xs"]
        return gemini_magic.batch(prompt, rows, mode="api" if front == "batch-api" else "local", **keywords), ""
    if front == "ask":
        return gemini_magic.ask(prompt, **options).read(), ""
    assert front == "widget"
    from gemini_magic.widgets.chat import ChatWidget

    widget = ChatWidget(gemini_magic._magics, "parity", options=Options(**options))
    try:
        if not widget.send(prompt):
            return None, widget.status.value
        assert widget.wait(10), "the widget's answer did not finish"
        return widget.messages[-1].html, ""
    finally:
        widget.close()


@pytest.fixture
def world(ip, server, monkeypatch):
    """The shell's variables every case may name, and Batch API jobs that finish at once."""
    from gemini_magic.batches import api as batch_api

    monkeypatch.setattr(batch_api, "POLL_DELAYS", (0.01,))
    server.batch_polls = 1
    gemini_magic.batches.last_run = None
    result = ip.run_cell(TOOL)
    assert result.error_in_exec is None
    ip.user_ns.update(
        xs=pd.DataFrame({"item": ["a", "b"]}),
        ys=pd.DataFrame({"item": ["p", "q"]}),
        x="EXPANDED",
        data={"rows": 3},
        pic=Image.new("RGB", (8, 8), "red"),
        big=Image.new("RGB", (2000, 100), "blue"),
        Point=Point,
    )
    yield ip
    gemini_magic.batches.last_run = None


PAIRS = [pytest.param(case, front, id=f"{case.flag.lstrip('-')}-in-{front}") for case in CASES for front in FRONT_ENDS]


@pytest.mark.parametrize("case, front", PAIRS)
def test_option_reaches_the_wire_or_is_refused_by_name(world, server, capsys, case, front):
    """Refused there (REFUSED): by name, with nothing sent. Otherwise: no error, and the check sees it applied."""
    ip = world
    if case.setup is not None:
        case.setup(ip, server)
    refused = is_refused(case.dest, front)
    options = {case.dest: case.value} if refused else {case.dest: case.value, **case.extra}
    prompt = case.prompt or ("Say {item}" if front in BATCHES else "Say hi")
    capsys.readouterr()
    run = Run(front, ip, server, start=len(server.requests))
    for _ in range(case.calls):
        try:
            run.result, run.said = call(front, ip, options, prompt)
        except Exception as exc:  # noqa: BLE001  (UsageError, GeminiError, CellFailed, TypeError: judged below)
            run.error = exc
            break
        if run.said:
            break
    captured = capsys.readouterr()
    run.output = captured.out + captured.err + (run.result if front == "widget" and run.result else "")
    named = f"{run.error}" if run.error is not None else run.said

    if refused:
        assert run.error is not None or run.said, f"{case.flag} was not refused in {front} ({FRONT_ENDS[front]})"
        assert case.flag in named, f"{front} refused {case.flag} without naming it: {named!r}"
        reached = [r.action for r in run.new if r.action in (*GENERATE, "batchGenerateContent")]
        assert not reached, f"{front} refused {case.flag}, but sent {reached}"
        return

    if run.said:
        pytest.fail(f"{case.flag} in {front}: the widget refused it ({run.said!r}), REFUSED does not say so")
    if run.error is not None and not case.fails:
        pytest.fail(f"{case.flag} in {front}: neither refused in REFUSED nor working: "
                    f"{type(run.error).__name__}: {run.error}")
    if not case.fails:
        if front == "widget":
            assert "gm-error" not in run.result, f"the widget's answer failed: {run.result}"
        failed = [v for v in answers(run.result) if isinstance(v, ItemError)]
        assert not failed, f"{front}: items failed: {failed}"
    try:
        case.check(run)
    except AssertionError as exc:
        raise AssertionError(f"{case.flag} in {front}: not refused (REFUSED[{FRONT_ENDS[front]!r}]), "
                             f"and not applied: {exc}") from None


# -- beside the table: cases its representative values do not reach --------------------------------------------


@pytest.mark.parametrize("front", ["over", "batch", "batch-api"])
def test_a_batchs_items_are_single_turn_even_with_a_default_chat(world, server, front):
    """REFUSED says a batch's items are single-turn (so --chat and --no-chat are refused
    there): a default chat (`%gemini chat NAME`) must not make them turns of it either."""
    default_chat_with_a_turn(world, server)
    run = Run(front, world, server, start=len(server.requests))
    call(front, world, {}, "Say {item}")
    sent = run.each()
    assert len(sent) == 2
    assert [len(contents(r)) for r in sent] == [1, 1], \
        f"{front}: the default chat's history went into the items: {[contents(r) for r in sent]}"


def test_the_widget_takes_a_model_its_list_lacks(world, server):
    """A cell takes any model id (a tuned one, one the list lacks): so does the widget's model option."""
    unlisted = "gemini-2.0-flash"
    assert unlisted not in {m["name"].removeprefix("models/") for m in server.models}
    assert ask(world, "Say hi", f"-m {unlisted}") == "Echo: Say hi"
    assert server.last.model == unlisted
    run = Run("widget", world, server, start=len(server.requests))
    _, said = call("widget", world, {"model": unlisted}, "Say hi")
    assert not said, f"the widget refused the model a cell takes: {said}"
    assert [r.model for r in run.generated()] == [unlisted]


def test_a_long_chat_through_ask_keeps_every_turn(world, server):
    """Each ask(chat=NAME) is a turn of its own: the last of many carries every one before.
    A turn key that repeats by chance (made from the id() of a freed object) makes a later
    ask replace an earlier turn: one ask in a few, so a long chat shows it every time."""
    asks = 50
    for i in range(asks):
        assert gemini_magic.ask(f"Turn {i}", chat="talk").read() == f"Echo: Turn {i}"
    kept = [turn.text("user") for turn in gemini_magic.conversation("talk").turns]
    lost = sorted(set(f"Turn {i}" for i in range(asks)) - set(kept), key=lambda t: int(t.split()[1]))
    assert not lost, f"{len(lost)} of {asks} turns were replaced by later ones: {lost[:8]} ..."
    assert len(contents(server.last)) == 2 * asks - 1

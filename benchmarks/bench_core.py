"""Core performance figures for gemini_magic, each against a baseline measured in the same run.

Run from the repository root (no key, no network):

    python benchmarks/bench_core.py           # the full run, two to four minutes on 2 cores
    python benchmarks/bench_core.py --quick   # few repeats: checks the script, not the code

Answers come from tests/fake_gemini (the real REST wire protocol on 127.0.0.1) and
are read through the real google-genai SDK, never patched. Figures are printed,
never asserted: the exit status is 0 unless something crashed. benchmarks/README.md
says what each figure means.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# For tests.fake_gemini (run with -m from REPO) and gemini_magic from this checkout.
sys.path.insert(0, str(REPO))

MODEL = "gemini-2.5-flash"
FAKE_KEY = "bench-fake-key-not-a-secret"

# Streams the fake server sends, chosen by a marker in the prompt.
TTFC_CHUNKS, TTFC_DELAY = 20, 0.05  # figure 2: first chunk at once, then 50 ms apart
RATE_CHUNKS, RATE_DELAY = 300, 0.01  # figure 4: a stream of about 3 s
LONG_CHUNKS = 10_000  # figures 3-6: one word per chunk, no delay
WIDGET_CHAT = "bench-widget"  # the conversation the widget's messages are turns of (emptied after each)

# Targets.
LOAD_TARGET_MS = 20.0
TTFC_TARGET_MS = 10.0
LONG_TARGET_RATIO = 1.1
RATE_TARGET = 15.0  # display messages per second

_WORDS = "the model streams one word per chunk into a notebook cell while we watch it".split()


def answer_words(count: int) -> list[str]:
    """`count` chunks of one word each, with a paragraph break every 60 words so that
    the Markdown renderer sees a realistic document, not one 10,000-word line."""
    return [_WORDS[i % len(_WORDS)] + (".\n\n" if (i + 1) % 60 == 0 else " ") for i in range(count)]


SCRIPT = {
    "rules": [
        {"match": "bench-warm", "reply": {"chunks": ["Warm ", "up ", "answer."]}},
        {"match": "bench-ttfc", "reply": {"chunks": answer_words(TTFC_CHUNKS), "delay": TTFC_DELAY}},
        {"match": "bench-rate", "reply": {"chunks": answer_words(RATE_CHUNKS), "delay": RATE_DELAY}},
        {"match": "bench-long", "reply": {"chunks": answer_words(LONG_CHUNKS), "delay": 0}},
    ]
}


@dataclass
class Repeats:
    load: int = 15  # subprocesses per variant (figure 1)
    ttfc: int = 15  # streams per path (figure 2)
    long: int = 7  # 10,000-chunk streams per consumer (figures 3 and 6)
    rate: int = 3  # 3 s streams (figure 4)
    memory: int = 1  # traced streams per consumer (figure 5); tracemalloc makes them ~6x slower


QUICK = Repeats(load=3, ttfc=3, long=1, rate=1, memory=1)


@dataclass
class Row:
    figure: str
    ours: str
    baseline: str
    target: str
    met: bool | None  # None: a figure with no target, reported for information


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)

    def add(self, *args) -> None:
        row = Row(*args)
        self.rows.append(row)
        met = {True: "yes", False: "NO", None: "-"}[row.met]
        say(f"  => {row.figure}: ours {row.ours} | baseline {row.baseline} | target {row.target} | met: {met}")


def say(text: str = "") -> None:
    print(text, flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    """median [min-max] (n=N), for the detail lines."""
    lo, mid, hi = min(values), median(values), max(values)
    return f"{fmt.format(mid)} [{fmt.format(lo)}-{fmt.format(hi)}] (n={len(values)})"


# -- the fake server -------------------------------------------------------------------


class FakeServer:
    """tests.fake_gemini in its own process (its CLI, with SCRIPT as rules).

    Not a thread of this process: the server's work (JSON-encoding 10,000 events)
    would then compete for this process's GIL with the consumer being timed, and
    its allocations would count in the tracemalloc peaks of figure 5.
    """

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def __enter__(self) -> FakeServer:
        script = self.workdir / "fake_gemini_script.json"
        script.write_text(json.dumps(SCRIPT), encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fake_gemini", "--script", str(script)],
            cwd=REPO, stdout=subprocess.PIPE, text=True,
        )
        line = self.proc.stdout.readline().strip()
        if not line.startswith("URL="):
            raise RuntimeError(f"fake server did not start: {line!r}")
        self.url = line.removeprefix("URL=")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        self.proc.terminate()  # its SIGTERM handler stops the server cleanly
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


# Variables that would send the SDK elsewhere (Vertex, another API version, a real
# key, a proxy) or put the magic in record/replay mode.
_CLEARED = (
    "GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GENAI_USE_ENTERPRISE", "GOOGLE_GENAI_API_VERSION", "GOOGLE_API_KEY",
    "GOOGLE_CLOUD_PROJECT", "GEMINI_MAGIC_MODE", "GEMINI_MAGIC_RECORDING", "GEMINI_MAGIC_QUOTA",
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
)


def use_environment(url: str, workdir: Path) -> dict:
    """Point this process (and the children it starts) at the fake server with a fake
    key, as the tests do: no proxy for 127.0.0.1, no Vertex, no real key. The usage
    counts and learned limits the session keeps go to a throwaway data folder."""
    for name in _CLEARED:
        os.environ.pop(name, None)
    os.environ.update({
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        "GEMINI_API_KEY": FAKE_KEY, "GOOGLE_GEMINI_BASE_URL": url,
        "IPYTHONDIR": str(workdir / "ipython"),  # a throwaway profile: the user's is neither read nor written
        "GEMINI_MAGIC_DATA_DIR": str(workdir / "data"),  # the same for usage.json and learned-limits.json
    })
    return dict(os.environ)


# -- a display publisher that records instead of sending ---------------------------------


@dataclass
class Published:
    at: float  # perf_counter() when display()/update() reached the publisher
    update: bool
    plain_chars: int
    chars: int  # all MIME types: roughly what a kernel would serialize and send


def recording_shell():
    """An in-process InteractiveShell whose display publisher records each publish.

    IPython's display() and DisplayHandle.update() end in `shell.display_pub.publish`;
    under a kernel that is where the message is serialized and sent over ZMQ. Stopping
    there measures everything gemini_magic does, and nothing of ZMQ or a frontend.
    """
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    class RecordingPublisher(DisplayPublisher):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.records: list[Published] = []

        def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kwargs):
            at = time.perf_counter()
            chars = sum(len(v) for v in data.values() if isinstance(v, str))
            self.records.append(Published(at, update, len(data.get("text/plain", "")), chars))

        def clear_output(self, wait=False):
            pass

    config = Config()
    config.HistoryManager.enabled = False  # nothing to write at exit, into a profile that is gone by then
    shell = InteractiveShell.instance(config=config)
    shell.display_pub = RecordingPublisher(shell=shell)
    return shell, shell.display_pub


# -- a comm that records instead of sending (widgets) -------------------------------------


@dataclass
class CommMessage:
    at: float  # perf_counter() when the widget's message reached the comm
    kind: str  # comm_open, comm_msg, comm_close
    value_chars: int  # length of the `value` it carries (0: none): an HTML widget's whole state that changes


class RecordingComm:
    """Installed as `comm.create_comm`, the hook ipywidgets opens every widget's comm
    through (comm's documented replacement point; ipykernel installs its own there).

    Outside a kernel the default is comm's DummyComm, which drops each message. Under
    a kernel, `comm.send` ends in the kernel's session serializing the message and
    sending it over ZMQ. This comm stops at that point, as the recording display
    publisher does: everything ipywidgets does for a value change is included (the
    trait change, get_state, the update message), nothing of JSON, ZMQ or a frontend."""

    def __init__(self):
        import comm
        from comm.base_comm import BaseComm

        records: dict[str, list[CommMessage]] = {}
        self.records = records

        class Recording(BaseComm):
            def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
                at = time.perf_counter()
                state = (data or {}).get("state") or {}
                value = state.get("value")
                records.setdefault(self.comm_id, []).append(
                    CommMessage(at, msg_type, len(value) if isinstance(value, str) else 0))

        comm.create_comm = Recording

    def take(self, comm_id: str) -> list[CommMessage]:
        return self.records.pop(comm_id, [])


# -- the consumers being compared ----------------------------------------------------------


class Consumers:
    """The raw SDK and the magic's own request path + renderers, all with warm clients."""

    def __init__(self, url: str):
        from google import genai

        from gemini_magic.magics import GeminiMagics

        # The baseline: the SDK as its documentation shows it, one client reused.
        self.raw_client = genai.Client(api_key=FAKE_KEY, http_options=genai.types.HttpOptions(base_url=url))
        self.shell, self.publisher = recording_shell()
        self.comms = RecordingComm()  # before any widget is made
        # Ours: what `%load_ext` makes, GeminiMagics on the shell, and its Session (the one
        # request path: settings snapshot, request builder, engine, a Connection with the
        # whole HTTP stack: cancel, record/replay, quota limiter and usage store, network).
        # The key and base URL come from the environment, as in a notebook.
        self.magics = GeminiMagics(shell=self.shell)
        self.magics.model = MODEL
        self.session = self.magics.session
        self.interval = self.magics.update_interval

    def warm_up(self) -> Consumers:
        """Build both clients, open their keep-alive connections and import what the first
        answer imports (markdown_it, ipywidgets), so that no figure counts one-time costs."""
        for _ in range(2):
            self.raw("bench-warm")
            self.raw_text("bench-warm")
            self.notebook("bench-warm")
            self.terminal("bench-warm")
            self.widget("bench-warm")
        return self

    def raw(self, prompt: str) -> int:
        """The baseline: iterate the SDK's stream and nothing else (its own floor: HTTP,
        SSE and parsing each chunk into a GenerateContentResponse). Returns the chunk count."""
        count = 0
        for _ in self.raw_client.models.generate_content_stream(model=MODEL, contents=prompt):
            count += 1
        return count

    def raw_text(self, prompt: str) -> list[str]:
        """What the SDK's docs show: read chunk.text. Slower than `raw` (the property
        model_dumps every part), so it is a detail line, not the baseline."""
        stream = self.raw_client.models.generate_content_stream(model=MODEL, contents=prompt)
        return [chunk.text for chunk in stream]

    def raw_first_chunk(self, prompt: str) -> float:
        """Seconds from the call to the first chunk yielded; the stream is then drained
        so the connection goes back to the pool, as in the other path."""
        started = time.perf_counter()
        stream = iter(self.raw_client.models.generate_content_stream(model=MODEL, contents=prompt))
        next(stream)  # the request is sent lazily, here
        first = time.perf_counter() - started
        for _ in stream:
            pass
        return first

    def _answer(self, prompt: str, front_end: str = "cell", **surroundings):
        """The Answer a front end gets (cell.ask, ChatWidget.send), minus option parsing:
        the session builds the request from the settings snapshot, then sends it."""
        from gemini_magic.options import Options

        prepared = self.session.prepare(prompt, Options(), front_end, **surroundings)
        return prepared, self.session.send(prepared)

    def _play(self, prompt: str, renderer) -> None:
        from gemini_magic.render import play

        # As magics/cell.py's ask() does: prepare and send through the session, play into a renderer.
        _, answer = self._answer(prompt, key=self.magics.turn_key("", prompt), **self.magics.surroundings())
        play(answer, renderer)

    def notebook(self, prompt: str) -> list[Published]:
        from gemini_magic.render import NotebookRenderer

        self.publisher.records = []
        self._play(prompt, NotebookRenderer(interval=self.interval))
        return self.publisher.records

    def notebook_first_update(self, prompt: str) -> float:
        """Seconds from the call to the first display update that carries answer text."""
        started = time.perf_counter()
        records = self.notebook(prompt)
        first = next(r for r in records if r.update and r.plain_chars)
        return first.at - started

    def terminal(self, prompt: str) -> str:
        from gemini_magic.render import TerminalRenderer

        out = io.StringIO()
        self._play(prompt, TerminalRenderer(out=out, err=io.StringIO()))
        return out.getvalue()

    def widget(self, prompt: str) -> tuple[object, list[CommMessage]]:
        """As ChatWidget.send and its _receive thread do: a message bubble (a real
        ipywidgets.HTML), the request prepared by the session as a turn of the chat, and
        the Answer played into a WidgetRenderer on a thread of its own; this thread waits
        for it. Returns the answer and the bubble's comm messages (its open and updates)."""
        import ipywidgets as widgets

        from gemini_magic.render import play
        from gemini_magic.render.widget import TYPING, WidgetRenderer, model_html

        bubble = widgets.HTML(model_html(TYPING))
        prepared, answer = self._answer(prompt, "widget", key="widget:1", default_chat=WIDGET_CHAT)
        renderer = WidgetRenderer(bubble, interval=self.interval)
        renderer.notes.extend(prepared.notes)
        crash: list[BaseException] = []

        def receive() -> None:
            try:
                play(answer, renderer)
            except BaseException as exc:  # reported below, on the benchmark's thread
                crash.append(exc)

        thread = threading.Thread(target=receive, name="gemini-chat-bench", daemon=True)
        thread.start()
        thread.join()
        if crash:
            raise crash[0]
        messages = self.comms.take(bubble.comm.comm_id)
        bubble.close()
        # The next message starts a fresh conversation, so every run sends the same request.
        self.session.conversations.get_or_create(WIDGET_CHAT).reset()
        return answer, messages


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    gc.collect()  # garbage from the previous run is not this run's cost
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


# -- figure 1: load cost ---------------------------------------------------------------------

# Runs in a fresh interpreter: `python -c LOAD_CHILD bare|load`.
LOAD_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
result = {"shell_ms": (time.perf_counter() - t0) * 1000}
if sys.argv[1] == "load":
    t1 = time.perf_counter()
    shell.run_line_magic("load_ext", "gemini_magic")
    t2 = time.perf_counter()
    # Read at once: load_ext starts a thread that imports the SDK in the background.
    result["genai_loaded"] = "google.genai" in sys.modules
    result["httpx2_loaded"] = "httpx2" in sys.modules
    result["load_ms"] = (t2 - t1) * 1000
else:
    result["genai_loaded"] = "google.genai" in sys.modules
print(json.dumps(result))
"""


def child_environment(env: dict, pycache: Path) -> dict:
    """Cached bytecode, as a user has it after the first import. With PYTHONDONTWRITEBYTECODE
    set (as here), this checkout's modules would otherwise be compiled from source in every
    process and counted as load time. The cache goes to a temporary tree, not the repo."""
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def run_child(variant: str, env: dict) -> tuple[float, dict]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", LOAD_CHILD, variant], env=env, cwd=REPO,
                          capture_output=True, text=True, check=True)
    wall_ms = (time.perf_counter() - started) * 1000
    return wall_ms, json.loads(done.stdout.strip().splitlines()[-1])


def bench_load(results: Results, env: dict, n: int, pycache: Path) -> None:
    say(f"\n[1] Load cost of %load_ext gemini_magic: fresh subprocesses, {n} of each, alternating")
    env = child_environment(env, pycache)
    for variant in ("bare", "load"):  # discarded: they write the bytecode cache and the IPython profile
        run_child(variant, env)
    walls: dict[str, list[float]] = {"bare": [], "load": []}
    shell_ms: list[float] = []
    load_ms: list[float] = []
    genai = {"bare": 0, "load": 0}
    httpx2 = 0
    for i in range(n):
        # Alternate, and swap which goes first each round, so drift hits both alike.
        for variant in ("bare", "load") if i % 2 == 0 else ("load", "bare"):
            wall, child = run_child(variant, env)
            walls[variant].append(wall)
            genai[variant] += child["genai_loaded"]
            if variant == "bare":
                shell_ms.append(child["shell_ms"])
            else:
                load_ms.append(child["load_ms"])
                httpx2 += child["httpx2_loaded"]
    say(f"  InteractiveShell.instance() alone, in-process ms: {spread(shell_ms)}")
    say(f"  load_ext gemini_magic, in-process ms:             {spread(load_ms)}")
    say(f"  whole process, bare shell ms:                     {spread(walls['bare'])}")
    say(f"  whole process, shell + load_ext ms:               {spread(walls['load'])}")
    say(f"  httpx2 imported by load_ext: {httpx2}/{n} runs; google.genai already in sys.modules when it "
        f"returned: {genai['load']}/{n} runs (its warm-up thread races the check)")
    added_wall = median(walls["load"]) - median(walls["bare"])
    results.add(f"1. `%load_ext` time, in-process (median of {n})", f"+{median(load_ms):.1f} ms",
                f"{median(shell_ms):.1f} ms (creating the shell)", f"<= {LOAD_TARGET_MS:g} ms added",
                median(load_ms) <= LOAD_TARGET_MS)
    results.add(f"1. `%load_ext` added to process wall time (median of {n})",
                f"+{added_wall:.1f} ms ({median(walls['load']):.0f} ms)",
                f"{median(walls['bare']):.0f} ms (bare shell)", f"<= {LOAD_TARGET_MS:g} ms added",
                added_wall <= LOAD_TARGET_MS)
    results.add("1. `google.genai` in sys.modules right after load", f"{genai['load']}/{n} runs",
                f"{genai['bare']}/{n} runs (bare shell)", "0 runs", genai["load"] == 0)


# -- figure 2: time to first displayed chunk ---------------------------------------------------


def bench_first_chunk(results: Results, consumers: Consumers, n: int) -> None:
    say(f"\n[2] Time to first displayed chunk: {TTFC_CHUNKS} chunks {TTFC_DELAY * 1000:.0f} ms apart, "
        f"{n} runs per path, alternating")
    say("  method: in-process, no kernel. Ours = session + NotebookRenderer into an InteractiveShell whose")
    say("  display publisher records timestamps (no ZMQ, no frontend); baseline = the raw SDK's first chunk.")
    raw: list[float] = []
    ours: list[float] = []
    for i in range(n):
        order = ("raw", "ours") if i % 2 == 0 else ("ours", "raw")
        for path in order:
            gc.collect()
            if path == "raw":
                raw.append(consumers.raw_first_chunk("bench-ttfc") * 1000)
            else:
                ours.append(consumers.notebook_first_update("bench-ttfc") * 1000)
    overhead = [o - r for o, r in zip(ours, raw, strict=True)]  # paired: run i of each
    say(f"  raw SDK, call -> first chunk ms:              {spread(raw, '{:.2f}')}")
    say(f"  ours, call -> first display update ms:        {spread(ours, '{:.2f}')}")
    say(f"  overhead (ours - raw, paired by round) ms:     {spread(overhead, '{:.2f}')}")
    results.add(f"2. First displayed chunk, overhead over raw SDK (median of {n} pairs)",
                f"{median(ours):.2f} ms ({median(overhead):+.2f} ms)", f"{median(raw):.2f} ms (first chunk)",
                f"<= {TTFC_TARGET_MS:g} ms overhead", median(overhead) <= TTFC_TARGET_MS)


# -- figures 3 and 4 (total messages): a 10,000-chunk answer ------------------------------------


def bench_long(results: Results, consumers: Consumers, n: int) -> None:
    say(f"\n[3, 6] A {LONG_CHUNKS:,}-chunk answer (one word per chunk, no delay): total time, "
        f"{n} runs per consumer, alternating")
    times: dict[str, list[float]] = {"raw": [], "notebook": [], "terminal": [], "widget": [], "raw_text": []}
    messages: list[int] = []
    chars: list[int] = []
    updates: list[int] = []
    update_chars: list[int] = []
    names = list(times)
    expected = "".join(answer_words(LONG_CHUNKS))
    for i in range(n):
        for name in names[i % len(names):] + names[:i % len(names)]:  # rotate who goes first
            if name == "raw":
                seconds, count = timed(lambda: consumers.raw("bench-long"))
                ok = count == LONG_CHUNKS
            elif name == "raw_text":
                seconds, texts = timed(lambda: consumers.raw_text("bench-long"))
                ok = "".join(texts) == expected
            elif name == "notebook":
                seconds, records = timed(lambda: consumers.notebook("bench-long"))
                messages.append(len(records))
                chars.append(sum(r.chars for r in records))
                # The last publish is the final answer, displayed once as a new output.
                ok = not records[-1].update and records[-1].plain_chars == len(expected)
            elif name == "widget":
                seconds, (answer, sent) = timed(lambda: consumers.widget("bench-long"))
                changes = [m for m in sent if m.kind == "comm_msg" and m.value_chars]
                updates.append(len(changes))
                update_chars.append(sum(m.value_chars for m in changes))
                # Opened once, then value updates only; the whole answer arrived and was shown.
                ok = (bool(sent) and sent[0].kind == "comm_open" and answer.text == expected and answer.error is None
                      and not answer.interrupted and bool(changes) and changes[-1].value_chars > len(expected))
            else:
                seconds, out = timed(lambda: consumers.terminal("bench-long"))
                ok = out.rstrip("\n") == expected.rstrip("\n")
            if not ok:
                raise RuntimeError(f"{name}: the answer read does not match the answer sent")
            times[name].append(seconds)
    labels = {"raw": "raw SDK, iterating (baseline)", "raw_text": "raw SDK, reading chunk.text",
              "notebook": "session + NotebookRenderer", "terminal": "session + TerminalRenderer",
              "widget": "session + WidgetRenderer"}
    for name in names:
        say(f"  {labels[name]:<30} total s: {spread(times[name], '{:.3f}')}")
    ratios = {name: [o / r for o, r in zip(times[name], times["raw"], strict=True)]
              for name in ("notebook", "terminal", "widget")}
    for name, label in (("notebook", "NotebookRenderer"), ("terminal", "TerminalRenderer -> StringIO")):
        say(f"  {name} / raw, paired: {spread(ratios[name], '{:.2f}')}")
        results.add(f"3. {LONG_CHUNKS:,}-chunk answer, total time, session + {label} (median of {n})",
                    f"{median(times[name]):.2f} s ({median(ratios[name]):.2f}x)",
                    f"{median(times['raw']):.2f} s (raw SDK)",
                    f"<= {LONG_TARGET_RATIO:g}x", median(ratios[name]) <= LONG_TARGET_RATIO)
    say(f"  display messages per answer: {spread([float(m) for m in messages], '{:.0f}')}; "
        f"characters published per answer: {spread([c / 1e6 for c in chars], '{:.1f}')} M "
        f"(the answer itself is {len(expected) / 1e3:.0f} k)")
    results.add(f"4. Display messages for the {LONG_CHUNKS:,}-chunk answer (median of {n})",
                f"{median(messages):.0f} msgs, {median(chars) / 1e6:.1f} M chars",
                f"{LONG_CHUNKS:,} msgs (one per chunk), {len(expected) / 1e3:.0f} k chars of answer",
                "-", None)
    say("  widget: no kernel; each comm message ipywidgets sends is recorded where a kernel would serialize it")
    say("  and send it over ZMQ (no JSON, no ZMQ, no frontend). The bubble is an ipywidgets.HTML; the")
    say("  request is a chat turn (committed at the end); play() runs on a thread of its own, as in the widget.")
    say(f"  widget / raw, paired: {spread(ratios['widget'], '{:.2f}')}")
    say(f"  widget value updates per answer: {spread([float(u) for u in updates], '{:.0f}')}; value characters "
        f"sent per answer: {spread([c / 1e6 for c in update_chars], '{:.1f}')} M")
    results.add(f"6. Widget stream: {LONG_CHUNKS:,}-chunk answer, total time, session + WidgetRenderer -> "
                f"ipywidgets.HTML, on a thread (median of {n})",
                f"{median(times['widget']):.2f} s ({median(ratios['widget']):.2f}x)",
                f"{median(times['raw']):.2f} s (raw SDK)",
                f"<= {LONG_TARGET_RATIO:g}x", median(ratios["widget"]) <= LONG_TARGET_RATIO)
    rate = [u / t for u, t in zip(updates, times["widget"], strict=True)]
    results.add(f"6. Widget stream: value updates (comm messages) for the {LONG_CHUNKS:,}-chunk answer "
                f"(median of {n})",
                f"{median(updates):.0f} updates ({median(rate):.1f} /s), {median(update_chars) / 1e6:.1f} M chars",
                f"{LONG_CHUNKS:,} updates (one per chunk)", "-", None)


# -- figure 4: display messages per second ------------------------------------------------------


def bench_rate(results: Results, consumers: Consumers, n: int) -> None:
    say(f"\n[4] Display messages per second: {RATE_CHUNKS} chunks {RATE_DELAY * 1000:.0f} ms apart, {n} runs")
    rates: list[float] = []
    per_chunk: list[float] = []
    for _ in range(n):
        seconds, records = timed(lambda: consumers.notebook("bench-rate"))
        # Every publish counts: the placeholder, its updates, the final reset and answer.
        rates.append(len(records) / seconds)
        # Baseline: a renderer showing every chunk would send one message per chunk.
        per_chunk.append(RATE_CHUNKS / seconds)
        say(f"  run: {len(records)} messages in {seconds:.2f} s "
            f"({sum(r.update for r in records)} updates)")
    results.add(f"4. Display messages/s while streaming, ~3 s stream (median of {n})",
                f"{median(rates):.1f} /s", f"{median(per_chunk):.1f} /s (one per chunk)",
                f"<= {RATE_TARGET:g} /s", median(rates) <= RATE_TARGET)


# -- figure 5: peak memory -------------------------------------------------------------------------


def traced_peak(fn: Callable[[], object]) -> int:
    """Peak bytes allocated by Python while `fn` runs (tracemalloc, this process only)."""
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def bench_memory(results: Results, consumers: Consumers, n: int) -> None:
    say(f"\n[5] Peak memory (tracemalloc) consuming the {LONG_CHUNKS:,}-chunk answer, {n} run(s) each")
    raw: list[float] = []
    ours: list[float] = []
    for i in range(n):
        for path in ("raw", "ours") if i % 2 == 0 else ("ours", "raw"):
            if path == "raw":
                raw.append(traced_peak(lambda: consumers.raw("bench-long")) / 2**20)
            else:
                ours.append(traced_peak(lambda: consumers.notebook("bench-long")) / 2**20)
    say(f"  raw SDK, iterating MiB:        {spread(raw)}")
    say(f"  session + NotebookRenderer MiB:{spread(ours)}")
    results.add(f"5. Peak memory, {LONG_CHUNKS:,}-chunk answer (tracemalloc, median of {n})",
                f"{median(ours):.1f} MiB ({median(ours) / median(raw):.1f}x)", f"{median(raw):.1f} MiB (raw SDK)",
                "-", None)


# -- report -----------------------------------------------------------------------------------------


def load_average() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except (AttributeError, OSError):  # not on Unix
        return "n/a"


def facts(load_before: str) -> list[str]:
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        affinity = os.cpu_count()
    return [
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"google-genai {version('google-genai')}, IPython {version('ipython')}, "
        f"gemini-magic {version('gemini-magic')}",
        f"Machine: {platform.machine()} {platform.system()} {platform.release()}, "
        f"nproc {affinity} (os.cpu_count() {os.cpu_count()}); load average (1/5/15 min) "
        f"{load_before} at the start, {load_average()} at the end (other work on a shared machine adds noise)",
    ]


class ServedScript:
    """A benchmark script run again with --serve, in its own process (the fake server's
    work does not compete for our GIL); it prints "URL=..." when ready and stops at EOF."""

    def __init__(self, script: str | Path):
        self.script = Path(script).resolve()
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, str(self.script), "--serve"], cwd=REPO,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("URL="):
            self.__exit__()
            raise RuntimeError(f"fake server did not start: {line!r}")
        self.url = line.removeprefix("URL=")
        return self

    def ask(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()  # EOF: the server stops
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.proc = None


def print_table(results: Results, elapsed: float, load_before: str,
                how: str = "baselines measured in the same run, runs alternated with ours") -> None:
    """The Markdown table of every benchmark script, then the machine's facts."""
    say("\n## Results\n")
    say("| figure | ours | baseline | target | met |")
    say("|---|---|---|---|---|")
    # By figure number: figure 6 is measured in figure 3's rotation, against the same baseline.
    number = lambda row: int(row.figure.split(".", 1)[0]) if row.figure.split(".", 1)[0].isdigit() else 0  # noqa: E731
    for row in sorted(results.rows, key=number):
        met = {True: "yes", False: "**no**", None: "-"}[row.met]
        say(f"| {row.figure} | {row.ours} | {row.baseline} | {row.target} | {met} |")
    say("")
    for line in facts(load_before):
        say(f"- {line}")
    say(f"- Whole benchmark: {elapsed:.0f} s; {how}.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repeats: checks the script works")
    args = parser.parse_args(argv)
    repeats = QUICK if args.quick else Repeats()
    started = time.perf_counter()
    load_before = load_average()
    results = Results()
    failures: list[str] = []

    def attempt(name: str, step: Callable[[], object]) -> object:
        """Run one figure; a crash is reported and the other figures still run."""
        try:
            return step()
        except Exception:
            failures.append(name)
            traceback.print_exc()
            return None

    with tempfile.TemporaryDirectory(prefix="bench-gemini-") as tmp, FakeServer(Path(tmp)) as server:
        env = use_environment(server.url, Path(tmp))
        say(f"Fake Gemini server (own process) at {server.url}; "
            + ("QUICK run: too few repeats to trust the figures" if args.quick else "full run"))
        attempt("load", lambda: bench_load(results, env, repeats.load, Path(tmp) / "pycache"))
        # Only now does this process import the SDK and IPython (figure 1 ran in children).
        consumers = attempt("setup", lambda: Consumers(server.url).warm_up())
        if consumers is not None:
            attempt("first chunk", lambda: bench_first_chunk(results, consumers, repeats.ttfc))
            attempt("long stream", lambda: bench_long(results, consumers, repeats.long))
            attempt("rate", lambda: bench_rate(results, consumers, repeats.rate))
            attempt("memory", lambda: bench_memory(results, consumers, repeats.memory))
    print_table(results, time.perf_counter() - started, load_before)
    if failures:
        say(f"\nCrashed: {', '.join(failures)} (tracebacks above)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

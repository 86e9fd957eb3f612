"""Agent mode's `run_python`: code the model wrote, run in the user's namespace like a
cell, with what a cell would show captured for the model and for the card.

Not `shell.run_cell`: that fires pre/post_run_cell (which would take the running
%%gemini cell's place as "the cell" and "the last error") and prints tracebacks into
the cell. Instead the code is transformed as IPython would (magics, `!cmd`), compiled
under IPython's cell file names (real lines in tracebacks), and the last expression is
evaluated for its value, inside `capture_output`. It runs on the thread that calls it:
in a cell, the kernel's main thread, where Ctrl-C (Kernel ▸ Interrupt) stops it.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import itertools
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..context import LastError, Limits, capture_error, summarize

# Bounds on what goes back to the model, each said in-band where it cuts.
STREAM_CHARS = 2000  # stdout and stderr: the head and the tail of each
TRACEBACK_CHARS = 3000  # the end of a traceback: where it went wrong
RESPONSE_CHARS = 8000  # the whole response's text
MAX_IMAGES = 4  # figures and images shown to the model per run
_steps = itertools.count(1)
# Memory addresses differ on every run: masked, so a replayed run sends what was recorded.
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{6,16}\b|(?<=object at )[0-9a-fA-F]{6,16}\b")


@dataclass
class CodeRun:
    """What one run of the model's code did. Filled as it runs, so an interrupted run
    keeps what it printed. The value itself is not kept: its texts are made once, when
    the run ends (a slow or huge repr costs once, and the object is not held)."""

    code: str
    stdout: str = ""
    stderr: str = ""
    has_value: bool = False
    value_summary: str = ""  # what the model reads of the value (context.summarize, bounded)
    value_shown: str = ""  # the card's text of it (a bounded repr; a DataFrame's rows)
    value_table: str = ""  # a pandas DataFrame as pandas draws it, escaped (the card's HTML)
    displayed: list = field(default_factory=list)  # {"text/plain": ...} of display() calls
    images: list = field(default_factory=list)  # (mime, bytes): figures and displayed PNG/JPEG images
    error: LastError | None = None
    seconds: float = 0.0
    interrupted: bool = False
    limits: Limits = field(default_factory=Limits)
    card: str | None = None  # its card's HTML, made once when finished (render/code_cards.py)
    secrets: list = field(default_factory=list)  # the key(s): scrubbed from the card and the response
    on_output: Any = None  # called (throttled) as the code prints: the card shows output as it comes

    def clean(self, text: str) -> str:
        """`text` with the key scrubbed (the code may print os.environ), and any lone
        surrogate (a file name that is not UTF-8) escaped: it could not be sent or saved."""
        from ..errors import scrub

        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
        for secret in self.secrets:
            text = scrub(text, secret)
        return text

    @property
    def status(self) -> str:
        return "interrupted" if self.interrupted else "error" if self.error is not None else "ok"

    def keep_value(self, value) -> None:
        """The value's texts, made now (on the thread that ran the code, where Ctrl-C
        reaches a slow repr); the key is scrubbed before anything is cut."""
        limits = dataclasses.replace(self.limits, secrets=tuple(self.secrets))
        self.has_value = True
        self.value_summary = stable_text(self.clean(_safely(lambda: summarize(value, limits), value)))
        self.value_shown = self.clean(_safely(lambda: _shown(value), value))
        self.value_table = self.clean(_safely(lambda: _table(value), value, ""))

    def tool_response(self, call) -> tuple[str, dict, str, list]:
        """(status, the function response, the card's short text, image parts) for the model.
        No durations, no memory addresses: a replayed run sends exactly what was recorded."""
        from ..client import types
        from ..tools import scrub_all

        response: dict = {}
        if call.edited:
            response["edited_by_user"] = True
            response["code_that_ran"] = self.code
        # The key is scrubbed before anything is cut: a key across a cut would get past a scrub after.
        for name, text in (("stdout", self.stdout), ("stderr", self.stderr)):
            if text:
                response[name] = _head_tail(stable_text(self.clean(text)), STREAM_CHARS)
        texts = [stable_text(self.clean(bundle.get("text/plain", ""))) for bundle in self.displayed
                 if "text/plain" in bundle]
        if texts:
            response["displayed"] = [_head_tail(t, STREAM_CHARS) for t in texts]
        if self.has_value:
            response["result"] = self.value_summary
        if self.images:
            shown = self.images[:MAX_IMAGES]
            response["images"] = f"{len(shown)} image(s) attached, in the order made"
            if len(self.images) > len(shown):
                response["images"] += f"; {len(self.images) - len(shown)} more not sent"
        if self.error is not None:
            response["error"] = _tail(stable_text(self.clean(self.error.traceback)), TRACEBACK_CHARS)
        if self.interrupted:
            response["error"] = "Interrupted by the user before it finished."
        if not response or list(response) in (["edited_by_user", "code_that_ran"],):
            response["result"] = "(ran; no output and no value)"
        response = _bounded(scrub_all(response, self.secrets), RESPONSE_CHARS)
        blob, part = types().FunctionResponseBlob, types().FunctionResponsePart
        parts = [part(inline_data=blob(mime_type=mime, data=data)) for mime, data in self.images[:MAX_IMAGES]]
        return self.status, response, self.clean(self.summary()), parts

    def summary(self) -> str:
        """One short text of the outcome (a terminal's card, the card's plain text)."""
        if self.interrupted:
            return "interrupted"
        if self.error is not None:
            return self.error.summary
        bits = [b for b in (self.stdout.strip(), self.value_summary) if b]
        if self.images:
            bits.append(f"[{len(self.images)} image(s)]")
        return "\n".join(bits) or "(no output)"


# Bounds on what a card shows (the model's are above): a print loop or a figure per
# iteration must not freeze the frontend, nor fill the saved notebook.
CARD_STREAM_CHARS = 100_000
CARD_IMAGES = 20
CARD_VALUE_CHARS = 4000
TABLE_ROWS = 10


def _safely(make, value, fallback: str | None = None) -> str:
    try:
        return make()
    except Exception as exc:  # noqa: BLE001  (a value whose repr raises still gets a line)
        return fallback if fallback is not None else \
            f"<{type(value).__name__} object; its text raised {type(exc).__name__}>"


def _shown(value) -> str:
    import reprlib

    if _is_dataframe(value) or _is_series(value):
        return value.to_string(max_rows=TABLE_ROWS)
    shorter = reprlib.Repr()
    shorter.maxstring = shorter.maxother = CARD_VALUE_CHARS
    shorter.maxlist = shorter.maxtuple = shorter.maxdict = shorter.maxset = 100
    text = shorter.repr(value) if isinstance(value, (list, tuple, dict, set, frozenset)) else repr(value)
    if len(text) <= CARD_VALUE_CHARS:
        return text
    return f"{text[:CARD_VALUE_CHARS]}... [{len(text) - CARD_VALUE_CHARS:,} more characters]"


def _table(value) -> str:
    if not _is_dataframe(value):
        return ""
    import pandas

    # pandas' own method, unbound, on a real DataFrame: it escapes every cell and label, and
    # no subclass's to_html (the model's code could define one) is called.
    return pandas.DataFrame.to_html(value, max_rows=TABLE_ROWS, max_cols=20, escape=True, border=0,
                                    classes="gemini-table")


def _is_dataframe(value) -> bool:
    pandas = sys.modules.get("pandas")
    return pandas is not None and type(value) is pandas.DataFrame


def _is_series(value) -> bool:
    pandas = sys.modules.get("pandas")
    return pandas is not None and type(value) is pandas.Series


def run_code(shell, code: str, run: CodeRun) -> CodeRun:
    """Run `code` in the shell's namespace, capturing into `run`; KeyboardInterrupt is
    marked on the run and raised again (the agent stops). Nothing else escapes: whatever
    the code did, the streams, the display publisher and the figures are put back."""
    from IPython.utils.capture import capture_output

    before = _figure_numbers()
    started = time.perf_counter()
    captured = None
    out, err = _Live(), _Live()
    real_display, real_stdout = shell.display_pub, sys.stdout
    here = threading.get_ident()
    last = [float("-inf")]  # the first line shows at once

    def show_output() -> None:
        # The card shows what the code printed so far, at most every OUTPUT_INTERVAL s, and
        # only from the thread running it (a library's thread may print too). The card's
        # update must reach the frontend, not the capture: the real publisher is put back
        # for the moment it takes.
        now = time.monotonic()
        if run.on_output is None or threading.get_ident() != here or now - last[0] < OUTPUT_INTERVAL:
            return
        last[0] = now
        run.stdout, run.stderr = out.value(), err.value()
        capturing, printing = shell.display_pub, sys.stdout
        shell.display_pub, sys.stdout = real_display, real_stdout
        try:
            run.on_output()
        except Exception:  # noqa: BLE001  (showing output never breaks the run)
            pass
        finally:
            shell.display_pub, sys.stdout = capturing, printing

    out.on_write = err.on_write = show_output
    try:
        with capture_output(stdout=False, stderr=False, display=True) as captured:
            sys.stdout, sys.stderr = out, err  # capture_output puts the real ones back on exit
            try:
                _execute(shell, code, run)
            except KeyboardInterrupt:
                run.interrupted = True
                raise
            except BaseException as exc:  # noqa: BLE001  (SystemExit too: the kernel stays)
                run.error = LastError(capture_error(exc, code).summary, agent_traceback(exc), code)
    finally:
        try:
            run.seconds = time.perf_counter() - started
            run.stdout, run.stderr = out.value(), err.value()
            for output in (captured.outputs if captured is not None else []):
                _keep_output(run, output.data)
        finally:
            run.images.extend(_new_figures(before))
    return run


OUTPUT_INTERVAL = 0.5  # seconds between showings of a running code's output


class _Live(io.TextIOBase):
    """stdout or stderr of a code run: kept, and shown in the card as it comes."""

    encoding = "utf-8"  # what libraries that ask a stream for its encoding expect

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.on_write = None

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self.parts.append(text)
        if self.on_write is not None:
            self.on_write()
        return len(text)

    def writable(self) -> bool:
        return True

    def value(self) -> str:
        return "".join(self.parts)


def _execute(shell, code: str, run: CodeRun) -> None:
    source = shell.transform_cell(code)
    tree = ast.parse(source)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    # IPython's cell file name and line cache: a traceback shows the lines that failed.
    filename = shell.compile.cache(source, next(_steps))
    namespace, local = shell.user_global_ns, shell.user_ns
    if tree.body:
        exec(compile(ast.Module(tree.body, type_ignores=[]), filename, "exec"), namespace, local)  # noqa: S102
    if last is not None:
        value = eval(compile(ast.Expression(last.value), filename, "eval"), namespace, local)  # noqa: S307
        # A trailing semicolon hides the value, as in a cell (plt.title(...);), by IPython's own rule.
        if value is not None and not _quiet(source):
            run.keep_value(value)


def _quiet(source: str) -> bool:
    try:
        from IPython.core.displayhook import DisplayHook

        return DisplayHook.semicolon_at_end_of_expression(source)
    except (ImportError, AttributeError):  # an older IPython
        return source.rstrip().endswith(";")


def agent_traceback(exc: BaseException) -> str:
    """The traceback the agent reads: the frames of notebook code (its own and the user's
    functions), each library's frames as one line naming the library, and the error.
    Library line numbers change with every release: a recording made with one pandas
    replays with the next."""
    import traceback

    from ..context import _is_cell_file, _portable_paths

    lines = ["Traceback (most recent call last):\n"]
    skipped: list[str] = []

    def flush() -> None:
        if skipped:
            names = ", ".join(dict.fromkeys(skipped))
            lines.append(f"  ... in {names}\n")  # how many frames varies with the version too
            skipped.clear()

    started = False
    for frame in traceback.extract_tb(exc.__traceback__):
        if _is_cell_file(frame.filename):
            started = True
            flush()
            lines.extend(traceback.format_list([frame]))
        elif started:  # IPython's own frames before the cell's are left out
            skipped.append(_library(frame.filename))
    flush()
    lines.extend(traceback.format_exception_only(type(exc), exc))
    return _portable_paths("".join(lines))


def _library(path: str) -> str:
    for marker in ("site-packages/", "dist-packages/"):
        if marker in path:
            return path.split(marker, 1)[1].split("/", 1)[0]
    return "the standard library" if "/lib/python" in path else "library code"


def _keep_output(run: CodeRun, data: dict) -> None:
    """A display() of the code: a PNG or JPEG image is kept as an image, anything else as
    its text (an HTML output is never shown as markup)."""
    import base64

    for mime in ("image/png", "image/jpeg"):
        image = data.get(mime)
        if image:
            try:
                run.images.append((mime, base64.b64decode(image) if isinstance(image, str) else bytes(image)))
                return
            except (ValueError, TypeError):  # not an image after all: its text below
                break
    text = data.get("text/plain")
    if isinstance(text, str) and text:
        run.displayed.append({"text/plain": text})


def _figure_numbers() -> set:
    # Only when the user's code has already imported pyplot: importing it costs ~0.5 s.
    plt = sys.modules.get("matplotlib.pyplot")
    return set(plt.get_fignums()) if plt is not None else set()


def _new_figures(before: set) -> list[tuple[str, bytes]]:
    """Figures the code made and did not show: drawn to PNG and closed, so the inline
    backend does not also show them under the %%gemini cell."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return []
    images = []
    for number in sorted(set(plt.get_fignums()) - before):
        figure = plt.figure(number)
        buffer = io.BytesIO()
        try:
            # The figure's own size (no "tight" box, which follows the text drawn): a replay
            # on another machine matches the recorded image by its pixel size.
            figure.tight_layout()  # labels inside the figure, whose size stays as set
            figure.savefig(buffer, format="png", dpi=100)
            images.append(("image/png", buffer.getvalue()))
        except Exception:  # noqa: BLE001  (a figure that cannot draw: the model hears of the others)
            pass
        finally:
            plt.close(figure)
    return images


def stable_text(text: str) -> str:
    """`text` without what differs between runs of the same code (memory addresses)."""
    return _ADDRESS.sub("0x…", text)


def _head_tail(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[truncated: {len(text) - 2 * half:,} characters left out]\n{text[-half:]}"


def _tail(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"[truncated: the first {len(text) - limit:,} characters left out]\n{text[-limit:]}"


_NOTE_ROOM = 60  # what a "[truncated: ...]" note adds to a text it cuts


def _bounded(response: dict, limit: int) -> dict:
    """The response's text within about `limit` characters, each cut said in-band: the
    displayed outputs beyond what fits go first (counted), then the longest texts are cut."""
    def size() -> int:
        return sum(len(v) if isinstance(v, str) else sum(map(len, v)) for v in response.values()
                   if isinstance(v, (str, list)))

    displayed = response.get("displayed")
    if displayed and size() > limit:
        dropped = 0
        while len(displayed) > 1 and size() > limit:
            displayed.pop()
            dropped += 1
        if dropped:
            displayed.append(f"[truncated: {dropped} more displayed output(s) left out]")
    for _ in range(10):  # each pass cuts the longest text to fit; a few passes at most
        over = size() - limit
        texts = [k for k, v in response.items() if isinstance(v, str) and k != "edited_by_user"]
        if over <= 0 or not texts:
            break
        name = max(texts, key=lambda k: len(response[k]))
        text = response[name]
        keep = len(text) - over - _NOTE_ROOM
        if keep < 200:
            keep = 200
        if keep + _NOTE_ROOM >= len(text):
            break  # nothing left worth cutting
        response[name] = _head_tail(text, keep)
    return response

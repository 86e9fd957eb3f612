"""Agent mode's code cards: the code the model ran (highlighted), what it printed and
showed, its value, its error, and how long it took.

Everything here came from the model's code, so all of it is text: stdout, stderr and
reprs escaped in <pre>; an HTML output of the code (a `display(HTML(...))`) is shown as
its text/plain, never as markup. Images are PNG bytes we encoded ourselves, and a
DataFrame value is drawn by pandas with escaping on. A finished card is kept: a
streamed answer re-renders every block on each update, and pygments is not free.
"""

from __future__ import annotations

import base64
import html

from .code import code_block, image
from .tools import SLOW

_WORDS = {
    "pending": "waiting", "asking": "waiting for your approval", "running": "running", "ok": "done",
    "error": "raised an error", "refused": "not run", "unknown": "unknown function",
    "skipped": "not run: step limit", "interrupted": "interrupted",
}
_FINISHED = ("ok", "error", "refused", "unknown", "skipped", "interrupted")
_PRE = 'style="white-space:pre-wrap;margin:2px 0 4px"'
_ERR = 'style="white-space:pre-wrap;margin:2px 0 4px;background:rgba(255,0,0,0.06)"'
_LABEL = 'style="opacity:0.7;font-size:smaller;margin-top:4px"'
TABLE_ROWS = 10  # of a DataFrame value shown in the card (the model sees its own summary)


def status_words(call) -> str:
    words = _WORDS.get(call.status, call.status)
    if call.status in ("ok", "error") and call.seconds >= SLOW:
        words += f" in {call.seconds:.1f} s"
    if call.status == "refused":
        # The reason as the reader's own: the model's wording ("The user declined...") is not.
        words += ": you declined it" if call.approved is False else \
            f": {call.error[:1].lower()}{call.error[1:]}" if call.error else ""
    elif call.approved and call.status != "asking":
        words += " · you approved it"
    if call.edited:
        words += " (edited by you)"
    return words


def title(call) -> str:
    return f"Python #{call.number}" if call.number else "Python"


def code_card_html(call) -> str:
    run = call.detail
    if run is not None and run.card is not None:
        return run.card
    code = str((call.args or {}).get("code", ""))
    head = (f'<div class="gemini-code-run-head"><strong>{title(call)}</strong> · '
            f'<span class="gemini-tool-status">{html.escape(status_words(call))}</span></div>')
    body = [head, code_block(code, "python")]
    if run is not None:
        body.append(_outputs_html(run))
    card = (f'<div class="gemini-code-run gemini-tool" data-status="{html.escape(call.status)}" '
            f'style="border-left:3px solid #4a8;padding-left:6px;margin:6px 0">{"".join(body)}</div>\n')
    if run is not None:
        card = run.clean(card).replace("<redacted>", "&lt;redacted&gt;")  # shown as text, not a tag
    if run is not None and call.status in _FINISHED:
        run.card = card
    return card


def _outputs_html(run) -> str:
    out = []
    if run.stdout:
        out.append(f"<pre {_PRE}>{html.escape(run.stdout)}</pre>")
    if run.stderr:
        out.append(f"<pre {_ERR}>{html.escape(run.stderr)}</pre>")
    for bundle in run.displayed:
        out.append(f"<pre {_PRE}>{html.escape(bundle.get('text/plain', ''))}</pre>")
    for png in run.images:
        out.append(image("image/png", base64.b64encode(png).decode(), "figure"))
    if run.has_value:
        out.append(f"<div {_LABEL}>value</div>{_value_html(run.value)}")
    if run.error is not None:
        out.append(f"<pre {_ERR}>{html.escape(run.error.traceback)}</pre>")
    return "".join(out)


def _value_html(value) -> str:
    kind = type(value)
    if kind.__module__.startswith("pandas") and kind.__name__ == "DataFrame":
        try:
            # pandas escapes every cell and label (escape=True); no notebook styles needed.
            return value.to_html(max_rows=TABLE_ROWS, max_cols=20, escape=True, border=0,
                                 classes="gemini-table")
        except Exception:  # noqa: BLE001  (a frame that cannot draw itself: its text below)
            pass
    return f"<pre {_PRE}>{html.escape(value_text(value))}</pre>"


def value_text(value) -> str:
    kind = type(value)
    try:
        if kind.__module__.startswith("pandas") and kind.__name__ in ("DataFrame", "Series"):
            return value.to_string(max_rows=TABLE_ROWS)
        text = repr(value)
    except Exception as exc:  # noqa: BLE001
        return f"<{kind.__name__} object; its repr raised {type(exc).__name__}>"
    return text if len(text) <= 4000 else text[:4000] + f"... [{len(text) - 4000:,} more characters]"


def code_card_text(call) -> str:
    """The card as plain text: the terminal's, and text/plain (nbval compares it)."""
    run = call.detail
    lines = [f"[{title(call)}: {status_words(call)}]", str((call.args or {}).get("code", "")).rstrip()]
    if run is not None:
        if run.stdout:
            lines += ["[stdout]", run.stdout.rstrip()]
        if run.stderr:
            lines += ["[stderr]", run.stderr.rstrip()]
        lines += [bundle.get("text/plain", "") for bundle in run.displayed]
        if run.images:
            lines.append(f"[{len(run.images)} image(s)]")
        if run.has_value:
            lines += ["[value]", value_text(run.value)]
        if run.error is not None:
            lines += ["[error]", run.error.traceback.rstrip()]
        return run.clean("\n".join(lines))
    return "\n".join(lines)

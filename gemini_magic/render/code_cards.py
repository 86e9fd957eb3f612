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

from ..agent.code_runs import CARD_IMAGES, CARD_STREAM_CHARS
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
        out.append(f"<pre {_PRE}>{html.escape(_bounded_stream(run.stdout))}</pre>")
    if run.stderr:
        out.append(f"<pre {_ERR}>{html.escape(_bounded_stream(run.stderr))}</pre>")
    for bundle in run.displayed:
        out.append(f"<pre {_PRE}>{html.escape(bundle.get('text/plain', ''))}</pre>")
    for mime, data in run.images[:CARD_IMAGES]:
        out.append(image(mime, base64.b64encode(data).decode(), "figure"))
    if len(run.images) > CARD_IMAGES:
        out.append(f"<div {_LABEL}>[{len(run.images) - CARD_IMAGES} more image(s) not shown]</div>")
    if run.has_value:
        # A DataFrame as pandas draws it (escaped, by pandas' own method), else its text.
        shown = run.value_table or f"<pre {_PRE}>{html.escape(run.value_shown)}</pre>"
        out.append(f"<div {_LABEL}>value</div>{shown}")
    if run.error is not None:
        out.append(f"<pre {_ERR}>{html.escape(run.error.traceback)}</pre>")
    return "".join(out)


def _bounded_stream(text: str) -> str:
    """A card's stdout or stderr: its head and tail when very long (the frontend, and the
    saved notebook, would carry all of it otherwise)."""
    if len(text) <= CARD_STREAM_CHARS:
        return text
    half = CARD_STREAM_CHARS // 2
    return f"{text[:half]}\n[... {len(text) - 2 * half:,} characters not shown ...]\n{text[-half:]}"


def code_card_text(call) -> str:
    """The card as plain text: the terminal's, and text/plain (nbval compares it)."""
    run = call.detail
    lines = [f"[{title(call)}: {status_words(call)}]", str((call.args or {}).get("code", "")).rstrip()]
    if run is not None:
        if run.stdout:
            lines += ["[stdout]", _bounded_stream(run.stdout).rstrip()]
        if run.stderr:
            lines += ["[stderr]", _bounded_stream(run.stderr).rstrip()]
        lines += [bundle.get("text/plain", "") for bundle in run.displayed]
        if run.images:
            lines.append(f"[{len(run.images)} image(s)]")
        if run.has_value:
            lines += ["[value]", run.value_shown]
        if run.error is not None:
            lines += ["[error]", run.error.traceback.rstrip()]
        return run.clean("\n".join(lines))
    return "\n".join(lines)


def code_that_ran(calls, key: str, cells: bool) -> tuple[dict, dict] | None:
    """(bundle, metadata) showing the code of the runs that succeeded, in order: as cells
    below the asking cell when the front end inserts several (`cells`: the metadata asks
    for them, and for none when no code ran, so earlier ones go), else one block to copy.
    None when there is nothing to show."""
    from ..frontend import insert_metadata

    codes = [str(call.args.get("code", "")).strip() for call in calls if call.kind == "code" and call.status == "ok"]
    codes = [code for code in codes if code]
    n = len(codes)
    if cells:
        metadata = {"gemini_magic": insert_metadata(key, "", False, cells=codes)}
        words = f"The code Gemini ran is in the {n} cell{'s' * (n != 1)} below." if n else "Gemini ran no code."
        return {"text/plain": words, "text/html": f"<div><em>{html.escape(words)}</em></div>"}, metadata
    if not n:
        return None
    joined = "\n\n".join(codes)
    words = f"The code Gemini ran ({n} run{'s' * (n != 1)}), to copy into a cell:"
    block = code_block(joined, "python")
    return {"text/plain": f"{words}\n{joined}",
            "text/html": f'<div class="gemini-code-ran"><div><em>{words}</em></div>{block}</div>'}, {}

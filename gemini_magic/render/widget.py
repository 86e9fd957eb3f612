"""The chat widget's renderer: an answer streamed into one message bubble (an ipywidgets
HTML widget), by the same protocol as the notebook and terminal renderers, so the widget
gets the same throttling, rate-limit countdown, retry and notices, and the same safe HTML.

    renderer = WidgetRenderer(bubble, interval=0.1)
    play(answer, renderer)          # on the widget's background thread

Everything in a bubble is safe HTML: the answer through compose() (no raw HTML from the
model, safe links only), and the status, notes and errors escaped (and scrubbed of the key).

What the bubble says while nothing has arrived is what is happening: "Gemini is writing…"
only while the request is simply on its way; a rate-limit countdown or a retry replaces
it (and stays under the text, if some had arrived, until more comes). `on_status` tells
the front end too (the chat's status line), with "" once the wait or retry is over.
Every line the renderer writes itself reads as sentences (errors.sentence).
"""

from __future__ import annotations

import html

from ..errors import sentence
from ..events import Notice, OtherPart, Retrying, TextDelta, ThoughtDelta, ToolUpdate, retry_line, usage_line
from .bundles import compose
from .throttle import Throttle

TYPING = '<span class="gm-typing">Gemini is writing…</span>'


def model_html(body: str, meta: str = "", note: str = "", error: bool = False, status: str = "") -> str:
    """A model's bubble: `body` is already safe HTML; meta, note and status are plain text.
    With no body, the status is the bubble's text."""
    from ..client import find_api_key
    from ..errors import scrub

    key = find_api_key()
    extra = ""
    if status:
        extra += f'<div class="gm-bubble-status">{html.escape(scrub(status, key))}</div>'
    if note:
        extra += f'<div class="gm-note{" gm-error" if error else ""}">{html.escape(scrub(note, key))}</div>'
    footer = f'<div class="gm-meta">{html.escape(meta)}</div>' if meta else ""
    return f'<div class="gm-row"><div class="gm-bubble gm-model">{body}{extra}</div></div>{footer}'


class WidgetRenderer:
    def __init__(self, bubble, interval: float = 0.1, on_end=None, on_status=None):
        self.bubble = bubble  # an ipywidgets.HTML
        self.on_end = on_end  # called with the answer once it is shown whole
        self.on_status = on_status  # called with the status line ("" when there is none)
        self.notes: list[str] = []
        self.status = ""
        self._throttle = Throttle(interval)

    def start(self, answer) -> None:
        self.answer = answer
        self.bubble.value = model_html(TYPING)

    def _show(self) -> None:
        if self.answer.blocks:
            body = compose(self.answer, "markdown")["text/html"]
        else:
            body = "" if self.status else TYPING  # a wait or a retry is not writing: the status says which
        self.bubble.value = model_html(body, status=self.status)

    def _set_status(self, status: str) -> None:
        self.status = status
        if self.on_status is not None:
            self.on_status(status)

    def event(self, event) -> None:
        if isinstance(event, (TextDelta, ThoughtDelta)):
            if self.status:
                self._set_status("")  # writing now: the retry or wait is over
            self._throttle.render(self._show)
        elif isinstance(event, (ToolUpdate, OtherPart)):
            self._throttle.now(self._show)
        elif isinstance(event, Retrying):
            self._set_status(sentence(retry_line(event, self.answer.engine.retry.attempts)))
            self._show()
        elif isinstance(event, Notice):
            self.notes.append(event.text)

    def progress(self, call) -> None:
        """A running tool's card again (an agent's code printing as it runs)."""
        self._show()

    def waiting(self, wait) -> None:
        """The rate-limit countdown, inside the bubble."""
        self._set_status(sentence(f"Waiting {wait.seconds:.0f} s: {wait.reason}"))
        self._show()

    def finish(self, answer) -> None:
        note, error = "", False
        if answer.error is not None:
            note, error = str(answer.error), True
        elif answer.interrupted:
            note = "Stopped: the partial answer stays here, but is not part of the conversation."
        else:
            note = answer.notice() or ""
        note = " ".join(sentence(n) for n in [*self.notes, note] if n and n.strip())
        body = compose(answer, "markdown")["text/html"] if answer.blocks else ""
        if not body and not note:
            note = "No answer."
        if self.status:
            self._set_status("")
        self.bubble.value = model_html(body, usage_line(answer), note, error)
        if self.on_end is not None:
            self.on_end(answer)

"""The notebook front end: streams an answer into the cell's output.

The output sequence is built for strict nbval, which applies neither
`update_display_data` nor `clear_output` when it re-runs a notebook:
  1. an empty placeholder is displayed;
  2. it is updated while the answer streams (throttled);
  3. it is reset to empty at the end, and the final answer is displayed once,
     as a new output.
A saved notebook then holds an empty placeholder and the answer, and a re-run that
sees only the first state of each display compares equal.
"""

from __future__ import annotations

import html
import time

from ..events import (
    Notice,
    OtherPart,
    Retrying,
    TextDelta,
    ThoughtDelta,
    ToolUpdate,
    provenance,
    retry_line,
    usage_line,
)
from .bundles import compose
from .notes import note
from .throttle import Throttle

_EMPTY = {"text/plain": ""}


def inserts(answer) -> bool:
    """Whether `-f code` puts this answer's code in a cell: only a whole answer."""
    return bool(answer.text_parts) and answer.error is None and not answer.interrupted


class NotebookRenderer:
    def __init__(self, fmt: str = "markdown", footer: bool = False, interval: float = 0.1,
                 clock=time.monotonic):
        self.fmt = fmt
        self.footer = footer
        self.interval = interval  # seconds between display updates while streaming
        self.clock = clock
        self.handle = None
        self.updates = 0
        self.insert = None  # -f code: (key, by_kernel) for the JupyterLab extension (frontend.py)
        self._throttle = Throttle(interval, clock)

    def start(self, answer) -> None:
        self.answer = answer
        # A tool loop shows cards live even without streaming text.
        if answer.request.stream or answer.request.toolbox:
            self._placeholder()

    def _placeholder(self):
        if self.handle is None:
            from IPython.display import display

            self.handle = display(_EMPTY, raw=True, display_id=True)
        return self.handle

    def _show(self, bundle: dict) -> None:
        self._placeholder().update(bundle, raw=True)
        self.updates += 1

    def _live_format(self) -> str:
        return "text" if self.fmt == "code" else self.fmt

    def _show_live(self) -> None:
        self._show(compose(self.answer, self._live_format()))

    def event(self, event) -> None:
        if isinstance(event, (TextDelta, ThoughtDelta)):
            self._throttle.render(self._show_live)
        elif isinstance(event, (ToolUpdate, OtherPart)):
            self._throttle.now(self._show_live)
        elif isinstance(event, Notice):
            note(event.text, event.kind)
        elif isinstance(event, Retrying):
            # A lasting note, not a placeholder update: the saved notebook shows that
            # the answer needed a retry, and replay shows the same note.
            note(retry_line(event, self.answer.engine.retry.attempts))

    def progress(self, call) -> None:
        """A running tool's card again (an agent's code printing as it runs)."""
        self._show_live()

    def waiting(self, wait) -> None:
        """A countdown while a request waits for a rate-limit slot (the placeholder
        is emptied at the end, like every live view)."""
        self._show({"text/plain": f"Waiting {wait.seconds:.0f} s: {wait.reason}.",
                    "text/html": f"<div><em>Waiting {wait.seconds:.0f} s: {html.escape(wait.reason)}.</em></div>"})

    def finish(self, answer) -> None:
        from IPython.display import display

        if self.handle is not None:
            self.handle.update(_EMPTY, raw=True)
        if answer.blocks:
            footer = usage_line(answer) if self.footer else ""
            metadata = provenance(answer)
            if self.insert is not None and inserts(answer):
                from ..frontend import insert_metadata
                from .markdown import extract_code

                key, by_kernel = self.insert
                metadata |= insert_metadata(key, extract_code(answer.text)[0], by_kernel)
            display(compose(answer, self.fmt, footer), raw=True, metadata={"gemini_magic": metadata})
        notice = answer.notice()
        if notice:
            note(notice, "warning")

"""The terminal front end: plain text, printed as it arrives."""

from __future__ import annotations

import sys

from ..events import Notice, OtherPart, Retrying, TextDelta, ThoughtDelta, ToolUpdate, retry_line, usage_line
from .tools import card_text, part_text, sources_markdown


class TerminalRenderer:
    def __init__(self, fmt: str = "markdown", footer: bool = False, out=None, err=None, **_):
        self.fmt = fmt
        self.footer = footer
        self.out = out
        self.err = err

    def start(self, answer) -> None:
        self.answer = answer
        self._wrote = False
        self._thinking = False

    def event(self, event) -> None:
        out = self.out or sys.stdout
        if isinstance(event, TextDelta):
            if self._thinking:  # the answer after the thoughts, on lines of its own
                out.write("\n\n")
                self._thinking = False
            out.write(event.text)
            out.flush()
            self._wrote = True
        elif isinstance(event, ThoughtDelta):
            if not self._thinking:
                out.write("[thoughts]\n")
                self._thinking = True
            out.write(event.text)
            out.flush()
            self._wrote = True
        elif isinstance(event, ToolUpdate):
            call = event.call
            if call.kind == "code":
                from .code_cards import code_card_text

                if call.status != "running":  # asking: the code to approve; then the outcome
                    self._line(code_card_text(call) if call.status != "asking" else
                               f"Gemini wants to run this Python:\n{call.args.get('code', '')}")
            elif call.status not in ("pending", "running", "asking"):
                self._line(card_text(call))
        elif isinstance(event, OtherPart):
            self._line(part_text(event.part))
        elif isinstance(event, Notice):
            print(event.text, file=self.err or sys.stderr)
        elif isinstance(event, Retrying):
            print(retry_line(event, self.answer.engine.retry.attempts), file=self.err or sys.stderr)

    def waiting(self, wait) -> None:
        # Once per wait, not every tick of the countdown.
        if wait.reason != getattr(self, "_waiting_for", None):
            self._waiting_for = wait.reason
            print(f"Waiting {wait.seconds:.0f} s: {wait.reason}.", file=self.err or sys.stderr)

    def _line(self, text: str) -> None:
        out = self.out or sys.stdout
        if self._wrote:
            out.write("\n")
        out.write(text + "\n")
        out.flush()
        self._wrote = False

    def finish(self, answer) -> None:
        out = self.out or sys.stdout
        if self._wrote and not answer.text.endswith("\n"):
            out.write("\n")
        if answer.grounding is not None:
            out.write(sources_markdown(answer.grounding).strip() + "\n")
        if self.footer and answer.text_parts:
            out.write(f"[{usage_line(answer)}]\n")
        out.flush()
        notice = answer.notice()
        if notice:
            print(notice, file=self.err or sys.stderr)

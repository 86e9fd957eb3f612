"""A failed cell, shown as one short message with a next step (no traceback)."""

from __future__ import annotations

import traceback
from typing import TYPE_CHECKING

from ..client import find_api_key
from ..errors import scrub

if TYPE_CHECKING:
    from ..errors import GeminiError


class CellFailed(Exception):
    """Raised to end a cell that failed, shown as one short message (no traceback).

    IPython prints `_render_traceback_()` instead of a traceback; the cell still
    counts as failed, so "Run All" stops there as after any error."""

    def __init__(self, error: GeminiError, debug_text: str = ""):
        super().__init__(scrub(str(error), find_api_key()))
        self.error = error
        self.debug_text = debug_text

    def _render_traceback_(self) -> list[str]:
        lines = [f"\x1b[31mGeminiError\x1b[0m: {self.error.message}"]
        if self.error.hint:
            lines.append(self.error.hint)
        if self.debug_text:
            lines.append(self.debug_text)
        # A server may echo the key in an error message; it never reaches the output.
        key = find_api_key()
        return [scrub(line, key) for line in lines]


def failed(error: GeminiError, debug: bool = False) -> CellFailed:
    """The CellFailed for `error`, with the full traceback (key scrubbed) when debugging."""
    text = ""
    if debug:
        cause = error.__cause__ or error
        text = scrub("".join(traceback.format_exception(type(cause), cause, cause.__traceback__)), find_api_key())
    return CellFailed(error, text)

"""What a reader sees of rendered HTML: its text, without the tags (highlighting splits
code into many spans) and without our Copy buttons' label."""

from __future__ import annotations

import html
import re

_BUTTON = re.compile(r"<button\b[^>]*>.*?</button>", re.S)
_TAG = re.compile(r"<[^>]+>")


def visible_text(markup: str) -> str:
    return html.unescape(_TAG.sub("", _BUTTON.sub("", markup)))

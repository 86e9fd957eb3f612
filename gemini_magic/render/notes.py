"""Notices that are not errors: a quiet note in a notebook, a line on stderr in a terminal.

JupyterLab shows everything written to stderr in its pink error box, so a notice such
as "The answer was cut at the output token limit" must not go there. Under a kernel a
note is a display output of its own: text/plain for nbval and plain frontends, and a
small bordered line in text/html (escaped: a note may quote a server's message).
Errors are not notes: a failed cell still fails (magics/failure.py).
"""

from __future__ import annotations

import html
import sys

# kind -> the left border's colour: grey for a note, amber for one that says the answer
# is not what was asked (cut short, stopped, empty).
_BORDER = {"note": "var(--jp-border-color1, #bdbdbd)", "warning": "var(--jp-warn-color1, #f57c00)"}


def note_bundle(text: str, kind: str = "note") -> dict:
    style = (f"border-left:3px solid {_BORDER[kind]};padding:1px 8px;margin:2px 0;"
             "color:var(--jp-ui-font-color1, #333);font-size:var(--jp-ui-font-size1, 13px)")
    return {"text/plain": text,
            "text/html": f'<div class="gemini-note gemini-note-{kind}" style="{style}">{html.escape(text)}</div>'}


def note(text: str, kind: str = "note", shell=None) -> None:
    """Say `text` where the user is looking: a note under a kernel, stderr elsewhere."""
    if kind not in _BORDER:
        raise ValueError(f"unknown note kind {kind!r}")
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    if getattr(shell, "kernel", None) is None:
        print(text, file=sys.stderr)
        return
    from IPython.display import display

    display(note_bundle(text, kind), raw=True, metadata={"gemini_magic": {"note": kind}})

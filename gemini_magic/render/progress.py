"""Upload progress for the Files API: a bar in a notebook, lines in a terminal.

The bar follows the answer's rule for strict nbval: an empty placeholder first,
updated while the upload runs, empty again at the end.
"""

from __future__ import annotations

import sys

_LABELS = {"uploading": "Uploading to the Gemini Files API", "uploaded": "Uploaded",
           "processing": "Waiting for Gemini to process the file", "done": "File ready"}


def upload_progress(shell):
    if getattr(shell, "kernel", None) is not None:
        return NotebookProgress()
    return terminal_progress


class NotebookProgress:
    def __init__(self) -> None:
        self.handle = None

    def __call__(self, stage: str, fraction: float | None) -> None:
        from IPython.display import display

        if self.handle is None:
            self.handle = display({"text/plain": ""}, raw=True, display_id=True)
        if stage == "done":
            self.handle.update({"text/plain": ""}, raw=True)
            self.handle = None
            return
        label = _LABELS.get(stage, stage)
        value = "" if fraction is None else f' value="{fraction:.3f}"'
        percent = "" if fraction is None else f" {fraction:.0%}"
        self.handle.update({"text/html": f"<div>{label}{percent} <progress max=\"1\"{value}></progress></div>",
                            "text/plain": f"{label}{percent}"}, raw=True)


def terminal_progress(stage: str, fraction: float | None) -> None:
    percent = "" if fraction is None else f" {fraction:.0%}"
    print(f"{_LABELS.get(stage, stage)}{percent}", file=sys.stderr)


def batch_progress(shell, label: str = "Gemini batch"):
    """A batch's progress: an ipywidgets bar under a kernel; a line every 10% in a terminal.
    `progress(done, total, failed)`."""
    if shell is not None and getattr(shell, "kernel", None) is not None:
        import ipywidgets
        from IPython.display import display

        bar = ipywidgets.IntProgress(min=0, max=1, description=label)
        text = ipywidgets.Label()
        display(ipywidgets.HBox([bar, text]))

        def show(done: int, total: int, failed: int) -> None:
            bar.max = max(total, 1)
            bar.value = done + failed
            text.value = f"{done} done" + (f", {failed} failed" if failed else "") + f" of {total}"

        return show
    state = {"last": -1}

    def line(done: int, total: int, failed: int) -> None:
        tenth = (done + failed) * 10 // max(total, 1)
        if tenth != state["last"]:
            state["last"] = tenth
            print(f"{label}: {done} done" + (f", {failed} failed" if failed else "") + f" of {total}",
                  file=sys.stderr)

    return line

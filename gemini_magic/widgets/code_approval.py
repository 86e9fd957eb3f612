"""Run / Skip / Edit for code the agent wants to run (agent mode, `call.kind == "code"`).

The same shape as approval.py's Approval (`event`, `decide`, `allowed`, `widget`,
`close`), so the chat widget's Stop, New chat and close decline a pending one alike.

Edit swaps the highlighted code for a text box holding it; Run then runs what the box
holds: `call.args["code"]` becomes the edited text and `call.edited` is set (only when
it changed), so the code run's card says "edited by you" and the model is told
`edited_by_user` and `code_that_ran` (agent/code_runs.py). The model's own turn keeps
what it asked for: the call's args are a copy of its function call's.

The code is the model's: it reaches the page only through render.code.code_block, which
escapes it (pygments), or as a Textarea's value, which is text.
"""

from __future__ import annotations

import threading

import ipywidgets as widgets

QUESTION = ('<div class="gm-code-question"><b>Run this code in your kernel?</b> '
            '<span style="opacity:0.7">Gemini wrote it; it runs in your namespace, like a cell.</span></div>')


class CodeApproval:
    """Run/Skip/Edit buttons for one code run; the request thread waits on `event`."""

    def __init__(self, call):
        from ..render.code import code_block

        self.call = call
        self.allowed = False
        self.event = threading.Event()
        self._lock = threading.Lock()  # a click and Stop (another thread) may decide at once
        self.code = str((call.args or {}).get("code", ""))
        self.question = widgets.HTML(QUESTION)
        self.view = widgets.HTML(code_block(self.code, "python"))
        lines = self.code.count("\n") + 2
        self.editor = widgets.Textarea(value=self.code, rows=min(max(lines, 4), 20),
                                       layout=widgets.Layout(width="100%"))
        self.editor.add_class("gm-code-editor")
        self.run_button = widgets.Button(description="Run", button_style="success", icon="play",
                                         tooltip="Run this code in the kernel", layout=widgets.Layout(width="auto"))
        self.edit_button = widgets.Button(description="Edit", icon="pencil",
                                          tooltip="Change the code before it runs",
                                          layout=widgets.Layout(width="auto"))
        self.skip_button = widgets.Button(description="Skip", button_style="danger", icon="times",
                                          tooltip="Do not run it: Gemini is told you declined",
                                          layout=widgets.Layout(width="auto"))
        self.run_button.on_click(lambda _: self.decide(True))
        self.skip_button.on_click(lambda _: self.decide(False))
        self.edit_button.on_click(lambda _: self.start_editing())
        self.buttons = widgets.HBox([self.run_button, self.edit_button, self.skip_button],
                                    layout=widgets.Layout(grid_gap="6px"))
        self.widget = widgets.VBox([self.question, self.view, self.buttons], layout=widgets.Layout(
            margin="2px 0 6px", padding="4px 8px", border_left="3px solid #4a8"))
        self.widget.add_class("gm-approval")
        self.widget.add_class("gm-code-approval")

    @property
    def editing(self) -> bool:
        return self.editor in self.widget.children

    def start_editing(self) -> None:
        """The code in a text box; Run runs what it then holds."""
        with self._lock:
            if self.event.is_set() or self.editing:
                return
            self.edit_button.disabled = True
            self.widget.children = [self.question, self.editor, self.buttons]

    def decide(self, allowed: bool) -> None:
        with self._lock:
            if self.event.is_set():
                return
            if allowed and self.editing:
                code = self.editor.value
                if code != self.code:
                    if self.call.args is None:
                        self.call.args = {}
                    self.call.args["code"] = code
                    self.call.edited = True
            self.allowed = allowed
            for control in (self.run_button, self.skip_button, self.edit_button, self.editor):
                control.disabled = True
            self.event.set()

    def close(self) -> None:
        for w in (self.question, self.view, self.editor, self.run_button, self.edit_button, self.skip_button,
                  self.buttons, self.widget):
            w.close()

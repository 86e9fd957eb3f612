"""Allow/Decline buttons for a tool call the chat widget must ask about."""

from __future__ import annotations

import html
import threading

import ipywidgets as widgets


class Approval:
    """Allow/Decline buttons for one tool call; the request thread waits on `event`."""

    def __init__(self, call):
        from ..render.tools import call_signature

        self.call = call
        self.allowed = False
        self.event = threading.Event()
        question = widgets.HTML(f"Allow Gemini to run <code>{html.escape(call_signature(call))}</code>?")
        self.yes = widgets.Button(description="Allow", button_style="success", icon="check",
                                  layout=widgets.Layout(width="auto"))
        self.no = widgets.Button(description="Decline", button_style="danger", icon="times",
                                 layout=widgets.Layout(width="auto"))
        self.yes.on_click(lambda _: self.decide(True))
        self.no.on_click(lambda _: self.decide(False))
        self.widget = widgets.HBox([question, self.yes, self.no],
                                   layout=widgets.Layout(align_items="center", grid_gap="6px", margin="2px 0 6px"))
        self.widget.add_class("gm-approval")

    def decide(self, allowed: bool) -> None:
        if self.event.is_set():
            return
        self.allowed = allowed
        self.yes.disabled = self.no.disabled = True
        self.event.set()

    def close(self) -> None:
        for w in (self.yes, self.no, self.widget):
            w.close()

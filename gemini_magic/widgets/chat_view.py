"""The chat widget's controls and view, apart from what it does with a conversation
(chat.py): the transcript, the input (one line, or several with the ¶ toggle), the
buttons, attachments and the status line."""

from __future__ import annotations

import html

import ipywidgets as widgets

from .messages import BUSY, CSS, Message
from .models import bare, model_choices


class ChatView(widgets.VBox):
    """The controls; a subclass answers `send`, `stop`, `new_chat` and `_export_clicked`."""

    def _build(self, magics, name: str, model: str | None) -> None:
        self.messages: list[Message] = []
        self._empty = widgets.HTML('<div class="gm-empty">No messages yet. Ask Gemini anything.</div>')
        choices = model_choices(magics)
        current = bare(model or magics.model)
        ids = list(choices.ids)
        if current and current not in ids:
            ids.insert(0, current)  # a model the list lacks (a preview, a gateway's) is kept
        self.model = widgets.Dropdown(options=ids, value=current or None,
                                      layout=widgets.Layout(width="230px"), tooltip="Model for this chat")
        self.header = widgets.HTML(
            CSS + f'<b>Gemini chat</b> <span style="opacity:0.6">· {html.escape(name)}</span>',
            layout=widgets.Layout(flex="1 1 auto"))
        self.transcript = widgets.VBox(layout=widgets.Layout(padding="4px 2px", min_height="60px"))
        self.input = widgets.Text(placeholder="Message Gemini — Enter sends", continuous_update=True,
                                  layout=widgets.Layout(flex="1 1 auto", width="auto"))
        self.input.on_msg(self._input_message)
        self.area = widgets.Textarea(placeholder="Message Gemini — Enter adds a line, the Send button sends",
                                     rows=4, layout=widgets.Layout(flex="1 1 auto", width="auto"))
        self.multiline = widgets.ToggleButton(False, icon="paragraph", tooltip="Multi-line message",
                                              layout=widgets.Layout(width="36px"))
        self.multiline.observe(self._toggle_multiline, "value")
        self.upload = widgets.FileUpload(accept="image/*,.pdf,application/pdf", multiple=True, description="Attach",
                                         icon="paperclip", tooltip="Attach images or PDFs to the next message",
                                         layout=widgets.Layout(width="auto"))
        self.upload.observe(self._attachments_changed, "value")
        self.send_button = widgets.Button(description="Send", button_style="primary", icon="paper-plane",
                                          layout=widgets.Layout(width="90px"))
        self.send_button.on_click(lambda _: self.send())
        self.stop_button = widgets.Button(description="Stop", icon="stop", disabled=True,
                                          layout=widgets.Layout(width="80px"))
        self.stop_button.on_click(lambda _: self.stop())
        self.new_button = widgets.Button(description="New chat", icon="plus", layout=widgets.Layout(width="100px"),
                                         tooltip="Clear this conversation")
        self.new_button.on_click(lambda _: self.new_chat())
        self.export_button = widgets.Button(description="Export", icon="download",
                                            layout=widgets.Layout(width="90px"),
                                            tooltip="Write NAME.chat.json and NAME.chat.md next to the notebook")
        self.export_button.on_click(lambda _: self._export_clicked())
        self.attached = widgets.HTML()
        self.status = widgets.HTML()
        if choices.reason:
            self._say(choices.reason)

        self.input_row = widgets.HBox([self.upload, self.multiline, self.input, self.send_button],
                                      layout=widgets.Layout(align_items="center", grid_gap="4px"))
        top = widgets.HBox([self.header, self.model, self.new_button, self.stop_button, self.export_button],
                           layout=widgets.Layout(align_items="center", grid_gap="4px"))
        super().__init__(
            [top, self.transcript, self.attached, self.input_row, self.status],
            layout=widgets.Layout(border="1px solid var(--jp-border-color1,#ccc)",
                                  padding="8px 10px", max_width="860px", grid_gap="2px"),
        )
        self.add_class("gm-chat")

    @property
    def text(self) -> str:
        """The text in the input box (the one-line box or, in multi-line mode, the text area)."""
        return self._editor.value

    @text.setter
    def text(self, value: str) -> None:
        self._editor.value = value

    # -- view -------------------------------------------------------------------------

    def _add(self, message: Message) -> Message:
        self.messages.append(message)
        self._show_log()
        return message

    def _show_log(self) -> None:
        children = [m.widget for m in self.messages]
        run = self._run
        if run is not None:
            children += [a.widget for a in run.approvals]
        for child in children:
            child.layout.width = "100%"
        self.transcript.children = children or [self._empty]

    def _set_busy(self, busy: bool) -> None:
        self.stop_button.disabled = not busy
        self.send_button.disabled = busy
        if busy:
            self.status.value = BUSY
        elif self.status.value == BUSY:
            self.status.value = ""

    def _say(self, text: str, error: bool = False) -> None:
        from ..client import find_api_key
        from ..errors import scrub

        cls = "gm-status gm-error" if error else "gm-status"
        shown = html.escape(scrub(text, find_api_key()))
        self.status.value = f'<div class="{cls}">{shown}</div>' if text else ""

    def _input_message(self, widget, content, buffers) -> None:
        # The Text view sends {"event": "submit"} on Enter, after syncing the value.
        if isinstance(content, dict) and content.get("event") == "submit":
            self.send()

    @property
    def _editor(self):
        return self.area if self.multiline.value else self.input

    def _toggle_multiline(self, change) -> None:
        old, new = (self.input, self.area) if change.new else (self.area, self.input)
        new.value, old.value = old.value, ""
        self.input_row.children = [self.upload, self.multiline, new, self.send_button]

    def _attachments_changed(self, change) -> None:
        names = [f"{f['name']} ({f['size'] / 1024:,.0f} KB)" for f in change.new]
        self.attached.value = (
            '<div class="gm-meta">📎 ' + html.escape(", ".join(names)) + " — sent with the next message</div>"
            if names else "")

    def _export_clicked(self) -> None:
        try:
            paths = self.export()
        except OSError as exc:
            self._say(f"Cannot export: {exc}", error=True)
            return
        self._say("Exported to " + " and ".join(str(p) for p in paths))

    def _follow_model(self, change) -> None:
        old, new = bare(change.old), bare(change.new)
        if new and self.model.value in (old, None):
            if new not in self.model.options:
                self.model.options = [new, *self.model.options]
            self.model.value = new

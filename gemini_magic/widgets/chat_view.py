"""The chat widget's controls and view, apart from what it does with a conversation
(chat.py): the transcript, the input (one line, or several with the ¶ toggle), the
buttons, attachments and the status line.

The transcript scrolls inside the widget and the input stays pinned under it, so the
widget keeps one height however long the chat gets (at most TRANSCRIPT_HEIGHT). The
newest message stays in view while the reader is at the bottom; once they scroll up, the
view stays where they put it. That is done by CSS alone, which ipywidgets 8 can carry
everywhere (no front-end code of ours): the scroll box (`scroller`) lays out its one
child, the messages (`transcript`), with `flex-direction: column-reverse`, which makes
the bottom the box's scroll origin. A browser keeps the scroll offset from the origin as
content grows: at the bottom (offset 0) the view follows new text; scrolled up, the
browser's scroll anchoring keeps the messages being read in place.

The Agent toggle, next to the ¶ toggle, switches agent mode on for the messages sent
while it is on (chat.py says what that does); it starts as the chat-ui options say.

The model dropdown is the chat's own: its first value is the chat-ui options' model, or
GeminiMagics.model, and from then on only a pick here changes it (the label says so). A
settings-panel change is for %%gemini cells; following it silently would change the
model under a conversation, while the widget's repr still named the old one.
"""

from __future__ import annotations

import html

import ipywidgets as widgets

from .messages import BUSY, CSS, MAX_WIDTH, Message
from .models import bare, model_choices

TRANSCRIPT_HEIGHT = "min(60vh, 520px)"
MODEL_LABEL = "Model (this chat)"
MODEL_TIP = "Used by this chat only; %%gemini cells use the settings panel's model"


class ChatView(widgets.VBox):
    """The controls; a subclass answers `send`, `stop`, `new_chat`, `_export_clicked`,
    `_count_clicked`, `_estimate` and `_toggle_agent`."""

    def _build(self, magics, name: str, model: str | None, agent: bool = False) -> None:
        self.messages: list[Message] = []
        self._empty = widgets.HTML('<div class="gm-empty">No messages yet. Ask Gemini anything.</div>')
        choices = model_choices(magics)
        current = bare(model or magics.model)
        ids = list(choices.ids)
        if current and current not in ids:
            ids.insert(0, current)  # a model the list lacks (a preview, a gateway's) is kept
        self.model = widgets.Dropdown(options=ids, value=current or None,
                                      layout=widgets.Layout(width="230px"), tooltip=MODEL_TIP)
        # A label of its own: ipywidgets 8 shows a described control's tooltip nowhere.
        self.model_label = widgets.HTML(
            f'<span title="{html.escape(MODEL_TIP)}" style="opacity:0.75;white-space:nowrap">'
            f"{html.escape(MODEL_LABEL)}</span>", tooltip=MODEL_TIP, layout=widgets.Layout(flex="0 0 auto"))
        self.header = widgets.HTML(
            CSS + f'<b>Gemini chat</b> <span style="opacity:0.6">· {html.escape(name)}</span>',
            layout=widgets.Layout(flex="1 1 auto"))
        # The messages, in a scroll box whose origin is its bottom (see the module's docstring).
        self.transcript = widgets.VBox(layout=widgets.Layout(padding="4px 2px", flex="0 0 auto"))
        self.transcript.add_class("gm-messages")
        self.scroller = widgets.Box([self.transcript], layout=widgets.Layout(
            display="flex", flex_flow="column-reverse", max_height=TRANSCRIPT_HEIGHT, min_height="60px",
            overflow="auto"))  # both ways: an image opened full size, or a wide table, scrolls, not clipped
        self.scroller.add_class("gm-scroll")
        self.input = widgets.Text(placeholder="Message Gemini — Enter sends", continuous_update=True,
                                  layout=widgets.Layout(flex="1 1 auto", width="auto"))
        self.input.on_msg(self._input_message)
        self.area = widgets.Textarea(placeholder="Message Gemini — Enter adds a line, the Send button sends",
                                     rows=4, layout=widgets.Layout(flex="1 1 auto", width="auto"))
        self.multiline = widgets.ToggleButton(False, icon="paragraph", tooltip="Multi-line message",
                                              layout=widgets.Layout(width="36px"))
        self.multiline.observe(self._toggle_multiline, "value")
        self.agent_button = widgets.ToggleButton(
            bool(agent), description="Agent", icon="terminal", layout=widgets.Layout(width="auto"),
            tooltip="Agent mode: Gemini may look at your variables and run Python in this kernel "
                    "(it asks before each run unless approve is 'auto')")
        self.agent_button.observe(self._toggle_agent, "value")
        self.upload = widgets.FileUpload(accept="image/*,.pdf,application/pdf", multiple=True, description="Attach",
                                         icon="paperclip", tooltip="Attach images or PDFs to the next message",
                                         layout=widgets.Layout(width="auto"))
        self.upload.observe(self._attachments_changed, "value")
        self.send_button = widgets.Button(description="Send", button_style="primary", icon="paper-plane",
                                          layout=widgets.Layout(width="90px"))
        self.send_button.on_click(lambda _: self.send())
        self.count_button = widgets.Button(icon="calculator", layout=widgets.Layout(width="36px"),
                                           tooltip="Count what this message would send, with the history, and its "
                                                   "cost (countTokens: nothing is sent to the model)")
        self.count_button.on_click(lambda _: self._count_clicked())
        # A local estimate as you type (no request); the calculator gives the exact count.
        self.meter = widgets.HTML()
        for box in (self.input, self.area):
            box.observe(lambda _change: self._estimate(), "value")
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

        self.input_row = widgets.HBox(self._input_row(self.input),
                                      layout=widgets.Layout(align_items="center", grid_gap="4px"))
        self.top = widgets.HBox([self.header, self.model_label, self.model, self.new_button, self.stop_button,
                                 self.export_button], layout=widgets.Layout(align_items="center", grid_gap="4px"))
        super().__init__(
            [self.top, self.scroller, self.attached, self.input_row, self.meter, self.status],
            layout=widgets.Layout(border="1px solid var(--jp-border-color1,#ccc)",
                                  padding="8px 10px", max_width=MAX_WIDTH, grid_gap="2px"),
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
        children = []
        for message in self.messages:
            children.append(message.widget)
            if message.actions is not None:
                children.append(message.actions)
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
        from ..errors import scrub, sentence

        cls = "gm-status gm-error" if error else "gm-status"
        shown = html.escape(scrub(sentence(text), find_api_key()))
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
        self.input_row.children = self._input_row(new)

    def _input_row(self, editor) -> list:
        return [self.upload, self.multiline, self.agent_button, editor, self.count_button, self.send_button]

    def _attachments_changed(self, change) -> None:
        names = [f"{f['name']} ({f['size'] / 1024:,.0f} KB)" for f in change.new]
        self.attached.value = (
            '<div class="gm-meta">📎 ' + html.escape(", ".join(names)) + ": sent with the next message.</div>"
            if names else "")
        self._estimate()

    def _export_clicked(self) -> None:
        try:
            paths = self.export()
        except OSError as exc:
            self._say(f"Cannot export: {exc}", error=True)
            return
        self._say("Exported to " + " and ".join(str(p) for p in paths) + ".")

"""The chat widget (`%gemini chat-ui [NAME]`): a conversation you type into.

    chat = %gemini chat-ui trip
    chat.send("Plan three days in Kyoto")   # returns at once; the answer streams in
    chat.wait()                             # (only when code needs the answer)
    chat.stop(); chat.new_chat(); chat.export_json(); chat.to_markdown()

Decisions, and why:

- **Same conversation as the cells.** The widget is a view of
  `magics.conversations[NAME]`, the object `%%gemini --chat NAME` uses: a turn made here
  is history for the next cell and the other way round. Turns made here have the key
  `widget:<n>`. The view is rebuilt from the conversation when it is made and after
  any cell changes it, so a closed and re-opened widget shows the same messages.
- **Streaming never blocks the kernel.** The request runs in a background thread that
  only sets widget traits (the message's HTML); ipykernel sends those comm messages from
  any thread, so other cells run while an answer streams. Updates are throttled by
  `GeminiMagics.update_interval`. The thread's output parent is the message that sent
  the chat message (a cell calling `send()`, or the button click), as ipykernel 7 needs.
- **Stop** ends the request (`Answer.interrupt`), keeps the partial answer on screen and
  leaves the conversation unchanged, as an interrupted cell does. It never interrupts
  the kernel: a running cell is not touched. A response already being read finishes
  its current chunk in the background; nothing more is shown.
- **Untrusted output.** Every message is rendered by `render.bundles.compose` /
  `render.markdown.to_html` (no raw HTML, safe links only); the user's own text, tool
  arguments and errors are escaped. An `HTML` widget sets innerHTML unsanitized, so
  nothing else ever reaches one.
- **Enter sends, a Multi-line toggle adds lines.** Stock ipywidgets 8 has no key
  handling beyond a `Text` box's submit event on Enter (Shift+Enter included), and a
  `Textarea` never submits. So the input is a one-line `Text` whose submit event sends
  (the deprecated `on_submit` and "observe value with continuous_update=False" would also
  send on blur, when the user merely clicks elsewhere); the ¶ toggle swaps in a
  `Textarea` where Enter and Shift+Enter add lines and the Send button sends. True
  Shift+Enter handling needs front-end code of its own (an anywidget), which this
  extension avoids so the widget works wherever ipywidgets do.
- **Export.** `export_json(path)` is `Conversation.to_json()` (the `%gemini save`
  format, loadable with `%gemini load`); `to_markdown()` returns the conversation as
  Markdown. The Export button writes both files next to the notebook. Markdown *cells*
  cannot be made from a widget: `set_next_input` makes code cells, and only in reply
  to a running cell, not to a button click.
- **Tools** are the `@gemini_magic.tool` registry (the settings panel's "Default tools")
  plus `tools=[...]` names given here. Approval follows `approve=` (default
  `GeminiMagics.approve`): a call that needs it shows Allow/Decline buttons and the
  request thread waits for them; Stop and New chat decline.
"""

from __future__ import annotations

import html
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from .models import bare, model_choices

_CSS = """
<style>
.gm-chat{border-radius:8px}
.gm-chat .widget-html-content{line-height:1.45;white-space:normal}
.gm-chat .gm-row{display:flex;margin:3px 0}
.gm-chat .gm-user-row{justify-content:flex-end}
.gm-chat .gm-bubble{padding:7px 12px;border-radius:14px;max-width:85%;overflow-wrap:anywhere;
  font-size:var(--jp-content-font-size1,14px);color:var(--jp-content-font-color1,#222)}
.gm-chat .gm-user{background:rgba(26,115,232,0.13);border-bottom-right-radius:4px;white-space:pre-wrap}
.gm-chat .gm-model{background:var(--jp-layout-color2,#f1f3f4);border-bottom-left-radius:4px}
.gm-chat .gm-bubble .gemini-answer>:first-child{margin-top:0}
.gm-chat .gm-bubble .gemini-answer>:last-child{margin-bottom:0}
.gm-chat .gm-bubble p{margin:0.35em 0}
.gm-chat .gm-bubble pre{white-space:pre-wrap;background:rgba(127,127,127,0.12);padding:6px 8px;border-radius:6px}
.gm-chat .gm-meta{font-size:0.78em;opacity:0.65;margin:0 6px 6px}
.gm-chat .gm-user-meta{text-align:right}
.gm-chat .gm-note{font-size:0.85em;margin-top:6px;opacity:0.8}
.gm-chat .gm-error{color:var(--jp-error-color1,#c62828)}
.gm-chat .gm-typing{opacity:0.55;font-style:italic}
.gm-chat .gm-empty{opacity:0.55;text-align:center;padding:18px 0}
.gm-chat .gm-status{font-size:0.82em;opacity:0.7;min-height:1.2em}
</style>
"""


# -- messages -------------------------------------------------------------------------


@dataclass
class Message:
    role: str  # "user" or "model"
    text: str  # plain text, for reading and tests
    widget: Any  # the HTML widget showing it
    turn: Any = None  # the conversation turn it shows, once committed

    @property
    def html(self) -> str:
        return self.widget.value


def _user_html(text: str, attachments: list[str]) -> str:
    files = "".join(f'<div class="gm-meta gm-user-meta">📎 {html.escape(name)}</div>' for name in attachments)
    body = html.escape(text) if text else '<span class="gm-typing">(attachments only)</span>'
    return f'<div class="gm-row gm-user-row"><div class="gm-bubble gm-user">{body}</div></div>{files}'


def _model_html(body: str, meta: str = "", note: str = "", error: bool = False) -> str:
    """`body` is already safe HTML (compose/to_html); meta and note are plain text."""
    extra = ""
    if note:
        extra = f'<div class="gm-note{" gm-error" if error else ""}">{html.escape(note)}</div>'
    footer = f'<div class="gm-meta">{html.escape(meta)}</div>' if meta else ""
    return f'<div class="gm-row"><div class="gm-bubble gm-model">{body}{extra}</div></div>{footer}'


_TYPING = '<span class="gm-typing">Gemini is writing…</span>'
_BUSY = '<div class="gm-status">Gemini is answering… other cells can run meanwhile.</div>'


def _turn_meta(turn) -> str:
    usage = turn.usage or {}
    parts = [turn.model_id or "gemini"]
    if usage:
        parts.append(f"{usage.get('prompt_tokens', 0)} in, {usage.get('output_tokens', 0)} out tokens")
    return " · ".join(parts)


def _attachment_names(content) -> list[str]:
    names = []
    for part in content.parts or []:
        blob = part.inline_data or part.file_data
        if blob is not None:
            names.append(getattr(blob, "display_name", None) or blob.mime_type or "file")
    return names


def _turn_model(turn) -> tuple[str, str]:
    """A committed turn's answer as (safe HTML, text): the text and tool calls of every
    step of its tool loop, in order, then the final answer."""
    from ..render.markdown import to_html
    from ..render.tools import call_signature
    from ..tools import ToolCall

    html_parts, texts = [], []
    for content in [*turn.exchange, turn.model]:
        if content.role != "model":
            continue  # tool results sent back
        for part in content.parts or []:
            call = part.function_call
            if call is not None:
                signature = call_signature(ToolCall(call.id, call.name or "", dict(call.args or {})))
                html_parts.append(f'<div class="gm-meta" style="margin:2px 0">🔧 {html.escape(signature)}</div>')
            elif part.text and not part.thought:
                html_parts.append(to_html(part.text))
                texts.append(part.text)
    return "".join(html_parts), "".join(texts)


# -- approval -------------------------------------------------------------------------


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


# -- one request ----------------------------------------------------------------------


@dataclass
class _Run:
    answer: Any
    pending: Any  # history.PendingTurn
    message: Message
    thread: threading.Thread | None = None
    stopped: bool = False
    finished: bool = False
    crash: BaseException | None = None
    notices: list = field(default_factory=list)  # shown under the answer when it ends
    retried: bool = False
    approvals: list = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)


class ChatWidget(widgets.VBox):
    """A chat over the conversation NAME, shared with `%%gemini --chat NAME` cells.

    The buttons call `send()`, `stop()` and `new_chat()`; code may call them too.
    """

    def __init__(self, magics, name: str = "chat", tools: list[str] | tuple[str, ...] = (),
                 approve: str | None = None):
        self._shell = None
        self._closed = False
        self._run: _Run | None = None
        self.messages: list[Message] = []
        self.magics = magics
        self.name = name
        self.conversation = magics.conversations.get_or_create(name)
        self.tools = list(tools)
        self.approve = approve
        self._lock = threading.RLock()
        self._shown: tuple = ()  # the conversation's turns the view was built from
        self._empty = widgets.HTML('<div class="gm-empty">No messages yet. Ask Gemini anything.</div>')

        choices = model_choices(magics)
        current = bare(magics.model)
        self.model = widgets.Dropdown(options=choices.ids, value=current if current in choices.ids else None,
                                      layout=widgets.Layout(width="230px"), tooltip="Model for this chat")
        self.header = widgets.HTML(
            _CSS + f'<b>Gemini chat</b> <span style="opacity:0.6">· {html.escape(name)}</span>',
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
        self.refresh()
        self._shell = getattr(magics, "shell", None)
        # The chat's model follows GeminiMagics.model (the settings panel, %config)
        # until another one is picked here.
        magics.observe(self._follow_model, "model")
        if self._shell is not None:
            # Turns that cells add to the conversation show here after the cell runs.
            self._shell.events.register("post_run_cell", self._after_cell)

    # -- public API -------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Whether an answer is being received."""
        return self._run is not None

    @property
    def text(self) -> str:
        """The text in the input box (the one-line box or, in multi-line mode, the text area)."""
        return self._editor.value

    @text.setter
    def text(self, value: str) -> None:
        self._editor.value = value

    def send(self, text: str | None = None) -> bool:
        """Send `text` (default: the input box's) and the attached files. The answer
        streams in a background thread; this returns at once. False if nothing was sent."""
        if self._closed:
            return False
        if self.busy:
            self._say("Gemini is still answering: Stop it first.")
            return False
        from ..client import types
        from ..engine import Request
        from ..errors import GeminiError
        from ..history import begin

        from_box = text is None
        text = (self.text if from_box else text).strip()
        files = list(self.upload.value)
        if not text and not files:
            return False
        try:
            parts = [self._file_part(f) for f in files]
            if text:
                parts.append(types().Part(text=text))
            config = self._config()
            toolbox = self._toolbox()
        except GeminiError as error:
            self._say(f"{error.message} {error.hint}".strip(), error=True)
            return False
        except Exception as error:  # a bad setting (UsageError) or an unreadable file
            self._say(str(error).splitlines()[0] if str(error) else type(error).__name__, error=True)
            return False
        if not self.model.value:
            self._say("No model: pick one, or set %config GeminiMagics.model.", error=True)
            return False
        self._sync()  # turns that cells added meanwhile come first
        user = types().Content(role="user", parts=parts)
        key = self._new_key()
        conversation = self.conversation
        pending = begin(conversation, key, user, self.magics.chat_token_budget)
        trimmed = pending.trimmed
        request = Request(model=self.model.value, contents=pending.contents,
                          config=config, stream=True, toolbox=toolbox, max_steps=self.magics.max_steps)
        answer = self.magics.engine.send(request)
        if from_box:
            self.text = ""
        self.upload.value = ()
        self._add(Message("user", text, widgets.HTML(_user_html(text, [f["name"] for f in files]))))
        reply = self._add(Message("model", "", widgets.HTML(_model_html(_TYPING))))
        run = _Run(answer, pending, reply)
        if trimmed:
            run.notices.append(f"The {len(trimmed)} oldest turn(s) were not sent, to stay within "
                               f"{self.magics.chat_token_budget:,} tokens (GeminiMagics.chat_token_budget).")
        if toolbox is not None:
            toolbox.ask = lambda call: self._ask(run, call)
        self._run = run
        self._set_busy(True)
        parent = self._parent()
        run.thread = threading.Thread(target=self._receive, args=(run, parent), name=f"gemini-chat-{self.name}",
                                      daemon=True)
        run.thread.start()
        return True

    def stop(self) -> None:
        """End the answer being received; its partial text stays on screen and the
        conversation is left as it was. Never interrupts the kernel."""
        run = self._run
        if run is None:
            return
        with self._lock:
            if run.finished:
                return
            run.stopped = True
        run.answer.interrupt()
        for approval in run.approvals:
            approval.decide(False)
        self._finish(run)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current answer is complete (for code that needs it); True if done."""
        run = self._run
        return True if run is None else run.done.wait(timeout)

    def new_chat(self) -> None:
        """Stop any answer and clear the conversation (for the cells that use it too)."""
        self.stop()
        self.conversation.turns.clear()
        self.refresh()
        self._say("New chat: the conversation is empty.")

    def refresh(self) -> None:
        """Rebuild the view from the conversation (done for you after each cell that
        changed it). A stopped answer's partial text, not being a turn, goes."""
        with self._lock:
            if self._run is not None:
                return  # the view catches up when the answer ends
            turns = tuple(self.conversation.turns)
            self._shown = turns
            old = self.messages
            self.messages = []
            for turn in turns:
                user = turn.text("user")
                self.messages.append(Message("user", user, widgets.HTML(
                    _user_html(user, _attachment_names(turn.user))), turn))
                body, text = _turn_model(turn)
                note = "(trimmed: no longer sent)" if turn.trimmed else ""
                self.messages.append(Message("model", text, widgets.HTML(
                    _model_html(body, _turn_meta(turn), note)), turn))
            self._show_log()
            for message in old:
                message.widget.close()

    def _sync(self) -> None:
        """Rebuild the view if the conversation changed since it was built."""
        if not _same(self.conversation.turns, self._shown):
            self.refresh()

    def export_json(self, path: str | Path | None = None) -> dict:
        """The conversation as `Conversation.to_json()` (the `%gemini save` format);
        written to `path` too when given."""
        if path is not None:
            self.conversation.save(path)
        return self.conversation.to_json()

    def to_markdown(self) -> str:
        """The conversation as Markdown: a heading per message. HTML tags the model
        wrote are escaped outside code, so pasting this into a Markdown cell is safe."""
        lines = [f"# Gemini chat: {self.name}", ""]
        for turn in self.conversation.turns:
            lines += ["### You", "", _markdown_safe(turn.text("user")), "",
                      f"### Gemini ({turn.model_id})" if turn.model_id else "### Gemini", "",
                      _markdown_safe(turn.text("model")), ""]
        return "\n".join(lines).rstrip() + "\n"

    def export(self, folder: str | Path = ".") -> tuple[Path, Path]:
        """Write NAME.chat.json and NAME.chat.md into `folder` (what the Export button does)."""
        stem = re.sub(r"[^\w.-]+", "_", self.name) or "chat"
        folder = Path(folder)
        json_path = folder / f"{stem}.chat.json"
        self.export_json(json_path)
        md_path = folder / f"{stem}.chat.md"
        from ..files import write_atomic

        write_atomic(md_path, self.to_markdown())
        return json_path, md_path

    def close(self) -> None:
        self._closed = True
        self.stop()
        try:
            self.magics.unobserve(self._follow_model, "model")
        except (ValueError, AttributeError):
            pass
        if self._shell is not None:
            try:
                self._shell.events.unregister("post_run_cell", self._after_cell)
            except ValueError:
                pass
        for message in self.messages:
            message.widget.close()
        for child in (self.model, self.header, self.input, self.area, self.multiline, self.upload,
                      self.send_button, self.stop_button, self.new_button, self.export_button, self.attached,
                      self.status, self.transcript, self.input_row):
            child.close()
        super().close()

    def __repr__(self) -> str:
        # Short and deterministic: nbval compares a widget's text/plain.
        return f"ChatWidget(conversation={self.name!r}, model={self.model.value!r})"

    # -- request ----------------------------------------------------------------------

    def _config(self) -> dict:
        # The magic's own settings, exactly as a plain %%gemini cell would use them.
        return self.magics._config(self.magics._parse(""))

    def _toolbox(self):
        from ..tools import Toolbox, resolve

        bound = resolve(self.tools, self.magics.shell.user_ns)
        if not bound:
            return None
        return Toolbox(bound, approve=self.approve or self.magics.approve)

    def _file_part(self, item: dict):
        from ..media import to_part

        data = item["content"]
        data = data.tobytes() if hasattr(data, "tobytes") else bytes(data)
        # Over the inline limit, a file goes through the Files API once per session,
        # as in cells (the client is only built then).
        return to_part(data, max_side=self.magics.max_image_side, client=_LazyClient(self.magics.connection),
                       uploads=self.magics.uploads)

    def _new_key(self) -> str:
        n = 1 + sum(1 for t in self.conversation.turns if t.key.startswith("widget:"))
        while self.conversation.index_of(f"widget:{n}") is not None:
            n += 1
        return f"widget:{n}"

    def _parent(self):
        get = getattr(self._shell, "get_parent", None)
        try:
            return get() if get is not None else None
        except Exception:
            return None

    def _receive(self, run: _Run, parent) -> None:
        """The request thread: read the answer's events, update the message's HTML."""
        from ..engine import Notice, OtherPart, Retrying, TextDelta, ThoughtDelta, ToolUpdate, retry_line

        if parent and hasattr(self._shell, "set_thread_parent"):
            # ipykernel 7: output from this thread (a tool's print) belongs to the
            # message that sent the chat message, not to whichever cell runs now.
            self._shell.set_thread_parent(parent)
        interval = self.magics.update_interval
        last = float("-inf")
        events = iter(run.answer)
        try:
            for event in events:
                if run.stopped:
                    break
                if isinstance(event, (TextDelta, ThoughtDelta)):
                    now = time.monotonic()
                    if now - last >= interval:
                        last = now
                        self._render(run)
                elif isinstance(event, (ToolUpdate, OtherPart)):
                    last = time.monotonic()
                    self._render(run)
                elif isinstance(event, Retrying):
                    self._say(retry_line(event, self.magics.engine.retry.attempts))
                    run.retried = True
                elif isinstance(event, Notice):
                    run.notices.append(event.text)
        except Exception as exc:  # a bug must not leave the widget busy for ever
            run.crash = exc
        finally:
            events.close()
            self._finish(run)

    def _render(self, run: _Run) -> None:
        from ..render.bundles import compose

        with self._lock:
            if run.finished:
                return
            run.message.widget.value = _model_html(compose(run.answer, "markdown")["text/html"])

    def _finish(self, run: _Run) -> None:
        from ..engine import usage_line
        from ..render.bundles import compose

        with self._lock:
            if run.finished:
                return
            run.finished = True
            answer = run.answer
            note, error = "", False
            if run.crash is not None:
                note, error = f"The chat failed: {type(run.crash).__name__}: {run.crash}", True
            elif answer.error is not None:
                note, error = f"{answer.error.message} {answer.error.hint}".strip(), True
            elif run.stopped or answer.interrupted:
                note = "Stopped: the partial answer stays here, but is not part of the conversation."
            else:
                run.pending.finish(answer)
                note = answer.notice() or ""
            note = " ".join([*run.notices, note]).strip()
            body = compose(answer, "markdown")["text/html"] if answer.blocks else ""
            if not body and not note:
                note = "No answer."
            run.message.text = answer.text
            run.message.widget.value = _model_html(body, usage_line(answer), note, error)
            for approval in run.approvals:
                approval.decide(False)
            run.approvals.clear()
            if self._run is run:
                self._run = None
            if not (run.crash or answer.error or run.stopped or answer.interrupted):
                index = self.conversation.index_of(run.pending.key)
                turn = self.conversation.turns[index] if index is not None else None
                for message in self.messages[-2:]:
                    message.turn = turn
                turns = self.conversation.turns
                if turns and turns[-1].key == run.pending.key and _same(turns[:-1], self._shown):
                    self._shown = tuple(turns)  # the view already shows every turn
            self._show_log()
            if run.retried:
                self._say("")
            self._set_busy(False)
        run.done.set()

    def _ask(self, run: _Run, call) -> bool:
        """Toolbox approval, on the request thread: show the buttons, wait for a click."""
        if run.stopped or self._closed:
            return False
        approval = Approval(call)
        with self._lock:
            run.approvals.append(approval)
            self._show_log()
        approval.event.wait()
        with self._lock:
            if approval in run.approvals:
                run.approvals.remove(approval)
            self._show_log()
        approval.close()
        return approval.allowed and not run.stopped

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
            self.status.value = _BUSY
        elif self.status.value == _BUSY:
            self.status.value = ""

    def _say(self, text: str, error: bool = False) -> None:
        cls = "gm-status gm-error" if error else "gm-status"
        self.status.value = f'<div class="{cls}">{html.escape(text)}</div>' if text else ""

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

    def _after_cell(self, result=None) -> None:
        if not self._closed and self._run is None:
            self._sync()


class _LazyClient:
    """The SDK client, built only if an attachment must go through the Files API."""

    def __init__(self, connection):
        self._connection = connection

    def __getattr__(self, name: str):
        return getattr(self._connection.client(), name)


def _same(turns, shown) -> bool:
    return len(turns) == len(shown) and all(a is b for a, b in zip(turns, shown, strict=True))


_CODE = re.compile(r"(```.*?```|~~~.*?~~~|`[^`\n]*`)", re.DOTALL)


def _markdown_safe(text: str) -> str:
    """Escape `<` outside code, so raw HTML the model wrote stays text in Markdown."""
    pieces = _CODE.split(text)
    return "".join(p if i % 2 else p.replace("<", "&lt;") for i, p in enumerate(pieces))

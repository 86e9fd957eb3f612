"""The chat widget (`%gemini chat-ui [NAME]`): a conversation you type into.

    chat = %gemini chat-ui trip
    chat.send("Plan three days in Kyoto")   # returns at once; the answer streams in
    chat.wait()                             # (only when code needs the answer)
    chat.stop(); chat.new_chat(); chat.export_json(); chat.to_markdown()

Decisions, and why:

- **Same conversation as the cells.** The widget is a view of
  `magics.conversations[NAME]`, the object `%%gemini --chat NAME` uses: a turn made here
  is history for the next cell and the other way round. Turns made here have the key
  `widget:<12 hex digits>` (random: a conversation restored from a saved notebook holds
  turns other kernels made, and counters would collide). The view is rebuilt from the
  conversation when it is made and after any cell changes it, so a closed and re-opened
  widget shows the same messages.
- **Saved with the notebook.** Displaying the widget (`display(chat)`, or a cell ending
  in it) shows two outputs: the live widget, and a static transcript (messages.py's
  `transcript_output`) that the live widget hides while it shows. A notebook opened
  without a kernel shows the transcript; its metadata holds the turns' records, from
  which a new kernel continues the conversation (notebook_file.py). The transcript is
  updated (`update_display_data`) whenever the conversation's turns change: an answer
  kept, New chat, a cell that used the conversation. Its first state is the
  conversation when displayed, so strict nbval, which applies no updates, sees the same
  output on every run.
- **The model is the chat's own.** The dropdown starts at the chat-ui options' model,
  or GeminiMagics.model, and only a pick here changes it ("Model (this chat)"); the
  settings panel and %config are for cells.
- **One request path.** A message is built by the session like a cell's request
  (requests.py, front end "widget"): the options given to `%gemini chat-ui NAME
  [options]` apply to every message, and one that cannot apply is refused by name.
- **Streaming never blocks the kernel.** The request runs in a background thread that
  only sets widget traits (the message's HTML); ipykernel sends those comm messages from
  any thread, so other cells run while an answer streams. It is rendered by
  render/widget.py's WidgetRenderer, the renderer protocol every front end uses: the
  same throttling, rate-limit countdown and retry status (inside the bubble), notices
  and safe HTML. The thread's output parent is the message that sent the chat message
  (a cell calling `send()`, or the button click), as ipykernel 7 needs.
- **Stop** ends the request (`Answer.interrupt`, safe from any thread): the HTTP
  response closes at once, even while no chunk is arriving, and nothing more is sent.
  The partial answer stays on screen and the conversation is unchanged, as after an
  interrupted cell. It never interrupts the kernel. The widget takes one request at a
  time: Send waits until the stopped request has really ended.
- **Retry.** A failed answer, and a stopped one (stopping is often a slip, or a
  wish to try another model), has a Retry button under it, and `retry()` does the same:
  the question and the failed answer leave the view and the same text and attachments
  are sent again, with the model now picked. Only the latest failure offers it; the
  conversation never held the failed turn, so nothing else changes.
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
- **Agent mode** (the Agent toggle, `options=Options(agent=True)`, or
  `%gemini chat-ui NAME --agent`) gives the model the four built-in tools of
  `%%gemini --agent`, on the same rule: code runs are asked about unless `approve=`
  (else GeminiMagics.agent_approve) is "auto". The question is Run / Skip / Edit
  (code_approval.py): Edit swaps in a text box, and the model is told the user edited
  the code and what ran. The toggle applies to the messages sent while it is on.
- **Agent code runs on the kernel's main thread**, posted there by the request thread
  (agent/main_thread.py), never on the request thread: there it would share the
  process-wide stdout and display hook with whatever cell runs meanwhile (capture_output
  swaps them), and Kernel ▸ Interrupt could not reach it (signals go to the main thread).
  On the main thread it runs between cells, and the interrupt raises in it as in a cell:
  the run is marked interrupted and the answer ends as a stopped one. Stop cannot
  preempt code that is running (its click waits for the main thread too), so the status
  line says to interrupt the kernel; Stop still ends the request, declines pending
  questions, and code that has not started never starts. `wait()` in a cell runs the
  code the answer needs itself (the loop it was posted to cannot turn while the cell
  waits), and returns False at once if the answer waits for a click, which no button
  can deliver while a cell runs.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from ..agent.main_thread import MainThreadRunner
from ..render.widget import TYPING, model_html
from .approval import Approval
from .chat_view import ChatView
from .code_approval import CodeApproval
from .messages import (
    BUSY,
    Message,
    attachment_names,
    export,
    transcript_markdown,
    transcript_output,
    turn_meta,
    turn_model,
    user_html,
)

# The static transcripts kept current: one per display of the widget, the newest ones (a
# re-run cell's old output is gone from the page, and updating it would cost messages).
_KEPT_DISPLAYS = 8
RUNNING_CODE = "Running Gemini's code in this kernel: interrupt the kernel to stop it"
WAITING_FOR_CELL = "Gemini's code will run when the running cell ends"
WAITING_FOR_CLICK = ("The answer waits for your click above: wait() returned, as no button can be clicked "
                     "while a cell runs")


@dataclass
class _Run:
    message: Message
    text: str = ""  # what was asked, and its attachments ({"name", "content"}): for Retry
    files: list = field(default_factory=list)
    user: Message | None = None
    answer: Any = None
    pending: Any = None  # history.PendingTurn
    thread: threading.Thread | None = None
    stopped: bool = False
    finished: bool = False
    crash: BaseException | None = None
    approvals: list = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)


class ChatWidget(ChatView):
    """A chat over the conversation NAME, shared with `%%gemini --chat NAME` cells.

    The buttons call `send()`, `stop()`, `retry()` and `new_chat()`; code may call them
    too. `options` (an options.Options) apply to every message, as a cell's options do.
    """

    def __init__(self, magics, name: str = "chat", tools: list[str] | tuple[str, ...] = (),
                 approve: str | None = None, options=None):
        from ..options import Options

        self._shell = None
        self._closed = False
        self._run: _Run | None = None
        self.magics = magics
        self.name = name
        self.conversation = magics.conversations.get_or_create(name)
        self.options = options or Options()
        if tools:
            self.options.tools = list(tools)
        if approve is not None:
            self.options.approve = approve
        self._lock = threading.RLock()
        self._shown: tuple = ()  # the conversation's turns the view was built from
        self._failed: _Run | None = None  # the latest failed or stopped message, which Retry sends again
        self._transcripts: list = []  # display handles of the static transcript, one per display
        self._published: tuple = ()  # (turn, trimmed) pairs the static transcript shows

        # The model: the options' or GeminiMagics.model, once; then the dropdown's own.
        self._build(magics, name, self.options.model, agent=bool(self.options.agent))
        self.refresh()
        self._shell = getattr(magics, "shell", None)
        # Agent code runs on the kernel's main thread (see the module's docstring).
        self._runner = MainThreadRunner(self._shell, on_delay=lambda: self._code_status(WAITING_FOR_CELL))
        if self._shell is not None:
            # Turns that cells add to the conversation show here after the cell runs.
            self._shell.events.register("post_run_cell", self._after_cell)

    # -- public API -------------------------------------------------------------------

    @property
    def tools(self) -> list:
        """Notebook functions Gemini may call from this chat (names), besides the @tool ones."""
        given = self.options.tools
        return [n.strip() for n in given.split(",")] if isinstance(given, str) else list(given or [])

    @tools.setter
    def tools(self, names) -> None:
        self.options.tools = list(names)

    @property
    def approve(self) -> str | None:
        return self.options.approve

    @approve.setter
    def approve(self, mode: str | None) -> None:
        self.options.approve = mode

    @property
    def agent(self) -> bool:
        """Agent mode for the next messages (the Agent toggle): Gemini may look at your
        variables and run Python in this kernel, asking first unless approve is "auto"."""
        return bool(self.agent_button.value)

    @agent.setter
    def agent(self, on: bool) -> None:
        self.agent_button.value = bool(on)

    @property
    def busy(self) -> bool:
        """Whether an answer is being received (or a stopped one has not ended yet)."""
        return self._run is not None

    def send(self, text: str | None = None) -> bool:
        """Send `text` (default: the input box's) and the attached files. The answer
        streams in a background thread; this returns at once. False if nothing was sent."""
        from_box = text is None
        text = (self.text if from_box else text).strip()
        files = [{"name": f["name"], "content": bytes(f["content"])} for f in self.upload.value]
        return self._send_message(text, files, from_box)

    def retry(self) -> bool:
        """Send the latest failed (or stopped) message again, with its attachments: the
        failed question and answer leave the view, the new ones take their place. False
        if there is none, or it could not be sent (the reason shows in the status line)."""
        failed = self._failed
        if failed is None:
            return False
        return self._send_message(failed.text, failed.files, from_box=False, replacing=failed)

    def _send_message(self, text: str, files: list, from_box: bool, replacing: _Run | None = None) -> bool:
        if self._closed:
            return False
        if self.busy:
            self._say("Gemini is still answering: wait for it, or Stop it first.")
            return False
        from ..errors import GeminiError

        if not text and not files:
            return False
        if not self.model.value:
            self._say("No model: pick one in the list.", error=True)
            return False
        self._sync()  # turns that cells added meanwhile come first (a rebuilt view has no failure left)
        run = _Run(Message("model", "", widgets.HTML(model_html(TYPING))), text=text, files=files)
        options = self._options(files)
        given = {"shell": self._shell} if self._shell is not None else {}
        try:
            prepared = self.magics.session.prepare(
                text, options, "widget", key=self._new_key(), default_chat=self.name,
                ask_approval=lambda call: self._ask(run, call),
                code_runner=lambda job: self._run_code(run, job), **given)
        except GeminiError as error:
            self._say(str(error), error=True)
            return False
        run.pending = prepared.pending
        run.answer = self.magics.session.send(prepared)
        if from_box:
            self.text = ""
        if replacing is None:
            self.upload.value = ()  # sent; a retry leaves what is attached for the next message
        self._drop_failed(remove=replacing is not None)
        run.user = Message("user", text, widgets.HTML(user_html(text, [f["name"] for f in files])))
        self._add(run.user)
        self._add(run.message)
        self._run = run
        self._set_busy(True)
        parent = self._parent()
        run.thread = threading.Thread(target=self._receive, args=(run, parent, prepared.notes),
                                      name=f"gemini-chat-{self.name}", daemon=True)
        run.thread.start()
        return True

    def count(self, text: str | None = None):
        """Count what sending `text` (default: the input box's) would send, with the
        history and the attached files: a counting.Count, the same as a cell's --dry-run.
        Only countTokens (and the model's limit, once) is asked; nothing is kept."""
        from ..counting import count_request, price

        text = (self.text if text is None else text).strip()
        files = [{"name": f["name"], "content": bytes(f["content"])} for f in self.upload.value]
        if not text and not files:
            from ..errors import GeminiError

            raise GeminiError("There is nothing to count yet.",
                              "Type a message: the count is of what it would send, with the history.")
        prepared = self.magics.session.prepare(text, self._options(files), "widget", key=self._new_key(),
                                               default_chat=self.name)
        engine = self.magics.session.engine
        return price(count_request(engine, prepared.request, cache=prepared.cache), engine,
                     prepared.request.config.get("service_tier"))

    def _count_clicked(self) -> None:
        from ..errors import GeminiError

        try:
            counted = self.count()
        except GeminiError as error:
            self._say(str(error), error=True)
            return
        self._say(counted.summary(), error=counted.fits is False)

    def _estimate(self) -> None:
        """About how many tokens the next message would send, as you type: the history
        (the last answer's own count where there is one), the text and the attachments.
        Local only: the calculator button asks Gemini for the exact figure."""
        from ..transport.tokens import bytes_tokens

        text = self.text
        files = list(self.upload.value)
        if not text.strip() and not files:
            self.meter.value = ""
            return
        turns = self.conversation.turns
        history = 0
        if turns:
            last = turns[-1].usage or {}
            counted = last.get("prompt_tokens", 0) + last.get("output_tokens", 0)
            history = counted or sum(t.estimated_tokens() for t in turns)
        mine = len(text) // 4 + 1 + sum(bytes_tokens(_mime(f["name"]), bytes(f["content"])) for f in files)
        with_history = f" with the history ({history:,})" if history else ""
        self.meter.value = (f'<div class="gm-meta">About {history + mine:,} tokens to send{with_history}; '
                            "the calculator counts them exactly, with the cost.</div>")

    def stop(self) -> None:
        """End the answer being received, at once: its connection closes and nothing
        more is sent. Its partial text stays on screen and the conversation is left as it
        was. Never interrupts the kernel."""
        run = self._run
        if run is None:
            return
        with self._lock:
            if run.finished:
                return
            run.stopped = True
        run.answer.interrupt()
        self._runner.cancel()  # agent code that has not started never starts
        for approval in run.approvals:
            approval.decide(False)
        # The connection closes at once; wait (briefly) for the thread to say so, so a
        # Send right after Stop finds the widget free and requests never overlap.
        if run.thread is not threading.current_thread():
            run.done.wait(2)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current answer is complete (for code that needs it); True if done.

        In a cell, agent code the answer needs runs here meanwhile; and as no button can be
        clicked while a cell runs, this returns False at once when the answer waits for
        one (an approval): end the cell, click, and wait again."""
        run = self._run
        if run is None:
            return True
        if not self._runner.needs_this_thread():
            return run.done.wait(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # The kernel's loop cannot turn while this cell waits: its jobs run here.
            self._runner.run_pending()
            if run.done.wait(0.02):
                return True
            if any(not approval.event.is_set() for approval in run.approvals):  # one decided is on its way out
                self._say(WAITING_FOR_CLICK)
                return False
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def new_chat(self) -> None:
        """Stop any answer and clear the conversation (for the cells that use it too)."""
        run = self._run
        self.stop()
        if run is not None:
            run.done.wait(5)
        self.conversation.reset()
        self.refresh()
        self._say("New chat: the conversation is empty.")

    def refresh(self) -> None:
        """Rebuild the view from the conversation (done for you after each cell that
        changed it). A stopped answer's partial text, not being a turn, goes."""
        with self._lock:
            if self._run is not None:
                return  # the view catches up when the answer ends
            with self.conversation.lock:
                turns = tuple(self.conversation.turns)
            self._shown = turns
            old = self.messages
            self._failed = None  # its messages go with the others
            self.messages = []
            for turn in turns:
                user = turn.text("user")
                self.messages.append(Message("user", user, widgets.HTML(
                    user_html(user, attachment_names(turn.user))), turn))
                body, text = turn_model(turn)
                note = "Trimmed: this turn is no longer sent to Gemini." if turn.trimmed else ""
                self.messages.append(Message("model", text, widgets.HTML(
                    model_html(body, turn_meta(turn), note)), turn))
            self._show_log()
            for message in old:
                _close(message)
            self._publish()

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
        """The conversation as Markdown, safe to paste into a Markdown cell."""
        return transcript_markdown(self.conversation, self.name)

    def export(self, folder: str | Path = ".") -> tuple[Path, Path]:
        """Write NAME.chat.json and NAME.chat.md into `folder` (what the Export button does)."""
        return export(self.conversation, self.name, folder)

    def close(self) -> None:
        """Stop any answer (its thread ends within a second) and detach from the magic
        and the shell: nothing is left behind."""
        self._closed = True
        run = self._run
        self.stop()
        if run is not None and run.thread is not None:
            run.thread.join(2)
        if self._shell is not None:
            try:
                self._shell.events.unregister("post_run_cell", self._after_cell)
            except ValueError:
                pass
        if self in getattr(self.magics, "widgets", []):
            self.magics.widgets.remove(self)
        for message in self.messages:
            _close(message)
        for child in (self.model_label, self.model, self.header, self.input, self.area, self.multiline,
                      self.agent_button, self.upload, self.send_button, self.stop_button, self.new_button,
                      self.export_button, self.attached, self.status, self.transcript, self.scroller,
                      self.input_row, self.top, self._empty):
            child.close()
        super().close()

    def __repr__(self) -> str:
        # Short and deterministic: nbval compares a widget's text/plain.
        return f"ChatWidget(conversation={self.name!r}, model={self.model.value!r})"

    def _ipython_display_(self) -> None:
        """`display(chat)`, or a cell ending in it: the live widget, then the static
        transcript (see the module's docstring), updated as the conversation changes."""
        from IPython.display import display

        bundle = self._repr_mimebundle_() if callable(self._repr_mimebundle_) else None  # None once closed
        display(bundle or {"text/plain": repr(self)}, raw=True)
        if self._closed:
            return
        with self._lock:
            data, metadata = transcript_output(self.conversation, self.name)
            self._published = self._turns_shown()
            self._transcripts.append(display(data, raw=True, metadata=metadata, display_id=True))
            del self._transcripts[:-_KEPT_DISPLAYS]

    # -- the static transcript --------------------------------------------------------

    def _turns_shown(self) -> tuple:
        with self.conversation.lock:
            return tuple((turn, turn.trimmed) for turn in self.conversation.turns)

    def _publish(self) -> None:
        """Update the static transcript(s) if the conversation's turns changed since."""
        with self._lock:
            if not self._transcripts or self._closed:
                return
            shown = self._turns_shown()
            if len(shown) == len(self._published) and all(
                    a is b and x == y for (a, x), (b, y) in zip(shown, self._published, strict=True)):
                return
            data, metadata = transcript_output(self.conversation, self.name)
            self._published = shown
            for handle in self._transcripts:
                try:
                    handle.update(data, raw=True, metadata=metadata)
                except Exception:  # noqa: BLE001  (no frontend to send to any more: nothing to keep current)
                    pass

    # -- request ----------------------------------------------------------------------

    def _options(self, files: list):
        """This message's options: the widget's, with its model and attachments."""
        import dataclasses

        images = [bytes(f["content"].tobytes() if hasattr(f["content"], "tobytes") else f["content"])
                  for f in files]
        return dataclasses.replace(self.options, model=self.model.value,
                                   image=list(self.options.image or []) + images or None)

    def _new_key(self) -> str:
        # Random: a restored conversation holds turns other kernels keyed.
        return f"widget:{uuid.uuid4().hex[:12]}"

    def _parent(self):
        get = getattr(self._shell, "get_parent", None)
        try:
            return get() if get is not None else None
        except Exception:
            return None

    def _receive(self, run: _Run, parent, notes: list) -> None:
        """The request thread: the answer played through the widget renderer."""
        from ..render import play
        from ..render.widget import WidgetRenderer

        if parent and hasattr(self._shell, "set_thread_parent"):
            # ipykernel 7: output from this thread (a tool's print) belongs to the
            # message that sent the chat message, not to whichever cell runs now.
            self._shell.set_thread_parent(parent)
        renderer = WidgetRenderer(run.message.widget, interval=self.magics.update_interval,
                                  on_status=lambda status: self._answer_status(run, status))
        renderer.notes.extend(notes)
        try:
            play(run.answer, renderer)
        except Exception as exc:  # a bug must not leave the widget busy for ever: it is shown
            run.crash = exc
        finally:
            self._finish(run)

    def _finish(self, run: _Run) -> None:
        from ..client import find_api_key
        from ..errors import scrub, sentence

        with self._lock:
            if run.finished:
                return
            run.finished = True
            answer = run.answer
            run.message.text = answer.text
            if run.crash is not None:
                note = scrub(sentence(f"The chat failed: {type(run.crash).__name__}: {run.crash}"), find_api_key())
                run.message.widget.value = model_html("", note=note, error=True)
            for approval in run.approvals:
                approval.decide(False)
            run.approvals.clear()
            if self._run is run:
                self._run = None
            if answer.commit is not None:
                index = self.conversation.index_of(run.pending.key)
                turn = self.conversation.turns[index] if index is not None else None
                for message in self.messages[-2:]:
                    message.turn = turn
                turns = self.conversation.turns
                if turns and turns[-1].key == run.pending.key and _same(turns[:-1], self._shown):
                    self._shown = tuple(turns)  # the view already shows every turn
            elif not self._closed:
                self._offer_retry(run)
            self._show_log()
            self._set_busy(False)
            self._publish()
        run.done.set()

    # -- Retry ------------------------------------------------------------------------

    def _offer_retry(self, run: _Run) -> None:
        """A Retry button under the failed (or stopped) answer; only the latest has one."""
        self._drop_failed(remove=False)
        button = widgets.Button(description="Retry", icon="redo", tooltip="Send this message again",
                                layout=widgets.Layout(width="auto"))
        button.on_click(lambda _: self.retry())
        row = widgets.HBox([button])
        row.add_class("gm-retry-row")
        run.message.actions = row
        self._failed = run

    def _drop_failed(self, remove: bool) -> None:
        """The latest failure gives up its Retry button, and with `remove` leaves the view."""
        failed, self._failed = self._failed, None
        if failed is None:
            return
        if failed.message.actions is not None:
            for child in (*failed.message.actions.children, failed.message.actions):
                child.close()
            failed.message.actions = None
        if remove:
            self.messages = [m for m in self.messages if m is not failed.user and m is not failed.message]
            for message in (failed.user, failed.message):
                if message is not None:
                    _close(message)
        self._show_log()

    def _answer_status(self, run: _Run, status: str) -> None:
        """The bubble's status (a rate-limit wait, a retry) in the status line too."""
        if self._run is not run or run.finished:
            return
        if status:
            self._say(status)  # escaped and scrubbed of the key, as every status line
        else:
            self.status.value = BUSY

    def _ask(self, run: _Run, call) -> bool:
        """Toolbox approval, on the request thread: show the buttons, wait for a click.
        Code the agent wants to run gets Run / Skip / Edit, other calls Allow / Decline."""
        if run.stopped or self._closed:
            return False
        approval = CodeApproval(call) if call.kind == "code" else Approval(call)
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

    def _run_code(self, run: _Run, job):
        """Toolbox's code runner (agent mode), on the request thread: `job` runs on the
        kernel's main thread, the status line saying so meanwhile."""
        if run.stopped or self._closed:
            raise KeyboardInterrupt("Stopped before it ran.")

        def running():
            if run.stopped:  # stopped while it waited for the main thread
                raise KeyboardInterrupt("Stopped before it ran.")
            self._code_status(RUNNING_CODE)
            return job()

        try:
            return self._runner(running)
        finally:
            self._code_status("")

    def _code_status(self, status: str) -> None:
        run = self._run
        if run is None or run.finished:
            return
        if status:
            self._say(status)
        else:
            self.status.value = BUSY

    def _toggle_agent(self, change) -> None:
        self.options.agent = bool(change.new)

    def _after_cell(self, result=None) -> None:
        if self._closed:
            return
        if self._run is None:
            self._sync()
        self._publish()  # a cell's turn in this conversation, even while an answer streams


def _close(message: Message) -> None:
    message.widget.close()
    if message.actions is not None:
        for child in (*message.actions.children, message.actions):
            child.close()


def _same(turns, shown) -> bool:
    return len(turns) == len(shown) and all(a is b for a, b in zip(turns, shown, strict=True))


def _mime(name: str) -> str:
    import mimetypes

    return mimetypes.guess_type(name)[0] or "application/octet-stream"

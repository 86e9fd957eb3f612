"""Agent mode in the chat widget: the Agent toggle, Run / Skip / Edit, and agent code run
on the kernel's main thread (agent/main_thread.py).

In-process tests drive the widget against the fake Gemini server (no kernel: agent code
runs on the request thread there); the runner is tested on its own with a tornado loop
on this process's main thread, as a kernel has one; tests where the main thread, signals
and `wait()` matter run in a real kernel (`kern`). "It ran" is a file or a variable that
the model's code made, never a flag the product set.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from types import SimpleNamespace

import pytest

import gemini_magic
from gemini_magic.agent.main_thread import MainThreadRunner
from gemini_magic.options import Options
from gemini_magic.widgets.approval import Approval
from gemini_magic.widgets.code_approval import CodeApproval
from tests.fake_gemini import Reply
from tests.test_tools import contents, declarations, fc, function_calls, function_responses, last_response
from tests.test_widgets import _updates_until as widget_updates_until
from tests.test_widgets import wait_for as widgets_wait_for

AGENT_TOOLS = {"run_python", "list_variables", "inspect", "read_cells"}


# -- helpers ------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fresh_config(_shell):
    _shell.config.pop("GeminiMagics", None)
    yield
    _shell.config.pop("GeminiMagics", None)


@pytest.fixture
def make(ip):
    """Chat widgets over the loaded extension, closed at the end."""
    made = []

    def factory(name: str, **kwargs):
        from gemini_magic import widgets

        widget = widgets.chat_widget(gemini_magic._magics, name, **kwargs)
        made.append(widget)
        return widget

    yield factory
    for widget in made:
        widget.close()


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    # test_widgets' own, with more time: an agent step runs code as well as a request.
    return widgets_wait_for(predicate, timeout, what)


def question(chat):
    """The pending approval of the chat's answer, once it shows."""
    return wait_for(lambda: chat._run is not None and chat._run.approvals and chat._run.approvals[0],
                    what="the question")


def touch(path) -> str:
    """The model's code: makes `path` (its existence is the proof that it ran)."""
    return f"open({str(path)!r}, 'w').close()"


def run_python(code: str, call_id: str = "c1") -> Reply:
    return Reply(parts=[fc("run_python", {"code": code}, call_id)])


def generate_requests(server) -> list:
    return [r for r in server.requests if r.action in ("generateContent", "streamGenerateContent")]


# -- the toggle ---------------------------------------------------------------------------


def test_the_agent_toggle_sends_the_agents_tools_while_it_is_on(make, server):
    chat = make("agent-toggle")
    row = list(chat.input_row.children)
    assert row.index(chat.agent_button) == row.index(chat.multiline) + 1  # next to the ¶ toggle
    assert chat.agent_button.description == "Agent" and chat.agent_button.value is False

    server.queue(Reply(text="plain"), Reply(text="agent"), Reply(text="plain again"))
    chat.send("one")
    assert chat.wait(30)
    assert not AGENT_TOOLS & set(declarations(server.last))

    chat.agent_button.value = True  # as a click does
    assert chat.agent and chat.options.agent
    chat.send("two")
    assert chat.wait(30)
    assert set(declarations(server.last)) == AGENT_TOOLS
    system = server.last.body["systemInstruction"]["parts"][0]["text"]
    assert "data-analysis agent" in system

    chat.agent = False
    assert chat.agent_button.value is False
    chat.send("three")
    assert chat.wait(30)
    assert not AGENT_TOOLS & set(declarations(server.last))


def test_the_toggle_starts_as_the_options_say(ip, make):
    assert make("agent-opts", options=Options(agent=True)).agent_button.value is True
    assert make("agent-plain").agent_button.value is False
    chat = ip.run_line_magic("gemini", "chat-ui agent-line --agent")
    try:
        assert chat.agent_button.value is True and chat.agent
    finally:
        chat.close()


# -- Run, Skip, Edit ----------------------------------------------------------------------


def test_run_runs_the_code_in_the_namespace_and_the_card_shows_it(ip, make, server):
    chat = make("agent-run", options=Options(agent=True))  # no approve given: code runs are asked about
    ip.user_ns["chat"] = chat
    code = "made_by_agent = 6 * 7\nseen_status = chat.status.value\nprint('printed <b>by</b> agent')\nmade_by_agent"
    server.queue(run_python(code), Reply(text="It is 42."))
    chat.send("What is 6 * 7? Compute it.")
    approval = question(chat)
    assert isinstance(approval, CodeApproval)
    assert list(chat.transcript.children).count(approval.widget) == 1
    assert "made_by_agent" in approval.view.value and "&lt;b&gt;by&lt;/b&gt;" in approval.view.value
    assert "<b>by</b>" not in approval.view.value  # the model's code, escaped
    assert [b.description for b in approval.buttons.children] == ["Run", "Edit", "Skip"]
    assert "made_by_agent" not in ip.user_ns  # nothing ran before the click
    approval.run_button.click()
    assert chat.wait(30)
    assert ip.user_ns["made_by_agent"] == 42
    # While the code ran, the status line said how to stop it.
    assert "interrupt the kernel to stop it" in ip.user_ns["seen_status"]
    assert "interrupt the kernel" not in chat.status.value
    assert last_response(server) == {"stdout": "printed <b>by</b> agent\n", "result": "42"}
    assert approval.widget not in chat.transcript.children
    bubble = chat.messages[-1].html
    assert 'data-status="ok"' in bubble and "made_by_agent" in bubble and "It is 42." in bubble
    assert "printed &lt;b&gt;by&lt;/b&gt; agent" in bubble and "<b>by</b>" not in bubble
    assert len(gemini_magic.conversation("agent-run")) == 1


def test_skip_never_runs_the_code_and_the_model_hears_it_was_declined(ip, make, server, tmp_path):
    marker = tmp_path / "ran"
    chat = make("agent-skip", options=Options(agent=True))
    server.queue(run_python(touch(marker)), Reply(text="Understood, I did not run it."))
    chat.send("Make the file.")
    approval = question(chat)
    approval.skip_button.click()
    assert chat.wait(30)
    assert not marker.exists()
    response = last_response(server)
    assert "declined" in response["error"]
    bubble = chat.messages[-1].html
    assert 'data-status="refused"' in bubble and "not run" in bubble
    assert "Understood" in bubble


def test_edit_then_run_runs_the_edited_code_and_tells_the_model(ip, make, server, tmp_path):
    asked, edited = tmp_path / "asked", tmp_path / "edited"
    chat = make("agent-edit", options=Options(agent=True))
    original = touch(asked)
    server.queue(run_python(original), Reply(text="Noted: you changed it."))
    chat.send("Make the file.")
    approval = question(chat)
    assert approval.editor not in approval.widget.children
    approval.edit_button.click()
    # The text box in the code's place, holding it; Edit is done.
    assert approval.editor in approval.widget.children and approval.view not in approval.widget.children
    assert approval.editor.value == original and approval.edit_button.disabled
    changed = touch(edited) + "\nedited_value = 'mine'"
    approval.editor.value = changed
    approval.run_button.click()
    assert chat.wait(30)
    assert edited.exists() and not asked.exists() and ip.user_ns["edited_value"] == "mine"
    response = last_response(server)
    assert response["edited_by_user"] is True and response["code_that_ran"] == changed
    # The model's own turn still says what it asked for.
    model_turn = contents(server.last)[-2]
    assert function_calls(model_turn)[0]["args"] == {"code": original}
    bubble = chat.messages[-1].html
    assert "edited by you" in bubble and "edited_value" in bubble


def test_edit_with_nothing_changed_is_a_plain_run(ip, make, server, tmp_path):
    marker = tmp_path / "ran"
    chat = make("agent-edit-same", options=Options(agent=True))
    server.queue(run_python(touch(marker)), Reply(text="Done."))
    chat.send("Make the file.")
    approval = question(chat)
    approval.edit_button.click()
    approval.run_button.click()
    assert chat.wait(30)
    assert marker.exists()
    assert "edited_by_user" not in last_response(server)
    assert approval.call.edited is False


def test_other_tools_still_ask_with_allow_and_decline(ip, make, server):
    # approve="ask" asks about every call; a look at the variables is not code to edit.
    chat = make("agent-allow", options=Options(agent=True), approve="ask")
    server.queue(Reply(parts=[fc("list_variables", {}, "c1")]), Reply(text="Seen."))
    chat.send("What is there?")
    approval = question(chat)
    assert type(approval) is Approval
    approval.yes.click()
    assert chat.wait(30)


def test_stop_declines_a_pending_code_approval(ip, make, server, tmp_path):
    marker = tmp_path / "ran"
    chat = make("agent-stop", options=Options(agent=True))
    server.queue(run_python(touch(marker)))
    chat.send("Make the file.")
    approval = question(chat)
    run = chat._run
    chat.stop()
    run.thread.join(10)
    assert not run.thread.is_alive() and not chat.busy
    assert approval.event.is_set() and not approval.allowed
    assert approval.run_button.disabled and approval.skip_button.disabled
    approval.run_button.click()  # too late: nothing runs
    time.sleep(0.2)
    assert not marker.exists()
    assert len(generate_requests(server)) == 1 and len(gemini_magic.conversation("agent-stop")) == 0


@pytest.mark.parametrize("how", ["option", "setting"])
def test_approve_auto_runs_the_code_without_buttons(ip, make, server, tmp_path, monkeypatch, how):
    from gemini_magic.widgets import chat as chat_module

    shown = []
    monkeypatch.setattr(chat_module, "CodeApproval", lambda call: shown.append(call) or CodeApproval(call))
    marker = tmp_path / "ran"
    if how == "option":
        chat = make("agent-auto", options=Options(agent=True, approve="auto"))
    else:
        ip.run_line_magic("config", "GeminiMagics.agent_approve = 'auto'")
        chat = make("agent-auto-setting", options=Options(agent=True))
    server.queue(run_python(touch(marker)), Reply(text="Done."))
    chat.send("Make the file.")
    assert chat.wait(30)
    assert marker.exists() and shown == []
    assert "error" not in last_response(server)


def test_code_runs_wait_for_the_user_under_the_default_settings(ip, make, server, tmp_path):
    # GeminiMagics.approve is "auto" by default: that is for the user's functions, not code.
    marker = tmp_path / "ran"
    chat = make("agent-default", options=Options(agent=True))
    server.queue(run_python(touch(marker)))
    chat.send("Make the file.")
    approval = question(chat)
    time.sleep(0.3)
    assert not marker.exists()
    approval.decide(False)
    assert chat.wait(30)


# -- the main-thread runner, with a loop on this process's main thread ----------------------


def _kernel_like(loop):
    return SimpleNamespace(kernel=SimpleNamespace(io_loop=loop))


def _drive(loop, work, holding=None, timeout: float = 20):
    """Run `work()` on a background thread while `loop` turns on this (the main) thread;
    `holding()`, if given, is a callback of the loop's that holds it meanwhile (a cell)."""
    errors: list = []

    def background():
        try:
            work()
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)
        finally:
            loop.add_callback(loop.stop)

    assert threading.current_thread() is threading.main_thread()
    loop.add_callback(lambda: threading.Thread(target=background, daemon=True).start())
    if holding is not None:
        loop.add_callback(holding)
    guard = loop.call_later(timeout, loop.stop)
    loop.start()
    loop.remove_timeout(guard)
    if errors:
        raise errors[0]


@pytest.fixture
def loop():
    from tornado.ioloop import IOLoop

    loop = IOLoop(make_current=False)
    yield loop
    loop.close()


def test_the_runner_runs_jobs_on_the_main_thread_and_returns_their_value(loop):
    runner = MainThreadRunner(_kernel_like(loop))
    seen = {}

    def work():
        seen["caller"] = threading.current_thread()
        seen["value"] = runner(lambda: (threading.current_thread(), 42))

    _drive(loop, work)
    thread, value = seen["value"]
    assert seen["caller"] is not threading.main_thread()
    assert thread is threading.main_thread() and value == 42


def test_the_runner_raises_the_jobs_exception_in_the_caller(loop):
    runner = MainThreadRunner(_kernel_like(loop))
    caught = {}

    def boom():
        raise ValueError("from the job")

    def stopped():
        raise KeyboardInterrupt

    def work():
        for name, job in (("error", boom), ("interrupt", stopped)):
            try:
                runner(job)
            except BaseException as exc:  # noqa: BLE001
                caught[name] = exc

    _drive(loop, work)
    assert isinstance(caught["error"], ValueError) and str(caught["error"]) == "from the job"
    assert isinstance(caught["interrupt"], KeyboardInterrupt)


def test_sigint_interrupts_the_job_and_the_handler_is_put_back(loop):
    """ipykernel ignores SIGINT between messages; the runner lets it through to the job."""
    runner = MainThreadRunner(_kernel_like(loop))
    caught, during = {}, {}

    def job():
        during["handler"] = signal.getsignal(signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(10)  # the signal ends this at once
        return "not interrupted"

    def work():
        started = time.monotonic()
        try:
            caught["value"] = runner(job)
        except KeyboardInterrupt as exc:
            caught["interrupt"] = exc
        caught["seconds"] = time.monotonic() - started

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _drive(loop, work)
        after = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert during["handler"] is signal.default_int_handler
    assert "interrupt" in caught and caught["seconds"] < 5, caught
    assert after is signal.SIG_IGN


def test_a_cancelled_job_never_runs(loop):
    runner = MainThreadRunner(_kernel_like(loop))
    ran, caught = [], {}
    posted = threading.Event()

    def work():
        try:
            runner(lambda: ran.append(True))
        except KeyboardInterrupt as exc:
            caught["interrupt"] = exc

    def cancel_soon():
        # The job is queued, but this callback holds the loop: cancel it before it runs.
        wait_for(lambda: runner._pending, 10, "the job to be posted")
        posted.set()
        runner.cancel()

    _drive(loop, work, holding=cancel_soon)
    assert posted.is_set() and ran == [] and isinstance(caught["interrupt"], KeyboardInterrupt)


def test_without_a_kernel_or_on_the_main_thread_the_job_runs_in_place(loop):
    assert MainThreadRunner(None)(lambda: threading.current_thread()) is threading.main_thread()
    runner = MainThreadRunner(SimpleNamespace())  # IPython in a terminal: no kernel
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("t", runner(threading.current_thread)))
    thread.start()
    thread.join(5)
    assert box["t"] is thread
    # A kernel whose loop is not running (yet): in place too, never waiting for it.
    idle = MainThreadRunner(_kernel_like(loop))
    thread = threading.Thread(target=lambda: box.setdefault("idle", idle(threading.current_thread)))
    thread.start()
    thread.join(5)
    assert box["idle"] is thread


def test_run_pending_runs_what_waits_here(loop):
    """What wait() does on the main thread while the loop cannot turn."""
    runner = MainThreadRunner(_kernel_like(loop))
    seen = {}

    def blocked_cell():
        # A "cell" holding the loop, as chat.wait() does in a kernel: it drains.
        wait_for(lambda: runner._pending, 10, "the job to be posted")
        assert runner.run_pending() == 1

    def work():
        seen["thread"] = runner(threading.current_thread)

    _drive(loop, work, holding=blocked_cell)
    assert seen["thread"] is threading.main_thread()


# -- in a real kernel ---------------------------------------------------------------------


def _status_updates_until(kern, done, timeout: float = 30.0) -> list[str]:
    """test_widgets' own reader of widget updates, with more time (the main thread may be busy)."""
    return widget_updates_until(kern, done, timeout)


def _poll(kern, code: str, expected: str, what: str, tries: int = 400) -> None:
    for _ in range(tries):
        if kern.run(code, check=True).stream_text() == expected:
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} never happened")


WHERE = "import threading\nwhere = threading.current_thread().name\nprint('AGENT OUTPUT')\nwhere"


def test_kernel_clicked_code_runs_on_the_main_thread_between_cells(kern, server):
    server.queue(run_python(WHERE), Reply(text="Ran."))
    kern.run("w = %gemini chat-ui agent-kernel --agent", check=True)
    kern.run("w.send('where do you run?')", check=True)
    _poll(kern, "print(bool(w._run and w._run.approvals))", "True\n", "the question")
    assert kern.run("print(type(w._run.approvals[0]).__name__)", check=True).stream_text() == "CodeApproval\n"
    clicking = kern.run("w._run.approvals[0].run_button.click(); print('clicked')", check=True)
    assert clicking.stream_text() == "clicked\n"
    ex = kern.run("print(w.wait(30), where, w.busy)", check=True)
    assert ex.stream_text() == "True MainThread False\n"
    # Captured for the model and the card: the code's print never reached a cell's output.
    assert "AGENT OUTPUT" not in clicking.stream_text() + ex.stream_text()
    response = last_response(server)
    assert response["stdout"] == "AGENT OUTPUT\n" and "MainThread" in response["result"]
    kern.run("w.close()", check=True)


def test_kernel_wait_in_a_cell_runs_the_agents_code_instead_of_deadlocking(kern, server):
    server.queue(run_python(WHERE), Reply(text="Ran."))
    kern.run("w = %gemini chat-ui agent-wait --agent --approve auto", check=True)
    started = time.monotonic()
    # One cell: the send, then a wait that holds the main thread the code must run on.
    ex = kern.run("w.send('go'); print(w.wait(20), where, w.messages[-1].text)", check=True, timeout=40)
    assert ex.stream_text() == "True MainThread Ran.\n"
    assert time.monotonic() - started < 15
    kern.run("w.close()", check=True)


def test_kernel_wait_returns_at_once_while_a_click_is_needed(kern, server):
    server.queue(run_python("waited_value = 7"), Reply(text="Done."))
    kern.run("w = %gemini chat-ui agent-click --agent", check=True)
    started = time.monotonic()
    ex = kern.run("w.send('go')\nprint(w.wait(20), w.busy)\nprint(w.status.value)", check=True, timeout=40)
    lines = ex.stream_text().splitlines()
    assert lines[0] == "False True" and "no button can be clicked while a cell runs" in lines[1], lines
    assert time.monotonic() - started < 15
    kern.run("w._run.approvals[0].run_button.click()", check=True)
    ex = kern.run("print(w.wait(20), waited_value)", check=True)
    assert ex.stream_text() == "True 7\n"
    kern.run("w.close()", check=True)


def test_kernel_interrupt_stops_running_agent_code(kern, server):
    slow = "import time\nfor step in range(300):\n    time.sleep(0.1)\nfinished_sleeping = True"
    server.queue(run_python(slow))
    kern.run("w = %gemini chat-ui agent-interrupt --agent --approve auto", check=True)
    kern.run("w.send('sleep')", check=True)
    _status_updates_until(kern, lambda values: any("interrupt the kernel to stop it" in v for v in values))
    started = time.monotonic()
    kern.interrupt()
    ex = kern.run("print(w.wait(20), w.busy, 'finished_sleeping' in globals())", check=True)
    assert ex.stream_text() == "True False False\n"
    assert time.monotonic() - started < 10  # not the 30 s the code would take
    ex = kern.run("print('data-status=\"interrupted\"' in w.messages[-1].html, len(w.conversation))", check=True)
    assert ex.stream_text() == "True 0\n"
    assert len(generate_requests(server)) == 1  # nothing more was sent
    # The kernel goes on, and between messages SIGINT is ignored again, as ipykernel has it.
    kern.run("import signal\nhandlers = []\n"
             "get_ipython().kernel.io_loop.add_callback(lambda: handlers.append(signal.getsignal(signal.SIGINT)))",
             check=True)
    ex = kern.run("print(handlers == [signal.SIG_IGN])", check=True)
    assert ex.stream_text() == "True\n"
    kern.run("w.close()", check=True)


def test_kernel_stop_while_the_code_waits_for_a_cell_means_it_never_runs(kern, server):
    server.queue(run_python("never_ran = True"))
    kern.run("w = %gemini chat-ui agent-queued --agent --approve auto", check=True)
    # The send and the stop in one cell: the code is posted to the main thread, which this
    # cell holds; Stop then cancels it before it can start.
    ex = kern.run("import time\nw.send('go')\n"
                  "for _ in range(200):\n"
                  "    if w._runner._pending: break\n"
                  "    time.sleep(0.05)\n"
                  "print(bool(w._runner._pending)); w.stop(); print(w.busy)", check=True, timeout=40)
    assert ex.stream_text() == "True\nFalse\n"
    time.sleep(0.5)  # the loop turns after the cell: nothing is left to run
    ex = kern.run("print('never_ran' in globals(), 'interrupted' in w.messages[-1].html)", check=True)
    assert ex.stream_text() == "False True\n"
    kern.run("w.close()", check=True)


def test_kernel_stop_clicked_while_the_code_waits_for_a_cell_means_it_never_runs(kern, server):
    server.queue(run_python("stop_clicked_ran = True"))
    kern.run("w = %gemini chat-ui agent-stop-click --agent --approve auto", check=True)
    stop_button = kern.run("print(w.stop_button.model_id)", check=True).stream_text().strip()
    # A cell holds the main thread while the model's code arrives and waits for it...
    kern.client.execute("w.send('go'); import time; time.sleep(3)")
    _status_updates_until(kern, lambda values: any("will run when the running cell ends" in v for v in values))
    # ... and the user clicks Stop meanwhile, as the frontend sends a click.
    click = kern.client.session.msg("comm_msg", {"comm_id": stop_button,
                                                 "data": {"method": "custom", "content": {"event": "click"}}})
    kern.client.shell_channel.send(click)
    ex = kern.run("print(w.wait(10), w.busy, 'stop_clicked_ran' in globals())", check=True)
    assert ex.stream_text() == "True False False\n"
    assert "interrupted" in kern.run("print(w.messages[-1].html)", check=True).stream_text()
    kern.run("w.close()", check=True)


def test_function_responses_name_the_edited_code_in_the_kernel(kern, server):
    server.queue(run_python("edited_in_kernel = 1"), Reply(text="Fine."))
    kern.run("w = %gemini chat-ui agent-kedit --agent", check=True)
    kern.run("w.send('go')", check=True)
    _poll(kern, "print(bool(w._run and w._run.approvals))", "True\n", "the question")
    kern.run("a = w._run.approvals[0]; a.edit_button.click(); a.editor.value = 'edited_in_kernel = 2'\n"
             "a.run_button.click()", check=True)
    ex = kern.run("print(w.wait(20), edited_in_kernel)", check=True)
    assert ex.stream_text() == "True 2\n"
    response = function_responses(contents(server.last)[-1])[0]["response"]
    assert response["edited_by_user"] is True and response["code_that_ran"] == "edited_in_kernel = 2"
    kern.run("w.close()", check=True)


def test_a_rebuilt_agent_turn_shows_its_code_highlighted():
    from gemini_magic.client import types
    from gemini_magic.widgets.messages import turn_model

    t = types()
    call = t.Part(function_call=t.FunctionCall(name="run_python", args={"code": "x = '<b>'"}, id="c1"))

    class Turn:
        exchange = [t.Content(role="model", parts=[call])]
        model = t.Content(role="model", parts=[t.Part(text="Done.")])

    body, text = turn_model(Turn())
    assert "🔧 Python" in body and 'class="gemini-code"' in body
    assert "&#x27;&lt;b&gt;&#x27;" in body or "&lt;b&gt;" in body
    assert "<b>" not in body and text == "Done."

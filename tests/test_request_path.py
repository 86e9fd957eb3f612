"""One request path: the defects of front ends that drifted from the cell, each with the
test that failed before the fix (settings checked when set, errors reported not
swallowed, conversations safe across threads, commands split like a shell's, the
request's size checked whole, the Python API, and nothing left behind on unload)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from traitlets import TraitError

import gemini_magic
from gemini_magic.magics import CellFailed
from gemini_magic.render.throttle import Throttle
from tests.conftest import TEST_KEY, ask, fails, kernel_environment
from tests.fake_gemini import Error, Reply

REPO = Path(__file__).resolve().parent.parent
FLASH = "gemini-2.5-flash"


def magics():
    return gemini_magic._magics


def generate(server) -> list:
    return [r for r in server.requests if r.action in ("generateContent", "streamGenerateContent")]


# -- settings are checked when set ---------------------------------------------------------------


@pytest.mark.parametrize("name, bad, says", [
    ("timeout", -1, "timeout must be more than 0"),
    ("timeout", 0, "timeout must be more than 0"),
    ("retry_attempts", 0, "retry_attempts must be at least 1"),
    ("retry_max_wait", -5.0, "retry_max_wait must be at least 0"),
    ("temperature", 2.5, "temperature must be between 0 and 2"),
    ("top_p", 1.5, "top_p must be between 0 and 1"),
    ("top_k", 0, "top_k must be at least 1"),
    ("max_tokens", 0, "max_tokens must be at least 1"),
    ("max_steps", 0, "max_steps must be at least 1"),
    ("update_interval", -0.1, "update_interval must be at least 0"),
    ("max_image_side", 4, "max_image_side must be at least 16"),
    ("chat_token_budget", 0, "chat_token_budget must be at least 1"),
    ("summary_chars", 0, "summary_chars must be at least 1"),
    ("summary_items", 0, "summary_items must be at least 1"),
    ("summary_rows", 0, "summary_rows must be at least 1"),
    ("shared_rpm", 0, "shared_rpm must be at least 1"),
    ("thinking", "lots", "thinking takes a token budget"),
    ("model", "  ", "model takes a non-empty string"),
    ("proxy", "proxy.example.com:3128", "proxy takes a URL such as http://host:port"),
    ("base_url", "localhost:8080", "base_url takes a URL"),
    ("ca_bundle", "/no/such/ca.pem", "ca_bundle: no such file or folder"),
    ("rate_limits", {"m": {"rpm": "5"}}, "rate_limits['m']['rpm'] takes a whole number"),
    ("rate_limits", {"m": {"rps": 5}}, "unknown limit 'rps'"),
    ("rate_limits", {"m": 5}, "rate_limits['m'] takes a dict"),
])
def test_a_bad_setting_fails_when_set_and_keeps_the_old_value(ip, name, bad, says):
    old = getattr(magics(), name)
    with pytest.raises(TraitError) as info:
        setattr(magics(), name, bad)
    assert says in str(info.value)
    assert getattr(magics(), name) == old


def test_a_bad_setting_through_config_is_refused_too(ip, capsys):
    ip.run_line_magic("config", "GeminiMagics.timeout = -1")
    assert magics().timeout == 120.0


# -- errors are reported, not swallowed ----------------------------------------------------------


def test_a_bug_in_approval_is_said_not_a_silent_refusal(ip, server):
    def broken(call):
        raise RuntimeError("the approval dialog broke")

    ip.user_ns["double"] = lambda x: 2 * x
    ip.user_ns["double"].__annotations__ = {"x": int, "return": int}
    server.queue(Reply(parts=[{"functionCall": {"name": "double", "args": {"x": 2}}}]), Reply(text="ok"))
    magics().ask_approval = broken
    ask(ip, "double 2", "--tools double --approve ask")
    reply = generate(server)[-1].body["contents"][-1]["parts"][0]
    response = reply.get("functionResponse") or reply.get("function_response")
    assert "RuntimeError: the approval dialog broke" in json.dumps(response)


def test_an_unusable_limits_file_is_said(ip, server, env, tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "limits.json").write_text('{"gemini-2.5-flash": {"rpm": "fast"}}')
    env.setenv("GEMINI_MAGIC_DATA_DIR", str(folder))
    ip.run_line_magic("unload_ext", "gemini_magic")
    ip.run_line_magic("load_ext", "gemini_magic")
    assert ask(ip, "hi") == "Echo: hi"
    assert "limits.json was not used: rate_limits['gemini-2.5-flash']['rpm']" in capsys.readouterr().err


def test_an_unexpected_batch_failure_keeps_its_place_and_is_said(ip, server, capsys):
    engine = magics().engine
    original = engine.send

    def send(request):
        if "boom" in str(request.contents):
            raise KeyError("a bug")
        return original(request)

    engine.send = send
    try:
        results = gemini_magic.batch("Say {item}", ["ok", "boom", "fine"])
    finally:
        engine.send = original
    assert results[0] == "Echo: Say ok" and results[2] == "Echo: Say fine"
    assert results[1].kind == "bug" and "KeyError" in results[1].message
    assert "on an unexpected error (please report it" in capsys.readouterr().err


def test_batch_item_errors_are_scrubbed_of_the_key(ip, server):
    server.queue(Error(400, "INVALID_ARGUMENT", f"Bad request for key {TEST_KEY}"))
    results = gemini_magic.batch("Say {item}", ["x"])
    assert TEST_KEY not in results[0].message and "<redacted>" in results[0].message


# -- chats and commands ---------------------------------------------------------------------------


def test_three_asks_in_one_cell_make_three_turns(ip, server):
    ip.run_cell("\n".join(f"get_ipython().run_cell_magic('gemini', '-c quiz', 'question {i}')" for i in range(3)))
    chat = gemini_magic.conversation("quiz")
    assert [t.text("user") for t in chat.turns] == ["question 0", "question 1", "question 2"]
    assert generate(server)[-1].user_texts() == ["question 0", "question 1", "question 2"]
    # Running the cell again replaces the three turns instead of adding three more.
    ip.run_cell("\n".join(f"get_ipython().run_cell_magic('gemini', '-c quiz', 'question {i}')" for i in range(3)))
    assert len(chat) == 3


def test_paths_with_spaces_in_quotes(ip, server, tmp_path):
    ask(ip, "remember this", "-c quiz")
    folder = tmp_path / "my chats"
    path = folder / "quiz one.json"
    ip.run_line_magic("gemini", f'save quiz "{path}"')
    assert path.exists()
    ip.run_line_magic("gemini", "reset quiz")
    ip.run_line_magic("gemini", f"load quiz '{path}'")
    assert [t.text("user") for t in gemini_magic.conversation("quiz").turns] == ["remember this"]
    recording = folder / "my recording.gemini.json"
    ip.run_line_magic("gemini", f'record "{recording}"')
    ask(ip, "recorded")
    assert recording.exists()


def test_load_and_reset_change_the_conversation_in_place(ip, server, tmp_path):
    ask(ip, "first", "-c trip")
    held = gemini_magic.conversation("trip")  # as a chat widget holds it
    path = tmp_path / "trip.json"
    ip.run_line_magic("gemini", f"save trip {path}")
    ip.run_line_magic("gemini", "reset trip")
    assert held is gemini_magic.conversation("trip") and len(held) == 0
    ip.run_line_magic("gemini", f"load trip {path}")
    assert held is gemini_magic.conversation("trip") and held.turns[0].text("user") == "first"


def test_a_conversation_is_safe_across_threads(ip, server):
    from gemini_magic.client import types

    chat = gemini_magic.conversation("busy")
    user = types().Content(role="user", parts=[types().Part(text="q")])
    model = types().Content(role="model", parts=[types().Part(text="a")])
    errors = []

    def commit(n):
        try:
            for i in range(200):
                chat.commit(f"t{n}-{i}", user, model)
                chat.contents(f"t{n}-{i}", user)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=commit, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for _ in range(50):
        chat.reset()
    for thread in threads:
        thread.join()
    assert errors == []
    keys = [t.key for t in chat.turns]
    assert len(keys) == len(set(keys))  # no turn lost or doubled by a race


# -- the request's size is checked whole -----------------------------------------------------------


def test_two_large_photos_go_through_the_files_api_not_a_400(ip, server, monkeypatch):
    from gemini_magic import requests as building

    # Two photos that each fit inline, but not together once base64 adds a third
    # (a shortened limit: 2 x 450 KB of bytes is 1.2 MB encoded, over 1 MB).
    monkeypatch.setattr(building, "REQUEST_LIMIT", 1024 * 1024)
    ip.user_ns["a"], ip.user_ns["b"] = b"\xff\xd8\xff" + bytes(450_000), b"\xff\xd8\xff" + bytes(450_001)
    ask(ip, "Compare {a} and {b}", "--no-downscale")
    assert server.last.user_texts() == ["Compare ", " and "]
    uploads = [r for r in server.requests if r.action == "uploadStart"]
    assert len(uploads) == 1  # the larger one went to the Files API; the other stayed inline
    kinds = [type(m[1]).__name__ for m in server.last.media()]
    assert sorted(kinds) == ["bytes", "str"]


# -- the terminal shows thoughts ---------------------------------------------------------------------


def test_thoughts_print_in_a_terminal(ip, server, capsys):
    server.queue(Reply(parts=[{"text": "Let me think.", "thought": True}, {"text": "The answer."}]))
    ip.run_cell_magic("gemini", "--thoughts", "Why?")
    out = capsys.readouterr().out
    assert "[thoughts]\nLet me think." in out and out.index("Let me think.") < out.index("The answer.")


# -- the throttle ----------------------------------------------------------------------------------


def test_the_throttle_ignores_the_first_renders_cost_and_then_adapts():
    now = [0.0]
    throttle = Throttle(0.1, clock=lambda: now[0])
    shown = []

    def slow_show(cost):
        def show():
            shown.append(now[0])
            now[0] += cost
        return show

    assert throttle.render(slow_show(0.5))  # a first render with an import in it
    now[0] += 0.1
    assert throttle.render(slow_show(0.004))  # 0.1 s later: shown (the 0.5 s was not its cost)
    now[0] += 0.1
    assert not throttle.render(slow_show(0.004))  # 50 x 4 ms = 0.2 s gap now
    now[0] += 0.11
    assert throttle.render(slow_show(0.004))


# -- the Python API ---------------------------------------------------------------------------------


def test_ask_in_a_notebook_reads_whole_or_by_events(ip, server):
    from gemini_magic.events import Finished, TextDelta

    ip.user_ns["city"] = "Lima"
    answer = gemini_magic.ask("About {city}", temperature=0.2)
    assert server.requests == []  # sent when read
    events = list(answer)
    assert [type(e) for e in events if not isinstance(e, TextDelta)][-1] is Finished
    assert answer.read() == "Echo: About Lima"
    assert server.last.body["generationConfig"]["temperature"] == 0.2


def test_ask_raises_the_answers_error_and_refuses_display_options(ip, server):
    server.queue(Error.invalid_key())
    with pytest.raises(gemini_magic.errors.GeminiError, match="API key was rejected"):
        gemini_magic.ask("hi").read()
    with pytest.raises(gemini_magic.errors.GeminiError, match="--out does not apply here"):
        gemini_magic.ask("hi", out="x")
    with pytest.raises(TypeError, match="unknown option 'colour'"):
        gemini_magic.ask("hi", colour="red")


def test_ask_with_a_chat_keeps_the_turns(ip, server):
    gemini_magic.ask("My name is Ada.", chat="intro").read()
    gemini_magic.ask("What is my name?", chat="intro").read()
    assert server.last.user_texts() == ["My name is Ada.", "What is my name?"]
    assert len(gemini_magic.conversation("intro")) == 2


def test_ask_works_outside_ipython(server, tmp_path):
    script = (
        "import sys, gemini_magic\n"
        "assert 'IPython' not in sys.modules\n"
        "answer = gemini_magic.ask('plain Python', model='gemini-2.5-flash-lite')\n"
        "print(answer.read())\n"
        "print(sorted(m for m in sys.modules if m.startswith('IPython')))\n"
    )
    env = kernel_environment(server.url)
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["Echo: plain Python", "[]"]
    assert server.last.model == "gemini-2.5-flash-lite"


# -- nothing is left behind ----------------------------------------------------------------------------


def test_unloading_closes_widgets_threads_observers_and_the_pool(ip, server):
    from gemini_magic.widgets import chat_widget

    server.queue(Reply(chunks=["slow ", "answer"], delay=10))
    m = magics()
    chat = chat_widget(m, "leaving")
    m.widgets.append(chat)
    chat.send("go")
    run = chat._run
    ask(ip, "warm the pool")
    connection = m.connection
    network = connection.transport.inner.inner
    assert network._client is not None
    ip.run_line_magic("unload_ext", "gemini_magic")
    run.thread.join(3)
    assert not run.thread.is_alive()  # the widget's request ended
    assert m._trait_notifiers.get("model", {}).get("change", []) == []  # no observer left on the magic
    assert chat._after_cell not in ip.events.callbacks["post_run_cell"]
    assert connection._http is None and network._client is None  # the pools are closed
    ip.run_line_magic("load_ext", "gemini_magic")


def test_output_is_io_free_of_the_key(ip, server, capsys):
    server.queue(Error(400, "INVALID_ARGUMENT", f"Bad request for key {TEST_KEY}"))
    failure = fails(ip, "leak?")
    assert isinstance(failure, CellFailed)
    assert TEST_KEY not in str(failure) and TEST_KEY not in "\n".join(failure._render_traceback_())
    assert TEST_KEY not in io.StringIO(capsys.readouterr().out).read()


def test_the_settings_the_magic_checks_are_the_settings_requests_use():
    from gemini_magic.options import SETTING_NAMES
    from gemini_magic.settings import NAMES

    assert SETTING_NAMES == NAMES
    assert set(SETTING_NAMES) == set(gemini_magic.magics.GeminiMagics.class_trait_names(config=True))

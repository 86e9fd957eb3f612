"""The settings panel and the chat widget.

In-process tests drive the widgets without a frontend (ipywidgets work without one:
their comm is a dummy); tests where threads and comm messages matter run in a real
kernel (`kern`). Every request goes to the fake Gemini server, whose log is checked.
Waits are bounded waits for events, never timing assertions.
"""

from __future__ import annotations

import html
import io
import json
import queue
import re
import time

import pytest
from PIL import Image

import gemini_magic
from gemini_magic.history import Conversation, turn_record
from gemini_magic.widgets.models import newest_first
from tests.fake_gemini import Error, Reply

HOSTILE = '<img src=x onerror=alert(1)>'
SCRIPT = "<script>alert(2)</script>"


# -- helpers ------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fresh_config(_shell):
    """`%config` merges into the session shell's config, which outlives the extension."""
    _shell.config.pop("GeminiMagics", None)
    yield
    _shell.config.pop("GeminiMagics", None)


@pytest.fixture
def registry():
    """The @gemini_magic.tool registry, restored afterwards (the panel edits it)."""
    from gemini_magic.tools import _default_tools

    saved = dict(_default_tools)
    yield _default_tools
    _default_tools.clear()
    _default_tools.update(saved)


@pytest.fixture
def magics(ip):
    return gemini_magic._magics


@pytest.fixture
def make(magics):
    """Make widgets, closed at the end (a chat widget listens to the shell's events)."""
    made = []

    def factory(kind: str = "chat", *args, **kwargs):
        from gemini_magic import widgets

        widget = widgets.settings_panel(magics) if kind == "settings" else widgets.chat_widget(magics, *args,
                                                                                                **kwargs)
        made.append(widget)
        return widget

    yield factory
    for widget in made:
        widget.close()


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def ok(ip, source: str):
    result = ip.run_cell(source)
    assert result.error_in_exec is None, result.error_in_exec
    assert result.error_before_exec is None, result.error_before_exec
    return result


def generate_requests(server) -> list:
    return [r for r in server.requests if r.action in ("generateContent", "streamGenerateContent")]


def texts(request) -> list[tuple[str, str]]:
    """(role, text) of each content of a request."""
    out = []
    for content in request.body["contents"]:
        text = "".join(p.get("text", "") for p in content.get("parts", []))
        out.append((content.get("role"), text))
    return out


def all_strings(widget) -> list[str]:
    """Every string a widget (and its children) sends to the frontend."""
    import ipywidgets

    found, stack, seen = [], [widget], set()
    while stack:
        w = stack.pop()
        if id(w) in seen:
            continue
        seen.add(id(w))
        for name in w.keys:
            value = getattr(w, name, None)
            values = value if isinstance(value, (tuple, list)) else [value]
            for item in values:
                if isinstance(item, str):
                    found.append(item)
                elif isinstance(item, ipywidgets.Widget):
                    stack.append(item)
    return found


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


def upload(name: str, data: bytes, mime: str) -> dict:
    from datetime import UTC, datetime

    return {"name": name, "type": mime, "size": len(data), "content": memoryview(data),
            "last_modified": datetime(2025, 1, 1, tzinfo=UTC)}


# -- the model list -----------------------------------------------------------------


def test_newest_first_rule():
    ids = ["gemini-2.0-flash", "gemma-3-27b-it", "gemini-2.5-flash", "gemini-2.5-pro", "gemini-exp-1206",
           "gemini-flash-latest", "gemini-3.1-pro-preview", "gemini-3-flash-preview", "learnlm-2.0-flash"]
    assert newest_first(ids) == [
        "gemini-flash-latest",  # an alias of the newest
        "gemini-3.1-pro-preview", "gemini-3-flash-preview",
        "gemini-2.5-flash", "gemini-2.5-pro",  # same number: the API's order
        "gemini-2.0-flash",
        "gemini-exp-1206",  # no version number: oldest of its family
        "gemma-3-27b-it", "learnlm-2.0-flash",  # other families after Gemini
    ]


def test_panel_offers_generate_capable_models_newest_first(make, server):
    panel = make("settings")
    # The fake server lists 2.5 Flash, Flash-Lite, Pro, 3 Flash Preview, Gemma 3 and an
    # embedding model, in that order.
    assert panel.model.options == ("gemini-3-flash-preview", "gemini-2.5-flash", "gemini-2.5-flash-lite",
                                   "gemini-2.5-pro", "gemma-3-27b-it")
    assert "gemini-embedding-001" not in panel.model.options
    assert panel.model.value == "gemini-2.5-flash"
    assert panel.reason.value == "" and panel.reason.layout.display == "none"
    assert any(r.action == "list" for r in server.requests)


def test_panel_keeps_a_configured_model_the_list_lacks(ip, make):
    ok(ip, "%config GeminiMagics.model = 'models/gemini-tuned-42'")
    panel = make("settings")
    assert panel.model.options[0] == "gemini-tuned-42" and panel.model.value == "gemini-tuned-42"


def test_panel_without_a_model_list_offers_the_default_with_a_reason(make, server):
    server.valid_keys = {"another-key"}  # models.list answers 400 API_KEY_INVALID
    panel = make("settings")
    assert panel.model.options == ("gemini-2.5-flash",)
    assert panel.model.value == "gemini-2.5-flash"
    assert "Model list unavailable" in panel.reason.value and "key" in panel.reason.value.lower()
    assert "\n" not in panel.reason.value and panel.reason.layout.display is None
    assert "Model list unavailable" in panel.choices.reason


# -- two-way binding ----------------------------------------------------------------


def test_panel_changes_reach_the_next_cell(ip, make, magics, server):
    panel = make("settings")
    panel.model.value = "gemini-2.5-pro"
    panel.temperature.enabled.value = True
    panel.temperature.editor.value = 0.4
    panel.top_p.enabled.value = True
    panel.top_p.editor.value = 0.8
    panel.max_tokens.enabled.value = True
    panel.max_tokens.editor.value = 300
    panel.system.value = "Answer like a pirate."
    assert (magics.model, magics.temperature, magics.top_p, magics.max_tokens, magics.system) == (
        "gemini-2.5-pro", 0.4, 0.8, 300, "Answer like a pirate.")
    ok(ip, "%%gemini\nhello")
    sent = server.last
    assert sent.model == "gemini-2.5-pro"
    config = sent.body["generationConfig"]
    assert config["temperature"] == 0.4 and config["topP"] == 0.8 and config["maxOutputTokens"] == 300
    assert sent.system_texts() == ["Answer like a pirate."]
    # Unticking (or emptying the system box) unsets: None, the model's default.
    panel.temperature.enabled.value = False
    panel.system.value = ""
    assert magics.temperature is None and magics.system is None
    ok(ip, "%%gemini\nagain")
    assert "temperature" not in server.last.body["generationConfig"]
    assert server.last.system_texts() == []


def test_config_changes_show_in_the_panel(ip, make):
    panel = make("settings")
    ok(ip, "%config GeminiMagics.model = 'gemini-2.5-flash-lite'")
    assert panel.model.value == "gemini-2.5-flash-lite"
    ok(ip, "%config GeminiMagics.model = 'gemini-9-experimental'")  # not in the list: added
    assert panel.model.value == "gemini-9-experimental" and panel.model.options[0] == "gemini-9-experimental"
    ok(ip, "%config GeminiMagics.temperature = 0.3")
    assert panel.temperature.value == 0.3 and panel.temperature.enabled.value
    assert panel.temperature.editor.value == 0.3 and not panel.temperature.editor.disabled
    ok(ip, "%config GeminiMagics.temperature = None")
    assert panel.temperature.value is None and not panel.temperature.enabled.value
    assert panel.temperature.editor.disabled
    ok(ip, "%config GeminiMagics.max_tokens = 512")
    assert panel.max_tokens.editor.value == 512 and panel.max_tokens.enabled.value
    ok(ip, "%config GeminiMagics.system = 'Be brief.'")
    assert panel.system.value == "Be brief."
    ok(ip, "%config GeminiMagics.system = None")
    assert panel.system.value == ""
    assert repr(panel) == ("SettingsPanel(model='gemini-9-experimental', temperature=None, top_p=None, "
                           "max_tokens=512, tools=())")


def test_a_closed_panel_is_unbound(ip, make, magics):
    panel = make("settings")
    panel.close()
    ok(ip, "%config GeminiMagics.model = 'gemini-2.5-pro'")
    ok(ip, "%config GeminiMagics.temperature = 0.9")
    assert panel.temperature.value is None
    assert magics.model == "gemini-2.5-pro"


def test_default_tools_are_the_tool_registry(ip, make, server, registry):
    ok(ip, 'def shout(text: str) -> str:\n    """Upper-case a text."""\n    return text.upper()\n')
    ok(ip, "import json as _json\nfrom os.path import join")  # imported functions are not offered
    panel = make("settings")
    assert "shout" in panel.tool_select.options and "join" not in panel.tool_select.options
    assert panel.tools == ()
    panel.tool_select.value = ("shout",)
    assert panel.tools == ("shout",) and registry["shout"] is ip.user_ns["shout"]
    ok(ip, "%%gemini\nhi")
    declared = [d["name"] for t in server.last.body.get("tools", []) for d in t.get("functionDeclarations", [])]
    assert declared == ["shout"]
    panel.tool_select.value = ()
    assert "shout" not in registry
    ok(ip, "%%gemini\nhi again")
    assert "tools" not in server.last.body


def test_panel_refresh_finds_new_functions_and_rebinds_redefined_ones(ip, make, registry):
    panel = make("settings")
    assert "later" not in panel.tool_select.options
    ok(ip, "def later(x: int) -> int:\n    return x\n")
    panel.refresh()
    panel.tool_select.value = ("later",)
    ok(ip, "def later(x: int) -> int:\n    return x + 1\n")
    panel.refresh()
    assert registry["later"] is ip.user_ns["later"] and panel.tools == ("later",)


# -- the chat widget: conversation ----------------------------------------------------


def test_chat_sends_with_the_named_conversations_history(ip, make, server):
    ok(ip, "%%gemini -c trip\nPlan a day in Kyoto.")
    chat = make("chat", "trip")
    assert [m.role for m in chat.messages] == ["user", "model"]  # the cell's turn shows
    assert chat.messages[0].text == "Plan a day in Kyoto."
    server.queue(Reply(text="Take the bus to Arashiyama."))
    assert chat.send("How do I get there?")
    assert chat.wait(10)
    assert texts(server.last) == [("user", "Plan a day in Kyoto."), ("model", "Echo: Plan a day in Kyoto."),
                                  ("user", "How do I get there?")]
    conversation = gemini_magic.conversation("trip")
    assert re.fullmatch(r"widget:[0-9a-f]{12}", [t.key for t in conversation.turns][1])
    assert conversation.messages()[-1]["text"] == "Take the bus to Arashiyama."

    # ... and a cell continues the widget's conversation, which then shows it.
    ok(ip, "%%gemini -c trip\nAnd back?")
    assert texts(server.last)[-2:] == [("model", "Take the bus to Arashiyama."), ("user", "And back?")]
    assert len(server.last.body["contents"]) == 5
    assert [m.text for m in chat.messages][-2:] == ["And back?", "Echo: And back?"]


def test_widget_keys_never_replace_a_loaded_turn(ip, make, server):
    from gemini_magic.client import types

    conversation = gemini_magic.conversation("loaded")
    Content = types().Content
    conversation.commit("widget:1", Content(role="user", parts=[{"text": "old question"}]),
                        Content(role="model", parts=[{"text": "old answer"}]))
    chat = make("chat", "loaded")
    chat.send("new question")
    chat.wait(10)
    keys = [t.key for t in conversation.turns]
    assert keys[0] == "widget:1" and re.fullmatch(r"widget:[0-9a-f]{12}", keys[1])
    assert texts(server.last)[0] == ("user", "old question")


def test_closing_and_reopening_shows_the_same_messages(make, server):
    first = make("chat", "again")
    first.send("one")
    first.wait(10)
    first.send("two")
    first.wait(10)
    shown = [(m.role, m.text) for m in first.messages]
    first.close()
    second = make("chat", "again")
    assert [(m.role, m.text) for m in second.messages] == shown == [
        ("user", "one"), ("model", "Echo: one"), ("user", "two"), ("model", "Echo: two")]


def test_new_chat_resets_the_conversation(make, server):
    chat = make("chat", "fresh")
    chat.send("remember 7")
    chat.wait(10)
    chat.new_chat()
    assert len(gemini_magic.conversation("fresh")) == 0 and chat.messages == []
    chat.send("what number?")
    chat.wait(10)
    assert texts(server.last) == [("user", "what number?")]


# -- the chat widget: streaming and Stop ----------------------------------------------


def test_answers_stream_into_the_message_in_pieces(make, server):
    chat = make("chat", "stream")
    chunks = ["First part. ", "Second part. ", "Third part. ", "Last part."]
    server.queue(Reply(chunks=chunks, delay=0.3))
    seen = []
    chat.send("tell me")
    chat.messages[-1].widget.observe(lambda change: seen.append(change.new), "value")
    assert chat.busy and chat.send_button.disabled and not chat.stop_button.disabled
    assert chat.wait(20)
    partial = [v for v in seen if "First part." in v and "Last part." not in v]
    assert len({v for v in partial}) >= 2  # the text grew while it streamed
    assert "Last part." in chat.messages[-1].html and not chat.busy
    assert chat.stop_button.disabled and not chat.send_button.disabled


def test_stop_keeps_the_partial_answer_and_leaves_the_conversation(ip, make, server):
    ok(ip, "%%gemini -c story\nStart a story.")
    chat = make("chat", "story")
    before = list(gemini_magic.conversation("story").turns)
    server.queue(Reply(chunks=[f"part{i} " for i in range(30)], delay=0.25))
    chat.send("Go on, at length.")
    run = chat._run
    wait_for(lambda: "part1 " in chat.messages[-1].html, what="the first chunks")
    chat.stop()
    stopped = chat.messages[-1].html
    assert "part0" in stopped and "part29" not in stopped and "Stopped" in stopped
    assert not chat.busy and chat.stop_button.disabled
    run.thread.join(10)  # the request thread ends; nothing more is shown
    assert not run.thread.is_alive()
    assert chat.messages[-1].html == stopped
    assert list(gemini_magic.conversation("story").turns) == before
    # The next message builds on the conversation without the stopped answer.
    chat.send("Something else.")
    chat.wait(10)
    assert [t for _, t in texts(server.last)] == ["Start a story.", "Echo: Start a story.", "Something else."]


def test_a_second_send_while_answering_is_refused(make, server):
    chat = make("chat", "busy")
    server.queue(Reply(chunks=["a ", "b ", "c"], delay=0.3))
    assert chat.send("first")
    assert not chat.send("second")
    assert "still answering" in chat.status.value
    chat.wait(10)
    assert len(generate_requests(server)) == 1


def test_a_failed_answer_shows_the_error_and_changes_nothing(make, server):
    chat = make("chat", "broken")
    server.queue(Error.invalid_key())
    chat.send("hello")
    chat.wait(10)
    assert "API key" in chat.messages[-1].html and "gm-error" in chat.messages[-1].html
    assert len(gemini_magic.conversation("broken")) == 0 and not chat.busy


def test_usage_is_shown_per_answer(make, server):
    chat = make("chat", "usage")
    server.queue(Reply(text="three words here", usage={"promptTokenCount": 11, "candidatesTokenCount": 3,
                                                        "totalTokenCount": 14}))
    chat.send("count")
    chat.wait(10)
    assert "11 in, 3 out tokens" in chat.messages[-1].html
    reopened = make("chat", "usage")
    assert "11 in, 3 out tokens" in reopened.messages[-1].html


# -- input ----------------------------------------------------------------------------


def test_enter_in_the_input_box_sends(make, server):
    chat = make("chat", "enter")
    chat.input.value = "sent by Enter"
    # What the Text view sends on Enter, after syncing the value.
    chat.input._handle_custom_msg({"event": "submit"}, [])
    chat.wait(10)
    assert server.last.last_user_text() == "sent by Enter"
    assert chat.input.value == ""
    chat.input.value = "a draft"
    chat.send("sent from code")  # leaves what is typed alone
    chat.wait(10)
    assert chat.input.value == "a draft" and server.last.last_user_text() == "sent from code"


def test_multi_line_mode_keeps_lines_and_sends_with_the_button(make, server):
    chat = make("chat", "lines")
    chat.input.value = "first line"
    chat.multiline.value = True
    assert chat.area in chat.input_row.children and chat.input not in chat.input_row.children
    assert chat.area.value == "first line"
    chat.area.value = "first line\nsecond line"
    chat.send_button.click()
    chat.wait(10)
    assert server.last.last_user_text() == "first line\nsecond line"
    chat.multiline.value = False
    assert chat.input in chat.input_row.children


def test_attachments_are_sent_as_parts(make, server):
    chat = make("chat", "files")
    image = png_bytes()
    chat.upload.value = (upload("chart.png", image, "image/png"), upload("report.pdf", PDF, "application/pdf"))
    assert "chart.png" in chat.attached.value
    chat.send("What is in these?")
    chat.wait(10)
    media = server.last.media()
    assert [m for m, _ in media] == ["image/png", "application/pdf"]
    assert media[0][1] == image and media[1][1] == PDF
    assert server.last.last_user_text() == "What is in these?"
    assert chat.upload.value == () and chat.attached.value == ""
    assert "chart.png" in chat.messages[-2].html


def test_the_calculator_counts_the_message_with_the_history_and_sends_nothing(ip, make, server):
    from gemini_magic.counting import Count

    ok(ip, "%%gemini -c plan\nPlan a day in Kyoto.")
    chat = make("chat", "plan")
    chat.upload.value = (upload("chart.png", png_bytes(), "image/png"),)
    chat.text = "How long is the bus ride?"
    before = len(server.requests)
    chat.count_button.click()
    status = html.unescape(chat.status.value)
    new = [r.action for r in server.requests[before:]]
    assert "countTokens" in new and not {"generateContent", "streamGenerateContent"} & set(new)
    counted = chat.count()
    assert isinstance(counted, Count)
    labels = [p.label for p in counted.pieces]
    assert labels[0] == "history (1 turn)" and "text" in labels and any(la.startswith("image 1") for la in labels)
    assert f"{counted.total:,} input tokens (history (1 turn) " in status
    assert "fits gemini-2.5-flash's limit of 1,048,576" in status and "Counted, not sent." in status
    assert "gm-error" not in status
    assert len(gemini_magic.conversation("plan").turns) == 1  # nothing kept
    assert chat.text == "How long is the bus ride?" and len(chat.upload.value) == 1  # nothing consumed


def test_the_calculator_with_nothing_typed_says_what_to_do(make, server):
    chat = make("chat", "empty")
    chat.count_button.click()
    assert "nothing to count yet" in chat.status.value and "gm-error" in chat.status.value
    assert [r.action for r in server.requests] == ["list"]  # the model list, when the chat was made


def test_the_estimate_grows_as_you_type_without_a_request(ip, make, server):
    ok(ip, "%%gemini -c est\nPlan a day in Kyoto.")
    chat = make("chat", "est")
    before = len(server.requests)
    assert chat.meter.value == ""
    chat.text = "Short?"
    short = int(re.search(r"About ([\d,]+) tokens", chat.meter.value).group(1).replace(",", ""))
    history = gemini_magic.conversation("est").turns[-1].usage
    assert f"with the history ({history['prompt_tokens'] + history['output_tokens']:,})" in chat.meter.value
    chat.text = "A much longer question about the bus ride to Arashiyama and back, with stops. " * 5
    longer = int(re.search(r"About ([\d,]+) tokens", chat.meter.value).group(1).replace(",", ""))
    assert longer > short
    chat.upload.value = (upload("chart.png", png_bytes(), "image/png"),)
    with_image = int(re.search(r"About ([\d,]+) tokens", chat.meter.value).group(1).replace(",", ""))
    assert with_image >= longer + 258
    assert len(server.requests) == before  # all local
    chat.text = ""
    chat.upload.value = ()
    assert chat.meter.value == ""


def test_an_unsupported_attachment_is_refused_with_a_message(make, server):
    chat = make("chat", "badfile")
    chat.upload.value = (upload("tool.exe", b"MZ\x90\x00\x03" + bytes(range(200)), "application/octet-stream"),)
    assert not chat.send("look")
    assert "gm-error" in chat.status.value
    assert generate_requests(server) == []


# -- export ---------------------------------------------------------------------------


def test_export_json_round_trips_and_markdown_is_safe(make, server, tmp_path):
    chat = make("chat", "export")
    server.queue(Reply(text=f"Use `<b>` for bold, not {HOSTILE}."))
    chat.send("How do I make text bold?")
    chat.wait(10)
    data = chat.export_json(tmp_path / "c.json")
    assert data == gemini_magic.conversation("export").to_json()
    loaded = Conversation.load(tmp_path / "c.json")
    assert loaded.messages() == gemini_magic.conversation("export").messages()
    assert Conversation.from_json(json.loads(json.dumps(data))).messages() == loaded.messages()
    markdown = chat.to_markdown()
    assert "### You\n\nHow do I make text bold?" in markdown
    assert "`<b>`" in markdown  # code stays as written
    assert "&lt;img src=x onerror=alert(1)>" in markdown and HOSTILE not in markdown
    json_path, md_path = chat.export(tmp_path)
    assert json_path.name == "export.chat.json" and md_path.read_text() == markdown
    assert Conversation.load(json_path).messages() == loaded.messages()


# -- untrusted output -----------------------------------------------------------------


def test_hostile_answers_never_reach_a_widget_unescaped(ip, make, server, registry):
    ok(ip, "def lookup(query: str) -> str:\n    return query\n")
    chat = make("chat", "hostile", tools=["lookup"])
    server.queue(
        Reply(parts=[{"text": f"Look: {HOSTILE} "}, {"functionCall": {"name": "lookup", "args": {"query": HOSTILE}}}]),
        Reply(chunks=[f"{SCRIPT} and ", f"{HOSTILE} done", " [x](javascript:alert(3))"], delay=0.05),
    )
    chat.send(f"my own {HOSTILE}")
    chat.wait(10)
    strings = all_strings(chat)
    assert any("&lt;img src=x onerror=alert(1)&gt;" in s for s in strings)  # shown, as text
    for s in strings:
        assert "<img src=x" not in s and "<script>" not in s and 'href="javascript' not in s
    chat.refresh()  # the view rebuilt from the conversation is as safe
    for s in all_strings(chat):
        assert "<img src=x" not in s and "<script>" not in s and 'href="javascript' not in s


# -- tools and approval ---------------------------------------------------------------


CALCULATOR = '''
calls = []
def add(a: int, b: int) -> int:
    """Add two numbers."""
    calls.append((a, b))
    return a + b
'''


@pytest.mark.parametrize("allow", [True, False])
def test_tool_calls_ask_with_buttons(ip, make, server, registry, allow):
    ok(ip, CALCULATOR)
    chat = make("chat", f"tools-{allow}", tools=["add"], approve="ask")
    server.queue(Reply(parts=[{"functionCall": {"name": "add", "args": {"a": 2, "b": 3}, "id": "c1"}}]),
                 Reply(text="The sum is 5." if allow else "I may not add."))
    chat.send("What is 2 + 3?")
    approval = wait_for(lambda: chat._run and chat._run.approvals and chat._run.approvals[0], what="the question")
    assert list(chat.transcript.children).count(approval.widget) == 1
    assert "add(a=2, b=3)" in approval.widget.children[0].value
    (approval.yes if allow else approval.no).click()
    assert chat.wait(10)
    assert approval.widget not in chat.transcript.children
    sent = server.last.body["contents"][-1]["parts"][0]
    response = sent.get("functionResponse") or sent["function_response"]
    if allow:
        assert ip.user_ns["calls"] == [(2, 3)] and response["response"] == {"result": 5}
        assert "✓" in chat.messages[-1].html and "The sum is 5." in chat.messages[-1].html
    else:
        assert ip.user_ns["calls"] == [] and "declined" in response["response"]["error"]
        assert "not run" in chat.messages[-1].html
    assert len(gemini_magic.conversation(f"tools-{allow}")) == 1
    reopened = make("chat", f"tools-{allow}")  # rebuilt from the turn: the call shows too
    assert reopened.messages[-1].text == chat.messages[-1].text
    assert "🔧 add(a=2, b=3)" in reopened.messages[-1].html


def test_stop_declines_a_pending_approval(ip, make, server, registry):
    ok(ip, CALCULATOR)
    chat = make("chat", "tools-stop", tools=["add"], approve="ask")
    server.queue(Reply(parts=[{"functionCall": {"name": "add", "args": {"a": 1, "b": 1}}}]))
    chat.send("1 + 1?")
    run = wait_for(lambda: chat._run if chat._run and chat._run.approvals else None, what="the question")
    chat.stop()
    run.thread.join(10)
    assert not run.thread.is_alive() and ip.user_ns["calls"] == []
    assert len(generate_requests(server)) == 1 and len(gemini_magic.conversation("tools-stop")) == 0


def test_the_chat_model_is_its_own_and_does_not_follow_the_settings(ip, make, magics, server):
    from gemini_magic.widgets.chat_view import MODEL_LABEL, MODEL_TIP

    ok(ip, "%config GeminiMagics.model = 'gemini-2.5-pro'")
    chat = make("chat", "models")  # the first value is GeminiMagics.model's
    panel = make("settings")
    assert chat.model.options == panel.model.options and chat.model.value == "gemini-2.5-pro"
    panel.model.value = "gemini-2.5-flash-lite"  # the settings panel is for cells
    ok(ip, "%config GeminiMagics.model = 'gemini-3-flash-preview'")
    assert magics.model == "gemini-3-flash-preview"
    assert chat.model.value == "gemini-2.5-pro"
    assert repr(chat) == "ChatWidget(conversation='models', model='gemini-2.5-pro')"
    chat.send("which model?")
    chat.wait(10)
    assert server.last.model == "gemini-2.5-pro"
    chat.model.value = "gemini-2.5-flash"  # picked in the chat: used from the next message
    chat.send("and now?")
    chat.wait(10)
    assert server.last.model == "gemini-2.5-flash" and magics.model == "gemini-3-flash-preview"
    # ...and said where it shows: a label before the dropdown, with the tooltip on both.
    children = list(chat.top.children)
    label = children[children.index(chat.model) - 1]
    assert label is chat.model_label and MODEL_LABEL == "Model (this chat)" and MODEL_LABEL in label.value
    assert MODEL_TIP == "Used by this chat only; %%gemini cells use the settings panel's model"
    assert label.tooltip == chat.model.tooltip == MODEL_TIP
    assert 'title="Used by this chat only; %%gemini cells use the settings panel&#x27;s model"' in label.value


def test_chat_ui_options_give_the_first_model(ip, magics, server):
    widget = ip.run_line_magic("gemini", "chat-ui opted -m gemini-2.5-flash-lite")
    try:
        ok(ip, "%config GeminiMagics.model = 'gemini-2.5-pro'")
        assert widget.model.value == "gemini-2.5-flash-lite"
    finally:
        widget.close()


def test_repr_is_short_and_deterministic(make):
    chat = make("chat", "named")
    assert repr(chat) == "ChatWidget(conversation='named', model='gemini-2.5-flash')"


# -- in a real kernel: threads and comm messages ----------------------------------------


def _updates_until(kern, done, timeout: float = 20.0) -> list[str]:
    """Widget `value` updates seen on IOPub (from any thread) until `done(values)`."""
    values = []
    deadline = time.monotonic() + timeout
    while not done(values):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no final update in {timeout} s; saw {values[-3:]}")
        try:
            msg = kern.client.get_iopub_msg(timeout=remaining)
        except queue.Empty:
            continue
        if msg["msg_type"] == "comm_msg":
            data = msg["content"]["data"]
            value = data.get("state", {}).get("value") if data.get("method") == "update" else None
            if isinstance(value, str):
                values.append(value)
    return values


def test_kernel_widget_streams_from_its_thread(kern, server):
    server.queue(Reply(chunks=["alpha ", "beta ", "gamma ", "delta"], delay=0.3))
    kern.run("w = %gemini chat-ui kernel-stream\nw", check=True)
    ex = kern.run("print(w.send('stream please'))", check=True)
    assert ex.stream_text() == "True\n"  # the cell returned while the answer streams
    values = _updates_until(kern, lambda v: any("delta" in x for x in v))
    partial = [v for v in values if "alpha" in v and "delta" not in v]
    assert len(set(partial)) >= 2  # several updates, each sent from the request thread
    ex = kern.run("w.wait(10); print(repr(w.messages[-1].text), len(w.conversation))",
                  check=True)
    assert ex.stream_text() == "'alpha beta gamma delta' 1\n"
    kern.run("w.close()", check=True)


def test_kernel_stays_responsive_while_the_widget_streams(kern, server):
    chunks = [f"c{i} " for i in range(40)]
    server.queue(Reply(chunks=chunks, delay=0.25))  # about 10 s of streaming
    kern.run("w = %gemini chat-ui responsive", check=True)
    kern.run("w.send('a long answer, please')", check=True)
    _updates_until(kern, lambda v: any("c1 " in x for x in v))  # streaming has begun
    ex = kern.run("1+1", timeout=5)
    assert ex.status == "ok"
    assert ex.of_type("execute_result")[0]["content"]["data"]["text/plain"] == "2"
    # That cell ran while the answer was still streaming in the background.
    ex = kern.run("print(w.busy, 'c39' in w.messages[-1].html)", check=True)
    assert ex.stream_text() == "True False\n"
    # Stop ends it from a cell, which is not interrupted itself.
    ex = kern.run("w.stop(); print('after stop', w.busy, len(w.conversation))",
                  check=True)
    assert ex.stream_text() == "after stop False 0\n"
    ex = kern.run("print('c0' in w.messages[-1].html, 'Stopped' in w.messages[-1].html)", check=True)
    assert ex.stream_text() == "True True\n"
    kern.run("w.close()", check=True)


def test_kernel_approval_waits_and_tool_output_goes_to_the_sending_cell(kern, server):
    server.queue(Reply(parts=[{"functionCall": {"name": "double", "args": {"x": 21}}}]), Reply(text="42 it is."))
    kern.run("def double(x: int) -> int:\n    print('TOOL RAN')\n    return 2 * x\n", check=True)
    kern.run("w = %gemini chat-ui kernel-tools\nw.tools, w.approve = ['double'], 'ask'", check=True)
    sending = kern.run("w.send('double 21')", check=True)
    sender = sending.messages[0]["parent_header"]["msg_id"]
    for _ in range(200):  # bounded: the question shows once the model's call arrives
        ex = kern.run("print(bool(w._run and w._run.approvals))", check=True)
        if ex.stream_text() == "True\n":
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the approval question never showed")
    assert kern.run("2 * 3").status == "ok"  # the kernel runs cells while the thread waits
    # The click and the tool's print overlap: read IOPub directly, keeping every message.
    clicking = kern.client.execute("w._run.approvals[0].yes.click()")
    idle, printed = False, None
    deadline = time.monotonic() + 20
    while not (idle and printed):
        assert time.monotonic() < deadline, f"idle={idle}, printed={printed}"
        try:
            msg = kern.client.get_iopub_msg(timeout=1)
        except queue.Empty:
            continue
        parent = msg["parent_header"].get("msg_id")
        if msg["msg_type"] == "status" and parent == clicking and msg["content"]["execution_state"] == "idle":
            idle = True
        elif msg["msg_type"] == "stream" and "TOOL RAN" in msg["content"]["text"]:
            printed = parent
    kern.client.get_shell_msg(timeout=10)  # the click's reply
    # ipykernel 7: the tool's print, made on the request thread, belongs to the cell
    # that sent the message, not to whichever cell ran last (the click's).
    assert printed == sender
    ex = kern.run("w.wait(10); print(w.messages[-1].text)", check=True)
    assert ex.stream_text() == "42 it is.\n"
    kern.run("w.close()", check=True)


def test_trimmed_history_and_step_limits_are_noted_under_the_answer(ip, make, magics, server):
    chat = make("chat", "budget")
    for text in ("first " * 50, "second " * 50):
        chat.send(text)
        chat.wait(10)
    magics.chat_token_budget = 60
    chat.send("third")
    chat.wait(10)
    assert "oldest turn(s) are no longer sent" in chat.messages[-1].html
    assert texts(server.last)[0][1].startswith("second")


def test_a_retry_shows_while_waiting_and_goes_when_answered(make, server):
    chat = make("chat", "retry")
    server.queue(Error.quota(retry_delay="1.2s"), Reply(text="Got through."))
    chat.send("hello")
    # The retry shows inside the answer's bubble for the second it waits, and goes
    # when the answer comes.
    wait_for(lambda: "Retrying in 1 s (attempt 2 of 4)" in chat.messages[-1].html, what="the retry status")
    chat.wait(10)
    assert "Retrying" not in chat.messages[-1].html and "Got through." in chat.messages[-1].html


def test_closing_the_widget_ends_its_request(make, server):
    """A closed widget stops its request thread: no thread is left streaming."""
    chat = make("chat", "closing")
    server.queue(Reply(chunks=["x "] * 20, delay=0.2))
    chat.send("go")
    run = chat._run
    wait_for(lambda: "x" in chat.messages[-1].html, what="the first chunk")
    chat.close()
    run.thread.join(10)
    assert not run.thread.is_alive() and run.stopped
    assert len(generate_requests(server)) == 1


# -- one request path: the widget renders like a cell, and Stop stops ----------------------------


def test_the_rate_limit_countdown_shows_in_the_bubble(make, magics, server):
    magics.rate_limits = {"gemini-2.5-flash": {"rpm": 1}}
    magics.engine  # noqa: B018
    magics.connection.limiter.window = 2.0
    chat = make("chat", "countdown")
    chat.send("first")
    chat.wait(10)
    chat.send("second")  # waits about 2 s for the one request a (shortened) minute
    wait_for(lambda: "Waiting" in chat.messages[-1].html, what="the countdown")
    assert "rate limit: 1 request a minute on gemini-2.5-flash" in chat.messages[-1].html
    chat.wait(10)
    assert "Waiting" not in chat.messages[-1].html and "Echo: second" in chat.messages[-1].html


def test_widget_errors_are_scrubbed_of_the_key(make, server):
    from tests.conftest import TEST_KEY

    server.queue(Error(400, "INVALID_ARGUMENT", f"Bad request for key {TEST_KEY}"))
    chat = make("chat", "scrubbed")
    chat.send("leak?")
    chat.wait(10)
    assert TEST_KEY not in chat.messages[-1].html and "&lt;redacted&gt;" in chat.messages[-1].html


def test_options_of_chat_ui_apply_to_every_message_and_bad_ones_are_refused(ip, magics, server):
    widget = ip.run_line_magic("gemini", "chat-ui searchy --search -t 0.3")
    try:
        widget.send("with search")
        widget.wait(10)
        body = server.last.body
        assert body["tools"] == [{"googleSearch": {}}] and body["generationConfig"]["temperature"] == 0.3
    finally:
        widget.close()
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match="--bogus"):
        ip.run_line_magic("gemini", "chat-ui x --bogus")
    refused = ip.run_line_magic("gemini", "chat-ui y -o var")
    try:
        assert refused.send("hello") is False
        assert "--out does not apply here" in refused.status.value
    finally:
        refused.close()


def test_kernel_widget_stop_closes_the_connection_within_a_second(kern, server):
    server.queue(Reply(chunks=["first part ", "never sent"], delay=10))
    kern.run("w = %gemini chat-ui stopping", check=True)
    kern.run("w.send('slow please')", check=True)
    for _ in range(200):  # bounded: the first chunk shows, then the server pauses 10 s
        if kern.run("print('first part' in w.messages[-1].html)", check=True).stream_text() == "True\n":
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the first chunk never showed")
    stopped = time.monotonic()
    ex = kern.run("w.stop(); print(w.busy)", check=True)
    assert ex.stream_text() == "False\n"  # free at once: the request has really ended
    deadline = time.monotonic() + 3
    while not server.disconnects and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.disconnects and server.disconnects[0] - stopped < 1.0
    server.queue(Reply(text="The next answer."))
    ex = kern.run("print(w.send('again')); w.wait(10); print(w.messages[-1].text, len(w.conversation))",
                  check=True)
    assert ex.stream_text() == "True\nThe next answer. 1\n"
    assert len([r for r in server.requests if r.action == "streamGenerateContent"]) == 2
    kern.run("w.close()", check=True)


# -- the settings panel for a newcomer: "model default", plain words, tooltips, width ---------


OPTIONAL_SETTINGS = [("temperature", 1.0), ("top_p", 0.95), ("max_tokens", 8192)]


def _panel_widgets(widget) -> list:
    """A widget and every widget under it."""
    found, stack = [], [widget]
    while stack:
        w = stack.pop()
        if any(w is seen for seen in found):
            continue
        found.append(w)
        stack.extend(getattr(w, "children", ()))
    return found


def _shows_model_default(row) -> bool:
    """Unset: the editor is disabled and hidden, a disabled box reading "model default" in its place."""
    return (row.value is None and not row.enabled.value and row.editor.disabled
            and row.editor.layout.display == "none" and row.default.layout.display is None
            and row.default.value == "model default" and row.default.disabled)


def _shows_editor(row, value) -> bool:
    return (row.enabled.value and not row.editor.disabled and row.editor.layout.display is None
            and row.default.layout.display == "none" and row.editor.value == value)


def test_settings_panel_unset_settings_read_model_default(make, magics):
    panel = make("settings")
    for name, _ in OPTIONAL_SETTINGS:
        row = getattr(panel, name)
        assert getattr(magics, name) is None
        assert _shows_model_default(row), name
        # No number shows: the only visible editor is the "model default" box.
        shown = [w for w in row.children if w.layout.display != "none"]
        assert shown == [row.label, row.enabled, row.default]


def test_settings_panel_ticking_enables_an_editor_with_a_value_and_sets_it(make, magics):
    panel = make("settings")
    for name, start in OPTIONAL_SETTINGS:
        row = getattr(panel, name)
        row.enabled.value = True
        assert _shows_editor(row, start), name
        assert getattr(magics, name) == start
    panel.temperature.editor.value = 0.7
    assert magics.temperature == 0.7
    panel.temperature.enabled.value = False  # back to the model's default
    assert magics.temperature is None and _shows_model_default(panel.temperature)
    panel.temperature.enabled.value = True  # ticked again: the last value
    assert magics.temperature == 0.7 and _shows_editor(panel.temperature, 0.7)


def test_settings_panel_follows_config_between_a_value_and_model_default(ip, make):
    panel = make("settings")
    ok(ip, "%config GeminiMagics.temperature = 0.3")
    assert _shows_editor(panel.temperature, 0.3)
    ok(ip, "%config GeminiMagics.max_tokens = 300")
    assert _shows_editor(panel.max_tokens, 300)
    ok(ip, "%config GeminiMagics.temperature = None")
    assert _shows_model_default(panel.temperature)
    ok(ip, "%config GeminiMagics.max_tokens = None")
    assert _shows_model_default(panel.max_tokens)
    assert repr(panel) == ("SettingsPanel(model='gemini-2.5-flash', temperature=None, top_p=None, "
                           "max_tokens=None, tools=())")


def test_settings_panel_header_says_what_it_is_for_in_plain_words(make):
    panel = make("settings")
    header = panel.header.value
    assert panel.children[0] is panel.header
    headline = "Settings for %%gemini cells and the chat: the model, and how it answers."
    assert headline in header
    # The technical detail is a small line after the headline, not the headline.
    assert header.index(headline) < header.index("GeminiMagics") and "%config" in header
    hint = header[header.rindex("<div"):]
    assert "font-size:0.85em" in hint and "GeminiMagics" in hint and "%config" in hint
    assert "GeminiMagics" not in header[:header.rindex("<div")]


def test_settings_panel_tools_box_says_what_selecting_does(ip, make, registry):
    panel = make("settings")
    assert panel.tool_select.options == ()
    hint = panel.tools_hint.value
    assert "No notebook functions yet" in hint and "define it in a cell" in hint and "↻" in hint
    assert panel.tool_select.disabled
    ok(ip, 'def shout(text: str) -> str:\n    """Upper-case a text."""\n    return text.upper()\n')
    panel.refresh()
    hint = panel.tools_hint.value
    assert panel.tool_select.options == ("shout",) and not panel.tool_select.disabled
    assert "Gemini may call the selected functions in every %%gemini cell and chat" in hint
    assert "--tools" in hint and "No notebook functions" not in hint


def test_settings_panel_is_as_wide_as_the_chat_and_its_labels_align(make):
    from gemini_magic.widgets.settings import LABEL_WIDTH, MAX_WIDTH

    chat = make("chat", "width")
    panel = make("settings")
    assert panel.layout.max_width == chat.layout.max_width == MAX_WIDTH
    assert panel.layout.width is None  # full width up to the max, as the chat
    rows = [w for w in panel.children if len(getattr(w, "children", ())) > 1]
    assert len(rows) == 6  # model, temperature, top-p, max tokens, system, default tools
    labels = [row.children[0] for row in rows]
    assert [label.value.rsplit(">", 2)[1].removesuffix("</div") for label in labels] == [
        "Model", "Temperature", "Top-p", "Max tokens", "System", "Default tools"]
    assert {(label.layout.width, label.layout.margin) for label in labels} == {(LABEL_WIDTH, "2px 8px 2px 2px")}
    assert all('text-align:right' in label.value for label in labels)


def test_settings_panel_every_control_has_a_tooltip(make):
    import ipywidgets

    panel = make("settings")
    controls = [w for w in _panel_widgets(panel)
                if isinstance(w, (ipywidgets.ValueWidget, ipywidgets.Button)) and not isinstance(w, ipywidgets.HTML)]
    kinds = {type(w).__name__ for w in controls}
    assert kinds == {"Dropdown", "Checkbox", "FloatSlider", "BoundedIntText", "Text", "Textarea", "SelectMultiple",
                     "Button"}
    for control in controls:
        assert control.tooltip and len(control.tooltip) > 20, control
        # ipywidgets 8 shows a control's tooltip only when it has no description (the labels are separate).
        assert getattr(control, "description", "") == "", control
    assert "Tick to choose the temperature yourself" in panel.temperature.enabled.tooltip
    assert "(one cell: -t)" in panel.temperature.editor.tooltip
    labels = [w for w in _panel_widgets(panel) if isinstance(w, ipywidgets.HTML) and w.layout.width == "120px"]
    assert len(labels) == 6 and all(' title="' in label.value and label.tooltip for label in labels)


# -- the chat widget: a scrolling transcript, the input pinned under it ------------------------


def test_the_transcript_scrolls_above_a_pinned_input(make, server):
    from gemini_magic.widgets.chat_view import TRANSCRIPT_HEIGHT
    from gemini_magic.widgets.messages import CSS

    chat = make("chat", "pinned")
    # The frame: the header row, the scroll box, then the attachments, the input and the status line.
    assert list(chat.children) == [chat.top, chat.scroller, chat.attached, chat.input_row, chat.meter, chat.status]
    layout = chat.scroller.layout
    assert TRANSCRIPT_HEIGHT == "min(60vh, 520px)" and layout.max_height == TRANSCRIPT_HEIGHT
    assert layout.overflow == "auto" and layout.display == "flex"
    # column-reverse makes the bottom the scroll origin: the newest message stays in view
    # while the reader is at the bottom, and a scrolled-up view is left alone.
    assert layout.flex_flow == "column-reverse"
    assert list(chat.scroller.children) == [chat.transcript]
    assert chat.transcript.layout.flex == "0 0 auto"  # the messages never shrink to fit: they scroll
    assert "gm-scroll" in chat.scroller._dom_classes and "gm-messages" in chat.transcript._dom_classes
    assert ".gm-chat .gm-scroll{" in CSS and ".gm-chat .gm-messages{flex:0 0 auto}" in CSS
    for i in range(12):
        chat.send(f"message {i}")
        chat.wait(10)
    # Messages go into the scroll box, in order: the pinned input is not among them.
    assert len(chat.transcript.children) == 24 and chat.input_row not in chat.transcript.children
    assert chat.transcript.children[-1] is chat.messages[-1].widget


def test_bubble_css_keeps_code_blocks_and_their_copy_button_in_place(make, server):
    from gemini_magic.widgets.messages import CSS

    chat = make("chat", "code")
    server.queue(Reply(text="Here:\n\n```python\nprint('hi')\n```\n"))
    chat.send("code please")
    chat.wait(10)
    live = chat.messages[-1].html
    chat.refresh()  # rebuilt from the turn, as after a cell or in a new kernel
    rebuilt = chat.messages[-1].html
    for markup in (live, rebuilt):
        assert '<div class="gemini-code" style="position:relative">' in markup
        assert 'class="gemini-copy"' in markup and "<span style=" in markup  # highlighted by pygments
    # The Copy button sits at the top right of its wrapper, over the bubble's own pre styling.
    assert ".gm-chat .gm-bubble .gemini-code{position:relative}" in CSS
    assert ".gm-chat .gm-bubble .gemini-code pre{padding-right:4em}" in CSS


def test_a_rebuilt_turn_shows_images_and_code_gemini_ran_as_a_live_one(make, server):
    import base64

    chat = make("chat", "media")
    image = base64.b64encode(png_bytes()).decode()
    server.queue(Reply(parts=[{"text": "A red square: "}, {"inlineData": {"mimeType": "image/png", "data": image}},
                              {"executableCode": {"language": "PYTHON", "code": "print(1 + 1)"}}]))
    chat.send("draw")
    chat.wait(10)
    live = chat.messages[-1].html
    chat.refresh()
    rebuilt = chat.messages[-1].html
    for markup in (live, rebuilt):
        assert f'<img src="data:image/png;base64,{image}"' in markup and "zoom-in" in markup
        assert "Code Gemini ran" in markup and 'class="gemini-copy"' in markup


# -- the chat widget: status inside the bubble ------------------------------------------------


def _values(widget) -> list[str]:
    seen = [widget.value]
    widget.observe(lambda change: seen.append(change.new), "value")
    return seen


def test_the_bubble_says_retrying_not_writing_while_a_retry_waits(make, server):
    chat = make("chat", "retrying")
    server.queue(Error.server(503, retry_delay="1s"), Reply(text="Got through."))
    statuses = _values(chat.status)
    chat.send("hello")
    bubble = _values(chat.messages[-1].widget)
    chat.wait(15)
    retrying = [v for v in bubble if "Retrying in 1 s (attempt 2 of 4)." in v]
    assert retrying, bubble
    for value in retrying:
        # The status is the bubble's text: nothing claims Gemini is writing.
        assert "Gemini is writing" not in value
        assert '<div class="gm-bubble gm-model"><div class="gm-bubble-status">' in value
        assert "overloaded. Please try again later. Retrying" in value  # sentences, joined as sentences
    # ...and the status line under the input says it too, then goes back to "answering".
    assert any("Retrying in 1 s" in v for v in statuses)
    assert "Got through." in chat.messages[-1].html and "Retrying" not in chat.messages[-1].html
    assert chat.status.value == ""


def test_the_bubble_says_waiting_not_writing_during_a_rate_limit_wait(make, magics, server):
    magics.rate_limits = {"gemini-2.5-flash": {"rpm": 1}}
    magics.engine  # noqa: B018
    magics.connection.limiter.window = 2.0
    chat = make("chat", "waiting")
    chat.send("first")
    chat.wait(10)
    statuses = _values(chat.status)
    chat.send("second")
    bubble = _values(chat.messages[-1].widget)
    chat.wait(10)
    waiting = [v for v in bubble if "Waiting" in v]
    assert waiting, bubble
    for value in waiting:
        assert "Gemini is writing" not in value and "gm-typing" not in value
        assert re.search(r"Waiting \d s: rate limit: 1 request a minute on gemini-2\.5-flash\.<", value)
    assert any("Waiting" in v for v in statuses)
    assert "Echo: second" in chat.messages[-1].html and "Waiting" not in chat.messages[-1].html


def test_lines_the_widget_writes_read_as_sentences(make, server, tmp_path, monkeypatch):
    chat = make("chat", "sentences")
    server.queue(Error(400, "INVALID_ARGUMENT", "Fake INTERNAL"))
    chat.send("fail")
    chat.wait(10)
    assert "Fake INTERNAL." in chat.messages[-1].html
    server.queue(Reply(chunks=[f"w{i} " for i in range(20)], delay=0.2))
    chat.send("stop me")
    wait_for(lambda: "w1" in chat.messages[-1].html, what="the first chunks")
    chat.stop()
    assert "Stopped: the partial answer stays here, but is not part of the conversation." in chat.messages[-1].html
    monkeypatch.chdir(tmp_path)
    chat.export_button.click()
    assert re.search(r"Exported to \S+ and \S+\.md\.</div>", chat.status.value)
    chat.send_button.click()  # nothing typed: nothing said
    chat._say("A note without a full stop")
    assert "A note without a full stop.</div>" in chat.status.value


# -- the chat widget: Retry ---------------------------------------------------------------------


def _retry_button(message):
    row = message.actions
    return row.children[0] if row is not None else None


def test_a_failed_answer_has_a_retry_button_that_sends_the_same_message_again(make, server):
    chat = make("chat", "retry-button")
    chat.send("fine")
    chat.wait(10)
    assert all(m.actions is None for m in chat.messages)  # an answer that came has none
    server.queue(Error(400, "INVALID_ARGUMENT", "Bad request"), Reply(text="Second time lucky."))
    image = png_bytes()
    chat.upload.value = (upload("chart.png", image, "image/png"),)
    chat.send("What is in this chart?")
    chat.wait(10)
    failed = chat.messages[-1]
    button = _retry_button(failed)
    assert button is not None and button.description == "Retry" and button.tooltip
    # Shown under the failed bubble, in the transcript.
    children = list(chat.transcript.children)
    assert children[children.index(failed.widget) + 1] is failed.actions
    assert len(gemini_magic.conversation("retry-button")) == 1
    button.click()
    assert chat.wait(10)
    asked = [r for r in generate_requests(server) if r.last_user_text() == "What is in this chart?"]
    assert len(asked) == 2 and [m for m, _ in asked[1].media()] == ["image/png"] and asked[1].media()[0][1] == image
    # One question and one answer in the view for it, and no button left.
    assert [(m.role, m.text) for m in chat.messages] == [
        ("user", "fine"), ("model", "Echo: fine"), ("user", "What is in this chart?"), ("model", "Second time lucky.")]
    assert all(m.actions is None for m in chat.messages) and chat._failed is None
    assert len(chat.transcript.children) == 4 and failed.widget not in chat.transcript.children
    assert "chart.png" in chat.messages[-2].html
    assert len(gemini_magic.conversation("retry-button")) == 2
    assert chat.retry() is False  # nothing left to retry


def test_a_stopped_answer_can_be_retried_from_code(make, server):
    chat = make("chat", "retry-stopped")
    server.queue(Reply(chunks=[f"s{i} " for i in range(30)], delay=0.2), Reply(text="Whole answer."))
    chat.send("go")
    wait_for(lambda: "s1" in chat.messages[-1].html, what="the first chunks")
    chat.stop()
    assert _retry_button(chat.messages[-1]) is not None
    assert chat.retry()
    chat.wait(10)
    assert [(m.role, m.text) for m in chat.messages] == [("user", "go"), ("model", "Whole answer.")]
    assert len(generate_requests(server)) == 2


def test_only_the_latest_failure_offers_retry_and_new_chat_clears_it(make, server):
    chat = make("chat", "retry-latest")
    server.queue(Error(400, "INVALID_ARGUMENT", "First failure"))
    chat.send("one")
    chat.wait(10)
    first = chat.messages[-1]
    assert _retry_button(first) is not None
    chat.send("two")  # a new message: the earlier failure stays, without its button
    chat.wait(10)
    assert first.actions is None and first in chat.messages and chat._failed is None
    server.queue(Error(400, "INVALID_ARGUMENT", "Second failure"))
    chat.send("three")
    chat.wait(10)
    assert chat._failed is not None
    chat.new_chat()
    assert chat._failed is None and chat.messages == [] and chat.retry() is False


# -- the chat widget: keys ----------------------------------------------------------------------


def test_widget_turn_keys_are_unique_and_never_a_counter(ip, make, server):
    from gemini_magic.client import types

    conversation = gemini_magic.conversation("keys")
    Content = types().Content
    for key in ("widget:1", "widget:2"):  # as another kernel numbered them, restored from its notebook
        conversation.commit(key, Content(role="user", parts=[{"text": key}]),
                            Content(role="model", parts=[{"text": "a"}]))
    conversation.turns[0].restored = conversation.turns[1].restored = True
    chat = make("chat", "keys")
    for text in ("a", "b", "c"):
        chat.send(text)
        chat.wait(10)
    keys = [t.key for t in conversation.turns]
    assert len(keys) == len(set(keys)) == 5
    assert all(re.fullmatch(r"widget:[0-9a-f]{12}", k) for k in keys[2:])


# -- the chat widget: the static transcript saved with the notebook --------------------------------


@pytest.fixture
def published(ip, monkeypatch):
    """Every display message the shell publishes: dicts with data, metadata, transient, update."""
    seen = []
    original = ip.display_pub.publish

    def publish(data, metadata=None, source=None, *, transient=None, update=False, **kwargs):
        seen.append({"data": data, "metadata": metadata or {}, "transient": transient or {}, "update": update})
        return original(data, metadata=metadata, transient=transient, update=update, **kwargs)

    monkeypatch.setattr(ip.display_pub, "publish", publish)
    return seen


def _transcripts(published) -> list[dict]:
    return [m for m in published if "gemini_magic" in m["metadata"]
            and "transcript" in m["metadata"]["gemini_magic"]]


def test_displaying_the_widget_adds_a_static_transcript_kept_current(ip, make, server, published):
    from IPython.display import display

    from gemini_magic.widgets.messages import STATIC_STYLE

    chat = make("chat", "saved")
    display(chat)
    widget, transcript = published
    assert widget["data"]["text/plain"] == "ChatWidget(conversation='saved', model='gemini-2.5-flash')"
    assert widget["data"]["application/vnd.jupyter.widget-view+json"]["model_id"] == chat.model_id
    display_id = transcript["transient"]["display_id"]
    assert display_id and not transcript["update"]
    assert transcript["metadata"] == {"gemini_magic": {"transcript": []}}
    assert transcript["data"]["text/plain"] == "Conversation 'saved', 0 turns\n\nConversation 'saved' is empty."
    assert transcript["data"]["text/html"].startswith(STATIC_STYLE)
    assert 'class="gm-transcript-static"' in transcript["data"]["text/html"]

    # An answer kept: the transcript is updated (from the request thread), records and all.
    server.queue(Reply(text="Kyoto in autumn."))
    chat.send("Where should I go?")
    chat.wait(10)
    update = _transcripts(published)[-1]
    assert update["update"] and update["transient"]["display_id"] == display_id
    records = update["metadata"]["gemini_magic"]["transcript"]
    assert records == [turn_record("saved", t) for t in gemini_magic.conversation("saved").turns]
    assert len(records) == 1 and "Kyoto in autumn." in update["data"]["text/plain"]
    assert "Kyoto in autumn." in update["data"]["text/html"] and "Where should I go?" in update["data"]["text/html"]

    # A cell that continues the conversation: updated after the cell.
    ok(ip, "%%gemini -c saved\nAnd in spring?")
    assert len(_transcripts(published)[-1]["metadata"]["gemini_magic"]["transcript"]) == 2
    # A cell that leaves it alone: no update.
    count = len(published)
    ok(ip, "1 + 1")
    assert len(_transcripts(published[count:])) == 0
    # A failed answer changes no turn: no update either.
    server.queue(Error(400, "INVALID_ARGUMENT", "Nope"))
    chat.send("fail")
    chat.wait(10)
    assert len(_transcripts(published[count:])) == 0
    # New chat: empty again.
    chat.new_chat()
    last = _transcripts(published)[-1]
    assert last["update"] and last["metadata"] == {"gemini_magic": {"transcript": []}}
    assert last["data"] == transcript["data"]  # the same as when displayed empty


def test_the_cell_ending_in_chat_ui_shows_the_widget_and_its_transcript(ip, server, published):
    ok(ip, "%%gemini -c shown\nHello")
    result = ok(ip, "%gemini chat-ui shown")
    try:
        data = [m["data"] for m in published if "application/vnd.jupyter.widget-view+json" in m["data"]]
        assert len(data) == 1 and data[0]["text/plain"].startswith("ChatWidget(conversation='shown'")
        transcript = _transcripts(published)
        assert len(transcript) == 1
        # The first display is the conversation when displayed: what nbval compares on each run.
        assert transcript[0]["data"]["text/plain"] == (
            "Conversation 'shown', 1 turn\n\n[1] You:\nHello\n[1] Gemini (gemini-2.5-flash):\nEcho: Hello")
        assert len(transcript[0]["metadata"]["gemini_magic"]["transcript"]) == 1
        # Displayed again, at the same state: the same output (nothing random in it).
        ip.run_cell("_")
        again = _transcripts(published)
        assert len(again) == 2 and again[1]["data"] == again[0]["data"]
        assert again[1]["transient"]["display_id"] != again[0]["transient"]["display_id"]
    finally:
        result.result.close()


def test_a_closed_widget_displays_only_its_repr(make, published):
    from IPython.display import display

    chat = make("chat", "closed")
    chat.close()
    display(chat)
    closed = "ChatWidget(conversation='closed', model='gemini-2.5-flash')"
    assert [m["data"] for m in published] == [{"text/plain": closed}]


def test_the_saved_transcript_continues_the_conversation_in_a_new_kernel(ip, make, server, published, env,
                                                                        tmp_path):
    import nbformat
    from IPython.display import display

    from gemini_magic.notebook_file import saved_turns

    chat = make("chat", "kept")
    display(chat)
    server.queue(Reply(text="Ramen in Sapporo."), Reply(text="Soba in Nagano."))
    for text in ("Where for ramen?", "And soba?"):
        chat.send(text)
        chat.wait(10)
    output = _transcripts(published)[-1]
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("%gemini chat-ui kept")
    cell.outputs = [nbformat.v4.new_output("display_data", output["data"], metadata=output["metadata"])]
    nb.cells.append(cell)
    path = tmp_path / "kept.ipynb"
    nbformat.write(nb, path)
    notebook = json.loads(path.read_text())

    expected = gemini_magic.conversation("kept").turns
    saved = saved_turns(notebook, "kept", cell_ids=True)
    assert not saved.broken
    assert [(t.key, t.text("user"), t.text("model")) for t in saved.turns] == [
        (t.key, t.text("user"), t.text("model")) for t in expected]
    assert all(t.restored for t in saved.turns)

    # A new kernel running that notebook: the widget shows the saved turns, and goes on from them.
    chat.close()
    ip.run_line_magic("unload_ext", "gemini_magic")
    ip.run_line_magic("load_ext", "gemini_magic")
    env.setenv("JPY_SESSION_NAME", str(path))
    import gemini_magic.widgets as gw

    again = gw.chat_widget(gemini_magic._magics, "kept")
    try:
        assert [m.text for m in again.messages] == ["Where for ramen?", "Ramen in Sapporo.", "And soba?",
                                                     "Soba in Nagano."]
        again.send("And udon?")
        again.wait(10)
        assert [t for _, t in texts(server.last)] == ["Where for ramen?", "Ramen in Sapporo.", "And soba?",
                                                      "Soba in Nagano.", "And udon?"]
    finally:
        again.close()


def test_the_saved_transcript_of_a_hostile_answer_is_inert(ip, make, server, published):
    from IPython.display import display

    from gemini_magic.widgets.messages import STATIC_STYLE
    from tests.test_markdown_safety import assert_inert

    chat = make("chat", "hostile-saved")
    display(chat)
    server.queue(Reply(text=f"Look: {HOSTILE} and {SCRIPT} [x](javascript:alert(3)) done."))
    chat.send(f"my own {HOSTILE} {SCRIPT}")
    chat.wait(10)
    markup = _transcripts(published)[-1]["data"]["text/html"]
    # Our one style block (the rule that hides it beside the live widget), then nothing active.
    assert markup.startswith(STATIC_STYLE) and markup.count("<style") == 1
    assert STATIC_STYLE.startswith(
        "<style>.jp-OutputArea:has(.gm-chat) .jp-OutputArea-child:has(.gm-transcript-static),"
        ".jp-OutputArea:has(.gm-chat) .gm-transcript-static,"
        ".output:has(.gm-chat) .output_area:has(.gm-transcript-static){display:none}")
    assert "url(" not in STATIC_STYLE and "@import" not in STATIC_STYLE
    rest = markup[len(STATIC_STYLE):]
    assert_inert(rest)
    assert "<img src=x" not in rest and "<script>" not in rest
    assert "&lt;img src=x onerror=alert(1)&gt;" in rest and "&lt;script&gt;alert(2)&lt;/script&gt;" in rest
    assert HOSTILE in _transcripts(published)[-1]["data"]["text/plain"]  # the plain text is text


def test_kernel_chat_ui_displays_the_widget_and_updates_its_transcript(kern, server):
    server.queue(Reply(chunks=["Pinned ", "and saved."], delay=0.1))
    ex = kern.run("w = %gemini chat-ui kernel-saved\nw", check=True)
    shown = ex.of_type("display_data")
    assert len(shown) == 2 and not ex.of_type("execute_result")
    assert "application/vnd.jupyter.widget-view+json" in shown[0]["content"]["data"]
    display_id = shown[1]["content"]["transient"]["display_id"]
    assert shown[1]["content"]["metadata"] == {"gemini_magic": {"transcript": []}}
    kern.run("w.send('save me')", check=True)
    deadline = time.monotonic() + 20
    records = None
    while records is None:  # the update comes from the request thread, after the cell
        assert time.monotonic() < deadline, "no transcript update"
        try:
            msg = kern.client.get_iopub_msg(timeout=1)
        except queue.Empty:
            continue
        if msg["msg_type"] == "update_display_data" and msg["content"]["transient"]["display_id"] == display_id:
            records = msg["content"]["metadata"]["gemini_magic"]["transcript"]
            data = msg["content"]["data"]
    assert [r["conversation"] for r in records] == ["kernel-saved"]
    assert "Pinned and saved." in data["text/plain"] and "Pinned and saved." in data["text/html"]
    kern.run("w.close()", check=True)


def test_the_saved_transcript_never_holds_the_key(make, server, published):
    from IPython.display import display

    from tests.conftest import TEST_KEY

    chat = make("chat", "keyless")
    display(chat)
    chat.send(f"my key is {TEST_KEY}")
    chat.wait(10)
    saved = _transcripts(published)[-1]
    assert TEST_KEY not in json.dumps(saved["data"]) and TEST_KEY not in json.dumps(saved["metadata"])
    assert "my key is &lt;redacted&gt;" in saved["data"]["text/html"]
    assert "my key is <redacted>" in saved["data"]["text/plain"]

"""Conversations: multi-turn `%%gemini -c NAME` cells, re-runs that replace their turn,
trimming, history/chats/reset/save/load commands, and the Python API.

Cells run through `ip.run_cell` so IPython's pre_run_cell/post_run_cell events fire
as in a notebook; `cell_id=` stands in for a frontend's cell id. Every check reads
the requests the fake server received.
"""

from __future__ import annotations

import json
import threading

import pytest

import gemini_magic
from gemini_magic.magics import CellFailed
from tests.conftest import TEST_KEY
from tests.fake_gemini import Error, Reply

GENERATE = ("generateContent", "streamGenerateContent")
SIGNATURE = "c2lnbmF0dXJl"  # base64 of b"signature"


# -- helpers ------------------------------------------------------------------------


def run(ip, source: str, cell_id: str | None = None):
    """Run a cell as a notebook would (events fire); return IPython's ExecutionResult."""
    if cell_id is None:
        return ip.run_cell(source)
    return ip.run_cell(source, cell_id=cell_id)


def ok(ip, source: str, cell_id: str | None = None):
    result = run(ip, source, cell_id)
    assert result.error_in_exec is None, result.error_in_exec
    assert result.error_before_exec is None, result.error_before_exec
    return result


def failed(ip, source: str, cell_id: str | None = None) -> BaseException:
    result = run(ip, source, cell_id)
    assert result.error_in_exec is not None, f"cell did not fail: {source!r}"
    return result.error_in_exec


def generate_requests(server) -> list:
    return [r for r in server.requests if r.action in GENERATE]


def _get(obj: dict, camel: str, snake: str):
    return obj.get(camel, obj.get(snake))


def contents(request) -> list[dict]:
    return request.body["contents"]


def turns(request) -> list[tuple[str, str]]:
    """(role, text) of every content a request sent, in order."""
    out = []
    for content in contents(request):
        text = "".join(p.get("text", "") for p in content.get("parts", []) if not p.get("thought"))
        out.append((content.get("role"), text))
    return out


def signatures(content: dict) -> list:
    return [_get(p, "thoughtSignature", "thought_signature") for p in content.get("parts", [])]


def conversation(name: str):
    return gemini_magic.conversation(name)


def chat_texts(name: str) -> list[tuple[str, str]]:
    return [(m["role"], m["text"]) for m in conversation(name).messages()]


# -- multi-turn requests ------------------------------------------------------------


def test_second_turn_sends_user_model_user_in_order(ip, server):
    server.queue(Reply(text="Once upon a time there was a fox."), Reply(text="The fox found a key."))
    ok(ip, "%%gemini -c story\nStart a story about a fox.", cell_id="c1")
    ok(ip, "%%gemini -c story\nContinue it.", cell_id="c2")

    first, second = generate_requests(server)
    assert turns(first) == [("user", "Start a story about a fox.")]
    assert turns(second) == [
        ("user", "Start a story about a fox."),
        ("model", "Once upon a time there was a fox."),
        ("user", "Continue it."),
    ]
    assert second.user_texts() == ["Start a story about a fox.", "Continue it."]
    assert chat_texts("story") == [
        ("user", "Start a story about a fox."), ("model", "Once upon a time there was a fox."),
        ("user", "Continue it."), ("model", "The fox found a key."),
    ]


def test_long_option_chat_works_like_short(ip, server):
    server.queue("A1", "A2")
    ok(ip, "%%gemini --chat long\nQ1", cell_id="l1")
    ok(ip, "%%gemini --chat long\nQ2", cell_id="l2")
    assert turns(server.last) == [("user", "Q1"), ("model", "A1"), ("user", "Q2")]


def test_plain_cells_are_single_turn(ip, server):
    server.queue("A1", "A2")
    ok(ip, "%%gemini\nFirst question", cell_id="p1")
    ok(ip, "%%gemini\nSecond question", cell_id="p2")
    first, second = generate_requests(server)
    assert turns(first) == [("user", "First question")]
    assert turns(second) == [("user", "Second question")]
    assert gemini_magic.conversations() == {}


def test_default_chat_joins_plain_cells_and_off_returns_to_single_turn(ip, server):
    server.queue("A1", "A2", "A3", "A4")
    ok(ip, "%gemini chat tutor")
    ok(ip, "%%gemini\nQ1", cell_id="d1")
    ok(ip, "%%gemini\nQ2", cell_id="d2")
    assert turns(server.last) == [("user", "Q1"), ("model", "A1"), ("user", "Q2")]
    assert len(conversation("tutor").turns) == 2

    ok(ip, "%gemini chat off")
    ok(ip, "%%gemini\nQ3", cell_id="d3")
    assert turns(server.last) == [("user", "Q3")]
    assert len(conversation("tutor").turns) == 2

    # -c still names a chat explicitly with no default set.
    ok(ip, "%%gemini -c tutor\nQ4", cell_id="d4")
    assert [t for t in turns(server.last)] == [
        ("user", "Q1"), ("model", "A1"), ("user", "Q2"), ("model", "A2"), ("user", "Q4"),
    ]


def test_no_chat_overrides_the_default_chat(ip, server):
    server.queue("A1", "A2", "A3")
    ok(ip, "%gemini chat tutor")
    ok(ip, "%%gemini\nQ1", cell_id="n1")
    ok(ip, "%%gemini --no-chat\nAside", cell_id="n2")
    assert turns(server.last) == [("user", "Aside")]
    assert len(conversation("tutor").turns) == 1
    ok(ip, "%%gemini\nQ2", cell_id="n3")
    assert turns(server.last) == [("user", "Q1"), ("model", "A1"), ("user", "Q2")]


def test_two_named_chats_stay_separate(ip, server):
    server.queue("cat 1", "dog 1", "cat 2", "dog 2")
    ok(ip, "%%gemini -c cats\nTell me about cats", cell_id="s1")
    ok(ip, "%%gemini -c dogs\nTell me about dogs", cell_id="s2")
    ok(ip, "%%gemini -c cats\nMore cats", cell_id="s3")
    assert turns(server.last) == [("user", "Tell me about cats"), ("model", "cat 1"), ("user", "More cats")]
    ok(ip, "%%gemini -c dogs\nMore dogs", cell_id="s4")
    assert turns(server.last) == [("user", "Tell me about dogs"), ("model", "dog 1"), ("user", "More dogs")]
    assert chat_texts("cats") == [("user", "Tell me about cats"), ("model", "cat 1"),
                                  ("user", "More cats"), ("model", "cat 2")]
    assert chat_texts("dogs") == [("user", "Tell me about dogs"), ("model", "dog 1"),
                                  ("user", "More dogs"), ("model", "dog 2")]


# -- re-running cells -----------------------------------------------------------------


def test_rerun_of_last_cell_replaces_its_turn(ip, server, capsys):
    server.queue("A1", "A2 first", "A2 again")
    ok(ip, "%%gemini -c r\nQ1", cell_id="r1")
    ok(ip, "%%gemini -c r\nQ2", cell_id="r2")
    capsys.readouterr()
    ok(ip, "%%gemini -c r\nQ2", cell_id="r2")
    # The re-run request carries only the turns before that cell.
    assert turns(server.last) == [("user", "Q1"), ("model", "A1"), ("user", "Q2")]
    # And the history has the question once, with the newest answer.
    assert chat_texts("r") == [("user", "Q1"), ("model", "A1"), ("user", "Q2"), ("model", "A2 again")]
    assert "dropped" not in capsys.readouterr().err


def test_rerun_of_earlier_cell_drops_later_turns_with_notice(ip, server, capsys):
    server.queue("A1", "A2", "A3", "A1 again")
    ok(ip, "%%gemini -c r\nQ1", cell_id="e1")
    ok(ip, "%%gemini -c r\nQ2", cell_id="e2")
    ok(ip, "%%gemini -c r\nQ3", cell_id="e3")
    capsys.readouterr()
    ok(ip, "%%gemini -c r\nQ1", cell_id="e1")
    assert turns(server.last) == [("user", "Q1")]
    assert chat_texts("r") == [("user", "Q1"), ("model", "A1 again")]
    err = capsys.readouterr().err
    notices = [line for line in err.splitlines() if "dropped" in line]
    assert len(notices) == 1, err
    assert "2 turn(s)" in notices[0] and "'r'" in notices[0]


def test_rerun_of_middle_cell_keeps_earlier_turns(ip, server, capsys):
    server.queue("A1", "A2", "A3", "A2 again")
    ok(ip, "%%gemini -c r\nQ1", cell_id="m1")
    ok(ip, "%%gemini -c r\nQ2", cell_id="m2")
    ok(ip, "%%gemini -c r\nQ3", cell_id="m3")
    capsys.readouterr()
    ok(ip, "%%gemini -c r\nQ2", cell_id="m2")
    assert turns(server.last) == [("user", "Q1"), ("model", "A1"), ("user", "Q2")]
    assert chat_texts("r") == [("user", "Q1"), ("model", "A1"), ("user", "Q2"), ("model", "A2 again")]
    notices = [line for line in capsys.readouterr().err.splitlines() if "dropped" in line]
    assert len(notices) == 1 and "1 turn(s)" in notices[0]


def test_same_cell_id_with_edited_text_still_replaces_the_turn(ip, server):
    server.queue("A1", "A2", "A2 edited")
    ok(ip, "%%gemini -c r\nQ1", cell_id="x1")
    ok(ip, "%%gemini -c r\nQ2", cell_id="x2")
    ok(ip, "%%gemini -c r\nQ2, but better worded", cell_id="x2")
    assert turns(server.last) == [("user", "Q1"), ("model", "A1"), ("user", "Q2, but better worded")]
    assert chat_texts("r") == [("user", "Q1"), ("model", "A1"),
                               ("user", "Q2, but better worded"), ("model", "A2 edited")]


def test_without_cell_ids_an_unchanged_rerun_is_recognized_by_source(ip, server):
    server.queue("A1", "A2", "A2 again", "A3")
    ok(ip, "%%gemini -c src\nQ1")
    ok(ip, "%%gemini -c src\nQ2")
    ok(ip, "%%gemini -c src\nQ2")
    assert turns(server.last) == [("user", "Q1"), ("model", "A1"), ("user", "Q2")]
    assert chat_texts("src") == [("user", "Q1"), ("model", "A1"), ("user", "Q2"), ("model", "A2 again")]
    # A different source is a new cell: a new turn.
    ok(ip, "%%gemini -c src\nQ3")
    assert turns(server.last) == [("user", "Q1"), ("model", "A1"), ("user", "Q2"),
                                  ("model", "A2 again"), ("user", "Q3")]
    assert len(conversation("src").turns) == 3


# -- the model's content, as returned --------------------------------------------------


def test_thought_signature_is_sent_back_with_the_next_turn(ip, server):
    server.queue(Reply(parts=[{"text": "Signed answer", "thoughtSignature": SIGNATURE}]), "A2")
    ok(ip, "%%gemini -c sig\nQ1", cell_id="t1")
    ok(ip, "%%gemini -c sig\nQ2", cell_id="t2")
    sent = contents(server.last)
    assert [c["role"] for c in sent] == ["user", "model", "user"]
    model = sent[1]
    assert [p.get("text") for p in model["parts"]] == ["Signed answer"]
    assert signatures(model) == [SIGNATURE]


def test_thought_signature_on_a_later_chunk_is_kept_on_its_part(ip, server):
    server.queue(Reply(parts=[{"text": "Hello "}, {"text": "world", "thoughtSignature": SIGNATURE}]), "A2")
    ok(ip, "%%gemini -c sig2\nQ1", cell_id="t3")
    ok(ip, "%%gemini -c sig2\nQ2", cell_id="t4")
    model = contents(server.last)[1]
    assert model["role"] == "model"
    assert "".join(p.get("text", "") for p in model["parts"]) == "Hello world"
    assert SIGNATURE in signatures(model)
    signed = [p for p in model["parts"] if _get(p, "thoughtSignature", "thought_signature")]
    assert [p["text"] for p in signed] == ["world"]


def test_streamed_chunks_become_one_model_content(ip, server):
    server.queue(Reply(chunks=["The ", "quick ", "brown ", "fox"]), "A2")
    ok(ip, "%%gemini -c stream\nQ1", cell_id="k1")
    ok(ip, "%%gemini -c stream\nQ2", cell_id="k2")
    sent = contents(server.last)
    # Not one content per chunk (as the SDK's own chats keep them): one model turn.
    assert [c["role"] for c in sent] == ["user", "model", "user"]
    assert sent[1]["parts"] == [{"text": "The quick brown fox"}]
    assert len(conversation("stream").turns[0].model.parts) == 1


def test_non_streamed_answer_is_kept_too(ip, server):
    server.queue(Reply(text="Whole answer here"), "A2")
    ok(ip, "%%gemini -c whole --no-stream\nQ1", cell_id="w1")
    ok(ip, "%%gemini -c whole\nQ2", cell_id="w2")
    assert turns(server.last) == [("user", "Q1"), ("model", "Whole answer here"), ("user", "Q2")]


# -- failed and interrupted turns -----------------------------------------------------


@pytest.mark.parametrize("error", [Error.server, Error.permission], ids=["server", "permission"])
def test_failed_turn_leaves_history_unchanged(ip, server, error):
    ip.run_line_magic("config", "GeminiMagics.retry_attempts = 1")
    server.queue("A1", error(), "A2")
    ok(ip, "%%gemini -c f\nQ1", cell_id="f1")
    exc = failed(ip, "%%gemini -c f\nQ2", cell_id="f2")
    assert isinstance(exc, CellFailed)
    assert chat_texts("f") == [("user", "Q1"), ("model", "A1")]
    # The next turn builds on the history as it was.
    ok(ip, "%%gemini -c f\nQ3", cell_id="f3")
    assert turns(server.last) == [("user", "Q1"), ("model", "A1"), ("user", "Q3")]
    assert len(conversation("f").turns) == 2


def test_failed_rerun_keeps_the_earlier_answer_and_later_turns(ip, server):
    server.queue("A1", "A2", Error.permission())
    ok(ip, "%%gemini -c f2\nQ1", cell_id="g1")
    ok(ip, "%%gemini -c f2\nQ2", cell_id="g2")
    assert isinstance(failed(ip, "%%gemini -c f2\nQ1", cell_id="g1"), CellFailed)
    assert chat_texts("f2") == [("user", "Q1"), ("model", "A1"), ("user", "Q2"), ("model", "A2")]


def test_interrupted_turn_leaves_history_unchanged(kern, server):
    def count(name: str) -> int:
        ex = kern.run(f"import gemini_magic; print(len(gemini_magic.conversation({name!r}).turns))", check=True)
        return int(ex.stream_text().strip())

    server.queue("First answer")
    kern.run("%%gemini -c x\nFirst question", check=True)
    assert count("x") == 1

    server.queue(Reply(chunks=[f"part{i} " for i in range(40)], delay=0.25))
    interrupted = threading.Event()

    def on_message(msg):
        data = msg["content"].get("data", {})
        if msg["msg_type"] == "update_display_data" and "part1" in data.get("text/plain", ""):
            if not interrupted.is_set():
                interrupted.set()
                kern.interrupt()

    ex = kern.run("%%gemini -c x\nA long answer, please", timeout=30, on_message=on_message)
    assert interrupted.is_set()
    assert ex.status == "error" and "Interrupted" in "\n".join(ex.error["traceback"])
    assert count("x") == 1

    server.queue("Third answer")
    kern.run("%%gemini -c x\nThird question", check=True)
    assert turns(server.last) == [("user", "First question"), ("model", "First answer"),
                                  ("user", "Third question")]
    assert count("x") == 2


# -- trimming -------------------------------------------------------------------------


def test_token_budget_trims_oldest_turns_with_a_notice(ip, server, capsys):
    ip.run_line_magic("config", "GeminiMagics.chat_token_budget = 40")
    long_q = ["question one " * 8, "question two " * 8, "question three " * 8]
    long_a = ["answer one " * 8, "answer two " * 8, "answer three " * 8]
    server.queue(*long_a)
    ok(ip, f"%%gemini -c trim\n{long_q[0]}", cell_id="b1")
    ok(ip, f"%%gemini -c trim\n{long_q[1]}", cell_id="b2")
    # The only earlier turn is the latest one: it is sent, over budget or not.
    assert turns(server.last) == [("user", long_q[0].strip()), ("model", long_a[0]), ("user", long_q[1].strip())]
    capsys.readouterr()

    ok(ip, f"%%gemini -c trim\n{long_q[2]}", cell_id="b3")
    sent = turns(server.last)
    assert sent == [("user", long_q[1].strip()), ("model", long_a[1]), ("user", long_q[2].strip())]
    err = capsys.readouterr().err
    notices = [line for line in err.splitlines() if "no longer sent" in line]
    assert len(notices) == 1, err
    assert "1 oldest turn(s)" in notices[0] and "chat_token_budget" in notices[0]
    # Trimmed turns stay in the record, marked.
    chat = conversation("trim")
    assert len(chat.turns) == 3
    assert [t.trimmed for t in chat.turns] == [True, False, False]


def test_generous_budget_sends_everything_without_notice(ip, server, capsys):
    server.queue("A1", "A2", "A3")
    for n in (1, 2, 3):
        ok(ip, f"%%gemini -c big\nQ{n}", cell_id=f"big{n}")
    assert turns(server.last) == [("user", "Q1"), ("model", "A1"), ("user", "Q2"), ("model", "A2"),
                                  ("user", "Q3")]
    assert "no longer sent" not in capsys.readouterr().err


# -- %gemini history / chats / reset --------------------------------------------------


def test_history_shows_the_turns(ip, server, capsys):
    server.queue("Paris is the capital.", "About 2.1 million people.")
    ok(ip, "%%gemini -c geo\nCapital of France?", cell_id="h1")
    ok(ip, "%%gemini -c geo\nHow many live there?", cell_id="h2")
    capsys.readouterr()
    ok(ip, "%gemini history geo")
    out = capsys.readouterr().out
    assert "Conversation 'geo', 2 turns" in out
    order = [out.index(s) for s in ("Capital of France?", "Paris is the capital.",
                                    "How many live there?", "About 2.1 million people.")]
    assert order == sorted(order)
    assert "gemini-2.5-flash" in out


def test_history_without_name_uses_the_default_chat(ip, server, capsys):
    server.queue("Hi there")
    ok(ip, "%gemini chat greet")
    ok(ip, "%%gemini\nHello", cell_id="hd1")
    capsys.readouterr()
    ok(ip, "%gemini history")
    out = capsys.readouterr().out
    assert "Conversation 'greet', 1 turn" in out and "Hello" in out and "Hi there" in out


def test_history_html_escapes_a_hostile_answer(kern, server):
    server.queue(Reply(text="Look: <img src=x onerror=alert(1)> <script>alert(2)</script>"))
    kern.run("%%gemini -c hostile\nSay something nasty", check=True)
    ex = kern.run("%gemini history hostile", check=True)
    bundles = [m["content"]["data"] for m in ex.of_type("display_data")]
    assert bundles, ex.outputs
    html = bundles[-1]["text/html"]
    assert "Say something nasty" in html
    assert "<img" not in html and "<script" not in html
    assert "&lt;img" in html
    assert "onerror=alert(1)" in bundles[-1]["text/plain"]


def test_chats_lists_names_turns_tokens_and_default(ip, server, capsys):
    usage = {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15}
    server.queue(Reply(text="A1", usage=usage), Reply(text="A2", usage=usage),
                 Reply(text="B1", usage={"promptTokenCount": 1000, "candidatesTokenCount": 234,
                                         "totalTokenCount": 1234}))
    ok(ip, "%%gemini -c alpha\nQ1", cell_id="ca1")
    ok(ip, "%%gemini -c alpha\nQ2", cell_id="ca2")
    ok(ip, "%%gemini -c beta\nQ1", cell_id="cb1")
    ok(ip, "%gemini chat beta")
    capsys.readouterr()
    ok(ip, "%gemini chats")
    lines = capsys.readouterr().out.splitlines()
    alpha = [line for line in lines if "alpha" in line]
    beta = [line for line in lines if "beta" in line and "turns" in line]
    assert len(alpha) == 1 and len(beta) == 1
    assert alpha[0].split() == ["alpha", "2", "turns", "30", "tokens"]
    assert beta[0].split() == ["*", "beta", "1", "turns", "1,234", "tokens"]
    assert not alpha[0].startswith("*")
    assert any("default" in line for line in lines)


def test_chats_with_none_yet(ip, server, capsys):
    ok(ip, "%gemini chats")
    assert "No conversations yet" in capsys.readouterr().out


def test_reset_clears_a_conversation(ip, server):
    server.queue("A1", "A2", "A3")
    ok(ip, "%%gemini -c wipe\nQ1", cell_id="z1")
    ok(ip, "%%gemini -c wipe\nQ2", cell_id="z2")
    ok(ip, "%gemini reset wipe")
    assert conversation("wipe").turns == []
    ok(ip, "%%gemini -c wipe\nFresh start", cell_id="z3")
    assert turns(server.last) == [("user", "Fresh start")]


def test_reset_leaves_other_chats_alone(ip, server):
    server.queue("A1", "B1")
    ok(ip, "%%gemini -c one\nQ1", cell_id="o1")
    ok(ip, "%%gemini -c two\nQ1", cell_id="o2")
    ok(ip, "%gemini reset one")
    assert len(conversation("one").turns) == 0
    assert chat_texts("two") == [("user", "Q1"), ("model", "B1")]


@pytest.mark.parametrize("command", ["history nope", "reset nope", "save nope {path}"])
def test_unknown_conversation_names_are_clear_errors(ip, server, capsys, tmp_path, command):
    server.queue("A1")
    ok(ip, "%%gemini -c known\nQ1", cell_id="u1")
    capsys.readouterr()
    path = tmp_path / "out.json"
    exc = failed(ip, "%gemini " + command.format(path=path))
    assert isinstance(exc, CellFailed)
    text = "\n".join(exc._render_traceback_())
    assert "No conversation named 'nope'" in text and "known" in text
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    assert "No conversation named 'nope'" in out.out + out.err
    assert not path.exists()
    assert "nope" not in gemini_magic.conversations()


def test_history_with_no_name_and_no_default_is_a_usage_error(ip, server, capsys):
    from IPython.core.error import UsageError

    exc = failed(ip, "%gemini history")
    assert isinstance(exc, UsageError)
    assert "no default chat" in str(exc)


# -- save / load ----------------------------------------------------------------------


def test_save_and_load_round_trip(ip, server, tmp_path):
    usage = {"promptTokenCount": 7, "candidatesTokenCount": 3, "totalTokenCount": 10}
    server.queue(Reply(parts=[{"text": "Signed one", "thoughtSignature": SIGNATURE}], usage=usage),
                 Reply(text="Plain two", usage=usage))
    ok(ip, "%%gemini -c orig\nQ one", cell_id="sv1")
    ok(ip, "%%gemini -c orig\nQ two", cell_id="sv2")
    path = tmp_path / "chats" / "orig.json"
    ok(ip, f"%gemini save orig {path}")

    raw = path.read_text(encoding="utf-8")
    assert TEST_KEY not in raw
    data = json.loads(raw)
    assert data["format"] == "gemini-magic conversation"
    assert len(data["turns"]) == 2

    ok(ip, f"%gemini load copy {path}")
    original, copy = conversation("orig"), conversation("copy")
    assert copy is not original and copy.name == "copy"
    assert copy.messages() == original.messages()
    assert [(m["role"], m["text"]) for m in copy.messages()] == [
        ("user", "Q one"), ("model", "Signed one"), ("user", "Q two"), ("model", "Plain two"),
    ]
    assert [t.usage for t in copy.turns] == [t.usage for t in original.turns]
    assert copy.turns[0].usage["total_tokens"] == 10
    assert [t.model_id for t in copy.turns] == ["gemini-2.5-flash", "gemini-2.5-flash"]
    assert copy.turns[0].model.parts[0].thought_signature == b"signature"
    assert copy.tokens() == original.tokens() == 20


def test_loaded_conversation_continues(ip, server, tmp_path):
    server.queue(Reply(parts=[{"text": "Signed one", "thoughtSignature": SIGNATURE}]), "A2", "A3")
    ok(ip, "%%gemini -c orig\nQ one", cell_id="lc1")
    ok(ip, "%%gemini -c orig\nQ two", cell_id="lc2")
    path = tmp_path / "orig.json"
    ok(ip, f"%gemini save orig {path}")

    # As in a new session.
    ip.run_line_magic("unload_ext", "gemini_magic")
    ip.run_line_magic("load_ext", "gemini_magic")
    ok(ip, f"%gemini load resumed {path}")
    ok(ip, "%%gemini -c resumed\nQ three", cell_id="lc3")
    assert turns(server.last) == [("user", "Q one"), ("model", "Signed one"), ("user", "Q two"),
                                  ("model", "A2"), ("user", "Q three")]
    assert signatures(contents(server.last)[1]) == [SIGNATURE]
    assert len(conversation("resumed").turns) == 3


@pytest.mark.parametrize(
    "body",
    [
        '{"format": "gemini-magic recording", "version": 1, "entries": []}',
        '{"hello": "world"}',
        "this is not json at all",
        '[1, 2, 3]',
    ],
    ids=["recording", "other-json", "not-json", "json-array"],
)
def test_loading_a_non_conversation_file_is_a_clear_error(ip, server, tmp_path, capsys, body):
    path = tmp_path / "not-a-chat.json"
    path.write_text(body, encoding="utf-8")
    exc = failed(ip, f"%gemini load bad {path}")
    assert isinstance(exc, CellFailed), repr(exc)
    text = "\n".join(exc._render_traceback_())
    assert "is not a saved conversation" in text and "%gemini save" in text
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    assert "bad" not in gemini_magic.conversations()


def test_loading_a_missing_file_is_a_clear_error(ip, server, tmp_path, capsys):
    path = tmp_path / "nowhere.json"
    exc = failed(ip, f"%gemini load bad {path}")
    assert isinstance(exc, CellFailed)
    text = "\n".join(exc._render_traceback_())
    assert "No such file" in text and str(path) in text
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    assert "bad" not in gemini_magic.conversations()


# -- the Python API -------------------------------------------------------------------


def test_python_api_messages_and_conversations(ip, server):
    server.queue("Answer one", "Answer two")
    ok(ip, "%%gemini -c api\nQuestion one", cell_id="api1")
    ok(ip, "%%gemini -c api\nQuestion two", cell_id="api2")
    assert conversation("api").messages() == [
        {"role": "user", "text": "Question one"},
        {"role": "model", "text": "Answer one", "model": "gemini-2.5-flash"},
        {"role": "user", "text": "Question two"},
        {"role": "model", "text": "Answer two", "model": "gemini-2.5-flash"},
    ]
    chats = gemini_magic.conversations()
    assert list(chats) == ["api"] and chats["api"] is conversation("api")
    # The API reads the same object the magic writes: visible from user code too.
    ok(ip, "import gemini_magic as _gm\n_api_count = len(_gm.conversation('api').messages())")
    assert ip.user_ns["_api_count"] == 4


def test_python_api_made_on_first_use(ip, server):
    new = conversation("fresh")
    assert new.turns == [] and new.messages() == []
    assert "fresh" in gemini_magic.conversations()


# -- replay ---------------------------------------------------------------------------


def test_chat_replays_with_nothing_reaching_the_server(ip, server, tmp_path, capsys):
    rec = tmp_path / "chat.gemini.json"
    ok(ip, f"%gemini record {rec}")
    server.queue(Reply(chunks=["Once ", "upon ", "a time."]),
                 Reply(parts=[{"text": "The end.", "thoughtSignature": SIGNATURE}]))
    first = "%%gemini -c tale\nTell a tale."
    second = "%%gemini -c tale\nFinish it."
    ok(ip, first, cell_id="rp1")
    ok(ip, second, cell_id="rp2")
    assert len(generate_requests(server)) == 2
    recorded = conversation("tale").messages()

    # A fresh load, replaying only.
    ip.run_line_magic("unload_ext", "gemini_magic")
    ip.run_line_magic("load_ext", "gemini_magic")
    server.reset()
    ok(ip, f"%gemini replay {rec}")
    capsys.readouterr()
    ok(ip, first, cell_id="rp1")
    ok(ip, second, cell_id="rp2")
    out = capsys.readouterr().out
    assert server.requests == []
    assert "Once upon a time." in out and "The end." in out
    assert conversation("tale").messages() == recorded
    assert conversation("tale").turns[0].model.parts[0].text == "Once upon a time."

"""Agent mode (`%%gemini --agent`): the loop, what code runs capture, the cards, the code
offered back, record/replay, and interrupts, in-process and in a real kernel.

The model's steps are scripted on the fake server (function calls, then a text); the
code really runs in the shell's namespace, and what goes back to the model is read
from the requests the server received. Security rules: tests/test_agent_security.py.
"""

from __future__ import annotations

import base64
import json
import threading
import time

import pytest

import gemini_magic
from gemini_magic.requests import OptionError
from gemini_magic.tools import Toolbox, ToolCall
from tests.conftest import TEST_KEY
from tests.fake_gemini import Reply
from tests.test_replay import command, reload_extension
from tests.test_tools import GENERATE, _k, contents, failed, fc, function_responses, last_response, ok, run_answering


def run_python(code: str, call_id: str = "r1") -> Reply:
    return Reply(parts=[fc("run_python", {"code": code}, call_id)])


def agent(ip, prompt: str = "Look at the data", options: str = "--approve auto") -> None:
    ok(ip, f"%%gemini --agent {options}\n{prompt}")


def responses(server) -> list[dict]:
    """Every function response sent back, in order (each request's last turn)."""
    out = []
    for request in server.requests:
        if request.action in GENERATE and request.after_tools():
            out += [r["response"] for r in function_responses(contents(request)[-1])]
    return out


def response_parts(server) -> list[dict]:
    """The images sent back with the last function response: after it in its turn (the
    default model, Gemini 2.5), or inside it (Gemini 3)."""
    turn = contents(server.last)[-1]
    inside = function_responses(turn)[0].get("parts") or []
    return inside or [p for p in turn["parts"] if _k(p, "inlineData")]


# -- the loop -----------------------------------------------------------------------


def test_code_runs_in_the_namespace_and_what_it_did_goes_back(ip, server):
    ip.user_ns["prices"] = [3, 4, 5]
    server.queue(run_python("total = sum(prices)\nprint('summing', len(prices))\ntotal * 2"),
                 run_python("total + 1", "r2"), "The total is 12.")
    agent(ip)
    first, second = responses(server)
    assert first == {"stdout": "summing 3\n", "result": "24"}
    assert second == {"result": "13"}  # the variable the first step made is still there
    assert ip.user_ns["total"] == 12


def test_an_error_goes_back_with_its_traceback_and_the_model_can_fix_it(ip, server, capsys):
    server.queue(run_python("undefined_name + 1"), run_python("1 + 1", "r2"), "Fixed: 2.")
    agent(ip)
    broken, fixed = responses(server)
    assert "NameError: name 'undefined_name' is not defined" in broken["error"]
    assert 'File "<cell>", line 1' in broken["error"]  # the cell's own line, portable
    assert "site-packages" not in broken["error"] and "IPython" not in broken["error"]
    assert fixed == {"result": "2"}
    out = capsys.readouterr().out
    assert "[Python #1: raised an error]" in out and "[Python #2: done]" in out and "Fixed: 2." in out


def test_a_figure_reaches_the_model_as_an_image_and_is_closed(ip, server):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.close("all")
    server.queue(run_python("import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.title('t')"), "A peak.")
    agent(ip)
    parts = response_parts(server)
    assert len(parts) == 1
    blob = _k(parts[0], "inlineData")
    assert _k(blob, "mimeType") == "image/png"
    assert base64.urlsafe_b64decode(blob["data"]).startswith(b"\x89PNG")
    assert "1 image(s) attached" in last_response(server)["images"]
    assert plt.get_fignums() == []  # closed: the inline backend will not show it again


def test_at_most_four_images_go_back_and_the_rest_is_said(ip, server):
    import matplotlib

    matplotlib.use("Agg")
    server.queue(run_python("import matplotlib.pyplot as plt\nfor i in range(6):\n    plt.figure(); plt.plot([i])"),
                 "Six.")
    agent(ip)
    assert len(response_parts(server)) == 4
    assert "2 more not sent" in last_response(server)["images"]


def test_long_output_is_cut_and_the_cut_is_said(ip, server):
    server.queue(run_python("print('a' * 30000)\n'b' * 30000"), "Long.")
    agent(ip)
    sent = last_response(server)
    assert "[truncated:" in sent["stdout"] and len(sent["stdout"]) < 2200
    assert "truncated: 26,000 more characters" in sent["result"]
    assert len(json.dumps(sent)) < 9000


def test_memory_addresses_are_masked_so_a_replay_sends_the_same(ip, server):
    server.queue(run_python("class Thing: pass\nThing()"), "A thing.")
    agent(ip)
    result = last_response(server)["result"]
    assert "object at 0x…" in result and "0x7" not in result


def test_a_trailing_semicolon_hides_the_value_as_in_a_cell(ip, server):
    server.queue(run_python("x = 5\nx * 2;"), "Hidden.")
    agent(ip)
    assert last_response(server) == {"result": "(ran; no output and no value)"}


def test_top_level_await_is_an_error_the_model_reads(ip, server):
    server.queue(run_python("import asyncio\nawait asyncio.sleep(0)"), "No await then.")
    agent(ip)
    assert "SyntaxError" in last_response(server)["error"]


def test_the_step_limit_asks_for_an_answer(ip, server, capsys):
    server.queue(run_python("1"), run_python("2", "r2"), "Done after the wrap-up.")
    agent(ip, options="--approve auto --max-steps 1")
    wrap_up = server.last
    assert wrap_up.body["toolConfig"]["functionCallingConfig"]["mode"] == "NONE"
    assert "limit of 1 tool-call steps" in json.dumps(contents(wrap_up)[-1])
    assert "Reached the limit of 1 tool steps" in capsys.readouterr().err  # the terminal's notices


def test_an_unknown_function_goes_back_as_an_error(ip, server):
    server.queue(Reply(parts=[fc("shell_exec", {"cmd": "ls"}, "u1")]), "Sorry.")
    agent(ip)
    sent = last_response(server)
    assert "No function named 'shell_exec'" in sent["error"]
    assert "run_python" in sent["error"]  # the tools it may call are named


# -- the looking tools ----------------------------------------------------------------


def test_list_variables_inspect_and_read_cells(ip, server):
    import pandas as pd

    ip.run_cell("sales = __import__('pandas').DataFrame({'region': ['N', 'S'], 'amount': [1.5, 2.5]})",
                store_history=True)
    ip.run_cell("note = 'quarterly'", store_history=True)
    ip.user_ns["_private"] = 1
    server.queue(Reply(parts=[fc("list_variables", {}, "l1"), fc("inspect", {"name": "sales"}, "i1"),
                              fc("read_cells", {"count": 2}, "c1")]), "Seen.")
    ip.run_cell("%%gemini --agent --approve auto\nLook", store_history=True)
    listed, inspected, cells = responses(server)
    assert listed["sales"].startswith("pandas.DataFrame: pandas DataFrame, 2 rows x 2 columns")
    assert listed["note"] == "str: quarterly"
    assert "_private" not in listed and "pd" not in listed  # %who's view: no _names, no modules
    assert "columns: region: " in inspected["result"] and "amount: float64" in inspected["result"]
    assert cells["result"] == [
        "sales = __import__('pandas').DataFrame({'region': ['N', 'S'], 'amount': [1.5, 2.5]})",
        "note = 'quarterly'"]  # not the %%gemini cell that is running
    assert isinstance(pd.DataFrame, type)


def test_the_agents_instruction_comes_first_and_keeps_the_users_own(ip, server):
    server.queue("Hi.")
    agent(ip, options="-s 'Answer in French.'")
    parts = server.last.body["systemInstruction"]["parts"]
    text = "".join(p["text"] for p in parts)
    assert text.startswith("You are a data-analysis agent") and text.endswith("Answer in French.")
    assert "The user approves each run_python call" in text


# -- what the notebook keeps ------------------------------------------------------------


def test_the_code_that_ran_is_offered_as_one_block_to_copy(ip, server, capsys):
    server.queue(run_python("a = 1"), run_python("oops(", "r2"), run_python("b = a + 1", "r3"), "Done.")
    agent(ip)
    out = capsys.readouterr().out
    block = out.split("The code Gemini ran (2 runs), to copy into a cell:\n", 1)[1]
    assert block.startswith("a = 1\n\nb = a + 1")  # the runs that succeeded, in order
    assert "oops(" not in block


def test_the_card_shows_code_outputs_and_a_safe_dataframe_table(ip, server):
    ok(ip, "import pandas as pd")
    server.queue(run_python("print('<b>bold</b>')\npd.DataFrame({'x': ['<script>alert(1)</script>']})"), "Shown.")
    answer = gemini_magic.ask("show", agent=True, approve="auto").wait()
    from gemini_magic.render.bundles import compose

    html = compose(answer, "markdown")["text/html"]
    assert 'class="gemini-code-run gemini-tool" data-status="ok"' in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold</b>" not in html
    assert 'class="dataframe gemini-table">' in html
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert '<span style="color: #008000">print</span>' in html  # highlighted by pygments


def test_edited_code_is_what_runs_and_the_model_is_told(ip):
    tools = gemini_magic.agent.agent_tools(ip, gemini_magic.context.Limits())
    ran = []

    def edit(call):
        call.args["code"] = "edited = 'yes'"
        call.edited = True
        ran.append(call.status)
        return True

    toolbox = Toolbox(tools, ask=edit)
    call = toolbox.run(ToolCall("e1", "run_python", {"code": "edited = 'no'"}))
    assert ran == ["pending"] and ip.user_ns["edited"] == "yes"
    assert call.result["edited_by_user"] is True and call.result["code_that_ran"] == "edited = 'yes'"


def test_a_users_tool_may_not_take_an_agent_tools_name(ip, server):
    ok(ip, "def inspect(name: str) -> str:\n    '''Mine.'''\n    return name")
    error = failed(ip, "%%gemini --agent --tools inspect\nhi").error
    assert "its own tool named 'inspect'" in error.message
    assert server.requests == []


@pytest.mark.parametrize("line, words", [
    ("--agent --cache c1", "--agent cannot go with --cache"),
    ("--agent --cache-create c2", "agent mode's tools and instruction are not cached"),
])
def test_agent_mode_and_context_caches_do_not_mix(ip, server, line, words):
    error = failed(ip, f"%%gemini {line}\nhi").error
    assert words in error.message


def test_agent_mode_is_refused_in_a_batch(ip, server):
    with pytest.raises(OptionError, match="--agent does not apply here"):
        gemini_magic.batch("Say {item}", ["a"], agent=True)
    assert server.requests == []


# -- record and replay ----------------------------------------------------------------


def test_a_recorded_agent_session_replays_offline_and_a_differing_result_is_a_miss(ip, server, tmp_path, env):
    rec = tmp_path / "agent.gemini.json"
    command(ip, f"record {rec}")
    ip.user_ns["data"] = [1, 2, 3]
    server.queue(run_python("print(sum(data))"), run_python("max(data)", "r2"), "Sum 6, max 3.")
    agent(ip, "Sum and max")
    server.reset()
    env.delenv("GEMINI_API_KEY")
    reload_extension(ip)
    command(ip, f"replay {rec}")
    agent(ip, "Sum and max")  # the code runs again here, and gives the same results
    assert server.requests == []

    ip.user_ns["data"] = [1, 2, 4]  # now the second step's result differs
    error = failed(ip, "%%gemini --agent --approve auto\nSum and max").error
    assert error.kind == "not-recorded"
    assert error.message.startswith("Replay miss at step 1: run_python's result differs from the recording")
    assert '"6\\n" recorded, "7\\n" now' in error.message
    assert "deterministic" in error.hint
    assert server.requests == []


def test_a_figure_replays_by_its_size_not_its_bytes(ip, server, tmp_path, env):
    import matplotlib

    matplotlib.use("Agg")
    rec = tmp_path / "plot.gemini.json"
    command(ip, f"record {rec}")
    code = "import matplotlib.pyplot as plt\nplt.figure(figsize=(2, 2)); plt.plot([1, 2]); plt.title(TITLE);"
    ip.user_ns["TITLE"] = "first"
    server.queue(run_python(code), "A line.")
    agent(ip, "Plot it")
    recorded = json.loads(rec.read_text())
    assert '"image": "' in json.dumps(recorded)  # stored as its pixel size, not a hash
    server.reset()
    reload_extension(ip)
    command(ip, f"replay {rec}")
    ip.user_ns["TITLE"] = "other"  # other pixels (as another machine's fonts), same size
    agent(ip, "Plot it")
    assert server.requests == []


# -- in a real kernel ------------------------------------------------------------------


def _html(execution) -> str:
    return "".join(m["content"]["data"].get("text/html", "") for m in execution.of_type("display_data"))


def test_in_a_kernel_the_code_is_shown_then_asked_about(kern, server):
    server.queue(run_python("kernel_made = 6 * 7\nprint(kernel_made)"), "It is 42.")
    execution, prompts = run_answering(kern, "%%gemini --agent\nCompute it", ["y"])
    assert execution.status == "ok", execution.error
    assert prompts == ["Run this code (#1)? [y/N] "]
    updates = [m["content"]["data"].get("text/html", "") for m in execution.of_type("update_display_data")]
    asking = [u for u in updates if 'data-status="asking"' in u]
    assert asking and "kernel_made" in asking[0]  # the code was on screen before the question
    html = _html(execution)
    assert 'data-status="ok"' in html and "<pre" in html and ">42\n</pre>" in html
    assert "It is 42." in html
    assert "The code Gemini ran (1 run), to copy into a cell:" in html
    assert kern.run("print(kernel_made)", check=True).stream_text() == "42\n"


def test_in_a_kernel_a_plot_goes_to_the_model_once_and_is_not_shown_again(kern, server):
    server.queue(run_python("import matplotlib.pyplot as plt\nplt.plot([1, 2])"), "A line.")
    execution = kern.run("%%gemini --agent --approve auto\nPlot", check=True)
    assert len(response_parts(server)) == 1
    # The figure shows in the card, and the inline backend does not show it again below.
    assert not [m for m in execution.of_type("display_data") if "image/png" in m["content"]["data"]]
    assert "data:image/png;base64," in _html(execution)


def test_interrupting_stops_the_code_and_the_agent_and_the_kernel_goes_on(kern, server):
    server.queue(run_python("import time\nfor i in range(300):\n    time.sleep(0.1)"), "Never asked.")
    timer = None

    def on_message(msg):
        nonlocal timer
        data = msg["content"].get("data", {}).get("text/html", "")
        if timer is None and 'data-status="running"' in data:
            timer = threading.Timer(0.5, kern.interrupt)
            timer.start()

    started = time.monotonic()
    execution = kern.run("%%gemini --agent --approve auto\nWait", on_message=on_message, timeout=30)
    assert time.monotonic() - started < 15
    assert execution.status == "error" and "Interrupted." in execution.error["evalue"]
    assert 'data-status="interrupted"' in _html(execution)
    assert len([r for r in server.requests if r.action in GENERATE]) == 1  # nothing more was sent
    after = kern.run("print(1 + 1)", check=True)
    assert after.stream_text() == "2\n"


def test_the_key_typed_in_code_is_scrubbed_from_the_card(kern, server):
    server.queue(run_python("import os\nprint(os.environ['GEMINI_API_KEY'])"), "Done.")
    execution = kern.run("%%gemini --agent --approve auto\nKey?", check=True)
    everything = json.dumps([m["content"] for m in execution.messages])
    assert TEST_KEY not in everything
    assert "&lt;redacted&gt;" in everything
    assert TEST_KEY not in json.dumps(server.last.body)


def test_ask_from_python_shows_the_code_in_its_question(ip, server, monkeypatch):
    asked = []
    monkeypatch.setattr("builtins.input", lambda prompt="": asked.append(prompt) or "y")
    server.queue(run_python("from_python = 3"), "Three.")
    assert gemini_magic.ask("go", agent=True).read() == "Three."
    assert asked == ["Gemini wants to run this Python:\nfrom_python = 3\nRun this code (#1)? [y/N] "]
    assert ip.user_ns["from_python"] == 3


def test_in_a_kernel_a_running_codes_output_shows_as_it_comes(kern, server):
    server.queue(run_python("import time\nprint('first', flush=True)\ntime.sleep(1.5)\nprint('second')"), "Both.")
    seen = []

    def on_message(msg):
        data = msg["content"].get("data", {}).get("text/html", "")
        if 'data-status="running"' in data:
            seen.append((">first" in data, "second</pre>" in data))  # in the card's output, not its code

    kern.run("%%gemini --agent --approve auto\nPrint", on_message=on_message, check=True, timeout=30)
    assert (True, False) in seen  # the card showed the first line while the code still ran


def test_an_agent_turn_in_a_chat_keeps_its_steps_for_the_next_turn(ip, server):
    server.queue(run_python("kept = 1"), "Made it.", "Still here.")
    agent(ip, "Make it", "--approve auto -c work")
    agent(ip, "And now?", "--approve auto -c work")
    history = contents(server.last)
    kinds = [[next(iter(p)) for p in c["parts"]] for c in history]
    assert kinds[:4] == [["text"], ["function_call"], ["function_response"], ["text"]] or \
        kinds[:4] == [["text"], ["functionCall"], ["functionResponse"], ["text"]], kinds
    assert history[-1]["parts"][0]["text"] == "And now?"


def test_looking_tools_mask_memory_addresses(ip, server):
    ok(ip, "class Box:\n    pass\nbox = Box()")
    server.queue(Reply(parts=[fc("list_variables", {}, "l1"), fc("inspect", {"name": "box"}, "i1")]), "Seen.")
    agent(ip)
    listed, inspected = responses(server)
    assert "object at 0x…>" in listed["box"] and "object at 0x…>" in inspected["result"]


def test_the_card_says_what_you_answered(ip, server, monkeypatch, capsys):
    answers = iter(["n", "y"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(answers))
    server.queue(run_python("declined = 1"), run_python("approved = 1", "r2"), "One of two.")
    ok(ip, "%%gemini --agent\nTwo runs")
    out = capsys.readouterr().out
    assert "[Python #1: not run: you declined it]" in out
    assert "[Python #2: done · you approved it]" in out
    assert "declined" not in ip.user_ns and ip.user_ns["approved"] == 1


# -- what the review found -------------------------------------------------------------


def test_a_response_over_the_bound_is_cut_and_the_loop_goes_on(ip, server):
    ok(ip, "import pandas as pd\ndf = pd.DataFrame({'a': range(60), 'b': range(60), 'c': ['text'] * 60})")
    code = "from IPython.display import display\nprint(df.describe())\nfor r in range(8):\n    display(df)\n'v' * 5000"
    server.queue(run_python(code), "Bounded.")
    agent(ip)
    sent = last_response(server)
    assert len(json.dumps(sent)) < 8000 + 1000
    assert sent["displayed"][-1].startswith("[truncated:") and "more displayed output(s) left out" in \
        sent["displayed"][-1]


def test_a_value_whose_repr_raises_still_ends_the_run(ip, server, capsys):
    server.queue(run_python("class Bad:\n    def __repr__(self):\n        raise ValueError('no')\nBad()"), "Odd.")
    agent(ip)
    assert "its text raised ValueError" in last_response(server)["result"]
    assert "[Python #1: done]" in capsys.readouterr().out


def test_bytes_written_to_stdout_are_an_error_not_a_crash(ip, server):
    server.queue(run_python("import sys\nsys.stdout.write(b'x')"), "Noted.")
    agent(ip)
    assert "TypeError: write() argument must be str, not bytes" in last_response(server)["error"]


def test_a_fake_dataframe_cannot_put_markup_in_the_card(ip, server):
    code = ("class DataFrame:\n    __module__ = 'pandas.core.frame'\n"
            "    def to_html(self, **k):\n        return '<img src=x onerror=alert(1)>'\n"
            "    def __repr__(self):\n        return '<img src=x onerror=alert(1)>'\nDataFrame()")
    server.queue(run_python(code), "Hm.")
    answer = gemini_magic.ask("show", agent=True, approve="auto").wait()
    from gemini_magic.render.bundles import compose

    html = compose(answer, "markdown")["text/html"]
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_a_sets_summary_is_the_same_in_every_process(ip, server):
    ok(ip, "regions = {'north', 'south', 'east', 'west'}")
    server.queue(Reply(parts=[fc("list_variables", {}, "l1")]), "Four.")
    agent(ip)
    assert responses(server)[0]["regions"] == "set: {'east', 'north', 'south', 'west'}"


def test_a_file_name_that_is_not_utf8_can_be_sent_and_recorded(ip, server, tmp_path):
    command(ip, f"record {tmp_path / 'rec.gemini.json'}")
    server.queue(run_python("print(b'caf\\xe9.csv'.decode('utf-8', 'surrogateescape'))"), "A file.")
    agent(ip)
    assert last_response(server)["stdout"] == "caf\\udce9.csv\n"


def test_ctrl_c_at_the_question_marks_the_call_and_stops(ip, server, monkeypatch):
    def interrupted(prompt=""):
        raise KeyboardInterrupt

    monkeypatch.setattr("builtins.input", interrupted)
    server.queue(run_python("never = 1"), "Not asked.")
    answer = gemini_magic.ask("Go", agent=True).wait()
    assert answer.interrupted and "never" not in ip.user_ns
    call = answer.tool_calls[0]
    assert call.status == "interrupted"  # not left "waiting for your approval"
    assert len([r for r in server.requests if r.action in GENERATE]) == 1


def test_approve_never_without_stdin_is_not_told_it_cannot_ask(kern, server):
    server.queue(run_python("x = 1"), "Refused.")
    execution, _ = run_answering(kern, "%%gemini --agent --approve never\nGo", allow_stdin=False)
    assert execution.status == "ok", execution.error


def test_agent_mode_outside_ipython_says_it_needs_a_kernel(env):
    import subprocess
    import sys

    script = ("import gemini_magic\n"
              "try:\n    gemini_magic.ask('hi', agent=True)\n"
              "except Exception as exc:\n    print(type(exc).__name__, exc)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60).stdout
    assert out.startswith("OptionError --agent runs code in an IPython kernel, and there is none here.")

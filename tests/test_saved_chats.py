"""Conversations that live in the notebook: every chat turn is saved with its output, and a
new kernel (a restart, a colleague's copy) continues from what the saved file shows.

The in-process tests build the saved notebook from the turns' own records; the kernel
tests run real cells, write the notebook from what a frontend received, restart, and go on.
Every check reads the requests the fake server received.
"""

from __future__ import annotations

import json

import nbformat
import pytest

import gemini_magic
from gemini_magic.history import RECORD, cell_key, turn_record
from gemini_magic.notebook_file import find, records, saved_turns
from tests.conftest import TEST_KEY, kernel_environment
from tests.fake_gemini import Reply
from tests.kernel import KernelSession
from tests.test_chats import SIGNATURE, failed, generate_requests, ok, signatures, turns
from tests.test_markdown_safety import assert_inert

# -- helpers ------------------------------------------------------------------------


def notebook_of(cells: list[tuple[str, str, list]]) -> dict:
    """A saved notebook: (cell id, source, records shown in its output) per code cell."""
    nb = nbformat.v4.new_notebook()
    for cell_id, source, saved in cells:
        cell = nbformat.v4.new_code_cell(source)
        cell.id = cell_id
        cell.outputs = [nbformat.v4.new_output("display_data", {"text/plain": "answer"},
                                               metadata={"gemini_magic": {"turn": r}}) for r in saved]
        nb.cells.append(cell)
    return json.loads(nbformat.writes(nb))


def record_of(name: str, index: int = -1) -> dict:
    return turn_record(name, gemini_magic.conversation(name).turns[index])


def reload(ip) -> None:
    """A new kernel, as far as the extension can tell: every conversation is gone."""
    ip.run_line_magic("unload_ext", "gemini_magic")
    ip.run_line_magic("load_ext", "gemini_magic")
    assert gemini_magic.conversations() == {}


@pytest.fixture
def saved(ip, server, tmp_path, env):
    """Three turns of chat 'trip' asked in cells a, b, c, saved in trip.ipynb; then a new
    kernel that runs that file (JPY_SESSION_NAME, as Jupyter Server sets it)."""
    server.queue(Reply(parts=[{"text": "Kyoto it is.", "thoughtSignature": SIGNATURE}]), "Day one: temples.",
                 "Day two: food.")
    cells = [("a", "%%gemini -c trip\nPlan a trip to Kyoto."), ("b", "%%gemini -c trip\nDay one?"),
             ("c", "%%gemini -c trip\nDay two?")]
    for cell_id, source in cells:
        ok(ip, source, cell_id=cell_id)
    records_ = [record_of("trip", i) for i in range(3)]
    path = tmp_path / "trip.ipynb"
    path.write_text(json.dumps(notebook_of([(i, s, [r]) for (i, s), r in zip(cells, records_, strict=True)])))
    reload(ip)
    env.setenv("JPY_SESSION_NAME", str(path))
    server.requests.clear()
    return path, cells


# -- what is saved ---------------------------------------------------------------------


def test_a_record_holds_what_is_needed_to_continue_and_chains_to_the_turn_before(ip, server):
    server.queue(Reply(parts=[{"text": "Signed", "thoughtSignature": SIGNATURE}]), "Second")
    ok(ip, "%%gemini -c r\nQ1", cell_id="r1")
    ok(ip, "%%gemini -c r\nQ2", cell_id="r2")
    first, second = record_of("r", 0), record_of("r", 1)
    assert (first["format"], first["version"], first["conversation"]) == (RECORD, 1, "r")
    assert (first["key"], first["before"], second["key"], second["before"]) == ("cell:r1", None, "cell:r2", "cell:r1")
    assert first["at"] < second["at"]
    assert first["model"]["parts"][0]["thought_signature"] == SIGNATURE
    assert first["user"]["parts"][0]["text"] == "Q1" and first["model_id"] == "gemini-2.5-flash"
    json.dumps(first)  # JSON all the way down: it goes into an output's metadata


def test_a_record_never_holds_the_key_even_when_a_prompt_quotes_it(ip, server):
    server.queue(f"You said {TEST_KEY}.")
    ok(ip, f"%%gemini -c k\nIs {TEST_KEY} my key?", cell_id="k1")
    text = json.dumps(record_of("k"))
    assert TEST_KEY not in text
    assert "Is " in text  # the rest of the turn is kept


# -- which turns a saved notebook continues from -----------------------------------------


def test_a_new_kernel_continues_from_the_saved_notebook_without_asking_again(ip, server, saved, capsys):
    server.queue("Day three: Nara.")
    ok(ip, "%%gemini -c trip\nDay three?", cell_id="d")
    assert len(generate_requests(server)) == 1  # nothing asked again
    assert turns(server.last) == [
        ("user", "Plan a trip to Kyoto."), ("model", "Kyoto it is."), ("user", "Day one?"),
        ("model", "Day one: temples."), ("user", "Day two?"), ("model", "Day two: food."), ("user", "Day three?")]
    assert signatures(server.last.body["contents"][1]) == [SIGNATURE]  # Gemini 3 needs them back
    assert "Chat 'trip' continues from the 3 turn(s) saved in trip.ipynb." in capsys.readouterr().err
    server.queue("Rest.")
    ok(ip, "%%gemini -c trip\nAnd then?", cell_id="e")
    assert "continues from" not in capsys.readouterr().err  # said once


def test_rerunning_a_restored_cell_replaces_its_turn_and_says_nothing_of_the_rest(ip, server, saved, capsys):
    server.queue("Kyoto, again.")
    _, cells = saved
    ok(ip, cells[0][1], cell_id="a")  # "Run All" in the new kernel starts here
    assert turns(server.last) == [("user", "Plan a trip to Kyoto.")]
    err = capsys.readouterr().err
    assert "dropped" not in err and "continues from" not in err  # not news: the next cells ask again
    assert [t.key for t in gemini_magic.conversation("trip").turns] == ["cell:a"]


def test_rerunning_a_middle_cell_builds_on_the_turns_before_it(ip, server, saved):
    server.queue("Day one: gardens.")
    _, cells = saved
    ok(ip, cells[1][1], cell_id="b")
    assert turns(server.last) == [("user", "Plan a trip to Kyoto."), ("model", "Kyoto it is."), ("user", "Day one?")]


def test_the_newest_record_wins_whatever_order_cells_were_rerun_in():
    def rec(key, before, at, text):
        return {"format": RECORD, "version": 1, "conversation": "t", "key": key, "before": before, "at": at,
                "model_id": "m", "user": {"role": "user", "parts": [{"text": text}]},
                "model": {"role": "model", "parts": [{"text": text.upper()}]}}

    # a, b, c asked in order; then a re-run, then b re-run: the kernel had [a', b'].
    nb = notebook_of([("a", "A", [rec("cell:a", None, "2026-01-01T00:00:04", "a2")]),
                      ("b", "B", [rec("cell:b", "cell:a", "2026-01-01T00:00:05", "b2")]),
                      ("c", "C", [rec("cell:c", "cell:b", "2026-01-01T00:00:03", "c1")])])
    got = saved_turns(nb, "t", cell_ids=True)
    assert [(t.key, t.text("user")) for t in got.turns] == [("cell:a", "a2"), ("cell:b", "b2")]
    assert not got.broken and all(t.restored for t in got.turns)
    # Only a re-run of a: [a'] (b and c were dropped from the conversation then).
    nb["cells"][0]["outputs"][0]["metadata"]["gemini_magic"]["turn"]["at"] = "2026-01-01T00:00:09"
    assert [t.text("user") for t in saved_turns(nb, "t", cell_ids=True).turns] == ["a2"]
    # Cleared outputs: the chain stops where a record is missing, and says so.
    nb["cells"][0]["outputs"] = []
    got = saved_turns(nb, "t", cell_ids=True)
    assert [t.text("user") for t in got.turns] == ["b2"] and got.broken  # b2 followed a2, whose output is gone


def test_keys_follow_the_running_kernel_so_a_file_run_by_nbclient_continues_in_jupyterlab():
    source = "%%gemini -c t\nQ"
    record = {"format": RECORD, "version": 1, "conversation": "t", "key": cell_key(None, source), "before": None,
              "at": "2026-01-01", "user": {"role": "user", "parts": [{"text": "Q"}]},
              "model": {"role": "model", "parts": [{"text": "A"}]}}
    second = dict(record, key=cell_key(None, source) + "#2", before=record["key"], at="2026-01-02")
    nb = notebook_of([("id-1", source, [record, second])])
    assert [t.key for t in saved_turns(nb, "t", cell_ids=True).turns] == ["cell:id-1", "cell:id-1#2"]
    assert [t.key for t in saved_turns(nb, "t", cell_ids=False).turns] == [cell_key(None, source),
                                                                         cell_key(None, source) + "#2"]


@pytest.mark.parametrize("damage", [
    lambda r: r.pop("user"), lambda r: r.update(format="other"), lambda r: r.update(version=2),
    lambda r: r.update(at=5), lambda r: r.update(model={"parts": "not a list"}), lambda r: r.update(key=None),
])
def test_a_damaged_or_foreign_record_is_skipped(damage):
    good = {"format": RECORD, "version": 1, "conversation": "t", "key": "cell:x", "before": None, "at": "2026",
            "user": {"role": "user", "parts": [{"text": "Q"}]}, "model": {"role": "model", "parts": [{"text": "A"}]}}
    bad = json.loads(json.dumps(good))
    damage(bad)
    assert saved_turns(notebook_of([("x", "s", [bad])]), "t", cell_ids=True).turns == []
    assert len(saved_turns(notebook_of([("x", "s", [good])]), "t", cell_ids=True).turns) == 1


def test_a_cycle_of_before_keys_cannot_loop():
    def rec(key, before, at):
        return {"format": RECORD, "version": 1, "conversation": "t", "key": key, "before": before, "at": at,
                "user": {"role": "user", "parts": [{"text": key}]}, "model": {"role": "model", "parts": []}}

    nb = notebook_of([("a", "A", [rec("a", "b", "2026-01-02")]), ("b", "B", [rec("b", "a", "2026-01-01")])])
    got = saved_turns(nb, "t", cell_ids=False)
    assert len(got.turns) == 2 and got.broken


def test_other_conversations_and_outputs_are_ignored():
    nb = notebook_of([("x", "s", [])])
    nb["cells"][0]["outputs"].append({"output_type": "stream", "name": "stdout", "text": "hi"})
    nb["cells"].append({"cell_type": "markdown", "id": "m", "metadata": {}, "source": "# t"})
    assert list(records(nb)) == [] and saved_turns(nb, "t", cell_ids=True).turns == []


# -- finding the file ----------------------------------------------------------------------


def test_the_file_is_found_from_jupyter_server_or_vs_code(ip, tmp_path, env):
    path = tmp_path / "n.ipynb"
    path.write_text("{}")
    assert find(ip) is None
    env.setenv("JPY_SESSION_NAME", str(path))
    assert find(ip) == path
    env.setenv("JPY_SESSION_NAME", str(tmp_path / "renamed-since.ipynb"))  # stale: not found
    assert find(ip) is None
    ip.user_ns["__vsc_ipynb_file__"] = str(path)
    assert find(ip) == path


def test_without_the_file_an_interactive_frontend_is_told_once_how_to_continue(ip, server, capsys):
    server.queue("A1", "A2", "A3")
    ok(ip, "%%gemini -c x\nQ1", cell_id="x1")
    ok(ip, "%%gemini -c y\nQ2", cell_id="y1")
    err = capsys.readouterr().err
    assert err.count("cannot see which notebook file it runs") == 1 and "%gemini load x NOTEBOOK.ipynb" in err


def test_a_headless_run_without_cell_ids_is_not_told(ip, server, capsys):
    server.queue("A1")
    ok(ip, "%%gemini -c x\nQ1")  # nbclient, papermill, nbval send no cell id
    assert "notebook file" not in capsys.readouterr().err


# -- %gemini load from a notebook ------------------------------------------------------------


def test_load_takes_a_conversation_from_a_notebook_file(ip, server, saved):
    path, _ = saved
    server.queue("Noted.")
    ok(ip, f"%gemini load trip {path}")
    assert len(gemini_magic.conversation("trip").turns) == 3
    ok(ip, "%%gemini -c trip\nSummarise.", cell_id="s")
    assert len(server.last.body["contents"]) == 7


def test_load_from_a_notebook_without_that_chat_names_the_ones_it_has(ip, saved):
    path, _ = saved
    error = failed(ip, f"%gemini load other {path}")
    assert "holds no saved turns of chat 'other'" in str(error) and "trip" in str(error)


# -- untrusted output stays inert when it comes back -----------------------------------------


def test_a_hostile_answer_in_a_restored_conversation_is_as_inert_as_a_fresh_one(ip, server, tmp_path, env):
    hostile = "<img src=x onerror=alert(1)> <script>alert(2)</script> [x](javascript:alert(3))"
    server.queue(hostile)
    ok(ip, "%%gemini -c h\nQ", cell_id="h1")
    path = tmp_path / "h.ipynb"
    path.write_text(json.dumps(notebook_of([("h1", "%%gemini -c h\nQ", [record_of("h")])])))
    reload(ip)
    env.setenv("JPY_SESSION_NAME", str(path))
    from gemini_magic.render.bundles import transcript_bundle

    restored = gemini_magic.conversation("h")
    assert restored.turns[0].text("model") == hostile
    assert_inert(transcript_bundle(restored)["text/html"])


# -- a real kernel: run, save, restart, continue -----------------------------------------------


def _saved_outputs(execution) -> list:
    """The outputs a frontend keeps for a cell (display_data as last updated)."""
    outputs, by_id = [], {}
    for msg in execution.messages:
        kind = msg["msg_type"]
        if kind in ("display_data", "stream", "execute_result", "error"):
            output = nbformat.v4.output_from_msg(msg)
            outputs.append(output)
            display_id = msg["content"].get("transient", {}).get("display_id")
            if display_id:
                by_id.setdefault(display_id, []).append(output)
        elif kind == "update_display_data":
            for output in by_id.get(msg["content"]["transient"]["display_id"], []):
                output["data"], output["metadata"] = msg["content"]["data"], msg["content"]["metadata"]
    return outputs


def test_a_kernel_restart_continues_the_conversation_the_notebook_shows(server, tmp_path):
    path = tmp_path / "restart.ipynb"
    cells = [("a", "%%gemini -c trip\nPlan Kyoto."), ("b", "%%gemini -c trip\nDay one?")]
    nb = nbformat.v4.new_notebook()
    server.queue(Reply(parts=[{"text": "Kyoto.", "thoughtSignature": SIGNATURE}]), "Temples.", "Food.", "Kyoto!")
    env = kernel_environment(server.url)
    env["JPY_SESSION_NAME"] = str(path)
    first = KernelSession(env, cwd=str(tmp_path))
    first.start()
    try:
        first.run("%load_ext gemini_magic", check=True)
        for cell_id, source in cells:
            ex = first.run(source, check=True, cell_id=cell_id)
            cell = nbformat.v4.new_code_cell(source)
            cell.id, cell.outputs = cell_id, _saved_outputs(ex)
            nb.cells.append(cell)
    finally:
        first.stop()
    nbformat.write(nb, path)
    assert TEST_KEY not in path.read_text()

    second = KernelSession(env, cwd=str(tmp_path))
    second.start()
    try:
        second.run("%load_ext gemini_magic", check=True)
        ex = second.run("%%gemini -c trip\nDay two?", check=True, cell_id="c")
        assert turns(server.last) == [("user", "Plan Kyoto."), ("model", "Kyoto."), ("user", "Day one?"),
                                      ("model", "Temples."), ("user", "Day two?")]
        assert signatures(server.last.body["contents"][1]) == [SIGNATURE]
        assert "continues from the 2 turn(s) saved in restart.ipynb" in ex.notes()
        assert ex.stream_text("stderr") == ""
        # Re-running the first cell replaces its turn, as before the restart.
        ex = second.run(cells[0][1], check=True, cell_id="a")
        assert turns(server.last) == [("user", "Plan Kyoto.")]
        # Only the turn asked in this kernel counts as news; the restored one just goes.
        assert "the 1 turn(s) after it were dropped" in ex.notes()
    finally:
        second.stop()

"""Agent mode in a `%%gemini --agent` cell, run for real in JupyterLab 4 (headless Chromium)
with the checkout's JupyterLab extension; the fake Gemini server, in this process, scripts
the model's run_python calls.

1. `--approve auto`: the model runs two pieces of code, then answers. The answer shows two
   code cards (`.gemini-code-run`), both done, the second with the value 42; the note "The
   code Gemini ran is in the 2 cells below."; and exactly two new code cells directly below
   the asking cell, with those sources, marked (`metadata.gemini_magic.inserted_by`, the
   key of the asking cell's output) and never run; the user's cell below them is untouched.
   Asking again (a script of one run) replaces them with one cell: they do not pile up.
2. Approval in the cell (no `--approve`): JupyterLab's stdin box asks "Run this code?
   [y/N]" with the card, holding the code and "waiting for your approval", above it.
   `n` + Enter: the code did not run (a probe cell sees no variable and no file), the card
   says "not run", the model is told the user declined, and no cell is inserted. Asking
   again and answering `y` runs the same code: the probe sees its value, one cell below.

The kernel's state is read by running a probe cell, as a user would. Screenshots go to
test-artifacts/browser/agent-cells-*.png.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.browser.lab import ARTIFACTS, browser_context, serve_fake, serve_lab, wait_until
from tests.browser.test_insert_cells import Notebook
from tests.conftest import TEST_KEY, kernel_environment
from tests.fake_gemini import Reply
from tests.test_tools import contents, fc, function_responses

pytestmark = pytest.mark.browser

LOAD = "%load_ext gemini_magic"
# Reads the kernel's state; also whether the extension has answered the hello yet.
PROBE = (
    "import json, os, gemini_magic\n"
    'print("STATE=" + json.dumps({"many": gemini_magic._magics.frontend.inserts_many,\n'
    '    "a": globals().get("a"), "b": globals().get("b"), "c": globals().get("c"),\n'
    '    "approved": globals().get("approved"), "marker": os.path.exists("approved.txt")}))'
)

# -- 1. --approve auto
ASK_AUTO = "%%gemini --agent --approve auto\nWhat is 20 + 22? Work it out in Python."
RUN_A = "a = 20"
RUN_B = "b = a + 22\nb"
RUN_C = "c = b * 2"

# -- 2. approval in the browser: the same code refused, then approved
ASK_APPROVE = "%%gemini --agent\nSet `approved` to six times seven."
APPROVED_CODE = "open('approved.txt', 'w').close()\napproved = 6 * 7\nprint('RAN', approved)"
QUESTION = "Run this code (#1)? [y/N]"


@pytest.fixture(scope="module")
def fake():
    yield from serve_fake()


@pytest.fixture(scope="module")
def lab(tmp_path_factory, fake):
    yield from serve_lab(tmp_path_factory, "agent_cells", kernel_environment(fake.url, TEST_KEY))


@pytest.fixture(scope="module")
def context(lab):
    yield from browser_context()


class AgentNotebook(Notebook):
    def output(self, source: str):
        return self.cell(self.sources().index(source)).locator(".jp-OutputArea")

    def state(self) -> dict:
        self.run(PROBE)
        text = self.output(PROBE).inner_text()
        found = re.search(r"STATE=(\{.*\})", text)
        assert found, text
        return json.loads(found.group(1))

    def loaded(self) -> None:
        """`%load_ext` run, and the extension's answer to its hello arrived (between cells)."""
        self.run(LOAD)
        wait_until(lambda: self.state()["many"], 30, "the extension's answer to the hello", interval=0.5)

    def shot(self, name: str, source: str | None = None) -> None:
        if source is not None:
            self.cell(self.sources().index(source)).scroll_into_view_if_needed()
        self.page.screenshot(path=str(ARTIFACTS / f"agent-cells-{name}.png"))


@pytest.fixture
def open_notebook(lab, context, fake):
    opened: list[AgentNotebook] = []

    def open_(name: str, cells: list[str]) -> AgentNotebook:
        notebook = AgentNotebook(lab, context, name, [(source, {}) for source in cells])
        opened.append(notebook)
        return notebook

    fake.reset()
    yield open_
    fake.reset()
    for notebook in opened:
        notebook.close()


def cards(output):
    return output.locator(".gemini-code-run")


def card_texts(output) -> list[str]:
    return [t.replace("\u200b", "") for t in cards(output).all_inner_texts()]


def sent_responses(fake) -> list[dict]:
    """What each generate request sent back to the model after a function call, in order."""
    out = []
    for request in list(fake.requests):
        if request.action in ("generateContent", "streamGenerateContent"):
            sent = function_responses(contents(request)[-1])
            out += [s["response"] for s in sent]
    return out


def run_call(code: str, call_id: str) -> Reply:
    return Reply(parts=[fc("run_python", {"code": code}, call_id)])


def asking_output(cells: list[dict], source: str) -> dict:
    """The asking cell's output carrying the insert request (its metadata), on disk."""
    cell = next(c for c in cells if "".join(c["source"]) == source)
    found = [o for o in cell["outputs"] if (o.get("metadata") or {}).get("gemini_magic", {}).get("insert_code")]
    assert len(found) == 1, cell["outputs"]
    return found[0]


# -- 1. --approve auto -----------------------------------------------------------------------------


def test_auto_runs_become_cells_below(open_notebook, fake):
    nb = open_notebook("agent_cells_auto.ipynb", [LOAD, ASK_AUTO, PROBE])
    nb.loaded()

    fake.queue(run_call(RUN_A, "c1"), run_call(RUN_B, "c2"), Reply(text="The answer is **42**."))
    nb.run(ASK_AUTO)
    expected = [LOAD, ASK_AUTO, RUN_A, RUN_B, PROBE]
    nb.settled(expected)
    out = nb.output(ASK_AUTO)
    # Two cards, both done, in order; the second shows its value.
    texts = card_texts(out)
    assert len(texts) == 2, texts
    assert [cards(out).nth(i).get_attribute("data-status") for i in range(2)] == ["ok", "ok"]
    assert "a = 20" in texts[0] and "done" in texts[0], texts[0]
    assert "b = a + 22" in texts[1] and "done" in texts[1], texts[1]
    assert re.search(r"value\s*42\b", texts[1]), texts[1]
    text = out.inner_text()
    assert "The answer is 42." in text, text
    assert "The code Gemini ran is in the 2 cells below." in text, text
    assert QUESTION not in text and out.locator(".jp-Stdin").count() == 0
    # The model got both results back.
    assert sent_responses(fake) == [{"result": "(ran; no output and no value)"}, {"result": "42"}]
    nb.shot("1-two-cells", ASK_AUTO)
    # The inserted cells were never run: no prompt number, no output.
    for index in (2, 3):
        assert nb.prompt(index) == "[ ]:", nb.prompt(index)
        assert nb.cell(index).locator(".jp-OutputArea-output").count() == 0

    cells = nb.save(expected, ran=ASK_AUTO)
    key = asking_output(cells, ASK_AUTO)["metadata"]["gemini_magic"]["insert_code"]["key"]
    assert key
    assert [c["metadata"].get("gemini_magic") for c in cells] == [None, None, {"inserted_by": key},
                                                                 {"inserted_by": key}, None]
    assert [(c["outputs"], c["execution_count"]) for c in cells[2:4]] == [([], None)] * 2
    state = nb.state()
    assert (state["a"], state["b"], state["c"]) == (20, 42, None), state

    # Asked again, one run: it replaces the two (the first updated in place), no pile-up.
    fake.queue(run_call(RUN_C, "c3"), Reply(text="Doubled: 84."))
    nb.run(ASK_AUTO)
    expected = [LOAD, ASK_AUTO, RUN_C, PROBE]
    nb.settled(expected)
    out = nb.output(ASK_AUTO)
    texts = card_texts(out)
    assert len(texts) == 1 and "c = b * 2" in texts[0] and "done" in texts[0], texts
    text = out.inner_text()
    assert "The code Gemini ran is in the 1 cell below." in text and "Doubled: 84." in text, text
    again = nb.save(expected, ran=ASK_AUTO)
    assert asking_output(again, ASK_AUTO)["metadata"]["gemini_magic"]["insert_code"]["key"] == key
    assert [c["metadata"].get("gemini_magic") for c in again] == [None, None, {"inserted_by": key}, None]
    assert again[2]["id"] == cells[2]["id"] and (again[2]["outputs"], again[2]["execution_count"]) == ([], None)
    assert again[3]["id"] == cells[4]["id"]  # the user's probe cell is the same cell
    assert nb.state()["c"] == 84
    nb.shot("2-replaced", ASK_AUTO)


# -- 2. approval in the browser --------------------------------------------------------------------


def answer_stdin(nb: AgentNotebook, source: str, reply: str, status: str) -> None:
    """The cell asks "Run this code? [y/N]" below the card that shows the code; type `reply`."""
    out = nb.output(source)
    stdin = out.locator(".jp-Stdin")
    stdin.wait_for(timeout=30_000)
    assert QUESTION in stdin.locator(".jp-Stdin-prompt").inner_text()
    card = cards(out)
    assert card.count() == 1
    assert card.first.is_visible()
    text = card.first.inner_text().replace("\u200b", "")
    assert "approved = 6 * 7" in text and "waiting for your approval" in text, text
    assert card.first.get_attribute("data-status") == "asking"
    assert card.first.bounding_box()["y"] + card.first.bounding_box()["height"] <= stdin.bounding_box()["y"]
    nb.shot(f"3-asking-{status}", source)
    box = stdin.locator("input.jp-Stdin-input")
    box.click()
    box.type(reply)
    box.press("Enter")


def test_approval_in_the_stdin_box(open_notebook, fake):
    nb = open_notebook("agent_cells_approve.ipynb", [LOAD, ASK_APPROVE, PROBE])
    nb.loaded()

    # n: refused.
    fake.queue(run_call(APPROVED_CODE, "c1"), Reply(text="Fine, I did not run it."))
    prompt = nb.start(ASK_APPROVE)
    answer_stdin(nb, ASK_APPROVE, "n", "n")
    nb.finish(prompt, "the refused agent cell")
    nb.settled([LOAD, ASK_APPROVE, PROBE])  # nothing ran, so nothing is inserted
    out = nb.output(ASK_APPROVE)
    texts = card_texts(out)
    assert len(texts) == 1 and "not run" in texts[0] and "approved = 6 * 7" in texts[0], texts
    assert cards(out).first.get_attribute("data-status") == "refused"
    text = out.inner_text()
    assert "Fine, I did not run it." in text and "cells below" not in text and "cell below" not in text, text
    assert "Gemini ran no code." in text
    assert "RAN 42" not in text
    assert out.locator(".jp-Stdin").count() == 0
    assert "declined" in sent_responses(fake)[-1]["error"]
    state = nb.state()
    assert (state["approved"], state["marker"]) == (None, False), state
    assert not (nb.lab.root / "approved.txt").exists()
    nb.shot("4-refused", ASK_APPROVE)

    # y: the same code runs.
    fake.queue(run_call(APPROVED_CODE, "c2"), Reply(text="Done: approved is 42."))
    prompt = nb.start(ASK_APPROVE)
    answer_stdin(nb, ASK_APPROVE, "y", "y")
    nb.finish(prompt, "the approved agent cell")
    nb.settled([LOAD, ASK_APPROVE, APPROVED_CODE, PROBE])
    out = nb.output(ASK_APPROVE)
    texts = card_texts(out)
    assert len(texts) == 1 and "done" in texts[0] and "RAN 42" in texts[0], texts
    assert cards(out).first.get_attribute("data-status") == "ok"
    text = out.inner_text()
    assert "Done: approved is 42." in text and "The code Gemini ran is in the 1 cell below." in text, text
    assert sent_responses(fake)[-1]["stdout"] == "RAN 42\n"
    state = nb.state()
    assert (state["approved"], state["marker"]) == (42, True), state
    assert nb.prompt(2) == "[ ]:"
    nb.shot("5-approved", ASK_APPROVE)

    # n again: no code ran this time, so the cell the last answer put below goes.
    fake.queue(run_call(APPROVED_CODE, "c3"), Reply(text="Fine, I did not run it."))
    prompt = nb.start(ASK_APPROVE)
    answer_stdin(nb, ASK_APPROVE, "n", "n")
    nb.finish(prompt, "the refused agent cell, again")
    nb.settled([LOAD, ASK_APPROVE, PROBE])
    assert "Gemini ran no code." in nb.output(ASK_APPROVE).inner_text()

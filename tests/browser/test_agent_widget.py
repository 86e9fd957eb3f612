"""Agent mode in the chat widget as a user sees it in JupyterLab 4 (headless Chromium).

One notebook, a chat made with `--agent`, the fake Gemini server in this process
scripting the model's run_python calls; the user clicks the approval's buttons:

1. Run: while the code runs the status line says how to stop it; then the answer's card
   shows the code and what it printed, and the variable it made is in the kernel;
2. Skip: the code never runs (the file it would make is not there), the card says "not
   run" and the model is told the user declined;
3. Edit, then Run: a text box holds the code; what the user typed is what ran (the card
   shows it, "edited by you", and its output), and the model is told so.

The kernel's state is read by running a probe cell, as a user would. Screenshots go to
test-artifacts/browser/agent-*.png.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.browser.lab import ARTIFACTS, browser_context, serve_fake, serve_lab, wait_until
from tests.browser.test_chat_widget import Notebook, answers, idle, last_answer, send
from tests.conftest import TEST_KEY, kernel_environment
from tests.fake_gemini import Reply
from tests.test_tools import contents, fc, function_responses

pytestmark = pytest.mark.browser

LOAD = "%load_ext gemini_magic"
CHAT = "import json, os\nchat = %gemini chat-ui agent-ui --agent\nchat"
PROBE = ('print("STATE=" + json.dumps({"ran": globals().get("agent_ran"), '
         '"edited": globals().get("agent_edited"), "skip_marker": os.path.exists("skipped.txt")}))')

RUN_CODE = "import time\ntime.sleep(1.5)\nagent_ran = 6 * 7\nprint('RUN OUTPUT', agent_ran)"
SKIP_CODE = "open('skipped.txt', 'w').close()\nprint('SHOULD NOT RUN')"
MODEL_EDIT = "agent_edited = 'from the model'"
USER_EDIT = "agent_edited = 'from the user'\nprint('EDITED <b>OUTPUT</b>')"


@pytest.fixture(scope="module")
def fake():
    yield from serve_fake()


@pytest.fixture(scope="module")
def lab(tmp_path_factory, fake):
    yield from serve_lab(tmp_path_factory, "agent", kernel_environment(fake.url, TEST_KEY), extension="optional")


@pytest.fixture(scope="module")
def context(lab):
    yield from browser_context()


class AgentNotebook(Notebook):
    def shot(self, name: str, locator=None) -> None:
        (locator or self.page).screenshot(path=str(ARTIFACTS / f"agent-{name}.png"))

    def run_cell(self, index: int, timeout: float = 60) -> str:
        """Run code cell `index` (Ctrl+Enter) and return its output's text once it has run."""
        cell = self.panel.locator(".jp-CodeCell").nth(index)
        prompt = cell.locator(".jp-InputPrompt")
        before = prompt.inner_text().strip()
        prompt.click()  # selects the cell, command mode
        self.page.keyboard.press("Control+Enter")
        wait_until(lambda: re.fullmatch(r"\[\d+\]:", prompt.inner_text().strip())
                   and prompt.inner_text().strip() != before, timeout, f"cell {index} to run")
        return cell.locator(".jp-OutputArea").inner_text()

    def state(self) -> dict:
        text = self.run_cell(2)
        found = re.search(r"STATE=(\{.*\})", text)
        assert found, text
        return json.loads(found.group(1))


@pytest.fixture
def notebook(lab, context):
    nb = AgentNotebook(lab, context, "agent_widget.ipynb", [LOAD, CHAT, PROBE])
    yield nb
    nb.close()


def code_question(chat):
    """The Run / Skip / Edit question, once it shows."""
    box = chat.locator(".gm-code-approval")
    box.wait_for(timeout=30_000)
    return box


def button(box, label: str):
    return box.locator("button.jupyter-widgets", has_text=re.compile(f"^\\s*{label}\\s*$"))


def last_card(chat):
    return answers(chat).last.locator(".gemini-code-run")


def sent_response(fake) -> dict:
    """The function response the last request sent back to the model."""
    request = [r for r in list(fake.requests) if r.action in ("generateContent", "streamGenerateContent")][-1]
    sent = function_responses(contents(request)[-1])
    assert len(sent) == 1, sent
    return sent[0]["response"]


def test_run_skip_and_edit_by_clicking(notebook, fake):
    nb = notebook
    nb.run_all()
    chat = nb.chat(1)
    # Made with --agent: the Agent toggle, next to the ¶ one, is on.
    toggle = chat.locator("button.jupyter-widgets", has_text="Agent")
    assert toggle.count() == 1 and "mod-active" in (toggle.get_attribute("class") or "")
    wait_until(lambda: "STATE=" in nb.output(2).inner_text(), 30, "the probe cell's first run")
    assert nb.state() == {"ran": None, "edited": None, "skip_marker": False}

    # 1. Run.
    fake.queue(Reply(parts=[fc("run_python", {"code": RUN_CODE}, "c1")]), Reply(text="It is 42."))
    send(chat, "Compute six times seven.")
    box = code_question(chat)
    assert "agent_ran = 6 * 7" in box.inner_text()
    assert [b.inner_text().strip() for b in box.locator("button.jupyter-widgets").all()] == ["Run", "Edit", "Skip"]
    assert "waiting for your approval" in last_card(chat).inner_text()
    nb.shot("1a-question", chat)
    button(box, "Run").click()
    status = chat.locator(".gm-status")
    wait_until(lambda: "interrupt the kernel to stop it" in (status.first.inner_text() if status.count() else ""),
               20, "the status line while the code runs", interval=0.05)
    wait_until(lambda: "It is 42." in last_answer(chat) and idle(chat), 30, "the answer after Run")
    assert chat.locator(".gm-code-approval").count() == 0
    card = last_card(chat)
    text = card.inner_text()
    assert "agent_ran = 6 * 7" in text and "RUN OUTPUT 42" in text and "done" in text, text
    assert "interrupt the kernel" not in " ".join(status.all_inner_texts())
    assert sent_response(fake)["stdout"] == "RUN OUTPUT 42\n"
    nb.shot("1b-ran", chat)

    # 2. Skip.
    fake.queue(Reply(parts=[fc("run_python", {"code": SKIP_CODE}, "c2")]), Reply(text="Fine, not run."))
    send(chat, "Make the file.")
    box = code_question(chat)
    assert "skipped.txt" in box.inner_text()
    button(box, "Skip").click()
    wait_until(lambda: "Fine, not run." in last_answer(chat) and idle(chat), 30, "the answer after Skip")
    card = last_card(chat)
    text = card.inner_text()
    assert "not run: you declined it" in text and text.count("SHOULD NOT RUN") == 1, text  # in the code only
    assert "declined" in sent_response(fake)["error"]
    assert not (nb.lab.root / "skipped.txt").exists()
    nb.shot("2-skipped", chat)

    # 3. Edit, then Run.
    fake.queue(Reply(parts=[fc("run_python", {"code": MODEL_EDIT}, "c3")]), Reply(text="You changed it."))
    send(chat, "Set a variable.")
    box = code_question(chat)
    button(box, "Edit").click()
    editor = box.locator(".gm-code-editor textarea")
    editor.wait_for()
    assert editor.input_value() == MODEL_EDIT
    assert button(box, "Edit").is_disabled()
    editor.fill(USER_EDIT)
    nb.shot("3a-editing", chat)
    button(box, "Run").click()
    wait_until(lambda: "You changed it." in last_answer(chat) and idle(chat), 30, "the answer after Edit")
    card = last_card(chat)
    text = card.inner_text()
    assert "from the user" in text and "from the model" not in text, text
    assert "edited by you" in text and "EDITED <b>OUTPUT</b>" in text, text
    assert card.locator("b", has_text="OUTPUT").count() == 0  # the output is text, never markup
    response = sent_response(fake)
    assert response["edited_by_user"] is True and response["code_that_ran"] == USER_EDIT
    nb.shot("3b-edited", chat)

    # The kernel: what ran is there, what was skipped is not.
    assert nb.state() == {"ran": 42, "edited": "from the user", "skip_marker": False}
    assert not (nb.lab.root / "skipped.txt").exists()
    nb.shot("4-page")

"""The chat widget (`%gemini chat-ui NAME`) as a user sees it in JupyterLab 4 (headless Chromium).

One JupyterLab server and one browser serve the module; each scenario opens its own
notebook in its own Lab workspace and runs it against the fake Gemini server, which runs
in this process (so a test can queue answers and read the requests it received):

1. the input stays pinned under the transcript: after 20 messages sent from the input box
   the widget keeps its height, the input is in view, and the transcript's scroll box
   (`.gm-scroll`) shows the newest message while the oldest have scrolled away;
2. a server error (503) retried: while the retry waits the answer's bubble says
   "Retrying in N s (attempt k of n)", not "Gemini is writing…"; when every attempt has
   failed it shows the error, in sentences, with a Retry button (`.gm-retry-row button`)
   that sends the question again and shows the new answer in its place;
3. a saved notebook reopened after its kernel is gone shows the static transcript
   (`.gm-transcript-static`) with the messages' text, and a hostile answer in it runs
   nothing.

That the chat's model is its own (a settings-panel pick does not change it) is checked by
test_jupyterlab.py. Screenshots go to test-artifacts/browser/chat-*.png.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.browser.lab import (
    ARTIFACTS,
    Lab,
    browser_context,
    serve_fake,
    serve_lab,
    wait_until,
    write_notebook,
)
from tests.conftest import TEST_KEY, kernel_environment

pytestmark = pytest.mark.browser

LOAD = "%load_ext gemini_magic"
HOSTILE = 'Look: <img src=x onerror="window.pwned=1"> <script>window.pwned=2</script> end.'

# Anything not matched is echoed ("Echo: <question>"); the retry test queues its answers.
SCRIPT = {"rules": [{"match": "Say something hostile", "reply": {"text": HOSTILE}}]}

# The messages' HTML widgets, in order (an answer's bubble is a .gm-model inside one).
MESSAGES = ".gm-scroll .gm-messages > .widget-html"


# -- the module's services --------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake():
    yield from serve_fake(SCRIPT)


@pytest.fixture(scope="module")
def lab(tmp_path_factory, fake):
    # The chat widget itself needs only ipywidgets: the extension is loaded where built.
    yield from serve_lab(tmp_path_factory, "chat", kernel_environment(fake.url, TEST_KEY), extension="optional")


@pytest.fixture(scope="module")
def context(lab):
    yield from browser_context()


class Notebook:
    """One notebook open in its own Lab workspace (so no other test's tabs come back)."""

    def __init__(self, lab: Lab, context, name: str, cells: list[str]):
        self.lab, self.name = lab, name
        write_notebook(lab.root / name, cells)
        self.page = context.new_page()
        workspace = name.removesuffix(".ipynb").replace("_", "-")
        self.page.goto(f"{lab.url}/lab/workspaces/{workspace}/tree/{name}?token={lab.token}")
        self._find_panel()
        wait_until(lambda: lab.kernel_ready(name), 60, f"the kernel of {name} to be idle")

    def _find_panel(self) -> None:
        tab = self.page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text=self.name).first
        tab.wait_for(timeout=60_000)
        self.panel = self.page.locator(f"[id='{tab.get_attribute('data-id')}']")
        self.panel.locator(".jp-CodeCell").first.wait_for()

    def output(self, index: int):
        return self.panel.locator(".jp-CodeCell").nth(index).locator(".jp-OutputArea")

    def menu(self, top: str, item: str) -> None:
        self.page.locator(".lm-MenuBar-itemLabel", has_text=top).first.click()
        self.page.locator(".lm-Menu-itemLabel").filter(has_text=re.compile(f"^{re.escape(item)}$")).first.click()

    def run_all(self) -> None:
        self.menu("Run", "Run All Cells")
        dialog = self.page.locator(".jp-Dialog .jp-mod-accept")
        if dialog.count():  # a stray "Select Kernel" dialog: accept it and run again
            dialog.first.click()
            self.menu("Run", "Run All Cells")

    def chat(self, index: int):
        """The live chat widget shown by cell `index`, once it has rendered."""
        chat = self.output(index).locator(".gm-chat")
        chat.wait_for(timeout=60_000)
        chat.locator(".widget-text input").wait_for()
        return chat

    def shot(self, name: str, locator=None) -> None:
        (locator or self.page).screenshot(path=str(ARTIFACTS / f"chat-{name}.png"))

    def close(self) -> None:
        """Close the page and shut the notebook's kernel down (two cores are few)."""
        self.page.close()
        try:
            self.lab.delete_sessions(self.name)
        except OSError:
            pass


@pytest.fixture
def open_notebook(lab, context):
    opened: list[Notebook] = []

    def open_(name: str, cells: list[str]) -> Notebook:
        notebook = Notebook(lab, context, name, cells)
        opened.append(notebook)
        return notebook

    yield open_
    for notebook in opened:
        notebook.close()


# -- chat helpers -----------------------------------------------------------------------------------


def answers(chat):
    """The answers' message widgets (each holds a .gm-model bubble)."""
    return chat.locator(".widget-html:has(.gm-model)")


def last_answer(chat) -> str:
    found = answers(chat)
    return found.last.inner_text() if found.count() else ""


def idle(chat) -> bool:
    """No answer is being received: Send is enabled again and Stop is not."""
    return (chat.locator("button", has_text="Send").is_enabled()
            and chat.locator("button", has_text="Stop").is_disabled())


def send(chat, text: str) -> None:
    """Type into the input box and press Enter, as a user does."""
    box = chat.locator(".widget-text input")
    box.fill(text)
    box.press("Enter")


def ask(chat, text: str, expect: str, timeout: float = 20) -> None:
    """Send `text` and wait until its answer, containing `expect`, has ended."""
    send(chat, text)
    wait_until(lambda: expect in last_answer(chat) and idle(chat), timeout, f"the answer to {text!r}")


def generate_requests(fake, needle: str) -> list:
    return [r for r in list(fake.requests)
            if r.action in ("generateContent", "streamGenerateContent") and needle in r.last_user_text()]


# Where things are on screen: the widget, its scroll box, the newest and oldest messages and
# the input box, as client rectangles; and what is really on top at the centre of each.
GEOMETRY = """(chat, selector) => {
  const rect = e => { const r = e.getBoundingClientRect(); return {top: r.top, bottom: r.bottom, left: r.left,
                      right: r.right, height: r.height}; };
  const onTop = e => { const r = e.getBoundingClientRect();
    const hit = document.elementFromPoint((r.left + r.right) / 2, (r.top + r.bottom) / 2);
    return !!hit && (hit === e || e.contains(hit)); };
  const scroll = chat.querySelector('.gm-scroll');
  const messages = [...chat.querySelectorAll(selector)];
  const newest = messages[messages.length - 1], oldest = messages[0];
  const input = chat.querySelector('.widget-text input');
  return {viewport: window.innerHeight, chat: rect(chat), scroll: rect(scroll), count: messages.length,
          scrollHeight: scroll.scrollHeight, clientHeight: scroll.clientHeight,
          newest: rect(newest), newestText: newest.innerText, newestOnTop: onTop(newest),
          oldest: rect(oldest), input: rect(input), inputOnTop: onTop(input)};
}"""


# -- 1. the input stays pinned; the newest message shows -----------------------------------------


def test_input_stays_pinned_and_newest_message_shows_after_many_messages(open_notebook):
    nb = open_notebook("chat_pinned.ipynb", [LOAD, "chat = %gemini chat-ui pinned\nchat"])
    nb.run_all()
    chat = nb.chat(1)
    sent = 20
    for number in range(1, sent + 1):
        ask(chat, f"message number {number}", f"Echo: message number {number}")
    nb.shot("1-pinned-page")
    nb.shot("1-pinned-widget", chat)
    g = chat.evaluate(GEOMETRY, MESSAGES)
    assert g["count"] == 2 * sent, g
    # The transcript overflows its scroll box (so this checks scrolling, not a short chat)
    # and the box stays bounded: the widget keeps one height and fits the window.
    assert g["scrollHeight"] > g["clientHeight"] + 200, g
    assert g["scroll"]["height"] <= 525, g
    assert g["chat"]["height"] <= g["viewport"], g
    # The input: under the transcript, inside the widget, in the window, not covered.
    box = g["input"]
    assert box["top"] >= g["scroll"]["bottom"] - 1, g
    assert g["chat"]["top"] <= box["top"] and box["bottom"] <= g["chat"]["bottom"], g
    assert 0 <= box["top"] and box["bottom"] <= g["viewport"], g
    assert g["inputOnTop"], g
    # The newest message is the last answer, wholly inside the scroll box's visible area
    # and on top there; the oldest has scrolled out of it.
    assert f"Echo: message number {sent}" in g["newestText"], g
    newest, scroll = g["newest"], g["scroll"]
    assert scroll["top"] - 1 <= newest["top"] and newest["bottom"] <= scroll["bottom"] + 1, g
    assert g["newestOnTop"], g
    assert g["oldest"]["bottom"] <= scroll["top"] + 1, g
    # The box is still usable: one more message also shows at the bottom.
    ask(chat, "one more", "Echo: one more")
    g = chat.evaluate(GEOMETRY, MESSAGES)
    assert "Echo: one more" in g["newestText"] and g["newestOnTop"], g
    assert g["scroll"]["top"] - 1 <= g["newest"]["top"] and g["newest"]["bottom"] <= g["scroll"]["bottom"] + 1, g


# -- 2. a retried server error: status in the bubble, then the error and a Retry button ------------


QUESTION = "Are you there?"
GOOD_ANSWER = "Yes: here now, after the outage."


def test_retry_status_then_error_and_retry_button(open_notebook, fake):
    from tests.fake_gemini import Error, Reply

    nb = open_notebook("chat_retry.ipynb", [
        LOAD,
        "%config GeminiMagics.retry_attempts = 3",
        "chat = %gemini chat-ui retrying\nchat",
    ])
    nb.run_all()
    chat = nb.chat(2)
    ask(chat, "warm up", "Echo: warm up")  # the chat works; the outage starts now
    before = len(generate_requests(fake, QUESTION))
    # Three attempts in all (retry_attempts), each one overloaded; RetryInfo sets the waits.
    fake.queue(Error.server(503, retry_delay="2s"), Error.server(503, retry_delay="1s"),
               Error.server(503, retry_delay="1s"))
    send(chat, QUESTION)
    seen: list[str] = []

    def watch(done):
        def check():
            text = last_answer(chat)
            if not seen or seen[-1] != text:
                seen.append(text)
            return done(text)
        return check

    wait_until(watch(lambda t: "Retrying in 2 s (attempt 2 of 3)" in t), 20, "the first retry's status",
               interval=0.05)
    bubble = answers(chat).last
    assert bubble.locator(".gm-bubble-status").count() == 1
    assert "Gemini is writing" not in bubble.inner_text()
    nb.shot("2a-retrying", chat)
    wait_until(watch(lambda t: "attempt 3 of 3" in t), 20, "the second retry's status", interval=0.05)
    retry = chat.locator(".gm-retry-row button")
    wait_until(watch(lambda t: retry.count() == 1 and idle(chat)), 20, "the Retry button", interval=0.05)
    # While a retry waited, the bubble said so, and never that Gemini was writing.
    retrying = [t for t in seen if "Retrying" in t]
    assert retrying and all("Gemini is writing" not in t for t in retrying), seen
    assert all("The model is overloaded. Please try again later. Retrying in" in t for t in retrying), retrying

    # Every attempt failed: the error, as sentences, and nothing about retrying or writing.
    failed = answers(chat).last
    text = failed.inner_text()
    note = failed.locator(".gm-note.gm-error")
    assert note.count() == 1, failed.inner_html()
    error = note.inner_text().strip()
    assert "The model is overloaded. Please try again later." in error, error
    assert not re.search(r"[a-z)\]][.!?:;,][A-Za-z]", error), f"glued sentences: {error!r}"
    assert error.endswith((".", "!", "?")), error
    assert "Retrying" not in text and "Gemini is writing" not in text, text
    assert failed.locator(".gm-bubble-status").count() == 0
    assert retry.inner_text().strip() == "Retry" and retry.is_visible() and retry.is_enabled()
    # The Retry row sits right under the failed answer, the last thing in the transcript.
    assert chat.evaluate("""el => { const kids = [...el.querySelector('.gm-messages').children];
        const row = el.querySelector('.gm-retry-row'); const i = kids.indexOf(row);
        return i === kids.length - 1 && kids[i - 1].querySelector('.gm-model') !== null; }""")
    assert len(generate_requests(fake, QUESTION)) == before + 3
    nb.shot("2b-failed-with-retry", chat)

    # Retry, with the server back: the same question again, its answer in the failed one's place.
    fake.queue(Reply(text=GOOD_ANSWER))
    users_before = chat.locator(".gm-user").count()
    answers_before = answers(chat).count()
    retry.click()
    wait_until(lambda: GOOD_ANSWER in last_answer(chat) and idle(chat), 20, "the retried answer")
    assert len(generate_requests(fake, QUESTION)) == before + 4
    assert chat.locator(".gm-retry-row").count() == 0
    assert chat.locator(".gm-note.gm-error").count() == 0
    assert "overloaded" not in chat.locator(".gm-scroll").inner_text()
    assert chat.locator(".gm-user").count() == users_before
    assert chat.locator(".gm-user", has_text=QUESTION).count() == 1
    assert answers(chat).count() == answers_before
    assert chat.locator(".gm-user").last.inner_text().strip() == QUESTION
    nb.shot("2c-retried", chat)


# -- 3. the saved notebook, reopened without its kernel, shows an inert transcript --------------------


def test_saved_notebook_reopened_shows_inert_static_transcript(open_notebook):
    name = "chat_saved.ipynb"
    nb = open_notebook(name, [LOAD, "chat = %gemini chat-ui saved\nchat"])
    nb.run_all()
    chat = nb.chat(1)
    ask(chat, "What is the capital of France?", "Echo: What is the capital of France?")
    ask(chat, "Say something hostile", "end.")
    assert HOSTILE in last_answer(chat)  # shown as text
    out = nb.output(1)
    static = out.locator(".gm-transcript-static")
    # While the live widget shows, its static transcript is in the page but hidden.
    assert static.count() == 1 and not static.is_visible()
    wait_until(lambda: "Say something hostile" in (static.text_content() or ""), 10,
               "the static transcript to be updated with both turns")

    nb.menu("File", "Save Notebook")

    def saved():
        try:
            notebook = json.loads((nb.lab.root / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):  # being written
            return None
        html = "".join("".join(o.get("data", {}).get("text/html", "")) for o in notebook["cells"][1].get("outputs", []))
        return "gm-transcript-static" in html and "Say something hostile" in html

    wait_until(saved, 20, "the notebook with the chat's transcript to be saved")
    assert TEST_KEY not in (nb.lab.root / name).read_text(encoding="utf-8")

    # The kernel goes; the page is reloaded: the widget cannot render, its transcript shows.
    nb.lab.delete_sessions(name)
    wait_until(lambda: not any(s.get("path", "").endswith(name) for s in nb.lab.api("/api/sessions")), 20,
               "the session to be gone")
    nb.page.reload()
    nb._find_panel()
    out = nb.output(1)
    static = out.locator(".gm-transcript-static")
    static.wait_for(state="visible", timeout=60_000)
    # The page starts a new kernel, which knows no such widget: once it is there and the
    # widget's output has settled (it stops "Loading widget..."), the transcript still shows.
    wait_until(lambda: nb.lab.kernel_ready(name), 60, "the new kernel to be idle")
    wait_until(lambda: "Loading widget" not in out.inner_text(), 30, "the widget's output to settle")
    assert static.is_visible()
    text = static.inner_text()
    nb.shot("3-reopened")
    nb.shot("3-reopened-transcript", static)
    assert "2 turns" in text, text
    for expected in ("What is the capital of France?", "Echo: What is the capital of France?",
                     "Say something hostile", '<img src=x onerror="window.pwned=1">',
                     "<script>window.pwned=2</script>"):
        assert expected in text, (expected, text)
    assert nb.panel.locator(".gm-chat").count() == 0
    # Inert: no script, no element with an event handler, no injected image; nothing ran.
    assert nb.panel.locator(".jp-OutputArea script").count() == 0
    assert static.locator("img, iframe, object, embed, [onerror], [onload], [onclick]").count() == 0
    assert nb.page.locator('img[src="x"]').count() == 0
    assert nb.page.evaluate("() => window.pwned") is None

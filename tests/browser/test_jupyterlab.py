"""End to end in a real browser: JupyterLab, the widgets, and hostile answers.

The fake Gemini server runs as a subprocess with a script; JupyterLab's kernel points
at it (GOOGLE_GEMINI_BASE_URL, a test key, NO_PROXY). The test opens a notebook, runs
it, picks a model in the settings panel (and reads GeminiMagics.model back from the
kernel), chats in the widget (the answer grows in pieces), stops a long answer (the text
stops growing and stays), and checks that injected HTML in answers runs nothing
(`window.pwned` stays undefined). Screenshots go to test-artifacts/browser/.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.browser.lab import (
    CHROMIUM,
    CHROMIUM_ARGS,
    ROOT,
    Lab,
    missing_requirements,
    start_fake_gemini,
    stop,
    wait_until,
    write_notebook,
)
from tests.conftest import TEST_KEY, kernel_environment

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "test-artifacts" / "browser"
NOTEBOOK = "widgets_e2e.ipynb"
INJECTION = 'Here it is: <img src=x onerror="window.pwned=1"> and <script>window.pwned=2</script> end.'
GREETING = ["Hello ", "from ", "**the ", "fake** ", "Gemini, ", "streamed ", "in ", "small ", "pieces.\n\n",
            "- a list item\n", "- `inline code`\n\n", "```python\nprint('a code block')\n```"]
STORY = [f"word{i} " for i in range(80)]

SCRIPT = {
    "rules": [
        {"match": "hostile", "reply": {"chunks": [INJECTION[:30], INJECTION[30:]], "delay": 0.2}},
        {"match": "Hello there", "reply": {"chunks": GREETING, "delay": 0.35}},
        {"match": "long story", "reply": {"chunks": STORY, "delay": 0.25}},
        {"match": "Double 21", "reply": {"parts": [
            {"text": "Let me compute that. "}, {"functionCall": {"name": "double", "args": {"x": 21}}}]}},
        {"after_tools": True, "reply": {"text": "**42**, computed by your function."}},
    ],
}

CELLS = [
    "%load_ext gemini_magic",
    "panel = %gemini settings\npanel",
    "%%gemini\nRepeat the hostile text.",
    "def double(x: int) -> int:\n    \"\"\"Double a number.\"\"\"\n    return 2 * x\n\n"
    "chat = %gemini chat-ui demo\nchat.tools, chat.approve = ['double'], 'ask'\nchat",
    'print("MODEL=" + panel.magics.model)',
]


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    reason = missing_requirements()
    if reason:
        pytest.skip(f"browser test needs Chromium, Playwright and JupyterLab: {reason}")
    base = tmp_path_factory.mktemp("e2e")
    script = base / "script.json"
    script.write_text(json.dumps(SCRIPT))
    fake, url = start_fake_gemini(script, base / "fake_gemini.log")
    root = base / "root"
    root.mkdir()
    write_notebook(root / NOTEBOOK, CELLS)
    lab = Lab(root, base / "home", kernel_environment(url, TEST_KEY), base / "jupyterlab.log")
    try:
        lab.start()
        yield lab
    finally:
        lab.stop()
        stop(fake)


@pytest.fixture(scope="module")
def page(services):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1000})
            context.set_default_timeout(20_000)
            page = context.new_page()
            page.goto(f"{services.url}/lab/tree/{NOTEBOOK}?token={services.token}")
            yield page
        finally:
            browser.close()


def shot(page, name: str, locator=None) -> None:
    (locator or page).screenshot(path=str(ARTIFACTS / f"{name}.png"))


def pwned(page):
    return page.evaluate("() => window.pwned")


def notebook_panel(page):
    tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text=NOTEBOOK).first
    tab.wait_for()
    return page.locator(f"[id='{tab.get_attribute('data-id')}']")


def run_all(page, lab: Lab) -> None:
    wait_until(lambda: lab.kernel_ready(NOTEBOOK), 60, "the notebook's kernel to be idle")
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    dialog = page.locator(".jp-Dialog .jp-mod-accept")
    if dialog.count():  # a stray "Select Kernel" dialog: accept it and run again
        dialog.first.click()


def cell_output(nb, index: int):
    return nb.locator(".jp-Cell").nth(index).locator(".jp-OutputArea")


def last_model_text(chat) -> str:
    """The last answer's text, with its usage line."""
    messages = chat.locator(".widget-html:has(.gm-model)")
    return messages.last.inner_text() if messages.count() else ""


def send(chat, text: str) -> None:
    box = chat.locator(".widget-text input")
    box.fill(text)
    box.press("Enter")


def test_widgets_in_jupyterlab(services, page):
    started = time.monotonic()
    nb = notebook_panel(page)
    run_all(page, services)
    chat = nb.locator(".gm-chat")
    panel = nb.locator(".gm-settings")
    try:
        chat.wait_for(timeout=60_000)
    except Exception:
        shot(page, "0-failed-run-all")
        raise
    panel.wait_for()
    model_cell = cell_output(nb, 4)
    wait_until(lambda: "MODEL=gemini-2.5-flash" in model_cell.inner_text(), 30, "the last cell's output")

    # 1. A %%gemini answer with injected HTML shows it as text, and runs nothing.
    hostile = cell_output(nb, 2)
    wait_until(lambda: "end." in hostile.inner_text(), 20, "the hostile answer")
    assert '<img src=x onerror="window.pwned=1">' in hostile.inner_text()
    assert hostile.locator("img, script").count() == 0
    assert pwned(page) is None
    shot(page, "1-notebook")

    # 2. The settings panel: the model list is newest first; picking one changes
    #    GeminiMagics.model in the kernel.
    select = panel.locator("select").first
    options = select.locator("option").all_inner_texts()
    assert options[:2] == ["gemini-3-flash-preview", "gemini-2.5-flash"] and "gemini-embedding-001" not in options
    select.select_option("gemini-2.5-pro")
    nb.locator(".jp-Cell").nth(4).locator(".jp-InputPrompt").click()
    page.keyboard.press("Shift+Enter")
    wait_until(lambda: "MODEL=gemini-2.5-pro" in model_cell.inner_text(), 20, "the model read back from the kernel")
    shot(page, "2-settings", panel)

    # 3. The chat: Enter sends; the answer appears in pieces.
    chat.scroll_into_view_if_needed()
    send(chat, "Hello there")
    seen = []

    def finished():
        text = last_model_text(chat)
        if text and (not seen or seen[-1] != text):
            seen.append(text)
        return "a code block" in text

    wait_until(finished, 30, "the streamed answer", interval=0.05)
    partial = [t for t in seen if "Hello" in t and "a code block" not in t]
    assert len(partial) >= 2, seen  # it grew while streaming
    assert all(len(a) < len(b) for a, b in zip(partial, partial[1:], strict=False)), partial
    # The usage line (which names the model) comes when the answer ends, a moment after
    # its last text: wait for it rather than read the bubble while it is still coming.
    wait_until(lambda: "out tokens" in last_model_text(chat), 20, "the answer's usage line")
    final = last_model_text(chat)
    assert "Hello from the fake Gemini, streamed in small pieces." in final
    # The chat's model is its own ("Model (this chat)"): the panel's pick is for cells.
    assert "gemini-2.5-flash" in final and "gemini-2.5-pro" not in final
    assert chat.locator(".gm-model strong, .gm-model li, .gm-model pre code").count() == 4  # Markdown rendered
    shot(page, "3-chat", chat)

    # 4. Stop: the text stops growing and is kept.
    send(chat, "Tell me a long story")
    wait_until(lambda: "word3 " in last_model_text(chat), 30, "the long answer to start")
    chat.locator("button", has_text="Stop").click()
    wait_until(lambda: "Stopped" in last_model_text(chat), 10, "the stopped answer")
    kept = last_model_text(chat)
    time.sleep(1.5)  # six chunk intervals: a live stream would have grown
    assert last_model_text(chat) == kept
    assert "word0" in kept and "word79" not in kept
    shot(page, "4-stopped", chat)

    # 5. Injected HTML in a chat answer runs nothing either.
    send(chat, "Say the hostile thing")
    wait_until(lambda: "end." in last_model_text(chat), 20, "the hostile chat answer")
    assert '<img src=x onerror="window.pwned=1">' in last_model_text(chat)
    assert chat.locator(".gm-model img, .gm-model script").count() == 0
    page.wait_for_timeout(500)  # an onerror handler would have run by now
    assert pwned(page) is None
    shot(page, "5-hostile-chat", chat)

    # 6. A tool call asks first: Allow runs the notebook's function.
    send(chat, "Double 21, please")
    question = chat.locator(".gm-approval")
    question.wait_for()
    assert "double(x=21)" in question.inner_text()
    shot(page, "6-approval", chat)
    question.locator("button", has_text="Allow").click()
    wait_until(lambda: "computed by your function" in last_model_text(chat), 20, "the answer after the tool")
    assert "double(x=21)" in last_model_text(chat) and question.count() == 0
    assert pwned(page) is None
    shot(page, "7-tool-answer", chat)

    # 7. Multi-line mode: Enter and Shift+Enter add lines (and run no cell); Send sends.
    chat.locator(".widget-toggle-button[title=\"Multi-line message\"]").click()
    area = chat.locator(".widget-textarea textarea")
    area.click()
    area.press_sequentially("line one")
    area.press("Shift+Enter")
    area.press_sequentially("line two")
    area.press("Enter")
    area.press_sequentially("line three")
    assert area.input_value() == "line one\nline two\nline three"
    chat.locator("button", has_text="Send").click()
    wait_until(lambda: "Echo: line one" in last_model_text(chat), 20, "the multi-line message's answer")
    assert chat.locator(".gm-user").last.inner_text() == "line one\nline two\nline three"
    assert nb.locator(".gm-chat").count() == 1  # Shift+Enter did not re-run the chat's cell
    shot(page, "8-multiline", chat)
    shot(page, "9-page")
    assert time.monotonic() - started < 150

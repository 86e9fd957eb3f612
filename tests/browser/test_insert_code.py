"""The JupyterLab extension (js/, built into gemini_magic/labextension/) in a real browser.

`%%gemini -f code` must replace the cell it inserted earlier instead of adding another.
A kernel cannot address other cells, so a small frontend extension does it. This test
plays the kernel's side by hand (no Gemini involved):

- the handshake: the kernel opens a comm to the target "gemini_magic"; the extension
  answers `{"hello": "jupyterlab", "version": 1, "inserts_cells": true}`;
- inserting: an output with the metadata `{"gemini_magic": {"insert_code": {key, code}}}`
  makes the extension insert a code cell below the cell that ran, or replace the one it
  inserted before for the same key.

The prebuilt extension is copied into the test's own JUPYTER_DATA_DIR/labextensions, the
place JupyterLab looks first, so the test runs whatever is installed in the venv.
Screenshots go to test-artifacts/browser/.
"""

from __future__ import annotations

import json

import pytest

from tests.browser.lab import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    EXTENSION,
    serve_lab,
    wait_until,
)
from tests.conftest import kernel_environment

pytestmark = pytest.mark.browser

NOTEBOOK = "insert_code_e2e.ipynb"
HELLO = {"hello": "jupyterlab", "version": 1, "inserts_cells": True}

OPEN_COMM = (
    "from comm import create_comm\n"
    'c = create_comm(target_name="gemini_magic", data={"hello": "kernel", "version": 1})\n'
    "replies = []\n"
    'c.on_msg(lambda m: replies.append(m["content"]["data"]))\n'
    'KEY, CODE = "k1", "print(1)"'
)
CHECK_REPLY = 'import json\nprint("REPLIES=" + json.dumps(replies))'
# The asking cell: two outputs ask for an insert; the LAST one counts.
ASK = (
    "from IPython.display import display\n"
    'display({"text/plain": "decoy"}, raw=True,\n'
    '        metadata={"gemini_magic": {"insert_code": {"key": "decoy", "code": "decoy()"}}})\n'
    'display({"text/plain": "code"}, raw=True,\n'
    '        metadata={"gemini_magic": {"insert_code": {"key": KEY, "code": CODE}}})'
)
NEW_CODE = 'KEY, CODE = "k1", "print(2)"'
NEW_KEY = 'KEY, CODE = "k2", "print(\'k2\')"'
CELLS = [OPEN_COMM, CHECK_REPLY, ASK, NEW_CODE, NEW_KEY]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    yield from serve_lab(tmp_path_factory, "insert_code", kernel_environment(None, None),
                         notebooks=[(NOTEBOOK, CELLS)])


@pytest.fixture(scope="module")
def page(lab):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1000})
            context.set_default_timeout(20_000)
            page = context.new_page()
            page.goto(f"{lab.url}/lab/tree/{NOTEBOOK}?token={lab.token}")
            yield page
        finally:
            browser.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"insert-{name}.png"))


def notebook_panel(page):
    tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text=NOTEBOOK).first
    tab.wait_for()
    return page.locator(f"[id='{tab.get_attribute('data-id')}']")


def sources(nb) -> list[str]:
    """Every code cell's source as the editor shows it."""
    return [text.replace("\u200b", "") for text in nb.locator(".jp-CodeCell .jp-InputArea-editor .cm-content")
            .all_inner_texts()]


def prompt(cell) -> str:
    return cell.locator(".jp-InputPrompt").inner_text().strip()


def run(page, nb, source: str) -> None:
    """Run the code cell with this source in place (Ctrl+Enter) and wait until it has run."""
    index = sources(nb).index(source)
    cell = nb.locator(".jp-CodeCell").nth(index)
    before = prompt(cell)
    cell.locator(".jp-InputPrompt").click()  # selects the cell in command mode
    page.keyboard.press("Control+Enter")
    dialog = page.locator(".jp-Dialog .jp-mod-accept")
    if dialog.count():  # a stray "Select Kernel" dialog: accept it and run again
        dialog.first.click()
        page.keyboard.press("Control+Enter")
    wait_until(lambda: prompt(cell) not in (before, "[*]:", "[ ]:", ""), 30, f"the cell {source[:30]!r} to run")


def settled(nb, expected: list[str]) -> None:
    """The code cells become `expected` and stay so (nothing else arrives afterwards)."""
    wait_until(lambda: sources(nb) == expected, 10, f"the cells to be {expected}")
    nb.page.wait_for_timeout(500)
    assert sources(nb) == expected


def test_insert_and_replace(lab, page):
    nb = notebook_panel(page)
    loaded = page.evaluate(
        "() => JSON.parse(document.getElementById('jupyter-config-data').textContent)"
        ".federated_extensions.map(e => e.name)")
    assert EXTENSION in loaded, loaded
    wait_until(lambda: lab.kernel_ready(NOTEBOOK), 60, "the notebook's kernel to be idle")
    nb.locator(".jp-CodeCell").first.wait_for()

    # 1. The handshake: the kernel opens the comm; the extension answers once.
    run(page, nb, OPEN_COMM)
    check = nb.locator(".jp-CodeCell").nth(1)

    def replied():
        run(page, nb, CHECK_REPLY)  # the reply is handled between executions
        text = check.locator(".jp-OutputArea").inner_text()
        return "REPLIES=[{" in text and text

    text = wait_until(replied, 30, "the extension's answer on the comm", interval=0.5)
    assert json.loads(text.split("REPLIES=", 1)[1].strip()) == [HELLO]
    shot(page, "1-handshake")

    # 2. Running the asking cell inserts one cell below it; running it again replaces it.
    run(page, nb, ASK)
    settled(nb, [OPEN_COMM, CHECK_REPLY, ASK, "print(1)", NEW_CODE, NEW_KEY])
    shot(page, "2-inserted")
    run(page, nb, ASK)
    settled(nb, [OPEN_COMM, CHECK_REPLY, ASK, "print(1)", NEW_CODE, NEW_KEY])
    assert nb.locator(".jp-CodeCell").nth(3).locator(".jp-OutputArea-output").count() == 0  # not executed
    shot(page, "3-ran-twice")

    # 3. Different code for the same key replaces that cell's source.
    run(page, nb, NEW_CODE)
    run(page, nb, ASK)
    settled(nb, [OPEN_COMM, CHECK_REPLY, ASK, "print(2)", NEW_CODE, NEW_KEY])
    shot(page, "4-replaced")

    # 4. Another key never takes over that cell: a new one goes directly below the asking cell.
    run(page, nb, NEW_KEY)
    run(page, nb, ASK)
    settled(nb, [OPEN_COMM, CHECK_REPLY, ASK, "print('k2')", "print(2)", NEW_CODE, NEW_KEY])
    run(page, nb, ASK)
    settled(nb, [OPEN_COMM, CHECK_REPLY, ASK, "print('k2')", "print(2)", NEW_CODE, NEW_KEY])
    shot(page, "5-other-key")

    # 5. Saved, the inserted cells carry their key in the cell metadata.
    import nbformat

    path = lab.root / NOTEBOOK
    page.keyboard.press("Control+s")

    def saved():
        try:
            return len(nbformat.read(path, as_version=4).cells) == 7
        except (OSError, ValueError):  # being written
            return False

    wait_until(saved, 20, "the notebook to be saved")
    cells = nbformat.read(path, as_version=4).cells
    assert [c.metadata.get("gemini_magic") for c in cells] == [
        None, None, None, {"inserted_by": "k2"}, {"inserted_by": "k1"}, None, None]
    assert [c.source for c in cells[3:5]] == ["print('k2')", "print(2)"]

"""Notebook-native behaviour, as a user sees it in JupyterLab 4 (headless Chromium).

Each scenario opens its own notebook in its own Lab workspace, runs it against the fake
Gemini server and checks the page (and, where it matters, the saved file):

1. a cut answer's notice is a neutral note (`.gemini-note`, text/html), not the stderr box;
2. a haiku keeps its three lines (single newlines are line breaks);
3. `%%gemini -f code` run twice leaves ONE inserted cell with the latest code, also after
   "Restart Kernel and Run All" (the race where the kernel falls back to set_next_input);
4. the Copy button copies exactly the code; an answer's image fits and zooms on click;
5. a `--chat` conversation continues after a kernel restart from the saved notebook, and
6. a hostile answer shown again after the restore runs nothing.

The fake server runs in this process (FakeGemini, loaded from a JSON script like
start_fake_gemini's) so the test can read the requests it received: what the kernel sent
for each question is the proof that a conversation was, or was not, restored.
The prebuilt JupyterLab extension is copied into the test's JUPYTER_DATA_DIR.
Screenshots go to test-artifacts/browser/native-*.png.
"""

from __future__ import annotations

import base64
import json
import re
import struct
import zlib

import pytest

from tests.browser.lab import (
    ARTIFACTS,
    EXTENSION,
    LabNotebook,
    browser_context,
    serve_fake,
    serve_lab,
    wait_until,
)
from tests.conftest import TEST_KEY, kernel_environment

pytestmark = pytest.mark.browser

LOAD = "%load_ext gemini_magic"


def png(width: int, height: int, rgb=(30, 120, 200)) -> bytes:
    """A solid-colour PNG, written by hand (no imaging library needed)."""
    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


IMAGE_WIDTH = 2000  # wider than any output area at 1280 px: it must be shown fitted
IMAGE = base64.b64encode(png(IMAGE_WIDTH, 60)).decode()
CODE_TO_COPY = "x = 1\nprint(x)"
HAIKU = "line one\nline two\nline three"
Q1, A1 = "Q1: Where should we go in spring?", "A1: Kyoto, for the cherry blossoms."
Q2 = "Q2: What does the guidebook say?"
HOSTILE = '<img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script>'
Q3, A3 = "Q3: And how long should we stay?", "A3: Five days."
FENCED = "Here you go:\n\n```python\nprint('v{n}')\n```\n"

SCRIPT = {
    "rules": [
        {"match": "Cut me short", "reply": {"text": "This answer stops in the midd", "finish_reason": "MAX_TOKENS"}},
        {"match": "Write a haiku", "reply": {"text": HAIKU}},
        # Each run of the -f code cell gets new code: v1, v2, ... (the last one repeats).
        {"match": "Write the code", "sequence": [{"reply": {"text": FENCED.format(n=n)}} for n in range(1, 9)]},
        {"match": "Show me code to copy", "reply": {"text": f"Copy this:\n\n```python\n{CODE_TO_COPY}\n```\n"}},
        {"match": "Draw a banner", "reply": {"parts": [
            {"text": "Here is the banner:"}, {"inlineData": {"mimeType": "image/png", "data": IMAGE}}]}},
        {"match": "Q1:", "reply": {"text": A1}},
        {"match": "Q2:", "reply": {"text": HOSTILE}},
        {"match": "Q3:", "reply": {"text": A3}},
    ],
}


# -- the module's services --------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake():
    yield from serve_fake(SCRIPT)


@pytest.fixture(scope="module")
def lab(tmp_path_factory, fake):
    yield from serve_lab(tmp_path_factory, "native", kernel_environment(fake.url, TEST_KEY))


@pytest.fixture(scope="module")
def context(lab):
    yield from browser_context(clipboard_for=lab.url)


class Notebook(LabNotebook):
    """One notebook open in its own Lab workspace."""

    def output(self, index: int):
        return self.cell(index).locator(".jp-OutputArea")

    def sources(self) -> list[str]:
        return [t.replace("\u200b", "") for t in
                self.panel.locator(".jp-CodeCell .jp-InputArea-editor .cm-content").all_inner_texts()]

    def prompt(self, index: int) -> str:
        return self.cell(index).locator(".jp-InputPrompt").inner_text().strip()

    def _watch(self, index: int) -> None:
        """Mark the cell's prompt when it shows [*], so a re-run with the same number
        (after a restart) is still seen to have run."""
        self.cell(index).locator(".jp-InputPrompt").evaluate(
            "el => { el.dataset.sawBusy = ''; if (el._gmObserver) el._gmObserver.disconnect();"
            " el._gmObserver = new MutationObserver(() => {"
            "   if (el.textContent.includes('*')) el.dataset.sawBusy = '1'; });"
            " el._gmObserver.observe(el, {childList: true, subtree: true, characterData: true}); }")

    def _ran(self, index: int) -> bool:
        prompt = self.cell(index).locator(".jp-InputPrompt")
        return prompt.get_attribute("data-saw-busy") == "1" and re.fullmatch(r"\[\d+\]:", self.prompt(index))

    def wait_ran(self, index: int, timeout: float = 60) -> None:
        wait_until(lambda: self._ran(index), timeout, f"cell {index} of {self.name} to run")

    def run(self, index: int, timeout: float = 60) -> None:
        """Run one cell in place (Ctrl+Enter) and wait until it has run."""
        self._watch(index)
        self.cell(index).locator(".jp-InputPrompt").click()  # selects it, command mode
        self.page.keyboard.press("Control+Enter")
        self._accept_stray_dialog()
        self.wait_ran(index, timeout)

    def menu(self, top: str, item: str) -> None:
        self.page.locator(".lm-MenuBar-itemLabel", has_text=top).first.click()
        self.page.locator(".lm-Menu-itemLabel").filter(has_text=re.compile(f"^{re.escape(item)}$")).first.click()

    def run_all(self, timeout: float = 60) -> None:
        count = self.panel.locator(".jp-CodeCell").count()
        for index in range(count):
            self._watch(index)
        self.menu("Run", "Run All Cells")
        self._accept_stray_dialog()
        for index in range(count):
            self.wait_ran(index, timeout)

    def restart_and_run_all(self, cells: int, timeout: float = 60) -> None:
        for index in range(cells):
            self._watch(index)
        self.menu("Kernel", "Restart Kernel and Run All Cells…")
        self.page.locator(".jp-Dialog .jp-mod-accept").click()  # "Restart"
        for index in range(cells):
            self.wait_ran(index, timeout)

    def restart(self) -> None:
        self.menu("Kernel", "Restart Kernel…")
        self.page.locator(".jp-Dialog .jp-mod-accept").click()  # "Restart"
        self.page.locator(".jp-Dialog").wait_for(state="detached")
        wait_until(lambda: self.lab.kernel_ready(self.name), 60, "the restarted kernel to be idle")

    def _accept_stray_dialog(self) -> None:
        dialog = self.page.locator(".jp-Dialog .jp-mod-accept")
        if dialog.count():  # a stray "Select Kernel" dialog: accept it and run again
            dialog.first.click()
            self.page.keyboard.press("Control+Enter")

    # the file
    def save(self, ready, what: str) -> dict:
        """Save (Ctrl+S) and wait until the file on disk satisfies `ready(notebook)`."""
        path = self.lab.root / self.name
        self.panel.locator(".jp-Notebook").first.click(position={"x": 5, "y": 5})
        self.page.keyboard.press("Escape")
        self.page.keyboard.press("Control+s")

        def saved():
            try:
                notebook = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):  # being written
                return None
            return notebook if ready(notebook) else None

        return wait_until(saved, 20, what)

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(ARTIFACTS / f"native-{name}.png"))


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


def generate_requests(fake, needle: str) -> list:
    """The generate calls whose last user text contains `needle`, oldest first."""
    return [r for r in list(fake.requests)
            if r.action in ("generateContent", "streamGenerateContent") and needle in r.last_user_text()]


def texts(request) -> list[str]:
    return [t.strip() for t in request.all_texts()]


# The first non-transparent background from an element up through its output area.
EFFECTIVE_BACKGROUND = """el => {
  for (let e = el; e; e = e.parentElement) {
    const bg = getComputedStyle(e).backgroundColor;
    if (bg && bg !== 'transparent' && bg !== 'rgba(0, 0, 0, 0)') return bg;
    if (e.classList.contains('jp-OutputArea')) break;
  }
  return 'transparent';
}"""


# -- 1. notices are notes -----------------------------------------------------------------------


def test_cut_answer_notice_is_a_note_not_stderr(open_notebook):
    nb = open_notebook("native_note.ipynb", [
        LOAD,
        "%%gemini\nCut me short, please.",
        'import sys\nprint("a real error line", file=sys.stderr)',  # the error pink, for reference
    ])
    nb.run_all()
    out = nb.output(1)
    note = out.locator(".gemini-note")
    note.wait_for()
    nb.shot("1-note")
    assert note.count() == 1
    assert note.inner_text().startswith("The answer was cut at the output token limit"), note.inner_text()
    # Rendered HTML, in an output of its own, not the stderr stream.
    assert out.locator('.jp-OutputArea-output[data-mime-type="text/html"] .gemini-note').count() == 1
    assert out.locator('[data-mime-type="application/vnd.jupyter.stderr"]').count() == 0
    assert "This answer stops in the midd" in out.locator(".gemini-answer").inner_text()
    assert "The answer was cut" not in out.locator(".gemini-answer").inner_text()
    # The reference stderr output really is pink; the note is not.
    stderr = nb.output(2).locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
    pink = stderr.evaluate(EFFECTIVE_BACKGROUND)
    assert pink not in ("transparent",), "the reference stderr output has no background"
    background = note.evaluate(EFFECTIVE_BACKGROUND)
    assert background != pink, f"the note's background is the stderr pink {pink}"


# -- 2. a haiku on three lines ---------------------------------------------------------------------


def test_haiku_keeps_three_lines(open_notebook):
    nb = open_notebook("native_haiku.ipynb", [LOAD, "%%gemini\nWrite a haiku about tests."])
    nb.run_all()
    answer = nb.output(1).locator(".gemini-answer")
    answer.wait_for()
    wait_until(lambda: "line three" in answer.inner_text(), 20, "the haiku")
    nb.shot("2-haiku")
    assert answer.locator("br").count() == 2
    assert [line.strip() for line in answer.inner_text().strip().split("\n")] == HAIKU.split("\n")
    # Three visual lines: the text's line boxes have three distinct tops, and the
    # paragraph is about three lines high.
    geometry = answer.locator("p").first.evaluate("""p => {
      const range = document.createRange(); range.selectNodeContents(p);
      const rects = [...range.getClientRects()].filter(r => r.width > 0 && r.height > 0);
      const tops = [...new Set(rects.map(r => Math.round(r.top)))].sort((a, b) => a - b);
      return {tops, height: p.getBoundingClientRect().height};
    }""")
    tops = geometry["tops"]
    assert len(tops) == 3, geometry
    pitch = (tops[2] - tops[0]) / 2  # from one line to the next
    assert pitch > 0 and 2.5 <= geometry["height"] / pitch <= 3.5, geometry


# -- 3. -f code: one inserted cell, whatever runs it --------------------------------------------------


ASK_CODE = "%%gemini -f code\nWrite the code that prints the version."


def test_code_cell_replaced_not_piled_up(open_notebook, fake):
    nb = open_notebook("native_code.ipynb", [LOAD, ASK_CODE])
    loaded = nb.page.evaluate(
        "() => JSON.parse(document.getElementById('jupyter-config-data').textContent)"
        ".federated_extensions.map(e => e.name)")
    assert EXTENSION in loaded, loaded

    def settled(expected: list[str]) -> None:
        wait_until(lambda: nb.sources() == expected, 15, f"the cells to be {expected}")
        nb.page.wait_for_timeout(700)  # nothing else arrives afterwards
        assert nb.sources() == expected

    # a. One cell at a time: the kernel learns of the extension when it is idle after loading.
    nb.run(0)
    wait_until(lambda: nb.lab.kernel_ready(nb.name), 30, "the kernel to be idle after loading")
    nb.run(1)
    settled([LOAD, ASK_CODE, "print('v1')"])
    out = nb.output(1)
    assert "The code is in the cell below." in out.locator(".gemini-note").all_inner_texts()
    nb.run(1)
    settled([LOAD, ASK_CODE, "print('v2')"])
    assert "The code is in the cell below." in out.locator(".gemini-note").all_inner_texts()
    code = out.locator(".gemini-answer code.language-python")
    assert "print('v2')" in code.inner_text()
    colored = code.locator("span[style*='color']")
    assert colored.count() >= 2, code.inner_html()
    assert nb.cell(2).locator(".jp-OutputArea-output").count() == 0  # inserted, never run
    nb.shot("3a-code-run-twice")
    disk = nb.save(lambda n: len(n["cells"]) == 3 and "v2" in "".join(n["cells"][2]["source"]),
                   "the notebook with the inserted cell to be saved")
    key = disk["cells"][2]["metadata"].get("gemini_magic", {}).get("inserted_by")
    assert key, disk["cells"][2]["metadata"]

    # b. "Restart Kernel and Run All": the -f code cell runs before the kernel hears from the
    #    extension, so the kernel falls back to set_next_input (by_kernel) and JupyterLab
    #    inserts a cell; the extension must adopt it and drop its older one.
    nb.restart_and_run_all(2)
    settled([LOAD, ASK_CODE, "print('v3')"])
    disk = nb.save(lambda n: len(n["cells"]) == 3 and "v3" in "".join(n["cells"][2]["source"]),
                   "the notebook after Run All to be saved")
    inserts = [o["metadata"]["gemini_magic"]["insert_code"] for o in disk["cells"][1]["outputs"]
               if "insert_code" in o.get("metadata", {}).get("gemini_magic", {})]
    assert inserts and inserts[-1].get("by_kernel") is True, inserts  # the race really happened
    assert disk["cells"][2]["metadata"].get("gemini_magic") == {"inserted_by": key}
    nb.shot("3b-code-run-all")

    # c. Again, from a fresh kernel: still one cell, with the latest code.
    nb.restart_and_run_all(2)
    settled([LOAD, ASK_CODE, "print('v4')"])
    # d. And a plain Run All (the kernel now knows the extension): replaced in place.
    nb.run_all()
    settled([LOAD, ASK_CODE, "print('v5')"])
    disk = nb.save(lambda n: len(n["cells"]) == 3 and "v5" in "".join(n["cells"][2]["source"]),
                   "the notebook after the second Run All to be saved")
    assert [c["metadata"].get("gemini_magic") for c in disk["cells"]] == [None, None, {"inserted_by": key}]
    nb.shot("3c-code-run-all-twice")


# -- 4. Copy button and images -------------------------------------------------------------------------


def test_copy_button_and_image_zoom(open_notebook):
    nb = open_notebook("native_copy.ipynb", [
        LOAD, "%%gemini\nShow me code to copy.", "%%gemini\nDraw a banner."])
    nb.run_all()
    block = nb.output(1).locator(".gemini-code")
    block.wait_for()
    button = block.locator("button.gemini-copy")
    assert button.inner_text() == "Copy"
    # At the code block's top right.
    box, pre, btn = block.bounding_box(), block.locator("pre").bounding_box(), button.bounding_box()
    assert abs((box["x"] + box["width"]) - (btn["x"] + btn["width"])) <= 12, (box, btn)
    assert 0 <= btn["y"] - box["y"] <= 12, (box, btn)
    assert btn["y"] < pre["y"] + pre["height"] / 2 + 1, (pre, btn)

    nb.page.evaluate("() => navigator.clipboard.writeText('nothing copied yet')")
    button.click()
    wait_until(lambda: button.inner_text() == "Copied", 5, "the button to say Copied", interval=0.05)
    nb.shot("4a-copied")
    assert nb.page.evaluate("() => navigator.clipboard.readText()") == CODE_TO_COPY
    wait_until(lambda: button.inner_text() == "Copy", 5, "the button to say Copy again")

    image = nb.output(2).locator(".gemini-answer img")
    image.wait_for()
    wait_until(lambda: image.evaluate("i => i.complete && i.naturalWidth") == IMAGE_WIDTH, 10, "the image")
    area = nb.output(2).locator(".jp-OutputArea-output").last.bounding_box()
    fitted = image.bounding_box()
    assert fitted["width"] <= area["width"] + 1 and fitted["width"] < IMAGE_WIDTH, (fitted, area)
    image.scroll_into_view_if_needed()
    nb.shot("4b-image-fitted")
    image.click(position={"x": 10, "y": 10})
    wait_until(lambda: round(image.evaluate("i => i.getBoundingClientRect().width")) == IMAGE_WIDTH, 5,
               "the image at its natural size")
    nb.shot("4c-image-natural")
    image.click(position={"x": 10, "y": 10})
    wait_until(lambda: image.evaluate("i => i.getBoundingClientRect().width") < IMAGE_WIDTH, 5,
               "the image fitted again")


# -- 5 and 6. a conversation restored after a restart; a hostile answer stays inert --------------------------


def test_chat_restored_after_restart_and_hostile_answer_inert(open_notebook, fake):
    name = "native_chat.ipynb"
    nb = open_notebook(name, [
        LOAD,
        f"%%gemini --chat trip\n{Q1}",
        f"%%gemini --chat trip\n{Q2}",
        f"%%gemini --chat trip\n{Q3}",  # run only after the restart: a new turn
        "%gemini history trip",
    ])
    for index in (0, 1, 2):
        nb.run(index)
    wait_until(lambda: "A1: Kyoto" in nb.output(1).inner_text(), 20, "A1")
    wait_until(lambda: "window.__pwned=2" in nb.output(2).inner_text(), 20, "the hostile answer as text")
    assert nb.page.evaluate("() => window.__pwned") is None

    def turns_saved(notebook) -> bool:
        cells = notebook["cells"]
        return all(any("turn" in (o.get("metadata") or {}).get("gemini_magic", {}) for o in cells[i].get("outputs", []))
                   for i in (1, 2))

    disk = nb.save(turns_saved, "the notebook with both answers' turn records to be saved")
    text = (nb.lab.root / name).read_text(encoding="utf-8")
    assert TEST_KEY not in text, "the API key is in the saved notebook"
    assert disk["cells"][3].get("outputs") == []

    # A new kernel: the conversation continues from the file.
    nb.restart()
    nb.run(0)
    assert nb.prompt(0) == "[1]:", "the kernel was not restarted"
    before = len(generate_requests(fake, "Q3:"))
    nb.run(3)
    wait_until(lambda: "A3: Five days." in nb.output(3).inner_text(), 20, "A3")
    asked = generate_requests(fake, "Q3:")
    assert len(asked) == before + 1
    assert texts(asked[-1]) == [Q1, A1, Q2, HOSTILE, Q3]
    notes = nb.output(3).locator(".gemini-note").all_inner_texts()
    assert f"Chat 'trip' continues from the 2 turn(s) saved in {name}." in notes, notes
    nb.shot("5-restored")

    # 6. The hostile answer, restored and shown again, runs nothing.
    nb.run(4)
    history = nb.output(4)
    wait_until(lambda: "window.__pwned=2" in history.inner_text(), 20, "the history")
    assert HOSTILE in history.inner_text()
    nb.page.wait_for_timeout(500)  # an onerror handler would have run by now
    assert nb.page.evaluate("() => window.__pwned") is None
    assert nb.page.locator('img[src="x"]').count() == 0
    assert nb.page.locator("[onerror]").count() == 0
    assert nb.page.evaluate("() => [...document.scripts].filter(s => s.textContent.includes('__pwned')).length") == 0
    history.scroll_into_view_if_needed()
    nb.shot("6-hostile-restored")

    # Re-running the first question replaces its turn: only Q1 is sent.
    before = len(generate_requests(fake, "Q1:"))
    nb.run(1)
    asked = generate_requests(fake, "Q1:")
    assert len(asked) == before + 1
    assert texts(asked[-1]) == [Q1]

    # The notebook saved and reopened (JupyterLab trusts what it signed): still inert.
    nb.save(lambda n: any("window.__pwned=2" in json.dumps(o) for o in n["cells"][4].get("outputs", [])),
            "the notebook with the history to be saved")
    nb.page.reload()
    reopened = nb.page.locator(".jp-NotebookPanel .jp-CodeCell").nth(4).locator(".jp-OutputArea")
    wait_until(lambda: reopened.count() and "window.__pwned=2" in reopened.inner_text(), 60,
               "the reopened notebook's history output")
    nb.page.wait_for_timeout(500)
    assert nb.page.evaluate("() => window.__pwned") is None
    assert nb.page.locator('img[src="x"]').count() == 0 and nb.page.locator("[onerror]").count() == 0

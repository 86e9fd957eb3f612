"""The JupyterLab extension's protocol version 2 (js/src/index.ts) in a real browser: a
list of code cells put below the asking cell, and replaced as a whole on the next run.

Agent mode puts the code it ran below the asking cell, one cell per run. No agent (and no
Gemini) is needed here: the asking cell displays an output with the metadata
`{"gemini_magic": {"insert_code": {"key": K, "cells": [...]}}}` itself, from a variable
that other cells set, so the same asking cell can ask for something else on its next run.

1. The handshake: `%load_ext gemini_magic` (a version 2 hello) learns that the extension
   inserts many cells; a version 1 hello, played by hand, gets the version 1 answer.
2. Cells: two cells inserted below, marked with the key and never run; the same again
   leaves them alone (same cell ids on disk); one cell, three cells, then no cell replace
   the whole run (its first cell updated in place); a version 1 `code` inserts one cell.
   The user's cell below the run, and a cell marked with the same key beyond it (not part
   of the run), are never touched.
3. `by_kernel` (the Run All race, where the kernel fell back to set_next_input): the cell
   JupyterLab inserted with `code` is replaced by the cells, or with one cell adopted.

Screenshots go to test-artifacts/browser/cells-*.png.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.browser.lab import ARTIFACTS, EXTENSION, LabNotebook, browser_context, serve_lab, wait_until
from tests.conftest import kernel_environment

pytestmark = pytest.mark.browser

KEY = "k1"
MARK = {"inserted_by": KEY}

# -- the handshake notebook
LOAD = "%load_ext gemini_magic"
HELLO_V1 = (
    "from comm import create_comm\n"
    'old = create_comm(target_name="gemini_magic", data={"hello": "kernel", "version": 1})\n'
    "replies = []\n"
    'old.on_msg(lambda m: replies.append(m["content"]["data"]))'
)
CHECK = (
    "import json, gemini_magic\n"
    "f = gemini_magic._magics.frontend\n"
    'print("STATE=" + json.dumps({"cells": f.inserts_cells, "many": f.inserts_many, "v1": replies}))'
)

# -- the cells notebook: what the asking cell asks for is set by the cells above it
SET = "INSERT = {}"  # the prefix of every setting cell
TWO = SET.replace("{}", '{"key": "k1", "cells": ["a = 1", "b = a + 1"]}')
ONE = SET.replace("{}", '{"key": "k1", "cells": ["a = 2"]}')
THREE = SET.replace("{}", '{"key": "k1", "cells": ["x = 1", "y = 2", "z = 3"]}')
V1 = SET.replace("{}", '{"key": "k1", "code": "print(\'v1\')"}')
NONE = SET.replace("{}", '{"key": "k1", "cells": []}')
# The Run All race: the kernel used set_next_input with `code`, the cells joined.
BY_KERNEL_MANY = SET.replace("{}", '{"key": "k1", "cells": ["p = 1", "q = 2"], "code": "p = 1\\n\\nq = 2", '
                                   '"by_kernel": True}')
BY_KERNEL_ONE = SET.replace("{}", '{"key": "k1", "code": "r = 1", "by_kernel": True}')
ASK = (
    "from IPython.display import display\n"
    'display({"text/plain": "decoy"}, raw=True,\n'
    '        metadata={"gemini_magic": {"insert_code": {"key": "decoy", "cells": ["decoy()"]}}})\n'
    "if INSERT.get(\"by_kernel\"):\n"
    '    get_ipython().set_next_input(INSERT["code"])\n'
    'display({"text/plain": "asked"}, raw=True, metadata={"gemini_magic": {"insert_code": INSERT}})'
)
USER = "user_cell = 'mine'"  # the user's own cell below the run
STRAY = "stray = 'marked k1, but not part of the run'"
SETTERS = [TWO, ONE, THREE, V1, NONE, BY_KERNEL_MANY, BY_KERNEL_ONE]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    yield from serve_lab(tmp_path_factory, "insert_cells", kernel_environment(None, None))


@pytest.fixture(scope="module")
def context(lab):
    yield from browser_context()


class Notebook(LabNotebook):
    """One notebook open in its own Lab workspace, its cells run in place."""

    def sources(self) -> list[str]:
        return [t.replace("\u200b", "") for t in
                self.panel.locator(".jp-CodeCell .jp-InputArea-editor .cm-content").all_inner_texts()]

    def prompt(self, index: int) -> str:
        return self.cell(index).locator(".jp-InputPrompt").inner_text().strip()

    def start(self, source: str):
        """Start running the code cell with this source in place (Ctrl+Enter), without
        waiting; its prompt, watched so a wait knows it went busy (a [*]) since."""
        prompt = self.cell(self.sources().index(source)).locator(".jp-InputPrompt")
        prompt.evaluate(
            "el => { el.dataset.sawBusy = ''; if (el._gmObserver) el._gmObserver.disconnect();"
            " el._gmObserver = new MutationObserver(() => {"
            "   if (el.textContent.includes('*')) el.dataset.sawBusy = '1'; });"
            " el._gmObserver.observe(el, {childList: true, subtree: true, characterData: true}); }")
        prompt.click()  # selects the cell, command mode
        self.page.keyboard.press("Control+Enter")
        dialog = self.page.locator(".jp-Dialog .jp-mod-accept")
        if dialog.count():  # a stray "Select Kernel" dialog: accept it and run again
            dialog.first.click()
            self.page.keyboard.press("Control+Enter")
        return prompt

    def run(self, source: str, timeout: float = 60) -> None:
        """Run the code cell with this source and wait until it has run (its prompt showed
        [*], then a number: a re-run's number is a new one)."""
        self.finish(self.start(source), f"the cell {source[:30]!r}", timeout)

    def finish(self, prompt, what: str, timeout: float = 60) -> None:
        """Wait until the cell of this prompt (from `start`) has run."""
        wait_until(lambda: prompt.get_attribute("data-saw-busy") == "1"
                   and re.fullmatch(r"\[\d+\]:", prompt.inner_text().strip()), timeout, f"{what} to run")

    def settled(self, expected: list[str]) -> None:
        """The code cells become `expected` and stay so (nothing else arrives afterwards)."""
        wait_until(lambda: self.sources() == expected, 15, f"the cells to be {expected}")
        self.page.wait_for_timeout(700)
        assert self.sources() == expected

    def save(self, expected: list[str], ran: str) -> list[dict]:
        """Save (Ctrl+S); the cells on disk once their sources are `expected` and the cell
        `ran` has its latest execution count there (an earlier save may have had the same
        sources: the same cells, or others with the same sources)."""
        path = self.lab.root / self.name
        index = expected.index(ran)
        count = int(self.prompt(index).strip("[]:"))
        self.panel.locator(".jp-Notebook").first.click(position={"x": 5, "y": 5})
        self.page.keyboard.press("Escape")
        self.page.keyboard.press("Control+s")

        def saved():
            try:
                cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
            except (OSError, ValueError, KeyError):  # being written
                return None
            if ["".join(c["source"]) for c in cells] != expected or cells[index]["execution_count"] != count:
                return None
            return cells

        return wait_until(saved, 20, f"the notebook with the cells {expected} to be saved")

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(ARTIFACTS / f"cells-{name}.png"))


@pytest.fixture
def open_notebook(lab, context):
    opened: list[Notebook] = []

    def open_(name: str, cells: list[tuple[str, dict]]) -> Notebook:
        notebook = Notebook(lab, context, name, cells)
        opened.append(notebook)
        return notebook

    yield open_
    for notebook in opened:
        notebook.close()


# -- 1. the handshake ------------------------------------------------------------------------------


def test_handshake_version_2_and_version_1(open_notebook):
    nb = open_notebook("cells_hello.ipynb", [(LOAD, {}), (HELLO_V1, {}), (CHECK, {})])
    loaded = nb.page.evaluate(
        "() => JSON.parse(document.getElementById('jupyter-config-data').textContent)"
        ".federated_extensions.map(e => e.name)")
    assert EXTENSION in loaded, loaded
    nb.run(LOAD)
    nb.run(HELLO_V1)

    def state():
        nb.run(CHECK)  # the answers are handled between executions
        text = nb.cell(2).locator(".jp-OutputArea").inner_text()
        if "STATE=" not in text:
            return None
        state = json.loads(text.split("STATE=", 1)[1].strip())
        return state if state["cells"] and state["v1"] else None

    got = wait_until(state, 30, "the extension's answers to both hellos", interval=0.5)
    # The kernel's own (version 2) hello: the extension inserts lists of cells.
    assert (got["cells"], got["many"]) == (True, True), got
    # A version 1 kernel gets the answer it understands, once.
    assert got["v1"] == [{"hello": "jupyterlab", "version": 1, "inserts_cells": True}], got


# -- 2 and 3. cells --------------------------------------------------------------------------------


def test_cells_inserted_replaced_and_left_alone(open_notebook):
    nb = open_notebook("cells_insert.ipynb", [(s, {}) for s in SETTERS]
                       + [(ASK, {}), (USER, {}), (STRAY, {"gemini_magic": MARK})])

    import nbformat

    # The user's cell and the stray one keep their ids throughout.
    user_ids = [c.id for c in nbformat.read(nb.lab.root / nb.name, as_version=4).cells[-2:]]

    def expect(inserted: list[str]) -> list[dict]:
        """The cells below the asking cell are `inserted`, then the user's and the stray
        one, untouched; the inserted ones are marked and were never run. Returns them."""
        expected = SETTERS + [ASK] + inserted + [USER, STRAY]
        nb.settled(expected)
        cells = nb.save(expected, ran=ASK)
        below = cells[len(SETTERS) + 1:]
        assert [c["metadata"].get("gemini_magic") for c in below] == [MARK] * len(inserted) + [None, MARK]
        assert [(c["outputs"], c["execution_count"]) for c in below] == [([], None)] * len(below)
        assert [c["id"] for c in below[-2:]] == user_ids, "the user's or the stray cell was replaced"
        assert not any(c["metadata"].get("gemini_magic") for c in cells[:len(SETTERS) + 1])
        return below[:len(inserted)]

    # Two cells, in order, below the asking cell (the decoy output before the last is ignored).
    nb.run(TWO)
    nb.run(ASK)
    two = expect(["a = 1", "b = a + 1"])
    nb.shot("1-two")
    # The same again: left alone, the very same cells.
    nb.run(ASK)
    assert [c["id"] for c in expect(["a = 1", "b = a + 1"])] == [c["id"] for c in two]
    # Fewer, more, none: the whole run is replaced.
    nb.run(ONE)
    nb.run(ASK)
    # Updated in place (a Run All under way still runs it), the surplus removed.
    assert [c["id"] for c in expect(["a = 2"])] == [two[0]["id"]]
    nb.shot("2-one")
    nb.run(THREE)
    nb.run(ASK)
    expect(["x = 1", "y = 2", "z = 3"])
    nb.shot("3-three")
    nb.run(NONE)
    nb.run(ASK)
    expect([])
    # Version 1: `code` alone is one cell; it replaces the run as well.
    nb.run(V1)
    nb.run(ASK)
    expect(["print('v1')"])
    nb.run(THREE)
    nb.run(ASK)
    expect(["x = 1", "y = 2", "z = 3"])
    nb.run(V1)
    nb.run(ASK)
    expect(["print('v1')"])
    nb.shot("4-v1")

    # The Run All race: JupyterLab inserted `code` (the cells joined) itself.
    nb.run(BY_KERNEL_MANY)
    nb.run(ASK)
    expect(["p = 1", "q = 2"])
    nb.shot("5-by-kernel-many")
    nb.run(BY_KERNEL_ONE)
    nb.run(ASK)
    expect(["r = 1"])
    nb.shot("6-by-kernel-one")

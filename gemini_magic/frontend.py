"""The kernel's half of the gemini-magic-lab JupyterLab extension (js/): can the front
end insert, and later replace, the cell `-f code` writes (or, protocol version 2, the
several cells agent mode writes: one per run of code)?

A kernel can only add a cell with IPython's `set_next_input` payload, which inserts a NEW
cell each time, so re-running the asking cell piled up copies. The extension edits the
notebook itself: it answers the hello this kernel sends when the extension loads, and
then acts on the `insert_code` metadata of an answer's output (see js/src/index.ts).

The answer to the hello reaches the kernel only when it is idle, after the cell that
loaded the extension. Under "Run All" a `-f code` cell may run before it: then the kernel
uses `set_next_input` and says so (`by_kernel`), and the extension marks the cell
JupyterLab inserted as its own, so the next run replaces it.

Versions: this kernel says hello with version 2. The extension of this package answers
version 2 with `inserts_many` (it inserts a list of `cells`); an older build answers
version 1 and inserts one cell, the `code` of the metadata, which is why `insert_metadata`
always carries the cells joined as `code` too.
"""

from __future__ import annotations

TARGET = "gemini_magic"
VERSION = 2
VERSIONS = (1, 2)  # the answers understood: 1 inserts one cell, 2 also a list of cells


class Frontend:
    """What the front end told us it can do. Knows nothing until it answers."""

    def __init__(self) -> None:
        self.inserts_cells = False  # it inserts (and replaces) the cell below: no set_next_input
        self.inserts_many = False  # it also inserts a list of cells (version 2)
        self.name = ""
        self._comm = None

    def hello(self, shell) -> None:
        """Say hello to the front end, if there is a kernel (not in a terminal)."""
        if getattr(shell, "kernel", None) is None or self._comm is not None:
            return
        try:
            from comm import create_comm
        except ImportError:  # ipykernel < 6.22: no extension handshake, set_next_input only
            return
        self._comm = create_comm(target_name=TARGET, data={"hello": "kernel", "version": VERSION})
        self._comm.on_msg(self._answer)

    def _answer(self, message) -> None:
        data = (message.get("content") or {}).get("data") or {}
        version = data.get("version")
        if type(version) is int and version in VERSIONS and data.get("inserts_cells") is True:
            self.inserts_cells = True
            self.inserts_many = version >= 2 and data.get("inserts_many") is True
            self.name = str(data.get("hello", ""))

    def close(self) -> None:
        if self._comm is not None:
            self._comm.close()
            self._comm = None
        self.inserts_cells = False
        self.inserts_many = False


def insert_metadata(key: str, code: str, by_kernel: bool, cells: list[str] | None = None) -> dict:
    """The output metadata that asks the extension to put `code` in the cell below, or,
    given `cells`, those code cells in order (replacing the ones it put there before for
    `key`). With `cells`, `code` is ignored: it becomes the cells joined by a blank line,
    the one cell an older (version 1) extension inserts, and what `set_next_input` should
    then insert when `by_kernel`."""
    if cells is not None:
        cells = [str(cell) for cell in cells]
        insert = {"key": key, "code": "\n\n".join(cells), "cells": cells}
    else:
        insert = {"key": key, "code": code}
    if by_kernel:
        insert["by_kernel"] = True
    return {"insert_code": insert}

"""The kernel's half of the gemini-magic-lab JupyterLab extension (js/): can the front
end insert, and later replace, the cell `-f code` writes?

A kernel can only add a cell with IPython's `set_next_input` payload, which inserts a NEW
cell each time, so re-running the asking cell piled up copies. The extension edits the
notebook itself: it answers the hello this kernel sends when the extension loads, and
then acts on the `insert_code` metadata of an answer's output (see js/src/index.ts).

The answer to the hello reaches the kernel only when it is idle, after the cell that
loaded the extension. Under "Run All" a `-f code` cell may run before it: then the kernel
uses `set_next_input` and says so (`by_kernel`), and the extension marks the cell
JupyterLab inserted as its own, so the next run replaces it.
"""

from __future__ import annotations

TARGET = "gemini_magic"
VERSION = 1


class Frontend:
    """What the front end told us it can do. Knows nothing until it answers."""

    def __init__(self) -> None:
        self.inserts_cells = False
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
        if data.get("version") == VERSION and data.get("inserts_cells") is True:
            self.inserts_cells = True
            self.name = str(data.get("hello", ""))

    def close(self) -> None:
        if self._comm is not None:
            self._comm.close()
            self._comm = None
            self.inserts_cells = False


def insert_metadata(key: str, code: str, by_kernel: bool) -> dict:
    """The output metadata that asks the extension to put `code` in the cell below."""
    insert = {"key": key, "code": code}
    if by_kernel:
        insert["by_kernel"] = True
    return {"insert_code": insert}

"""The notebook this kernel runs, and the chat turns saved in it.

Every committed chat turn is saved with the output that shows it (history.turn_record):
a `%%gemini --chat` cell's answer carries `metadata.gemini_magic.turn`, and the chat
widget's transcript output carries `metadata.gemini_magic.transcript`, a list. So the
saved .ipynb holds each conversation, and a new kernel (after a restart, or a colleague
opening the file) continues it from there, asking nothing again.

Finding the file from the kernel:
- Jupyter Server (JupyterLab, Notebook 7) starts the kernel with `JPY_SESSION_NAME`,
  the notebook's absolute path when the kernel started (a notebook renamed since is
  looked for by its old name, then not found);
- VS Code puts `__vsc_ipynb_file__` in the namespace;
- Colab gives the notebook itself (`_message.blocking_request("get_ipynb")`).
Elsewhere (nbclient, papermill, nbval) the file is unknown: those runs start every
conversation empty, as "Run All" would anyway, and still save their turns.

Which saved turns: the newest record of the conversation, then the record of the turn
before it, and so on (`before` keys). That is the conversation as the kernel had it
when the notebook was saved, whatever order cells were re-run in: a re-run cell's new
record follows the turns before that cell, and the turns it dropped are left out.

A record's key is rewritten to the key the running kernel gives the cell holding it
(history.cell_key): a notebook run by nbclient (keys from the source) and reopened in
JupyterLab (keys from cell ids) still replaces a turn when its cell is re-run.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .history import RECORD, Turn, cell_key

# The most records followed back from the newest: far beyond any real chat, and a
# crafted file with a cycle of `before` keys cannot loop.
_MAX_TURNS = 10_000


@dataclass
class Saved:
    """The turns of one conversation found in a notebook."""

    turns: list[Turn] = field(default_factory=list)
    broken: bool = False  # the chain stops at a turn whose output is gone (cleared outputs)


def find(shell) -> Path | None:
    """The notebook file this kernel runs, where the frontend says (None if unknown)."""
    namespace = getattr(shell, "user_ns", {}) or {}
    candidates = [namespace.get("__vsc_ipynb_file__"), os.environ.get("JPY_SESSION_NAME")]
    for candidate in candidates:
        if not candidate or not isinstance(candidate, str):
            continue
        path = Path(candidate).expanduser()
        if not path.is_absolute():
            path = Path.cwd() / path
        if path.suffix == ".ipynb" and path.is_file():
            return path
    return None


def read(shell=None, path: str | os.PathLike | None = None) -> tuple[dict | None, str]:
    """The notebook as JSON, and where it came from: `path`, else this kernel's own file,
    else Colab's copy. (None, "") when there is none to read."""
    if path is None and shell is not None:
        path = find(shell)
        if path is None and "google.colab" in sys.modules:
            return _colab(), "this Colab notebook"
    if path is None:
        return None, ""
    with open(path, encoding="utf-8") as file:
        return json.load(file), str(path)


def _colab() -> dict | None:
    try:
        from google.colab import _message  # type: ignore[import-not-found]

        reply = _message.blocking_request("get_ipynb", request="", timeout_sec=10)
        notebook = reply.get("ipynb") if isinstance(reply, dict) else None
        return notebook if isinstance(notebook, dict) else None
    except Exception:  # noqa: BLE001  (an older Colab, or no frontend answering: start empty)
        return None


def saved_turns(notebook: dict, name: str, cell_ids: bool) -> Saved:
    """The turns of conversation `name` saved in `notebook`, oldest first, keyed as a
    kernel that does (`cell_ids`) or does not receive cell ids keys its cells."""
    # (record, the key the running kernel gives its cell; None: a widget's turns keep theirs)
    mine = [(r, _cell_key(cell, r, cell_ids) if cell is not None else None)
            for r, cell in records(notebook) if r.get("conversation") == name and _valid(r)]
    if not mine:
        return Saved()
    # A chat cell's turn is saved twice where a chat widget shows the same conversation (in
    # the cell's output and in the widget's transcript): on a tie the cell's copy wins,
    # whose key is rewritten to the running kernel's.
    def rank(rk):
        return rk[0]["at"], rk[1] is not None

    newest = max(mine, key=rank)
    chain = [newest]
    while chain[-1][0].get("before") is not None and len(chain) < _MAX_TURNS:
        record = chain[-1][0]
        earlier = [rk for rk in mine if rk[0]["key"] == record["before"] and rk[0]["at"] <= record["at"]
                   and all(rk is not c for c in chain)]
        if not earlier:
            turns = _turns(chain)
            return Saved(turns, broken=True)
        chain.append(max(earlier, key=rank))
    return Saved(_turns(chain))


def records(notebook: dict):
    """Every saved turn record in `notebook`, with the cell it is the answer of (None
    for a chat widget's transcript, which holds many)."""
    for cell in notebook.get("cells") or []:
        if not isinstance(cell, dict):
            continue
        for output in cell.get("outputs") or []:
            ours = ((output.get("metadata") or {}) if isinstance(output, dict) else {}).get("gemini_magic")
            if not isinstance(ours, dict):
                continue
            if isinstance(ours.get("turn"), dict):
                yield ours["turn"], cell
            for record in ours.get("transcript") or []:
                if isinstance(record, dict):
                    yield record, None


def _turns(chain: list) -> list[Turn]:
    turns = []
    for record, key in reversed(chain):
        turn = Turn.from_json(record, restored=True)
        if key is not None:
            turn.key = key
        turns.append(turn)
    for previous, turn in zip(turns, turns[1:], strict=False):
        turn.before = previous.key
    if turns:
        turns[0].before = None
    return turns


def _valid(record: dict) -> bool:
    """A record we can rebuild a turn from; anything else in a file is skipped."""
    if record.get("format") != RECORD or record.get("version") != 1:
        return False
    if not all(isinstance(record.get(k), str) for k in ("conversation", "key", "at")):
        return False
    if not isinstance(record.get("user"), dict) or not isinstance(record.get("model"), dict):
        return False
    try:
        Turn.from_json(record)
    except Exception:  # noqa: BLE001  (a hand-edited or foreign record: not ours to trust)
        return False
    return True


def _cell_key(cell: dict, record: dict, cell_ids: bool) -> str:
    """The key the running kernel gives this record's cell, keeping a second or third
    ask's suffix ("#2")."""
    source = cell.get("source") or ""
    if isinstance(source, list):
        source = "".join(source)
    base = cell_key(cell.get("id") if cell_ids else None, source)
    _, hash_, suffix = str(record.get("key", "")).rpartition("#")
    return f"{base}#{suffix}" if hash_ and suffix.isdigit() else base

"""A conversation's first use in a kernel: continue it from the saved notebook
(notebook_file.py), or say once how to, where the kernel cannot find the file."""

from __future__ import annotations

from ..render.notes import note


def restore(magics, conversation) -> None:
    from ..notebook_file import read, saved_turns

    try:
        notebook, origin = read(magics.shell)
    except (OSError, ValueError) as exc:  # unreadable, or not JSON (being written?)
        note(f"Chat {conversation.name!r} starts empty: the notebook file could not be read ({exc}).",
             shell=magics.shell)
        return
    if notebook is None:
        # Only a frontend that sends cell ids is one a person continues a chat in; a
        # headless run (nbclient, papermill, nbval) starts from the top anyway.
        if magics._cell_ids and not magics._told_no_file:
            magics._told_no_file = True
            note("This kernel cannot see which notebook file it runs, so conversations start empty here. "
                 f"To continue one saved in a notebook: %gemini load {conversation.name} NOTEBOOK.ipynb",
                 shell=magics.shell)
        return
    saved = saved_turns(notebook, conversation.name, magics._cell_ids)
    if saved.turns:
        conversation.replace_turns(saved.turns)
        conversation.origin, conversation.broken = origin, saved.broken


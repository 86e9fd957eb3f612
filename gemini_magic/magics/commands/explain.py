"""%gemini explain [QUESTION]: the last error, its traceback and cell, explained."""

from __future__ import annotations


def explain(magics, args):
    from ..cell import ask

    options = magics.parse("--error")
    return ask(magics, options, "--error", " ".join(args))

"""Front ends that turn an answer's events into output: notebook and terminal."""

from __future__ import annotations

from .notebook import NotebookRenderer, inserts
from .terminal import TerminalRenderer


def play(answer, renderer) -> None:
    """Drive one answer through a renderer. Ctrl-C stops the request and keeps
    what arrived; the caller decides what the interruption means."""
    answer.on_wait = getattr(renderer, "waiting", None)
    answer.on_progress = getattr(renderer, "progress", None)
    renderer.start(answer)
    events = iter(answer)
    try:
        for event in events:
            renderer.event(event)
    except KeyboardInterrupt:
        answer.interrupt()
        events.close()  # ends the answer here, on its own thread (a Ctrl-C while rendering)
    renderer.finish(answer)


def renderer_for(shell, **options):
    """A notebook renderer under a kernel, a plain-text one in a terminal."""
    if getattr(shell, "kernel", None) is not None:
        return NotebookRenderer(**options)
    return TerminalRenderer(**options)


__all__ = ["NotebookRenderer", "TerminalRenderer", "inserts", "play", "renderer_for"]

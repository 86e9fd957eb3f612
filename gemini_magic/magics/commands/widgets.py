"""%gemini settings and chat-ui: the widgets (widgets/)."""

from __future__ import annotations


def settings(magics, args):
    from ...widgets import settings_panel

    panel = settings_panel(magics)
    magics.widgets.append(panel)
    return panel


def chat_ui(magics, args):
    """`%gemini chat-ui [NAME] [options]`: the options are a cell's, applied to every message."""
    from ...widgets import chat_widget

    name = args[0] if args and not args[0].startswith("-") else (magics.default_chat or "chat")
    rest = args[1:] if args and not args[0].startswith("-") else args
    options = magics.parse(" ".join(_quoted(a) for a in rest)) if rest else None
    widget = chat_widget(magics, name, options=options)
    magics.widgets.append(widget)
    return widget


def _quoted(word: str) -> str:
    import shlex

    return shlex.quote(word)

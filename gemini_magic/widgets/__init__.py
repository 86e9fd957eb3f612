"""ipywidgets front ends: the settings panel and the chat widget.

    panel = %gemini settings          # or gemini_magic.widgets.settings_panel(magics)
    chat = %gemini chat-ui trip       # or gemini_magic.widgets.chat_widget(magics, "trip")

ipywidgets is imported only when a widget is made, so `%load_ext` stays fast.
See settings.py and chat.py for what each does and why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .chat import ChatWidget
    from .settings import SettingsPanel

__all__ = ["ChatWidget", "SettingsPanel", "chat_widget", "settings_panel"]


def settings_panel(magics) -> SettingsPanel:
    """The settings panel, bound both ways to `magics` (a GeminiMagics instance)."""
    from .settings import SettingsPanel

    return SettingsPanel(magics)


def chat_widget(magics, name: str = "chat", **options) -> ChatWidget:
    """A chat widget over conversation `name` (the one `%%gemini --chat NAME` uses).
    Keywords: `tools=[names]`, `approve="auto"|"ask"|"never"`, `options=Options(...)`
    (a cell's options, applied to every message)."""
    from .chat import ChatWidget

    return ChatWidget(magics, name, **options)


def __getattr__(name: str):
    if name == "ChatWidget":
        from .chat import ChatWidget

        return ChatWidget
    if name == "SettingsPanel":
        from .settings import SettingsPanel

        return SettingsPanel
    raise AttributeError(f"module 'gemini_magic.widgets' has no attribute {name!r}")

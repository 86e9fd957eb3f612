"""The settings panel (`%gemini settings`): widgets bound both ways to GeminiMagics.

    panel = %gemini settings
    panel.model.value = "gemini-2.5-pro"       # the next %%gemini cell uses it
    %config GeminiMagics.temperature = 0.2     # ... and the panel shows 0.2

Every control is tied to a traitlet of the magics instance with `traitlets.link` (or,
for the model, a pair of observers: a model the list lacks must be added to the
dropdown before it can be shown). Settings that may be unset (None) are a checkbox
and a slider or box: unticked means "unset", the model's own default, and the editor gives
way to a disabled box reading "model default". The panel is as wide as the chat widget.

Default tools are the `@gemini_magic.tool` registry, which every %%gemini cell (and the
chat widget) already uses: ticking a notebook function here adds it, unticking removes
it, so nothing new is kept on the magics object. `panel.tools` is the selection.
"""

from __future__ import annotations

import html
import inspect

import ipywidgets as widgets
import traitlets

from .messages import MAX_WIDTH  # the chat widget's: the two line up in a notebook
from .models import bare, model_choices

LABEL_WIDTH = "120px"
DEFAULT_TEXT = "model default"  # what an unset setting shows instead of a number
_LABEL_MARGIN = "2px 8px 2px 2px"  # where a description's label sits in a stock widget
_SMALL = "font-size:0.85em;opacity:0.7;line-height:1.4"
_INDENT = "0 2px 0 132px"  # under the controls, past the labels (2px + LABEL_WIDTH + 8px + 2px)


def _label(text: str, tooltip: str) -> widgets.HTML:
    """A row's label, right-aligned in LABEL_WIDTH as a stock widget's description is. The controls
    have no description of their own: ipywidgets 8 shows a described control's tooltip nowhere."""
    return widgets.HTML(f'<div style="text-align:right" title="{html.escape(tooltip)}">{html.escape(text)}</div>',
                        tooltip=tooltip,
                        layout=widgets.Layout(width=LABEL_WIDTH, flex="0 0 auto", margin=_LABEL_MARGIN))


class _Optional(widgets.HBox):
    """A setting that may be unset: a checkbox and an editor; `value` is None when unticked.

    Unticked, the editor is disabled and hidden behind a disabled box reading "model default"
    (a slider would show a number that is not in force); ticking shows the editor, enabled,
    with its last value (at first a usual default), and sets the setting to it."""

    def __init__(self, description: str, editor: widgets.DOMWidget, tooltip: str):
        # Labelled like the other rows (right-aligned in LABEL_WIDTH), the checkbox after the label.
        name = description.lower()
        self.label = _label(description, tooltip)
        self.enabled = widgets.Checkbox(False, indent=False,
                                        tooltip=f"Tick to choose the {name} yourself; untick to leave it to the model",
                                        # (the top margin puts the box level with the label's text)
                                        layout=widgets.Layout(width="28px", flex="0 0 auto", margin="5px 2px 0"))
        self.editor = editor
        self.editor.tooltip = tooltip
        self.editor.disabled = True
        self.default = widgets.Text(DEFAULT_TEXT, disabled=True,
                                    tooltip=f"The model's own {name} is used. Tick the box to choose one.",
                                    style={"background": "var(--jp-layout-color2,#eee)"},
                                    layout=widgets.Layout(width=editor.layout.width, flex=editor.layout.flex))
        self._syncing = False
        super().__init__([self.label, self.enabled, self.default, self.editor],
                         layout=widgets.Layout(align_items="center"))
        self._show(False)
        self.enabled.observe(self._from_editors, "value")
        self.editor.observe(self._from_editors, "value")
        self.observe(self._to_editors, "value")

    def _show(self, enabled: bool) -> None:
        self.editor.disabled = not enabled
        self.editor.layout.display = None if enabled else "none"
        self.default.layout.display = "none" if enabled else None

    def _from_editors(self, change) -> None:
        if self._syncing:
            return
        self._show(self.enabled.value)
        self.value = self.editor.value if self.enabled.value else None

    def _to_editors(self, change) -> None:
        self._syncing = True
        try:
            value = change.new
            self.enabled.value = value is not None
            self._show(value is not None)
            if value is not None:
                # A slider clamps an out-of-range value; the setting keeps what was set,
                # and the request reports it (the range check is the magic's).
                self.editor.value = value
        finally:
            self._syncing = False

    def close(self) -> None:
        for child in (self.label, self.enabled, self.default, self.editor):
            child.close()
        super().close()


class OptionalFloat(_Optional):
    value = traitlets.Float(None, allow_none=True)

    def __init__(self, description: str, low: float, high: float, start: float, tooltip: str = ""):
        slider = widgets.FloatSlider(start, min=low, max=high, step=0.05, readout_format=".2f",
                                     continuous_update=False, layout=widgets.Layout(width="auto", flex="1 1 auto"))
        super().__init__(description, slider, tooltip)


class OptionalInt(_Optional):
    value = traitlets.Int(None, allow_none=True)

    def __init__(self, description: str, low: int, high: int, start: int, tooltip: str = ""):
        box = widgets.BoundedIntText(start, min=low, max=high, step=256,
                                     layout=widgets.Layout(width="160px", flex="0 0 auto"))
        super().__init__(description, box, tooltip)


def notebook_functions(namespace: dict) -> list[str]:
    """Functions defined in the notebook itself (not imported), by name."""
    module = namespace.get("__name__", "__main__")
    return sorted(
        name for name, value in namespace.items()
        if not name.startswith("_") and inspect.isfunction(value) and getattr(value, "__module__", None) == module
    )


HEADLINE = "Settings for %%gemini cells and the chat: the model, and how it answers."
CONFIG_HINT = ("They apply from the next cell or chat message. In code, they are the GeminiMagics options: "
               "%config GeminiMagics.temperature = 0.2 sets one, and the panel follows.")
TOOLS_HINT = ("Gemini may call the selected functions in every %%gemini cell and chat (you can still add others "
              "per cell with --tools). Ctrl+click (⌘+click on a Mac) selects several; ↻ lists functions "
              "defined since.")
NO_TOOLS_HINT = ("No notebook functions yet. To let Gemini call one, define it in a cell (a docstring tells Gemini "
                 "what it does), then press ↻ here and select it.")

_TIPS = {
    "model": "The Gemini model that answers %%gemini cells and the chat (one cell: -m MODEL)",
    "temperature": "How varied the answers are, 0 to 2: lower is more focused and repeatable, higher more "
                   "inventive (one cell: -t)",
    "top_p": "Nucleus sampling, 0 to 1: the model picks its next word only among the most likely ones adding up "
             "to this probability; lower is more focused (one cell: --top-p)",
    "max_tokens": "The longest answer, in tokens (a token is about ¾ of a word); a longer answer is cut off "
                  "(one cell: --max-tokens)",
    "system": "Standing instructions sent with every prompt, e.g. \"Answer in French.\" Empty: none "
              "(one cell: -s)",
    "tools": "Notebook functions Gemini may call in every cell and chat. Ctrl+click (⌘+click) selects several.",
    "refresh": "Look again for functions defined in the notebook",
}


class SettingsPanel(widgets.VBox):
    """Model, temperature, top-p, max tokens, system instruction and default tools,
    bound both ways to the GeminiMagics instance."""

    def __init__(self, magics):
        self.magics = magics
        self._links: list = []
        self._updating = False
        choices = model_choices(magics)
        self.choices = choices
        current = bare(magics.model)
        full = {"width": "auto", "flex": "1 1 auto"}
        self.model = widgets.Dropdown(options=choices.ids, value=current if current in choices.ids else None,
                                      tooltip=_TIPS["model"], layout=widgets.Layout(**full))
        self.reason = widgets.HTML(
            f'<span style="color:var(--jp-warn-color0,#b26b00)">{html.escape(choices.reason)}</span>'
            if choices.reason else "", layout=widgets.Layout(margin=_INDENT))
        self.reason.layout.display = None if choices.reason else "none"
        self.temperature = OptionalFloat("Temperature", 0.0, 2.0, 1.0, _TIPS["temperature"])
        self.top_p = OptionalFloat("Top-p", 0.0, 1.0, 0.95, _TIPS["top_p"])
        self.max_tokens = OptionalInt("Max tokens", 1, 1_000_000, 8192, _TIPS["max_tokens"])
        self.system = widgets.Textarea(placeholder="No system instruction", rows=2, tooltip=_TIPS["system"],
                                       layout=widgets.Layout(**full))
        self.tool_select = widgets.SelectMultiple(rows=3, tooltip=_TIPS["tools"], layout=widgets.Layout(**full))
        self.refresh_button = widgets.Button(icon="refresh", tooltip=_TIPS["refresh"],
                                             layout=widgets.Layout(width="36px", flex="0 0 auto"))
        self.refresh_button.on_click(lambda _: self.refresh())
        self.tools_hint = widgets.HTML(layout=widgets.Layout(margin=_INDENT))
        self.refresh()

        # magics <-> widgets
        self.model.observe(self._model_picked, "value")
        magics.observe(self._model_configured, "model")
        self._links += [
            traitlets.link((magics, "temperature"), (self.temperature, "value")),
            traitlets.link((magics, "top_p"), (self.top_p, "value")),
            traitlets.link((magics, "max_tokens"), (self.max_tokens, "value")),
            # The system instruction is None when unset; the text box has "" then.
            traitlets.link((magics, "system"), (self.system, "value"),
                           transform=(lambda value: value or "", lambda text: text or None)),
        ]
        self.tool_select.observe(self._tools_picked, "value")

        # What the panel is for first; the technical detail (GeminiMagics, %config) a small line under it.
        self.header = widgets.HTML(
            '<div style="font-size:1.1em;font-weight:bold;line-height:1.6">Gemini settings</div>'
            f'<div style="line-height:1.5">{html.escape(HEADLINE)}</div>'
            f'<div style="{_SMALL}">{html.escape(CONFIG_HINT)}</div>',
            layout=widgets.Layout(margin="0 2px 6px"))
        self._rows = [
            widgets.HBox([_label("Model", _TIPS["model"]), self.model], layout=widgets.Layout(align_items="center")),
            widgets.HBox([_label("System", _TIPS["system"]), self.system],
                         layout=widgets.Layout(align_items="flex-start")),
            widgets.HBox([_label("Default tools", _TIPS["tools"]), self.tool_select, self.refresh_button],
                         layout=widgets.Layout(align_items="flex-start")),
        ]
        model_row, system_row, tools_row = self._rows
        super().__init__(
            [self.header, model_row, self.reason, self.temperature, self.top_p, self.max_tokens, system_row,
             tools_row, self.tools_hint],
            # The chat widget's frame and width (chat_view.py): full width, up to MAX_WIDTH.
            layout=widgets.Layout(border="1px solid var(--jp-border-color1,#ccc)", padding="8px 10px",
                                  max_width=MAX_WIDTH, grid_gap="4px"),
        )
        self.add_class("gm-settings")

    # -- the model --------------------------------------------------------------------

    def _model_picked(self, change) -> None:
        if not self._updating and change.new:
            self.magics.model = change.new

    def _model_configured(self, change) -> None:
        model = bare(change.new)
        self._updating = True
        try:
            if model and model not in self.model.options:
                self.model.options = [model, *self.model.options]
            self.model.value = model or None
        finally:
            self._updating = False

    # -- default tools ----------------------------------------------------------------

    @property
    def tools(self) -> tuple[str, ...]:
        """The names of the default tools selected (the @gemini_magic.tool registry)."""
        return tuple(self.tool_select.value)

    def refresh(self) -> None:
        """Re-read the notebook's functions and the tool registry (after defining a function)."""
        from ..tools import _default_tools

        namespace = self.magics.shell.user_ns
        names = sorted(set(notebook_functions(namespace)) | set(_default_tools))
        # A selected function redefined since is registered anew, so the tool runs the new code.
        for name in list(_default_tools):
            value = namespace.get(name)
            if inspect.isfunction(value) and value is not _default_tools[name]:
                _default_tools[name] = value
        self._updating = True
        try:
            self.tool_select.options = names
            self.tool_select.value = tuple(n for n in names if n in _default_tools)
            self.tool_select.rows = max(2, min(6, len(names)))
        finally:
            self._updating = False
        self.tool_select.disabled = not names
        self.tools_hint.value = f'<div style="{_SMALL}">{html.escape(TOOLS_HINT if names else NO_TOOLS_HINT)}</div>'

    def _tools_picked(self, change) -> None:
        if self._updating:
            return
        from ..tools import _default_tools

        namespace = self.magics.shell.user_ns
        for name in set(change.old) - set(change.new):
            _default_tools.pop(name, None)
        for name in set(change.new) - set(change.old):
            value = namespace.get(name)
            if callable(value):
                _default_tools[name] = value

    # -- lifetime ---------------------------------------------------------------------

    def close(self) -> None:
        """Unbind from the magics and close the widgets."""
        for link in self._links:
            link.unlink()
        self._links = []
        try:
            self.magics.unobserve(self._model_configured, "model")
        except ValueError:
            pass
        for child in (self.header, self.model, self.reason, self.temperature, self.top_p, self.max_tokens,
                      self.system, self.tool_select, self.refresh_button, self.tools_hint):
            child.close()
        for row in self._rows:
            for child in row.children:
                child.close()
            row.close()
        super().close()

    def __repr__(self) -> str:
        # Deterministic, short: nbval compares a widget's text/plain.
        return (f"SettingsPanel(model={self.model.value!r}, temperature={self.temperature.value!r}, "
                f"top_p={self.top_p.value!r}, max_tokens={self.max_tokens.value!r}, tools={self.tools!r})")

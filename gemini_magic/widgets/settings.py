"""The settings panel (`%gemini settings`): widgets bound both ways to GeminiMagics.

    panel = %gemini settings
    panel.model.value = "gemini-2.5-pro"       # the next %%gemini cell uses it
    %config GeminiMagics.temperature = 0.2     # ... and the panel shows 0.2

Every control is tied to a traitlet of the magics instance with `traitlets.link` (or,
for the model, a pair of observers: a model the list lacks must be added to the
dropdown before it can be shown). Settings that may be unset (None) are a checkbox
and a slider or box: unticked means "unset", the model's own default.

Default tools are the `@gemini_magic.tool` registry, which every %%gemini cell (and the
chat widget) already uses: ticking a notebook function here adds it, unticking removes
it, so nothing new is kept on the magics object. `panel.tools` is the selection.
"""

from __future__ import annotations

import html
import inspect

import ipywidgets as widgets
import traitlets

from .models import bare, model_choices

LABEL_WIDTH = "120px"
_STYLE = {"description_width": LABEL_WIDTH}


class _Optional(widgets.HBox):
    """A setting that may be unset: a checkbox and an editor; `value` is None when unticked."""

    def __init__(self, description: str, editor: widgets.DOMWidget, tooltip: str):
        # Labelled like the other rows (right-aligned, LABEL_WIDTH), the checkbox after the label.
        self.label = widgets.HTML(f'<div style="text-align:right;padding-right:8px" title="{tooltip}">'
                                  f"{description}</div>", layout=widgets.Layout(width=LABEL_WIDTH))
        self.enabled = widgets.Checkbox(False, indent=False, tooltip=f"Set {description.lower()} (unticked: "
                                        "the model's default)", layout=widgets.Layout(width="24px"))
        self.editor = editor
        self.editor.disabled = True
        self.hint = widgets.HTML('<span style="opacity:0.6">model default</span>')
        self._syncing = False
        super().__init__([self.label, self.enabled, self.editor, self.hint],
                         layout=widgets.Layout(align_items="center"))
        self.enabled.observe(self._from_editors, "value")
        self.editor.observe(self._from_editors, "value")
        self.observe(self._to_editors, "value")

    def _from_editors(self, change) -> None:
        if self._syncing:
            return
        self.editor.disabled = not self.enabled.value
        self.hint.layout.visibility = "hidden" if self.enabled.value else "visible"
        self.value = self.editor.value if self.enabled.value else None

    def close(self) -> None:
        for child in (self.label, self.enabled, self.editor, self.hint):
            child.close()
        super().close()

    def _to_editors(self, change) -> None:
        self._syncing = True
        try:
            value = change.new
            self.enabled.value = value is not None
            self.editor.disabled = value is None
            self.hint.layout.visibility = "visible" if value is None else "hidden"
            if value is not None:
                # A slider clamps an out-of-range value; the setting keeps what was set,
                # and the request reports it (the range check is the magic's).
                self.editor.value = value
        finally:
            self._syncing = False


class OptionalFloat(_Optional):
    value = traitlets.Float(None, allow_none=True)

    def __init__(self, description: str, low: float, high: float, start: float, tooltip: str = ""):
        slider = widgets.FloatSlider(start, min=low, max=high, step=0.05, readout_format=".2f",
                                     continuous_update=False, layout=widgets.Layout(width="270px"))
        super().__init__(description, slider, tooltip)


class OptionalInt(_Optional):
    value = traitlets.Int(None, allow_none=True)

    def __init__(self, description: str, low: int, high: int, start: int, tooltip: str = ""):
        box = widgets.BoundedIntText(start, min=low, max=high, step=256, layout=widgets.Layout(width="120px"))
        super().__init__(description, box, tooltip)


def notebook_functions(namespace: dict) -> list[str]:
    """Functions defined in the notebook itself (not imported), by name."""
    module = namespace.get("__name__", "__main__")
    return sorted(
        name for name, value in namespace.items()
        if not name.startswith("_") and inspect.isfunction(value) and getattr(value, "__module__", None) == module
    )


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
        self.model = widgets.Dropdown(options=choices.ids, value=current if current in choices.ids else None,
                                      description="Model", style=_STYLE, layout=widgets.Layout(width="420px"))
        self.reason = widgets.HTML(
            f'<span style="color:var(--jp-warn-color0,#b26b00)">{html.escape(choices.reason)}</span>'
            if choices.reason else "")
        self.reason.layout.display = None if choices.reason else "none"
        self.temperature = OptionalFloat("Temperature", 0.0, 2.0, 1.0, "Sampling temperature, 0-2 (-t)")
        self.top_p = OptionalFloat("Top-p", 0.0, 1.0, 0.95, "Nucleus sampling, 0-1 (--top-p)")
        self.max_tokens = OptionalInt("Max tokens", 1, 1_000_000, 1024, "Output token limit (--max-tokens)")
        self.system = widgets.Textarea(description="System", placeholder="No system instruction", rows=2,
                                       style=_STYLE, layout=widgets.Layout(width="420px"))
        self.tool_select = widgets.SelectMultiple(description="Default tools", rows=3, style=_STYLE,
                                                  layout=widgets.Layout(width="420px"))
        self.refresh_button = widgets.Button(icon="refresh", tooltip="Look for new notebook functions",
                                             layout=widgets.Layout(width="36px"))
        self.refresh_button.on_click(lambda _: self.refresh())
        self.tools_hint = widgets.HTML()
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

        title = widgets.HTML('<b style="font-size:1.05em">Gemini settings</b>'
                             '<span style="opacity:0.6"> · bound to GeminiMagics: the next %%gemini cell uses '
                             "them, and %config changes show here</span>")
        super().__init__(
            [title, self.model, self.reason, self.temperature, self.top_p, self.max_tokens, self.system,
             widgets.HBox([self.tool_select, self.refresh_button]), self.tools_hint],
            layout=widgets.Layout(border="1px solid var(--jp-border-color1,#ccc)", padding="8px 12px",
                                  width="fit-content", grid_gap="4px"),
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
        self.tools_hint.value = (
            "" if names else '<span style="opacity:0.6">No functions yet: define one in the notebook, then ↻.'
                             "</span>")

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
        for child in (self.model, self.reason, self.temperature, self.top_p, self.max_tokens, self.system,
                      self.tool_select, self.refresh_button, self.tools_hint):
            child.close()
        super().close()

    def __repr__(self) -> str:
        # Deterministic, short: nbval compares a widget's text/plain.
        return (f"SettingsPanel(model={self.model.value!r}, temperature={self.temperature.value!r}, "
                f"top_p={self.top_p.value!r}, max_tokens={self.max_tokens.value!r}, tools={self.tools!r})")

"""Agent mode's read-only tools: the notebook's variables, one value, recent cells.

None of them evaluates anything the model wrote: `inspect` takes a name (dotted
attributes at most), read with `inspect.getattr_static`, so no property or
`__getattr__` runs; running code is `run_python`'s alone, and it asks first.

They run without asking, so they reach only the user's own variables: not modules (no
`os.environ` through `inspect("os.environ")`), not IPython's history, and the process
environment shows as opaque wherever a variable holds it: a prompt injection in the data
must not be able to read other secrets without a question.
"""

from __future__ import annotations

import inspect as _inspect
import re

from ..context import Limits, summarize

MAX_VARIABLES = 100
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
# What a notebook's namespace holds that is not the user's data (as %who leaves out).
_SKIPPED_TYPES = ("module", "function", "builtin_function_or_method", "type")
_NOT_VARIABLES = ("In", "Out", "exit", "quit", "get_ipython")


def user_variables(shell) -> dict:
    """The user's variables, as %who sees them: no _names, nothing IPython put there."""
    hidden = getattr(shell, "user_ns_hidden", {})
    return {name: value for name, value in shell.user_ns.items()
            if not name.startswith("_") and name not in hidden and type(value).__name__ not in _SKIPPED_TYPES
            and name not in _NOT_VARIABLES}


def list_variables(shell, limits: Limits) -> dict:
    """Each variable's type and a short summary (a DataFrame's shape and columns)."""
    names = sorted(user_variables(shell).items())
    short = Limits(chars=min(300, limits.chars), items=min(10, limits.items), rows=min(2, limits.rows),
                   secrets=limits.secrets)
    out = {}
    for name, value in names[:MAX_VARIABLES]:
        out[name] = f"{_type_name(value)}: {_safe_summary(value, short)}"
    if len(names) > MAX_VARIABLES:
        out["…"] = f"[{len(names) - MAX_VARIABLES} more variables not listed]"
    return out or {"(none)": "The notebook has no variables yet."}


def inspect_value(shell, name: str, limits: Limits) -> str:
    """A bounded view of one of the user's variables, by name or dotted attribute path
    (never evaluated); modules are not entered."""
    import types

    name = name.strip()
    if not _NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a variable name (a name or name.attribute; expressions are "
                         "not evaluated here: use run_python).")
    first, *rest = name.split(".")
    hidden = getattr(shell, "user_ns_hidden", {})
    if first not in shell.user_ns or first.startswith("_") or first in hidden or first in _NOT_VARIABLES:
        raise NameError(f"No variable named {first!r} in the notebook.")
    value = shell.user_ns[first]
    for attribute in [None, *rest]:
        if isinstance(value, types.ModuleType):
            raise ValueError(f"{name!r} is in a module: inspect looks at the notebook's variables only.")
        if attribute is not None:
            value = _inspect.getattr_static(value, attribute)
    return f"{name}: {_type_name(value)}\n{_safe_summary(value, limits)}"


def read_cells(shell, count: int, limits: Limits, in_cell: bool = True) -> list[str]:
    """The last `count` cells the user ran, oldest first; `in_cell`: asked from a cell,
    which is the last in the history and left out."""
    history = list(getattr(shell.history_manager, "input_hist_raw", []) or [])[1:]
    count = max(1, min(int(count), 50))
    cells = (history[:-1] if in_cell else history)[-count:]
    per_cell = max(200, limits.chars // max(1, len(cells)))
    return [summarize(cell, Limits(chars=per_cell, secrets=limits.secrets)) for cell in cells] or ["(no cells run yet)"]


def _type_name(value) -> str:
    kind = type(value)
    return kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__.split('.')[0]}.{kind.__name__}"


def _safe_summary(value, limits: Limits) -> str:
    import os

    from .code_runs import stable_text

    if isinstance(value, type(os.environ)):
        return "<the process environment: not shown (it holds keys and passwords)>"
    try:
        return stable_text(summarize(value, limits))  # no memory addresses: a replay sends the same
    except Exception as exc:  # noqa: BLE001  (a value whose str() fails still gets a line)
        return f"<{type(value).__name__} object; its text raised {type(exc).__name__}>"

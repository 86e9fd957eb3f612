"""What a prompt can see of the notebook: bounded summaries of values, and the last error.

A large object interpolated into a prompt should cost a few hundred tokens, not a
megabyte of repr: a DataFrame becomes its shape, dtypes and head; a function its
source; a long string or list is cut with a marker saying how much was left out.
"""

from __future__ import annotations

import inspect
import linecache
import os
import re
import traceback
from dataclasses import dataclass


@dataclass
class Limits:
    chars: int = 4000  # longest text a single value may become
    items: int = 50  # list/dict items shown
    rows: int = 5  # DataFrame/Series rows shown
    secrets: tuple = ()  # text never to show (the key): removed before a cut, so none straddles one


def _cut(text: str, limit: int, secrets: tuple = ()) -> str:
    for secret in secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, "<redacted>")
    if len(text) <= limit:
        return text
    return text[:limit] + f"... [truncated: {len(text) - limit:,} more characters]"


def summarize(value, limits: Limits | None = None) -> str:
    """Text for `value` in a prompt, bounded by `limits`."""
    limits = limits or Limits()
    if isinstance(value, str):
        return _cut(value, limits.chars, limits.secrets)
    kind = type(value)
    module = kind.__module__.split(".")[0]
    if module == "pandas" and kind.__name__ == "DataFrame":
        return _dataframe(value, limits)
    if module == "pandas" and kind.__name__ == "Series":
        head = value.head(limits.rows).to_string()
        return _cut(f"pandas Series {value.name!r}, length {len(value)}, dtype {value.dtype}\n{head}", limits.chars,
                    limits.secrets)
    if module == "numpy" and kind.__name__ == "ndarray":
        import numpy as np

        with np.printoptions(threshold=limits.items, edgeitems=3):
            return _cut(f"numpy array, shape {value.shape}, dtype {value.dtype}\n{value!r}", limits.chars,
                        limits.secrets)
    if inspect.isfunction(value) or inspect.ismethod(value) or inspect.isclass(value):
        try:
            return _cut(inspect.getsource(value), limits.chars, limits.secrets)
        except (OSError, TypeError):
            return repr(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
        if isinstance(value, (set, frozenset)):
            # A set's order follows string hashing, new in every process: sorted, a summary
            # is the same on every run (and a recorded agent session replays).
            try:
                items.sort(key=repr)
            except Exception:  # noqa: BLE001  (an item whose repr raises: as it came)
                pass
        shown = ", ".join(_short_repr(v, limits) for v in items[: limits.items])
        more = f", ... [{len(items) - limits.items:,} more items]" if len(items) > limits.items else ""
        open_, close = {list: "[]", tuple: "()"}.get(type(value), "{}")
        return _cut(f"{open_}{shown}{more}{close}", limits.chars, limits.secrets)
    if isinstance(value, dict):
        pairs = list(value.items())
        shown = ", ".join(f"{k!r}: {_short_repr(v, limits)}" for k, v in pairs[: limits.items])
        more = f", ... [{len(pairs) - limits.items:,} more items]" if len(pairs) > limits.items else ""
        return _cut("{" + shown + more + "}", limits.chars, limits.secrets)
    return _cut(str(value), limits.chars, limits.secrets)


def _short_repr(value, limits: Limits) -> str:
    return _cut(repr(value), max(80, limits.chars // 20), limits.secrets)


def _dataframe(df, limits: Limits) -> str:
    rows, cols = df.shape
    dtypes = ", ".join(f"{c}: {t}" for c, t in list(df.dtypes.astype(str).items())[: limits.items])
    if cols > limits.items:
        dtypes += f", ... [{cols - limits.items} more columns]"
    head = df.head(limits.rows).to_string(max_cols=limits.items)
    return _cut(f"pandas DataFrame, {rows:,} rows x {cols:,} columns\ncolumns: {dtypes}\nfirst "
                f"{min(rows, limits.rows)} rows:\n{head}", limits.chars, limits.secrets)


def describe(name: str, value, limits: Limits | None = None, fallback=None) -> str:
    """A titled summary, for `--context NAME`; `fallback(value)` is used where the
    value cannot summarize itself (its str() raises)."""
    try:
        text = summarize(value, limits)
    except Exception:
        if fallback is None:
            raise
        text = fallback(value)
    return f"### {name} ({type(value).__module__}.{type(value).__qualname__})\n{text}"


# -- the last error -------------------------------------------------------------------

_CELL_FILE = re.compile(r"^<ipython-input-\d+-[0-9a-f]+>$")


def _is_cell_file(filename: str) -> bool:
    # ipykernel compiles cells to /tmp/ipykernel_PID/HASH.py; the terminal to <ipython-input-N-HASH>.
    return bool(_CELL_FILE.match(filename)) or os.path.basename(os.path.dirname(filename)).startswith("ipykernel_")


@dataclass
class LastError:
    summary: str  # "ZeroDivisionError: division by zero"
    traceback: str  # plain text, no colours
    cell_source: str  # the cell that raised it, where it can be found


_FILE = re.compile(r'File "([^"]+)"')
_MARKERS = re.compile(r"\s*[~^]+\s*")


def _portable_paths(text: str) -> str:
    """Paths in a traceback, made the same on every machine and run: a cell's temp file
    becomes "<cell>", a library file its path inside site-packages, others their name.
    Fewer tokens, and a recorded explanation replays on another machine."""

    def shorten(match: re.Match) -> str:
        path = match.group(1)
        if _is_cell_file(path):
            return 'File "<cell>"'
        for marker in ("site-packages/", "dist-packages/"):
            if marker in path:
                return f'File "{path.split(marker, 1)[1]}"'
        return f'File "{os.path.basename(path)}"'

    text = _FILE.sub(shorten, text)
    # The ~~~^^^ markers differ between Python versions and add nothing for the model.
    return "".join(line for line in text.splitlines(keepends=True) if not _MARKERS.fullmatch(line.rstrip("\n")))


def capture_error(exc: BaseException, cell_source: str = "") -> LastError:
    """What to tell the model about an exception: its traceback as plain text and the
    source of the cell that raised it (given, or found from the traceback's frames)."""
    tb = exc.__traceback__
    # Start at the first cell frame: IPython's own frames above it are noise.
    start = tb
    while start is not None and not _is_cell_file(start.tb_frame.f_code.co_filename):
        start = start.tb_next
    text = _portable_paths("".join(traceback.format_exception(type(exc), exc, start or tb)))
    if not cell_source:
        for frame, _ in traceback.walk_tb(tb):
            filename = frame.f_code.co_filename
            if _is_cell_file(filename):
                cell_source = "".join(linecache.getlines(filename))  # the innermost cell wins
    summary = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return LastError(summary, text, cell_source)


def last_error(ignore: tuple = ()) -> LastError | None:
    """The last exception IPython showed, from its own record (sys.last_exc), unless
    it is of a type in `ignore`."""
    import sys

    exc = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    if exc is None or isinstance(exc, ignore):
        return None
    return capture_error(exc)


def error_prompt(error: LastError, request: str = "") -> str:
    parts = [request.strip() or "Explain this error in plain words, then show how to fix the code."]
    if error.cell_source:
        parts.append(f"The cell that raised it:\n```python\n{error.cell_source.rstrip()}\n```")
    parts.append(f"The traceback:\n```\n{error.traceback.rstrip()}\n```")
    return "\n\n".join(parts)

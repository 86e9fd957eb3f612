"""Prompt interpolation: `{name}`, `{obj.attr}`, `{obj[key]}` from the user namespace.

Rules (documented in the README):
- a field is replaced once; a value that itself contains braces is not expanded again;
- `{{...}}` gives literal braces: `{{x}}` sends `{x}` (a pair: a lone `}}`, as at
  the end of a nested dict, is left alone);
- anything else in braces (a dict, JSON, an f-string, a name that is not defined)
  is left exactly as written, so code pasted into a prompt never breaks it.
  Fields that look like names but do not resolve are reported, to catch typos.

Only names, attributes and indexing are evaluated: never arbitrary expressions.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Any

# `{{...}}` is an escaped pair (only as a pair: a JSON object ending in "}}" is
# left alone); otherwise a field is a name followed by .attr or [key] steps.
_FIELD = re.compile(
    r"\{\{(.*?)\}\}|\{\s*([A-Za-z_]\w*(?:\s*\.\s*[A-Za-z_]\w*|\[[^\[\]{}]*\])*)\s*\}", re.DOTALL
)
_STEP = re.compile(r"\.\s*([A-Za-z_]\w*)|\[([^\[\]{}]*)\]")


@dataclass
class Interpolated:
    text: str
    unresolved: list[str] = field(default_factory=list)
    # The prompt in order: text, and the values kept whole (images and other media,
    # which become their own parts); just [text] when there are none.
    segments: list = field(default_factory=list)


class _Unresolved(Exception):
    pass


def _index_key(raw: str) -> Any:
    raw = raw.strip()
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw  # a bare word is a string key, as in str.format
    if isinstance(value, (int, str, float, bool, tuple)) or value is None:
        return value
    return raw


def resolve(expression: str, namespace: dict) -> Any:
    name = re.match(r"[A-Za-z_]\w*", expression).group(0)
    if name not in namespace:
        raise _Unresolved(expression)
    value = namespace[name]
    for attr, index in _STEP.findall(expression[len(name):]):
        try:
            value = getattr(value, attr) if attr else value[_index_key(index)]
        except Exception as exc:  # any failed lookup leaves the field as written
            raise _Unresolved(expression) from exc
    return value


def interpolate(template: str, namespace: dict, render=str, keep=None) -> Interpolated:
    """Fill fields from `namespace`; `render` turns a value into text (the magic
    passes a summarizer that bounds large objects), and values for which
    `keep(value)` is true stay whole in `segments`, where they were written."""
    unresolved: list[str] = []
    kept: list = []

    def replace(match: re.Match) -> str:
        token = match.group(0)
        expression = match.group(2)
        if expression is None:
            return "{" + match.group(1) + "}"
        try:
            value = resolve(expression, namespace)
        except _Unresolved:
            unresolved.append(token)
            return token
        if keep is not None and keep(value):
            kept.append(value)
            return _KEPT
        return render(value)

    text = _FIELD.sub(replace, template)
    if not kept:
        return Interpolated(text, unresolved, [text])
    segments: list = []
    pieces = text.split(_KEPT)
    for index, piece in enumerate(pieces):
        if piece:
            segments.append(piece)
        if index < len(kept):
            segments.append(kept[index])
    return Interpolated(text.replace(_KEPT, "[media]"), unresolved, segments)


# Marks where a kept value goes; a private-use character no prompt contains.
_KEPT = "\ue000"

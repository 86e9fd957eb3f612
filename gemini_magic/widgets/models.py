"""The model choices of the settings panel and the chat widget: the live model list,
generate-capable models only, newest first.

"Newest" is read from the model id, because the list carries no release date:

1. Gemini models come before other families (Gemma, LearnLM, ...): this is a Gemini tool.
2. Within that, the version number in the id, highest first: ``gemini-3-…`` before
   ``gemini-2.5-…`` before ``gemini-2.0-…``; an alias ending in ``-latest`` counts as
   the newest, an id without a number (``gemini-exp-1206``) as the oldest.
3. Ids with the same number keep the API's own order (the sort is stable), which is how
   Google lists a generation: Flash, Flash-Lite, Pro, then previews.

Where the list cannot be fetched (no key, no network, a replay without it: any
`GeminiError`), the only choice is the configured model, with a one-line reason.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_VERSIONED = re.compile(r"^[a-z]+-(?P<number>\d+(?:\.\d+)*)(?:-|$)")


@dataclass
class ModelChoices:
    ids: list[str]  # what the dropdown offers, newest first
    reason: str = ""  # why the list is only the configured model, if it is


def version_of(model_id: str) -> tuple:
    """The version number in a model id, as a tuple that sorts: (2, 5) for gemini-2.5-pro."""
    match = _VERSIONED.match(model_id)
    if match:
        return tuple(int(n) for n in match.group("number").split("."))
    return (math.inf,) if model_id.endswith("-latest") else (-1,)


def newest_first(ids: list[str]) -> list[str]:
    """Model ids in the order the dropdowns show them (see the module docstring).

    >>> newest_first(["gemma-3-27b-it", "gemini-2.5-flash", "gemini-3-flash-preview", "gemini-2.0-flash"])
    ['gemini-3-flash-preview', 'gemini-2.5-flash', 'gemini-2.0-flash', 'gemma-3-27b-it']
    """
    by_version = sorted(ids, key=version_of, reverse=True)  # stable: ties keep the API's order
    return sorted(by_version, key=lambda model_id: not model_id.startswith("gemini-"))


def bare(model: str | None) -> str:
    return (model or "").strip().removeprefix("models/")


def model_choices(magics) -> ModelChoices:
    """The generate-capable models of the live list, newest first, with the configured
    model always among them (a model the list lacks may still answer, e.g. a tuned one)."""
    from ..engine import can_generate
    from ..errors import GeminiError

    configured = bare(magics.model)
    try:
        models = magics.engine.models()
    except GeminiError as error:
        line = " ".join(error.message.split())
        if len(line) > 160:
            line = line[:159] + "…"
        return ModelChoices([configured] if configured else [], f"Model list unavailable: {line}")
    ids = newest_first([bare(m.name) for m in models if m.name and can_generate(m)])
    if configured and configured not in ids:
        ids.insert(0, configured)
    return ModelChoices(ids)

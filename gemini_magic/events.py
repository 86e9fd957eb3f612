"""What an answer yields as it arrives (events), what it shows in order (blocks), and
the lines a front end prints about it. Every renderer reads these; none imports the SDK.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import GeminiError

# -- events ---------------------------------------------------------------------------


@dataclass
class TextDelta:
    text: str


@dataclass
class ThoughtDelta:
    text: str


@dataclass
class OtherPart:
    """A non-text part (image, code execution, function call): rendered by later layers."""

    part: Any


@dataclass
class Retrying:
    error: GeminiError
    delay: float
    attempt: int  # the attempt about to start, from 2


@dataclass
class Finished:
    reason: str | None
    usage: dict
    model_version: str | None


@dataclass
class Failed:
    error: GeminiError


@dataclass
class ToolUpdate:
    """A tool call started or ended; `call` is a tools.ToolCall, updated in place."""

    call: Any


@dataclass
class Notice:
    text: str
    kind: str = "note"  # or "warning": the answer is not what was asked (see render/notes.py)


# -- blocks: what an answer shows, in order -----------------------------------------------


@dataclass
class TextBlock:
    parts: list

    @property
    def text(self) -> str:
        return "".join(self.parts)


@dataclass
class ThoughtBlock(TextBlock):
    """The model's thought summaries (with --thoughts): shown collapsed."""


@dataclass
class ToolBlock:
    call: Any


@dataclass
class PartBlock:
    """A non-text part: code the model ran and its result, an image, audio."""

    part: Any


def usage_line(answer) -> str:
    """The --usage footer: model, tokens (cached input among them), cost, service tier
    when not standard, and why the answer ended."""
    usage = answer.usage
    parts = [answer.model_version or answer.request.model_id]
    if usage:
        tokens = f"{usage.get('prompt_tokens', 0):,} in"
        if usage.get("cached_tokens"):
            tokens += f" ({usage['cached_tokens']:,} cached)"
        tokens += f", {usage.get('output_tokens', 0):,} out"
        if usage.get("thinking_tokens"):
            tokens += f", {usage['thinking_tokens']:,} thinking"
        parts.append(tokens + " tokens")
        from .costs import cost_words

        parts.append(cost_words(answer.cost, free=answer.free))
    tier = answer.tier
    if tier and tier.lower() not in ("standard", "unspecified"):
        parts.append(f"{tier.lower()} tier")
    resolution = answer.request.config.get("media_resolution")
    if resolution:
        parts.append(f"media {str(resolution).removeprefix('MEDIA_RESOLUTION_').lower()}")
    if answer.finish_reason:
        parts.append(finish_words(answer.finish_reason))
    return " · ".join(parts)


# Why an answer ended, as a reader would say it (the API's enum otherwise).
FINISH_WORDS = {
    "STOP": "complete", "MAX_TOKENS": "cut at the token limit", "SAFETY": "stopped by safety filters",
    "RECITATION": "stopped for recitation", "LANGUAGE": "stopped: unsupported language",
    "BLOCKLIST": "stopped: blocked term", "PROHIBITED_CONTENT": "stopped: prohibited content",
    "SPII": "stopped: personal information", "MALFORMED_FUNCTION_CALL": "malformed function call",
    "IMAGE_SAFETY": "image stopped by safety filters", "UNEXPECTED_TOOL_CALL": "unexpected tool call",
    "TOO_MANY_TOOL_CALLS": "too many tool calls", "OTHER": "stopped for another reason",
}


def finish_words(reason: str) -> str:
    return FINISH_WORDS.get(reason, reason.lower().replace("_", " "))


def retry_line(event: Retrying, attempts: int) -> str:
    # Google's RetryInfo is whole seconds, rounded down: "0s" means "now".
    when = f"in {event.delay:g} s" if event.delay >= 0.5 else "now"
    return f"{event.error.message} Retrying {when} (attempt {event.attempt} of {attempts})."


def provenance(answer) -> dict:
    """Metadata saved with each answer's output; a chat's turn too, so the saved
    notebook holds the conversation (notebook_file.py)."""
    out = {
        "model": answer.request.model_id,
        "model_version": answer.model_version,
        "finish_reason": answer.finish_reason,
        "usage": answer.usage,
        "interrupted": answer.interrupted,
    }
    commit = getattr(answer, "commit", None)
    if commit is not None and commit.turn is not None:
        out["turn"] = commit.record()
    return out

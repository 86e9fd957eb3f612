"""Reading a response: its parts become what the answer shows (blocks) and yields
(events), while every part is kept as returned for the conversation's history."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .errors import PromptBlocked
from .events import OtherPart, PartBlock, TextBlock, TextDelta, ThoughtBlock, ThoughtDelta


def absorb(self, response) -> Iterator[Any]:
    """Take in one response (a streamed chunk, or a whole answer) of `self`, an Answer."""
    self.chunks += 1
    self._step_chunks += 1
    if response.model_version:
        self.model_version = response.model_version
    if response.usage_metadata is not None:
        # A step's latest chunk has its usage so far; finished steps add up.
        self._step_usage = usage_dict(response.usage_metadata)
    tier = _header(response, "x-gemini-service-tier")
    if tier:
        self.service_tier = tier.lower()  # the tier that served it (priority can fall back)
    candidates = response.candidates or []
    if not candidates:
        feedback = response.prompt_feedback
        if feedback is not None and feedback.block_reason is not None:
            reason = _enum_name(feedback.block_reason)
            # Not raised here: the stream is read to its end (so a recording
            # keeps it), and _run reports the block after the loop.
            self.error = PromptBlocked(
                f"The prompt was blocked by Gemini ({reason}).",
                "Rephrase the prompt.",
            )
        return
    candidate = candidates[0]
    if candidate.finish_reason is not None:
        self.finish_reason = _enum_name(candidate.finish_reason)
    grounding = candidate.grounding_metadata
    # Streamed chunks carry an empty groundingMetadata until the last one.
    if grounding is not None and grounding.model_dump(exclude_none=True):
        self.grounding = grounding
    content = candidate.content
    show_thoughts = _shows_thoughts(self)
    for part in (content.parts if content is not None and content.parts else ()):
        self.step_parts.add(part)  # history keeps every part as returned, signatures included
        if part.thought and part.function_call is None:
            # Thought summaries, and code Gemini ran while thinking (flagged even when
            # not asked for): shown, collapsed, only when the request asked for thoughts.
            if show_thoughts:
                yield from _thought(self, _thought_markdown(part))
            continue
        if part.text is not None:
            if part.text:
                self.text_parts.append(part.text)
                if self.blocks and type(self.blocks[-1]) is TextBlock:  # not a ThoughtBlock
                    self.blocks[-1].parts.append(part.text)
                else:
                    self.blocks.append(TextBlock([part.text]))
                yield TextDelta(part.text)
        elif part.function_call is not None:
            from .tools import ToolCall

            call = part.function_call
            self._calls.append(ToolCall(call.id, call.name or "", dict(call.args or {})))
        elif part.thought_signature is not None and not _has_payload(part):
            continue  # a bare signature: kept in step_parts for history
        else:
            self.other_parts.append(part)
            self.blocks.append(PartBlock(part))
            yield OtherPart(part)

def _shows_thoughts(self) -> bool:
    """Whether the request asked for thoughts (--thoughts: thinking_config.include_thoughts)."""
    thinking = self.request.config.get("thinking_config")
    if isinstance(thinking, dict):
        return bool(thinking.get("include_thoughts"))
    return bool(getattr(thinking, "include_thoughts", False))

def _thought(self, text: str) -> Iterator[Any]:
    if not text:
        return  # an empty thought part only carries a signature
    self.thought_parts.append(text)
    if self.blocks and isinstance(self.blocks[-1], ThoughtBlock):
        self.blocks[-1].parts.append(text)
    else:
        self.blocks.append(ThoughtBlock([text]))
    yield ThoughtDelta(text)


def _thought_markdown(part) -> str:
    """A thought part as Markdown for the thoughts block: its text, or the code Gemini
    ran while thinking and its output as code blocks, or an image."""
    if part.text is not None:
        return part.text
    if part.executable_code is not None:
        language = str(getattr(part.executable_code.language, "value", "") or "python").lower()
        return _fenced(part.executable_code.code or "", language)
    if part.code_execution_result is not None:
        return "Output:" + _fenced(part.code_execution_result.output or "")
    blob = part.inline_data
    if blob is not None and blob.data:
        import base64

        mime = (blob.mime_type or "").lower()
        if mime in ("image/png", "image/jpeg", "image/gif", "image/webp"):
            return f"\n\n![image](data:{mime};base64,{base64.b64encode(blob.data).decode()})\n\n"
        return f"\n\n[{mime} data, {len(blob.data):,} bytes]\n\n"
    return ""


def _fenced(code: str, language: str = "") -> str:
    """A fenced code block that the code cannot close early (its fence is longer than any backtick run)."""
    longest = run = 0
    for char in code:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    fence = "`" * max(3, longest + 1)
    return f"\n\n{fence}{language}\n{code.rstrip(chr(10))}\n{fence}\n\n"


def _has_payload(part) -> bool:
    return any(
        getattr(part, name, None) is not None
        for name in ("inline_data", "function_call", "function_response", "executable_code",
                     "code_execution_result", "file_data")
    )


def _enum_name(value) -> str:
    return getattr(value, "name", None) or str(value)


def usage_dict(metadata) -> dict:
    """Token counts as numbers (they add up over a tool loop's steps). `cached_tokens` are
    part of `prompt_tokens` (Gemini counts them in both); audio is priced apart."""
    fields = {
        "prompt_tokens": metadata.prompt_token_count,
        "output_tokens": metadata.candidates_token_count,
        "thinking_tokens": metadata.thoughts_token_count,
        "total_tokens": metadata.total_token_count,
        "cached_tokens": metadata.cached_content_token_count,
        "tool_prompt_tokens": metadata.tool_use_prompt_token_count,
        "prompt_audio_tokens": _modality(metadata.prompt_tokens_details, "AUDIO"),
        "cached_audio_tokens": _modality(metadata.cache_tokens_details, "AUDIO"),
    }
    return {k: v for k, v in fields.items() if v}


def _modality(details, name: str) -> int:
    return sum(d.token_count or 0 for d in details or () if _enum_name(d.modality) == name)


def _header(response, name: str) -> str | None:
    headers = getattr(getattr(response, "sdk_http_response", None), "headers", None) or {}
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None

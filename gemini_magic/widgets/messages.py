"""What the chat widget shows of a conversation: bubbles for the user's messages and the
model's answers, rebuilt from committed turns, and the Markdown of an export.

Everything here is escaped or rendered safely: the user's own text, tool arguments and
the model's Markdown (render/markdown.py) never become active HTML.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

CSS = """
<style>
.gm-chat{border-radius:8px}
.gm-chat .widget-html-content{line-height:1.45;white-space:normal}
.gm-chat .gm-row{display:flex;margin:3px 0}
.gm-chat .gm-user-row{justify-content:flex-end}
.gm-chat .gm-bubble{padding:7px 12px;border-radius:14px;max-width:85%;overflow-wrap:anywhere;
  font-size:var(--jp-content-font-size1,14px);color:var(--jp-content-font-color1,#222)}
.gm-chat .gm-user{background:rgba(26,115,232,0.13);border-bottom-right-radius:4px;white-space:pre-wrap}
.gm-chat .gm-model{background:var(--jp-layout-color2,#f1f3f4);border-bottom-left-radius:4px}
.gm-chat .gm-bubble .gemini-answer>:first-child{margin-top:0}
.gm-chat .gm-bubble .gemini-answer>:last-child{margin-bottom:0}
.gm-chat .gm-bubble p{margin:0.35em 0}
.gm-chat .gm-bubble pre{white-space:pre-wrap;background:rgba(127,127,127,0.12);padding:6px 8px;border-radius:6px}
.gm-chat .gm-meta{font-size:0.78em;opacity:0.65;margin:0 6px 6px}
.gm-chat .gm-user-meta{text-align:right}
.gm-chat .gm-note{font-size:0.85em;margin-top:6px;opacity:0.8}
.gm-chat .gm-error{color:var(--jp-error-color1,#c62828)}
.gm-chat .gm-typing{opacity:0.55;font-style:italic}
.gm-chat .gm-empty{opacity:0.55;text-align:center;padding:18px 0}
.gm-chat .gm-status{font-size:0.82em;opacity:0.7;min-height:1.2em}
.gm-chat .gm-bubble-status{font-size:0.85em;opacity:0.7;font-style:italic;margin-top:4px}
</style>
"""


@dataclass
class Message:
    role: str  # "user" or "model"
    text: str  # plain text, for reading and tests
    widget: Any  # the HTML widget showing it
    turn: Any = None  # the conversation turn it shows, once committed

    @property
    def html(self) -> str:
        return self.widget.value


def user_html(text: str, attachments: list[str]) -> str:
    files = "".join(f'<div class="gm-meta gm-user-meta">📎 {html.escape(name)}</div>' for name in attachments)
    body = html.escape(text) if text else '<span class="gm-typing">(attachments only)</span>'
    return f'<div class="gm-row gm-user-row"><div class="gm-bubble gm-user">{body}</div></div>{files}'


BUSY = '<div class="gm-status">Gemini is answering… other cells can run meanwhile.</div>'


def turn_meta(turn) -> str:
    usage = turn.usage or {}
    parts = [turn.model_id or "gemini"]
    if usage:
        parts.append(f"{usage.get('prompt_tokens', 0)} in, {usage.get('output_tokens', 0)} out tokens")
    return " · ".join(parts)


def attachment_names(content) -> list[str]:
    names = []
    for part in content.parts or []:
        blob = part.inline_data or part.file_data
        if blob is not None:
            names.append(getattr(blob, "display_name", None) or blob.mime_type or "file")
    return names


def turn_model(turn) -> tuple[str, str]:
    """A committed turn's answer as (safe HTML, text): the text and tool calls of every
    step of its tool loop, in order, then the final answer."""
    from ..render.markdown import to_html
    from ..render.tools import call_signature
    from ..tools import ToolCall

    html_parts, texts = [], []
    for content in [*turn.exchange, turn.model]:
        if content.role != "model":
            continue  # tool results sent back
        for part in content.parts or []:
            call = part.function_call
            if call is not None:
                signature = call_signature(ToolCall(call.id, call.name or "", dict(call.args or {})))
                html_parts.append(f'<div class="gm-meta" style="margin:2px 0">🔧 {html.escape(signature)}</div>')
            elif part.text and not part.thought:
                html_parts.append(to_html(part.text))
                texts.append(part.text)
    return "".join(html_parts), "".join(texts)


_CODE = re.compile(r"(```.*?```|~~~.*?~~~|`[^`\n]*`)", re.DOTALL)


def markdown_safe(text: str) -> str:
    """Escape `<` outside code, so raw HTML the model wrote stays text in Markdown."""
    pieces = _CODE.split(text)
    return "".join(p if i % 2 else p.replace("<", "&lt;") for i, p in enumerate(pieces))


def transcript_markdown(conversation, name: str) -> str:
    """The conversation as Markdown: a heading per message. HTML tags the model
    wrote are escaped outside code, so pasting this into a Markdown cell is safe."""
    lines = [f"# Gemini chat: {name}", ""]
    for turn in conversation.turns:
        lines += ["### You", "", markdown_safe(turn.text("user")), "",
                  f"### Gemini ({turn.model_id})" if turn.model_id else "### Gemini", "",
                  markdown_safe(turn.text("model")), ""]
    return "\n".join(lines).rstrip() + "\n"


def export(conversation, name: str, folder) -> tuple:
    """Write NAME.chat.json (the `%gemini save` format) and NAME.chat.md into `folder`."""
    from pathlib import Path

    from ..files import write_atomic

    stem = re.sub(r"[^\w.-]+", "_", name) or "chat"
    folder = Path(folder)
    json_path = folder / f"{stem}.chat.json"
    conversation.save(json_path)
    md_path = folder / f"{stem}.chat.md"
    write_atomic(md_path, transcript_markdown(conversation, name))
    return json_path, md_path


"""What the chat widget shows of a conversation: bubbles for the user's messages and the
model's answers, rebuilt from committed turns; the static transcript saved with the
notebook; and the Markdown of an export.

Everything here is escaped or rendered safely: the user's own text, tool arguments and
the model's Markdown (render/markdown.py, with render/code.py's highlighted code and
zoomable images) never become active HTML.

The static transcript (`transcript_output`) is what a notebook opened without a kernel
shows in place of the live widget, and what a new kernel continues the conversation
from (its metadata holds `history.turn_record`s, read by notebook_file.py). Its look is
inline styles, which an untrusted notebook's sanitizer keeps, where a `<style>` block
is dropped; its one `<style>` (STATIC_STYLE) hides it while the live widget shows in
the same output area (both are outputs of the cell that displayed the widget).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

MAX_WIDTH = "860px"  # the chat widget's width, and the settings panel's (settings.py): they line up

CSS = """
<style>
.gm-chat{border-radius:8px}
.gm-chat .widget-html-content{line-height:1.45;white-space:normal;min-width:0}
.gm-chat .gm-row{display:flex;margin:3px 0}
.gm-chat .gm-user-row{justify-content:flex-end}
.gm-chat .gm-bubble{padding:7px 12px;border-radius:14px;max-width:85%;overflow-wrap:anywhere;overflow-x:auto;
  font-size:var(--jp-content-font-size1,14px);color:var(--jp-content-font-color1,#222)}
.gm-chat .gm-user{background:rgba(26,115,232,0.13);border-bottom-right-radius:4px;white-space:pre-wrap}
.gm-chat .gm-model{background:var(--jp-layout-color2,#f1f3f4);border-bottom-left-radius:4px}
.gm-chat .gm-bubble .gemini-answer>:first-child{margin-top:0}
.gm-chat .gm-bubble .gemini-answer>:last-child{margin-bottom:0}
.gm-chat .gm-bubble p{margin:0.35em 0}
.gm-chat .gm-bubble pre{white-space:pre-wrap;background:rgba(127,127,127,0.12);padding:6px 8px;border-radius:6px;
  margin:0.4em 0}
.gm-chat .gm-bubble .gemini-code{position:relative}
.gm-chat .gm-bubble .gemini-code pre{padding-right:4em}
.gm-chat .gm-meta{font-size:0.78em;opacity:0.65;margin:0 6px 6px}
.gm-chat .gm-user-meta{text-align:right}
.gm-chat .gm-note{font-size:0.85em;margin-top:6px;opacity:0.8}
.gm-chat .gm-error{color:var(--jp-error-color1,#c62828)}
.gm-chat .gm-typing{opacity:0.55;font-style:italic}
.gm-chat .gm-empty{opacity:0.55;text-align:center;padding:18px 0}
.gm-chat .gm-status{font-size:0.82em;opacity:0.7;min-height:1.2em}
.gm-chat .gm-bubble-status{font-size:0.85em;opacity:0.7;font-style:italic;margin-top:4px}
.gm-chat .gm-bubble-status:first-child{margin-top:0}
.gm-chat .gm-retry-row{margin:0 0 6px 6px}
.gm-chat .gm-code-approval pre{white-space:pre-wrap;background:rgba(127,127,127,0.12);padding:6px 8px;
  border-radius:6px;margin:0.4em 0}
.gm-chat .gm-code-editor textarea{font-family:var(--jp-code-font-family,monospace);
  font-size:var(--jp-code-font-size,13px)}
/* The transcript scrolls inside the widget, the input pinned under it. The scroll box's
   flex-direction is column-reverse (its layout): its scroll origin is the bottom, so a
   browser keeps the newest message in view while the reader is at the bottom, and leaves
   the view where it is once they have scrolled up. (Scrolling past its end goes on to
   scroll the notebook: no overscroll-behavior, in a page people scroll all day.) */
.gm-chat .gm-scroll{scrollbar-gutter:stable}
.gm-chat .gm-messages{flex:0 0 auto}
</style>
"""


@dataclass
class Message:
    role: str  # "user" or "model"
    text: str  # plain text, for reading and tests
    widget: Any  # the HTML widget showing it
    turn: Any = None  # the conversation turn it shows, once committed
    actions: Any = None  # a widget shown under it (a failed answer's Retry button)

    @property
    def html(self) -> str:
        return self.widget.value


def user_html(text: str, attachments: list[str]) -> str:
    files = "".join(f'<div class="gm-meta gm-user-meta">📎 {html.escape(name)}</div>' for name in attachments)
    body = html.escape(text) if text else '<span class="gm-typing">(attachments only)</span>'
    return f'<div class="gm-row gm-user-row"><div class="gm-bubble gm-user">{body}</div></div>{files}'


BUSY = '<div class="gm-status">Gemini is answering. Other cells can run meanwhile.</div>'


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
    """A committed turn's answer as (safe HTML, text): the text, tool calls and other
    parts (code Gemini ran, images) of every step of its tool loop, in order, then the
    final answer. The same renderers as a live answer (render/markdown.py for text,
    render/tools.py's part_html for the rest), so a rebuilt or restored turn looks the
    same: highlighted code with its Copy button, images that open full size."""
    from ..render.markdown import to_html
    from ..render.tools import call_signature, part_html
    from ..tools import ToolCall

    html_parts, texts = [], []
    for content in [*turn.exchange, turn.model]:
        if content.role != "model":
            continue  # tool results sent back
        for part in content.parts or []:
            call = part.function_call
            if part.thought:
                continue
            if call is not None and call.name == "run_python" and isinstance((call.args or {}).get("code"), str):
                # Agent mode's code, as its card showed it (the outputs were not kept in the turn).
                from ..render.code import code_block

                html_parts.append('<div class="gm-meta" style="margin:2px 0">🔧 Python</div>'
                                  + code_block(call.args["code"], "python"))
            elif call is not None:
                signature = call_signature(ToolCall(call.id, call.name or "", dict(call.args or {})))
                html_parts.append(f'<div class="gm-meta" style="margin:2px 0">🔧 {html.escape(signature)}</div>')
            elif part.text:
                html_parts.append(to_html(part.text))
                texts.append(part.text)
            else:
                html_parts.append(part_html(part))
    body = "".join(html_parts)
    # Wrapped as a live answer is (render/bundles.py), so the bubble's CSS treats both alike.
    return (f'<div class="gemini-answer">{body}</div>' if body else ""), "".join(texts)


# The static transcript's one style block. First, it hides the transcript while the live
# widget shows in the same output area (the cell's): JupyterLab and Notebook 7
# (.jp-OutputArea; the whole output child, so no empty gap is left), classic Notebook
# (.output). Where the widget cannot render (no kernel, a viewer without ipywidgets)
# nothing matches and the transcript shows. Then the bubbles' paragraph margins, as the
# live widget's; an untrusted notebook drops the block, and the inline styles remain.
STATIC_STYLE = (
    "<style>"
    ".jp-OutputArea:has(.gm-chat) .jp-OutputArea-child:has(.gm-transcript-static),"
    ".jp-OutputArea:has(.gm-chat) .gm-transcript-static,"
    ".output:has(.gm-chat) .output_area:has(.gm-transcript-static)"
    "{display:none}"
    ".gm-transcript-static .gemini-answer>:first-child{margin-top:0}"
    ".gm-transcript-static .gemini-answer>:last-child{margin-bottom:0}"
    "</style>"
)
# Colours without var(): JupyterLab's sanitizer drops a declaration that uses one, and
# these read on light and dark themes alike.
_FRAME = ("border:1px solid rgba(127,127,127,0.4);border-radius:8px;padding:8px 10px;"
          f"max-width:{MAX_WIDTH};line-height:1.45")
_ROW = "display:flex;margin:3px 0"
_BUBBLE = "padding:7px 12px;border-radius:14px;max-width:85%;overflow-wrap:anywhere"
_USER = _BUBBLE + ";background:rgba(26,115,232,0.13);border-bottom-right-radius:4px;white-space:pre-wrap"
_MODEL = _BUBBLE + ";background:rgba(127,127,127,0.13);border-bottom-left-radius:4px"
_META = "font-size:0.78em;opacity:0.65;margin:0 6px 6px"


def transcript_output(conversation, name: str) -> tuple[dict, dict]:
    """The static transcript of `conversation`: (bundle, metadata) for `display(...,
    raw=True, metadata=...)`. text/plain is a plain transcript; text/html the bubbles,
    rendered safely, with inline styles; the metadata holds a `history.turn_record` per
    turn, from which a new kernel continues the conversation (notebook_file.py)."""
    from ..client import find_api_key
    from ..errors import scrub
    from ..history import Conversation, turn_record
    from ..render.bundles import transcript_bundle

    with conversation.lock:
        turns = list(conversation.turns)
    snapshot = Conversation(name)
    snapshot.turns = turns
    plain = transcript_bundle(snapshot)["text/plain"]
    rows = []
    for turn in turns:
        user = turn.text("user")
        body = html.escape(user) if user else "<em>(attachments only)</em>"
        rows.append(f'<div style="{_ROW};justify-content:flex-end"><div style="{_USER}">{body}</div></div>')
        for file in attachment_names(turn.user):
            rows.append(f'<div style="{_META};text-align:right">📎 {html.escape(file)}</div>')
        answer, _ = turn_model(turn)
        rows.append(f'<div style="{_ROW}"><div style="{_MODEL}">{answer}</div></div>')
        meta = turn_meta(turn) + (" · trimmed: no longer sent" if turn.trimmed else "")
        rows.append(f'<div style="{_META}">{html.escape(meta)}</div>')
    if not rows:
        rows.append('<div style="opacity:0.6;text-align:center;padding:12px 0">No messages yet.</div>')
    count = f"{len(turns)} turn" + ("" if len(turns) == 1 else "s")
    header = (f'<div style="margin-bottom:6px"><b>Gemini chat</b> <span style="opacity:0.6">· '
              f"{html.escape(name)} · saved transcript, {count}</span>"
              '<div style="font-size:0.82em;opacity:0.7">Run this cell to chat again: the conversation '
              "continues from these turns.</div></div>")
    markup = f'{STATIC_STYLE}<div class="gm-transcript-static" style="{_FRAME}">{header}{"".join(rows)}</div>'
    metadata = {"gemini_magic": {"transcript": [turn_record(name, turn) for turn in turns]}}
    # Saved in the file: never the key, even where a prompt quoted it (as turn_record does).
    key = find_api_key()
    markup = scrub(markup, key).replace("<redacted>", "&lt;redacted&gt;")  # shown as text, not a tag
    return {"text/plain": scrub(plain, key), "text/html": markup}, metadata


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


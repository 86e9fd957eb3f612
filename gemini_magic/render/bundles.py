"""MIME bundles for answers, shared by the renderers that display them."""

from __future__ import annotations

import html
import json

from ..options import FORMATS  # noqa: F401  (re-exported)
from .code import code_block
from .markdown import extract_code, to_html


def answer_bundle(text: str, fmt: str, footer: str = "", parsed=None) -> dict:
    """The bundle for an answer's text. text/plain always holds the raw answer, for
    plain frontends and for nbval; text/html is rendered here, never by the
    frontend from model-written Markdown (see markdown.py)."""
    if fmt == "text":
        body = f'<pre style="white-space:pre-wrap">{html.escape(text)}</pre>'
    elif fmt == "code":
        code, language = extract_code(text)
        body = code_block(code, language)
    elif fmt == "json":
        shown = text
        if parsed is not None:
            try:
                shown = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
            except ValueError:
                pass
        body = code_block(shown, "json")
    else:
        body = to_html(text)
    plain = text
    if footer:
        body += f'<div class="gemini-usage" style="opacity:0.6;font-size:smaller">{html.escape(footer)}</div>'
        plain += f"\n\n[{footer}]"
    return {"text/html": f'<div class="gemini-answer">{body}</div>', "text/plain": plain}


def compose(answer, fmt: str, footer: str = "") -> dict:
    """The bundle for a whole answer: its text, and where there are any, tool-call
    cards, code Gemini ran, media parts and search citations, in order."""
    from ..events import PartBlock, TextBlock, ThoughtBlock, ToolBlock
    from .tools import card_html, card_text, citations, part_html, part_text, sources_markdown

    blocks = answer.blocks
    grounding = answer.grounding
    if all(type(b) is TextBlock for b in blocks) and grounding is None:
        return answer_bundle(answer.text, fmt, footer, answer.parsed)
    html_parts, plain_parts = [], []
    only_text = sum(type(b) is TextBlock for b in blocks) <= 1
    gallery: list[str] = []  # images in a row: shown side by side, each opens full size

    def shelve() -> None:
        if len(gallery) > 1:
            html_parts.append('<div class="gemini-gallery" style="display:flex;flex-wrap:wrap;gap:8px;'
                              f'align-items:flex-start">{"".join(_tile(g) for g in gallery)}</div>\n')
        else:
            html_parts.extend(gallery)
        gallery.clear()

    for block in blocks:
        if isinstance(block, PartBlock) and _is_image(block.part):
            gallery.append(part_html(block.part))
            plain_parts.append(part_text(block.part))
            continue
        shelve()
        if isinstance(block, ThoughtBlock):
            html_parts.append('<details class="gemini-thoughts"><summary><em>Thoughts</em></summary>'
                              f"{to_html(block.text)}</details>\n")
            plain_parts.append("[thoughts]\n" + block.text)
        elif isinstance(block, TextBlock):
            text = block.text
            # Offsets in grounding refer to the whole answer's text: exact with one block.
            cited = citations(text, grounding) if grounding is not None and only_text else None
            html_parts.append(to_html(text, cited) if fmt == "markdown" else answer_bundle(text, fmt)["text/html"])
            plain_parts.append(text)
        elif isinstance(block, ToolBlock) and block.call.kind == "code":
            from .code_cards import code_card_html, code_card_text

            html_parts.append(code_card_html(block.call))
            plain_parts.append(code_card_text(block.call))
        elif isinstance(block, ToolBlock):
            html_parts.append(card_html(block.call))
            plain_parts.append(card_text(block.call))
        elif isinstance(block, PartBlock):
            html_parts.append(part_html(block.part))
            plain_parts.append(part_text(block.part))
    shelve()
    if grounding is not None:
        sources = sources_markdown(grounding)
        if sources:
            html_parts.append(to_html(sources))
            plain_parts.append(sources.strip())
    body, plain = "".join(html_parts), "\n\n".join(p for p in plain_parts if p)
    if footer:
        body += f'<div class="gemini-usage" style="opacity:0.6;font-size:smaller">{html.escape(footer)}</div>'
        plain += f"\n\n[{footer}]"
    return {"text/html": f'<div class="gemini-answer">{body}</div>', "text/plain": plain}


def _tile(image_html: str) -> str:
    from .code import TILE_FLEX

    return f'<div class="gemini-tile" style="flex:{TILE_FLEX};min-width:160px">{image_html}</div>'


def _is_image(part) -> bool:
    blob = part.inline_data
    return blob is not None and bool(blob.data) and (blob.mime_type or "").lower().startswith("image/")


def transcript_bundle(conversation) -> dict:
    """A conversation, readable: each turn's question and answer, rendered safely."""
    lines, plain = [], []
    for number, turn in enumerate(conversation.turns, 1):
        note = " (trimmed: no longer sent)" if turn.trimmed else ""
        lines.append(f"**{number}. You**{note}\n\n{turn.text('user')}\n\n**Gemini** ({turn.model_id})\n\n"
                     f"{turn.text('model')}\n\n---")
        plain.append(f"[{number}] You{note}:\n{turn.text('user')}\n[{number}] Gemini ({turn.model_id}):\n"
                     f"{turn.text('model')}")
    if not lines:
        lines = plain = [f"Conversation {conversation.name!r} is empty."]
    n = len(conversation.turns)
    header = f"Conversation {conversation.name!r}, {n} turn{'s' * (n != 1)}"
    return {
        "text/html": f'<div class="gemini-history"><p><em>{html.escape(header)}</em></p>'
                     f"{to_html(chr(10).join(lines))}</div>",
        "text/plain": header + "\n\n" + "\n\n".join(plain),
    }

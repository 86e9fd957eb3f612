"""Tool-call cards, code the model ran, media parts and search citations.

Everything shown here came from the model or from a tool, so all of it is escaped:
arguments, results and errors are text, never markup.
"""

from __future__ import annotations

import base64
import html
import json
from urllib.parse import quote_plus

from .markdown import code_block

_STATUS = {
    "pending": ("…", "waiting"), "running": ("…", "running"), "ok": ("✓", "done"),
    "error": ("✗", "raised an error"), "refused": ("⊘", "not run"), "unknown": ("⊘", "unknown function"),
    "skipped": ("⊘", "skipped: step limit"),
}


def call_signature(call, limit: int = 200) -> str:
    args = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in (call.args or {}).items())
    text = f"{call.name}({args})"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _duration(call) -> str:
    if call.status not in ("ok", "error"):
        return ""
    return f" in {call.seconds * 1000:.0f} ms" if call.seconds < 1 else f" in {call.seconds:.1f} s"


def card_html(call) -> str:
    icon, label = _STATUS.get(call.status, ("", call.status))
    body = call.shown if call.status == "ok" else (call.error or "")
    details = ""
    if body:
        details = f"<pre style=\"white-space:pre-wrap;margin:4px 0\">{html.escape(body)}</pre>"
    arguments = html.escape(json.dumps(call.args or {}, ensure_ascii=False, indent=1))
    summary = (f"{icon} <code>{html.escape(call_signature(call))}</code> "
               f"<span class=\"gemini-tool-status\">{html.escape(label)}{_duration(call)}</span>")
    return (f'<details class="gemini-tool" style="border-left:3px solid #888;padding-left:6px;margin:4px 0">'
            f"<summary>{summary}</summary><div>arguments:<pre>{arguments}</pre>{details}</div></details>\n")


def card_text(call) -> str:
    icon, label = _STATUS.get(call.status, ("", call.status))
    body = call.shown if call.status == "ok" else call.error
    line = f"{icon} {call_signature(call)}: {label}{_duration(call)}"
    if body:
        short = " ".join(str(body).split())
        line += ": " + (short if len(short) <= 120 else short[:119] + "…")
    return line


def part_html(part) -> str:
    if part.executable_code is not None:
        language = str(getattr(part.executable_code.language, "value", "") or "python").lower()
        return "<div><em>Code Gemini ran:</em></div>" + code_block(part.executable_code.code or "", language)
    if part.code_execution_result is not None:
        outcome = str(getattr(part.code_execution_result.outcome, "name", "") or "")
        title = "Output" if outcome in ("", "OUTCOME_OK") else f"Output ({outcome})"
        return f"<div><em>{html.escape(title)}:</em></div>" + code_block(part.code_execution_result.output or "")
    blob = part.inline_data
    if blob is not None and blob.data:
        mime = (blob.mime_type or "").lower()
        data = base64.b64encode(blob.data).decode()
        if mime in ("image/png", "image/jpeg", "image/gif", "image/webp"):
            return f'<img src="data:{mime};base64,{data}" style="max-width:100%">\n'
        if mime.startswith("audio/"):
            return f'<audio controls src="data:{html.escape(mime)};base64,{data}"></audio>\n'
        return f"<div><em>[{html.escape(mime)} data, {len(blob.data):,} bytes]</em></div>\n"
    return ""


def part_text(part) -> str:
    if part.executable_code is not None:
        return f"[code Gemini ran]\n{part.executable_code.code}"
    if part.code_execution_result is not None:
        return f"[output]\n{part.code_execution_result.output}"
    if part.inline_data is not None:
        return f"[{part.inline_data.mime_type} data, {len(part.inline_data.data or b''):,} bytes]"
    return ""


# -- Google Search grounding --------------------------------------------------------------


def cite(text: str, grounding) -> str:
    """Numbered citation links after each grounded segment of the answer's text.

    The API's segment offsets count UTF-8 bytes, so markers go in at byte offsets."""
    chunks = grounding.grounding_chunks or []
    supports = grounding.grounding_supports or []
    raw = text.encode("utf-8")
    inserts: dict[int, list[int]] = {}
    for support in supports:
        end = support.segment.end_index if support.segment is not None else None
        if end is None or end > len(raw):
            continue
        for index in support.grounding_chunk_indices or []:
            if index < len(chunks) and index not in inserts.setdefault(end, []):
                inserts[end].append(index)
    for end in sorted(inserts, reverse=True):
        marks = "".join(_citation(i, chunks[i]) for i in inserts[end])
        raw = raw[:end] + marks.encode("utf-8") + raw[end:]
    return raw.decode("utf-8", "replace")


def _web_uri(web) -> str:
    """A source's link, only if it is http(s): anything else is shown as plain text."""
    uri = (web.uri or "") if web is not None else ""
    return uri if uri.lower().startswith(("https://", "http://")) else ""


def _citation(index: int, chunk) -> str:
    uri = _web_uri(chunk.web)
    return f" [[{index + 1}]]({uri})" if uri else f" [{index + 1}]"


def sources_markdown(grounding) -> str:
    """The numbered sources, and the search suggestions Google asks apps to show
    (as plain links to the searches: its ready-made HTML is not displayed as is)."""
    lines = []
    for number, chunk in enumerate(grounding.grounding_chunks or [], 1):
        web = chunk.web
        if web is None:
            continue
        title = (web.title or web.domain or web.uri or "source").replace("[", "(").replace("]", ")")
        uri = _web_uri(web)
        lines.append(f"{number}. [{title}]({uri})" if uri else f"{number}. {title}")
    out = ""
    if lines:
        out += "\n\n**Sources**\n\n" + "\n".join(lines)
    queries = grounding.web_search_queries or []
    if queries:
        links = " · ".join(f"[{q.replace('[', '(').replace(']', ')')}](https://www.google.com/search?q={quote_plus(q)})"
                           for q in queries)
        out += f"\n\n**Google Search suggestions:** {links}"
    return out

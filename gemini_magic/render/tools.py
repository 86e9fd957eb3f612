"""Tool-call cards, code the model ran, media parts and search citations.

Everything shown here came from the model or from a tool, so all of it is escaped:
arguments, results and errors are text, never markup.
"""

from __future__ import annotations

import base64
import html
import json
import re
from urllib.parse import quote, quote_plus, urlsplit

from .code import code_block, image

_STATUS = {
    "pending": ("…", "waiting"), "running": ("…", "running"), "ok": ("✓", "done"),
    "error": ("✗", "raised an error"), "refused": ("⊘", "not run"), "unknown": ("⊘", "unknown function"),
    "skipped": ("⊘", "skipped: step limit"), "asking": ("?", "waiting for your approval"),
    "interrupted": ("⊘", "interrupted"),
}


def call_signature(call, limit: int = 200) -> str:
    args = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in (call.args or {}).items())
    text = f"{call.name}({args})"
    return text if len(text) <= limit else text[: limit - 1] + "…"


# A tool that took less than this was quick, and its time is noise ("done in 0 ms").
SLOW = 0.5


def _duration(call) -> str:
    if call.status not in ("ok", "error") or call.seconds < SLOW:
        return ""
    return f" in {call.seconds:.1f} s"


def _result_label(call) -> str:
    return "result" if call.status == "ok" else "error" if call.status == "error" else "why"


_LABEL = 'style="opacity:0.7;font-size:smaller;margin-top:4px"'
_PRE = 'style="white-space:pre-wrap;margin:2px 0 4px"'


def card_html(call) -> str:
    icon, label = _STATUS.get(call.status, ("", call.status))
    body = call.shown if call.status == "ok" else (call.error or "")
    rows = "".join(f"<tr><th style=\"text-align:left;padding-right:8px;font-weight:normal\"><code>"
                   f"{html.escape(str(name))}</code></th><td><code>"
                   f"{html.escape(json.dumps(value, ensure_ascii=False))}</code></td></tr>"
                   for name, value in (call.args or {}).items())
    arguments = f"<table>{rows}</table>" if rows else "<div><em>none</em></div>"
    details = f"<div {_LABEL}>{_result_label(call)}</div><pre {_PRE}>{html.escape(str(body))}</pre>" if body else ""
    summary = (f"{icon} <code>{html.escape(call_signature(call))}</code> "
               f"<span class=\"gemini-tool-status\">{html.escape(label)}{_duration(call)}</span>")
    return (f'<details class="gemini-tool" style="border-left:3px solid #888;padding-left:6px;margin:4px 0">'
            f"<summary>{summary}</summary><div {_LABEL}>arguments</div>{arguments}{details}</details>\n")


def card_text(call) -> str:
    icon, label = _STATUS.get(call.status, ("", call.status))
    body = call.shown if call.status == "ok" else call.error
    line = f"{icon} {call_signature(call)}: {label}{_duration(call)}"
    if body:
        short = " ".join(str(body).split())
        # "done; result: 21" but "raised an error: KeyError ..." (the status says what follows).
        line += ("; result: " if call.status == "ok" else ": ") + (short if len(short) <= 120 else short[:119] + "…")
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
            return image(mime, data)
        if mime.startswith("audio/"):
            from ..media.audio import playable

            mime, wav = playable(mime, blob.data)
            data = base64.b64encode(wav).decode()
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


def citations(text: str, grounding) -> dict[int, list[tuple[str, str]]]:
    """The numbered source links to show after each grounded segment of the answer's
    text: {character offset: [(number, URL or "")]}, for markdown.to_html.

    The API's segment offsets count UTF-8 bytes; one inside a character counts
    from the character's end."""
    chunks = grounding.grounding_chunks or []
    size = len(text.encode("utf-8"))
    ends: dict[int, list[int]] = {}
    for support in grounding.grounding_supports or []:
        end = support.segment.end_index if support.segment is not None else None
        if end is None or not 0 < end <= size:
            continue
        for index in support.grounding_chunk_indices or []:
            if 0 <= index < len(chunks) and index not in ends.setdefault(end, []):
                ends[end].append(index)
    if not ends:
        return {}
    chars, done = {}, 0  # byte offset of each character's end -> character offset
    for position, char in enumerate(text, 1):
        done += len(char.encode("utf-8"))
        chars[done] = position
    out: dict[int, list[tuple[str, str]]] = {}
    for end, indices in ends.items():
        at = chars.get(end) or next(chars[b] for b in range(end, size + 1) if b in chars)
        out.setdefault(at, []).extend((str(i + 1), _web_uri(_source(chunks[i]))) for i in indices)
    return out


# What may stay as is in each part of a link: RFC 3986's unreserved characters, the
# reserved ones valid there, and the % of an existing escape. Parentheses are
# escaped too, although valid: a Markdown link would end at a ")".
_HOST_SAFE = "-._~!$&'*+,;=:@[]%"
_PATH_SAFE = "-._~!$&'*+,;=:@/%"
_QUERY_SAFE = _PATH_SAFE + "?"
_STRAY_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _escaped(piece: str, safe: str) -> str:
    return quote(_STRAY_PERCENT.sub("%25", piece), safe=safe.replace("(", "").replace(")", ""))


def _web_uri(web) -> str:
    """A source's link, only if it is http(s) (anything else is shown as plain text),
    with what is unsafe in a URL percent-encoded: spaces, non-ASCII, quotes, angle
    brackets, parentheses... Existing %XX escapes are kept, so nothing is encoded twice."""
    uri = ((web.uri or "") if web is not None else "").strip()
    if not uri.lower().startswith(("https://", "http://")):
        return ""
    parts = urlsplit(uri)
    host = parts.netloc
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")  # an international domain name
        except UnicodeError:
            pass  # not a valid one: percent-encoded below
    url = f"{parts.scheme.lower()}://{_escaped(host, _HOST_SAFE)}{_escaped(parts.path, _PATH_SAFE)}"
    if parts.query or "?" in uri.split("#")[0]:
        url += "?" + _escaped(parts.query, _QUERY_SAFE)
    if parts.fragment:
        url += "#" + _escaped(parts.fragment, _QUERY_SAFE)
    return url


_MARKDOWN_ACTIVE = re.compile(r"([\\`*_\[\]<>$~|])|&(?=#?\w+;)")


def _plain(text: str) -> str:
    """Text shown as is inside Markdown (a source title, a search query)."""
    return _MARKDOWN_ACTIVE.sub(lambda m: "\\" + m.group(0), " ".join(text.split()))


# How much of a File Search passage a source line quotes.
PASSAGE_CHARS = 240


def _source(chunk):
    """What a grounding chunk cites: a web page (Search), a place (Maps) or a passage of
    a document (File Search); each has a title and a uri."""
    return chunk.web or chunk.maps or chunk.retrieved_context


def sources_markdown(grounding) -> str:
    """The numbered sources, and the search suggestions Google asks apps to show
    (as plain links to the searches: its ready-made HTML is not displayed as is).
    Google Maps' widget token is never used: it would need Google's script."""
    lines = []
    for number, chunk in enumerate(grounding.grounding_chunks or [], 1):
        source = _source(chunk)
        if source is None:
            continue
        title = _plain(source.title or getattr(source, "domain", None) or source.uri or "source")
        uri = _web_uri(source)
        line = f"{number}. [{title}]({uri})" if uri else f"{number}. {title}"
        if chunk.maps is not None:
            line += " (Google Maps)"
        context = chunk.retrieved_context
        if context is not None and chunk.web is None:
            if context.page_number:
                line += f", page {context.page_number}"
            passage = " ".join((context.text or "").split())
            if passage:
                short = passage if len(passage) <= PASSAGE_CHARS else passage[:PASSAGE_CHARS].rsplit(" ", 1)[0] + " …"
                line += f": “{_plain(short)}”"
        lines.append(line)
    out = ""
    if lines:
        out += "\n\n**Sources**\n\n" + "\n".join(lines)
    queries = grounding.web_search_queries or []
    if queries:
        links = " · ".join(f"[{_plain(q)}](https://www.google.com/search?q={quote_plus(q)})" for q in queries)
        out += f"\n\n**Google Search suggestions:** {links}"
    return out

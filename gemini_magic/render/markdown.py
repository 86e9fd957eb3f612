"""Model text -> HTML that is safe to display, whatever the model was tricked into writing.

Model output is untrusted (prompt injection), and JupyterLab does not sanitize a
trusted (freshly executed) Markdown or HTML output. So the Markdown is rendered
here, with markdown-it's raw HTML switched off: every tag the model writes is shown
as text. Links are limited to http(s), mailto and in-page anchors; remote images
become plain links, so an answer cannot make the browser fetch a URL by itself
(an exfiltration channel); math stays as $...$ text for the frontend's MathJax.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache

from .code import code_block
from .code import image as image_html

_SAFE_LINK = re.compile(r"^(https?:|mailto:|#)", re.IGNORECASE)
_SAFE_IMAGE = re.compile(r"^data:image/(png|jpe?g|gif|webp);", re.IGNORECASE)
_LINK_ATTRS = ' rel="noopener noreferrer nofollow" target="_blank"'


@lru_cache(maxsize=1)
def _markdown():
    from markdown_it import MarkdownIt
    from mdit_py_plugins.dollarmath import dollarmath_plugin

    # breaks: a single newline is a line break, as in Gemini's own apps (a haiku keeps its lines).
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "breaks": True})
    md.enable(["table", "strikethrough"])
    # No digits next to $ and no space inside: "$5 and $10" stays currency.
    md.use(dollarmath_plugin, allow_space=False, allow_digits=False, double_inline=True)
    md.validateLink = lambda url: bool(_SAFE_LINK.match(url.strip())) or bool(_SAFE_IMAGE.match(url.strip()))

    def link_open(self, tokens, idx, options, env):
        token = tokens[idx]
        href = token.attrGet("href") or ""
        if not _SAFE_LINK.match(href):  # a data: image URL used as a link target
            token.attrSet("href", "#")
        return self.renderToken(tokens, idx, options, env).replace(">", _LINK_ATTRS + ">", 1)

    def image(self, tokens, idx, options, env):
        token = tokens[idx]
        src = token.attrGet("src") or ""
        alt = html.escape(self.renderInlineAsText(token.children or [], options, env))
        if _SAFE_IMAGE.match(src):  # inline bytes: nothing is fetched
            mime, _, data = src[5:].partition(";base64,")
            if data and re.fullmatch(r"[A-Za-z0-9+/=_-]*", data):
                return image_html(mime, data, alt)
            return f'<img src="{html.escape(src)}" alt="{alt}">'
        label = alt or "image"
        return f'<a href="{html.escape(src)}"{_LINK_ATTRS}>[image: {label}]</a>'

    def math_inline(self, tokens, idx, options, env):
        return "$" + html.escape(tokens[idx].content) + "$"

    def math_inline_double(self, tokens, idx, options, env):
        return "$$" + html.escape(tokens[idx].content) + "$$"

    def math_block(self, tokens, idx, options, env):
        return "<p>$$\n" + html.escape(tokens[idx].content) + "$$</p>\n"

    def fence(self, tokens, idx, options, env):
        token = tokens[idx]
        language = token.info.strip().split()[0] if token.info.strip() else ""
        return code_block(token.content.rstrip("\n"), language)

    def code_block_rule(self, tokens, idx, options, env):
        return code_block(tokens[idx].content.rstrip("\n"))

    md.add_render_rule("fence", fence)
    md.add_render_rule("code_block", code_block_rule)
    md.add_render_rule("link_open", link_open)
    md.add_render_rule("image", image)
    md.add_render_rule("math_inline", math_inline)
    md.add_render_rule("math_inline_double", math_inline_double)
    md.add_render_rule("math_block", math_block)
    md.add_render_rule("math_block_label", math_block)
    return md


def to_html(markdown_text: str, citations: dict[int, list[tuple[str, str]]] | None = None) -> str:
    """Render Markdown to HTML with no active content.

    `citations` maps character offsets of the text to the numbered links to show
    there, [(label, URL)], each as " [label]" (a link when the URL is http(s)).
    A marker never breaks the Markdown around it: one inside a link, a code span
    or a code block goes right after it, and one that would change how the text
    parses (a closing `*`, a `](`, a line's block syntax) moves to the end of
    the word, then of the line, then of the answer."""
    md = _markdown()
    if not citations:
        return md.render(markdown_text)
    return md.renderer.render(_cited_tokens(markdown_text, citations), md.options, {})


# -- citation markers --------------------------------------------------------------------
# Each marker goes into the text as a private-use character: a letter to the
# parser, so it changes no delimiter's flanking; the parsed tokens then get the
# links in its place, never inside another link or in code.

_DELIMITERS = "*_~"


def _cited_tokens(text: str, citations: dict[int, list[tuple[str, str]]]) -> list:
    md = _markdown()
    groups: dict[int, list[tuple[str, str]]] = {}  # first choice of spot -> links
    spots: dict[int, list[int]] = {}
    for offset, marks in sorted(citations.items()):
        choices = list(dict.fromkeys(_spots(text, offset)))
        group = groups.setdefault(choices[0], [])
        group.extend(mark for mark in marks if mark not in group)
        spots.setdefault(choices[0], choices)
    holders = _holders(text, len(groups))
    if len(holders) < len(groups):  # a text using up the private-use area: sources listed at the end
        return md.parse(text) + _paragraph([mark for group in groups.values() for mark in group])
    marks = {holder: groups[at] for holder, at in zip(holders, groups, strict=True)}
    original = md.parse(text)
    whole = _Fit(text, [(0, len(text))], original, marks)
    placed = [(at, holder) for holder, at in zip(holders, groups, strict=True)]
    leftover: list[str] = []
    if not whole.fits(placed, 0):
        # Some marker changes the parse or vanishes: place them one at a time, each at
        # its first spot that fits, checked in its own top-level block (fast), then, if
        # the whole text disagrees, in the whole text.
        for fit in (_Fit(text, _blocks(text, original), original, marks), whole):
            placed, leftover = [], []
            for holder, at in zip(holders, groups, strict=True):
                spot = next((s for s in spots[at] if fit.fits([*placed, (s, holder)], s)), None)
                if spot is None:
                    leftover.append(holder)
                else:
                    placed.append((spot, holder))
            if fit is whole or whole.fits(placed, 0):
                break
    tokens, shown = _with_links(md.parse(_inserted(text, placed)), marks)
    # A marker the tokens lost (in no text, URL or code) is shown at the end instead.
    leftover += [holder for holder in marks if holder not in shown and holder not in leftover]
    if leftover:
        tokens += _paragraph([mark for holder in leftover for mark in marks[holder]])
    return tokens


class _Fit:
    """Checks that markers leave the parse of the text as it was, each still in it,
    parsing only the span (a top-level block, or the whole text) that holds a spot."""

    def __init__(self, text: str, spans: list[tuple[int, int]], original, marks):
        self.text, self.spans, self.marks = text, spans, marks
        self.whole = spans == [(0, len(text))]
        self._wanted = {(0, len(text)): _shape(original)} if self.whole else {}

    def fits(self, placed: list[tuple[int, str]], spot: int) -> bool:
        md = _markdown()
        span = (0, len(self.text)) if self.whole else next(
            (sp for sp in self.spans if sp[0] <= spot <= sp[1]), (0, len(self.text)))
        start, end = span
        if span not in self._wanted:
            self._wanted[span] = _shape(md.parse(self.text[start:end]))
        inside = [(at - start, holder) for at, holder in placed if start <= at <= end]
        tokens = md.parse(_inserted(self.text[start:end], inside))
        return _shape(tokens) == self._wanted[span] and {h for _, h in inside} <= _present(tokens, self.marks)


def _blocks(text: str, tokens) -> list[tuple[int, int]]:
    """The character spans of the text's top-level blocks (from their line maps)."""
    starts = [0] + [i + 1 for i, char in enumerate(text) if char == "\n"]
    spans = []
    for token in tokens:
        if token.level == 0 and token.map and token.nesting >= 0:
            first, last = token.map
            end = starts[last] - 1 if last < len(starts) else len(text)
            spans.append((starts[first], max(end, starts[first])))
    return spans


def _settle(text: str, offset: int) -> int:
    """Within the text, after the last non-blank before the offset."""
    at = max(0, min(offset, len(text)))
    while at > 0 and text[at - 1].isspace():
        at -= 1
    return at


_IN_WORD = ".,-'’/"  # inside a word when a letter or digit follows: 4.0.6, example.org, 1,000


def _word_end(text: str, at: int) -> int:
    """The end of the word `at` falls in (a marker never splits one)."""
    while 0 < at < len(text) and not text[at - 1].isspace():
        char = text[at]
        if not (char.isalnum() or (char in _IN_WORD and at + 1 < len(text) and text[at + 1].isalnum())):
            break
        at += 1
    return at


def _spots(text: str, offset: int):
    """Where a marker may go, in order of preference: after the word it falls in
    and after emphasis that closes there; then before that emphasis; then the end
    of the run of non-blanks, of the line, of the line before (a fence's closing
    line, a heading's underline), or inside a table row's last cell."""
    at = _word_end(text, _settle(text, offset))
    after = at
    while after < len(text) and text[after] in _DELIMITERS:
        after += 1
    if after > at and (after == len(text) or not text[after].isalnum()):
        yield after  # closing emphasis: the marker follows it
    yield at
    before = at
    while before > 0 and text[before - 1] in _DELIMITERS:
        before -= 1
    yield before
    word = at
    while word < len(text) and not text[word].isspace():
        word += 1
    yield word
    end = text.find("\n", at)
    start = text.rfind("\n", 0, at)
    for line in (_settle(text, len(text) if end < 0 else end), _settle(text, max(start, 0))):
        yield line
        if text[:line].endswith("|"):
            yield _settle(text, line - 1)


def _present(tokens, marks) -> set[str]:
    """The markers found anywhere in the parsed tokens (a link's URL holds them %-encoded)."""
    from urllib.parse import unquote

    seen = []
    for token in tokens:
        for part in [token, *(token.children or ())]:
            seen += [part.content, part.info or "", *(unquote(str(v)) for v in (part.attrs or {}).values())]
            seen += [inner.content for inner in part.children or ()] if part is not token else []
    found = "".join(seen)
    return {holder for holder in marks if holder in found}


def _holders(text: str, count: int) -> list[str]:
    present = set(text)
    return [c for c in map(chr, range(0xE000, 0xF900)) if c not in present][:count]


def _inserted(text: str, placed: list[tuple[int, str]]) -> str:
    pieces, last = [], 0
    for at, holder in sorted(placed, key=lambda p: p[0]):
        pieces += [text[last:at], holder]
        last = at
    return "".join(pieces) + text[last:]


def _shape(tokens) -> list:
    """What the parse means, without the words: a marker must not change it."""
    shape = []
    for token in tokens:
        shape.append((token.type, token.nesting, token.tag, token.markup, tuple(token.map or ())))
        shape += [(c.type, c.nesting, c.markup) for c in token.children or () if c.type != "text"]
    return shape


def _link_tokens(marks: list[tuple[str, str]]) -> list:
    from markdown_it.token import Token

    tokens = []
    for label, url in marks:
        tokens.append(Token("text", "", 0, content=" "))
        if url and _SAFE_LINK.match(url):
            tokens += [Token("link_open", "a", 1, attrs={"href": url}),
                       Token("text", "", 0, content=f"[{label}]"), Token("link_close", "a", -1)]
        else:
            tokens.append(Token("text", "", 0, content=f"[{label}]"))
    return tokens


def _paragraph(marks: list[tuple[str, str]]) -> list:
    from markdown_it.token import Token

    inline = Token("inline", "", 0, children=_link_tokens(marks)[1:])  # no space at the start
    return [Token("paragraph_open", "p", 1, block=True), inline, Token("paragraph_close", "p", -1, block=True)]


def _with_links(tokens: list, marks: dict[str, list[tuple[str, str]]]) -> tuple[list, set[str]]:
    """The tokens with each marker replaced by its links (or moved after the link,
    code or block it fell in), and the markers shown."""
    from urllib.parse import quote

    found = re.compile("[" + "".join(marks) + "]")
    encoded = {quote(holder): holder for holder in marks}  # how a link's URL holds one
    shown: set[str] = set()

    def take(value: str, into: list[str]) -> str:
        for escaped, holder in encoded.items():
            if escaped in value:
                into.append(holder)
                value = value.replace(escaped, "")
        into += found.findall(value)
        return found.sub("", value)

    def links(holders: list[str]) -> list:
        shown.update(holders)
        return _link_tokens([mark for holder in dict.fromkeys(holders) for mark in marks[holder]])

    out = []
    for token in tokens:
        if token.children:
            token.children = _inline_links(token.children, found, take, links)
            token.content = found.sub("", token.content)
            out.append(token)
        elif found.search(token.content + (token.info or "")):
            after: list[str] = []
            token.content, token.info = take(token.content, after), take(token.info or "", after)
            out.append(token)
            if after:
                out += _paragraph([])
                out[-2].children = links(after)[1:]
        else:
            out.append(token)
    return out, shown


def _inline_links(children: list, found: re.Pattern, take, links) -> list:
    from markdown_it.token import Token

    out: list = []
    pending: list[str] = []  # markers that fell inside a link: shown after it
    depth = 0
    for child in children:
        for name, value in list((child.attrs or {}).items()):
            if isinstance(value, str):
                child.attrs[name] = take(value, pending)
        depth += child.type == "link_open"
        depth -= child.type == "link_close"
        for inner in child.children or ():  # an image's alt text
            inner.content = take(inner.content, pending)
        if child.type == "text" and not depth and found.search(child.content):
            for piece in re.split(f"({found.pattern})", child.content):
                if found.fullmatch(piece):
                    out += links([piece])
                elif piece:
                    out.append(Token("text", "", 0, content=piece))
            continue
        child.content = take(child.content, pending)
        out.append(child)
        if pending and not depth:
            out += links(pending)
            pending = []
    return out + (links(pending) if pending else [])



_FENCE = re.compile(r"^ {0,3}(```+|~~~+)[ \t]*([\w+.-]*)[^\n]*\n(.*?)^ {0,3}\1[ \t]*$", re.MULTILINE | re.DOTALL)


def extract_code(text: str) -> tuple[str, str]:
    """The first fenced code block of an answer (code, language), else the whole text."""
    match = _FENCE.search(text)
    if match:
        return match.group(3).rstrip("\n"), match.group(2)
    return text.strip("\n"), ""

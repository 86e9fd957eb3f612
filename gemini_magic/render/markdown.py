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

_SAFE_LINK = re.compile(r"^(https?:|mailto:|#)", re.IGNORECASE)
_SAFE_IMAGE = re.compile(r"^data:image/(png|jpe?g|gif|webp);", re.IGNORECASE)
_LINK_ATTRS = ' rel="noopener noreferrer nofollow" target="_blank"'


@lru_cache(maxsize=1)
def _markdown():
    from markdown_it import MarkdownIt
    from mdit_py_plugins.dollarmath import dollarmath_plugin

    md = MarkdownIt("commonmark", {"html": False, "linkify": False})
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
            return f'<img src="{html.escape(src)}" alt="{alt}">'
        label = alt or "image"
        return f'<a href="{html.escape(src)}"{_LINK_ATTRS}>[image: {label}]</a>'

    def math_inline(self, tokens, idx, options, env):
        return "$" + html.escape(tokens[idx].content) + "$"

    def math_inline_double(self, tokens, idx, options, env):
        return "$$" + html.escape(tokens[idx].content) + "$$"

    def math_block(self, tokens, idx, options, env):
        return "<p>$$\n" + html.escape(tokens[idx].content) + "$$</p>\n"

    md.add_render_rule("link_open", link_open)
    md.add_render_rule("image", image)
    md.add_render_rule("math_inline", math_inline)
    md.add_render_rule("math_inline_double", math_inline_double)
    md.add_render_rule("math_block", math_block)
    md.add_render_rule("math_block_label", math_block)
    return md


def to_html(markdown_text: str) -> str:
    """Render Markdown to HTML with no active content."""
    return _markdown().render(markdown_text)


def code_block(code: str, language: str = "") -> str:
    cls = f' class="language-{html.escape(language)}"' if language else ""
    return f"<pre><code{cls}>{html.escape(code)}</code></pre>\n"


_FENCE = re.compile(r"^ {0,3}(```+|~~~+)[ \t]*([\w+.-]*)[^\n]*\n(.*?)^ {0,3}\1[ \t]*$", re.MULTILINE | re.DOTALL)


def extract_code(text: str) -> tuple[str, str]:
    """The first fenced code block of an answer (code, language), else the whole text."""
    match = _FENCE.search(text)
    if match:
        return match.group(3).rstrip("\n"), match.group(2)
    return text.strip("\n"), ""

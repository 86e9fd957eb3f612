"""Code shown in an answer: highlighted, with a Copy button, and images that open full size.

The only script in anything gemini-magic shows is here, and it is ours: two fixed
`onclick` handlers (COPY and ZOOM) that never contain a byte the model wrote. The code
they copy is read from the page, where it is escaped text. They work in a freshly run
(trusted) output; a notebook reopened untrusted has them stripped by the frontend's
sanitizer, and there the code can still be selected and copied by hand.
"""

from __future__ import annotations

import html
from functools import lru_cache

# Copy the code next to the button: the Clipboard API where the page is a secure context
# (localhost, https), else a selected textarea and execCommand.
COPY = ("(function(b){var t=b.parentElement.querySelector('code').innerText;"
        "function ok(){b.textContent='Copied';setTimeout(function(){b.textContent='Copy'},1500)}"
        "if(navigator.clipboard&&window.isSecureContext){navigator.clipboard.writeText(t).then(ok)}"
        "else{var a=document.createElement('textarea');a.value=t;document.body.appendChild(a);a.select();"
        "document.execCommand('copy');a.remove();ok()}})(this)")
# A gallery's tile: images side by side, each at most this wide until it is opened.
TILE_FLEX = "0 1 320px"
# An image at its full size, or back to fitting the output. In a gallery its tile takes a
# row of its own meanwhile, so the next image is not drawn over it.
ZOOM = ("var z=this.style.maxWidth!=='none';this.style.maxWidth=z?'none':'100%';"
        "this.style.maxHeight=z?'none':'480px';this.style.cursor=z?'zoom-out':'zoom-in';"
        "var t=this.parentElement;if(t&&t.classList.contains('gemini-tile'))"
        "{t.style.flex=z?'0 0 100%':'" + TILE_FLEX + "'}")

_BUTTON = ('<button class="gemini-copy" title="Copy the code" style="position:absolute;top:4px;right:4px;'
           'font-size:11px;padding:1px 6px;opacity:0.75;cursor:pointer" onclick="{js}">Copy</button>')


def code_block(code: str, language: str = "") -> str:
    """A code block: highlighted when the language is known, with a Copy button."""
    body = _highlighted(code, language)
    cls = f' class="language-{html.escape(language)}"' if language else ""
    return (f'<div class="gemini-code" style="position:relative">'
            f"{_BUTTON.format(js=html.escape(COPY, quote=True))}"
            f'<pre style="padding-right:4em"><code{cls}>{body}</code></pre></div>\n')


def image(mime: str, data_b64: str, alt: str = "") -> str:
    """An image of an answer: fits the output, and opens at full size when clicked."""
    return (f'<img src="data:{mime};base64,{data_b64}" alt="{html.escape(alt)}" title="Click for full size" '
            f'style="max-width:100%;max-height:480px;cursor:zoom-in" onclick="{html.escape(ZOOM, quote=True)}">\n')


def _highlighted(code: str, language: str) -> str:
    lexer = _lexer(language.lower()) if language else None
    if lexer is None:
        return html.escape(code)
    from pygments import highlight
    from pygments.formatters import HtmlFormatter

    # Inline styles: they survive where a <style> block would be stripped, and need
    # no stylesheet of ours. The formatter escapes the code.
    formatter = HtmlFormatter(nowrap=True, noclasses=True, style="default")
    return highlight(code, lexer, formatter).rstrip("\n")


@lru_cache(maxsize=64)
def _lexer(language: str):
    try:
        from pygments.lexers import get_lexer_by_name
        from pygments.util import ClassNotFound
    except ImportError:  # pygments comes with IPython; without it, plain text
        return None
    try:
        return get_lexer_by_name(language, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return None

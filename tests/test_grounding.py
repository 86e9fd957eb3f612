"""Gemini's server-side tools: Google Search grounding, code execution and URL context.

Checks what the fake server received (the tools of each request) and how grounded
answers and code Gemini ran are shown: as kernel HTML and as terminal text.
"""

from __future__ import annotations

import re

import pytest

from tests.fake_gemini import Reply
from tests.markup import visible_text

GENERATE = ("generateContent", "streamGenerateContent")


def _k(obj, camel: str):
    """A wire key in camelCase or snake_case (the SDK sends both)."""
    if not isinstance(obj, dict):
        return None
    if camel in obj:
        return obj[camel]
    return obj.get(re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower())


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(word.title() for word in rest)


def tools_sent(request) -> list[dict]:
    """The request's tools, with their top-level keys in camelCase."""
    return [{_camel(key): value for key, value in tool.items()} for tool in _k(request.body, "tools") or []]


def ok(ip, source: str):
    result = ip.run_cell(source)
    assert result.error_in_exec is None, result.error_in_exec
    assert result.error_before_exec is None, result.error_before_exec
    return result


def _data(msg) -> dict:
    return msg["content"].get("data", {})


def final_bundle(execution) -> dict:
    shown = [m for m in execution.of_type("display_data") if _data(m).get("text/html")]
    assert shown, execution.messages
    return _data(shown[-1])


# -- what is sent -------------------------------------------------------------------


@pytest.mark.parametrize("option, tool", [
    ("--search", {"googleSearch": {}}),
    ("--code-exec", {"codeExecution": {}}),
    ("--url-context", {"urlContext": {}}),
])
def test_server_tool_options_are_sent(ip, server, option, tool):
    server.queue("fine")
    ok(ip, f"%%gemini {option}\nhi")
    assert tools_sent(server.last) == [tool]
    # No function calling is involved: no tool config.
    assert _k(server.last.body, "toolConfig") is None


def test_all_server_tools_together(ip, server):
    server.queue("fine")
    ok(ip, "%%gemini --search --code-exec --url-context\nhi")
    assert tools_sent(server.last) == [{"googleSearch": {}}, {"codeExecution": {}}, {"urlContext": {}}]


def test_no_option_sends_no_tools(ip, server):
    server.queue("fine")
    ok(ip, "%%gemini\nhi")
    assert _k(server.last.body, "tools") is None


def test_server_tools_combined_with_function_tools(ip, server):
    ok(ip, "def area(r: float) -> float:\n    '''Area of a circle.'''\n    return 3.14159 * r * r\n")
    server.queue(Reply(parts=[{"functionCall": {"id": "c1", "name": "area", "args": {"r": 2}}}]), "About 12.6.")
    ok(ip, "%%gemini --search --code-exec --tools area\nArea of r=2?")
    first, second = [r for r in server.requests if r.action in GENERATE]
    for request in (first, second):
        sent = tools_sent(request)
        assert sent[:2] == [{"googleSearch": {}}, {"codeExecution": {}}]
        assert len(sent) == 3
        declarations = sent[2]["functionDeclarations"]
        assert [d["name"] for d in declarations] == ["area"]
        assert declarations[0]["description"] == "Area of a circle."
    response = _k(_k(second.body, "contents")[-1]["parts"][0], "functionResponse")
    assert response["name"] == "area" and response["response"]["result"] == pytest.approx(12.56636)


# -- grounded answers ---------------------------------------------------------------

# Non-ASCII before the first segment's end: the API's offsets count UTF-8 bytes.
SEGMENT = "Café crème costs 3 €."
SECOND = " Paris is big."
ANSWER = SEGMENT + SECOND
RENDERED = '<style>.chip{color:red}</style><div class="chip" onclick="steal()">café prices paris</div>'


def grounding(extra_chunks: list | None = None, extra_supports: list | None = None) -> dict:
    end = len(SEGMENT.encode("utf-8"))
    assert end != len(SEGMENT)  # the test means something only if bytes and characters differ
    return {
        "webSearchQueries": ["café prices paris", "paris size"],
        "searchEntryPoint": {"renderedContent": RENDERED},
        "groundingChunks": [{"web": {"uri": "https://a.example/x", "title": "A"}}] + (extra_chunks or []),
        "groundingSupports": [
            {"segment": {"startIndex": 0, "endIndex": end, "text": SEGMENT}, "groundingChunkIndices": [0]},
        ] + (extra_supports or []),
    }


def test_grounded_answer_in_the_kernel(kern, server):
    server.queue(Reply(text=ANSWER, grounding=grounding()))
    ex = kern.run("%%gemini --search\nCoffee in Paris?", check=True)
    bundle = final_bundle(ex)
    html_text = bundle["text/html"]
    # The citation link sits right after the grounded segment, before the next sentence.
    assert re.search(r"3 €\. <a href=\"https://a\.example/x\"[^>]*>\[1\]</a> Paris is big\.", html_text), html_text
    assert html_text.count('href="https://a.example/x"') == 2  # the citation and the source
    # The numbered sources.
    assert re.search(r"<li><a href=\"https://a\.example/x\"[^>]*>A</a></li>", html_text), html_text
    # Search suggestions: plain links to Google searches, built from webSearchQueries.
    assert re.search(r'<a href="https://www\.google\.com/search\?q=caf%C3%A9\+prices\+paris"[^>]*>'
                     r"café prices paris</a>", html_text), html_text
    assert 'href="https://www.google.com/search?q=paris+size"' in html_text
    # Google's ready-made HTML is never shown as is.
    for shown in (html_text, bundle["text/plain"]):
        assert "<style" not in shown and "onclick" not in shown and "steal()" not in shown
    assert "chip" not in html_text
    assert bundle["text/plain"].startswith(ANSWER)
    assert "1. [A](https://a.example/x)" in bundle["text/plain"]


def test_citations_of_two_segments_and_two_sources(kern, server):
    end = len(ANSWER.encode("utf-8"))
    extra_chunks = [{"web": {"uri": "https://b.example/y", "title": "B"}}]
    extra_supports = [{"segment": {"startIndex": len(SEGMENT.encode()), "endIndex": end, "text": SECOND},
                       "groundingChunkIndices": [0, 1]}]
    server.queue(Reply(text=ANSWER, grounding=grounding(extra_chunks, extra_supports)))
    ex = kern.run("%%gemini --search\nParis?", check=True)
    html_text = final_bundle(ex)["text/html"]
    assert re.search(r"3 €\. <a href=\"https://a\.example/x\"[^>]*>\[1\]</a> Paris is big\. "
                     r"<a href=\"https://a\.example/x\"[^>]*>\[1\]</a> "
                     r"<a href=\"https://b\.example/y\"[^>]*>\[2\]</a>", html_text), html_text
    assert re.search(r"<li><a href=\"https://b\.example/y\"[^>]*>B</a></li>", html_text)


def test_hostile_sources_are_not_links_or_markup(kern, server):
    end = len(ANSWER.encode("utf-8"))
    extra_chunks = [{"web": {"uri": "javascript:alert(1)", "title": "<img src=x onerror=alert(2)>"}}]
    extra_supports = [{"segment": {"startIndex": len(SEGMENT.encode()), "endIndex": end, "text": SECOND},
                       "groundingChunkIndices": [1]}]
    server.queue(Reply(text=ANSWER, grounding=grounding(extra_chunks, extra_supports)))
    ex = kern.run("%%gemini --search\nParis?", check=True)
    html_text = final_bundle(ex)["text/html"]
    assert not re.search(r"href=\"\s*javascript", html_text, re.IGNORECASE)
    assert "<img" not in html_text
    assert "&lt;img src=x onerror=alert(2)&gt;" in html_text
    # The safe source still is a link.
    assert re.search(r"<a href=\"https://a\.example/x\"[^>]*>\[1\]</a>", html_text)


def test_grounded_answer_in_the_terminal(ip, server, capsys):
    server.queue(Reply(text=ANSWER, grounding=grounding()))
    ok(ip, "%%gemini --search\nCoffee in Paris?")
    out = capsys.readouterr().out
    assert ANSWER in out
    assert "1. [A](https://a.example/x)" in out
    assert "https://www.google.com/search?q=caf%C3%A9+prices+paris" in out
    assert "https://www.google.com/search?q=paris+size" in out
    assert "<style" not in out and "onclick" not in out
    assert out.index(ANSWER) < out.index("**Sources**") < out.index("Google Search suggestions")


def test_grounding_without_web_chunks_shows_the_answer(kern, server):
    server.queue(Reply(text="Plain answer.", grounding={"webSearchQueries": []}))
    ex = kern.run("%%gemini --search\nq", check=True)
    bundle = final_bundle(ex)
    assert "Plain answer." in bundle["text/html"]
    assert "Sources" not in bundle["text/html"] and "<a " not in bundle["text/html"]


# -- code execution -----------------------------------------------------------------

CODE_PARTS = [
    {"executableCode": {"language": "PYTHON", "code": "print(1+1)"}},
    {"codeExecutionResult": {"outcome": "OUTCOME_OK", "output": "2\n"}},
    {"text": "The answer is 2."},
]


def test_code_execution_in_the_kernel(kern, server):
    server.queue(Reply(parts=CODE_PARTS))
    ex = kern.run("%%gemini --code-exec\nWhat is 1+1? Use code.", check=True)
    html_text = final_bundle(ex)["text/html"]
    assert '<code class="language-python">' in html_text and 'style="color' in html_text  # highlighted
    seen = visible_text(html_text)
    code = seen.index("print(1+1)")
    output = seen.index("Output:2\n")
    text = seen.index("The answer is 2.")
    assert seen.index("Code Gemini ran") < code < output < text
    plain = final_bundle(ex)["text/plain"]
    assert plain.index("print(1+1)") < plain.index("[output]\n2") < plain.index("The answer is 2.")


def test_code_execution_failure_and_hostile_code_are_escaped(kern, server):
    server.queue(Reply(parts=[
        {"executableCode": {"language": "PYTHON", "code": "print('<script>x</script>')"}},
        {"codeExecutionResult": {"outcome": "OUTCOME_FAILED", "output": "<b>Traceback</b>"}},
        {"text": "It failed."},
    ]))
    ex = kern.run("%%gemini --code-exec\nrun it", check=True)
    html_text = final_bundle(ex)["text/html"]
    assert "<script" not in html_text and "<b>" not in html_text
    assert "print('<script>x</script>')" in visible_text(html_text)
    assert "Output (OUTCOME_FAILED)" in html_text and "&lt;b&gt;Traceback&lt;/b&gt;" in html_text


def test_code_execution_in_the_terminal(ip, server, capsys):
    server.queue(Reply(parts=CODE_PARTS))
    ok(ip, "%%gemini --code-exec\nWhat is 1+1? Use code.")
    out = capsys.readouterr().out
    code = out.index("[code Gemini ran]\nprint(1+1)\n")
    output = out.index("[output]\n2\n")
    text = out.index("The answer is 2.")
    assert code < output < text


def test_code_execution_parts_stream_live_in_the_kernel(kern, server):
    server.queue(Reply(parts=CODE_PARTS))
    ex = kern.run("%%gemini --code-exec\nlive", check=True)
    updates = [_data(m).get("text/html", "") for m in ex.of_type("update_display_data")]
    # The code shows before its output arrives.
    with_code = [i for i, h in enumerate(updates) if "print(1+1)" in visible_text(h)]
    with_output = [i for i, h in enumerate(updates) if "<em>Output:</em>" in h]
    assert with_code and with_output and with_code[0] < with_output[0]

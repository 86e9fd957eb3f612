"""Real Gemini answers, served byte for byte, through the magic.

Each recording in tests/realwire (one real HTTP exchange with Google, see its
README) is served as recorded (status, headers, exact body bytes) by the fake
server's `queue_raw` to the real SDK, driven by a `%%gemini` cell whose options
match the recorded request; the tests check what the user sees. The SDK asks
for API version v1 while the recordings are v1beta: a raw answer is served
whatever the path's version.

A few tests change a recording on purpose (odd source URIs, citation offsets
inside Markdown), re-serialised; their names say "derived".
"""

from __future__ import annotations

import base64
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from gemini_magic.magics import CellFailed
from tests.conftest import ask, fails
from tests.fake_gemini import DEFAULT_MODELS, Reply
from tests.markup import visible_text

REALWIRE = Path(__file__).parent / "realwire"
GENERATE = ("generateContent", "streamGenerateContent")


# -- recordings ---------------------------------------------------------------------------


def recording(name: str) -> dict:
    return json.loads((REALWIRE / name).read_text(encoding="utf-8"))


def serve(server, *names: str, actions: tuple[str, ...] | None = None) -> list[dict]:
    """Queue the recordings' responses, in order, exactly as recorded."""
    recs = [recording(name) for name in names]
    for rec in recs:
        # A fixture saved without headers (vercel's) still came as JSON.
        headers = rec["response_headers"] or {"Content-Type": "application/json; charset=UTF-8"}
        extra = {"actions": actions} if actions else {}
        server.queue_raw(rec["status"], headers, rec["body"].encode("utf-8"), **extra)
    return recs


def model_of(rec: dict) -> str:
    return re.search(r"/models/([^:/?]+)", rec["request"]["path"]).group(1)


def options_for(rec: dict, extra: str = "") -> str:
    """The cell options of the recorded call: its model, and --no-stream for generateContent."""
    stream = ":streamGenerateContent" in rec["request"]["path"]
    return " ".join(filter(None, [f"-m {model_of(rec)}", "" if stream else "--no-stream", "--no-interpolate", extra]))


def prompt_of(rec: dict) -> str:
    body = rec["request"].get("body")
    contents = json.loads(body).get("contents", []) if body else []
    texts = [p["text"] for c in contents[:1] for p in c.get("parts", []) if "text" in p]
    return texts[0] if texts else "Hello"


def chunks_of(rec: dict) -> list[dict]:
    """The recorded response objects: each SSE event, or the one JSON body."""
    body = rec["body"]
    if body.startswith("data: "):
        return [json.loads(event.removeprefix("data: ")) for event in body.split("\r\n\r\n") if event.strip()]
    return [json.loads(body)]


def parts_of(rec: dict) -> list[dict]:
    return [part for chunk in chunks_of(rec) for cand in chunk.get("candidates", [])[:1]
            for part in cand.get("content", {}).get("parts", [])]


def answer_text(rec: dict) -> str:
    """What the answer says: the text parts joined, thought parts excluded."""
    return "".join(p["text"] for p in parts_of(rec) if "text" in p and not p.get("thought"))


def usage_of(metadata: dict) -> dict:
    """usageMetadata as the magic reports it (engine.usage_dict)."""
    names = {"promptTokenCount": "prompt_tokens", "candidatesTokenCount": "output_tokens",
             "thoughtsTokenCount": "thinking_tokens", "totalTokenCount": "total_tokens",
             "cachedContentTokenCount": "cached_tokens", "toolUsePromptTokenCount": "tool_prompt_tokens"}
    return {ours: metadata[theirs] for theirs, ours in names.items() if theirs in metadata}


def last_usage(rec: dict) -> dict:
    return usage_of(chunks_of(rec)[-1]["usageMetadata"])


# -- what the kernel shows ----------------------------------------------------------------


def final_output(execution) -> dict:
    shown = [m for m in execution.of_type("display_data") if m["content"].get("data", {}).get("text/html")]
    assert shown, execution.messages
    return shown[-1]["content"]


class _Page(HTMLParser):
    """The links of an HTML fragment, and its text with each link's text in place."""

    def __init__(self, source: str):
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str]] = []  # (href, text)
        self.text = ""
        self._open: list[list[str]] = []
        self.feed(source)

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._open.append([dict(attrs).get("href", ""), ""])

    def handle_endtag(self, tag):
        if tag == "a" and self._open:
            href, text = self._open.pop()
            self.links.append((href, text))

    def handle_data(self, data):
        self.text += data
        for link in self._open:
            link[1] += data


_URL_CHARS = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'*+,;=%]+$")


def assert_working_link(href: str) -> None:
    """An http(s) URL a browser follows as it is: nothing left to percent-encode, and
    every % starting an escape."""
    parts = urlsplit(href)
    assert parts.scheme in ("http", "https") and parts.netloc, href
    assert _URL_CHARS.match(href) and "(" not in href and ")" not in href, href
    assert not re.search(r"%(?![0-9A-Fa-f]{2})", href), href


def assert_no_stray_markdown(page: _Page) -> None:
    assert "](" not in page.text and "[[" not in page.text, page.text


# -- text answers ---------------------------------------------------------------------------

A_GENERATE = "a_generate_gemini-2.5-flash_genai-sdk_mirascope.json"
B_SSE = "b_sse_gemini-2.5-flash_usage_mid_stream_pydantic-ai.json"
B_ARRAY = "b_jsonarray_gemini-3-flash-preview_llm-gemini.json"
CACHED = "i_cached_contents_use_ruby_llm.json"


@pytest.mark.parametrize("name", [A_GENERATE, B_SSE, CACHED])
def test_answer_text_is_the_recorded_text_parts_joined(ip, server, name):
    [rec] = serve(server, name)
    assert ask(ip, prompt_of(rec), options_for(rec)) == answer_text(rec)
    [request] = [r for r in server.requests if r.action in GENERATE]
    assert request.stream == (":streamGenerateContent" in rec["request"]["path"])
    assert request.version == "v1" and server.pending == 0  # a v1 call got the v1beta recording


@pytest.mark.parametrize("name", [A_GENERATE, B_SSE, CACHED])
def test_usage_is_the_last_chunks_usage_metadata(kern, server, name):
    [rec] = serve(server, name)
    out = final_output(kern.run(f"%%gemini {options_for(rec)}\n{prompt_of(rec)}", check=True))
    meta = out["metadata"]["gemini_magic"]
    assert meta["usage"] == last_usage(rec)
    assert meta["model_version"] == chunks_of(rec)[-1]["modelVersion"] and meta["finish_reason"] == "STOP"
    assert out["data"]["text/plain"] == answer_text(rec)
    if len(chunks_of(rec)) > 1:  # mid-stream figures differ: the test can tell which chunk was used
        assert usage_of(chunks_of(rec)[0]["usageMetadata"]) != meta["usage"]


def test_usage_footer_in_the_terminal_shows_the_last_chunks_counts(ip, server, capsys):
    [rec] = serve(server, B_SSE)
    ask(ip, prompt_of(rec), options_for(rec, "--usage"))
    usage = last_usage(rec)
    expected = (f"{usage['prompt_tokens']} in, {usage['output_tokens']} out, "
                f"{usage['thinking_tokens']} thinking tokens")
    assert expected in capsys.readouterr().out


def test_gemini3_stream_tail_empty_signed_part_shows_nothing_but_stays_in_history(ip, server):
    """b_jsonarray's events, re-framed as SSE (the SDK always asks for alt=sse): the
    closing empty part with its signature adds no text, and a chat keeps it."""
    rec = recording(B_ARRAY)
    events = json.loads(rec["body"])
    body = "".join("data: " + json.dumps(event) + "\r\n\r\n" for event in events)
    server.queue_raw(200, {"Content-Type": "text/event-stream"}, body)
    assert ask(ip, prompt_of(rec), options_for(rec, "-c tail")) == "Hello"
    assert server.last.query == {"alt": "sse"}  # the SDK's stream: never the JSON-array form
    ask(ip, "And again?", options_for(rec, "-c tail"))
    model_turn = server.last.body["contents"][1]
    signature = events[-1]["candidates"][0]["content"]["parts"][0]["thoughtSignature"]
    sent = [p for p in model_turn["parts"] if p.get("thoughtSignature") or p.get("thought_signature")]
    assert [base64.urlsafe_b64decode(p.get("thoughtSignature") or p["thought_signature"]) for p in sent] == [
        base64.b64decode(signature)]


# -- thoughts ------------------------------------------------------------------------------

THINKING = "g_thinking_gemini-2.5-flash_genai-sdk_mirascope.json"
CODE_EXEC = "e_code_execution_sse_gemini-2.5-pro_pydantic-ai.json"


def thought_texts(rec: dict) -> list[str]:
    return [p["text"] for p in parts_of(rec) if p.get("thought") and "text" in p]


def test_thought_parts_are_not_shown_without_thoughts(kern, server):
    [rec] = serve(server, THINKING)
    out = final_output(kern.run(f"%%gemini {options_for(rec)}\n{prompt_of(rec)}", check=True))
    [thought] = thought_texts(rec)
    for shown in (out["data"]["text/html"], out["data"]["text/plain"]):
        assert "Analyzing Prime Numbers" in thought and "Analyzing Prime Numbers" not in shown
        assert "gemini-thoughts" not in shown
    assert out["data"]["text/plain"] == answer_text(rec)


def test_thought_parts_are_not_in_the_stored_answer_or_the_terminal(ip, server, capsys):
    [rec] = serve(server, THINKING)
    assert ask(ip, prompt_of(rec), options_for(rec)) == answer_text(rec)
    assert "Analyzing Prime Numbers" not in capsys.readouterr().out


def test_thought_parts_are_shown_collapsed_with_thoughts(kern, server):
    [rec] = serve(server, THINKING)
    out = final_output(kern.run(f"%%gemini {options_for(rec, '--thoughts')}\n{prompt_of(rec)}", check=True))
    html_text = out["data"]["text/html"]
    details = re.search(r'<details class="gemini-thoughts">(.*?)</details>', html_text, re.S)
    assert details and "Analyzing Prime Numbers" in details.group(1)
    # The thought text said "< 400" (sent as \u003c): shown as text, never markup.
    assert "&lt; 400" in details.group(1)
    assert html_text.index("</details>") < html_text.index("Therefore, there are 3 such primes")
    thinking = json.loads(server.last.raw_body)["generationConfig"]["thinkingConfig"]
    assert (thinking.get("includeThoughts") or thinking.get("include_thoughts")) is True


def test_thought_flagged_code_execution_is_not_shown_without_thoughts(kern, server):
    [rec] = serve(server, CODE_EXEC)
    out = final_output(kern.run(f"%%gemini {options_for(rec, '--code-exec')}\n{prompt_of(rec)}", check=True))
    html_text, plain = out["data"]["text/html"], out["data"]["text/plain"]
    # Shown: the code Gemini ran for the answer (its comment line), its output once, the text.
    seen = visible_text(html_text)
    assert "# Calculate the expression" in seen
    assert seen.count("print(result)") == 1 and seen.count("-428330955.97745") == 1
    assert "    result = 65465" not in seen and "gemini-thoughts" not in html_text
    assert plain.count("[code Gemini ran]") == 1 and plain.endswith(answer_text(rec))
    # STOP came in the middle of the stream too: the answer went on to its end.
    assert answer_text(rec) == "The result is -428,330,955.97745."


def test_thought_flagged_code_execution_is_shown_collapsed_with_thoughts(kern, server):
    [rec] = serve(server, CODE_EXEC)
    cell = f"%%gemini {options_for(rec, '--code-exec --thoughts')}\n{prompt_of(rec)}"
    html_text = final_output(kern.run(cell, check=True))["data"]["text/html"]
    details = re.search(r'<details class="gemini-thoughts">(.*?)</details>', html_text, re.S)
    assert details
    thought_code = [p for p in parts_of(rec) if p.get("thought") and "executableCode" in p]
    assert "    result = 65465 - 6544 * 65464 - 6 + 1.02255" in thought_code[0]["executableCode"]["code"]
    assert '<code class="language-python">' in details.group(1)
    assert "    result = 65465 - 6544 * 65464 - 6 + 1.02255" in visible_text(details.group(1))
    assert "-428330955.97745" in visible_text(details.group(1))
    outside = visible_text(html_text.replace(details.group(0), ""))
    assert "# Calculate the expression" in outside
    assert "# Calculate the expression" not in visible_text(details.group(1))


def test_thought_parts_stay_in_the_chat_history(ip, server):
    [rec] = serve(server, CODE_EXEC)
    ask(ip, prompt_of(rec), options_for(rec, "--code-exec -c calc"))
    ask(ip, "Thanks.", options_for(rec, "--code-exec -c calc"))
    sent = [p for c in server.last.body["contents"] if c["role"] == "model" for p in c["parts"]]
    assert [p.get("thought") is True for p in sent if "executableCode" in p or "executable_code" in p] == [
        True, False]


# -- Google Search grounding -------------------------------------------------------------------

GROUNDING = "d_grounding_gemini-3.5-flash_byte_offsets_ruby_llm.json"


def _segment_tail(segment: str) -> str:
    """The last words of a segment as rendered: link targets and Markdown markers dropped."""
    shown = re.sub(r"\]\([^)]*\)", "", segment)
    shown = re.sub(r"[*_\[\]#]", "", shown).rstrip()
    return shown[-12:]


def assert_citations_after_segments(page: _Page, grounding: dict) -> None:
    """Each support's source numbers follow the end of its segment, in the text as read."""
    text = " ".join(page.text.split())
    ends: dict[int, list[int]] = {}
    for support in grounding["groundingSupports"]:
        found = ends.setdefault(support["segment"]["endIndex"], [])
        found += [i for i in support["groundingChunkIndices"] if i not in found]
    tails = {s["segment"]["endIndex"]: _segment_tail(s["segment"]["text"]) for s in grounding["groundingSupports"]}
    for end, indices in ends.items():
        marks = " ".join(f"[{i + 1}]" for i in indices)
        assert f"{tails[end]} {marks}" in text, (tails[end], marks, text)


def grounded(kern, server, body: str | None = None, rec: dict | None = None):
    rec = rec or recording(GROUNDING)
    if body is None:
        serve(server, GROUNDING)
    else:
        server.queue_raw(200, rec["response_headers"], body)
    out = final_output(kern.run(f"%%gemini {options_for(rec, '--search')}\n{prompt_of(rec)}", check=True))
    return rec, out


def test_grounding_citations_and_sources_render_as_working_links(kern, server):
    rec, out = grounded(kern, server)
    meta = json.loads(rec["body"])["candidates"][0]["groundingMetadata"]
    page = _Page(out["data"]["text/html"])
    for href, _ in page.links:
        assert_working_link(href)
    assert_no_stray_markdown(page)
    uris = [c["web"]["uri"] for c in meta["groundingChunks"]]
    citations = [(href, text) for href, text in page.links if re.fullmatch(r"\[\d+\]", text)]
    assert citations and all(href == uris[int(text[1:-1]) - 1] for href, text in citations)
    sources = [(href, text) for href, text in page.links if href in uris and not re.fullmatch(r"\[\d+\]", text)]
    assert sources == [(c["web"]["uri"], c["web"]["title"]) for c in meta["groundingChunks"]]
    assert_citations_after_segments(page, meta)
    # Google's ready-made search widget is not shown; its queries are, as links.
    assert "<style" not in out["data"]["text/html"] and "chip" not in out["data"]["text/html"]
    assert len([h for h, _ in page.links if h.startswith("https://www.google.com/search?q=")]) == 3


def test_grounding_byte_offsets_keep_the_answers_markdown_intact(kern, server):
    """The recorded offsets end inside Markdown (an emphasis, link syntax) and count
    UTF-8 bytes (an em dash is 3 bytes): the answer's own Markdown still renders."""
    rec, out = grounded(kern, server)
    html_text = out["data"]["text/html"]
    assert "<strong>4.0.6</strong>" in html_text and "<strong>Ruby 3.4.10</strong>" in html_text
    for href, text in [("https://www.ruby-lang.org/en/downloads/", "Ruby-Lang.org Downloads"),
                       ("https://endoflife.date/ruby", "endoflife.date/ruby"),
                       ("https://github.com/ruby/ruby/releases", "GitHub – ruby/ruby Releases")]:
        assert (href, text) in _Page(html_text).links
    assert re.search(r"<em>\(Note: .*?security updates <a [^>]*>\[4\]</a> <a [^>]*>\[2\]</a>\.\)</em>", html_text)
    # No citation inside another link.
    assert not re.search(r"<a [^>]*>[^<]*<a ", html_text)


def test_grounding_sources_in_the_terminal(ip, server, capsys):
    [rec] = serve(server, GROUNDING)
    assert ask(ip, prompt_of(rec), options_for(rec, "--search")) == answer_text(rec)
    out = capsys.readouterr().out
    meta = json.loads(rec["body"])["candidates"][0]["groundingMetadata"]
    for number, chunk in enumerate(meta["groundingChunks"], 1):
        assert f"{number}. [{chunk['web']['title']}]({chunk['web']['uri']})" in out


ODD_URIS = [
    "https://example.org/Ruby releases, 2026/notes (final).html",
    "https://exämple.org/straße/ruby?q=4.0,6 stable",
    "https://example.org/already%20escaped/(x)?a=b c",
    "https://example.org/ok",
    "javascript:alert(1)",
]


def _with_odd_uris(rec: dict) -> tuple[str, list[str]]:
    body = json.loads(rec["body"])
    chunks = body["candidates"][0]["groundingMetadata"]["groundingChunks"]
    for chunk, uri in zip(chunks, ODD_URIS, strict=True):
        chunk["web"]["uri"] = uri
    return json.dumps(body, ensure_ascii=False), [c["web"]["uri"] for c in chunks]


def test_grounding_uris_with_spaces_commas_parentheses_non_ascii_are_working_links_derived(kern, server):
    rec = recording(GROUNDING)
    body, uris = _with_odd_uris(rec)
    _, out = grounded(kern, server, body, rec)
    page = _Page(out["data"]["text/html"])
    for href, _ in page.links:
        assert_working_link(href)
    assert_no_stray_markdown(page)
    hrefs = {href for href, _ in page.links}
    expected = {
        "https://example.org/Ruby%20releases,%202026/notes%20%28final%29.html",
        "https://xn--exmple-cua.org/stra%C3%9Fe/ruby?q=4.0,6%20stable",
        "https://example.org/already%20escaped/%28x%29?a=b%20c",  # no double encoding
    }
    assert expected <= hrefs
    # Each kind of link, citation marker and source, for each odd URI.
    for href in expected:
        texts = {text for h, text in page.links if h == href}
        assert any(re.fullmatch(r"\[\d\]", t) for t in texts) and any(not t.startswith("[") for t in texts)
    # The javascript: source is text, never a link; its citation number stays as text.
    assert not any("javascript" in href.lower() for href in hrefs)
    assert "[5]" in page.text and "[5]" not in {text for _, text in page.links}
    assert_citations_after_segments(page, json.loads(body)["candidates"][0]["groundingMetadata"])
    assert uris == ODD_URIS


def test_grounding_odd_uris_in_the_terminal_sources_derived(ip, server, capsys):
    rec = recording(GROUNDING)
    body, _ = _with_odd_uris(rec)
    server.queue_raw(200, rec["response_headers"], body)
    ask(ip, prompt_of(rec), options_for(rec, "--search"))
    out = capsys.readouterr().out
    assert "1. [github.com](https://example.org/Ruby%20releases,%202026/notes%20%28final%29.html)" in out
    assert "2. [endoflife.date](https://xn--exmple-cua.org/stra%C3%9Fe/ruby?q=4.0,6%20stable)" in out
    assert "3. [ruby-lang.org](https://example.org/already%20escaped/%28x%29?a=b%20c)" in out
    assert "5. ruby-lang.org" in out and "javascript" not in out


def _moved_ends(rec: dict, ends: dict[int, str]) -> str:
    """The recording with some supports ending inside given text instead: {support index: the
    text the segment now ends with (its first occurrence in the answer, byte offsets)}."""
    body = json.loads(rec["body"])
    cand = body["candidates"][0]
    text = "".join(p["text"] for p in cand["content"]["parts"]).encode("utf-8")
    for index, ending in ends.items():
        segment = cand["groundingMetadata"]["groundingSupports"][index]["segment"]
        end = text.index(ending.encode("utf-8")) + len(ending.encode("utf-8"))
        start = segment.get("startIndex", 0)
        segment["endIndex"], segment["text"] = end, text[start:end].decode("utf-8")
    return json.dumps(body, ensure_ascii=False)


def test_citation_offsets_inside_bold_link_text_and_link_url_do_not_break_rendering_derived(kern, server):
    rec = recording(GROUNDING)
    body = _moved_ends(rec, {
        0: "stable version of Ruby is **4.0",          # inside **4.0.6**, mid-word
        4: "[Ruby-Lang",                                # inside a link's text
        5: "Release Timeline & Lifecycle:** [endoflife.date/ruby](https://endoflife",  # inside its URL
    })
    _, out = grounded(kern, server, body, rec)
    html_text = out["data"]["text/html"]
    page = _Page(html_text)
    assert "<strong>4.0.6</strong> <a" in html_text  # after the bold word, not splitting it
    assert ("https://www.ruby-lang.org/en/downloads/", "Ruby-Lang.org Downloads") in page.links
    assert ("https://endoflife.date/ruby", "endoflife.date/ruby") in page.links
    assert not re.search(r"<a [^>]*>[^<]*<a ", html_text)  # no link inside a link
    assert_no_stray_markdown(page)
    text = " ".join(page.text.split())
    assert "4.0.6 [1] [2]," in text
    assert "Ruby-Lang.org Downloads [5]" in text and "endoflife.date/ruby [2]" in text
    for href, _ in page.links:
        assert_working_link(href)


# -- tool calls --------------------------------------------------------------------------------

PARALLEL = ("c_fc_parallel_gemini-2.5-flash_ruby_llm_1of2.json", "c_fc_parallel_gemini-2.5-flash_ruby_llm_2of2.json")
SIGNED = ("c_fc_sse_gemini-3-pro-preview_sig_pydantic-ai_1of2.json",
          "c_fc_sse_gemini-3-pro-preview_sig_pydantic-ai_2of2.json")

TOOLS = '''
def weather(latitude: str, longitude: str) -> dict:
    """Gets current weather for a location."""
    return {"temperature": 15, "unit": "celsius", "wind_kmh": 10}

def best_language_to_learn() -> str:
    """Gets the best language to learn."""
    return "Ruby"

def get_country() -> str:
    """The user's country."""
    return "Mexico"
'''


def _signature(part: dict) -> bytes:
    value = part.get("thoughtSignature") or part.get("thought_signature")
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)) if value else b""


def _call_step(server, first: dict, tools: str, expect_ids: list):
    """The second request of a tool loop: its model turn carries the first answer's calls as
    returned (signatures unchanged), its user turn one function response per call."""
    requests = [r for r in server.requests if r.action in GENERATE]
    assert len(requests) == 2 and server.pending == 0
    *_, model_turn, reply = requests[1].body["contents"]
    recorded = [p for chunk in chunks_of(first) for p in chunk["candidates"][0]["content"]["parts"]]
    calls = [p for p in recorded if "functionCall" in p]
    sent_calls = [p for p in model_turn["parts"] if "functionCall" in p or "function_call" in p]
    assert model_turn["role"] == "model" and len(sent_calls) == len(calls)
    for sent, real in zip(sent_calls, calls, strict=True):
        call = sent.get("functionCall") or sent["function_call"]
        assert (call["name"], call.get("args", {})) == (real["functionCall"]["name"], real["functionCall"]["args"])
        assert _signature(sent) == (base64.b64decode(real["thoughtSignature"]) if "thoughtSignature" in real
                                    else b"")
    responses = [p.get("functionResponse") or p["function_response"] for p in reply["parts"]]
    assert reply["role"] == "user" and [r["name"] for r in responses] == tools.split(",")
    assert [r.get("id") for r in responses] == expect_ids
    return responses


def test_parallel_function_calls_run_the_tool_loop_through_both_recordings(ip, server):
    ip.run_cell(TOOLS)
    first, second = serve(server, *PARALLEL)
    cell = options_for(first, "--tools weather,best_language_to_learn")
    assert ask(ip, prompt_of(first), cell) == answer_text(second)
    # Only the first of the parallel calls carried a signature: it goes back unchanged.
    responses = _call_step(server, first, "weather,best_language_to_learn", [None, None])
    assert responses[0]["response"] == {"temperature": 15, "unit": "celsius", "wind_kmh": 10}
    assert responses[1]["response"]["result"] == "Ruby"


def test_gemini3_streamed_function_call_signature_goes_back_unchanged(ip, server):
    ip.run_cell(TOOLS)
    first, second = serve(server, *SIGNED)
    assert ask(ip, prompt_of(first), options_for(first, "--tools get_country")) == answer_text(second)
    responses = _call_step(server, first, "get_country", [None])
    assert responses[0]["response"]["result"] == "Mexico"


def test_gemini3_tool_loop_usage_adds_up_each_steps_last_chunk(kern, server):
    kern.run(TOOLS, check=True)
    first, second = serve(server, *SIGNED)
    out = final_output(kern.run(f"%%gemini {options_for(first, '--tools get_country')}\n{prompt_of(first)}",
                                check=True))
    steps = [last_usage(first), last_usage(second)]
    expected = {k: sum(step.get(k, 0) for step in steps) for k in steps[0].keys() | steps[1].keys()}
    assert out["metadata"]["gemini_magic"]["usage"] == expected
    # The prompt count changed on the second step's final chunk (55 -> 257): the last one counts.
    assert usage_of(chunks_of(second)[0]["usageMetadata"])["prompt_tokens"] != steps[1]["prompt_tokens"]
    assert answer_text(second) in out["data"]["text/plain"]


def test_function_call_with_an_id_goes_back_with_that_id_derived(ip, server):
    """Newer models number their calls: the function response must carry the same id."""
    ip.run_cell(TOOLS)
    first, second = (recording(name) for name in SIGNED)
    events = chunks_of(first)
    events[0]["candidates"][0]["content"]["parts"][0]["functionCall"]["id"] = "call-4f2a"
    body = "".join("data: " + json.dumps(e) + "\r\n\r\n" for e in events)
    server.queue_raw(200, first["response_headers"], body)
    serve(server, SIGNED[1])
    assert ask(ip, prompt_of(first), options_for(first, "--tools get_country")) == answer_text(second)
    _call_step(server, {"body": body}, "get_country", ["call-4f2a"])


# -- media and structured output -----------------------------------------------------------------

IMAGE = "f_image_gemini-2.0-flash-exp-image-generation_llm-gemini.json"
STRUCTURED = "j_structured_responseSchema_gemini-2.5-flash_genai-sdk_mirascope.json"


def _recorded_image(rec: dict) -> str:
    [image] = [p["inlineData"] for p in parts_of(rec) if "inlineData" in p]
    return image["data"]


def test_image_answer_shows_the_image_in_the_kernel(kern, server):
    [rec] = serve(server, IMAGE)
    out = final_output(kern.run(f"%%gemini {options_for(rec)}\nMake this image larger", check=True))
    assert f'<img src="data:image/png;base64,{_recorded_image(rec)}"' in out["data"]["text/html"]
    assert answer_text(rec).strip() in out["data"]["text/html"]


def test_image_answer_out_gives_a_pil_image(ip, server):
    from PIL import Image

    [rec] = serve(server, IMAGE)
    value = ask(ip, "Make this image larger", options_for(rec))
    expected = Image.open(io.BytesIO(base64.b64decode(_recorded_image(rec))))
    [image] = value.images
    assert isinstance(image, Image.Image) and image.size == expected.size == (1024, 1024)
    assert str(value) == answer_text(rec)


def test_structured_output_parses_with_json(ip, server):
    [rec] = serve(server, STRUCTURED)
    value = ask(ip, prompt_of(rec), options_for(rec, "--json"))
    assert value == json.loads(answer_text(rec))
    assert value["title"] == "THE NAME OF THE WIND"


# -- answers that end early, and errors ----------------------------------------------------------

MAX_TOKENS = "k_max_tokens_thinking_no_parts_gemini-2.5-pro_pydantic-ai.json"
BLOCKED = "k_prompt_blocked_prohibited_content_gemini-3.7-flash_vercel.json"


def test_max_tokens_with_no_parts_gives_the_cut_notice_without_crashing(ip, server, capsys):
    [rec] = serve(server, MAX_TOKENS)
    assert "parts" not in json.loads(rec["body"])["candidates"][0]["content"]
    result = ip.run_cell(f"%%gemini {options_for(rec, '--max-tokens 5')}\n{prompt_of(rec)}")
    assert result.error_in_exec is None and result.error_before_exec is None
    err = capsys.readouterr().err
    assert "The answer was cut at the output token limit (5). Raise it with --max-tokens." in err


def test_max_tokens_with_no_parts_in_the_kernel(kern, server):
    [rec] = serve(server, MAX_TOKENS)
    ex = kern.run(f"%%gemini {options_for(rec, '--max-tokens 5')}\n{prompt_of(rec)}", check=True)
    assert "The answer was cut at the output token limit (5)." in ex.notes("warning")
    assert ex.stream_text("stderr") == ""  # a notice, not an error: never the pink stderr box


def test_prohibited_content_block_gives_the_blocked_message(ip, server):
    [rec] = serve(server, BLOCKED)
    assert "candidates" not in json.loads(rec["body"])
    error = fails(ip, "Something bad", options_for(rec)).error
    assert error.kind == "blocked"
    assert error.message == "The prompt was blocked by Gemini (PROHIBITED_CONTENT)."


def test_invalid_key_400_on_sse_gives_the_invalid_key_message(ip, server):
    [rec] = serve(server, "h_400_api_key_invalid_on_sse_genai-sdk_mirascope.json")
    assert rec["response_headers"]["Content-Type"] == "text/event-stream"
    failure = fails(ip, prompt_of(rec), options_for(rec))
    assert failure.error.kind == "invalid-key"
    assert "The API key was rejected (API_KEY_INVALID)." in failure.error.message
    assert server.last.stream and server.last.query == {"alt": "sse"}


def test_unknown_model_404_gives_the_unknown_model_message(ip, server):
    [rec] = serve(server, "h_404_model_not_found_genai-sdk_mirascope.json")
    error = fails(ip, prompt_of(rec), options_for(rec)).error
    assert error.kind == "unknown-model"
    assert error.message == "Unknown model 'this-model-does-not-exist-12345'."


def test_quota_429_is_a_quota_failure(ip, server):
    ip.run_line_magic("config", "GeminiMagics.retry_attempts = 1")
    [rec] = serve(server, "h_429_resource_exhausted_quota_retryinfo_ruby_llm.json")
    failure = fails(ip, "Hi", options_for(rec))
    assert failure.error.kind == "quota"
    assert isinstance(failure, CellFailed) and server.pending == 0


# -- other endpoints -------------------------------------------------------------------------------

MODELS = "i_models_list_llm-gemini.json"


def test_models_list_shows_every_recorded_model_and_marks_generators(ip, server, capsys):
    [rec] = serve(server, MODELS, actions=("list",))
    # The recording is a first page (it has a nextPageToken); a stand-in last page follows. Not an
    # empty one: the SDK's pager raises IndexError on an empty page that follows a token.
    last_page = {"models": [DEFAULT_MODELS[-1]]}
    server.queue_raw(200, {"Content-Type": "application/json; charset=UTF-8"}, json.dumps(last_page),
                     actions=("list",))
    ip.run_line_magic("gemini", "models")
    out = capsys.readouterr().out
    listed = json.loads(rec["body"])["models"] + last_page["models"]
    rows = [re.match(r"^([* ]) (\S+)", line) for line in out.splitlines()]
    lines = {row.group(2): row.group(1) for row in rows if row}
    for model in listed:
        name = model["name"].removeprefix("models/")
        assert name in lines, name
        assert (lines[name] == "*") == ("generateContent" in model["supportedGenerationMethods"])
    lists = [r for r in server.requests if r.action == "list"]
    assert lists[1].query["pageToken"] == json.loads(rec["body"])["nextPageToken"]


def test_resumable_upload_start_and_finalize_through_an_attachment(ip, server, tmp_path, monkeypatch):
    """The upload start's empty text/plain body with X-Goog-Upload-URL, then the
    finalize answer: the attachment goes as the recorded file's URI.

    One change to the start answer: its upload URLs point at this server instead of
    Google's (the SDK follows them as given), the rest as recorded."""
    import gemini_magic.media as media

    start, finalize = (recording(f"i_files_upload_{step}_ruby_llm.json") for step in ("start", "finalize"))
    size = int(start["request"]["headers"]["X-Goog-Upload-Header-Content-Length"])
    monkeypatch.setattr(media.inputs, "INLINE_LIMIT", size - 1)  # so that this small PDF is uploaded
    headers = {name: (value.replace("https://generativelanguage.googleapis.com", server.url)
                      if name.lower() in ("x-goog-upload-url", "x-goog-upload-control-url") else value)
               for name, value in start["response_headers"].items()}
    server.queue_raw(start["status"], headers, start["body"], actions=("uploadStart",))
    server.queue_raw(finalize["status"], finalize["response_headers"], finalize["body"], actions=("uploadChunk",))
    pdf = tmp_path / "sample.pdf"
    pdf.write_bytes(b"%PDF-1.4\n" + b"x" * (size - 9))
    assert ask(ip, "Summarize it.", f"--image {pdf} --no-stream") == "Echo: Summarize it."
    upload_id = re.search(r"upload_id=([^&]+)", start["response_headers"]["X-Goog-Upload-Url"]).group(1)
    chunk = next(r for r in server.requests if r.action == "uploadChunk")
    assert chunk.query["upload_id"] == upload_id and len(chunk.raw_body) == size
    sent = [p for p in server.last.body["contents"][0]["parts"] if "fileData" in p or "file_data" in p]
    file_data = sent[0].get("fileData") or sent[0]["file_data"]
    assert (file_data.get("fileUri") or file_data["file_uri"]) == json.loads(finalize["body"])["file"]["uri"]


COUNT_TOKENS = "i_count_tokens_gemini-2.5-flash_genai-sdk_pydantic-ai.json"
CACHE_CREATE = "i_cached_contents_create_ruby_llm.json"


def test_every_generate_like_recording_is_covered():
    """A new recording of these kinds needs a test here."""
    covered = {A_GENERATE, B_SSE, B_ARRAY, CACHED, THINKING, CODE_EXEC, GROUNDING, *PARALLEL, *SIGNED, IMAGE,
               STRUCTURED, MAX_TOKENS, BLOCKED, MODELS, "h_400_api_key_invalid_on_sse_genai-sdk_mirascope.json",
               "h_404_model_not_found_genai-sdk_mirascope.json",
               "h_429_resource_exhausted_quota_retryinfo_ruby_llm.json",
               "i_files_upload_start_ruby_llm.json", "i_files_upload_finalize_ruby_llm.json",
               COUNT_TOKENS, CACHE_CREATE}
    kinds = {}
    for path in REALWIRE.glob("*.json"):
        rec = json.loads(path.read_text(encoding="utf-8"))
        kinds[path.name] = rec["request"]["path"]
    generate_like = {name for name, path in kinds.items()
                     if re.search(r":(generateContent|streamGenerateContent|countTokens)|/models$|/cachedContents",
                                  path)}
    # countTokens and caches are not something the magic calls yet: checked through the SDK below.
    assert generate_like - covered == set()
    assert {name for name in kinds if name.startswith(("i_count_tokens_", "i_cached_contents_"))} <= covered


# -- countTokens and cachedContents, through the SDK -----------------------------------------------


def sdk_client(server):
    from google import genai
    from google.genai import types

    return genai.Client(api_key="k", http_options=types.HttpOptions(base_url=server.url))


def post(server, path: str, body: dict) -> tuple[int, bytes]:
    """A plain request to our server (no SDK): its status and exact body bytes."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(server.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", "x-goog-api-key": "k"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def shape(value):
    """A JSON value with every leaf replaced by its type name: what ours must share with the recording."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value]
    return type(value).__name__


def test_count_tokens_recording_through_the_sdk(server, env):
    [rec] = serve(server, COUNT_TOKENS)
    client = sdk_client(server)
    result = client.models.count_tokens(model=model_of(rec), contents=prompt_of(rec))
    assert result.total_tokens == json.loads(rec["body"])["totalTokens"] == 12
    # Our own answer to the recorded request: the same bytes but for the numbers.
    status, ours = post(server, rec["request"]["path"], json.loads(rec["request"]["body"]))
    assert status == 200 and re.sub(r"\d+", "N", ours.decode()) == re.sub(r"\d+", "N", rec["body"])
    assert client.models.count_tokens(model=model_of(rec), contents=prompt_of(rec)).total_tokens == 8  # words


def test_cached_content_create_recording_through_the_sdk(server, env):
    rec = recording(CACHE_CREATE)
    sent = json.loads(rec["request"]["body"])
    serve(server, CACHE_CREATE, actions=("createCachedContent",))
    client = sdk_client(server)
    config = {"contents": [sent["contents"][0]["parts"][0]["text"]], "ttl": sent["ttl"],
              "system_instruction": sent["systemInstruction"]["parts"][0]["text"]}
    real = client.caches.create(model="gemini-2.5-flash", config=config)
    recorded = json.loads(rec["body"])
    assert real.name == recorded["name"] and real.usage_metadata.total_token_count == 9609
    assert real.expire_time.isoformat().startswith("2026-08-19T14:39:11.796558")  # nanoseconds cut to micro
    assert real.display_name == "" and real.model == recorded["model"]
    # Ours, to the same request: the same keys in the same order, the same kinds of value.
    ours = client.caches.create(model="gemini-2.5-flash", config=config)
    assert server.last.body["contents"] == sent["contents"] and server.last.body["ttl"] == sent["ttl"]
    status, body = post(server, rec["request"]["path"], sent)
    assert status == 200 and shape(json.loads(body)) == shape(recorded)
    assert list(json.loads(body)) == list(recorded)
    assert type(ours.create_time) is type(real.create_time) and type(ours.expire_time) is type(real.expire_time)
    assert (ours.expire_time - ours.create_time).total_seconds() == pytest.approx(300, abs=0.01)


def test_cached_content_use_recording_through_the_sdk(server, env):
    from google.genai import types

    client = sdk_client(server)
    [rec] = serve(server, CACHED)
    sent = json.loads(rec["request"]["body"])
    real = client.models.generate_content(model=model_of(rec), contents=prompt_of(rec),
                                          config={"cached_content": sent["cachedContent"]})
    assert server.last.body["cachedContent"] == sent["cachedContent"]
    usage = real.usage_metadata
    assert (usage.prompt_token_count, usage.cached_content_token_count) == (9622, 9609)
    assert usage.cache_tokens_details == [types.ModalityTokenCount(modality="TEXT", token_count=9609)]
    assert real.sdk_http_response.headers["x-gemini-service-tier"] == "standard"
    # Ours: create the recorded cache, then send the recorded request naming it.
    status, body = post(server, "/v1beta/cachedContents", json.loads(recording(CACHE_CREATE)["request"]["body"]))
    created = json.loads(body)
    server.queue(Reply(parts=[{"text": "Considering the handbook.", "thought": True}, {"text": answer_text(rec)}]))
    status, body = post(server, rec["request"]["path"], sent | {"cachedContent": created["name"]})
    ours, recorded = json.loads(body), json.loads(rec["body"])
    assert status == 200
    assert list(ours["usageMetadata"]) == list(recorded["usageMetadata"])  # the same keys in the same order
    assert shape(ours["usageMetadata"]) == shape(recorded["usageMetadata"])
    assert list(ours) == list(recorded) and list(ours["candidates"][0]) == list(recorded["candidates"][0])
    mine, theirs = ours["usageMetadata"], recorded["usageMetadata"]
    for meta in (mine, theirs):  # the prompt count includes the cached tokens; the details say which
        cached = meta["cachedContentTokenCount"]
        assert meta["promptTokenCount"] > cached == meta["cacheTokensDetails"][0]["tokenCount"]
        assert meta["totalTokenCount"] == (meta["promptTokenCount"] + meta["candidatesTokenCount"]
                                           + meta["thoughtsTokenCount"])
    assert mine["cachedContentTokenCount"] == created["usageMetadata"]["totalTokenCount"]
    assert mine["promptTokenCount"] - mine["cachedContentTokenCount"] == len(prompt_of(rec).split())


def test_recordings_keep_their_sources():
    """The in-repo copy keeps each recording's source (its licence) and the README."""
    names = sorted(path.name for path in REALWIRE.glob("*.json"))
    readme = (REALWIRE / "README.md").read_text(encoding="utf-8")
    for name in names:
        source = recording(name)["source"]
        assert re.fullmatch(r"[\w.-]+/[\w.-]+ \S+@[0-9a-f]{40}", source), (name, source)
        assert name in readme


def test_a_citation_at_any_byte_offset_of_the_recorded_answer_leaves_its_markdown_intact_derived():
    """Every possible segment end in the recorded grounded answer (UTF-8 byte offsets, some
    inside a character, in bold, in link text or URL, at a list marker): the citation shows
    once, as a link, never inside another link, and the rest renders exactly as without it."""
    from google.genai import types

    from gemini_magic.render.markdown import to_html
    from gemini_magic.render.tools import citations

    rec = recording(GROUNDING)
    text = answer_text(rec)
    plain = to_html(text)
    uri = "https://example.org/a source (2026), ü"
    link = re.compile(r' ?<a href="https://example\.org/a%20source%20%282026%29,%20%C3%BC"[^>]*>\[1\]</a>')
    for end in range(1, len(text.encode("utf-8")) + 1):
        grounding = types.GroundingMetadata(
            grounding_chunks=[types.GroundingChunk(web=types.GroundingChunkWeb(uri=uri, title="t"))],
            grounding_supports=[types.GroundingSupport(segment=types.Segment(end_index=end),
                                                       grounding_chunk_indices=[0])])
        cited = to_html(text, citations(text, grounding))
        assert len(link.findall(cited)) == 1, (end, cited)
        assert not re.search(r"<a [^>]*>[^<]*<a ", cited), end
        assert link.sub("", cited) == plain, (end, cited)

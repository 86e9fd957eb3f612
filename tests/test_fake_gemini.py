"""Tests for the fake Gemini server, driven through the real google-genai SDK.

Every test talks real HTTP from ``genai.Client`` to ``FakeGemini`` on
127.0.0.1, so they also pin down the wire shapes the SDK accepts.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import re
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google import genai
from google.genai import errors, types

from tests.fake_gemini import Blocked, Error, FakeGemini, ReceivedRequest, Reply

ROOT = Path(__file__).resolve().parents[1]
MODEL = "gemini-2.5-flash"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    for name in (
        "GOOGLE_GENAI_USE_VERTEXAI",
        "GOOGLE_GENAI_USE_ENTERPRISE",
        "GOOGLE_GENAI_API_VERSION",
        "GEMINI_API_KEY",
        "GOOGLE_API_KEY",
        "GOOGLE_GEMINI_BASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server():
    with FakeGemini() as fake:
        yield fake


def make_client(server: FakeGemini, key: str = "test-key", **http: object) -> genai.Client:
    return genai.Client(
        api_key=key,
        http_options=types.HttpOptions(base_url=server.url, **http),
    )


@pytest.fixture
def client(server: FakeGemini) -> genai.Client:
    return make_client(server)


def raw_post(url: str, body: object) -> tuple[int, dict[str, str], bytes]:
    """POST without the SDK, for wire details the SDK hides."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "x-goog-api-key": "k"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


# ---------------------------------------------------------------------------
# generate_content
# ---------------------------------------------------------------------------


def test_default_echo(server, client):
    response = client.models.generate_content(model=MODEL, contents="hello big world")
    assert response.text == "Echo: hello big world"
    assert response.candidates[0].content.role == "model"
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    assert response.model_version == MODEL
    assert response.response_id == "resp-1"
    usage = response.usage_metadata
    assert (usage.prompt_token_count, usage.candidates_token_count) == (3, 4)
    assert usage.total_token_count == 7


def test_queue_is_fifo_then_falls_back_to_echo(server, client):
    server.queue(Reply(text="first"), "second")  # a str is Reply(text=...)
    assert server.pending == 2
    texts = [client.models.generate_content(model=MODEL, contents="q").text for _ in range(3)]
    assert texts == ["first", "second", "Echo: q"]
    assert [r.action for r in server.requests] == ["generateContent"] * 3


def test_response_ids_are_deterministic_and_reset(server, client):
    ids = [client.models.generate_content(model=MODEL, contents="q").response_id for _ in range(2)]
    assert ids == ["resp-1", "resp-2"]
    server.reset()
    assert client.models.generate_content(model=MODEL, contents="q").response_id == "resp-1"


def test_reply_options(server, client):
    grounding = {
        "webSearchQueries": ["weather paris"],
        "groundingChunks": [{"web": {"uri": "https://example.com", "title": "Example"}}],
        "groundingSupports": [
            {
                "segment": {"startIndex": 0, "endIndex": 5, "text": "Sunny"},
                "groundingChunkIndices": [0],
            }
        ],
    }
    server.queue(
        Reply(
            text="Sunny today",
            finish_reason="MAX_TOKENS",
            usage={"promptTokenCount": 11, "candidatesTokenCount": 22, "totalTokenCount": 33},
            model_version="gemini-2.5-flash-001",
            grounding=grounding,
            extra={"modelStatus": {"modelStage": "STABLE"}},
        )
    )
    response = client.models.generate_content(model=MODEL, contents="weather?")
    cand = response.candidates[0]
    assert response.text == "Sunny today"
    assert cand.finish_reason == types.FinishReason.MAX_TOKENS
    assert cand.grounding_metadata.web_search_queries == ["weather paris"]
    assert cand.grounding_metadata.grounding_chunks[0].web.uri == "https://example.com"
    assert response.usage_metadata.total_token_count == 33
    assert response.model_version == "gemini-2.5-flash-001"
    assert response.model_status is not None


def test_no_finish_reason(server, client):
    server.queue(Reply(text="cut", finish_reason=None))
    response = client.models.generate_content(model=MODEL, contents="q")
    assert response.candidates[0].finish_reason is None


def test_non_text_parts(server, client):
    parts = [
        {"text": "Let me think about it", "thought": True},
        {"text": "Here is a call."},
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "c1"}},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
    ]
    server.queue(Reply(parts=parts))
    response = client.models.generate_content(model=MODEL, contents="q")
    got = response.candidates[0].content.parts
    assert got[0].thought is True
    assert response.text == "Here is a call."  # thoughts are skipped
    assert response.function_calls[0].name == "get_weather"
    assert response.function_calls[0].args == {"city": "Paris"}
    assert got[3].inline_data.mime_type == "image/png"
    assert got[3].inline_data.data == b"\x89PNG\r\n\x1a\n"
    assert response.usage_metadata.thoughts_token_count == 5


def test_empty_answer_has_no_parts_like_real_gemini(server, client):
    server.queue(Reply(text=""), Reply(text=""))
    response = client.models.generate_content(model=MODEL, contents="q")
    assert response.text is None
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    assert response.candidates[0].content.parts is None
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="q"))
    assert len(chunks) == 1
    assert chunks[0].text is None
    assert chunks[0].candidates[0].finish_reason == types.FinishReason.STOP


def test_hang_lets_client_time_out(server):
    client = make_client(server, timeout=300)  # milliseconds
    server.queue(Reply(text="late", hang=5))
    started = time.monotonic()
    with pytest.raises(Exception) as info:
        client.models.generate_content(model=MODEL, contents="q")
    assert time.monotonic() - started < 4
    assert "timeout" in type(info.value).__name__.lower() or "timed out" in str(info.value)


# ---------------------------------------------------------------------------
# generate_content_stream
# ---------------------------------------------------------------------------


def test_stream_default_three_chunks_with_final_metadata(server, client):
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="one two three"))
    assert len(chunks) == 3
    assert "".join(c.text for c in chunks) == "Echo: one two three"
    assert [c.candidates[0].finish_reason for c in chunks] == [None, None, types.FinishReason.STOP]
    # Usage on every chunk, the output count growing to the answer's.
    assert [c.usage_metadata.candidates_token_count for c in chunks] == [1, 3, 4]
    assert {c.response_id for c in chunks} == {"resp-1"}
    assert all(c.candidates[0].content.role == "model" for c in chunks)
    assert server.last.path == f"/v1/models/{MODEL}:streamGenerateContent"
    assert server.last.query == {"alt": "sse"}


def test_stream_chunks_arrive_as_they_are_sent(server, client):
    server.queue(Reply(chunks=["a ", "b ", "c"], delay=0.4))
    started = time.monotonic()
    arrivals = []
    for chunk in client.models.generate_content_stream(model=MODEL, contents="q"):
        arrivals.append((time.monotonic() - started, chunk.text))
    assert [text for _, text in arrivals] == ["a ", "b ", "c"]
    # The last chunk is sent ~0.8 s after the first; the first must not wait for it.
    assert arrivals[0][0] < 0.35
    assert arrivals[-1][0] >= 0.75
    assert arrivals[1][0] - arrivals[0][0] >= 0.3


def test_server_chunk_delay_default(server, client):
    server.chunk_delay = 0.2
    started = time.monotonic()
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="x y z"))
    assert len(chunks) == 3
    assert time.monotonic() - started >= 0.35


def test_stream_many_chunks_is_fast(server, client):
    words = [f"w{i} " for i in range(10_000)]
    server.queue(Reply(chunks=words))
    started = time.monotonic()
    count = 0
    for chunk in client.models.generate_content_stream(model=MODEL, contents="q"):
        count += 1
        last = chunk
    assert count == 10_000
    assert last.usage_metadata.candidates_token_count == 10_000
    assert time.monotonic() - started < 20  # SDK parsing dominates; the server takes ~0.2 s


def test_stream_parts_one_per_chunk(server, client):
    parts = [{"text": "hmm", "thought": True}, {"text": "answer"}]
    server.queue(Reply(parts=parts))
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="q"))
    assert len(chunks) == 2
    assert chunks[0].candidates[0].content.parts[0].thought is True
    assert chunks[1].text == "answer"


def test_non_streamed_reply_merges_chunks(server, client):
    server.queue(Reply(chunks=["Hel", "lo ", "there"]))
    response = client.models.generate_content(model=MODEL, contents="q")
    assert [p.text for p in response.candidates[0].content.parts] == ["Hello there"]


def test_stream_without_alt_sse_is_a_json_array(server):
    status, headers, body = raw_post(
        f"{server.url}/v1beta/models/{MODEL}:streamGenerateContent",
        {"contents": [{"role": "user", "parts": [{"text": "a b c d"}]}]},
    )
    assert status == 200
    events = json.loads(body)
    assert isinstance(events, list) and len(events) == 3


def test_sse_wire_format(server):
    status, headers, body = raw_post(
        f"{server.url}/v1/models/{MODEL}:streamGenerateContent?alt=sse",
        {"contents": [{"parts": [{"text": "hi"}]}]},
    )
    assert status == 200
    assert headers["Content-Type"] == "text/event-stream"
    events = body.split(b"\r\n\r\n")
    assert events[-1] == b""
    assert all(e.startswith(b"data: {") for e in events[:-1])


def test_async_stream(server, client):
    server.queue(Reply(chunks=["x", "y"]))

    async def collect() -> list[str]:
        stream = await client.aio.models.generate_content_stream(model=MODEL, contents="q")
        return [chunk.text async for chunk in stream]

    assert asyncio.run(collect()) == ["x", "y"]


def test_chat_sends_history_and_keeps_streamed_turns(server, client):
    chat = client.chats.create(model=MODEL)
    assert chat.send_message("first question").text == "Echo: first question"
    streamed = "".join(c.text for c in chat.send_message_stream("second one"))
    assert streamed == "Echo: second one"
    chat.send_message("third")
    last = server.last
    assert last.user_texts() == ["first question", "second one", "third"]
    # The SDK records each streamed chunk as its own model Content in history.
    roles = [c["role"] for c in last.body["contents"]]
    assert roles == ["user", "model", "user", "model", "model", "model", "user"]
    streamed_turn = "".join(c["parts"][0]["text"] for c in last.body["contents"][3:6])
    assert streamed_turn == "Echo: second one"


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


def test_quota_error(server, client):
    server.queue(Error.quota(retry_delay="30s"))
    with pytest.raises(errors.ClientError) as info:
        client.models.generate_content(model=MODEL, contents="q")
    err = info.value
    assert (err.code, err.status) == (429, "RESOURCE_EXHAUSTED")
    assert "Quota exceeded for metric" in err.message
    details = err.details["error"]["details"]
    by_type = {d["@type"].rsplit(".", 1)[-1]: d for d in details}
    assert by_type["RetryInfo"]["retryDelay"] == "30s"
    violation = by_type["QuotaFailure"]["violations"][0]
    assert violation["quotaId"] == "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
    assert violation["quotaDimensions"] == {"location": "global", "model": MODEL}


@pytest.mark.parametrize(
    ("error", "kind", "code", "status"),
    [
        (Error.server(), errors.ServerError, 500, "INTERNAL"),
        (Error.server(503), errors.ServerError, 503, "UNAVAILABLE"),
        (Error.not_found("gemini-x"), errors.ClientError, 404, "NOT_FOUND"),
        (Error.invalid_key(), errors.ClientError, 400, "INVALID_ARGUMENT"),
        (Error.permission(), errors.ClientError, 403, "PERMISSION_DENIED"),
        (Error(400, "FAILED_PRECONDITION", "No free tier here."), errors.ClientError, 400, "FAILED_PRECONDITION"),
    ],
)
def test_error_kinds(server, client, error, kind, code, status):
    server.queue(error)
    with pytest.raises(kind) as info:
        client.models.generate_content(model=MODEL, contents="q")
    assert (info.value.code, info.value.status) == (code, status)
    assert info.value.message == error.message
    assert info.value.details == error.body()


def test_errors_on_stream_raise_at_first_next(server, client):
    server.queue(Error.server(503))
    stream = client.models.generate_content_stream(model=MODEL, contents="q")
    with pytest.raises(errors.ServerError) as info:
        next(stream)
    assert info.value.message == "The model is overloaded. Please try again later."


def test_error_details_and_retry_delay(server, client):
    detail = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "X"}
    server.queue(Error(429, "RESOURCE_EXHAUSTED", "slow down", details=[detail], retry_delay="7s"))
    with pytest.raises(errors.ClientError) as info:
        client.models.generate_content(model=MODEL, contents="q")
    assert info.value.details["error"]["details"] == [
        detail,
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"},
    ]


def test_mid_stream_error_after_chunks(server, client):
    server.queue(Error.server(500, after_chunks=2, chunks=["partial ", "answer "]))
    received = []
    with pytest.raises(errors.ServerError) as info:
        for chunk in client.models.generate_content_stream(model=MODEL, contents="q"):
            received.append(chunk.text)
    assert received == ["partial ", "answer "]
    assert (info.value.code, info.value.status) == (500, "INTERNAL")


def test_mid_stream_quota_error_generates_chunks(server, client):
    server.queue(Error.quota(after_chunks=1))
    received = []
    with pytest.raises(errors.ClientError) as info:
        for chunk in client.models.generate_content_stream(model=MODEL, contents="q"):
            received.append(chunk.text)
    assert received == ["chunk 1 "]
    assert info.value.code == 429


def test_after_chunks_ignored_without_streaming(server, client):
    server.queue(Error.server(500, after_chunks=2))
    with pytest.raises(errors.ServerError):
        client.models.generate_content(model=MODEL, contents="q")


def test_sdk_retry_options_use_the_queue(server):
    client = make_client(
        server,
        retry_options=types.HttpRetryOptions(attempts=2, initial_delay=0.01, max_delay=0.05),
    )
    server.queue(Error.server(503), Reply(text="second try"))
    assert client.models.generate_content(model=MODEL, contents="q").text == "second try"
    assert len(server.requests) == 2


def test_responder_exception_becomes_500(server, client, capsys):
    def broken(request):
        raise RuntimeError("boom")

    server.responder = broken
    with pytest.raises(errors.ServerError) as info:
        client.models.generate_content(model=MODEL, contents="q")
    assert "boom" in info.value.message
    assert isinstance(server.errors[0], RuntimeError)


def test_unknown_route_is_google_404(server):
    status, _, body = raw_post(f"{server.url}/v1/files:upload", {})
    assert status == 404
    assert json.loads(body)["error"]["status"] == "NOT_FOUND"
    status, _, _ = raw_post(f"{server.url}/v2/models/{MODEL}:generateContent", {})
    assert status == 404


# ---------------------------------------------------------------------------
# Blocked prompts
# ---------------------------------------------------------------------------


def test_blocked_prompt(server, client):
    server.queue(Blocked("PROHIBITED_CONTENT"), Blocked())
    response = client.models.generate_content(model=MODEL, contents="bad words")
    assert response.candidates is None
    assert response.text is None
    assert response.prompt_feedback.block_reason == types.BlockedReason.PROHIBITED_CONTENT
    assert response.usage_metadata.prompt_token_count == 2
    assert response.model_version == MODEL

    chunks = list(client.models.generate_content_stream(model=MODEL, contents="bad"))
    assert len(chunks) == 1
    assert chunks[0].prompt_feedback.block_reason == types.BlockedReason.SAFETY


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------


def test_models_list_defaults(server, client):
    models = list(client.models.list())
    names = [m.name for m in models]
    assert names == [
        "models/gemini-2.5-flash",
        "models/gemini-2.5-flash-lite",
        "models/gemini-2.5-pro",
        "models/gemini-3-flash-preview",
        "models/gemma-3-27b-it",
        "models/gemini-embedding-001",
    ]
    flash = models[0]
    assert flash.display_name == "Gemini 2.5 Flash"
    assert flash.input_token_limit == 1048576
    assert "generateContent" in flash.supported_actions
    assert flash.thinking is True
    assert models[-1].supported_actions == ["embedContent"]


def test_models_list_paging(server, client):
    server.models = [
        {"name": f"models/gemini-test-{i}", "supportedGenerationMethods": ["generateContent"]} for i in range(5)
    ]
    pager = client.models.list(config={"page_size": 2})
    assert len(pager.page) == 2
    names = [m.name for m in pager]
    assert names == [f"models/gemini-test-{i}" for i in range(5)]
    lists = [r for r in server.requests if r.action == "list"]
    assert len(lists) == 3
    assert lists[0].query == {"pageSize": "2"}
    assert lists[1].query["pageToken"]
    assert all(r.method == "GET" and r.path == "/v1/models" for r in lists)


def test_models_get(server, client):
    model = client.models.get(model="gemini-2.5-pro")
    assert model.display_name == "Gemini 2.5 Pro"
    assert server.last.action == "get"
    assert server.last.model == "gemini-2.5-pro"
    with pytest.raises(errors.ClientError) as info:
        client.models.get(model="no-such-model")
    assert (info.value.code, info.value.status) == (404, "NOT_FOUND")


def test_unknown_model(server, client):
    with pytest.raises(errors.ClientError) as info:
        client.models.generate_content(model="no-such-model", contents="q")
    assert info.value.code == 404
    assert "models/no-such-model is not found for API version v1" in info.value.message
    # Unlisted gemini/gemma ids are accepted so tests can use any of them.
    assert client.models.generate_content(model="gemini-9-ultra", contents="q").text == "Echo: q"
    # A listed model without generateContent (an embedding model) is refused.
    with pytest.raises(errors.ClientError):
        client.models.generate_content(model="gemini-embedding-001", contents="q")
    # An unknown model fails before using a queued reply.
    server.queue(Reply(text="kept"))
    with pytest.raises(errors.ClientError):
        client.models.generate_content_stream(model="nope", contents="q").__next__()
    assert client.models.generate_content(model=MODEL, contents="q").text == "kept"


def test_models_none_accepts_anything(server, client):
    server.models = None
    assert client.models.generate_content(model="any-model", contents="q").text == "Echo: q"
    assert client.models.get(model="any-model").name == "models/any-model"
    assert list(client.models.list()) == []


def test_count_tokens(server, client):
    result = client.models.count_tokens(model=MODEL, contents="one two three four")
    assert result.total_tokens == 4
    assert server.last.action == "countTokens"
    assert server.last.user_texts() == ["one two three four"]


# ---------------------------------------------------------------------------
# API versions, keys, request log
# ---------------------------------------------------------------------------


def test_v1_and_v1beta(server):
    v1 = make_client(server)
    beta = make_client(server, api_version="v1beta")
    assert v1.models.generate_content(model=MODEL, contents="a").text == "Echo: a"
    assert beta.models.generate_content(model=MODEL, contents="b").text == "Echo: b"
    assert "".join(c.text for c in beta.models.generate_content_stream(model=MODEL, contents="c")) == "Echo: c"
    assert [m.name for m in beta.models.list()][0] == "models/gemini-2.5-flash"
    assert beta.models.count_tokens(model=MODEL, contents="x y").total_tokens == 2
    assert [r.version for r in server.requests] == ["v1", "v1beta", "v1beta", "v1beta", "v1beta"]
    assert server.requests[1].path == f"/v1beta/models/{MODEL}:generateContent"
    with pytest.raises(errors.ClientError) as info:
        beta.models.generate_content(model="nope", contents="q")
    assert "for API version v1beta" in info.value.message


def test_key_check(server):
    server.valid_keys = {"test-key"}
    assert make_client(server).models.generate_content(model=MODEL, contents="q").text
    for call in (
        lambda c: c.models.generate_content(model=MODEL, contents="q"),
        lambda c: next(c.models.generate_content_stream(model=MODEL, contents="q")),
        lambda c: list(c.models.list()),
        lambda c: c.models.count_tokens(model=MODEL, contents="q"),
    ):
        with pytest.raises(errors.ClientError) as info:
            call(make_client(server, key="wrong-key"))
        err = info.value
        assert (err.code, err.status) == (400, "INVALID_ARGUMENT")
        assert err.message == "API key not valid. Please pass a valid API key."
        info_detail = err.details["error"]["details"][0]
        assert info_detail["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
        assert (info_detail["reason"], info_detail["domain"]) == ("API_KEY_INVALID", "googleapis.com")
    assert server.last.headers["x-goog-api-key"] == "wrong-key"
    assert server.last.api_key == "wrong-key"


def test_request_log(server, client):
    client.models.generate_content(
        model=MODEL,
        contents=[
            types.Content(role="user", parts=[types.Part(text="look at"), types.Part(text="this")]),
        ],
        config=types.GenerateContentConfig(
            system_instruction="be brief",
            temperature=0.5,
            max_output_tokens=100,
        ),
    )
    req = server.last
    assert req is server.requests[-1]
    assert req.method == "POST"
    assert req.path == f"/v1/models/{MODEL}:generateContent"
    assert (req.version, req.model, req.action) == ("v1", MODEL, "generateContent")
    assert req.query == {}
    assert req.headers["content-type"] == "application/json"
    assert req.headers["x-goog-api-key"] == "test-key"
    assert req.body["generationConfig"]["temperature"] == 0.5
    assert req.body["generationConfig"]["maxOutputTokens"] == 100
    assert json.loads(req.raw_body) == req.body
    assert req.user_texts() == ["look at", "this"]
    assert req.system_texts() == ["be brief"]
    assert req.last_user_text() == "this"


def test_last_without_requests(server):
    with pytest.raises(IndexError):
        _ = server.last


def test_responder(server, client):
    seen = []

    def respond(request):
        seen.append(request.model)
        if "block" in request.last_user_text():
            return Blocked()
        if "none" in request.last_user_text():
            return None  # fall back to the echo
        return Reply(text=f"{request.model} says hi")

    server.responder = respond
    server.queue("queued first")
    assert client.models.generate_content(model=MODEL, contents="x").text == "queued first"
    assert client.models.generate_content(model="gemini-2.5-pro", contents="x").text == "gemini-2.5-pro says hi"
    assert client.models.generate_content(model=MODEL, contents="none").text == "Echo: none"
    assert client.models.generate_content(model=MODEL, contents="block").prompt_feedback
    assert seen == ["gemini-2.5-pro", MODEL, MODEL]


def test_reset_restores_defaults(server, client):
    server.queue("x")
    server.responder = lambda request: Reply(text="r")
    server.models = []
    server.valid_keys = {"other"}
    server.chunk_delay = 1.0
    server.reset()
    assert server.requests == [] and server.pending == 0
    assert server.responder is None and server.valid_keys is None and server.chunk_delay == 0.0
    assert len(list(client.models.list())) == 6
    assert client.models.generate_content(model=MODEL, contents="q").text == "Echo: q"


def test_stop_refuses_connections():
    fake = FakeGemini().start()
    client = make_client(fake)
    assert client.models.generate_content(model=MODEL, contents="q").text == "Echo: q"
    fake.stop()
    with pytest.raises(Exception):  # noqa: B017 - any connection error
        client.models.generate_content(model=MODEL, contents="q")


def test_stop_interrupts_a_hang():
    fake = FakeGemini().start()
    fake.queue(Reply(text="never", hang=30))
    client = make_client(fake)
    outcome = []

    def call():
        try:
            client.models.generate_content(model=MODEL, contents="q")
        except Exception as exc:  # noqa: BLE001
            outcome.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    fake.stop()
    thread.join(5)
    assert time.monotonic() - started < 3
    assert outcome and not thread.is_alive()


# ---------------------------------------------------------------------------
# Scripts and the CLI
# ---------------------------------------------------------------------------

SCRIPT = {
    "rules": [
        {"match": "weather", "model": "gemini-2.5-pro", "reply": {"text": "Pro weather"}},
        {"match": "weather", "reply": {"chunks": ["Sun", "ny"], "finish_reason": "STOP"}},
        {
            "match": "quota",
            "error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "slow", "retry_delay": "30s"},
        },
        {"match": "overload", "error": {"kind": "server", "code": 503}},
        {"match": "bad", "blocked": "SAFETY"},
        {"match": "picture", "reply": {"parts": [{"inlineData": {"mimeType": "image/png", "data": "AAAA"}}]}},
    ],
    "default": {"text": "Default answer"},
    "chunk_delay": 0.01,
}


def test_from_script():
    server = FakeGemini.from_script(SCRIPT)
    assert server.chunk_delay == 0.01
    with server:
        client = make_client(server)
        ask = client.models.generate_content
        assert ask(model=MODEL, contents="weather?").text == "Sunny"
        assert ask(model="gemini-2.5-pro", contents="weather?").text == "Pro weather"
        stream = client.models.generate_content_stream(model=MODEL, contents="the weather")
        assert [c.text for c in stream] == ["Sun", "ny"]
        with pytest.raises(errors.ClientError) as info:
            ask(model=MODEL, contents="quota please")
        assert info.value.details["error"]["details"][0]["retryDelay"] == "30s"
        with pytest.raises(errors.ServerError):
            ask(model=MODEL, contents="overload")
        assert ask(model=MODEL, contents="bad").prompt_feedback.block_reason == types.BlockedReason.SAFETY
        assert ask(model=MODEL, contents="picture").candidates[0].content.parts[0].inline_data
        assert ask(model=MODEL, contents="other").text == "Default answer"


def test_script_from_file_and_bad_script(tmp_path):
    path = tmp_path / "script.json"
    path.write_text(json.dumps({"rules": [{"match": "hi", "reply": {"text": "hello"}}]}))
    with FakeGemini.from_script(path) as server:
        client = make_client(server)
        assert client.models.generate_content(model=MODEL, contents="hi").text == "hello"
        assert client.models.generate_content(model=MODEL, contents="x").text == "Echo: x"
    with pytest.raises(ValueError):
        FakeGemini.from_script({"rulez": []})
    with pytest.raises(TypeError):
        FakeGemini.from_script({"rules": [{"match": "x", "reply": {"txt": "typo"}}]})


def test_cli(tmp_path):
    path = tmp_path / "script.json"
    path.write_text(json.dumps(SCRIPT))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_gemini", "--port", "0", "--script", str(path), "--chunk-delay", "0",
         "--implicit-cache"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("URL=http://127.0.0.1:")
        url = line.removeprefix("URL=")
        client = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=url))
        assert client.models.generate_content(model=MODEL, contents="weather").text == "Sunny"
        assert client.models.generate_content(model=MODEL, contents="zzz").text == "Default answer"
        long = " ".join(["word"] * 1100)
        usage = [client.models.generate_content(model=MODEL, contents=[long, question]).usage_metadata
                 for question in ("zzz", "yyy")]
        assert [u.cached_content_token_count for u in usage] == [None, 1100]  # --implicit-cache
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0


# ---------------------------------------------------------------------------
# What the real server sends (gemini-wire.md, items 1-13), checked against the
# recordings in tests/realwire where one shows the fact
# ---------------------------------------------------------------------------

REALWIRE = ROOT / "tests" / "realwire"
GEMINI3 = "gemini-3-flash-preview"


def recording(name: str) -> dict:
    return json.loads((REALWIRE / name).read_text(encoding="utf-8"))


def raw_call(
    server: FakeGemini, path: str, body: object = None, headers: dict | None = None, method: str = "POST"
) -> tuple[int, object, bytes]:
    """One plain HTTP request (the key header unless `headers` says otherwise); the
    answer's status, headers (case-insensitive) and exact body bytes."""
    sent = {"Content-Type": "application/json", "x-goog-api-key": "k", **(headers or {})}
    sent = {k: v for k, v in sent.items() if v is not None}
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server.url + path, data=data, headers=sent, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def prompt(text: str) -> dict:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}]}


def sse_payloads(body: bytes) -> list[bytes]:
    """The JSON texts of an SSE body, checking its framing on the way."""
    pieces = body.split(b"\r\n\r\n")
    assert pieces[-1] == b"", "the body ends with a blank line"
    assert all(p.startswith(b"data: ") and b"\n" not in p for p in pieces[:-1]), body[:200]
    return [p.removeprefix(b"data: ") for p in pieces[:-1]]


def stream_events(server: FakeGemini, text: str = "one two three four five six", model: str = MODEL) -> list[dict]:
    status, _, body = raw_call(server, f"/v1beta/models/{model}:streamGenerateContent?alt=sse", prompt(text))
    assert status == 200
    return [json.loads(p) for p in sse_payloads(body)]


def recorded_events(name: str) -> list[dict]:
    return [json.loads(p) for p in sse_payloads(recording(name)["body"].encode())]


# -- 1: framing ----------------------------------------------------------------


def assert_sse_like_google(body: bytes) -> None:
    assert b"event:" not in body and b"[DONE]" not in body
    for payload in sse_payloads(body):
        json.loads(payload)
        # Compact as Google writes it: '": ' after keys, no space after commas.
        assert b'": ' in payload and b'", "' not in payload and b", {" not in payload


def test_fact1_sse_events_are_crlf_framed_data_lines_like_the_recording(server):
    assert_sse_like_google(recording("b_sse_gemini-2.5-flash_usage_mid_stream_pydantic-ai.json")["body"].encode())
    status, headers, body = raw_call(server, f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse",
                                     prompt("a b c d e f"))
    assert status == 200 and headers["Content-Type"] == "text/event-stream"
    assert_sse_like_google(body)
    assert len(sse_payloads(body)) == 3


def assert_pretty_json_array(body: bytes) -> list:
    """One JSON array: '[' + pretty elements joined by '\\n,\\r\\n' + '\\n]'."""
    assert body.startswith(b"[{\n  \"") and body.endswith(b"}\n]")
    elements = body[1:-2].split(b"\n,\r\n")
    parsed = [json.loads(element) for element in elements]
    for element, value in zip(elements, parsed, strict=True):
        assert element.decode() == json.dumps(value, indent=2, ensure_ascii=False)
    assert json.loads(body) == parsed
    return parsed


def test_fact1_a_stream_without_alt_sse_is_one_pretty_json_array_like_the_recording(server):
    real = recording("b_jsonarray_gemini-3-flash-preview_llm-gemini.json")
    recorded = assert_pretty_json_array(real["body"].encode())
    server.queue("Hello")
    status, headers, body = raw_call(server, f"/v1beta/models/{GEMINI3}:streamGenerateContent",
                                     json.loads(real["request"]["body"]))
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    events = assert_pretty_json_array(body)
    assert len(events) == len(recorded) == 2  # a short answer is one event, then Gemini 3's tail
    assert [sorted(e) for e in events] == [sorted(e) for e in recorded]


# -- 2: usage, modelVersion and responseId on every chunk ----------------------


def assert_usage_on_every_chunk(events: list[dict]) -> None:
    assert all({"usageMetadata", "modelVersion", "responseId"} <= set(e) for e in events)
    assert len({e["responseId"] for e in events}) == 1
    counts = [e["usageMetadata"].get("candidatesTokenCount", 0) for e in events]
    assert counts == sorted(counts) and counts[0] < counts[-1]


def test_fact2_usage_model_version_and_id_on_every_chunk_counts_growing(server, client):
    assert_usage_on_every_chunk(recorded_events("b_sse_gemini-2.5-flash_usage_mid_stream_pydantic-ai.json"))
    events = stream_events(server)
    assert_usage_on_every_chunk(events)
    # The last chunk's figures are the answer's: the same as the whole answer's.
    whole = client.models.generate_content(model=MODEL, contents="one two three four five six")
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="one two three four five six"))
    assert chunks[-1].usage_metadata == whole.usage_metadata
    assert [c.usage_metadata.prompt_token_count for c in chunks] == [6, 6, 6]


def test_fact2_explicit_usage_grows_to_the_given_figures(server):
    final = {"promptTokenCount": 18, "candidatesTokenCount": 80, "totalTokenCount": 133, "thoughtsTokenCount": 35}
    server.queue(Reply(chunks=["a b ", "c d ", "e"], usage=final))
    usages = [e["usageMetadata"] for e in stream_events(server)]
    assert usages[-1] == final
    assert [u["candidatesTokenCount"] for u in usages] == [32, 64, 80]
    assert all(u["totalTokenCount"] - u["candidatesTokenCount"] == 53 for u in usages)
    assert all(u["thoughtsTokenCount"] == 35 for u in usages)  # thinking came first


def test_fact2_the_prompt_count_can_change_on_the_final_chunk_like_the_recording(server, client):
    recorded = [e["usageMetadata"]["promptTokenCount"]
                for e in recorded_events("c_fc_sse_gemini-3-pro-preview_sig_pydantic-ai_2of2.json")]
    assert recorded[0] != recorded[-1]
    usage = [{"promptTokenCount": 55, "candidatesTokenCount": n, "totalTokenCount": 55 + n} for n in (4, 8)]
    usage.append({"promptTokenCount": 257, "candidatesTokenCount": 8, "totalTokenCount": 265})
    server.queue(Reply(chunks=["The capital of Mexico", " is Mexico City."], usage=usage))
    chunks = list(client.models.generate_content_stream(model=GEMINI3, contents="q"))
    assert [c.usage_metadata.prompt_token_count for c in chunks] == [55, 55, 257]  # Gemini 3's tail is third
    assert chunks[-1].usage_metadata.total_token_count == 265


# -- 3: finishReason is not last-only ------------------------------------------


def test_fact3_a_short_answer_is_one_event_with_text_finish_and_usage(server):
    [event] = stream_events(server, "hi")
    cand = event["candidates"][0]
    assert cand["content"]["parts"] == [{"text": "Echo: hi"}]
    assert cand["finishReason"] == "STOP" and event["usageMetadata"]["candidatesTokenCount"] == 2


def finish_reasons(events: list[dict]) -> list:
    return [e["candidates"][0].get("finishReason") for e in events]


def test_fact3_a_code_execution_stream_has_stop_in_the_middle_and_at_the_end(server, client):
    recorded = finish_reasons(recorded_events("e_code_execution_sse_gemini-2.5-pro_pydantic-ai.json"))
    assert recorded[-1] == "STOP" and "STOP" in recorded[:-1]
    server.queue(Reply(parts=[
        {"executableCode": {"language": "PYTHON", "code": "print(2 * 21)"}},
        {"codeExecutionResult": {"outcome": "OUTCOME_OK", "output": "42\n"}},
        {"text": "It is "}, {"text": "42."},
    ]))
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="q"))
    stop = types.FinishReason.STOP
    assert [c.candidates[0].finish_reason for c in chunks] == [stop, None, None, stop]
    assert "".join(c.text or "" for c in chunks[2:]) == "It is 42."


# -- 4: thought signatures ----------------------------------------------------


def test_fact4_gemini3_streams_end_with_a_signed_empty_part_like_the_recording(server):
    recorded = json.loads(recording("b_jsonarray_gemini-3-flash-preview_llm-gemini.json")["body"])
    server.queue("Hello")
    for events in (recorded, stream_events(server, "Say just hello", GEMINI3)):
        [tail] = events[-1]["candidates"][0]["content"]["parts"]
        assert tail["text"] == "" and base64.b64decode(tail["thoughtSignature"])
        assert finish_reasons(events)[-1] == "STOP" and not any(finish_reasons(events)[:-1])
        assert "thoughtSignature" not in events[0]["candidates"][0]["content"]["parts"][0]


def test_fact4_gemini25_streams_have_no_empty_tail_and_no_text_signatures(server):
    events = stream_events(server, "Say just hello")
    parts = [p for e in events for p in e["candidates"][0]["content"]["parts"]]
    assert all(p["text"] and "thoughtSignature" not in p for p in parts)


def test_fact4_gemini3_signs_text_and_image_parts_without_include_thoughts(server, client):
    image = {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}
    server.queue(Reply(text="A plain answer."), Reply(parts=[{"text": "Here:"}, image]))
    [text] = client.models.generate_content(model=GEMINI3, contents="q").candidates[0].content.parts
    assert text.text == "A plain answer." and text.thought_signature
    words, picture = client.models.generate_content(model=GEMINI3, contents="q").candidates[0].content.parts
    assert picture.inline_data.data == b"\x89PNG\r\n\x1a\n" and len(picture.thought_signature) > 500
    assert words.thought_signature and words.thought_signature != picture.thought_signature
    # 2.5 models do not sign plain text.
    server.queue(Reply(text="A plain answer."))
    assert client.models.generate_content(model=MODEL, contents="q").candidates[0].content.parts[0].thought_signature \
        is None


CALLS = [{"functionCall": {"name": "weather", "args": {"city": "Berlin"}}},
         {"functionCall": {"name": "best_language_to_learn", "args": {}}}]


@pytest.mark.parametrize("model", [MODEL, GEMINI3])
def test_fact4_in_parallel_calls_only_the_first_call_is_signed_like_the_recording(server, client, model):
    real = json.loads(recording("c_fc_parallel_gemini-2.5-flash_ruby_llm_1of2.json")["body"])
    for parts in (real["candidates"][0]["content"]["parts"], None):
        if parts is None:
            server.queue(Reply(parts=CALLS))
            status, _, body = raw_call(server, f"/v1beta/models/{model}:generateContent", prompt("q"))
            parts = json.loads(body)["candidates"][0]["content"]["parts"]
        assert ["thoughtSignature" in p for p in parts] == [True, False]
        assert all("thoughtSignature" not in p["functionCall"] for p in parts)  # beside it, never inside


def test_fact4_gemini3_rejects_a_tool_turn_that_lost_its_signature(server, client):
    server.queue(Reply(parts=CALLS[:1]), "Sunny.", "Sunny.")
    question = types.Content(role="user", parts=[types.Part(text="Weather in Berlin?")])
    call_turn = client.models.generate_content(model=GEMINI3, contents=question).candidates[0].content
    answer = types.Content(role="user", parts=[types.Part(function_response=types.FunctionResponse(
        name="weather", response={"result": "sunny"}))])
    # Kept as returned: accepted.
    assert client.models.generate_content(model=GEMINI3, contents=[question, call_turn, answer]).text == "Sunny."
    stripped = call_turn.model_copy(deep=True)
    stripped.parts[0].thought_signature = None
    with pytest.raises(errors.ClientError) as info:
        client.models.generate_content(model=GEMINI3, contents=[question, stripped, answer])
    assert info.value.code == 400 and "missing a thought_signature" in info.value.message
    assert "`default_api:weather` , position 2" in info.value.message
    # 2.5 models do not check.
    assert client.models.generate_content(model=MODEL, contents=[question, stripped, answer]).text == "Sunny."


# -- 5: function call ids and finishMessage -------------------------------------


def test_fact5_call_ids_go_back_in_function_responses_and_call_turns_have_a_finish_message(server, client):
    call = Reply(parts=[{"functionCall": {"id": "call-7", "name": "weather", "args": {}}}])
    server.queue(call, call, "Done.")
    real = json.loads(recording("c_fc_parallel_gemini-2.5-flash_ruby_llm_1of2.json")["body"])["candidates"][0]
    ours = json.loads(raw_call(server, f"/v1beta/models/{MODEL}:generateContent", prompt("q"))[2])["candidates"][0]
    assert ours["finishMessage"] == real["finishMessage"] == "Model generated function call(s)."
    question = types.Content(role="user", parts=[types.Part(text="Weather?")])
    response = client.models.generate_content(model=MODEL, contents=question)
    cand = response.candidates[0]
    assert response.function_calls[0].id == "call-7"
    answer = types.Content(role="user", parts=[types.Part(function_response=types.FunctionResponse(
        id="call-7", name="weather", response={"result": "sunny"}))])
    assert client.models.generate_content(model=MODEL, contents=[question, cand.content, answer]).text == "Done."
    sent = server.last.body["contents"]
    assert sent[1]["parts"][0]["functionCall"]["id"] == "call-7"
    assert sent[2]["parts"][0]["functionResponse"]["id"] == "call-7"
    # A text answer has no finishMessage.
    assert "finishMessage" not in json.loads(raw_call(server, f"/v1beta/models/{MODEL}:generateContent",
                                                      prompt("q"))[2])["candidates"][0]


# -- 6: thought-flagged code execution -----------------------------------------


def test_fact6_code_execution_parts_can_carry_thought_true(server, client):
    recorded = [p for e in recorded_events("e_code_execution_sse_gemini-2.5-pro_pydantic-ai.json")
                for p in e["candidates"][0]["content"]["parts"]]
    assert any(p.get("thought") and "executableCode" in p for p in recorded)
    server.queue(Reply(parts=[
        {"executableCode": {"language": "PYTHON", "code": "print(1)"}, "thought": True},
        {"codeExecutionResult": {"outcome": "OUTCOME_OK", "output": "1\n"}, "thought": True},
        {"text": "One."},
    ]))
    parts = [p for c in client.models.generate_content_stream(model=MODEL, contents="q")
             for p in c.candidates[0].content.parts]
    assert [(p.thought, p.executable_code is not None, p.code_execution_result is not None) for p in parts] == [
        (True, True, False), (True, False, True), (None, False, False)]


# -- 7: grounding --------------------------------------------------------------

GROUNDED = "Café crème: 3 €. Paris is big."
ODD_URI = "https://example.org/a path/(x),y/ü?q=a b,c"


def grounded_reply() -> Reply:
    from tests.fake_gemini.server import grounding_metadata

    meta = grounding_metadata(GROUNDED, [("Café crème: 3 €.", [0]), ("Paris is big.", [0, 1])],
                              [(ODD_URI, "odd"), ("https://b.example/", "B")], ["café <paris>"])
    return Reply(chunks=["Café crème: 3 €.", " Paris is big."], grounding=meta)


def test_fact7_support_offsets_are_utf8_bytes_and_start_index_0_is_omitted(server):
    real = json.loads(recording("d_grounding_gemini-3.5-flash_byte_offsets_ruby_llm.json")["body"])
    for response in (real, None):
        if response is None:
            server.queue(grounded_reply())
            response = json.loads(raw_call(server, f"/v1beta/models/{MODEL}:generateContent", prompt("q"))[2])
        cand = response["candidates"][0]
        text = "".join(p["text"] for p in cand["content"]["parts"]).encode("utf-8")
        supports = cand["groundingMetadata"]["groundingSupports"]
        assert "startIndex" not in supports[0]["segment"]
        for support in supports:
            segment = support["segment"]
            piece = text[segment.get("startIndex", 0):segment["endIndex"]].decode("utf-8")
            assert piece == segment["text"]


def test_fact7_streamed_events_carry_empty_grounding_until_the_last(server, client):
    server.queue(grounded_reply())
    events = stream_events(server)
    assert [e["candidates"][0]["groundingMetadata"] == {} for e in events] == [True, False]
    server.queue(grounded_reply())
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="q"))
    chunk = chunks[-1].candidates[0].grounding_metadata.grounding_chunks[0]
    assert chunk.web.uri == ODD_URI  # sent as is: spaces, commas, parentheses, non-ASCII


def test_fact7_rendered_content_escapes_angle_brackets_like_the_recording(server):
    real = recording("d_grounding_gemini-3.5-flash_byte_offsets_ruby_llm.json")["body"]
    server.queue(grounded_reply())
    body = raw_call(server, f"/v1beta/models/{MODEL}:generateContent", prompt("q"))[2]
    for wire in (real.encode(), body):
        assert b'"renderedContent": "\\u003cstyle\\u003e' in wire and b"<" not in wire and b">" not in wire
    rendered = json.loads(body)["candidates"][0]["groundingMetadata"]["searchEntryPoint"]["renderedContent"]
    assert "café &lt;paris&gt;" not in rendered and "café <paris>" in rendered
    assert "Café crème".encode() in body  # non-ASCII as UTF-8, not \\u escapes


# -- 8: defaults omitted, never null -------------------------------------------


def test_fact8_max_tokens_of_a_thinking_model_has_content_without_parts(server, client):
    real = json.loads(recording("k_max_tokens_thinking_no_parts_gemini-2.5-pro_pydantic-ai.json")["body"])
    server.queue(Reply(text="", finish_reason="MAX_TOKENS", usage={"promptTokenCount": 15, "thoughtsTokenCount": 2,
                                                                   "totalTokenCount": 17}))
    ours = json.loads(raw_call(server, f"/v1beta/models/{MODEL}:generateContent", prompt("q"))[2])
    for response in (real, ours):
        assert response["candidates"][0]["content"] == {"role": "model"}
        assert response["candidates"][0]["finishReason"] == "MAX_TOKENS"
        assert "candidatesTokenCount" not in response["usageMetadata"]
    server.queue(Reply(text="", finish_reason="MAX_TOKENS"))
    response = client.models.generate_content(model=MODEL, contents="q")
    assert response.text is None and response.candidates[0].content.parts is None


def test_fact8_a_safety_stop_has_empty_content(server):
    server.queue(Reply(finish_reason="SAFETY"), Reply(text="Some words then", finish_reason="SAFETY"))
    response = json.loads(raw_call(server, f"/v1beta/models/{MODEL}:generateContent", prompt("q"))[2])
    assert response["candidates"][0]["content"] == {}
    events = stream_events(server)
    assert events[-1]["candidates"][0] == {"content": {}, "finishReason": "SAFETY", "index": 0}
    assert all("finishReason" not in e["candidates"][0] for e in events[:-1])


def test_fact8_a_blocked_prompt_has_no_candidates_key_like_the_recording(server):
    real = json.loads(recording("k_prompt_blocked_prohibited_content_gemini-3.7-flash_vercel.json")["body"])
    server.queue(Blocked("PROHIBITED_CONTENT"))
    ours = json.loads(raw_call(server, f"/v1beta/models/{MODEL}:generateContent", prompt("bad words"))[2])
    for response in (real, ours):
        assert "candidates" not in response
        assert response["promptFeedback"] == {"blockReason": "PROHIBITED_CONTENT"}
    assert sorted(ours) == sorted(real)
    assert sorted(ours["usageMetadata"]) == sorted(real["usageMetadata"])


def test_no_null_anywhere_in_generated_answers(server):
    server.queue(Reply(parts=[{"text": "x", "thoughtSignature": None}], model_version=None))
    body = raw_call(server, f"/v1beta/models/{MODEL}:generateContent", prompt("q"))[2]
    assert b"null" not in body and json.loads(body)["candidates"][0]["content"]["parts"] == [{"text": "x"}]


# -- 9: key errors, and errors on ?alt=sse ---------------------------------------


def test_fact9_a_missing_key_is_403_unregistered_callers(server):
    for path in (f"/v1beta/models/{MODEL}:generateContent", "/v1beta/models"):
        status, _, body = raw_call(server, path, prompt("q") if "generate" in path else None,
                                   {"x-goog-api-key": None}, "POST" if "generate" in path else "GET")
        error = json.loads(body)["error"]
        assert (status, error["code"], error["status"]) == (403, 403, "PERMISSION_DENIED")
        assert "unregistered callers" in error["message"]
    assert not [r for r in server.requests if r.action == "generateContent" and r.api_key]


def test_fact9_errors_on_alt_sse_are_plain_json_with_the_event_stream_type_like_the_recording(server, client):
    real = recording("h_400_api_key_invalid_on_sse_genai-sdk_mirascope.json")
    server.valid_keys = {"good"}
    status, headers, body = raw_call(server, f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse", prompt("q"),
                                     {"x-goog-api-key": "bad"})
    assert status == real["status"] == 400
    assert headers["Content-Type"] == real["response_headers"]["Content-Type"] == "text/event-stream"
    assert not body.startswith(b"data:")
    assert body.decode() == real["body"]  # the same bytes, word for word
    bad = make_client(server, key="bad")  # kept: a client no one holds closes its connection
    with pytest.raises(errors.ClientError) as info:
        next(bad.models.generate_content_stream(model=MODEL, contents="q"))
    assert info.value.code == 400 and info.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"


# -- 10: service tier ----------------------------------------------------------


def test_fact10_answers_carry_the_service_tier(server):
    for path in (f"/v1beta/models/{MODEL}:generateContent", f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse"):
        status, headers, body = raw_call(server, path, prompt("q"))
        assert headers["X-Gemini-Service-Tier"] == "standard"
        response = json.loads(body if "alt=sse" not in path else sse_payloads(body)[-1])
        assert response["usageMetadata"]["serviceTier"] == "standard"
    server.queue(Error.server(503))
    assert raw_call(server, f"/v1beta/models/{MODEL}:generateContent", prompt("q"))[1]["X-Gemini-Service-Tier"]


# -- 11: the 404 wording -------------------------------------------------------


def test_fact11_the_404_matches_the_recorded_wording(server):
    real = recording("h_404_model_not_found_genai-sdk_mirascope.json")
    status, _, body = raw_call(server, "/v1beta/models/this-model-does-not-exist-12345:generateContent",
                               json.loads(real["request"]["body"]))
    assert status == real["status"] and json.loads(body) == json.loads(real["body"])


# -- 12: camelCase answers, 64-bit numbers as strings ---------------------------


def all_keys(value) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in all_keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in all_keys(v)}
    return set()


def test_fact12_snake_case_requests_get_camel_case_answers_and_int64_as_strings(server, client, tmp_path):
    body = {"contents": [{"role": "user", "parts": [{"text": "q"}]}],
            "generation_config": {"max_output_tokens": 5, "thinking_config": {"include_thoughts": True}}}
    server.queue(Reply(parts=[{"text": "hmm", "thought": True}, {"functionCall": {"name": "f", "args": {}}}]))
    answer = json.loads(raw_call(server, f"/v1beta/models/{MODEL}:generateContent", body)[2])
    assert not [k for k in all_keys(answer) if "_" in k]
    path = tmp_path / "notes.txt"
    path.write_bytes(b"x" * 1234)
    uploaded = client.files.upload(file=path, config={"display_name": "notes.txt"})
    assert uploaded.size_bytes == 1234
    file_id = uploaded.name.removeprefix("files/")
    meta = json.loads(raw_call(server, f"/v1beta/files/{file_id}", method="GET")[2])
    assert meta["sizeBytes"] == "1234"
    real = json.loads(recording("i_files_upload_finalize_ruby_llm.json")["body"])["file"]
    assert isinstance(real["sizeBytes"], str) and sorted(real) == sorted(meta)


# -- 13: resumable upload start --------------------------------------------------


def test_fact13_upload_start_is_an_empty_text_plain_body_with_the_url_in_a_header(server):
    real = recording("i_files_upload_start_ruby_llm.json")
    status, headers, body = raw_call(server, "/upload/v1beta/files", {"file": {"display_name": "sample.pdf"}}, {
        "X-Goog-Upload-Protocol": "resumable", "X-Goog-Upload-Command": "start",
        "X-Goog-Upload-Header-Content-Length": "3", "X-Goog-Upload-Header-Content-Type": "application/pdf"})
    assert (status, body) == (200, b"") and real["body"] == ""
    assert headers["Content-Type"] == real["response_headers"]["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["X-Goog-Upload-Status"] == "active"
    url = headers["X-Goog-Upload-URL"]
    assert url.startswith(server.url + "/upload/v1beta/files?upload_id=")
    status, headers, body = raw_call(server, url.removeprefix(server.url), None, {
        "X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": "0", "Content-Type": "application/pdf"})
    # urllib sends no body for data=None: the declared 3 bytes never came.
    assert status == 400 and headers["X-Goog-Upload-Status"] == "final"


# -- queue_raw -------------------------------------------------------------------


def test_queue_raw_serves_the_bytes_to_the_next_generate_like_request_on_any_version(server, client):
    body = b'{\n  "candidates": [{"content": {"parts": [{"text": "raw!"}], "role": "model"}}]\n}\n'
    server.queue_raw(200, {"Content-Type": "application/json; charset=UTF-8", "Vary": ["Origin", "Referer"],
                           "Content-Encoding": "gzip", "Transfer-Encoding": "chunked", "X-Extra": "1"}, body)
    assert server.pending == 1
    # A models call does not take it; the generate call (SDK default v1) does.
    assert list(client.models.list())
    assert client.models.generate_content(model="no-such-model", contents="q").text == "raw!"
    status, headers, got = raw_call(server, f"/v1/models/{MODEL}:generateContent", prompt("q"))
    assert json.loads(got)["candidates"][0]["content"]["parts"][0]["text"] == "Echo: q"  # used once
    server.queue_raw(429, [("Content-Type", "text/plain")], "slow", actions=("list",))
    status, headers, got = raw_call(server, "/v1beta/models", method="GET")
    assert (status, got, headers["Content-Type"]) == (429, b"slow", "text/plain")
    assert headers.get("Content-Encoding") is None and headers.get_all("Vary") is None
    server.queue_raw(200, {"Vary": ["Origin", "Referer"]}, b"{}")
    status, headers, got = raw_call(server, f"/v1/models/{MODEL}:countTokens", prompt("q"))
    assert headers.get_all("Vary") == ["Origin", "Referer"] and headers["Content-Length"] == "2"


# ---------------------------------------------------------------------------
# Knowing the cost: token counting, explicit and implicit caches, service tiers
# ---------------------------------------------------------------------------

GEMINI3_PRO_LIKE = "gemini-2.5-pro"


def image_bytes(width: int, height: int, fmt: str = "PNG") -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, fmt)
    return out.getvalue()


def image_part(width: int, height: int, fmt: str = "PNG", **extra: object) -> types.Part:
    return types.Part.from_bytes(data=image_bytes(width, height, fmt), mime_type=f"image/{fmt.lower()}", **extra)


def wav_bytes(seconds: float, rate: int = 8000) -> bytes:
    import wave

    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(b"\0\0" * int(rate * seconds))
    return out.getvalue()


def mp4_bytes(seconds: int, version: int = 0) -> bytes:
    """A minimal MP4: ftyp, then moov holding an mvhd box with timescale 1000."""
    if version == 0:
        body = struct.pack(">B3sIIII", 0, b"\0\0\0", 0, 0, 1000, seconds * 1000)
    else:
        body = struct.pack(">B3sQQIQ", 1, b"\0\0\0", 0, 0, 1000, seconds * 1000)
    mvhd = struct.pack(">I4s", 8 + len(body) + 80, b"mvhd") + body + b"\0" * 80
    moov = struct.pack(">I4s", 8 + len(mvhd), b"moov") + mvhd
    return struct.pack(">I4s", 16, b"ftyp") + b"isom\0\0\0\0" + moov


def pdf_bytes(pages: int) -> bytes:
    kids = " ".join(f"{3 + i} 0 R" for i in range(pages))
    objects = [b"1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj",
               f"2 0 obj << /Type /Pages /Kids [{kids}] /Count {pages} >> endobj".encode()]
    objects += [f"{3 + i} 0 obj << /Type/Page /Parent 2 0 R >> endobj".encode() for i in range(pages)]
    return b"%PDF-1.4\n" + b"\n".join(objects) + b"\n%%EOF\n"


def details(answer: dict, key: str = "promptTokensDetails") -> dict[str, int]:
    return {d["modality"]: d["tokenCount"] for d in answer[key]}


def count_raw(server: FakeGemini, body: dict, model: str = MODEL) -> dict:
    status, _, got = raw_call(server, f"/v1beta/models/{model}:countTokens", body)
    assert status == 200, got
    return json.loads(got)


def sdk_body(contents: object) -> dict:
    """The countTokens body the SDK sends for these contents (to reuse it raw)."""
    from google.genai import _common
    from google.genai import _transformers as t
    from google.genai.models import _Content_to_mldev

    body = {"contents": [_Content_to_mldev(c) for c in t.t_contents(contents)]}
    return _common.encode_unserializable_types(_common.convert_to_dict(body))


# -- counting -------------------------------------------------------------------


def test_count_tokens_keeps_the_word_rule_and_answers_in_the_recorded_shape(server, client):
    real = recording("i_count_tokens_gemini-2.5-flash_genai-sdk_pydantic-ai.json")
    status, headers, got = raw_call(server, "/v1beta/models/gemini-2.5-flash:countTokens",
                                    json.loads(real["request"]["body"]))
    assert status == 200 and headers["Content-Type"] == real["response_headers"]["Content-Type"]
    # The same bytes but for the numbers: pretty-printed, TEXT details, nothing else.
    assert re.sub(rb"\d+", b"N", got) == re.sub(rb"\d+", b"N", real["body"].encode())
    assert json.loads(got) == {"totalTokens": 8, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 8}]}
    assert client.models.count_tokens(model=MODEL, contents="The quick brown fox").total_tokens == 4


@pytest.mark.parametrize("size, expected", [
    ((100, 100), 258), ((384, 384), 258),  # both sides <= 384 px: one image, 258 tokens
    ((385, 100), 258 * 2 * 1),  # crop unit floor(100 / 1.5) = 66, raised to 256: 2 x 1 tiles
    ((1024, 1024), 258 * 2 * 2),  # unit 682
    ((960, 540), 258 * 3 * 2),  # unit 360
    ((3000, 1000), 258 * 5 * 2),  # unit 666
])
def test_count_tokens_of_images_on_gemini2_tiles_large_ones(server, client, size, expected):
    assert client.models.count_tokens(model=MODEL, contents=[image_part(*size)]).total_tokens == expected


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_image_size_is_read_from_every_header_format(server, client, fmt):
    from tests.fake_gemini.server import image_size

    assert image_size(image_bytes(960, 540, fmt)) == (960, 540)
    part = image_part(960, 540, fmt)
    answer = count_raw(server, sdk_body(["What is this?", part]))
    assert answer == {"totalTokens": 1548 + 3,
                      "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 3},
                                              {"modality": "IMAGE", "tokenCount": 1548}]}
    assert client.models.count_tokens(model=MODEL, contents=["What is this?", part]).total_tokens == 1551


def test_other_webp_kinds_and_an_unreadable_image(server):
    from tests.fake_gemini.server import image_size

    lossless = b"RIFF\0\0\0\0WEBPVP8L\0\0\0\0\x2f" + (((540 - 1) << 14) | (960 - 1)).to_bytes(4, "little")
    extended = b"RIFF\0\0\0\0WEBPVP8X\0\0\0\0\0\0\0\0" + (959).to_bytes(3, "little") + (539).to_bytes(3, "little")
    assert image_size(lossless) == image_size(extended) == (960, 540)
    garbage = {"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "AAAA"}}]}]}
    assert count_raw(server, garbage)["totalTokens"] == 258  # size unknown: counted as a small image


def test_media_resolution_global_and_per_part_on_gemini2(server, client):
    big = image_part(1024, 1024)
    # The SDK sends config.media_resolution as generationConfig.mediaResolution.
    low = client.models.generate_content(model=MODEL, contents=[big],
                                         config={"media_resolution": "MEDIA_RESOLUTION_LOW"})
    assert server.last.body["generationConfig"]["mediaResolution"] == "MEDIA_RESOLUTION_LOW"
    assert low.usage_metadata.prompt_token_count == 64
    medium = client.models.generate_content(model=MODEL, contents=[big],
                                            config={"media_resolution": "MEDIA_RESOLUTION_MEDIUM"})
    assert medium.usage_metadata.prompt_token_count == 256
    # A part's own level wins over the request's; numTokens is taken as given.
    own = image_part(1024, 1024, media_resolution={"level": "MEDIA_RESOLUTION_LOW"})
    both = client.models.generate_content(model=MODEL, contents=[own, big],
                                          config={"media_resolution": "MEDIA_RESOLUTION_HIGH"})
    assert both.usage_metadata.prompt_token_count == 64 + 256
    assert server.last.body["contents"][0]["parts"][0]["mediaResolution"] == {"level": "MEDIA_RESOLUTION_LOW"}
    exact = image_part(10, 10, media_resolution={"num_tokens": 77})
    assert client.models.count_tokens(model=MODEL, contents=[exact]).total_tokens == 77
    # The REST countTokens wrapper carries the generationConfig too.
    wrapped = {"generateContentRequest": {"model": f"models/{MODEL}", **sdk_body([big]),
                                          "generationConfig": {"mediaResolution": "MEDIA_RESOLUTION_LOW"}}}
    assert count_raw(server, wrapped)["totalTokens"] == 64


def test_gemini3_counts_images_and_pdf_pages_by_media_resolution(server, client):
    tiny, big = image_part(10, 10), image_part(2000, 2000)
    counts = [client.models.count_tokens(model=GEMINI3, contents=[part]).total_tokens for part in (tiny, big)]
    assert counts == [1120, 1120]  # HIGH by default, whatever the size
    for level, tokens in (("LOW", 280), ("MEDIUM", 560), ("HIGH", 1120), ("ULTRA_HIGH", 2240)):
        part = image_part(10, 10, media_resolution={"level": f"MEDIA_RESOLUTION_{level}"})
        assert client.models.count_tokens(model=GEMINI3, contents=[part]).total_tokens == tokens
    response = client.models.generate_content(model=GEMINI3, contents=[tiny, "Describe"],
                                              config={"media_resolution": "MEDIA_RESOLUTION_LOW"})
    assert response.usage_metadata.prompt_token_count == 280 + 1
    pdf = types.Part.from_bytes(data=pdf_bytes(2), mime_type="application/pdf")
    assert client.models.count_tokens(model=GEMINI3, contents=[pdf]).total_tokens == 2 * 560  # MEDIUM for PDFs


def test_pdf_pages_count_page_objects_not_the_pages_tree(server, client):
    from tests.fake_gemini.server import pdf_pages

    data = pdf_bytes(3)
    assert data.count(b"/Type /Pages") == 1 and pdf_pages(data) == 3
    pdf = types.Part.from_bytes(data=data, mime_type="application/pdf")
    assert details(count_raw(server, sdk_body([pdf]))) == {"DOCUMENT": 3 * 258}
    low = client.models.generate_content(model=MODEL, contents=[pdf],
                                         config={"media_resolution": "MEDIA_RESOLUTION_LOW"})
    assert low.usage_metadata.prompt_token_count == 3 * 64
    assert low.usage_metadata.prompt_tokens_details[0].modality == types.MediaModality.DOCUMENT


def test_audio_and_video_count_by_duration(server, client):
    from tests.fake_gemini.server import media_seconds

    wav = types.Part.from_bytes(data=wav_bytes(2.5), mime_type="audio/wav")
    mp4 = types.Part.from_bytes(data=mp4_bytes(10), mime_type="video/mp4")
    assert media_seconds(mp4_bytes(7, version=1)) == 7
    answer = count_raw(server, sdk_body([wav, mp4]))
    assert details(answer) == {"AUDIO": 80, "VIDEO": 2630}  # 32 and 263 tokens a second
    assert [d["modality"] for d in answer["promptTokensDetails"]] == ["VIDEO", "AUDIO"]
    # Without a header the size says it, at 128 kbit/s for audio (16,000 bytes a second).
    mp3 = types.Part.from_bytes(data=b"ID3" + b"\0" * 47_997, mime_type="audio/mpeg")
    assert client.models.count_tokens(model=MODEL, contents=[mp3]).total_tokens == 96
    # A file we do not hold (a YouTube video): 10 seconds assumed.
    video = types.Part.from_uri(file_uri="https://www.youtube.com/watch?v=9hE5-98ZeCg", mime_type="video/*")
    assert client.models.count_tokens(model=MODEL, contents=[video]).total_tokens == 2630


def test_history_counts_every_turn_and_function_parts_as_json(server, client):
    call = {"name": "get_weather", "args": {"city": "Paris"}}
    result = {"name": "get_weather", "response": {"temperature": 15}}
    contents = [
        types.Content(role="user", parts=[types.Part(text="weather in Paris please")]),
        types.Content(role="model", parts=[types.Part(function_call=call)]),
        types.Content(role="user", parts=[types.Part(function_response=result)]),
        types.Content(role="model", parts=[types.Part(text="It is 15 degrees."),
                                           types.Part(text="secret thinking", thought=True)]),
        types.Content(role="user", parts=[types.Part(text="thanks")]),
    ]
    counted = client.models.count_tokens(model=MODEL, contents=contents).total_tokens
    sent = server.last.body["contents"]
    as_json = [json.dumps(sent[1]["parts"][0]["functionCall"]), json.dumps(sent[2]["parts"][0]["functionResponse"])]
    assert counted == 4 + sum(len(j.split()) for j in as_json) + 4 + 1  # thoughts are not counted
    assert client.models.generate_content(model=MODEL, contents=contents).usage_metadata.prompt_token_count == counted


def test_count_tokens_counts_system_instruction_and_tools_of_a_wrapped_or_vertex_request(server):
    declaration = {"name": "lookup", "description": "Look a word up.",
                   "parameters": {"type": "OBJECT", "properties": {"word": {"type": "STRING"}}}}
    tools = [{"functionDeclarations": [declaration]}, {"googleSearch": {}}]
    system = {"parts": [{"text": "You are terse."}]}
    tool_words = len(json.dumps([declaration]).split())
    expected = 3 + 3 + tool_words  # contents, system instruction, declarations; googleSearch counts nothing
    inner = {"model": f"models/{MODEL}", **prompt("one two three"), "systemInstruction": system, "tools": tools}
    answer = count_raw(server, {"generateContentRequest": inner})
    assert answer == {"totalTokens": expected, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": expected}]}
    # The same request generated: its prompt count is the dry run's.
    status, _, got = raw_call(server, f"/v1beta/models/{MODEL}:generateContent", {k: v for k, v in inner.items()
                                                                                  if k != "model"})
    assert json.loads(got)["usageMetadata"]["promptTokenCount"] == expected
    # Gemini Developer API mode: the SDK refuses system_instruction and tools for count_tokens ...
    client = make_client(server)
    with pytest.raises(ValueError, match="only supported in Gemini Enterprise Agent Platform mode"):
        client.models.count_tokens(model=MODEL, contents="x", config={"system_instruction": "y"})
    # ... Vertex sends them at the top level.
    vertex = genai.Client(vertexai=True, api_key="k", http_options=types.HttpOptions(base_url=server.url))
    result = vertex.models.count_tokens(model=MODEL, contents="one two three", config={
        "system_instruction": "You are terse.", "tools": [types.Tool(function_declarations=[declaration])]})
    assert server.last.path == f"/v1beta1/publishers/google/models/{MODEL}:countTokens"
    assert "systemInstruction" in server.last.body and "tools" in server.last.body
    sent_words = len(json.dumps(server.last.body["tools"][0]["functionDeclarations"]).split())
    assert result.total_tokens == 3 + 3 + sent_words


def test_a_dry_run_count_equals_the_later_prompt_count(server, client, tmp_path):
    server.file_processing_polls = 0
    path = tmp_path / "photo.png"
    path.write_bytes(image_bytes(1024, 1024))
    uploaded = client.files.upload(file=path)
    contents = ["Compare these two pictures please", image_part(300, 200),
                types.Part.from_uri(file_uri=uploaded.uri, mime_type=uploaded.mime_type)]
    dry = client.models.count_tokens(model=MODEL, contents=contents).total_tokens
    assert dry == 5 + 258 + 1032  # the uploaded file is read for its size
    for response in (client.models.generate_content(model=MODEL, contents=contents),
                     list(client.models.generate_content_stream(model=MODEL, contents=contents))[-1]):
        usage = response.usage_metadata
        assert usage.prompt_token_count == dry
        assert {d.modality.value: d.token_count for d in usage.prompt_tokens_details} == {"TEXT": 5, "IMAGE": 1290}
    assert server.last.prompt_tokens().prompt.total == dry and server.last.prompt_words() == 5


# -- explicit caches ---------------------------------------------------------------


def long_text(words: int, word: str = "handbook") -> str:
    return " ".join([word] * words)


def make_cache(client: genai.Client, words: int = 1100, model: str = MODEL, **config: object) -> types.CachedContent:
    config = {"contents": [long_text(words)], "system_instruction": "You are a release engineer.", **config}
    return client.caches.create(model=model, config=config)


def test_cache_create_answers_like_the_recording(server, client):
    real = recording("i_cached_contents_create_ruby_llm.json")
    status, headers, got = raw_call(server, "/v1beta/cachedContents", json.loads(real["request"]["body"]))
    assert status == 200 and headers["Content-Type"] == real["response_headers"]["Content-Type"]
    ours, theirs = json.loads(got), json.loads(real["body"])
    assert list(ours) == list(theirs) and list(ours["usageMetadata"]) == ["totalTokenCount"]
    assert re.fullmatch(r"cachedContents/[0-9a-z]{40}", ours["name"]) and len(theirs["name"]) == len(ours["name"])
    assert ours["model"] == theirs["model"] == "models/gemini-2.5-flash" and ours["displayName"] == ""
    for key, pattern in (("createTime", r"\.\d{6}Z"), ("updateTime", r"\.\d{6}Z"), ("expireTime", r"\.\d{9}Z")):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d" + pattern, ours[key]), key
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d" + pattern, theirs[key]), key
    # 7,800 words of handbook and a 6-word system instruction.
    assert ours["usageMetadata"]["totalTokenCount"] == 7806
    created = datetime.fromisoformat(ours["createTime"])
    assert (datetime.fromisoformat(ours["expireTime"][:26] + "Z") - created).total_seconds() == pytest.approx(300, 0.01)


def test_caches_create_get_list_update_delete(server, client):
    cache = make_cache(client, ttl="300s", display_name="handbook")
    assert server.last.path == "/v1/cachedContents" and server.last.action == "createCachedContent"
    assert server.last.body["ttl"] == "300s" and server.last.body["model"] == f"models/{MODEL}"
    assert cache.display_name == "handbook" and cache.model == f"models/{MODEL}"
    assert cache.usage_metadata.total_token_count == 1100 + 5
    assert (cache.expire_time - cache.create_time).total_seconds() == pytest.approx(300, abs=0.01)
    assert cache.create_time == cache.update_time
    got = client.caches.get(name=cache.name)
    assert got == cache and server.last.action == "getCachedContent" and server.last.cache == cache.name
    # The SDK adds the collection to a bare id.
    assert client.caches.get(name=cache.name.removeprefix("cachedContents/")).name == cache.name
    # Paging: pageSize / pageToken / nextPageToken.
    others = [make_cache(client, display_name=f"n{i}") for i in range(2)]
    pager = client.caches.list(config={"page_size": 2})
    assert len(pager.page) == 2
    assert [c.name for c in pager] == [cache.name] + [c.name for c in others]
    lists = [r for r in server.requests if r.action == "listCachedContents"]
    assert lists[0].query == {"pageSize": "2"} and lists[1].query["pageToken"]
    # Update: a new expiry from now (the SDK sends no updateMask; a raw one is honoured).
    server.advance(60)
    updated = client.caches.update(name=cache.name, config={"ttl": "7200s"})
    assert server.last.method == "PATCH" and server.last.body == {"ttl": "7200s"} and server.last.query == {}
    assert updated.update_time > cache.update_time
    assert (updated.expire_time - updated.update_time).total_seconds() == pytest.approx(7200, abs=0.01)
    when = datetime(2099, 1, 1, tzinfo=UTC)
    assert client.caches.update(name=cache.name, config={"expire_time": when}).expire_time == when
    status, _, body = raw_call(server, f"/v1beta/{cache.name}?updateMask=ttl", {"ttl": "60s", "expireTime": "x"},
                               method="PATCH")
    assert status == 200 and json.loads(body)["expireTime"] < "2099"
    status, _, body = raw_call(server, f"/v1beta/{cache.name}?updateMask=contents", {"contents": []}, method="PATCH")
    assert status == 400 and json.loads(body)["error"]["status"] == "INVALID_ARGUMENT"
    # Delete answers {}; afterwards the cache is gone: 403, never 404.
    status, _, body = raw_call(server, f"/v1beta/{others[0].name}", method="DELETE")
    assert (status, json.loads(body)) == (200, {})
    client.caches.delete(name=cache.name)
    for call in (lambda: client.caches.get(name=cache.name), lambda: client.caches.delete(name=cache.name),
                 lambda: client.caches.update(name=cache.name, config={"ttl": "10s"})):
        with pytest.raises(errors.ClientError) as info:
            call()
        assert (info.value.code, info.value.status) == (403, "PERMISSION_DENIED")
        assert info.value.message == "CachedContent not found (or permission denied)"
    assert [c.name for c in client.caches.list()] == [others[1].name]


def test_caches_expire_on_the_server_clock(server, client):
    cache = make_cache(client)  # no ttl: one hour
    assert (cache.expire_time - cache.create_time).total_seconds() == pytest.approx(3600, abs=0.01)
    server.advance(3599)
    assert client.models.generate_content(model=MODEL, contents="q", config={"cached_content": cache.name}).text
    server.advance(2)
    with pytest.raises(errors.ClientError) as info:
        client.models.generate_content(model=MODEL, contents="q", config={"cached_content": cache.name})
    assert (info.value.code, info.value.message) == (403, "CachedContent not found (or permission denied)")
    with pytest.raises(errors.ClientError):
        client.caches.get(name=cache.name)
    status, _, body = raw_call(server, "/v1beta/cachedContents", method="GET")
    assert (status, json.loads(body)) == (200, {})  # nothing alive: an empty object
    assert list(client.caches.list()) == []
    assert server.now() - datetime.now(UTC) > timedelta(seconds=3600)
    server.reset()
    assert abs((server.now() - datetime.now(UTC)).total_seconds()) < 1 and server.caches == {}


def test_cache_errors_have_the_real_status_and_wording(server, client):
    def fails(call) -> errors.APIError:
        with pytest.raises(errors.ClientError) as info:
            call()
        return info.value

    small = fails(lambda: make_cache(client, words=10))
    assert (small.code, small.status) == (400, "INVALID_ARGUMENT")
    assert small.message == "Cached content is too small. total_token_count=15, min_total_token_count=1024"
    pro = fails(lambda: make_cache(client, model=GEMINI3_PRO_LIKE))
    assert pro.message == "Cached content is too small. total_token_count=1105, min_total_token_count=4096"
    assert make_cache(client, words=4091, model=GEMINI3_PRO_LIKE).usage_metadata.total_token_count == 4096
    gemma = fails(lambda: make_cache(client, model="gemma-3-27b-it"))  # listed without createCachedContent
    assert (gemma.code, gemma.status) == (404, "NOT_FOUND")
    assert gemma.message == ("models/gemma-3-27b-it is not found for API version v1, or is not supported for "
                             "createCachedContent. Call ModelService.ListModels to see the list of available "
                             "models and their supported methods.")
    assert fails(lambda: make_cache(client, model="no-such-model")).code == 404
    both = fails(lambda: make_cache(client, ttl="60s", expire_time=datetime(2099, 1, 1, tzinfo=UTC)))
    assert both.code == 400
    assert fails(lambda: make_cache(client, ttl="soon")).code == 400
    assert fails(lambda: make_cache(client, ttl="-5s")).code == 400

    cache = make_cache(client)
    for config in ({"system_instruction": "Be brief."}, {"tools": [types.Tool(google_search=types.GoogleSearch())]},
                   {"tool_config": {"function_calling_config": {"mode": "ANY"}}}):
        conflict = fails(lambda config=config: client.models.generate_content(
            model=MODEL, contents="q", config={"cached_content": cache.name, **config}))
        assert (conflict.code, conflict.status) == (400, "INVALID_ARGUMENT")
        assert conflict.message == ("CachedContent can not be used with GenerateContent request setting "
                                    "system_instruction, tools or tool_config.\n\nProposed fix: move those values "
                                    "to CachedContent from GenerateContent request.")
    other = fails(lambda: client.models.generate_content(model="gemini-2.5-flash-lite", contents="q",
                                                         config={"cached_content": cache.name}))
    assert (other.code, other.message) == (400, "Model used by GenerateContent request "
                                                "(models/gemini-2.5-flash-lite) and CachedContent "
                                                "(models/gemini-2.5-flash) has to be the same.")
    unknown = fails(lambda: next(client.models.generate_content_stream(
        model=MODEL, contents="q", config={"cached_content": "cachedContents/nope"})))
    assert (unknown.code, unknown.status) == (403, "PERMISSION_DENIED")
    # A cache with tools, system instruction and tool config is fine on its own.
    declaration = types.FunctionDeclaration(name="lookup", description="Look up.")
    tooled = make_cache(client, tools=[types.Tool(function_declarations=[declaration])],
                        tool_config={"function_calling_config": {"mode": "ANY"}})
    assert server.last.body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    assert tooled.usage_metadata.total_token_count > cache.usage_metadata.total_token_count


def test_generate_with_a_cache_counts_it_in_the_prompt_and_as_cached(server, client):
    server.file_processing_polls = 0
    picture = image_part(100, 100)
    cache = make_cache(client, contents=[long_text(1100), picture])
    assert cache.usage_metadata.total_token_count == 1100 + 258 + 5
    server.queue(Reply(parts=[{"text": "thinking hard", "thought": True}, {"text": "It says handbook."}]))
    response = client.models.generate_content(model=MODEL, contents="What does it say?",
                                              config={"cached_content": cache.name})
    assert response.text == "It says handbook."
    assert server.last.body["cachedContent"] == cache.name
    usage = response.usage_metadata
    assert usage.cached_content_token_count == 1363
    assert usage.prompt_token_count == 1363 + 4  # includes the cached tokens, as the real one does
    assert {d.modality.value: d.token_count for d in usage.cache_tokens_details} == {"TEXT": 1105, "IMAGE": 258}
    assert {d.modality.value: d.token_count for d in usage.prompt_tokens_details} == {"TEXT": 1109, "IMAGE": 258}
    assert (usage.candidates_token_count, usage.thoughts_token_count) == (3, 2)
    assert usage.total_token_count == 1367 + 3 + 2
    # The same on every streamed chunk.
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="Again?",
                                                        config={"cached_content": cache.name}))
    assert {c.usage_metadata.cached_content_token_count for c in chunks} == {1363}
    assert "".join(c.text for c in chunks) == "Echo: Again?"  # the echo answers the request's own text
    # A responder sees the cached turns first (user_texts, all_texts, cached_texts, system_texts).
    seen: list[ReceivedRequest] = []
    server.responder = lambda request: seen.append(request) or Reply(text=" ".join(request.user_texts())[:20])
    answer = client.models.generate_content(model=MODEL, contents="Last?", config={"cached_content": cache.name})
    assert answer.text == "handbook handbook ha"
    request = seen[0]
    assert request.cached_texts() == [long_text(1100)] and request.user_texts()[-1] == "Last?"
    assert request.last_user_text() == "Last?" and request.system_texts() == ["You are a release engineer."]
    assert request.body["contents"] == [{"parts": [{"text": "Last?"}], "role": "user"}]  # the log keeps what was sent
    assert len(request.media()) == 1 and request.media(cached=False) == []
    # countTokens through the REST wrapper names the cache too.
    wrapped = {"generateContentRequest": {"model": f"models/{MODEL}", "cachedContent": cache.name,
                                          **prompt("What does it say?")}}
    assert count_raw(server, wrapped) == {
        "totalTokens": 1367, "cachedContentTokenCount": 1363,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 1109}, {"modality": "IMAGE", "tokenCount": 258}],
        "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 1105}, {"modality": "IMAGE", "tokenCount": 258}]}


def test_cache_min_tokens_knob_allows_small_caches(server, client):
    server.cache_min_tokens = 1
    cache = make_cache(client, words=3)
    assert cache.usage_metadata.total_token_count == 8
    server.reset()
    assert server.cache_min_tokens is None


# -- implicit caching ----------------------------------------------------------------


def chat_turns(client: genai.Client, model: str = MODEL, first: str | None = None) -> list[types.UsageMetadata]:
    """Three turns of a chat whose first message is long: each send repeats the history."""
    chat = client.chats.create(model=model, config={"system_instruction": "Answer briefly."})
    return [chat.send_message(text).usage_metadata for text in (first or long_text(1500), "second", "third")]


def test_implicit_caching_is_off_by_default(server, client):
    assert all(u.cached_content_token_count is None for u in chat_turns(client))


def test_implicit_caching_reports_a_repeated_prefix():
    with FakeGemini(implicit_cache=True) as server:
        client = make_client(server)
        first, second, third = chat_turns(client)
        assert first.cached_content_token_count is None
        # Turn 2 repeats the system instruction and the first message (2 + 1500 tokens).
        assert second.cached_content_token_count == 1502
        assert [(d.modality.value, d.token_count) for d in second.cache_tokens_details] == [("TEXT", 1502)]
        assert second.prompt_token_count == 1502 + 1501 + 1  # then the answer "Echo: ..." and "second"
        # Turn 3 repeats all of turn 2's prompt.
        assert third.cached_content_token_count == second.prompt_token_count
        # Another model, a short prefix, or an hour later: nothing cached.
        assert chat_turns(client, model="gemini-2.5-flash-lite")[0].cached_content_token_count is None
        assert chat_turns(client, first="short")[1].cached_content_token_count is None
        server.advance(3601)
        assert chat_turns(client)[0].cached_content_token_count is None
        # Pro needs 4096; Gemini 2.0 does not cache implicitly.
        assert chat_turns(client, model=GEMINI3_PRO_LIKE)[1].cached_content_token_count is None
        assert chat_turns(client, model="gemini-2.0-flash")[1].cached_content_token_count is None
        server.implicit_cache = False
        assert chat_turns(client)[1].cached_content_token_count is None
        server.reset()
        assert server.implicit_cache is True  # the constructor's choice is the default


# -- service tiers ----------------------------------------------------------------------


@pytest.mark.parametrize("asked, served", [(None, "standard"), ("flex", "flex"), ("PRIORITY", "priority"),
                                           ("standard", "standard"), ("unspecified", "standard")])
def test_service_tier_is_echoed_in_usage_and_header(server, client, asked, served):
    config = {"service_tier": asked} if asked else {}
    response = client.models.generate_content(model=MODEL, contents="q", config=config)
    assert server.last.body.get("serviceTier") == (asked.lower() if asked else None)  # the SDK lowers it
    assert response.sdk_http_response.headers["x-gemini-service-tier"] == served
    status, headers, body = raw_call(server, f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse",
                                     {**prompt("q"), **({"serviceTier": asked} if asked else {})})
    assert headers["X-Gemini-Service-Tier"] == served
    assert {json.loads(p)["usageMetadata"]["serviceTier"] for p in sse_payloads(body)} == {served}


def test_service_tier_enum_names_an_override_and_an_unknown_value(server, client):
    status, headers, body = raw_call(server, f"/v1beta/models/{MODEL}:generateContent",
                                     {**prompt("q"), "serviceTier": "SERVICE_TIER_FLEX"})
    assert json.loads(body)["usageMetadata"]["serviceTier"] == "flex"
    server.served_tier = "standard"  # a priority request downgraded
    response = client.models.generate_content(model=MODEL, contents="q", config={"service_tier": "priority"})
    assert response.sdk_http_response.headers["x-gemini-service-tier"] == "standard"
    with pytest.warns(UserWarning, match="turbo is not a valid ServiceTier"):
        config = types.GenerateContentConfig(service_tier="turbo")
    with pytest.raises(errors.ClientError) as info:
        client.models.generate_content(model=MODEL, contents="q", config=config)
    assert (info.value.code, info.value.status) == (400, "INVALID_ARGUMENT")
    assert "service_tier" in info.value.message and '"turbo"' in info.value.message
    violation = info.value.details["error"]["details"][0]
    assert violation["fieldViolations"][0]["field"] == "service_tier"


# -- embeddings -------------------------------------------------------------------------------------


def test_batch_embed_contents_gives_one_vector_per_text_the_same_for_the_same_text(client, server):
    from tests.fake_gemini.server import EMBEDDING_SIZE

    texts = [types.Content(parts=[types.Part(text=t)]) for t in ("red soup", "red soup", "blue train")]
    result = client.models.embed_content(model="gemini-embedding-001", contents=texts)
    values = [e.values for e in result.embeddings]
    assert len(values) == 3 and len(values[0]) == EMBEDDING_SIZE
    assert values[0] == values[1] != values[2]
    assert abs(sum(v * v for v in values[0]) - 1) < 1e-3  # full size: normalised
    short = client.models.embed_content(model="gemini-embedding-001", contents=texts[:1],
                                        config=types.EmbedContentConfig(output_dimensionality=8))
    assert len(short.embeddings[0].values) == 8
    assert abs(sum(v * v for v in short.embeddings[0].values) - 1) > 0.1  # shorter: the client's to normalise


def test_batch_embed_contents_refuses_more_than_100_and_generate_models(client, server):
    texts = [types.Content(parts=[types.Part(text=f"t{i}")]) for i in range(101)]
    with pytest.raises(errors.ClientError) as info:
        client.models.embed_content(model="gemini-embedding-001", contents=texts)
    assert info.value.code == 400 and "at most 100 requests" in info.value.message
    with pytest.raises(errors.ClientError) as info:
        client.models.embed_content(model="gemini-2.5-flash", contents=texts[:1])
    assert info.value.code == 404


def test_an_embeddings_job_answers_inline_once_done(client, server):
    import warnings

    server.batch_polls = 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        job = client.batches.create_embeddings(
            model="gemini-embedding-001",
            src={"inlined_requests": {"contents": [types.Content(parts=[types.Part(text="soup")])],
                                      "config": {"output_dimensionality": 4}}})
    assert server.last.action == "asyncBatchEmbedContent"
    done = client.batches.get(name=job.name)
    assert done.state.name == "JOB_STATE_SUCCEEDED"
    (item,) = done.dest.inlined_embed_content_responses
    assert len(item.response.embedding.values) == 4


# ---------------------------------------------------------------------------
# File Search: stores, documents, long-running operations, the fileSearch tool
# ---------------------------------------------------------------------------

HANDBOOK = ("Vacation policy: every employee gets 25 vacation days a year.\n\n"
            "The cafeteria opens at nine and closes at three.\n")


def text_pdf(pages: list[str], compress: bool = False) -> bytes:
    """A PDF whose pages show these texts with Tj (FlateDecode'd streams with `compress`)."""
    objects = [b"1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj"]
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(len(pages)))
    objects.append(f"2 0 obj << /Type /Pages /Kids [{kids}] /Count {len(pages)} >> endobj".encode())
    for i, text in enumerate(pages):
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        extra = ""
        if compress:
            import zlib

            stream, extra = zlib.compress(stream), " /Filter /FlateDecode"
        objects.append(f"{3 + 2 * i} 0 obj << /Type /Page /Parent 2 0 R /Contents {4 + 2 * i} 0 R >> endobj".encode())
        objects.append(f"{4 + 2 * i} 0 obj << /Length {len(stream)}{extra} >>\nstream\n".encode() + stream
                       + b"\nendstream\nendobj")
    return b"%PDF-1.4\n" + b"\n".join(objects) + b"\n%%EOF\n"


def upload_doc(client: genai.Client, store: str, path: Path, data: bytes, mime: str, **config: object):
    path.write_bytes(data)
    return client.file_search_stores.upload_to_file_search_store(
        file_search_store_name=store, file=path, config={"display_name": path.name, "mime_type": mime, **config})


def wait_done(client: genai.Client, op, polls: int = 10):
    for _ in range(polls):
        if op.done:
            return op
        op = client.operations.get(op)
    raise AssertionError(f"{op.name} never finished")


def file_search(*stores: str, **options: object) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(
        tools=[types.Tool(file_search=types.FileSearch(file_search_store_names=list(stores), **options))])


def test_file_search_stores_create_list_get_delete(server, client):
    store = client.file_search_stores.create(config={"display_name": "Handbook",
                                                     "embedding_model": "gemini-embedding-001"})
    other = client.file_search_stores.create()
    assert re.fullmatch(r"fileSearchStores/handbook-[a-z0-9]{12}", store.name)
    assert re.fullmatch(r"fileSearchStores/[a-z0-9]{12}-[a-z0-9]{12}", other.name)
    assert store.display_name == "Handbook" and store.embedding_model == "models/gemini-embedding-001"
    assert store.active_documents_count is None and store.size_bytes is None  # zero counts are omitted
    assert isinstance(store.create_time, datetime)
    assert [s.name for s in client.file_search_stores.list(config={"page_size": 1})] == [store.name, other.name]
    assert server.requests[-1].query["pageToken"]  # the second page was asked for
    assert client.file_search_stores.get(name=store.name).display_name == "Handbook"

    client.file_search_stores.delete(name=other.name, config={"force": True})
    assert server.last.action == "deleteFileSearchStore" and server.last.query == {"force": "True"}
    assert server.last.store == other.name
    with pytest.raises(errors.ClientError) as err:
        client.file_search_stores.get(name=other.name)
    assert err.value.code == 403 and err.value.status == "PERMISSION_DENIED"
    assert "may not exist" in err.value.message
    with pytest.raises(errors.ClientError) as err:
        client.file_search_stores.get(name="fileSearchStores/_invalid_name")
    assert err.value.status == "INVALID_ARGUMENT"
    assert [r.action for r in server.requests][:4] == ["createFileSearchStore", "createFileSearchStore",
                                                       "listFileSearchStores", "listFileSearchStores"]

    # Both API versions; Vertex paths are not File Search's.
    status, _, body = raw_call(server, "/v1beta/fileSearchStores", method="GET")
    assert status == 200 and [s["name"] for s in json.loads(body)["fileSearchStores"]] == [store.name]
    status, _, _ = raw_call(server, "/v1beta1/projects/p/locations/l/fileSearchStores", method="GET")
    assert status == 404
    server.reset()
    assert server.stores == {}
    status, _, body = raw_call(server, "/v1/fileSearchStores", method="GET")
    assert status == 200 and json.loads(body) == {}


def test_file_search_upload_text_and_pdf_polls_to_active_with_counts(server, client, tmp_path):
    server.store_polls = 2
    store = client.file_search_stores.create(config={"display_name": "Handbook"}).name
    op = upload_doc(client, store, tmp_path / "policy.txt", HANDBOOK.encode(), "text/plain",
                    custom_metadata=[{"key": "tag", "string_value": "hr"}],
                    chunking_config={"white_space_config": {"max_tokens_per_chunk": 200, "max_overlap_tokens": 20}})
    assert [r.action for r in server.requests[-2:]] == ["uploadToFileSearchStore", "uploadChunk"]
    start = server.requests[-2]
    assert start.path == f"/upload/v1/{store}:uploadToFileSearchStore" and start.upload_command == "start"
    assert start.body["chunkingConfig"] == {"white_space_config": {"max_tokens_per_chunk": 200,
                                                                    "max_overlap_tokens": 20}}
    assert server.last.api_key is None and server.last.upload_command == "upload, finalize"
    assert re.fullmatch(rf"{store}/upload/operations/[a-z0-9]+", op.name) and not op.done
    assert client.file_search_stores.get(name=store).pending_documents_count == 1

    op = client.operations.get(op)
    assert not op.done and server.last.action == "getOperation" and server.last.store == store
    op = client.operations.get(op)
    assert op.done and op.error is None and op.response.parent == store
    doc_name = op.response.document_name
    assert re.fullmatch(rf"{store}/documents/policytxt-[a-z0-9]{{12}}", doc_name)

    server.store_polls = 1
    pdf = text_pdf(["Welcome to the company", "Vacation days must be booked early"])
    pdf_op = wait_done(client, upload_doc(client, store, tmp_path / "rules.pdf", pdf, "application/pdf"))
    docs = list(client.file_search_stores.documents.list(parent=store))
    assert [d.name for d in docs] == [doc_name, pdf_op.response.document_name]
    assert [d.state for d in docs] == [types.DocumentState.STATE_ACTIVE] * 2
    assert [d.mime_type for d in docs] == ["text/plain", "application/pdf"]
    assert docs[0].size_bytes == len(HANDBOOK.encode()) and docs[0].custom_metadata[0].string_value == "hr"
    assert server.last.action == "listDocuments"
    got = client.file_search_stores.get(name=store)
    assert (got.active_documents_count, got.pending_documents_count) == (2, None)
    assert got.size_bytes == len(HANDBOOK.encode()) + len(pdf)
    status, _, body = raw_call(server, f"/v1beta/{store}", method="GET")
    assert json.loads(body)["activeDocumentsCount"] == "2"  # int64 as a string
    assert client.file_search_stores.documents.get(name=doc_name).display_name == "policy.txt"
    assert server.last.action == "getDocument" and server.last.document == doc_name


def test_file_search_store_polls_zero_finishes_in_the_upload_answer(server, client, tmp_path):
    server.store_polls = 0
    store = client.file_search_stores.create().name
    op = upload_doc(client, store, tmp_path / "a.md", b"# Title\n\nSome words here.", "text/markdown")
    assert op.done and op.response.document_name.startswith(f"{store}/documents/amd-")


def test_file_search_refuses_unsupported_types_oversize_files_and_missing_stores(server, client, tmp_path,
                                                                                 monkeypatch):
    store = client.file_search_stores.create(config={"display_name": "x"}).name
    for mime in ("image/png", "video/mp4", "audio/wav", "application/octet-stream"):
        with pytest.raises(errors.ClientError) as err:
            upload_doc(client, store, tmp_path / "f.bin", b"\x89PNG", mime)
        assert err.value.code == 400 and err.value.message == f"Unsupported MIME type: {mime}"
    for mime in ("application/json", "text/csv", "text/x-python"):
        wait_done(client, upload_doc(client, store, tmp_path / "ok.txt", b"{}", mime))

    big = tmp_path / "big.txt"
    with big.open("wb") as handle:  # sparse: refused on the declared size, before any byte is sent
        handle.truncate(100 * 1024 * 1024 + 1)
    sent = len(server.requests)
    with pytest.raises(errors.ClientError) as err:
        client.file_search_stores.upload_to_file_search_store(file_search_store_name=store, file=big,
                                                              config={"mime_type": "text/plain"})
    assert err.value.status == "INVALID_ARGUMENT"
    assert "104857601 bytes" in err.value.message and "104857600 bytes (100 MB)" in err.value.message
    assert [r.action for r in server.requests[sent:]] == ["uploadToFileSearchStore"]

    # The bytes are checked too: more than declared, over a (lowered) limit, at finalize.
    from tests.fake_gemini import server as fake_server

    monkeypatch.setattr(fake_server, "MAX_STORE_FILE_BYTES", 10)
    status, headers, _ = raw_call(server, f"/upload/v1beta/{store}:uploadToFileSearchStore", {"mimeType": "text/plain"},
                                  {"X-Goog-Upload-Protocol": "resumable", "X-Goog-Upload-Command": "start",
                                   "X-Goog-Upload-Header-Content-Length": "5"})
    assert status == 200 and headers["X-Goog-Upload-Status"] == "active"
    url = headers["X-Goog-Upload-URL"]
    assert url.startswith(f"{server.url}/upload/v1beta/{store}:uploadToFileSearchStore?upload_id=")
    request = urllib.request.Request(url, data=b"x" * 11, method="POST", headers={
        "X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": "0"})
    with pytest.raises(urllib.error.HTTPError) as http:
        urllib.request.urlopen(request, timeout=10)
    assert http.value.code == 400 and http.value.headers["X-Goog-Upload-Status"] == "final"
    assert "11 bytes" in json.loads(http.value.read())["error"]["message"]
    assert all(d["meta"]["mimeType"] != "text/plain" for d in server.documents.values())

    with pytest.raises(errors.ClientError) as err:
        upload_doc(client, "fileSearchStores/gone-123", tmp_path / "g.txt", b"hi", "text/plain")
    assert err.value.code == 403


def test_file_search_failed_operation_and_the_flag_clears(server, client, tmp_path):
    store = client.file_search_stores.create().name
    server.store_fail_next = True
    op = wait_done(client, upload_doc(client, store, tmp_path / "bad.txt", b"broken", "text/plain"))
    assert op.error == {"code": 3, "message": "Document processing failed."} and op.response is None
    assert server.store_fail_next is False
    ok = wait_done(client, upload_doc(client, store, tmp_path / "good.txt", b"fine words", "text/plain"))
    assert ok.error is None
    states = {d.display_name: d.state for d in client.file_search_stores.documents.list(parent=store)}
    assert states == {"bad.txt": types.DocumentState.STATE_FAILED, "good.txt": types.DocumentState.STATE_ACTIVE}
    got = client.file_search_stores.get(name=store)
    assert (got.failed_documents_count, got.active_documents_count, got.size_bytes) == (1, 1, len(b"fine words"))


def test_file_search_delete_documents_and_stores_need_force(server, client, tmp_path):
    store = client.file_search_stores.create().name
    doc = wait_done(client, upload_doc(client, store, tmp_path / "a.txt", b"alpha beta gamma", "text/plain"))
    name = doc.response.document_name
    with pytest.raises(errors.ClientError) as err:
        client.file_search_stores.documents.delete(name=name)
    assert err.value.status == "FAILED_PRECONDITION"
    with pytest.raises(errors.ClientError) as err:
        client.file_search_stores.delete(name=store)
    assert err.value.status == "FAILED_PRECONDITION" and "force" in err.value.message

    client.file_search_stores.documents.delete(name=name, config={"force": True})
    assert server.last.action == "deleteDocument" and server.last.query == {"force": "True"}
    assert client.file_search_stores.get(name=store).active_documents_count is None
    assert list(client.file_search_stores.documents.list(parent=store)) == []
    with pytest.raises(errors.ClientError) as err:
        client.file_search_stores.documents.get(name=name)
    assert err.value.code == 404 and "Documents does not exist" in err.value.message
    client.file_search_stores.delete(name=store)  # empty now: no force needed
    assert server.stores == {}


def test_file_search_import_file_from_the_files_api(server, client, tmp_path):
    server.file_processing_polls = 0
    path = tmp_path / "notes.txt"
    path.write_text("Quarterly revenue grew strongly.")
    uploaded = client.files.upload(file=path, config={"display_name": "notes"})
    store = client.file_search_stores.create().name
    op = client.file_search_stores.import_file(file_search_store_name=store, file_name=uploaded.name)
    assert server.last.action == "importFile" and server.last.body["fileName"] == uploaded.name
    assert re.fullmatch(rf"{store}/operations/[a-z0-9]+", op.name)
    op = wait_done(client, op)
    assert isinstance(op.response, types.ImportFileResponse) and op.response.parent == store
    doc = client.file_search_stores.documents.get(name=op.response.document_name)
    assert (doc.display_name, doc.mime_type, doc.size_bytes) == ("notes", "text/plain", path.stat().st_size)
    with pytest.raises(errors.ClientError) as err:
        client.file_search_stores.import_file(file_search_store_name=store, file_name="files/missing")
    assert err.value.code == 403


def test_generate_with_file_search_grounds_on_matching_passages(server, client, tmp_path):
    store = client.file_search_stores.create(config={"display_name": "Handbook"}).name
    wait_done(client, upload_doc(client, store, tmp_path / "policy.txt", HANDBOOK.encode(), "text/plain"))
    pdf = text_pdf(["Welcome to the company", "Vacation days must be booked early"])
    wait_done(client, upload_doc(client, store, tmp_path / "rules.pdf", pdf, "application/pdf"))

    server.queue(Reply(text="Café staff get 25 days."))
    response = client.models.generate_content(model=MODEL, contents="How many vacation days do I get?",
                                              config=file_search(store))
    assert server.last.body["tools"] == [{"fileSearch": {"file_search_store_names": [store]}}]
    assert response.text == "Café staff get 25 days."
    meta = response.candidates[0].grounding_metadata
    contexts = [chunk.retrieved_context for chunk in meta.grounding_chunks]
    assert [(c.title, c.page_number) for c in contexts] == [("policy.txt", None), ("rules.pdf", 2)]
    assert contexts[0].text == "Vacation policy: every employee gets 25 vacation days a year."
    assert contexts[1].text == "Vacation days must be booked early"
    assert {c.file_search_store for c in contexts} == {store} and contexts[0].uri is None
    support = meta.grounding_supports[0]
    assert support.grounding_chunk_indices == [0, 1] and support.segment.start_index is None
    assert support.segment.end_index == len("Café staff get 25 days.".encode()) == 24
    assert support.segment.text == "Café staff get 25 days."
    assert [c["title"] for c in server.last.retrieved] == ["policy.txt", "rules.pdf"]

    response = client.models.generate_content(model=MODEL, contents="vacation days",
                                              config=file_search(store, top_k=1))
    assert [c.retrieved_context.title for c in response.candidates[0].grounding_metadata.grounding_chunks] == [
        "policy.txt"]
    response = client.models.generate_content(model=MODEL, contents="When does our cafeteria open?",
                                              config=file_search(store))  # "the" would match 3 passages
    assert [c.retrieved_context.text for c in response.candidates[0].grounding_metadata.grounding_chunks] == [
        "The cafeteria opens at nine and closes at three."]
    response = client.models.generate_content(model=MODEL, contents="zzz qqq", config=file_search(store))
    assert response.candidates[0].grounding_metadata is None and server.last.retrieved == []


def test_file_search_grounding_streams_on_the_last_chunk_and_merges_with_reply_grounding(server, client, tmp_path):
    store = client.file_search_stores.create().name
    wait_done(client, upload_doc(client, store, tmp_path / "policy.txt", HANDBOOK.encode(), "text/plain"))
    server.queue(Reply(chunks=["You get ", "25 days."]))
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="vacation?", config=file_search(store)))
    assert len(chunks) == 2
    assert chunks[0].candidates[0].grounding_metadata.grounding_chunks is None  # {} until the last
    last = chunks[-1].candidates[0].grounding_metadata
    assert last.grounding_chunks[0].retrieved_context.title == "policy.txt"
    assert last.grounding_supports[0].segment.end_index == len("You get 25 days.")

    web = {"groundingChunks": [{"web": {"uri": "https://example.com", "title": "Example"}}],
           "groundingSupports": [{"segment": {"endIndex": 3, "text": "You"}, "groundingChunkIndices": [0]}]}
    server.queue(Reply(text="You get 25 days.", grounding=web))
    meta = client.models.generate_content(model=MODEL, contents="vacation?",
                                          config=file_search(store)).candidates[0].grounding_metadata
    assert meta.grounding_chunks[0].web.uri == "https://example.com"
    assert meta.grounding_chunks[1].retrieved_context.title == "policy.txt"
    assert [s.grounding_chunk_indices for s in meta.grounding_supports] == [[0], [1]]


def test_file_search_metadata_filter(server, client, tmp_path):
    store = client.file_search_stores.create().name
    for name, tag, year in (("hr.txt", "hr", 2020), ("it.txt", "it", 2024)):
        wait_done(client, upload_doc(client, store, tmp_path / name, b"Laptop and vacation rules", "text/plain",
                                     custom_metadata=[{"key": "tag", "string_value": tag},
                                                      {"key": "year", "numeric_value": year}]))

    def titles(metadata_filter: str) -> list[str]:
        response = client.models.generate_content(model=MODEL, contents="vacation rules",
                                                  config=file_search(store, metadata_filter=metadata_filter))
        meta = response.candidates[0].grounding_metadata
        return [c.retrieved_context.title for c in meta.grounding_chunks] if meta else []

    assert titles('tag="hr"') == ["hr.txt"]
    assert titles("tag=it") == ["it.txt"]
    assert titles("year > 2021") == ["it.txt"]
    assert titles("NOT tag = hr AND year >= 2020") == ["it.txt"]
    assert titles("tag = hr OR tag = it") == ["hr.txt", "it.txt"]
    assert titles("(tag = hr OR year < 2000) AND year = 2020") == ["hr.txt"]
    assert titles("colour = red") == []
    with pytest.raises(errors.ClientError) as err:
        titles("tag = = hr")
    assert err.value.status == "INVALID_ARGUMENT" and "metadata_filter" in err.value.message


def test_generate_with_a_missing_file_search_store_is_refused(server, client):
    store = client.file_search_stores.create().name
    with pytest.raises(errors.ClientError) as err:
        client.models.generate_content(model=MODEL, contents="q",
                                       config=file_search(store, "fileSearchStores/test-non-existent-rag-store"))
    assert err.value.code == 400 and err.value.status == "INVALID_ARGUMENT"
    assert err.value.message == "File search store fileSearchStores/test-non-existent-rag-store does not exist."
    assert server.pending == 0 and server.last.retrieved is None


def test_pdf_text_pages_reads_compressed_streams_tj_arrays_and_escapes():
    from tests.fake_gemini.server import document_passages, pdf_text_pages, split_passages

    assert pdf_text_pages(text_pdf(["First page", "Second page"], compress=True)) == ["First page", "Second page"]
    content = b"BT [(Hel) -20 (lo)] TJ (a \\(b\\) c\\101) Tj ET"
    raw = (b"%PDF-1.4\n1 0 obj << /Type /Pages /Kids [2 0 R] >> endobj\n2 0 obj << /Type /Page /Parent 1 0 R "
           b"/Contents 3 0 R >> endobj\n3 0 obj << /Length 9 >>\nstream\n" + content + b"\nendstream\nendobj\n")
    assert pdf_text_pages(raw) == ["Hello a (b) cA"]
    # No text shown: the bytes themselves, as page 1.
    assert document_passages("application/pdf", b"%PDF-1.4 just words")[0] == ("%PDF-1.4 just words", 1)
    words = " ".join(f"w{i}" for i in range(130))
    assert [len(p.split()) for p in split_passages(words)] == [60, 60, 10]
    chunking = {"white_space_config": {"max_tokens_per_chunk": 50, "max_overlap_tokens": 10}}
    windows = split_passages(words, chunking)
    assert [w.split()[0] for w in windows] == ["w0", "w40", "w80"] and windows[-1].split()[-1] == "w129"


# -- the echo in other modalities: speech, images, places ---------------------------------------------


def test_the_echo_speaks_as_raw_pcm_when_asked_for_audio(client, server):
    from tests.fake_gemini.server import PCM_RATE

    result = client.models.generate_content(
        model="gemini-2.5-flash-preview-tts", contents="Say hello there",
        config=types.GenerateContentConfig(response_modalities=["AUDIO"], speech_config="Kore"))
    (part,) = result.candidates[0].content.parts
    assert part.inline_data.mime_type == "audio/L16;codec=pcm;rate=24000"
    assert len(part.inline_data.data) == int(PCM_RATE * 0.1 * 4) * 2  # "Echo: Say hello there": 4 words


def test_the_echo_draws_an_image_of_the_asked_shape_for_image_models(client, server):
    from PIL import Image

    result = client.models.generate_content(
        model="gemini-2.5-flash-image", contents="A cat",
        config=types.GenerateContentConfig(image_config=types.ImageConfig(aspect_ratio="16:9", image_size="2K")))
    text, image = result.candidates[0].content.parts
    assert text.text == "Echo: A cat"
    assert Image.open(io.BytesIO(image.inline_data.data)).size == (2048, 1152)


def test_the_echo_cites_a_place_when_grounded_in_maps(client, server):
    result = client.models.generate_content(
        model="gemini-2.5-flash", contents="Coffee near me",
        config=types.GenerateContentConfig(tools=[types.Tool(google_maps=types.GoogleMaps())]))
    chunk = result.candidates[0].grounding_metadata.grounding_chunks[0]
    assert chunk.maps.title == "Echo Place" and chunk.maps.uri.startswith("https://maps.google.com/?cid=")

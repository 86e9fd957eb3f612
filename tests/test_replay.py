"""Record and replay at the HTTP seam: recordings are complete, scrubbed, and replay with nothing on the wire."""

from __future__ import annotations

import base64
import gc
import hashlib
import json
import time

import httpx2
import pytest

import gemini_magic
from gemini_magic.client import Connection
from gemini_magic.engine import Engine, Failed, Request, Retrying, TextDelta
from gemini_magic.transport.replay import normalize_request, request_key
from tests.conftest import TEST_KEY, ask, fails
from tests.fake_gemini import Error, Reply
from tests.fake_gemini.server import reply_events

MODEL = "gemini-2.5-flash"


# -- helpers ------------------------------------------------------------------------------


@pytest.fixture
def rec(tmp_path):
    return tmp_path / "answers.gemini.json"




def command(ip, line: str) -> None:
    ip.run_line_magic("gemini", line)


def reload_extension(ip) -> None:
    """A fresh extension (new connection, engine and caches), as in a new kernel."""
    ip.run_line_magic("unload_ext", "gemini_magic")
    ip.run_line_magic("load_ext", "gemini_magic")


def load(path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def entries(path) -> list[dict]:
    return load(path)["entries"]


def stream_texts(response: dict) -> list[str]:
    """The text of each recorded SSE event (one per chunk)."""
    return ["".join(p.get("text", "") for p in event["candidates"][0]["content"].get("parts", []))
            for event in response["stream"]]


@pytest.fixture
def engines(env):
    """Engines on their own connections, in a given record/replay mode."""
    made: list[Connection] = []

    def make(mode: str, path, sleep=time.sleep) -> Engine:
        connection = Connection()
        connection.set_recording(mode, str(path))
        made.append(connection)
        return Engine(connection, sleep=sleep)

    yield make
    for connection in made:
        connection.close()


def run(engine: Engine, contents, **kwargs):
    """Send one request; return the answer and its events."""
    answer = engine.send(Request(model=MODEL, contents=contents, **kwargs))
    events = list(answer)
    return answer, events


# -- record: one entry per request, normalized, with chunk boundaries ----------------------


def test_record_writes_normalized_requests_and_streamed_chunks(ip, server, rec):
    command(ip, f"record {rec}")
    streamed = Reply(chunks=["Hello ", "there ", "world"])
    server.queue(streamed, Reply(text="whole answer"))
    assert ask(ip, "Say hello") == "Hello there world"
    assert ask(ip, "Say it at once", "--no-stream") == "whole answer"

    data = load(rec)
    assert data["format"] == "gemini-magic recording" and data["version"] == 1
    first, second = data["entries"]
    assert len(data["entries"]) == len(server.requests) == 2

    # The normalized request: no version prefix, no host, no headers.
    assert first["request"] == {
        "method": "POST",
        "path": f"models/{MODEL}:streamGenerateContent",
        "query": {"alt": "sse"},
        "body": {"contents": [{"parts": [{"text": "Say hello"}], "role": "user"}]},
    }
    assert second["request"]["path"] == f"models/{MODEL}:generateContent"
    assert "query" not in second["request"]
    assert second["request"]["body"]["contents"][0]["parts"] == [{"text": "Say it at once"}]
    assert server.requests[0].path == f"/v1/models/{MODEL}:streamGenerateContent"  # the wire had the prefix
    for entry in data["entries"]:
        assert set(entry) == {"key", "request", "responses"}
        assert entry["key"] == request_key(entry["request"])

    # The streamed answer keeps its chunk boundaries: exactly the events the server sent.
    [response] = first["responses"]
    assert response["status"] == 200
    assert response["stream"] == reply_events(streamed, server.requests[0], "resp-1")
    assert stream_texts(response) == ["Hello ", "there ", "world"]
    [whole] = second["responses"]
    assert whole["status"] == 200 and "stream" not in whole
    assert whole["body"]["candidates"][0]["content"]["parts"] == [{"text": "whole answer"}]


def test_recording_file_is_stable_with_sorted_keys(ip, server, rec, tmp_path):
    def session(path):
        server.reset()
        command(ip, f"record {path}")
        server.queue(Reply(chunks=["b ", "a"]), Reply(text="z y x"))
        ask(ip, "first")
        ask(ip, "second", "--no-stream -t 0.5")
        return path.read_text(encoding="utf-8")

    text = session(rec)
    assert text == json.dumps(json.loads(text), indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    # The same session recorded again gives the same bytes (nothing per-run or per-machine).
    assert session(tmp_path / "again.json") == text
    # record starts the file afresh.
    command(ip, f"record {rec}")
    server.queue(Reply(text="only"))
    ask(ip, "third")
    assert [e["request"]["body"]["contents"][0]["parts"][0]["text"] for e in entries(rec)] == ["third"]


# -- replay: the same answers, nothing on the wire, no key needed ---------------------------


def test_replay_answers_identically_with_no_key_and_no_requests(ip, server, rec, env, capsys):
    command(ip, f"record {rec}")
    server.queue(Reply(chunks=["Recorded ", "answer ", "one"]), Reply(text="Recorded two"))
    first = ask(ip, "Question one")
    second = ask(ip, "Question two", "--no-stream")
    recorded_output = capsys.readouterr().out

    server.reset()  # a live request would now be answered "Echo: ..."
    env.delenv("GEMINI_API_KEY")
    env.delenv("GOOGLE_API_KEY", raising=False)
    reload_extension(ip)
    command(ip, f"replay {rec}")
    assert ask(ip, "Question one") == first == "Recorded answer one"
    assert ask(ip, "Question two", "--no-stream") == second == "Recorded two"
    assert capsys.readouterr().out == recorded_output
    assert server.requests == []


def test_replay_keeps_chunk_boundaries(engines, server, rec):
    server.queue(Reply(chunks=["al", "pha ", "beta"]))
    _, live_events = run(engines("record", rec), "chunks")
    server.reset()
    answer, events = run(engines("replay", rec), "chunks")
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert deltas == [e.text for e in live_events if isinstance(e, TextDelta)] == ["al", "pha ", "beta"]
    assert answer.finish_reason == "STOP" and answer.usage["output_tokens"] == 2
    assert server.requests == []


def test_replay_is_independent_of_order_and_repeats(ip, server, rec):
    command(ip, f"record {rec}")
    server.queue(Reply(text="Answer A"), Reply(text="Answer B"))
    ask(ip, "Prompt A")
    ask(ip, "Prompt B")
    server.reset()
    reload_extension(ip)
    command(ip, f"replay {rec}")
    assert ask(ip, "Prompt B") == "Answer B"
    assert ask(ip, "Prompt A") == "Answer A"
    # Re-running a cell replays the same answer again.
    assert [ask(ip, "Prompt A") for _ in range(3)] == ["Answer A"] * 3
    assert server.requests == []


def test_replay_miss_names_the_prompt_and_how_to_record(ip, server, rec, capsys):
    command(ip, f"record {rec}")
    server.queue(Reply(text="known"))
    ask(ip, "A known prompt")
    server.reset()
    command(ip, f"replay {rec}")
    failure = fails(ip, "An unrecorded   question\nabout lists")
    error = failure.error
    assert error.kind == "not-recorded"
    assert "'An unrecorded question about lists'" in error.message
    assert str(rec) in error.message
    assert f"%gemini replay-or-record {rec}" in error.hint and "GEMINI_MAGIC_MODE=replay-or-record" in error.hint
    assert server.requests == []
    capsys.readouterr()
    command(ip, "recording")
    status = capsys.readouterr().out
    assert status.startswith(f"replay: {rec}") and "0 replayed, 1 missed" in status


def test_replay_or_record_replays_recorded_and_records_missing(ip, server, rec):
    command(ip, f"record {rec}")
    server.queue(Reply(text="Recorded A"))
    ask(ip, "Prompt A")
    server.reset()
    reload_extension(ip)
    command(ip, f"replay-or-record {rec}")
    assert ask(ip, "Prompt A") == "Recorded A"
    assert server.requests == []
    server.queue(Reply(chunks=["Live ", "B"]))
    assert ask(ip, "Prompt B") == "Live B"
    assert len(server.requests) == 1
    recorded = entries(rec)
    assert [e["request"]["body"]["contents"][0]["parts"][0]["text"] for e in recorded] == ["Prompt A", "Prompt B"]
    assert stream_texts(recorded[1]["responses"][0]) == ["Live ", "B"]
    # What replay-or-record recorded now replays.
    server.reset()
    reload_extension(ip)
    command(ip, f"replay {rec}")
    assert ask(ip, "Prompt B") == "Live B"
    assert server.requests == []


def test_replay_or_record_without_a_key_cannot_record(ip, server, rec, env):
    env.delenv("GEMINI_API_KEY")
    command(ip, f"replay-or-record {rec}")
    failure = fails(ip, "Nothing recorded for this")
    assert failure.error.kind == "not-recorded"
    assert "'Nothing recorded for this'" in failure.error.message
    assert "no API key" in failure.error.message
    assert server.requests == []


def test_the_old_name_cache_still_means_replay_or_record_and_says_so(ip, server, rec, env, capsys):
    command(ip, f"record {rec}")
    server.queue(Reply(text="Recorded A"))
    ask(ip, "Prompt A")
    server.reset()
    reload_extension(ip)
    capsys.readouterr()
    command(ip, f"cache {rec}")
    told = capsys.readouterr()
    assert "replay-or-record" in told.out + told.err and "%gemini caches" in told.out + told.err
    assert ask(ip, "Prompt A") == "Recorded A"
    server.queue(Reply(text="Live B"))
    assert ask(ip, "Prompt B") == "Live B"  # recorded, as replay-or-record does
    assert len(server.requests) == 1
    # ... and from the environment, as CI set it before the rename.
    reload_extension(ip)
    env.setenv("GEMINI_MAGIC_MODE", "cache")
    command(ip, f"record {rec}")
    capsys.readouterr()
    command(ip, "recording")
    assert capsys.readouterr().out.startswith(f"replay-or-record: {rec}")


def test_live_turns_recording_off(ip, server, rec, capsys):
    command(ip, f"record {rec}")
    server.queue(Reply(text="Recorded A"))
    ask(ip, "Prompt A")
    before = rec.read_bytes()
    command(ip, f"replay-or-record {rec}")
    command(ip, "live")
    server.reset()
    server.queue(Reply(text="Live A"), Reply(text="Live C"))
    assert ask(ip, "Prompt A") == "Live A"  # not the recording
    assert ask(ip, "Prompt C") == "Live C"
    assert len(server.requests) == 2
    assert rec.read_bytes() == before  # nothing recorded
    capsys.readouterr()
    command(ip, "recording")
    assert capsys.readouterr().out.startswith("live:")


# -- the mode from the environment (CI, nbval) --------------------------------------------


def test_environment_mode_overrides_the_notebook(ip, server, rec, env, tmp_path, capsys):
    command(ip, f"record {rec}")
    server.queue(Reply(text="Recorded A"))
    ask(ip, "Prompt A")
    server.reset()
    reload_extension(ip)
    env.setenv("GEMINI_MAGIC_MODE", "replay")
    command(ip, f"replay-or-record {rec}")  # the notebook says replay-or-record; the environment says replay
    assert ask(ip, "Prompt A") == "Recorded A"
    failure = fails(ip, "Prompt B")  # replay-or-record would have recorded it
    assert failure.error.kind == "not-recorded"
    assert server.requests == []
    assert [e["request"]["body"]["contents"][0]["parts"][0]["text"] for e in entries(rec)] == ["Prompt A"]
    capsys.readouterr()
    command(ip, "recording")
    assert capsys.readouterr().out.startswith(f"replay: {rec}")

    # GEMINI_MAGIC_RECORDING overrides the notebook's path too.
    env.setenv("GEMINI_MAGIC_RECORDING", str(rec))
    command(ip, f"replay-or-record {tmp_path / 'elsewhere.json'}")
    assert ask(ip, "Prompt A") == "Recorded A"
    assert not (tmp_path / "elsewhere.json").exists()
    assert server.requests == []


def test_invalid_environment_mode_is_refused(ip, rec, env):
    from IPython.core.error import UsageError

    env.setenv("GEMINI_MAGIC_MODE", "replya")
    with pytest.raises(UsageError, match="GEMINI_MAGIC_MODE"):
        command(ip, f"replay-or-record {rec}")


def test_environment_mode_applies_at_load_ext(ip, server, rec, env):
    ip.run_line_magic("unload_ext", "gemini_magic")
    env.setenv("GEMINI_MAGIC_MODE", "record")
    env.setenv("GEMINI_MAGIC_RECORDING", str(rec))
    ip.run_line_magic("load_ext", "gemini_magic")
    server.queue(Reply(text="Recorded at load"))
    assert ask(ip, "Prompt L") == "Recorded at load"
    assert len(entries(rec)) == 1

    server.reset()
    ip.run_line_magic("unload_ext", "gemini_magic")
    env.setenv("GEMINI_MAGIC_MODE", "replay")
    env.delenv("GEMINI_API_KEY")
    ip.run_line_magic("load_ext", "gemini_magic")
    assert ask(ip, "Prompt L") == "Recorded at load"
    assert server.requests == []


# -- errors, retries, model lists ---------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "options", "status"),
    [
        (Error.not_found(model="gemini-2.5-flsh"), "-m gemini-2.5-flsh", 404),
        (Error(400, "INVALID_ARGUMENT", "Request contains an invalid argument."), "", 400),
    ],
)
def test_recorded_error_replays_as_the_same_error(ip, server, rec, answer, options, status):
    command(ip, f"record {rec}")
    server.queue(answer)
    recorded = fails(ip, "Trigger an error", options).error
    statuses = [e["responses"][0]["status"] for e in entries(rec)]
    assert status in statuses
    server.reset()
    reload_extension(ip)
    command(ip, f"replay {rec}")
    replayed = fails(ip, "Trigger an error", options).error
    assert type(replayed) is type(recorded)
    assert (replayed.message, replayed.hint) == (recorded.message, recorded.hint)
    assert replayed.kind != "not-recorded"
    assert server.requests == []


def test_not_found_hint_uses_the_recorded_model_list(ip, server, rec):
    command(ip, f"record {rec}")
    server.queue(Error.not_found(model="gemini-2.5-flsh"))
    recorded = fails(ip, "typo model", "-m gemini-2.5-flsh").error
    assert "gemini-2.5-flash" in recorded.hint
    server.reset()
    server.models = []  # a live list would now suggest nothing
    reload_extension(ip)
    command(ip, f"replay {rec}")
    assert fails(ip, "typo model", "-m gemini-2.5-flsh").error.hint == recorded.hint
    assert server.requests == []


def test_rate_limit_then_success_replays_in_order_without_waiting(engines, server, rec):
    slept: list[float] = []
    server.queue(Error.quota(retry_delay="5s"), Reply(chunks=["after ", "the wait"]))
    answer, events = run(engines("record", rec, sleep=slept.append), "busy")
    assert answer.error is None and answer.text == "after the wait"
    assert slept == [5.0]  # live, the server's delay is honoured
    [entry] = entries(rec)
    assert [r["status"] for r in entry["responses"]] == [429, 200]
    assert entry["responses"][0]["body"]["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert stream_texts(entry["responses"][1]) == ["after ", "the wait"]

    server.reset()
    engine = engines("replay", rec)  # real time.sleep
    started = time.monotonic()
    answer, events = run(engine, "busy")
    elapsed = time.monotonic() - started
    retries = [e for e in events if isinstance(e, Retrying)]
    assert [(r.delay, r.attempt, r.error.kind) for r in retries] == [(5.0, 2, "quota")]
    assert answer.error is None and answer.text == "after the wait"
    assert elapsed < 2.0, f"replay waited {elapsed:.1f} s for a recorded retry delay"
    # Running it again replays the last answer, with no retry.
    answer, events = run(engine, "busy")
    assert answer.text == "after the wait" and not any(isinstance(e, Retrying) for e in events)
    assert server.requests == []


def test_models_list_is_recorded_and_replayed(ip, server, rec, env, capsys):
    server.models = [{
        "name": "models/gemini-recorded-only", "displayName": "Recorded Only", "inputTokenLimit": 1234,
        "supportedGenerationMethods": ["generateContent"],
    }]
    command(ip, f"record {rec}")
    capsys.readouterr()
    command(ip, "models")
    listed = capsys.readouterr().out
    assert "gemini-recorded-only" in listed and "1,234" in listed
    [entry] = entries(rec)
    assert entry["request"]["method"] == "GET" and entry["request"]["path"] == "models"

    server.reset()  # the live list is now the default catalogue
    env.delenv("GEMINI_API_KEY")
    reload_extension(ip)
    command(ip, f"replay {rec}")
    capsys.readouterr()
    command(ip, "models")
    assert capsys.readouterr().out == listed
    assert server.requests == []


# -- secrets and images never reach the file ------------------------------------------------


def _key_forms(key: str) -> list[bytes]:
    raw = key.encode()
    forms = [raw, raw.lower()]
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        encoded = encode(raw)
        forms += [encoded, encoded.rstrip(b"=")]
    return forms


def test_api_key_is_never_recorded(ip, server, rec):
    command(ip, f"record {rec}")
    server.queue(Reply(chunks=["one ", "two"]), Error(400, "INVALID_ARGUMENT", "Bad request."), Reply(text="x"))
    ask(ip, "stream")
    fails(ip, "error")
    ask(ip, "whole", "--no-stream")
    command(ip, "models")
    assert all(r.api_key == TEST_KEY for r in server.requests)  # the key did travel
    data = rec.read_bytes()
    assert len(entries(rec)) == 4
    for form in _key_forms(TEST_KEY):
        assert form not in data, form
    assert b"x-goog-api-key" not in data.lower()
    # Only response headers the SDK reads are kept: the content type, never a request's.
    for entry in entries(rec):
        for response in entry["responses"]:
            assert set(response.get("headers", {})) <= {"content-type"}, response


def test_key_echoed_by_the_server_is_scrubbed(ip, server, rec):
    command(ip, f"record {rec}")
    server.queue(Reply(text=f"Your key is {TEST_KEY}."), Error(400, "INVALID_ARGUMENT", f"Key {TEST_KEY} refused"))
    ask(ip, "echo my key")
    fails(ip, "echo it in an error")
    data = rec.read_bytes()
    assert TEST_KEY.encode() not in data
    assert len(entries(rec)) == 2


def _png(seed: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + bytes((seed + i * 7) % 256 for i in range(600))


def test_inline_image_is_stored_as_a_hash_and_matched_by_content(engines, server, rec):
    from google.genai import types

    image = _png(1)
    server.queue(Reply(text="A picture of bytes."))
    answer, _ = run(engines("record", rec), [types.Part.from_bytes(data=image, mime_type="image/png"), "Describe"])
    assert answer.text == "A picture of bytes."
    assert server.last.body["contents"][0]["parts"][0]["inlineData"]["data"]  # the bytes went out

    data = rec.read_bytes()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        assert encode(image)[:40] not in data
    [entry] = entries(rec)
    parts = entry["request"]["body"]["contents"][0]["parts"]
    assert parts[0] == {"inlineData": {"data": {"sha256": hashlib.sha256(image).hexdigest(), "bytes": len(image)},
                                       "mimeType": "image/png"}}
    assert parts[1] == {"text": "Describe"}

    server.reset()
    engine = engines("replay", rec)
    same, _ = run(engine, [types.Part.from_bytes(data=bytes(image), mime_type="image/png"), "Describe"])
    assert same.error is None and same.text == "A picture of bytes."
    other, events = run(engine, [types.Part.from_bytes(data=_png(2), mime_type="image/png"), "Describe"])
    assert other.error is not None and other.error.kind == "not-recorded"
    assert isinstance(events[-1], Failed)
    assert server.requests == []


# -- request normalization ------------------------------------------------------------------


def _request(body, *, version="v1beta", host="generativelanguage.googleapis.com", key="k-one", query=""):
    url = f"https://{host}/{version}/models/{MODEL}:generateContent{query}"
    return httpx2.Request("POST", url, headers={"x-goog-api-key": key, "x-goog-api-client": "genai/1"},
                          content=json.dumps(body).encode())


def test_snake_and_camel_case_normalize_to_the_same_key():
    image = _png(3)
    snake = {
        "contents": [{"role": "user", "parts": [
            {"inline_data": {"mime_type": "image/png", "data": base64.urlsafe_b64encode(image).decode()}},
            {"text": "hi"}]}],
        "generation_config": {"max_output_tokens": 5, "thinking_config": {"include_thoughts": True}},
        "system_instruction": {"parts": [{"text": "be brief"}]},
    }
    camel = {
        "contents": [{"role": "user", "parts": [
            {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(image).decode()}},
            {"text": "hi"}]}],
        "generationConfig": {"maxOutputTokens": 5, "thinkingConfig": {"includeThoughts": True}},
        "systemInstruction": {"parts": [{"text": "be brief"}]},
    }
    a = normalize_request(_request(snake))
    b = normalize_request(_request(camel, version="v1", host="127.0.0.1:8080", key="k-two", query="?key=zzz"))
    assert a == b
    assert request_key(a) == request_key(b)
    assert a == {
        "method": "POST",
        "path": f"models/{MODEL}:generateContent",
        "body": {
            "contents": [{"role": "user", "parts": [
                {"inlineData": {"mimeType": "image/png",
                                "data": {"sha256": hashlib.sha256(image).hexdigest(), "bytes": len(image)}}},
                {"text": "hi"}]}],
            "generationConfig": {"maxOutputTokens": 5, "thinkingConfig": {"includeThoughts": True}},
            "systemInstruction": {"parts": [{"text": "be brief"}]},
        },
    }


@pytest.mark.parametrize(
    "change",
    [
        lambda body: body["contents"][0]["parts"][0].update(text="hello"),
        lambda body: body.update(generationConfig={"temperature": 0.5}),
        lambda body: body["contents"][0].update(role="model"),
    ],
)
def test_different_requests_have_different_keys(change):
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    changed = json.loads(json.dumps(body))
    change(changed)
    assert request_key(normalize_request(_request(body))) != request_key(normalize_request(_request(changed)))


def test_query_and_method_are_part_of_the_key():
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    plain = normalize_request(_request(body))
    sse = normalize_request(_request(body, query="?alt=sse"))
    assert sse["query"] == {"alt": "sse"} and "query" not in plain
    assert request_key(plain) != request_key(sse)
    listing = normalize_request(httpx2.Request("GET", "https://h/v1/models?pageSize=100&key=secret"))
    assert listing == {"method": "GET", "path": "models", "query": {"pageSize": "100"}, "body": None}


# -- an interrupted stream is not recorded --------------------------------------------------


def test_interrupted_stream_is_not_recorded(engines, server, rec):
    engine = engines("record", rec)
    server.queue(Reply(text="complete"))
    run(engine, "Prompt A")
    assert len(entries(rec)) == 1

    server.queue(Reply(chunks=["partial ", "never ", "seen"], delay=0.3))
    answer = engine.send(Request(model=MODEL, contents="Prompt B"))
    it = iter(answer)
    assert next(it) == TextDelta("partial ")
    answer.interrupt()
    del it
    gc.collect()
    recorded = entries(rec)
    assert [e["request"]["body"]["contents"][0]["parts"][0]["text"] for e in recorded] == ["Prompt A"]
    assert answer.interrupted and answer.text == "partial "

    # Replay cannot pass off the partial answer as a complete one.
    server.reset()
    replayed, _ = run(engines("replay", rec), "Prompt B")
    assert replayed.error is not None and replayed.error.kind == "not-recorded"
    assert server.requests == []


# -- recordings survive an SDK upgrade -------------------------------------------------------------


class _NewerSdk(httpx2.BaseTransport):
    """What a later google-genai might do: add fields to every request body."""

    def __init__(self, inner):
        self.inner = inner

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.content and request.headers.get("content-type", "").startswith("application/json"):
            body = json.loads(request.content)
            body["sdkTelemetry"] = {"client": "google-genai/9.9.9"}
            body.setdefault("generationConfig", {})["mediaResolution"] = "MEDIA_RESOLUTION_UNSPECIFIED"
            headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
            request = httpx2.Request(request.method, request.url, headers=headers,
                                     content=json.dumps(body).encode(), extensions=request.extensions)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def _newer_sdk(connection: Connection) -> None:
    """The connection's SDK client, rebuilt on an HTTP client that adds the fields."""
    connection.close()
    connection._http = httpx2.Client(transport=_NewerSdk(connection.transport))


def test_replay_survives_fields_a_newer_sdk_adds(ip, server, rec, env, capsys):
    command(ip, f"record {rec}")
    server.queue(Reply(chunks=["Paris ", "it is."]), Reply(text="Lima."))
    assert ask(ip, "Capital of France?", "-t 0.2") == "Paris it is."
    assert ask(ip, "Capital of Peru?", "--no-stream") == "Lima."
    reload_extension(ip)
    env.delenv("GEMINI_API_KEY")
    command(ip, f"replay {rec}")
    _newer_sdk(gemini_magic._magics.connection)
    server.reset()
    assert ask(ip, "Capital of France?", "-t 0.2") == "Paris it is."
    assert ask(ip, "Capital of Peru?", "--no-stream") == "Lima."
    assert server.requests == []
    capsys.readouterr()
    command(ip, "recording")
    status = capsys.readouterr().out
    assert "2 replayed from recorded requests that this version of google-genai adds fields to" in status
    assert "generationConfig.mediaResolution" in status and "sdkTelemetry" in status
    # A request that really changed (another temperature) still misses, naming the difference.
    failure = fails(ip, "Capital of France?", "-t 0.9")
    assert failure.error.kind == "not-recorded"
    assert "differs in generationConfig.temperature (0.2 recorded, 0.9 now)" in failure.error.hint


def test_cache_mode_with_a_key_records_afresh_instead_of_near_matching(ip, server, rec):
    command(ip, f"record {rec}")
    ask(ip, "Question")
    command(ip, f"replay-or-record {rec}")
    _newer_sdk(gemini_magic._magics.connection)
    server.queue(Reply(text="A fresh answer for the new request."))
    assert ask(ip, "Question") == "A fresh answer for the new request."
    assert len(entries(rec)) == 2


def test_every_tutorial_recording_replays_with_a_newer_sdks_fields():
    """The shipped recordings, request by request, with fields injected (requests whose
    image bytes the recording keeps only as a hash cannot be rebuilt, and are skipped)."""
    from pathlib import Path

    from gemini_magic.transport.replay import RecordingTransport

    class Unreachable(httpx2.BaseTransport):
        def handle_request(self, request):
            raise AssertionError(f"went to the network: {request.url}")

    checked = 0
    for path in sorted(Path(__file__).resolve().parent.parent.glob("notebooks/*.gemini.json")):
        replay = RecordingTransport(Unreachable(), "replay", path)
        newer = _NewerSdk(replay)
        for entry in load(path)["entries"]:
            request = entry["request"]
            body = request.get("body")
            if request["method"] != "POST" or not isinstance(body, dict) or "contents" not in body:
                continue
            if "sha256" in json.dumps(body):
                continue
            url = f"http://gemini.test/v1/{request['path']}"
            if request.get("query"):
                url += "?" + "&".join(f"{k}={v}" for k, v in request["query"].items())
            live = httpx2.Request("POST", url, content=json.dumps(body).encode(),
                                  headers={"content-type": "application/json"})
            response = newer.handle_request(live)
            assert response.status_code == entry["responses"][0]["status"], (path.name, request["path"])
            checked += 1
        assert replay.misses == 0
    assert checked >= 20


def test_an_image_url_is_recorded_and_replayed_without_the_network(ip, server, rec, site, env):
    from tests.test_media import encoded, pattern_image

    png = encoded(pattern_image((24, 24)), "PNG")
    url = site.serve("/chart.png", "image/png", png)
    command(ip, f"record {rec}")
    assert ask(ip, "Describe it", f"--image {url}") == "Echo: Describe it"
    fetched = [e for e in entries(rec) if e["request"].get("url") == url]
    assert len(fetched) == 1 and base64.b64decode(fetched[0]["responses"][0]["base64"]) == png
    site.serve("/chart.png", "image/png", b"changed since")  # a changed remote file...
    reload_extension(ip)
    env.delenv("GEMINI_API_KEY")
    command(ip, f"replay {rec}")
    server.reset()
    assert ask(ip, "Describe it", f"--image {url}") == "Echo: Describe it"  # ...does not make replay miss
    assert server.requests == []

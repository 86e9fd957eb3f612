"""Batch API jobs (gemini_magic.batch_api) through the real SDK and the fake server.

Every job here is created, polled and collected over real HTTP: the fake server
speaks the Batch API as SDK 3.6.1 calls it (batchGenerateContent, batches/{id},
:cancel, the Files API upload and download), and answers each item with its normal
queue / responder / echo, so answers are scripted per prompt.
"""

from __future__ import annotations

import json
import re

import pytest
from google import genai
from google.genai import types
from pydantic import BaseModel

from gemini_magic.batches import ItemError, wire
from gemini_magic.batches import api as batch_api
from gemini_magic.batches.api import BatchJobError, Job, JobNotDone, ResultsUnavailable, UnknownJob
from gemini_magic.client import Connection
from gemini_magic.engine import Engine, Request
from gemini_magic.errors import GeminiError
from gemini_magic.magics import CellFailed
from gemini_magic.schema import Schema
from tests.conftest import TEST_KEY
from tests.fake_gemini import Blocked, Error, Reply

MODEL = "gemini-2.5-flash"


def user(text: str) -> types.Content:
    return types.Content(role="user", parts=[types.Part(text=text)])


def make_requests(prompts, model: str = MODEL, schema=None, **config) -> list[Request]:
    return [Request(model=model, contents=user(p), config=dict(config), stream=False, schema=schema)
            for p in prompts]


def by_prompt(answers: dict):
    """A responder answering by the prompt's text (the echo for any other)."""
    return lambda request: answers.get(request.last_user_text())


def gets(server) -> int:
    return sum(r.action == "getBatch" for r in server.requests)


@pytest.fixture
def connection(env):
    conn = Connection()
    yield conn
    conn.close()


def submit_and_wait(requests, connection, **kwargs) -> Job:
    job = batch_api.submit(requests, connection, model=MODEL, **kwargs)
    return job.wait(poll=0, progress=lambda job: None)


# -- what is sent --------------------------------------------------------------------------


def test_a_file_job_uploads_jsonl_keyed_requests_as_the_api_documents(server, connection, capsys):
    requests = make_requests(["first", "second", "third"], temperature=0.2, max_output_tokens=64,
                             stop_sequences=["END"], system_instruction="Answer in French.",
                             thinking_config={"thinking_budget": 0})
    job = batch_api.submit(requests, connection, model=MODEL, display_name="nightly", inline_limit=0)

    starts = [r for r in server.requests if r.action == "uploadStart"]
    assert len(starts) == 1
    # The Batch API documentation uploads its input with the MIME type "jsonl".
    assert starts[0].headers["x-goog-upload-header-content-type"] == "jsonl"
    (uploaded,) = [name for name, entry in server.files.items() if entry["meta"].get("source") == "UPLOADED"]
    lines = [json.loads(line) for line in server.files[uploaded]["data"].decode().splitlines()]
    assert [line["key"] for line in lines] == ["item-0", "item-1", "item-2"]
    assert [line["request"]["contents"] for line in lines] == [
        [{"parts": [{"text": text}], "role": "user"}] for text in ("first", "second", "third")
    ]
    request = lines[1]["request"]
    assert request["systemInstruction"] == {"parts": [{"text": "Answer in French."}], "role": "user"}
    config = request["generationConfig"]
    assert config["temperature"] == 0.2 and config["maxOutputTokens"] == 64
    assert config["stopSequences"] == ["END"]
    assert config["thinkingConfig"] == {"thinking_budget": 0}
    assert set(request) == {"contents", "systemInstruction", "generationConfig"}

    create = next(r for r in server.requests if r.action == "batchGenerateContent")
    assert create.method == "POST" and create.path == f"/v1/models/{MODEL}:batchGenerateContent"
    # The display name ends with the number of prompts: a later kernel aligns to it.
    assert create.body == {"batch": {"inputConfig": {"fileName": uploaded}, "displayName": "nightly (3 prompts)"}}
    assert server.files[uploaded]["meta"]["displayName"] == "nightly requests"
    assert job.id == "batches/job00000001" and job.state == "JOB_STATE_PENDING"
    assert job.inline is False and job.count == 3
    out = capsys.readouterr().out
    assert "%gemini batch-status batches/job00000001" in out and "3 prompts" in out


def test_the_jsonl_request_is_the_body_a_generate_call_sends(server, connection):
    request = make_requests(["Describe a cat"], temperature=0.7, top_k=20, seed=3,
                            system_instruction="Be brief.", response_mime_type="application/json",
                            thinking_config={"thinking_budget": 128, "include_thoughts": True})[0]
    Engine(connection).send(request).wait()
    sent = server.last.body
    assert server.last.action == "generateContent"
    assert batch_api.request_json(request, connection.client()._api_client) == sent


def test_the_fallback_json_matches_the_sdk_converter(connection):
    def camel(value):
        """Keys in one spelling: the SDK's converter leaves nested dicts snake_case."""
        if isinstance(value, dict):
            return {re.sub(r"_([a-z])", lambda m: m.group(1).upper(), k): camel(v) for k, v in value.items()}
        if isinstance(value, list):
            return [camel(v) for v in value]
        return value

    request = Request(
        model=MODEL,
        contents=types.Content(role="user", parts=[
            types.Part(text="What is this?"), types.Part.from_bytes(data=b"\x89PNG-bytes", mime_type="image/png")]),
        config={"temperature": 0.3, "max_output_tokens": 10, "system_instruction": "Be terse.",
                "thinking_config": {"thinking_budget": 0}, "response_mime_type": "application/json",
                "response_json_schema": {"type": "object"}},
        server_tools=[{"google_search": {}}],
    )
    by_sdk = batch_api.request_json(request, connection.client()._api_client)
    assert camel(wire._request_json_by_hand(request)) == camel(by_sdk)
    assert by_sdk["tools"] == [{"googleSearch": {}}]


def test_small_batches_go_inline_with_their_keys_and_no_upload(server, connection):
    job = batch_api.submit(make_requests(["a", "b"], temperature=0.5), connection, model=MODEL)
    assert job.inline is True
    assert not any(r.action in ("uploadStart", "uploadChunk") for r in server.requests)
    create = server.last
    assert create.action == "batchGenerateContent"
    inlined = create.body["batch"]["inputConfig"]["requests"]["requests"]
    assert [item["metadata"] for item in inlined] == [{"key": "item-0"}, {"key": "item-1"}]
    assert inlined[1]["request"]["contents"] == [{"parts": [{"text": "b"}], "role": "user"}]
    assert inlined[1]["request"]["generationConfig"] == {"temperature": 0.5}
    assert create.body["batch"]["displayName"] == "gemini-magic batch (2 prompts)"


def test_a_batch_over_the_inline_limit_goes_as_a_file(server, connection):
    requests = make_requests([f"prompt number {i}" for i in range(20)])
    size = sum(len(json.dumps({"key": f"item-{i}", "request": {"contents": [{"parts": [{"text": f"prompt number {i}"}],
                                                                               "role": "user"}]}})) + 1
               for i in range(20))
    inline = batch_api.submit(requests, connection, model=MODEL, inline_limit=size + 100)
    by_file = batch_api.submit(requests, connection, model=MODEL, inline_limit=size // 2)
    assert inline.inline is True and by_file.inline is False
    creates = [r for r in server.requests if r.action == "batchGenerateContent"]
    assert "requests" in creates[0].body["batch"]["inputConfig"]
    assert "fileName" in creates[1].body["batch"]["inputConfig"]


def test_notebook_tools_several_models_and_no_model_are_refused_before_sending(server, connection):
    with_tools = make_requests(["x"])
    with_tools[0].toolbox = object()
    with pytest.raises(GeminiError, match="notebook functions"):
        batch_api.submit(with_tools, connection, model=MODEL)
    mixed = make_requests(["x"]) + make_requests(["y"], model="gemini-2.5-pro")
    with pytest.raises(GeminiError, match="one model"):
        batch_api.submit(mixed, connection)
    with pytest.raises(GeminiError, match="No model"):
        batch_api.submit(make_requests(["x"], model=""), connection)
    with pytest.raises(GeminiError, match="no requests"):
        batch_api.submit([], connection, model=MODEL)
    assert server.requests == []


# -- polling -------------------------------------------------------------------------------


def test_wait_polls_through_pending_running_succeeded(server, connection):
    server.batch_polls = 3
    job = batch_api.submit(make_requests(["a"]), connection, model=MODEL)
    seen: list[str] = []
    delays: list[float] = []
    job.wait(progress=lambda j: seen.append(j.state), sleep=delays.append)
    assert seen == ["JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED"]
    assert gets(server) == 3 and job.done and job.succeeded
    # The default polling grows from its first delay, and never sleeps after the end.
    assert delays == list(batch_api.POLL_DELAYS[:3])
    assert all(r.path == f"/v1/{job.id}" for r in server.requests if r.action == "getBatch")


def test_wait_prints_each_state_by_default(server, connection, capsys):
    job = batch_api.submit(make_requests(["a"]), connection, model=MODEL)
    capsys.readouterr()
    job.wait(poll=0)
    out = capsys.readouterr().out.splitlines()
    assert out == [f"Batch job {job.id}: JOB_STATE_PENDING", f"Batch job {job.id}: JOB_STATE_RUNNING",
                   f"Batch job {job.id}: JOB_STATE_SUCCEEDED"]


def test_a_timeout_stops_waiting_and_says_how_to_collect_the_job(server, connection):
    server.batch_polls = 100
    job = batch_api.submit(make_requests(["a"]), connection, model=MODEL)
    with pytest.raises(JobNotDone) as exc:
        job.wait(poll=0, timeout=0, progress=lambda j: None)
    assert f"%gemini batch-status {job.id}" in exc.value.hint
    assert exc.value.job is job
    with pytest.raises(JobNotDone, match="has not finished"):
        job.results()


def test_ctrl_c_while_waiting_leaves_the_job_running(server, connection):
    server.batch_polls = 100
    job = batch_api.submit(make_requests(["a"]), connection, model=MODEL)

    def interrupt(_delay):
        raise KeyboardInterrupt

    with pytest.raises(JobNotDone, match="Stopped waiting") as exc:
        job.wait(progress=lambda j: None, sleep=interrupt)
    assert "It runs on" in exc.value.hint
    assert server.batches[job.id]["op"]["metadata"]["state"] == "BATCH_STATE_PENDING"


# -- results ------------------------------------------------------------------------------


@pytest.mark.parametrize("inline_limit", [0, batch_api.INLINE_LIMIT], ids=["file", "inline"])
def test_results_align_to_the_inputs_when_listed_out_of_order(server, connection, inline_limit):
    prompts = [f"q{i}" for i in range(6)]
    server.batch_results_hook = lambda lines: lines[3:] + lines[:3][::-1]
    job = submit_and_wait(make_requests(prompts), connection, inline_limit=inline_limit)
    stored = server.batches[job.id]["op"]["metadata"]["output"]
    assert ("responsesFile" in stored) == (inline_limit == 0)
    assert job.results() == [f"Echo: {p}" for p in prompts]
    assert job.results(aligned_to=8)[6:] == [ItemError("The batch job returned no result for this item.",
                                                       "batch-missing")] * 2


def test_item_errors_are_kept_in_their_places(server, connection):
    server.responder = by_prompt({"quota": Error.quota(), "broken": Error.server(500), "bad": Blocked()})
    job = submit_and_wait(make_requests(["fine", "quota", "broken", "bad", "also fine"]), connection, inline_limit=0)
    results = job.results()
    assert results[0] == "Echo: fine" and results[4] == "Echo: also fine"
    assert [r.kind for r in results[1:4]] == ["quota", "server", "blocked"]
    assert results[1].message.startswith("You exceeded your current quota")
    assert results[1].message.endswith("(RESOURCE_EXHAUSTED)")
    assert results[2].message.endswith("(INTERNAL)")
    assert results[3].message == "The prompt was blocked by Gemini (SAFETY)."
    assert not any(results[1:4])


def test_inline_item_errors_are_kept_too(server, connection):
    server.responder = by_prompt({"broken": Error.server(503)})
    job = submit_and_wait(make_requests(["ok", "broken"]), connection)
    assert job.inline
    results = job.results()
    assert results[0] == "Echo: ok"
    assert isinstance(results[1], ItemError) and results[1].kind == "server"
    assert "overloaded" in results[1].message


def test_structured_output_is_parsed_like_a_local_batch(server, connection):
    class City(BaseModel):
        name: str
        people: int

    server.responder = by_prompt({"Paris": '{"name": "Paris", "people": 2100000}', "Nowhere": "not json"})
    schema = Schema(City, "City")
    requests = make_requests(["Paris", "Nowhere"], schema=schema, **schema.config())
    job = submit_and_wait(requests, connection, inline_limit=0)
    first, second = job.results()
    assert first == City(name="Paris", people=2100000)
    assert isinstance(second, ItemError) and second.kind == "schema"


def test_texts_skip_thought_parts(server, connection):
    server.queue(Reply(parts=[{"text": "pondering", "thought": True}, {"text": "The answer."}]))
    job = submit_and_wait(make_requests(["think"]), connection, inline_limit=0)
    assert job.results() == ["The answer."]


# -- jobs that did not succeed --------------------------------------------------------------


def test_a_failed_job_is_a_clear_error(server, connection):
    server.batch_fail = True
    job = submit_and_wait(make_requests(["a", "b"]), connection, inline_limit=0)
    assert job.state == "JOB_STATE_FAILED"
    with pytest.raises(BatchJobError) as exc:
        job.results()
    assert exc.value.message == f"Batch job {job.id} failed. No results were kept."
    assert "%gemini models" in exc.value.hint
    assert len(exc.value.results) == 2 and not any(exc.value.results)


@pytest.mark.parametrize("inline_limit", [0, batch_api.INLINE_LIMIT], ids=["file", "inline"])
def test_a_cancelled_job_keeps_what_it_answered(server, connection, inline_limit):
    server.batch_polls = 100
    server.batch_partial = 2
    job = batch_api.submit(make_requests(["a", "b", "c", "d"]), connection, model=MODEL, inline_limit=inline_limit)
    job.cancel()
    assert job.state == "JOB_STATE_CANCELLED"
    assert any(r.action == "cancelBatch" and r.path == f"/v1/{job.id}:cancel" for r in server.requests)
    with pytest.raises(BatchJobError) as exc:
        job.results()
    assert "was cancelled. 2 of 4 results were kept" in exc.value.message
    kept = exc.value.results
    assert kept[:2] == ["Echo: a", "Echo: b"]
    assert all(isinstance(r, ItemError) and "cancelled before answering" in r.message for r in kept[2:])
    assert job.results(partial=True) == kept


def test_cancelling_a_finished_job_says_so(server, connection):
    job = submit_and_wait(make_requests(["a"]), connection)
    with pytest.raises(GeminiError, match="already ended") as exc:
        job.cancel()
    assert "batch-status" in exc.value.hint


def test_an_expired_job_says_so_and_keeps_partial_results(server, connection):
    server.batch_expire = True
    server.batch_partial = 1
    job = submit_and_wait(make_requests(["a", "b"]), connection, inline_limit=0)
    assert job.state == "JOB_STATE_EXPIRED"
    with pytest.raises(BatchJobError, match="expired: it did not finish within 48 hours") as exc:
        job.results()
    assert exc.value.results[0] == "Echo: a" and isinstance(exc.value.results[1], ItemError)
    assert "smaller jobs" in exc.value.hint


def test_a_results_file_that_cannot_be_fetched(server, connection):
    job = submit_and_wait(make_requests(["a"]), connection, inline_limit=0)
    results_file = job.batch.dest.file_name
    del server.files[results_file]
    with pytest.raises(ResultsUnavailable) as exc:
        job.results()
    assert job.id in exc.value.message and results_file in exc.value.message
    assert f"%gemini batch-status {job.id}" in exc.value.hint


def test_an_unknown_job_id(server, connection):
    with pytest.raises(UnknownJob, match="No batch job batches/nope"):
        Job.attach("batches/nope", connection)
    with pytest.raises(UnknownJob, match="No batch job batches/nope"):
        Job.attach("nope", connection)  # the bare id works too
    with pytest.raises(UnknownJob, match="is not a batch job id"):
        Job.attach("files/abc/def", connection)
    assert [r.path for r in server.requests] == ["/v1/batches/nope", "/v1/batches/nope"]


# -- a later kernel -----------------------------------------------------------------------


def test_job_status_from_a_fresh_connection_collects_the_results(server, env, capsys):
    server.batch_polls = 2
    server.responder = by_prompt({"bad": Error.server(500)})
    first = Connection()
    job = batch_api.submit(make_requests(["one", "bad", "three"]), first, model=MODEL, inline_limit=0)
    first.close()
    capsys.readouterr()

    later = Connection()  # another kernel: only the id is shared
    assert batch_api.job_status(later, job.id) is None
    out = capsys.readouterr().out
    assert f"Batch job {job.id} (gemini-magic batch (3 prompts)): JOB_STATE_RUNNING, model {MODEL}" in out
    assert f"run %gemini batch-status {job.id} again later" in out

    results = batch_api.job_status(later, job.id.removeprefix("batches/"))
    assert results[0] == "Echo: one" and results[2] == "Echo: three"
    assert isinstance(results[1], ItemError) and results[1].kind == "server"
    assert isinstance(results, list) and len(results) == 3
    out = capsys.readouterr().out
    assert "JOB_STATE_SUCCEEDED" in out and "2 of 3 results, 1 failed" in out
    later.close()


def test_job_status_returns_partial_results_of_a_cancelled_job(server, env, capsys):
    server.batch_polls = 100
    server.batch_partial = 1
    job = batch_api.submit(make_requests(["a", "b"]), Connection(), model=MODEL)
    job.cancel()
    results = batch_api.job_status(Connection(), job.id)
    assert results[0] == "Echo: a" and isinstance(results[1], ItemError)
    assert "was cancelled. 1 of 2 results were kept" in capsys.readouterr().err


def test_job_status_of_a_failed_job_with_nothing_kept_raises(server, env):
    server.batch_fail = True
    job = submit_and_wait(make_requests(["a"]), Connection())
    with pytest.raises(BatchJobError, match="failed"):
        batch_api.job_status(Connection(), job.id)


def test_the_magic_collects_a_job_and_reports_an_unknown_one(ip, server, capsys):
    job = submit_and_wait(make_requests(["from the magic"]), Connection())
    results = ip.run_line_magic("gemini", f"batch-status {job.id}")
    assert results == ["Echo: from the magic"]
    with pytest.raises(CellFailed) as exc:
        ip.run_line_magic("gemini", "batch-status batches/missing")
    assert exc.value.error.message == "No batch job batches/missing."
    assert TEST_KEY not in str(exc.value) and TEST_KEY not in "".join(exc.value._render_traceback_())


def test_results_show_briefly(server, connection):
    from IPython.lib.pretty import pretty

    server.responder = lambda r: "x"
    job = submit_and_wait(make_requests([str(i) for i in range(25)]), connection, inline_limit=0)
    shown = pretty(job.results())
    assert shown.startswith("25 results, the first 10: ['x',")
    assert shown.count("'x'") == 10
    assert pretty(batch_api.Results(["a", ItemError("no", "server")])).startswith("2 results, 1 failed: ['a',")


# -- Vertex AI ------------------------------------------------------------------------------


def test_vertex_express_mode_paths(server, env):
    client = genai.Client(vertexai=True, api_key="vertex-key",
                          http_options=types.HttpOptions(base_url=server.url))
    assert client.models.generate_content(model=MODEL, contents="Hi Vertex").text == "Echo: Hi Vertex"
    assert server.last.path == f"/v1beta1/publishers/google/models/{MODEL}:generateContent"
    assert server.last.vertex and server.last.project is None
    assert server.last.headers["x-goog-api-key"] == "vertex-key"
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="streamed"))
    assert "".join(c.text for c in chunks) == "Echo: streamed"
    assert server.last.path == f"/v1beta1/publishers/google/models/{MODEL}:streamGenerateContent"
    assert server.last.query == {"alt": "sse"}


def test_vertex_project_and_location_paths_use_a_bearer_token(server, env):
    from google.oauth2.credentials import Credentials

    client = genai.Client(vertexai=True, project="my-project", location="us-central1",
                          credentials=Credentials(token="adc-token"),
                          http_options=types.HttpOptions(base_url=server.url))
    assert client.models.generate_content(model=MODEL, contents="Hi").text == "Echo: Hi"
    assert server.last.path == (f"/v1beta1/projects/my-project/locations/us-central1/publishers/google/models/"
                                f"{MODEL}:generateContent")
    assert (server.last.project, server.last.location) == ("my-project", "us-central1")
    assert server.last.headers["authorization"] == "Bearer adc-token"
    assert "x-goog-api-key" not in server.last.headers


def test_batch_jobs_on_a_vertex_connection_are_refused_clearly(server, env):
    class VertexConnection:
        base_url = server.url
        timeout = 30.0

        def client(self):
            return genai.Client(vertexai=True, api_key="vertex-key",
                                http_options=types.HttpOptions(base_url=server.url))

    with pytest.raises(GeminiError, match="Vertex AI") as exc:
        batch_api.submit(make_requests(["a"]), VertexConnection(), model=MODEL)
    assert "GEMINI_API_KEY" in exc.value.hint
    assert server.requests == []


# -- the fake server's Batch API ---------------------------------------------------------------


@pytest.fixture
def client(server, env) -> genai.Client:
    return genai.Client(api_key="k", http_options=types.HttpOptions(base_url=server.url))


def _inline(text: str) -> list[types.InlinedRequest]:
    return [types.InlinedRequest(contents=text, metadata={"key": "k"})]


def test_fake_lists_deletes_and_refuses_bad_batches(server, client):
    from google.genai import errors

    first = client.batches.create(model=MODEL, src=_inline("a"), config={"display_name": "one"})
    second = client.batches.create(model=MODEL, src=_inline("b"), config={"display_name": "two"})
    listed = list(client.batches.list(config={"page_size": 1}))
    assert [j.display_name for j in listed] == ["one", "two"]
    assert [r.query.get("pageSize") for r in server.requests if r.action == "listBatches"] == ["1", "1"]
    client.batches.delete(name=first.name)
    assert list(server.batches) == [second.name]
    with pytest.raises(errors.ClientError) as exc:
        client.batches.get(name=first.name)
    assert exc.value.code == 404
    # displayName is required by the REST reference; the SDK sends it only when given.
    with pytest.raises(errors.ClientError, match="displayName"):
        client.batches.create(model=MODEL, src=_inline("c"))
    with pytest.raises(errors.ClientError) as exc:
        client.batches.create(model=MODEL, src="files/missing", config={"display_name": "x"})
    assert exc.value.code == 403
    with pytest.raises(errors.ClientError) as exc:
        client.batches.create(model="gemma-3-27b-it", src=_inline("d"), config={"display_name": "x"})
    assert exc.value.code == 404  # gemma does not list batchGenerateContent


def test_fake_batch_items_ignore_the_rate_limit_and_echo_metadata(server, client):
    server.rate_limit = 1
    server.batch_polls = 1
    job = client.batches.create(model=MODEL, src=[types.InlinedRequest(contents=t, metadata={"key": t})
                                                  for t in ("x", "y", "z")], config={"display_name": "d"})
    job = client.batches.get(name=job.name)
    answers = [(r.metadata["key"], r.response.text) for r in job.dest.inlined_responses]
    assert answers == [("x", "Echo: x"), ("y", "Echo: y"), ("z", "Echo: z")]
    assert server.rejected == 0


def test_fake_downloads_only_generated_files(server, client):
    import io

    from google.genai import errors

    uploaded = client.files.upload(file=io.BytesIO(b'{"key": "a", "request": "?"}\n'), config={"mime_type": "jsonl"})
    with pytest.raises(errors.ClientError, match="Only generated files"):
        client.files.download(file=uploaded.name)
    server.batch_polls = 1
    job = client.batches.create(model=MODEL, src=uploaded.name, config={"display_name": "d"})
    job = client.batches.get(name=job.name)
    data = client.files.download(file=job.dest.file_name)
    # A line without a usable request becomes an error line (a google.rpc.Status).
    assert json.loads(data) == {"key": "a", "error": {"code": 3, "message": "Line 1 has no request object."}}
    assert server.last.path == f"/v1/files/{job.dest.file_name.removeprefix('files/')}:download"
    # The REST documentation's /download/ prefix is served too.
    import urllib.request

    url = f"{server.url}/download/v1beta/{job.dest.file_name}:download?alt=media"
    assert urllib.request.urlopen(urllib.request.Request(url, headers={"x-goog-api-key": "k"})).read() == data


# -- run: submit, wait, collect ---------------------------------------------------------------


def test_run_returns_results_aligned_with_the_requests(server, connection, capsys):
    server.batch_polls = 1
    server.responder = by_prompt({"b": Error.server(500)})
    results = batch_api.run(make_requests(["a", "b", "c"]), connection, model=MODEL, poll=0, progress=lambda j: None)
    assert results[0] == "Echo: a" and isinstance(results[1], ItemError) and results[2] == "Echo: c"
    assert "2 of 3 results, 1 failed (their places hold the error)." in capsys.readouterr().out


def test_run_returns_what_an_expired_job_kept_with_a_warning(server, connection, capsys):
    server.batch_expire = True
    server.batch_partial = 2
    results = batch_api.run(make_requests(["a", "b", "c"]), connection, model=MODEL, inline_limit=0, poll=0,
                            progress=lambda j: None)
    assert results[:2] == ["Echo: a", "Echo: b"] and isinstance(results[2], ItemError)
    assert "expired: it did not finish within 48 hours. 2 of 3 results were kept" in capsys.readouterr().err


def test_run_raises_when_a_failed_job_kept_nothing(server, connection):
    server.batch_fail = True
    with pytest.raises(BatchJobError, match="failed. No results were kept"):
        batch_api.run(make_requests(["a"]), connection, model=MODEL, poll=0, progress=lambda j: None)

"""gemini_magic.embed(): vectors aligned with the input, batched 100 to a request, with
retries, the limiter, record/replay, progress, failures kept, and the Batch API mode.

The real SDK over HTTP to tests/fake_gemini, whose batchEmbedContents makes a vector
from each text's words (the same text, the same vector; shared words, similar vectors).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import gemini_magic
from tests.fake_gemini.server import EMBEDDING_SIZE, embedding_of

EMBED = "batchEmbedContents"


def embed_requests(server) -> list:
    return [r for r in server.requests if r.action == EMBED]


def texts_sent(request) -> list[str]:
    return [item["content"]["parts"][0]["text"] for item in request.body["requests"]]


def test_vectors_are_aligned_with_a_series_and_batched_by_100(ip, server, capsys):
    reviews = pd.Series([f"review number {i} says the soup was {'good' if i % 2 else 'cold'}" for i in range(250)])
    vectors = gemini_magic.embed(reviews)
    assert isinstance(vectors, np.ndarray) and vectors.shape == (250, EMBEDDING_SIZE)
    sent = embed_requests(server)
    assert [len(r.body["requests"]) for r in sent] == [100, 100, 50]
    assert sum((texts_sent(r) for r in sent), []) == list(reviews)  # in order, each its own content
    assert all(r.model == "gemini-embedding-001" for r in sent)
    np.testing.assert_allclose(vectors[137], embedding_of(reviews[137], EMBEDDING_SIZE), atol=1e-6)
    assert gemini_magic.last_embedding().errors == {}
    assert "Gemini embed: 250 done of 250" in capsys.readouterr().err  # the batch progress (a bar in a notebook)


def test_task_type_and_dimensions_reach_every_request_and_short_vectors_are_normalised(ip, server):
    vectors = gemini_magic.embed(["soup is good", "soup is cold", "trains run late"], task_type="clustering",
                                 dimensions=64)
    item = embed_requests(server)[0].body["requests"][0]
    assert item["taskType"] == "CLUSTERING" and item["outputDimensionality"] == 64
    assert vectors.shape == (3, 64)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)  # the server's were 0.5 long
    similar = vectors[0] @ vectors[1]
    assert similar > vectors[0] @ vectors[2]  # shared words: closer


def test_empty_and_missing_texts_are_nan_rows_and_said(ip, server, capsys):
    column = pd.DataFrame({"text": ["a good soup", None, "   ", "a cold soup"]})
    vectors = gemini_magic.embed(column)
    assert np.isnan(vectors[1]).all() and np.isnan(vectors[2]).all()
    assert not np.isnan(vectors[[0, 3]]).any()
    assert texts_sent(embed_requests(server)[0]) == ["a good soup", "a cold soup"]
    errors = gemini_magic.last_embedding().errors
    assert sorted(errors) == [1, 2] and errors[1].message == "empty or missing text"
    said = capsys.readouterr()
    assert "Embedded 2 of 4 texts" in said.out + said.err


def test_a_server_error_is_retried_then_the_batch_goes_on(ip, server):
    server.queue_raw(503, {"Content-Type": "application/json"},
                     json.dumps({"error": {"code": 503, "message": "Overloaded.", "status": "UNAVAILABLE"}}),
                     actions=(EMBED,))
    ip.run_line_magic("config", "GeminiMagics.retry_max_wait = 5")
    vectors = gemini_magic.embed(["one", "two"])
    assert not np.isnan(vectors).any()
    assert len(embed_requests(server)) == 2  # the 503, then its retry


def test_a_failing_request_leaves_its_rows_nan_and_the_rest_done(ip, server):
    body = json.dumps({"error": {"code": 400, "message": "Bad chunk.", "status": "INVALID_ARGUMENT"}})
    texts = [f"text {i}" for i in range(150)]
    server.queue_raw(400, {"Content-Type": "application/json"}, body, actions=(EMBED,))
    vectors = gemini_magic.embed(texts)
    assert np.isnan(vectors[:100]).all() and not np.isnan(vectors[100:]).any()
    run = gemini_magic.last_embedding()
    assert len(run.errors) == 100 and "Bad chunk" in run.errors[0].message


def test_an_error_every_request_would_meet_is_raised_once(ip, server):
    texts = [f"text {i}" for i in range(250)]
    with pytest.raises(gemini_magic.errors.GeminiError, match="Unknown model 'embeding-9'"):
        gemini_magic.embed(texts, model="embeding-9")
    assert len(embed_requests(server)) == 1  # not once per hundred texts


def test_a_generate_model_cannot_embed_and_says_so(ip, server):
    with pytest.raises(gemini_magic.errors.GeminiError) as info:
        gemini_magic.embed(["one"], model="gemini-2.5-flash")
    assert "gemini-2.5-flash" in str(info.value)


@pytest.mark.parametrize("kwargs, says", [
    ({"task_type": "SORTING"}, "is not one Gemini knows"),
    ({"dimensions": 0}, "dimensions must be a positive whole number"),
    ({"batch_size": 101}, "batch_size must be 1 to 100"),
    ({"mode": "fast"}, "mode must be 'local' or 'api'"),
])
def test_bad_arguments_are_refused_before_sending(ip, server, kwargs, says):
    with pytest.raises(gemini_magic.errors.GeminiError, match=says):
        gemini_magic.embed(["one"], **kwargs)
    assert embed_requests(server) == []


def test_nothing_to_embed_says_so(ip, server):
    with pytest.raises(gemini_magic.errors.GeminiError, match="nothing to embed: all 2 texts are empty"):
        gemini_magic.embed(["", None])
    assert embed_requests(server) == []


def test_a_dataframe_of_several_columns_is_refused_with_the_fix(ip, server):
    with pytest.raises(gemini_magic.errors.GeminiError, match=r'embed\(df\["text"\]\)'):
        gemini_magic.embed(pd.DataFrame({"a": ["x"], "b": ["y"]}))


def test_embeddings_record_and_replay_offline(ip, server, env, tmp_path):
    rec = tmp_path / "embed.gemini.json"
    ip.run_line_magic("gemini", f"record {rec}")
    recorded = gemini_magic.embed(["soup", "bread"], dimensions=8)
    ip.run_line_magic("gemini", "live")
    server.reset()
    env.delenv("GEMINI_API_KEY")
    ip.run_line_magic("unload_ext", "gemini_magic")
    ip.run_line_magic("load_ext", "gemini_magic")
    ip.run_line_magic("gemini", f"replay {rec}")
    np.testing.assert_array_equal(gemini_magic.embed(["soup", "bread"], dimensions=8), recorded)
    assert server.requests == []


def test_the_limiter_paces_embeddings_to_a_limit_it_was_given(ip, server):
    ip.run_line_magic("config", "GeminiMagics.quota_tier = 'free'")
    ip.run_line_magic("config", "GeminiMagics.rate_limits = {'gemini-embedding-001': {'rpd': 1}}")
    gemini_magic.embed(["one"])
    with pytest.raises(gemini_magic.errors.GeminiError, match="daily"):
        gemini_magic.embed(["two"])
    assert len(embed_requests(server)) == 1


def test_the_batch_api_mode_sends_one_job_and_aligns_its_results(ip, server, monkeypatch, capsys):
    from gemini_magic.batches import api as batch_api

    monkeypatch.setattr(batch_api, "POLL_DELAYS", (0.01,))
    server.batch_polls = 2
    texts = ["soup is good", "", "trains run late", "bread is warm"]
    vectors = gemini_magic.embed(texts, mode="api", dimensions=16, task_type="CLUSTERING")
    created = [r for r in server.requests if r.action == "asyncBatchEmbedContent"]
    assert len(created) == 1 and embed_requests(server) == []  # one job, no direct requests
    items = created[0].body["batch"]["inputConfig"]["requests"]["requests"]
    assert [i["request"]["content"]["parts"][0]["text"] for i in items] == ["soup is good", "trains run late",
                                                                           "bread is warm"]
    assert items[0]["request"]["taskType"] == "CLUSTERING" and items[0]["request"]["outputDimensionality"] == 16
    assert vectors.shape == (4, 16) and np.isnan(vectors[1]).all()
    expected = np.array(embedding_of("trains run late", 16, "CLUSTERING"))
    np.testing.assert_allclose(vectors[2], expected / np.linalg.norm(expected), atol=1e-6)
    said = capsys.readouterr()
    assert "Batch API embeddings job batches/" in said.out + said.err


def test_a_failed_embeddings_job_keeps_nothing_silently(ip, server, monkeypatch):
    from gemini_magic.batches import api as batch_api

    monkeypatch.setattr(batch_api, "POLL_DELAYS", (0.01,))
    server.batch_fail = True
    with pytest.raises(gemini_magic.errors.GeminiError, match=r"job batches/\S+ ended failed with no embeddings"):
        gemini_magic.embed(["one", "two"], mode="api")


def test_a_partly_answered_job_keeps_what_it_answered(ip, server, monkeypatch):
    from gemini_magic.batches import api as batch_api

    monkeypatch.setattr(batch_api, "POLL_DELAYS", (0.01,))
    server.batch_expire = True
    server.batch_partial = 1
    vectors = gemini_magic.embed(["one", "two", "three"], mode="api")
    assert not np.isnan(vectors[0]).any() and np.isnan(vectors[1:]).all()
    errors = gemini_magic.last_embedding().errors
    assert sorted(errors) == [1, 2] and errors[1].message == "the job ended expired without it"

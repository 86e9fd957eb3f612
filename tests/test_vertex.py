"""Vertex AI connections (express mode and project/location with ADC), and a file batch job that replays."""
from __future__ import annotations

import pytest

from gemini_magic.batches import api as batch_api
from gemini_magic.client import Connection
from gemini_magic.engine import Engine
from gemini_magic.errors import explain
from gemini_magic.magics import CellFailed
from tests.test_batch_api import MODEL, make_requests


def test_connection_vertex_express(server, env):
    conn = Connection(vertexai=True, base_url=server.url)
    assert Engine(conn).send(make_requests(["hello"])[0]).wait().text == "Echo: hello"
    assert server.last.path == f"/v1beta1/publishers/google/models/{MODEL}:generateContent"
    assert server.last.headers["x-goog-api-key"]


def test_connection_vertex_from_environment_with_project_uses_adc(server, env, monkeypatch):
    import google.auth
    from google.oauth2.credentials import Credentials

    monkeypatch.setenv("GOOGLE_GENAI_USE_VERTEXAI", "true")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "proj")
    monkeypatch.setenv("GOOGLE_VERTEX_BASE_URL", server.url)
    # ADC cannot be had here (no gcloud, no network): a stand-in for google-auth's lookup.
    monkeypatch.setattr(google.auth, "default", lambda **kw: (Credentials(token="adc"), "proj"))
    answer = Engine(Connection()).send(make_requests(["hi"])[0]).wait()
    assert answer.error is None, answer.error
    place = "projects/proj/locations/global"
    assert server.last.path == f"/v1beta1/{place}/publishers/google/models/{MODEL}:generateContent"
    assert server.last.headers["authorization"] == "Bearer adc"
    assert "x-goog-api-key" not in server.last.headers


def test_no_adc_is_a_short_error():
    from google.auth.exceptions import DefaultCredentialsError

    error = explain(DefaultCredentialsError("Your default credentials were not found."))
    assert "gcloud auth application-default login" in error.hint


def test_magics_traitlets_reach_the_connection(ip, server, capsys):
    ip.run_line_magic("config", "GeminiMagics.vertexai = True")
    ip.run_line_magic("config", f'GeminiMagics.base_url = "{server.url}"')
    ip.run_cell_magic("gemini", "--no-stream", "via vertex")
    assert server.last.path.startswith("/v1beta1/publishers/google/models/")
    ip.run_line_magic("gemini", "config")
    assert "Vertex AI express mode" in capsys.readouterr().out
    with pytest.raises(CellFailed, match="Vertex"):
        ip.run_line_magic("gemini", "batch-status batches/x")


def test_a_file_job_replays(server, env, tmp_path):
    path = tmp_path / "rec.json"
    conn = Connection()
    conn.set_recording("record", str(path))
    reqs = make_requests(["a", "b"])
    first = batch_api.run(reqs, conn, model=MODEL, display_name="r", inline_limit=0, poll=0)
    conn.close()
    server.reset()
    conn = Connection()
    conn.set_recording("replay", str(path))
    again = batch_api.run(reqs, conn, model=MODEL, display_name="r", inline_limit=0)
    assert again == first == ["Echo: a", "Echo: b"]
    assert server.requests == []

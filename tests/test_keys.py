"""Where the key comes from, and that it goes only in the header the API reads."""

from __future__ import annotations

import sys
import types

import pytest

from gemini_magic.client import find_api_key


def _colab(monkeypatch, secrets: dict, denied: bool = False):
    """Colab's secrets API as its notebooks see it: google.colab.userdata.get(name),
    which raises when a secret is missing or the notebook has no access."""
    colab = types.ModuleType("google.colab")
    userdata = types.ModuleType("google.colab.userdata")

    def get(name):
        if denied or name not in secrets:
            raise RuntimeError(f"secret {name} not available")
        return secrets[name]

    userdata.get = get
    colab.userdata = userdata
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setitem(sys.modules, "google.colab.userdata", userdata)


def test_google_api_key_wins_over_gemini_api_key_as_in_the_sdk(ip, server, env):
    env.setenv("GOOGLE_API_KEY", "google-key-1234")
    env.setenv("GEMINI_API_KEY", "gemini-key-5678")
    ip.run_cell("%%gemini\nhello")
    assert server.last.headers["x-goog-api-key"] == "google-key-1234"
    assert "key" not in server.last.query  # never in the URL


def test_gemini_api_key_alone(ip, server, env):
    ip.run_cell("%%gemini\nhello")
    assert server.last.headers["x-goog-api-key"] == find_api_key()


@pytest.mark.parametrize("name", ["GEMINI_API_KEY", "GOOGLE_API_KEY"])
def test_colab_secret_is_used_when_no_variable_is_set(ip, server, env, monkeypatch, name):
    env.delenv("GEMINI_API_KEY", raising=False)
    env.delenv("GOOGLE_API_KEY", raising=False)
    _colab(monkeypatch, {name: "colab-secret-9999"})
    assert find_api_key() == "colab-secret-9999"
    ip.run_cell("%%gemini\nhello from colab")
    assert server.last.headers["x-goog-api-key"] == "colab-secret-9999"


def test_environment_wins_over_colab_secrets(env, monkeypatch):
    _colab(monkeypatch, {"GEMINI_API_KEY": "colab-secret-9999"})
    assert find_api_key() != "colab-secret-9999"


def test_colab_without_access_means_no_key(env, monkeypatch):
    env.delenv("GEMINI_API_KEY", raising=False)
    _colab(monkeypatch, {"GEMINI_API_KEY": "x"}, denied=True)
    assert find_api_key() is None


def test_code_format_says_colab_cannot_insert_cells(ip, server, monkeypatch, capsys):
    _colab(monkeypatch, {})
    calls = []
    monkeypatch.setattr(ip, "set_next_input", lambda *a, **k: calls.append(a))
    server.queue("```python\nprint(1)\n```")
    ip.run_cell("%%gemini -f code\nwrite code")
    assert calls == []
    assert "Colab cannot insert cells" in capsys.readouterr().err

"""`%gemini COMMAND`, loading and unloading the extension, its settings in IPython's
config system, and the one long-lived SDK client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import version
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from traitlets.config import Config

import gemini_magic
from gemini_magic.magics import CellFailed, GeminiMagics
from gemini_magic.magics.commands import COMMANDS
from tests.conftest import TEST_KEY
from tests.fake_gemini import Error, Reply

ROOT = Path(__file__).resolve().parents[1]
GENERATE = ("generateContent", "streamGenerateContent")
COMMAND_NAMES = list(COMMANDS)


def gemini(ip, line: str) -> None:
    ip.run_line_magic("gemini", line)


def ask(ip, line: str = "", prompt: str = "Say hi") -> None:
    ip.run_cell_magic("gemini", line, prompt)


def generate_requests(server) -> list:
    return [r for r in server.requests if r.action in GENERATE]


def instances(ip) -> list:
    return [c for c in ip.configurables if isinstance(c, GeminiMagics)]


# -- %gemini models -----------------------------------------------------------------


def _rows(out: str) -> dict[str, str]:
    """model id -> its mark ("*" or " ") from the %gemini models table."""
    rows = {}
    for line in out.splitlines()[1:]:
        if "can generate content" in line:  # the legend
            continue
        if len(line) > 2 and line[1] == " " and line[0] in "* " and line[2:].strip():
            name = line[2:].split()[0]
            rows[name] = line[0]
    return rows


def test_models_lists_and_marks_generating_models(ip, server, capsys):
    gemini(ip, "models")
    out = capsys.readouterr().out
    rows = _rows(out)
    assert rows["gemini-2.5-flash"] == "*"
    assert rows["gemini-2.5-pro"] == "*"
    assert rows["gemma-3-27b-it"] == "*"
    assert rows["gemini-embedding-001"] == " "
    assert set(rows) == {m["name"].removeprefix("models/") for m in server.models}
    assert "Gemini 2.5 Flash" in out and "1,048,576" in out
    assert "* can generate content" in out
    assert [r.action for r in server.requests] == ["list"]
    assert server.last.api_key == TEST_KEY


def test_models_pages_through_a_long_list(ip, server, capsys):
    server.models = [
        {
            "name": f"models/synthetic-{i:03d}",
            "displayName": f"Synthetic {i}",
            "inputTokenLimit": 1000 + i,
            "supportedGenerationMethods": ["generateContent"] if i % 2 == 0 else ["embedContent"],
        }
        for i in range(120)
    ]
    gemini(ip, "models")
    rows = _rows(capsys.readouterr().out)
    assert len(rows) == 120
    assert rows["synthetic-000"] == "*" and rows["synthetic-118"] == "*"
    assert rows["synthetic-001"] == " " and rows["synthetic-119"] == " "
    lists = [r for r in server.requests if r.action == "list"]
    assert len(lists) >= 2
    assert "pageToken" not in lists[0].query
    assert all("pageToken" in r.query for r in lists[1:])


def test_models_with_a_rejected_key(ip, server):
    server.valid_keys = {"other"}
    with pytest.raises(CellFailed) as exc:
        gemini(ip, "models")
    text = "\n".join(exc.value._render_traceback_())
    assert "API_KEY_INVALID" in text
    assert "Traceback" not in text and TEST_KEY not in text


def test_models_without_a_key_sends_nothing(ip, server, env):
    env.delenv("GEMINI_API_KEY")
    with pytest.raises(CellFailed) as exc:
        gemini(ip, "models")
    assert "No Gemini API key" in exc.value.error.message
    assert server.requests == []


# -- %gemini config -----------------------------------------------------------------


def test_config_shows_settings_and_key_source_never_the_key(ip, server, capsys):
    ip.run_line_magic("config", 'GeminiMagics.model = "gemini-2.5-pro"')
    gemini(ip, "config")
    out = capsys.readouterr().out
    for name in GeminiMagics.class_trait_names(config=True):
        assert f"GeminiMagics.{name} = " in out, name
    assert "GeminiMagics.model = 'gemini-2.5-pro'" in out
    assert "API key: from GEMINI_API_KEY" in out
    assert server.url in out
    assert TEST_KEY not in out
    assert server.requests == []


def test_config_names_google_api_key(ip, env, capsys):
    env.delenv("GEMINI_API_KEY")
    env.setenv("GOOGLE_API_KEY", TEST_KEY)
    gemini(ip, "config")
    out = capsys.readouterr().out
    assert "API key: from GOOGLE_API_KEY" in out
    assert TEST_KEY not in out


def test_config_without_a_key(ip, env, capsys):
    env.delenv("GEMINI_API_KEY")
    gemini(ip, "config")
    out = capsys.readouterr().out
    assert "API key: not set" in out


def test_config_takes_no_arguments(ip):
    with pytest.raises(UsageError):
        gemini(ip, "config extra")


# -- help, version, unknown ---------------------------------------------------------


def _assert_help(out: str) -> None:
    for command in COMMANDS.values():
        assert f"%gemini {command.usage}" in out, command
    assert "%%gemini" in out


def test_help(ip, capsys):
    gemini(ip, "help")
    _assert_help(capsys.readouterr().out)


@pytest.mark.parametrize("line", ["", "   "])
def test_no_words_shows_help(ip, server, capsys, line):
    gemini(ip, line)
    _assert_help(capsys.readouterr().out)
    assert server.requests == []


def test_version(ip, capsys):
    gemini(ip, "version")
    out = capsys.readouterr().out
    assert f"gemini-magic {gemini_magic.__version__}" in out
    assert f"google-genai {version('google-genai')}" in out


def test_commands_are_case_insensitive(ip, capsys):
    gemini(ip, "VERSION")
    assert "gemini-magic" in capsys.readouterr().out


def test_unknown_command_lists_the_commands(ip, server):
    with pytest.raises(UsageError) as exc:
        gemini(ip, "frobnicate now")
    text = str(exc.value)
    assert "frobnicate" in text
    for name in COMMAND_NAMES:
        assert name in text, name
    assert server.requests == []


def test_a_prompt_on_the_line_magic_is_not_sent(ip, server):
    with pytest.raises(UsageError) as exc:
        gemini(ip, "What is a Python list?")
    assert "%%gemini" in str(exc.value)
    assert server.requests == []


# -- loading ------------------------------------------------------------------------


def test_load_registers_line_and_cell_magic(ip):
    line = ip.find_line_magic("gemini")
    cell = ip.find_cell_magic("gemini")
    assert line is not None and cell is not None
    assert line.__self__ is gemini_magic._magics
    assert cell.__self__ is gemini_magic._magics
    assert instances(ip) == [gemini_magic._magics]


def test_unload_removes_the_magics(ip, server):
    magics = gemini_magic._magics
    ask(ip)
    assert magics.connection._client is not None
    ip.run_line_magic("unload_ext", "gemini_magic")
    assert ip.find_cell_magic("gemini") is None
    assert ip.find_line_magic("gemini") is None
    assert instances(ip) == []
    assert gemini_magic._magics is None
    assert magics.connection._client is None  # closed
    with pytest.raises(UsageError):
        ip.run_cell_magic("gemini", "", "Say hi")
    assert len(generate_requests(server)) == 1


def test_load_after_unload(ip, server, capsys):
    ip.run_line_magic("unload_ext", "gemini_magic")
    ip.run_line_magic("load_ext", "gemini_magic")
    server.queue(Reply(text="Back again"))
    ask(ip)
    assert "Back again" in capsys.readouterr().out
    assert len(instances(ip)) == 1


def test_reload_works_and_keeps_working(ip, server, capsys):
    before = gemini_magic._magics
    ip.run_line_magic("reload_ext", "gemini_magic")
    after = gemini_magic._magics
    assert after is not None and after is not before
    assert ip.find_cell_magic("gemini").__self__ is after
    assert ip.find_line_magic("gemini").__self__ is after
    assert instances(ip) == [after]
    server.queue(Reply(text="First after reload"), Reply(text="Second after reload"))
    ask(ip)
    ip.run_line_magic("reload_ext", "gemini_magic")
    ask(ip, "-m gemini-2.5-pro")
    out = capsys.readouterr().out
    assert "First after reload" in out and "Second after reload" in out
    assert [r.model for r in generate_requests(server)] == ["gemini-2.5-flash", "gemini-2.5-pro"]
    assert len(instances(ip)) == 1


def test_settings_survive_a_reload(ip, server):
    ip.run_line_magic("config", 'GeminiMagics.model = "gemini-2.5-pro"')
    ip.run_line_magic("reload_ext", "gemini_magic")
    ask(ip)
    assert server.last.model == "gemini-2.5-pro"


_LAZY_SCRIPT = textwrap.dedent(
    """
    import json, sys, threading

    # Hold back any import of google.genai made off the main thread until the
    # foreground check is done, so the check cannot race the warm-up thread.
    gate = threading.Event()
    importers = []

    class Gate:
        def find_spec(self, name, path=None, target=None):
            if name == "google.genai":
                importers.append(threading.current_thread().name)
                if threading.current_thread() is not threading.main_thread():
                    gate.wait(20)
            return None

    sys.meta_path.insert(0, Gate())

    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    before = "google.genai" in sys.modules
    shell.extension_manager.load_extension("gemini_magic")
    in_foreground = "google.genai" in sys.modules
    registered = shell.find_cell_magic("gemini") is not None

    import gemini_magic.client as client

    thread = client._warm_thread
    info = {
        "before": before,
        "in_foreground": in_foreground,
        "registered": registered,
        "thread": thread is not None,
        "thread_name": thread.name if thread else None,
        "daemon": thread.daemon if thread else None,
    }
    gate.set()
    if thread is not None:
        thread.join(60)
    info["warmed"] = "google.genai.types" in sys.modules
    info["importers"] = importers
    print(json.dumps(info))
    """
)


def test_loading_does_not_import_the_sdk_in_the_foreground():
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-c", _LAZY_SCRIPT], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout.strip().splitlines()[-1])
    assert info["before"] is False
    assert info["registered"] is True
    assert info["in_foreground"] is False, "load_extension imported google.genai itself"
    assert info["thread"] is True and info["daemon"] is True
    assert info["warmed"] is True, "the warm-up thread did not import the SDK"
    assert info["importers"] and "MainThread" not in info["importers"], info["importers"]
    assert info["importers"][0] == info["thread_name"]


# -- IPython's config system --------------------------------------------------------


def test_config_magic_lists_the_settings(ip, capsys):
    ip.run_line_magic("config", "")
    assert "GeminiMagics" in capsys.readouterr().out.split()
    ip.run_line_magic("config", "GeminiMagics")
    out = capsys.readouterr().out
    for name in ("model", "temperature", "top_p", "top_k", "max_tokens", "seed", "stop", "thinking", "system",
                 "format", "stream", "interpolate", "usage", "debug", "base_url", "api_version", "timeout",
                 "retry_attempts", "retry_max_wait"):
        assert f"GeminiMagics.{name}=" in out, name


def test_config_magic_reads_a_setting(ip):
    ip.run_line_magic("config", "GeminiMagics.timeout = 33.0")
    assert ip.run_line_magic("config", "GeminiMagics.timeout") == 33.0
    assert gemini_magic._magics.timeout == 33.0


def test_config_object_applies(ip):
    config = Config()
    config.GeminiMagics.model = "gemini-2.5-pro"
    config.GeminiMagics.temperature = 0.25
    magics = GeminiMagics(shell=ip, config=config)
    try:
        assert magics.model == "gemini-2.5-pro"
        assert magics.temperature == 0.25
        assert magics.timeout == 120.0
    finally:
        if magics in ip.configurables:
            ip.configurables.remove(magics)
        magics.connection.close()


def test_shell_config_applies_when_the_extension_loads(ip, server):
    """c.GeminiMagics.model in ipython_config.py reaches the wire."""
    ip.run_line_magic("unload_ext", "gemini_magic")
    ip.config.GeminiMagics.model = "gemini-2.5-flash-lite"
    ip.config.GeminiMagics.top_k = 9
    ip.run_line_magic("load_ext", "gemini_magic")
    assert gemini_magic._magics.model == "gemini-2.5-flash-lite"
    ask(ip)
    assert server.last.model == "gemini-2.5-flash-lite"
    gen = server.last.body.get("generationConfig") or server.last.body.get("generation_config")
    assert gen.get("topK", gen.get("top_k")) == 9


def test_invalid_setting_is_refused(ip, capsys):
    ip.run_line_magic("config", "GeminiMagics.format = 'bogus'")
    assert gemini_magic._magics.format == "markdown"


# -- one long-lived client ----------------------------------------------------------


def test_two_cells_reuse_one_client(ip, server):
    ask(ip)
    first = gemini_magic._magics.connection._client
    assert first is not None
    ask(ip, "--no-stream")
    gemini(ip, "models")
    assert gemini_magic._magics.connection._client is first
    assert len(server.requests) == 3


def test_changing_timeout_rebuilds_the_client(ip, server):
    ask(ip)
    first = gemini_magic._magics.connection._client
    ip.run_line_magic("config", "GeminiMagics.timeout = 45.0")
    ask(ip)
    second = gemini_magic._magics.connection._client
    assert second is not first
    assert gemini_magic._magics.connection.timeout == 45.0
    ask(ip)
    assert gemini_magic._magics.connection._client is second


def test_changing_api_version_rebuilds_the_client(ip, server):
    ask(ip)
    first = gemini_magic._magics.connection._client
    ip.run_line_magic("config", "GeminiMagics.api_version = 'v1beta'")
    ask(ip)
    assert gemini_magic._magics.connection._client is not first
    assert server.last.version == "v1beta"


def test_changing_the_key_rebuilds_the_client(ip, server, env):
    ask(ip)
    first = gemini_magic._magics.connection._client
    env.setenv("GEMINI_API_KEY", "another-test-key-123456")
    ask(ip)
    assert gemini_magic._magics.connection._client is not first
    assert server.last.api_key == "another-test-key-123456"


def test_a_failed_request_keeps_the_client(ip, server):
    ask(ip)
    first = gemini_magic._magics.connection._client
    server.queue(Error(400, "INVALID_ARGUMENT", "bad field"))
    with pytest.raises(CellFailed):
        ask(ip)
    ask(ip)
    assert gemini_magic._magics.connection._client is first
    assert len(generate_requests(server)) == 3

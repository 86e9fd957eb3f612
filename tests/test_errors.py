"""Every error a user can meet: a short message with a next step, no SDK traceback,
never the API key; retries where they help, and only where they are safe.

The SDK runs unpatched against the fake server; failures are real HTTP answers
(or real connection failures), translated by gemini_magic.
"""

from __future__ import annotations

import re
import time

import pytest
from IPython.core.error import UsageError

import gemini_magic
from gemini_magic.magics import CellFailed
from gemini_magic.magics.commands import COMMANDS
from tests.conftest import TEST_KEY
from tests.fake_gemini import Blocked, Error, Reply

GENERATE = ("generateContent", "streamGenerateContent")


# -- helpers ------------------------------------------------------------------------


def config(ip, statement: str) -> None:
    ip.run_line_magic("config", f"GeminiMagics.{statement}")


def generate_requests(server) -> list:
    return [r for r in server.requests if r.action in GENERATE]


def fail(ip, line: str = "", prompt: str = "Say hi") -> CellFailed:
    with pytest.raises(CellFailed) as exc:
        ip.run_cell_magic("gemini", line, prompt)
    return exc.value


def rendered(exc: CellFailed) -> str:
    return "\n".join(exc._render_traceback_())


def assert_short(exc: CellFailed, *fragments: str) -> str:
    """The default rendering: the message and a next step, nothing else."""
    lines = exc._render_traceback_()
    text = "\n".join(lines)
    assert exc.error.message and exc.error.message in text
    assert exc.error.hint and exc.error.hint in text, "no next step"
    assert len(lines) <= 3, lines
    assert len(text) < 700, text
    assert "Traceback" not in text
    assert "google/genai" not in text and "site-packages" not in text and 'File "' not in text
    assert TEST_KEY not in text
    for fragment in fragments:
        assert fragment in text, (fragment, text)
    return text


@pytest.fixture
def sleeps(ip, monkeypatch):
    """Retry pauses, recorded instead of slept (the engine sleeps through Engine.sleep)."""
    calls: list[float] = []
    monkeypatch.setattr(gemini_magic._magics.engine, "sleep", calls.append)
    return calls


@pytest.fixture
def arrivals(server, monkeypatch):
    """Server-side arrival time of each request (monotonic clock of this process)."""
    times: list[float] = []
    original = server._record

    def record(request):
        times.append(time.monotonic())
        original(request)

    monkeypatch.setattr(server, "_record", record)
    return times


# -- the scenarios: (setup, cell line, expected text) -------------------------------


def _no_key(ip, server, env):
    env.delenv("GEMINI_API_KEY", raising=False)
    env.delenv("GOOGLE_API_KEY", raising=False)
    return ""


def _invalid_key(ip, server, env):
    server.valid_keys = {"other"}
    return ""


def _permission(ip, server, env):
    server.queue(Error.permission())
    return ""


def _unknown_model(ip, server, env):
    server.accept_model_prefixes = ()
    return "-m gemini-2.5-flsh"


def _quota(ip, server, env):
    config(ip, "retry_attempts = 1")
    server.queue(Error.quota(retry_delay="20s"))
    return ""


def _server_error(ip, server, env):
    config(ip, "retry_attempts = 1")
    server.queue(Error.server(503))
    return ""


def _timeout(ip, server, env):
    config(ip, "timeout = 0.5")
    config(ip, "retry_attempts = 1")
    server.queue(Reply(text="too late", hang=3))
    return ""


def _refused(ip, server, env):
    config(ip, "base_url = 'http://127.0.0.1:1'")
    return ""


def _blocked(ip, server, env):
    server.queue(Blocked("SAFETY"))
    return ""


def _mid_stream(ip, server, env):
    server.queue(Error.server(503, after_chunks=2, chunks=["Hello ", "world "]))
    return ""


SCENARIOS = {
    "no-key": (_no_key, "GEMINI_API_KEY"),
    "invalid-key": (_invalid_key, "API_KEY_INVALID"),
    "permission": (_permission, "Permission denied"),
    "unknown-model": (_unknown_model, "gemini-2.5-flsh"),
    "quota": (_quota, "rate limit for gemini-2.5-flash was reached: 5 requests a minute on the free tier"),
    "server-error": (_server_error, "503"),
    "timeout": (_timeout, "timed out"),
    "refused": (_refused, "Could not connect"),
    "blocked": (_blocked, "blocked"),
    "mid-stream": (_mid_stream, "503"),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_error_is_short_with_a_next_step_and_no_traceback(ip, server, env, name):
    setup, expected = SCENARIOS[name]
    line = setup(ip, server, env)
    exc = fail(ip, line)
    assert_short(exc, expected)
    assert exc.debug_text == ""


# Failures that come from an exception (SDK, HTTP, key lookup): --debug shows its traceback.
RAISED = sorted(set(SCENARIOS) - {"blocked"})


@pytest.mark.parametrize("name", RAISED)
def test_debug_option_shows_the_traceback_but_never_the_key(ip, server, env, name):
    setup, expected = SCENARIOS[name]
    line = setup(ip, server, env)
    exc = fail(ip, f"{line} --debug")
    text = rendered(exc)
    assert expected in text
    assert "Traceback (most recent call last)" in text
    assert TEST_KEY not in text


def test_debug_for_a_blocked_prompt_adds_detail(ip, server):
    """A blocked prompt is an answer, not an exception: --debug still says more."""
    server.queue(Blocked("SAFETY"), Blocked("SAFETY"))
    plain = rendered(fail(ip))
    debug = fail(ip, "--debug")
    assert debug.debug_text
    assert "PromptBlocked" in rendered(debug)
    assert len(rendered(debug)) > len(plain)
    assert TEST_KEY not in rendered(debug)


@pytest.mark.parametrize("name", ["invalid-key", "server-error", "refused"])
def test_debug_setting_shows_the_traceback(ip, server, env, name):
    setup, expected = SCENARIOS[name]
    config(ip, "debug = True")
    line = setup(ip, server, env)
    exc = fail(ip, line)
    text = rendered(exc)
    assert expected in text
    assert "Traceback (most recent call last)" in text
    assert TEST_KEY not in text


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_hints_name_only_commands_that_exist(ip, server, env, name):
    setup, _ = SCENARIOS[name]
    exc = fail(ip, setup(ip, server, env))
    known = set(COMMANDS)
    mentioned = re.findall(r"(?<!%)%gemini (\w+)", f"{exc.error.message} {exc.error.hint}")
    assert set(mentioned) <= known, f"{name}: hint names %gemini {sorted(set(mentioned) - known)}: {exc.error.hint}"


def test_cell_run_by_ipython_shows_no_traceback(ip, server, capsys):
    server.valid_keys = {"other"}
    result = ip.run_cell("%%gemini\nSay hi")
    captured = capsys.readouterr()
    shown = captured.out + captured.err
    assert not result.success
    assert isinstance(result.error_in_exec, CellFailed)
    assert "API_KEY_INVALID" in shown
    assert "Traceback" not in shown
    assert "google/genai" not in shown and "google.genai.errors" not in shown
    assert TEST_KEY not in shown


def test_key_echoed_by_the_server_is_never_shown(ip, server):
    """A proxy or server that echoes the key in its error must not leak it."""
    server.queue(Error(400, "INVALID_ARGUMENT", f"Request for key {TEST_KEY} has a bad field"),
                 Error(400, "INVALID_ARGUMENT", f"Request for key {TEST_KEY} has a bad field"))
    plain = fail(ip)
    assert TEST_KEY not in rendered(plain)
    debug = fail(ip, "--debug")
    assert "Traceback (most recent call last)" in rendered(debug)
    assert TEST_KEY not in rendered(debug)


# -- key and access -----------------------------------------------------------------


def test_no_key_says_how_to_set_one_and_sends_nothing(ip, server, env):
    _no_key(ip, server, env)
    exc = fail(ip)
    assert "No Gemini API key" in exc.error.message
    assert "GEMINI_API_KEY" in exc.error.hint and "aistudio.google.com" in exc.error.hint
    assert server.requests == []


def test_google_api_key_alone_is_used(ip, server, env):
    env.delenv("GEMINI_API_KEY")
    env.setenv("GOOGLE_API_KEY", TEST_KEY)
    ip.run_cell_magic("gemini", "", "Say hi")
    assert server.last.api_key == TEST_KEY


def test_invalid_key_is_reported_and_not_retried(ip, server, sleeps):
    server.valid_keys = {"other"}
    exc = fail(ip)
    assert "API_KEY_INVALID" in exc.error.message
    assert "GEMINI_API_KEY" in exc.error.hint
    assert len(generate_requests(server)) == 1
    assert sleeps == []


def test_permission_denied(ip, server, sleeps):
    server.queue(Error.permission("Gemini API has not been used in project 123 before"))
    exc = fail(ip)
    assert exc.error.message.startswith("Permission denied")
    assert "project 123" in exc.error.message
    assert len(generate_requests(server)) == 1
    assert sleeps == []


def test_unknown_model_suggests_the_close_match_from_the_live_list(ip, server, sleeps):
    server.accept_model_prefixes = ()
    exc = fail(ip, "-m gemini-2.5-flsh")
    assert "gemini-2.5-flsh" in exc.error.message
    assert "gemini-2.5-flash" in exc.error.hint
    assert "Did you mean" in exc.error.hint
    assert "%gemini models" in exc.error.hint
    assert any(r.action == "list" for r in server.requests), "the suggestion must come from the live list"
    assert len(generate_requests(server)) == 1
    assert sleeps == []


def test_unknown_model_suggestion_follows_the_live_list(ip, server):
    server.accept_model_prefixes = ()
    server.models = [{"name": "models/gemini-9-ultra", "displayName": "Gemini 9 Ultra",
                      "supportedGenerationMethods": ["generateContent"]}]
    exc = fail(ip, "-m gemini-9-ultr")
    assert "gemini-9-ultra" in exc.error.hint
    assert "gemini-2.5-flash" not in exc.error.hint


def test_unknown_model_with_no_close_match_points_to_the_list(ip, server):
    server.accept_model_prefixes = ()
    exc = fail(ip, "-m zzz-qqq")
    assert "zzz-qqq" in exc.error.message
    assert "Did you mean" not in exc.error.hint
    assert "%gemini models" in exc.error.hint


# -- quota (429) --------------------------------------------------------------------


def test_quota_is_retried_after_the_servers_delay(ip, server, arrivals, capsys):
    # Google's RetryInfo carries whole seconds ("1s") while its message says 1.2s.
    server.queue(Error.quota(retry_delay="1.2s"), Reply(text="Recovered answer"))
    ip.run_cell_magic("gemini", "", "Say hi")
    captured = capsys.readouterr()
    assert "Recovered answer" in captured.out
    assert ("Gemini's rate limit for gemini-2.5-flash was reached: 5 requests a minute on the free tier. "
            "Retrying in 1 s (attempt 2 of 4).") in captured.err
    requests = generate_requests(server)
    assert len(requests) == 2
    assert requests[0].user_texts() == requests[1].user_texts() == ["Say hi"]
    assert len(arrivals) == 2
    assert arrivals[1] - arrivals[0] >= 0.95  # the server asked for 1 s


def test_quota_retry_uses_the_delay_the_server_asked_for(ip, server, sleeps):
    server.queue(Error.quota(retry_delay="7s"), Reply(text="ok"))
    ip.run_cell_magic("gemini", "", "Say hi")
    assert sleeps == [7.0]


def test_quota_beyond_retry_attempts_fails_naming_the_limit(ip, server, sleeps):
    config(ip, "retry_attempts = 2")
    server.queue(*[Error.quota(retry_delay="3s", limit=15) for _ in range(3)])
    exc = fail(ip)
    assert_short(exc)
    assert exc.error.message == ("Gemini's rate limit for gemini-2.5-flash was reached: 15 requests a minute on "
                                 "the free tier.")
    assert "Retry in 3 s" in exc.error.hint and "paced to this limit" in exc.error.hint
    assert "flash-lite" not in exc.error.hint  # no advice naming a model that may not fit
    assert len(generate_requests(server)) == 2
    assert sleeps == [3.0]


def test_quota_delay_longer_than_retry_max_wait_fails_at_once(ip, server, sleeps):
    config(ip, "retry_max_wait = 1")
    server.queue(Error.quota(retry_delay="30s"), Reply(text="never asked for"))
    exc = fail(ip)
    assert "rate limit for gemini-2.5-flash was reached" in exc.error.message
    assert "Retry in 30 s" in exc.error.hint
    assert len(generate_requests(server)) == 1
    assert sleeps == []


def test_retry_attempts_one_means_no_retry(ip, server, sleeps):
    config(ip, "retry_attempts = 1")
    server.queue(Error.quota(retry_delay="0.1s"), Reply(text="never asked for"))
    fail(ip)
    assert len(generate_requests(server)) == 1
    assert sleeps == []


# -- server errors (5xx) ------------------------------------------------------------


def test_server_errors_are_retried_with_backoff(ip, server, sleeps, capsys):
    server.queue(Error.server(500), Error.server(503), Reply(text="Fine now"))
    ip.run_cell_magic("gemini", "", "Say hi")
    captured = capsys.readouterr()
    assert "Fine now" in captured.out
    assert captured.err.count("Retrying") == 2
    assert len(generate_requests(server)) == 3
    assert len(sleeps) == 2
    assert 0 < sleeps[0] < sleeps[1]
    assert sleeps[1] >= 1.8 * sleeps[0]  # exponential, with a little jitter


def test_server_errors_beyond_retry_attempts_fail(ip, server, sleeps):
    config(ip, "retry_attempts = 3")
    server.queue(*[Error.server(503) for _ in range(4)])
    exc = fail(ip)
    assert_short(exc, "503")
    assert "overloaded" in exc.error.message
    assert len(generate_requests(server)) == 3
    assert len(sleeps) == 2


def test_server_error_with_real_short_backoff(ip, server):
    gemini_magic._magics.engine.retry.base_delay = 0.01
    server.queue(Error.server(500), Reply(text="ok"))
    ip.run_cell_magic("gemini", "--no-stream", "Say hi")
    assert len(generate_requests(server)) == 2
    assert server.last.action == "generateContent"


def test_bad_request_is_not_retried(ip, server, sleeps):
    server.queue(Error(400, "INVALID_ARGUMENT", "Unable to submit request because of a bad field."))
    exc = fail(ip)
    assert_short(exc, "bad field")
    assert len(generate_requests(server)) == 1
    assert sleeps == []


# -- timeouts and connections -------------------------------------------------------


def test_timeout_message_names_the_limit_and_the_setting(ip, server):
    _timeout(ip, server, None)
    exc = fail(ip)
    assert_short(exc, "timed out", "0.5")
    assert "GeminiMagics.timeout" in exc.error.hint
    assert len(generate_requests(server)) == 1


def test_timeout_is_retried(ip, server, sleeps, capsys):
    config(ip, "timeout = 0.5")
    server.queue(Reply(text="too late", hang=3), Reply(text="On time"))
    ip.run_cell_magic("gemini", "", "Say hi")
    assert "On time" in capsys.readouterr().out
    assert len(generate_requests(server)) == 2
    assert len(sleeps) == 1


def test_connection_refused(ip, server, sleeps):
    _refused(ip, server, None)
    exc = fail(ip)
    assert_short(exc, "Could not connect", "127.0.0.1:1")
    assert "base_url" in exc.error.hint or "GOOGLE_GEMINI_BASE_URL" in exc.error.hint
    assert server.requests == []


# -- blocked and cut answers --------------------------------------------------------


@pytest.mark.parametrize("line", ["", "--no-stream"])
def test_blocked_prompt(ip, server, line):
    server.queue(Blocked("SAFETY"))
    exc = fail(ip, line)
    assert_short(exc, "blocked", "SAFETY")
    assert len(generate_requests(server)) == 1


@pytest.mark.parametrize("reason, words", [("SAFETY", "safety"), ("RECITATION", "RECITATION")])
def test_answer_stopped_after_partial_text(ip, server, capsys, reason, words):
    server.queue(Reply(chunks=["The first ", "half of it"], finish_reason=reason))
    ip.run_cell_magic("gemini", "-o partial", "Say hi")
    captured = capsys.readouterr()
    assert captured.out == "The first half of it\n"
    assert words in captured.err
    assert "The first half" not in captured.err
    assert ip.user_ns["partial"] == "The first half of it"


def test_max_tokens_notice_mentions_the_option(ip, server, capsys):
    server.queue(Reply(chunks=["Once upon ", "a time"], finish_reason="MAX_TOKENS"))
    ip.run_cell_magic("gemini", "--max-tokens 5", "Tell a story")
    captured = capsys.readouterr()
    assert captured.out == "Once upon a time\n"
    assert "--max-tokens" in captured.err
    assert "(5)" in captured.err


def test_empty_answer_notice(ip, server, capsys):
    server.queue(Reply())
    ip.run_cell_magic("gemini", "-o nothing", "Say hi")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "empty answer" in captured.err
    assert "nothing" not in ip.user_ns


def test_no_notice_for_a_normal_answer(ip, server, capsys):
    server.queue(Reply(text="All good"))
    ip.run_cell_magic("gemini", "", "Say hi")
    assert capsys.readouterr().err == ""


# -- mid-stream failure ---------------------------------------------------------------


def test_mid_stream_error_keeps_the_chunks_and_is_not_retried(ip, server, sleeps, capsys):
    server.queue(Error.server(503, after_chunks=2, chunks=["Hello ", "world "]), Reply(text="a second answer"))
    exc = fail(ip, "-o partial")
    captured = capsys.readouterr()
    assert "Hello world" in captured.out
    assert "a second answer" not in captured.out
    assert ip.user_ns["partial"] == "Hello world "
    assert_short(exc, "503")
    assert len(generate_requests(server)) == 1
    assert sleeps == []
    assert server.pending == 1


# -- the prompt ---------------------------------------------------------------------


@pytest.mark.parametrize("prompt", ["   \n\t\n", "\n\n"])
def test_empty_prompt_is_a_clear_error_and_sends_nothing(ip, server, prompt):
    exc = fail(ip, "", prompt)
    assert_short(exc, "empty")
    assert server.requests == []


def test_no_cell_body_at_all_sends_nothing(ip, server):
    """IPython itself refuses a cell magic with an empty body, with a clear message."""
    with pytest.raises(UsageError) as exc:
        ip.run_cell_magic("gemini", "", "")
    assert "empty" in str(exc.value)
    assert server.requests == []


def test_prompt_empty_after_interpolation(ip, server):
    ip.user_ns["blank"] = "  "
    exc = fail(ip, "", "{blank}")
    assert "empty" in exc.error.message
    assert server.requests == []

"""Quota through the magic: the defaults a user gets never slow a key down; a 429 teaches
the limit once; daily quotas are said in words; usage is counted per endpoint.

The limiter runs with real short windows against the fake server's own rate limit
(`server.rate_limit` per `server.rate_window`), or with a fake clock injected into
the shell's limiter (tests.conftest.FakeTime).
"""

from __future__ import annotations

import json
import re

import pytest

import gemini_magic
from gemini_magic.transport.learned import LearnedLimits, account_id, default_path
from gemini_magic.transport.limits import Limit, Limiter
from gemini_magic.usage import UsageStore
from tests.conftest import TEST_KEY, FakeTime, ask, fails
from tests.fake_gemini import Error, Reply
from tests.fake_gemini.server import usage_metadata

FLASH = "gemini-2.5-flash"
LITE = "gemini-2.5-flash-lite"
RPD_FREE = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"


def magics():
    return gemini_magic._magics


def shell_limiter() -> Limiter:
    """The shell's limiter (made with the engine, on first use)."""
    m = magics()
    m.engine  # noqa: B018
    return m.connection.limiter


def config(ip, assignment: str) -> None:
    ip.run_line_magic("config", f"GeminiMagics.{assignment}")


def reload_extension(ip) -> None:
    """A new kernel, as far as the extension knows: a new connection, limiter and stores."""
    ip.run_line_magic("unload_ext", "gemini_magic")
    ip.run_line_magic("load_ext", "gemini_magic")


def generate_requests(server) -> list:
    return [r for r in server.requests if r.action in ("generateContent", "streamGenerateContent")]


def no_sleeping(limiter: Limiter) -> None:
    def refuse(seconds):
        raise AssertionError(f"the limiter slept {seconds} s")

    limiter.sleep = refuse


def usage_here(server) -> UsageStore:
    """The usage store of the test server's account (as a new kernel would read it)."""
    return UsageStore(account=account_id(server.url, TEST_KEY))


# -- the defaults a user gets -----------------------------------------------------------------------


def test_default_settings_never_slow_or_refuse_a_key_google_did_not_limit(ip, server, env):
    env.delenv("GEMINI_MAGIC_QUOTA", raising=False)
    reload_extension(ip)
    assert magics().quota_tier == "auto"
    limiter = shell_limiter()
    no_sleeping(limiter)
    # The free tier's 20 a day on Flash is long gone today: nothing is refused on that guess.
    usage_here(server).add(FLASH, {}, requests=25)
    for i in range(8):  # 8 quick cells: the free tier's 5 a minute does not apply
        assert ask(ip, f"q{i}") == f"Echo: q{i}"
    results = gemini_magic.batch("Item {item}", list(range(40)))
    assert results == [f"Echo: Item {i}" for i in range(40)]
    assert limiter.waited == 0 and len(generate_requests(server)) == 48


@pytest.mark.parametrize("value, tier", [("paid", "paid"), (" OFF ", "off"), ("free", "free"),
                                         ("bogus", "auto"), (None, "auto")])
def test_environment_sets_the_default_tier(ip, env, value, tier):
    if value is None:
        env.delenv("GEMINI_MAGIC_QUOTA", raising=False)
    else:
        env.setenv("GEMINI_MAGIC_QUOTA", value)
    reload_extension(ip)
    assert magics().quota_tier == tier and shell_limiter().tier == tier
    config(ip, "quota_tier = 'free'" if tier != "free" else "quota_tier = 'auto'")  # %config still wins
    assert shell_limiter().tier == ("free" if tier != "free" else "auto")


def test_paid_tier_is_never_slowed_either(ip, server):
    config(ip, "quota_tier = 'paid'")
    limiter = shell_limiter()
    no_sleeping(limiter)
    for i in range(12):
        ask(ip, f"paid {i}")
    assert limiter.limit(FLASH) == Limit() and limiter.shared() is None


# -- learning from the server ------------------------------------------------------------------------


def test_a_429_is_retried_after_googles_delay_and_the_limit_is_learned(ip, server, capsys):
    server.rate_limit, server.rate_window = 1, 1.5  # the server allows 1 request in 1.5 s
    limiter = shell_limiter()
    limiter.window = 1.5
    assert limiter.limit(FLASH).rpm is None  # auto: nothing known yet

    assert ask(ip, "first") == "Echo: first"
    assert ask(ip, "second") == "Echo: second"  # a 429, then the retry after retryDelay
    err = capsys.readouterr().err
    assert server.rejected == 1
    assert re.search(r"Gemini's rate limit for gemini-2\.5-flash was reached: 1 requests? a minute on the free "
                     r"tier\. Retrying in [\d.]+ s \(attempt 2 of 4\)\.", err), err
    sent = [r.last_user_text() for r in generate_requests(server)]
    assert sent == ["first", "second", "second"]
    assert limiter.limit(FLASH).rpm == 1

    # So later cells wait for their slot instead of collecting more 429s.
    for prompt in ("third", "fourth"):
        assert ask(ip, prompt) == f"Echo: {prompt}"
    assert server.rejected == 1
    assert "Waiting" in capsys.readouterr().err


def test_a_batch_meets_one_round_of_429s_then_none(ip, server):
    server.rate_limit, server.rate_window = 5, 2.0
    limiter = shell_limiter()
    limiter.window = 2.0
    results = gemini_magic.batch("Item {item}", list(range(24)), concurrency=8)
    assert results == [f"Echo: Item {i}" for i in range(24)]
    # Only requests already on their way when Google first said no were refused:
    # every one sent after the limiter learned the limit waited for its slot.
    assert 1 <= server.rejected <= 8
    assert max(server.rejections) < limiter.first_learned + 0.05


def test_what_was_learned_paces_the_next_kernel_and_only_this_endpoint(ip, server, env, capsys):
    server.rate_limit, server.rate_window = 2, 60.0
    for prompt in ("a", "b"):
        ask(ip, prompt)
    config(ip, "retry_attempts = 1")
    fails(ip, "c")  # the server's own 429: 2 a minute
    server.rate_limit = None
    reload_extension(ip)  # a new kernel
    limiter = shell_limiter()
    ask(ip, "warm up")  # builds the client, which names the account
    assert limiter.limit(FLASH).rpm == 2
    capsys.readouterr()
    ip.run_line_magic("gemini", "limits")
    out = capsys.readouterr().out
    assert "gemini-2.5-flash: 2 requests a minute on the free tier" in out
    assert "GenerateRequestsPerMinutePerProjectPerModel-FreeTier" in out
    # The limit was stated for this endpoint and key: Google's own account knows nothing of it.
    google = LearnedLimits(default_path())
    google.use_account(account_id(None, TEST_KEY))
    assert google.all() == []
    ip.run_line_magic("gemini", "limits forget")
    assert "Forgot 1 limit(s)" in capsys.readouterr().out
    assert limiter.limit(FLASH) == Limit()


def test_a_used_up_daily_quota_is_said_in_words_and_nothing_more_is_sent(ip, server):
    server.queue(Error.quota(retry_delay="13s", limit=20, quota_id=RPD_FREE))
    failure = fails(ip, "One more, please")
    message = failure.error.message
    assert message.startswith("Google says the daily quota for gemini-2.5-flash (20 requests a day on the free "
                              "tier) is used up. It resets at midnight Pacific time: ")
    assert re.search(r"\d\d:\d\d your time \(\w+\), in (\d+ h )?\d+ min\.$", message), message
    assert RPD_FREE in failure.error.hint and "Retrying" not in str(failure)
    assert len(generate_requests(server)) == 1  # not retried: a day is not worth waiting in a cell
    # The next cell is refused before sending, until the reset.
    again = fails(ip, "And another?")
    assert again.error.message.startswith("The daily quota for gemini-2.5-flash (20 requests a day")
    assert len(generate_requests(server)) == 1
    assert ask(ip, "On another model", f"-m {LITE}") == "Echo: On another model"


def test_daily_quota_resets_at_midnight_pacific(ip, server):
    server.queue(Error.quota(retry_delay="13s", limit=20, quota_id=RPD_FREE))
    fails(ip, "used up")
    limiter = shell_limiter()
    [daily] = limiter.learned.for_model(FLASH)
    limiter.learned.clock = lambda: daily.expires + 1  # past the reset
    assert ask(ip, "a new day") == "Echo: a new day"


def test_the_free_tier_meets_no_429_at_all(ip, server):
    server.rate_limit, server.rate_window = 5, 2.0  # the free tier's 5 a minute, in a shortened minute
    config(ip, "quota_tier = 'free'")
    shell_limiter().window = 2.0
    results = gemini_magic.batch("Item {item}", list(range(12)), concurrency=8)
    assert results == [f"Echo: Item {i}" for i in range(12)]
    assert server.rejected == 0


def test_free_tier_daily_count_refuses_before_sending(ip, server):
    config(ip, "quota_tier = 'free'")
    ask(ip, "first")  # names the account
    usage_here(server).add(FLASH, {}, requests=20)
    failure = fails(ip, "One more, please")
    assert failure.error.message.startswith("The daily quota for gemini-2.5-flash (20 requests a day on the free "
                                            "tier) is used up.")
    assert len(generate_requests(server)) == 1


# -- settings through the magic ----------------------------------------------------------------------


def test_rate_limits_config_and_limits_json(ip, server, env, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "limits.json").write_text(json.dumps({FLASH: {"rpm": 7}, "gemma-3-27b-it": {"tpm": 99}}))
    env.setenv("GEMINI_MAGIC_DATA_DIR", str(folder))
    reload_extension(ip)
    limiter = shell_limiter()
    assert limiter.limit(FLASH) == Limit(rpm=7) and limiter.limit("gemma-3-27b-it") == Limit(tpm=99)
    config(ip, 'rate_limits = {"gemini-2.5-flash": {"rpm": 2}}')  # %config wins for the models it names
    limiter = shell_limiter()
    assert limiter.limit(FLASH).rpm == 2 and limiter.limit("gemma-3-27b-it").tpm == 99
    t = FakeTime()
    limiter.clock, limiter.sleep = t.clock, t.sleep
    assert [ask(ip, f"q{i}") for i in range(3)] == ["Echo: q0", "Echo: q1", "Echo: q2"]
    assert sum(t.slept) == pytest.approx(60.6)  # the third in a minute waited a (fake) minute


def test_off_switches_pacing_off_and_the_transport_follows_the_settings(ip, server):
    config(ip, 'rate_limits = {"gemini-2.5-flash": {"rpm": 1}}')
    config(ip, "quota_tier = 'off'")
    limiter = shell_limiter()
    assert not limiter.active
    no_sleeping(limiter)
    for i in range(3):
        ask(ip, f"off {i}")
    config(ip, "shared_rpm = 2")
    assert shell_limiter().shared() == 2 or not shell_limiter().active
    assert magics().connection.transport.inner.limiter is magics().connection.limiter


# -- waiting, as the user sees it -----------------------------------------------------------------------


def test_terminal_prints_the_wait_once(ip, server, capsys):
    config(ip, 'rate_limits = {"gemini-2.5-flash": {"rpm": 1}}')
    limiter = shell_limiter()
    t = FakeTime()
    limiter.clock, limiter.sleep = t.clock, t.sleep
    ask(ip, "first")
    assert "Waiting" not in capsys.readouterr().err
    assert ask(ip, "second") == "Echo: second"
    err = capsys.readouterr().err
    assert err.count("Waiting") == 1
    assert "Waiting 61 s: rate limit: 1 request a minute on gemini-2.5-flash." in err


def _data(msg) -> dict:
    return msg["content"].get("data", {})


@pytest.mark.parametrize("options", ["", "--no-stream"])
def test_notebook_countdown_in_the_placeholder_then_empty(kern, server, options):
    setup = (
        "get_ipython().run_line_magic('config', 'GeminiMagics.rate_limits = {\"gemini-2.5-flash\": {\"rpm\": 1}}')\n"
        "import gemini_magic\n"
        "gemini_magic._magics.engine\n"
        "gemini_magic._magics.connection.limiter.window = 2.0\n"
    )
    try:
        kern.run(setup, check=True)
        kern.run("%%gemini\nfirst", check=True)
        ex = kern.run(f"%%gemini {options}\nsecond", check=True)
    finally:
        kern.run("%config GeminiMagics.rate_limits = {}", check=True)
    outputs = [m for m in ex.outputs if m["msg_type"] in ("display_data", "update_display_data")]
    assert outputs[0]["msg_type"] == "display_data" and _data(outputs[0]) == {"text/plain": ""}
    waiting = [_data(m) for m in outputs if "Waiting" in _data(m).get("text/plain", "")]
    assert waiting, [m["msg_type"] for m in outputs]
    assert re.fullmatch(r"Waiting [12] s: rate limit: 1 request a minute on gemini-2\.5-flash\.",
                        waiting[0]["text/plain"])
    assert outputs[-2]["msg_type"] == "update_display_data" and _data(outputs[-2]) == {"text/plain": ""}
    assert outputs[-1]["msg_type"] == "display_data" and _data(outputs[-1])["text/plain"] == "Echo: second"


# -- usage, counted per endpoint ------------------------------------------------------------------------


def test_usage_is_counted_per_endpoint_and_survives_a_restart(ip, server, capsys):
    server.queue(Reply(text="one two three", usage=usage_metadata(11, 3, 5)),
                 Reply(text="four", usage=usage_metadata(4, 1)))
    ask(ip, "first")
    ask(ip, "second", "--no-stream")
    # 15 in at $0.30, 4 + 5 out and thinking at $2.50 per 1M tokens: 27 millionths of a dollar.
    expected = {"requests": 2, "prompt_tokens": 15, "output_tokens": 4, "thinking_tokens": 5, "cached_tokens": 0,
                "cost_micros": round(15 * 0.3 + 9 * 2.5)}
    assert usage_here(server).day() == {FLASH: expected}  # a new kernel reads the same counts
    # The test server is not Google: nothing counts against Google's quota.
    assert UsageStore(account=account_id(None, TEST_KEY)).day() == {}
    reload_extension(ip)
    ask(ip, "third", f"-m {LITE}")
    capsys.readouterr()
    ip.run_line_magic("gemini", "usage")
    out = capsys.readouterr().out
    assert f"at {server.url.split('://')[1]} (key " in out.splitlines()[0]
    flash = next(line for line in out.splitlines() if line.startswith(FLASH))
    assert flash.split()[:7] == [FLASH, "2", "15", "0", "4", "5", "$0.000027"]
    assert "Quota tier: auto" in out


def test_track_usage_false_counts_nothing(ip, server, capsys):
    config(ip, "track_usage = False")
    ask(ip, "not counted")
    assert usage_here(server).day() == {}
    ip.run_line_magic("gemini", "usage")
    assert "Usage is not tracked" in capsys.readouterr().out


# -- replayed answers cost nothing and teach nothing ------------------------------------------------------


def test_replayed_answers_do_not_count_wait_or_teach(ip, server, tmp_path):
    rec = tmp_path / "answers.gemini.json"
    ip.run_line_magic("gemini", f"record {rec}")
    config(ip, "retry_attempts = 1")
    server.queue(Reply(text="Recorded one", usage=usage_metadata(3, 2)), Error.quota(retry_delay="1s", limit=3))
    assert ask(ip, "Question one") == "Recorded one"
    fails(ip, "limited")
    limiter = shell_limiter()
    limiter.learned.forget()
    counted = usage_here(server).day()

    ip.run_line_magic("gemini", f"replay {rec}")
    config(ip, 'rate_limits = {"gemini-2.5-flash": {"rpm": 1}}')
    limiter = shell_limiter()
    no_sleeping(limiter)
    limiter.acquire(FLASH)  # the one request a minute is used up: any live request would wait
    server.reset()
    for _ in range(2):
        assert ask(ip, "Question one") == "Recorded one"
        assert fails(ip, "limited").error.kind == "quota"
    assert server.requests == []
    assert usage_here(server).day() == counted
    assert limiter.learned.all() == [] and limiter.rejected == 0


# -- problems with the data folder are said once, never fail a cell -------------------------------------


def test_a_damaged_usage_file_is_said_once_and_the_cell_still_answers(ip, server, env, tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "usage.json").write_text("{not json")
    (folder / "learned-limits.json").write_text("[broken")
    env.setenv("GEMINI_MAGIC_DATA_DIR", str(folder))
    reload_extension(ip)
    assert ask(ip, "hello") == "Echo: hello"
    err = capsys.readouterr().err
    assert "usage.json is not valid JSON: it was moved to usage.json.damaged" in err
    assert "learned-limits.json could not be read (JSONDecodeError); it will be rewritten." in err
    assert (folder / "usage.json.damaged").read_text() == "{not json"
    server.queue(Error.quota(retry_delay="0s", limit=9))
    assert ask(ip, "again") == "Echo: again"  # the 429 is learned; the damaged limits file is replaced
    err = capsys.readouterr().err
    assert "usage.json" not in err and "learned-limits.json" not in err  # each said once
    assert json.loads((folder / "learned-limits.json").read_text())["version"] == 1

"""Quota: the client-side limiter, daily quotas, usage counts, and learning from 429s.

The limiter is tested directly with a fake clock and sleep (no real waiting); through
the magic, with the same fake time injected into the shell's limiter, or with short
real windows against the fake server's own rate limit (`server.rate_limit`).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import gemini_magic
from gemini_magic import batches
from gemini_magic.quota import (
    FREE_TIER,
    SHARED_GEMINI_RPD,
    SHARED_RPM,
    DailyQuotaReached,
    Limit,
    Limiter,
    UsageStore,
    Wait,
    quota_day,
    usage_table,
)
from tests.conftest import ask, fails
from tests.fake_gemini import Error, Reply
from tests.fake_gemini.server import usage_metadata

REPO = Path(__file__).resolve().parent.parent
FLASH = "gemini-2.5-flash"
LITE = "gemini-2.5-flash-lite"
PACIFIC = ZoneInfo("America/Los_Angeles")


# -- helpers ------------------------------------------------------------------------------


class FakeTime:
    """A clock that only moves when the limiter sleeps (or a test says so)."""

    def __init__(self, start: float = 1000.0):
        self.now = start
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, "the limiter slept for nothing"
        self.slept.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


def fake_limiter(tier: str = "free", overrides: dict | None = None, **kwargs) -> tuple[Limiter, FakeTime]:
    t = FakeTime()
    return Limiter(tier, overrides, clock=t.clock, sleep=t.sleep, **kwargs), t


def free_requests(limiter: Limiter, t: FakeTime, model: str, count: int) -> None:
    """`count` acquires that must not wait."""
    for i in range(count):
        limiter.acquire(model)
        assert t.slept == [], f"request {i + 1} on {model} waited"


@pytest.fixture(autouse=True)
def _fresh_batch_cache():
    batches._finished.clear()
    yield
    batches._finished.clear()


@pytest.fixture
def data(env, tmp_path):
    """A data folder of this test's own (usage.json, limits.json): the session's shared
    one collects every other test's counts, which would use up the daily quotas."""
    folder = tmp_path / "gemini-magic-data"
    env.setenv("GEMINI_MAGIC_DATA_DIR", str(folder))
    return folder


@pytest.fixture
def qip(data, ip):
    """The in-process shell, with its own data folder."""
    return ip


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
    ip.run_line_magic("unload_ext", "gemini_magic")
    ip.run_line_magic("load_ext", "gemini_magic")


def generate_requests(server) -> list:
    return [r for r in server.requests if r.action in ("generateContent", "streamGenerateContent")]


# -- the table, by model family --------------------------------------------------------------


@pytest.mark.parametrize(
    "model, expected",
    [
        (LITE, Limit(rpm=10, tpm=250_000, rpd=20, tpd=15_000_000)),
        ("models/gemini-2.0-flash-lite", Limit(rpm=10, tpm=250_000, rpd=20, tpd=15_000_000)),
        (FLASH, Limit(rpm=5, tpm=250_000, rpd=20, tpd=15_000_000)),
        ("models/gemini-3-flash-preview", Limit(rpm=5, tpm=250_000, rpd=20, tpd=15_000_000)),
        ("gemini-2.5-pro", Limit(tpd=3_000_000)),
        ("gemma-3-27b-it", Limit(rpm=30, tpm=15_000, rpd=14_400, tpd=4_000_000)),
        ("gemma-3-4b-it", Limit(rpm=30, tpm=15_000, rpd=14_400, tpd=4_000_000)),
        ("gemini-exp-1206", Limit()),  # unknown: only the shared limits apply
    ],
)
def test_free_tier_table_by_model_family(model, expected):
    assert Limiter("free").limit(model) == expected


def test_flash_lite_gets_its_own_ten_a_minute_not_flashs_five():
    # "flash" is a substring of "flash-lite": the more specific family must match first.
    assert [family for family, _ in FREE_TIER].index("flash-lite") < [f for f, _ in FREE_TIER].index("flash")
    limiter, t = fake_limiter()
    free_requests(limiter, t, LITE, 10)
    limiter.acquire(LITE)
    assert t.slept, "the 11th Flash-Lite request in a minute did not wait"
    limiter, t = fake_limiter()
    free_requests(limiter, t, FLASH, 5)
    limiter.acquire(FLASH)
    assert t.slept, "the 6th Flash request in a minute did not wait"


def test_unknown_model_has_only_the_shared_limit():
    limiter, t = fake_limiter()
    free_requests(limiter, t, "gemini-exp-1206", SHARED_RPM)
    limiter.acquire("gemini-exp-1206")
    assert sum(t.slept) == pytest.approx(60.6)


def test_shared_limit_spans_models():
    limiter, t = fake_limiter("paid")  # no per-model limits: only the shared one
    assert limiter.shared_rpm == SHARED_RPM == 60
    models = ["gemini-a", "gemini-b", "gemma-c"]
    for i in range(60):
        limiter.acquire(models[i % 3])
    assert t.slept == []
    limiter.acquire("gemini-d")  # a fourth model, never used: still waits for the shared window
    assert t.now == pytest.approx(1060.6)

    unlimited, t = fake_limiter("paid", shared_rpm=None)
    free_requests(unlimited, t, "gemini-a", 200)


# -- sliding windows, with a fake clock -------------------------------------------------------


def test_sliding_window_next_request_waits_until_the_oldest_leaves():
    limiter, t = fake_limiter()
    sent = []
    for _ in range(5):  # Flash: 5 a minute, sent 10 s apart
        limiter.acquire(FLASH)
        sent.append(t.now)
        t.advance(10)
    assert sent == [1000, 1010, 1020, 1030, 1040] and t.slept == []
    t.now = 1045.0
    limiter.acquire(FLASH)  # the 6th: waits for the one sent at 1000 to leave the window
    # A slot frees 1% of the window after the oldest leaves it (travel time to the server).
    assert t.now == pytest.approx(1060.6)
    limiter.acquire(FLASH)  # the 7th: now the oldest is the one sent at 1010
    assert t.now == pytest.approx(1070.6)
    # It waits in steps of at most a second, so a countdown can tick.
    assert max(t.slept) <= 1.0 and len(t.slept) > 20
    assert limiter.waited == pytest.approx(sum(t.slept))


def test_a_slot_counts_from_when_the_server_answered():
    """The server counts a request when it arrives: the time it took to get there (a
    new connection, a slow network) is not free quota."""
    limiter, t = fake_limiter("paid", {"gemini-x": {"rpm": 1}})
    slot = limiter.acquire("gemini-x")
    t.advance(5)  # the request travels, the server answers
    limiter.confirm(slot)
    limiter.acquire("gemini-x")
    assert t.now == pytest.approx(1005 + 60.6)  # a window from the answer, not from the acquire
    limiter.confirm(None)  # a request that was never limited (tier off): nothing to move


def test_requests_that_left_the_window_free_their_slots():
    limiter, t = fake_limiter()
    free_requests(limiter, t, FLASH, 5)
    t.advance(61)
    free_requests(limiter, t, FLASH, 5)  # a minute later: five new slots, no wait


def test_tokens_per_minute():
    limiter, t = fake_limiter("paid", {"gemini-x": {"tpm": 1000}})
    limiter.acquire("gemini-x", tokens=600)
    limiter.acquire("gemini-x", tokens=300)  # 900 of 1,000
    assert t.slept == []
    waits: list[Wait] = []
    with limiter.listening(waits.append):
        limiter.acquire("gemini-x", tokens=200)  # 1,100: waits for the first 600 to leave
    assert t.now == pytest.approx(1060.6)
    assert waits[0].reason == "rate limit: 1,000 tokens a minute on gemini-x"
    # A request larger than the whole budget still goes when the window is empty.
    big, t = fake_limiter("paid", {"gemini-x": {"tpm": 1000}})
    big.acquire("gemini-x", tokens=5000)
    assert t.slept == []


def test_countdown_callback_reports_each_step_on_this_thread_only():
    limiter, t = fake_limiter()
    free_requests(limiter, t, FLASH, 5)
    t.advance(50)
    seen: list[Wait] = []
    elsewhere: list[Wait] = []
    outer = elsewhere.append
    with limiter.listening(outer):
        with limiter.listening(seen.append):
            limiter.acquire(FLASH)
        # The previous listener is back after the inner block.
        assert limiter.listener.callback == outer
    assert getattr(limiter.listener, "callback", None) is None
    seconds = [w.seconds for w in seen]
    assert seconds[0] == pytest.approx(10.6)
    assert seconds == sorted(seconds, reverse=True) and len(seconds) == 11  # 10.6, 9.6, ..., 0.6
    assert all(w.reason == f"rate limit: 5 requests a minute on {FLASH}" for w in seen)
    assert elsewhere == []

    # Another thread's wait is not reported to this thread's listener.
    limiter, t = fake_limiter()
    free_requests(limiter, t, FLASH, 5)
    other: list[Wait] = []
    done = threading.Event()

    def waiter():
        limiter.acquire(FLASH)  # the window is full: waits, with no listener on its thread
        done.set()

    with limiter.listening(other.append):
        thread = threading.Thread(target=waiter)
        thread.start()
        thread.join(timeout=10)
    assert done.is_set() and t.slept and other == []


def test_off_tier_never_waits_or_refuses(tmp_path):
    store = UsageStore(tmp_path / "usage.json")
    store.add(FLASH, {}, requests=10_000)
    limiter, t = fake_limiter("off", {FLASH: {"rpm": 1}}, usage=store)
    assert not limiter.active
    free_requests(limiter, t, FLASH, 100)


def test_paid_tier_keeps_only_overrides():
    limiter = Limiter("paid", {FLASH: {"rpm": 1000, "rpd": 10_000}})
    assert limiter.limit(FLASH) == Limit(rpm=1000, rpd=10_000)
    assert limiter.limit(LITE) == Limit()
    limiter, t = fake_limiter("paid")
    free_requests(limiter, t, FLASH, 60)  # the table's 5 a minute is gone; the shared 60 stays


def test_overrides_merge_over_the_table():
    limiter = Limiter("free", {FLASH: {"rpm": 1000, "rpd": None, "unknown_key": 3}})
    assert limiter.limit(FLASH) == Limit(rpm=1000, tpm=250_000, rpd=None, tpd=15_000_000)
    assert limiter.limit("models/" + FLASH).rpm == 1000
    assert limiter.limit(LITE).rpm == 10  # other models keep the table


# -- learning from a 429 ------------------------------------------------------------------------


def test_penalize_blocks_until_the_servers_delay_and_learns_a_lower_rpm():
    limiter, t = fake_limiter()
    limiter.penalize("models/" + FLASH, 30.0, quota_value=2)
    state = limiter._models[FLASH]
    assert state.blocked_until == pytest.approx(1030.0)
    assert state.learned_rpm == 2 and limiter.limit(FLASH).rpm == 2
    reasons: list[str] = []
    with limiter.listening(lambda w: reasons.append(w.reason)):
        limiter.acquire(FLASH)
    assert t.now == pytest.approx(1030.6)
    assert reasons[0] == f"Gemini asked to wait (429) on {FLASH}"
    limiter.acquire(FLASH)  # the learned 2 a minute: a second one goes at once
    assert t.now == pytest.approx(1030.6)
    limiter.acquire(FLASH)  # a third waits for the window
    assert t.now == pytest.approx(1030.6 + 60.6)


def test_penalize_keeps_the_lower_figure_and_ignores_daily_quotas():
    limiter, _ = fake_limiter()
    limiter.penalize(FLASH, None, quota_value=50)  # higher than the table's 5: not learned
    assert limiter._models[FLASH].learned_rpm is None and limiter.limit(FLASH).rpm == 5
    assert limiter._models[FLASH].blocked_until == 0.0
    limiter.penalize(FLASH, 5.0, quota_value=3, per_minute=False)  # a per-day quota's figure
    assert limiter.limit(FLASH).rpm == 5
    paid, _ = fake_limiter("paid")
    paid.penalize(FLASH, 1.0, quota_value=7)  # no table figure: the server's is kept
    assert paid.limit(FLASH).rpm == 7


# -- the daily quotas, checked before sending ---------------------------------------------------


def test_daily_requests_quota_is_checked_before_sending(tmp_path):
    store = UsageStore(tmp_path / "usage.json", today=lambda: "2025-06-01")
    store.add(FLASH, {}, requests=19)
    limiter, _ = fake_limiter(usage=store)
    limiter.acquire(FLASH)  # the 20th of 20 may go
    store.add(FLASH, {})
    with pytest.raises(DailyQuotaReached, match=r"daily quota of 20 requests on gemini-2.5-flash is used up"):
        limiter.acquire(FLASH)
    limiter.acquire(LITE)  # another model has its own quota
    assert len(limiter._models[FLASH].requests) == 1  # the refused request took no slot


def test_daily_tokens_quota(tmp_path):
    store = UsageStore(tmp_path / "usage.json", today=lambda: "2025-06-01")
    store.add("gemini-2.5-pro", {"prompt_tokens": 2_000_000, "output_tokens": 900_000, "thinking_tokens": 99_999})
    limiter, _ = fake_limiter(usage=store)
    limiter.acquire("gemini-2.5-pro")
    store.add("gemini-2.5-pro", {"thinking_tokens": 1})  # 3,000,000 of 3,000,000
    with pytest.raises(DailyQuotaReached, match=r"3,000,000 tokens on gemini-2.5-pro"):
        limiter.acquire("gemini-2.5-pro")


def test_shared_daily_quota_across_gemini_models(tmp_path):
    store = UsageStore(tmp_path / "usage.json", today=lambda: "2025-06-01")
    # Models with no daily request quota of their own, so only the shared one counts.
    store.add("gemini-exp-1206", {}, requests=SHARED_GEMINI_RPD - 1)
    store.add("gemma-3-27b-it", {}, requests=500)  # Gemma is not a Gemini model
    limiter, _ = fake_limiter(usage=store)
    limiter.acquire("gemini-2.5-pro")  # 1,499 of 1,500
    store.add("gemini-2.5-pro", {})
    with pytest.raises(DailyQuotaReached, match=r"1,500 requests across Gemini models"):
        limiter.acquire("gemini-2.5-pro")
    with pytest.raises(DailyQuotaReached):
        limiter.acquire("gemini-exp-other")
    limiter.acquire("gemma-3-27b-it")  # Gemma is outside the shared Gemini quota
    paid, _ = fake_limiter("paid", usage=store)
    paid.acquire("gemini-2.5-pro")  # the shared daily quota is the free tier's


def test_cell_fails_before_sending_when_the_daily_quota_is_used_up(qip, server, data):
    UsageStore().add(FLASH, {}, requests=20)  # 20 of Flash's 20 today, in the data folder
    config(qip, "quota_tier = 'free'")
    failure = fails(qip, "One more, please")
    assert "The daily quota of 20 requests on gemini-2.5-flash is used up (nothing was sent)." in str(failure)
    assert "midnight Pacific" in failure.error.hint
    assert server.requests == []  # refused before sending, not after a 429
    assert ask(qip, "On the lighter model", f"-m {LITE}") == "Echo: On the lighter model"


# -- overrides through the magic ----------------------------------------------------------------


def test_rate_limits_config_overrides_the_table(qip, server):
    config(qip, "quota_tier = 'free'")
    config(qip, 'rate_limits = {"gemini-2.5-flash": {"rpm": 2, "rpd": 1000}}')
    limiter = shell_limiter()
    assert limiter.limit(FLASH) == Limit(rpm=2, tpm=250_000, rpd=1000, tpd=15_000_000)
    t = FakeTime()
    limiter.clock, limiter.sleep = t.clock, t.sleep
    assert [ask(qip, f"q{i}") for i in range(2)] == ["Echo: q0", "Echo: q1"]
    assert t.slept == []
    assert ask(qip, "q2") == "Echo: q2"  # the third in a minute waited a (fake) minute
    assert sum(t.slept) == pytest.approx(60.6)
    assert len(generate_requests(server)) == 3


def test_limits_json_in_the_data_folder(qip, data):
    data.mkdir(parents=True)
    (data / "limits.json").write_text(json.dumps({FLASH: {"rpm": 7}, "gemma-3-27b-it": {"tpm": 99}}))
    config(qip, "quota_tier = 'free'")
    limiter = shell_limiter()
    assert limiter.limit(FLASH).rpm == 7 and limiter.limit(FLASH).rpd == 20
    assert limiter.limit("gemma-3-27b-it").tpm == 99
    # %config wins over the file for the models it names.
    config(qip, 'rate_limits = {"gemini-2.5-flash": {"rpm": 3}}')
    limiter = shell_limiter()
    assert limiter.limit(FLASH).rpm == 3 and limiter.limit("gemma-3-27b-it").tpm == 99


def test_unreadable_limits_json_is_ignored(qip, data, server):
    data.mkdir(parents=True)
    (data / "limits.json").write_text("{not json")
    config(qip, "quota_tier = 'free'")
    assert shell_limiter().limit(FLASH).rpm == 5
    assert ask(qip, "still works") == "Echo: still works"


def test_quota_tier_paid_and_off_through_config(qip, server):
    config(qip, 'rate_limits = {"gemini-2.5-flash": {"rpm": 1}}')
    config(qip, "quota_tier = 'paid'")
    limiter = shell_limiter()
    assert limiter.tier == "paid" and limiter.limit(FLASH) == Limit(rpm=1)
    assert limiter.limit(LITE) == Limit()
    config(qip, "quota_tier = 'off'")
    limiter = shell_limiter()
    assert limiter.tier == "off" and not limiter.active
    t = FakeTime()
    limiter.clock, limiter.sleep = t.clock, t.sleep
    for i in range(3):
        assert ask(qip, f"off {i}") == f"Echo: off {i}"
    assert t.slept == []
    config(qip, "shared_rpm = 2")
    assert shell_limiter().shared_rpm == 2
    # The transport uses the limiter of the settings in force.
    assert magics().connection.transport.limiter is magics().connection.limiter


@pytest.mark.parametrize("value, tier", [("paid", "paid"), (" OFF ", "off"), ("free", "free"),
                                         ("bogus", "free"), (None, "free")])
def test_environment_sets_the_default_tier(qip, env, value, tier):
    if value is None:
        env.delenv("GEMINI_MAGIC_QUOTA", raising=False)
    else:
        env.setenv("GEMINI_MAGIC_QUOTA", value)
    reload_extension(qip)
    assert magics().quota_tier == tier
    assert shell_limiter().tier == tier
    config(qip, "quota_tier = 'paid'" if tier != "paid" else "quota_tier = 'free'")  # %config still wins
    assert shell_limiter().tier == ("paid" if tier != "paid" else "free")


# -- waiting, as the user sees it ---------------------------------------------------------------


def test_terminal_prints_the_wait_once(qip, server, capsys):
    config(qip, "quota_tier = 'free'")
    config(qip, 'rate_limits = {"gemini-2.5-flash": {"rpm": 1}}')
    limiter = shell_limiter()
    t = FakeTime()
    limiter.clock, limiter.sleep = t.clock, t.sleep
    ask(qip, "first")
    assert "Waiting" not in capsys.readouterr().err
    assert ask(qip, "second") == "Echo: second"
    assert len(t.slept) == 61  # 61 ticks of the countdown...
    err = capsys.readouterr().err
    # ...and one line.
    assert err.count("Waiting") == 1
    assert "Waiting 61 s: rate limit: 1 request a minute on gemini-2.5-flash." in err


def _data(msg) -> dict:
    return msg["content"].get("data", {})


@pytest.mark.parametrize("options", ["", "--no-stream"])
def test_notebook_countdown_in_the_placeholder_then_empty(kern, server, options):
    setup = (
        "import os, tempfile, gemini_magic\n"
        "os.environ['GEMINI_MAGIC_DATA_DIR'] = tempfile.mkdtemp()\n"
        "get_ipython().run_line_magic('config', 'GeminiMagics.quota_tier = \"free\"')\n"
        "get_ipython().run_line_magic('config', 'GeminiMagics.rate_limits = {\"gemini-2.5-flash\": {\"rpm\": 1}}')\n"
        "gemini_magic._magics.engine\n"
        "gemini_magic._magics.connection.limiter.window = 2.0\n"
    )
    try:
        kern.run(setup, check=True)
        kern.run("%%gemini\nfirst", check=True)
        ex = kern.run(f"%%gemini {options}\nsecond", check=True)
    finally:
        kern.run("%config GeminiMagics.quota_tier = 'off'\n%config GeminiMagics.rate_limits = {}", check=True)
    outputs = [m for m in ex.outputs if m["msg_type"] in ("display_data", "update_display_data")]
    # nbval's rule: the first state of the display is empty...
    assert outputs[0]["msg_type"] == "display_data" and _data(outputs[0]) == {"text/plain": ""}
    waiting = [_data(m) for m in outputs if "Waiting" in _data(m).get("text/plain", "")]
    assert waiting, [m["msg_type"] for m in outputs]
    assert re.fullmatch(r"Waiting [12] s: rate limit: 1 request a minute on gemini-2\.5-flash\.",
                        waiting[0]["text/plain"])
    assert re.search(r"Waiting [12] s: rate limit: 1 request a minute on gemini-2\.5-flash\.", waiting[0]["text/html"])
    placeholder = outputs[0]["content"]["transient"]["display_id"]
    assert all(m["content"]["transient"]["display_id"] == placeholder for m in outputs[1:-1])
    # ...and it ends empty, with the answer displayed once, as a new output.
    assert outputs[-2]["msg_type"] == "update_display_data" and _data(outputs[-2]) == {"text/plain": ""}
    assert outputs[-1]["msg_type"] == "display_data" and _data(outputs[-1])["text/plain"] == "Echo: second"
    assert len(generate_requests(server)) == 2


# -- usage, counted and kept ---------------------------------------------------------------------


def test_usage_counts_requests_and_tokens_and_survives_a_restart(qip, server, data):
    server.queue(Reply(text="one two three", usage=usage_metadata(11, 3, 5)),
                 Reply(text="four", usage=usage_metadata(4, 1)))
    ask(qip, "first")
    ask(qip, "second", "--no-stream")
    expected = {"requests": 2, "prompt_tokens": 15, "output_tokens": 4, "thinking_tokens": 5}
    # A new store, as in a new kernel, reads the same counts from the data folder.
    assert UsageStore().day() == {FLASH: expected}
    assert json.loads((data / "usage.json").read_text())[quota_day()][FLASH] == expected

    reload_extension(qip)  # counting goes on where it was
    server.queue(Reply(text="x", usage=usage_metadata(2, 1)))
    ask(qip, "third", f"-m {LITE}")
    ask(qip, "fourth")  # the echo: usage counted in whitespace words
    today = UsageStore().day()
    assert today[LITE] == {"requests": 1, "prompt_tokens": 2, "output_tokens": 1, "thinking_tokens": 0}
    assert today[FLASH]["requests"] == 3
    assert today[FLASH]["output_tokens"] == 4 + 2  # "Echo: fourth"


def test_track_usage_false_counts_nothing(qip, server, capsys):
    config(qip, "track_usage = False")
    ask(qip, "not counted")
    assert UsageStore().day() == {}
    qip.run_line_magic("gemini", "usage")
    assert "Usage is not tracked" in capsys.readouterr().out


def test_usage_command_prints_the_table_with_the_quota(qip, server, capsys):
    config(qip, "quota_tier = 'free'")
    qip.run_line_magic("gemini", "usage")
    assert f"No requests counted today ({quota_day()}, Pacific time)." in capsys.readouterr().out
    server.queue(Reply(text="a b", usage=usage_metadata(1000, 2, 30)), Reply(text="c", usage=usage_metadata(5, 1)))
    ask(qip, "one")
    ask(qip, "two", "-m gemma-3-27b-it")
    capsys.readouterr()
    qip.run_line_magic("gemini", "usage")
    out = capsys.readouterr().out
    assert f"Usage on {quota_day()} (Pacific time" in out
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("model"))
    assert header.split() == ["model", "requests", "prompt", "output", "thinking", "daily", "quota"]
    flash = next(line for line in lines if line.startswith(FLASH))
    assert flash.split()[:5] == [FLASH, "1", "1,000", "2", "30"]
    assert "1/20 requests, 1,032/15,000,000 tokens" in flash
    gemma = next(line for line in lines if line.startswith("gemma-3-27b-it"))
    assert re.search(r"1/14,?400 requests, 6/4,000,000 tokens", gemma)
    # Without a tier the quota column is empty.
    config(qip, "quota_tier = 'off'")
    qip.run_line_magic("gemini", "usage")
    off = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(FLASH))
    assert off.rstrip().endswith("-")


def test_usage_table_function(tmp_path):
    store = UsageStore(tmp_path / "usage.json", today=lambda: "2025-06-01")
    store.add(LITE, {"prompt_tokens": 1_234_567, "output_tokens": 8})
    text = usage_table(store, Limiter("free"))
    assert text.splitlines()[0] == "Usage on 2025-06-01 (Pacific time; daily quotas reset at midnight there)"
    assert "1/20 requests, 1,234,575/15,000,000 tokens" in text
    assert "-" in usage_table(store, None).splitlines()[-1]


def test_two_stores_adding_concurrently_lose_no_counts(tmp_path):
    """Two kernels counting at once, in two processes, into one usage.json."""
    path, go = tmp_path / "usage.json", tmp_path / "go"
    child = (
        "import pathlib, sys, time\n"
        "from gemini_magic.quota import UsageStore\n"
        "store = UsageStore(pathlib.Path(sys.argv[1]), today=lambda: '2025-06-01')\n"
        "go = pathlib.Path(sys.argv[2]); pathlib.Path(sys.argv[3]).touch()\n"
        "deadline = time.monotonic() + 30\n"
        "while not go.exists() and time.monotonic() < deadline: time.sleep(0.001)\n"
        "for _ in range(150): store.add('gemini-2.5-flash', {'output_tokens': 2})\n"
    )
    ready = [tmp_path / "ready-a", tmp_path / "ready-b"]
    procs = [subprocess.Popen([sys.executable, "-c", child, str(path), str(go), str(r)], cwd=REPO) for r in ready]
    try:
        deadline = time.monotonic() + 30
        while not all(r.exists() for r in ready) and time.monotonic() < deadline:
            time.sleep(0.01)
        go.touch()  # both start adding at once
        for proc in procs:
            assert proc.wait(timeout=60) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    counts = UsageStore(path, today=lambda: "2025-06-01").day()[FLASH]
    assert counts["requests"] == 300 and counts["output_tokens"] == 600


def test_two_stores_in_one_process_interleaved(tmp_path):
    path = tmp_path / "usage.json"
    a = UsageStore(path, today=lambda: "2025-06-01")
    b = UsageStore(path, today=lambda: "2025-06-01")
    for _ in range(5):
        a.add(FLASH, {"prompt_tokens": 1})
        b.add(FLASH, {"prompt_tokens": 10})
    assert a.day() == b.day() == {FLASH: {"requests": 10, "prompt_tokens": 55, "output_tokens": 0,
                                          "thinking_tokens": 0}}


def test_usage_by_day_and_old_days_are_dropped(tmp_path):
    day = {"value": "2025-01-01"}
    store = UsageStore(tmp_path / "usage.json", today=lambda: day["value"])
    store.add(FLASH, {})
    day["value"] = "2025-01-02"  # midnight Pacific passed: a fresh day
    assert store.day() == {}
    store.add(FLASH, {})
    assert store.day("2025-01-01")[FLASH]["requests"] == 1
    for i in range(1, 41):
        day["value"] = f"2025-03-{i:02d}" if i <= 31 else f"2025-04-{i - 31:02d}"
        store.add(FLASH, {})
    kept = json.loads((tmp_path / "usage.json").read_text())
    assert len(kept) == UsageStore.KEEP_DAYS and min(kept) == "2025-03-10" and max(kept) == "2025-04-09"


@pytest.mark.parametrize("content", ["", "{not json", "[1, 2, 3]", "null"])
def test_corrupt_usage_json_is_tolerated(qip, server, data, content, capsys):
    data.mkdir(parents=True)
    (data / "usage.json").write_text(content)
    config(qip, "quota_tier = 'free'")
    assert ask(qip, "hello") == "Echo: hello"
    assert UsageStore().day()[FLASH]["requests"] == 1  # the file is valid again
    qip.run_line_magic("gemini", "usage")
    assert "1/20 requests" in capsys.readouterr().out


@pytest.mark.parametrize("today_value", [["oops"], {FLASH: 5}, {FLASH: {"requests": "many"}}])
def test_usage_json_of_the_wrong_shape_is_tolerated(qip, server, data, today_value, capsys):
    """Valid JSON, wrong shape (hand-edited, or another version's): cells must still work."""
    data.mkdir(parents=True)
    (data / "usage.json").write_text(json.dumps({quota_day(): today_value, "2025-01-01": {}}))
    config(qip, "quota_tier = 'free'")
    assert ask(qip, "hello") == "Echo: hello"
    qip.run_line_magic("gemini", "usage")
    assert FLASH in capsys.readouterr().out


# -- replayed answers cost nothing --------------------------------------------------------------


def test_replayed_answers_do_not_count_and_do_not_wait(qip, server, tmp_path):
    rec = tmp_path / "answers.gemini.json"
    config(qip, "quota_tier = 'free'")
    qip.run_line_magic("gemini", f"record {rec}")
    server.queue(Reply(text="Recorded one", usage=usage_metadata(3, 2)), Reply(text="Recorded two"))
    assert ask(qip, "Question one") == "Recorded one"
    assert ask(qip, "Question two", "--no-stream") == "Recorded two"
    counted = UsageStore().day()
    assert counted[FLASH]["requests"] == 2

    qip.run_line_magic("gemini", f"replay {rec}")
    config(qip, 'rate_limits = {"gemini-2.5-flash": {"rpm": 1}}')
    limiter = shell_limiter()

    def no_waiting(seconds):
        raise AssertionError(f"a replayed answer waited {seconds} s")

    limiter.sleep = no_waiting
    limiter.acquire(FLASH)  # the one request a minute is used up: any live request would wait
    server.reset()
    for _ in range(2):
        assert ask(qip, "Question one") == "Recorded one"
        assert ask(qip, "Question two", "--no-stream") == "Recorded two"
    assert server.requests == []
    assert UsageStore().day() == counted
    assert limiter.waited == 0 and len(limiter._models[FLASH].requests) == 1


# -- a 429 that still happens -------------------------------------------------------------------


def test_a_429_is_retried_after_the_servers_delay_and_the_limiter_learns(qip, server, capsys):
    server.rate_limit, server.rate_window = 1, 1.5  # the server allows 1 request in 1.5 s
    config(qip, "quota_tier = 'paid'")  # no table: the client does not know the server's limit
    limiter = shell_limiter()
    limiter.window = 1.5
    assert limiter.limit(FLASH).rpm is None

    assert ask(qip, "first") == "Echo: first"
    assert ask(qip, "second") == "Echo: second"  # a 429, then the retry after retryDelay
    err = capsys.readouterr().err
    assert server.rejected == 1
    retry = re.search(r"Quota exhausted: GenerateRequestsPerMinutePerProjectPerModel-FreeTier, limit 1\. "
                      r"Retrying in ([\d.]+) s \(attempt 2 of 4\)\.", err)
    assert retry, err
    assert 0 < float(retry.group(1)) <= 1.5  # the server's retryDelay, not a backoff of its own
    sent = [r.last_user_text() for r in generate_requests(server)]
    assert sent == ["first", "second", "second"]  # the 429, then its retry

    # What the limiter learned: the server's delay and its figure.
    state = limiter._models[FLASH]
    assert state.blocked_until > 0
    assert state.learned_rpm == 1 and limiter.limit(FLASH).rpm == 1

    # So the next cell waits for its slot instead of collecting another 429.
    assert ask(qip, "third") == "Echo: third"
    assert server.rejected == 1
    assert "Waiting" in capsys.readouterr().err


def test_a_429_in_replay_teaches_nothing(qip, server, tmp_path):
    rec = tmp_path / "quota.gemini.json"
    config(qip, 'retry_max_wait = 0.0')  # no retry: the 429 is the answer
    qip.run_line_magic("gemini", f"record {rec}")
    server.queue(Error.quota(retry_delay="0.2s", limit=3))
    fails(qip, "limited")
    config(qip, "quota_tier = 'free'")
    qip.run_line_magic("gemini", f"replay {rec}")
    limiter = shell_limiter()
    fails(qip, "limited")
    assert FLASH not in limiter._models or limiter._models[FLASH].learned_rpm is None


# -- the quota day --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "moment, day",
    [
        # Winter (PST, UTC-8): the day turns at 08:00 UTC.
        (datetime(2025, 1, 15, 7, 59, 59, tzinfo=UTC), "2025-01-14"),
        (datetime(2025, 1, 15, 8, 0, tzinfo=UTC), "2025-01-15"),
        # Summer (PDT, UTC-7): at 07:00 UTC.
        (datetime(2025, 7, 1, 6, 59, 59, tzinfo=UTC), "2025-06-30"),
        (datetime(2025, 7, 1, 7, 0, tzinfo=UTC), "2025-07-01"),
        # The day DST starts (2025-03-09, 02:00 PST -> 03:00 PDT) is 23 hours long.
        (datetime(2025, 3, 9, 7, 59, tzinfo=UTC), "2025-03-08"),
        (datetime(2025, 3, 9, 8, 0, tzinfo=UTC), "2025-03-09"),
        (datetime(2025, 3, 10, 6, 59, tzinfo=UTC), "2025-03-09"),
        (datetime(2025, 3, 10, 7, 0, tzinfo=UTC), "2025-03-10"),
        # The day DST ends (2025-11-02, 02:00 PDT -> 01:00 PST) is 25 hours long.
        (datetime(2025, 11, 2, 6, 59, tzinfo=UTC), "2025-11-01"),
        (datetime(2025, 11, 2, 7, 0, tzinfo=UTC), "2025-11-02"),
        (datetime(2025, 11, 3, 7, 59, tzinfo=UTC), "2025-11-02"),
        (datetime(2025, 11, 3, 8, 0, tzinfo=UTC), "2025-11-03"),
        # Any time zone: 09:00 in Paris is midnight in California in January.
        (datetime(2025, 1, 15, 8, 59, tzinfo=ZoneInfo("Europe/Paris")), "2025-01-14"),
        (datetime(2025, 1, 15, 9, 0, tzinfo=ZoneInfo("Europe/Paris")), "2025-01-15"),
        (datetime(2025, 1, 15, 12, 0, tzinfo=ZoneInfo("Asia/Tokyo")), "2025-01-14"),
    ],
)
def test_quota_day_rolls_at_midnight_pacific(moment, day):
    assert quota_day(moment) == day


def test_quota_day_now_is_todays_date_in_california():
    before = datetime.now(PACIFIC).date().isoformat()
    today = quota_day()
    after = datetime.now(PACIFIC).date().isoformat()
    assert today in (before, after)


# -- batches go through the same limiter -----------------------------------------------------------


def test_batch_waits_count_in_the_limiter_and_usage(qip, server):
    config(qip, "quota_tier = 'free'")
    config(qip, 'rate_limits = {"gemini-2.5-flash": {"rpm": 3}}')
    limiter = shell_limiter()
    t = FakeTime()
    limiter.clock, limiter.sleep = t.clock, t.sleep
    results = gemini_magic.batch("Item {item}", ["a", "b", "c", "d"], concurrency=1)
    assert results == ["Echo: Item a", "Echo: Item b", "Echo: Item c", "Echo: Item d"]
    assert sum(t.slept) == pytest.approx(60.6)  # the fourth waited for the (fake) minute
    assert UsageStore().day()[FLASH]["requests"] == 4

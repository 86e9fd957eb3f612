"""Limits Google stated, kept in the data folder: per account, across kernels, until they expire."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from gemini_magic.transport.learned import (
    GOOGLE_ENDPOINT,
    MINUTE_LIMIT_TTL,
    LearnedLimits,
    account_id,
    parse_violation,
)
from tests.conftest import TEST_KEY, FakeTime

REPO = Path(__file__).resolve().parent.parent
FLASH = "gemini-2.5-flash"


def stated(quota_id: str = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", value: int = 5, now: float = 0.0,
           model: str = FLASH):
    return parse_violation({"quotaId": quota_id, "quotaValue": str(value), "quotaDimensions": {"model": model}},
                           model, now=now)


def test_accounts_are_an_endpoint_and_a_fingerprint_never_the_key():
    google = account_id(None, TEST_KEY)
    assert google.startswith(GOOGLE_ENDPOINT + "#") and TEST_KEY not in google
    assert account_id(None, TEST_KEY) == google  # stable
    assert account_id(None, "another-key") != google
    assert account_id("http://127.0.0.1:5555", TEST_KEY) != google
    assert account_id("http://127.0.0.1:5555/", None) == "http://127.0.0.1:5555"


def test_what_one_kernel_learns_the_next_one_starts_with(tmp_path):
    path = tmp_path / "learned-limits.json"
    t = FakeTime()
    first = LearnedLimits(path, clock=t.wall)
    first.use_account(account_id(None, TEST_KEY))
    first.learn([stated(now=t.wall())])
    # A new kernel: a new store on the same file.
    second = LearnedLimits(path, clock=t.wall)
    second.use_account(account_id(None, TEST_KEY))
    [kept] = second.for_model(FLASH)
    assert (kept.metric, kept.window, kept.value, kept.tier) == ("requests", "minute", 5, "free")
    assert TEST_KEY not in path.read_text()
    # Another key, or another endpoint (a test server, a gateway), starts with nothing.
    for account in (account_id(None, "other-key"), account_id("http://127.0.0.1:9", TEST_KEY)):
        other = LearnedLimits(path, clock=t.wall)
        other.use_account(account)
        assert other.all() == []


def test_a_kernel_running_meanwhile_sees_what_another_learned(tmp_path):
    path = tmp_path / "learned-limits.json"
    t = FakeTime()
    running = LearnedLimits(path, clock=t.wall)
    assert running.all() == []
    child = (
        "import sys, pathlib\n"
        "from gemini_magic.transport.learned import LearnedLimits, parse_violation\n"
        f"store = LearnedLimits(pathlib.Path(sys.argv[1]), clock=lambda: {t.wall()})\n"
        "store.learn([parse_violation({'quotaId': 'GenerateRequestsPerMinutePerProjectPerModel-FreeTier',"
        " 'quotaValue': '7'}, 'gemini-2.5-pro', now=" + repr(t.wall()) + ")])\n"
    )
    subprocess.run([sys.executable, "-c", child, str(path)], cwd=REPO, check=True)
    assert [s.value for s in running.for_model("gemini-2.5-pro")] == [7]
    # Learning here keeps the other kernel's limit (the file is merged, not overwritten).
    running.learn([stated(now=t.wall())])
    again = LearnedLimits(path, clock=t.wall)
    assert {(s.model, s.value) for s in again.all()} == {("gemini-2.5-pro", 7), (FLASH, 5)}


def test_per_minute_limits_expire_after_a_day_daily_ones_at_the_reset(tmp_path):
    t = FakeTime()
    store = LearnedLimits(tmp_path / "learned-limits.json", clock=t.wall)
    minute = stated(now=t.wall())
    day = stated("GenerateRequestsPerDayPerProjectPerModel-FreeTier", 20, now=t.wall())
    store.learn([minute, day])
    assert len(store.all()) == 2
    assert day.expires - t.wall() <= 24 * 3600 and minute.expires - t.wall() == MINUTE_LIMIT_TTL
    t.advance(day.expires - t.wall() + 1)
    assert [s.window for s in store.all()] == ["minute"]
    t.advance(MINUTE_LIMIT_TTL)
    assert store.all() == []
    # Expired entries are dropped from the file the next time it is written.
    store.learn([stated("GenerateRequestsPerMinutePerProjectPerModel-FreeTier", 9, now=t.wall(), model="m")])
    saved = json.loads((tmp_path / "learned-limits.json").read_text())
    assert [e["value"] for entries in saved["accounts"].values() for e in entries] == [9]


def test_forget_clears_this_account_only(tmp_path):
    path = tmp_path / "learned-limits.json"
    t = FakeTime()
    mine, theirs = LearnedLimits(path, clock=t.wall), LearnedLimits(path, clock=t.wall)
    theirs.use_account("http://gateway")
    mine.learn([stated(now=t.wall())])
    theirs.learn([stated(now=t.wall())])
    assert mine.forget() == 1
    assert mine.all() == [] and len(theirs.all()) == 1


def test_a_damaged_file_is_reported_and_replaced(tmp_path):
    path = tmp_path / "learned-limits.json"
    path.write_text("{not json")
    t = FakeTime()
    store = LearnedLimits(path, clock=t.wall)
    assert store.all() == []
    assert "could not be read" in store.problem
    store.learn([stated(now=t.wall())])
    assert len(LearnedLimits(path, clock=t.wall).all()) == 1


def test_no_file_keeps_limits_in_memory():
    t = FakeTime()
    store = LearnedLimits(None, clock=t.wall)
    store.learn([stated(now=t.wall())])
    assert len(store.all()) == 1

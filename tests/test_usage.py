"""Usage counts: per account (endpoint and key), model and Pacific day, kept across kernels."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gemini_magic.transport.learned import account_id
from gemini_magic.transport.limits import Limiter
from gemini_magic.usage import LEGACY_ACCOUNT, UsageStore, quota_day, usage_table

REPO = Path(__file__).resolve().parent.parent
FLASH = "gemini-2.5-flash"
LITE = "gemini-2.5-flash-lite"
GOOGLE = account_id(None, "k")
LOCAL = account_id("http://127.0.0.1:5555", "k")
DAY = "2025-06-01"


def store_for(path, account=GOOGLE, today=DAY) -> UsageStore:
    return UsageStore(path, today=lambda: today, account=account)


def test_each_account_counts_apart(tmp_path):
    path = tmp_path / "usage.json"
    google, local = store_for(path), store_for(path, LOCAL)
    google.add(FLASH, {"prompt_tokens": 10})
    local.add(FLASH, {"prompt_tokens": 5}, requests=40)
    assert google.day() == {FLASH: {"requests": 1, "prompt_tokens": 10, "output_tokens": 0, "thinking_tokens": 0,
                                    "cached_tokens": 0, "cost_micros": 0}}
    assert local.day()[FLASH]["requests"] == 40
    saved = json.loads(path.read_text())
    assert saved["version"] == 2 and set(saved["accounts"]) == {GOOGLE, LOCAL}


def test_a_file_from_before_accounts_is_kept_apart(tmp_path):
    path = tmp_path / "usage.json"
    path.write_text(json.dumps({DAY: {FLASH: {"requests": 7, "prompt_tokens": 1}}}))
    store = store_for(path)
    assert store.day() == {}  # not counted against this key's quota
    store.add(FLASH, {})
    saved = json.loads(path.read_text())["accounts"]
    assert saved[LEGACY_ACCOUNT][DAY][FLASH]["requests"] == 7  # nothing is lost
    assert saved[GOOGLE][DAY][FLASH]["requests"] == 1


@pytest.mark.parametrize("content", ["", "{not json", "[1, 2, 3]", "null"])
def test_a_damaged_file_is_moved_aside_and_said(tmp_path, content):
    path = tmp_path / "usage.json"
    path.write_text(content)
    store = store_for(path)
    store.add(FLASH, {})
    assert store.day()[FLASH]["requests"] == 1
    assert (tmp_path / "usage.json.damaged").read_text() == content  # kept, not overwritten
    assert "moved to usage.json.damaged" in store.problem


@pytest.mark.parametrize("today_value", [["oops"], {FLASH: 5}, {FLASH: {"requests": "many"}}])
def test_entries_of_the_wrong_shape_are_skipped(tmp_path, today_value):
    path = tmp_path / "usage.json"
    path.write_text(json.dumps({"version": 2, "accounts": {GOOGLE: {DAY: today_value}}}))
    store = store_for(path)
    store.add(LITE, {})
    assert LITE in store.day()


def test_an_unwritable_folder_keeps_counts_pending_and_says_why(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data folder should be (unwritable even for root)")
    store = store_for(blocker / "usage.json")
    store.add(FLASH, {})
    assert store.day()[FLASH]["requests"] == 1  # still counted in this kernel
    assert "cannot be saved" in store.problem


def test_two_processes_adding_at_once_lose_no_counts(tmp_path):
    path, go = tmp_path / "usage.json", tmp_path / "go"
    child = (
        "import pathlib, sys, time\n"
        "from gemini_magic.usage import UsageStore\n"
        f"store = UsageStore(pathlib.Path(sys.argv[1]), today=lambda: '{DAY}', account='{GOOGLE}')\n"
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
        go.touch()
        for proc in procs:
            assert proc.wait(timeout=60) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    counts = store_for(path).day()[FLASH]
    assert counts["requests"] == 300 and counts["output_tokens"] == 600


def test_old_days_are_dropped(tmp_path):
    day = {"value": "2025-01-01"}
    store = UsageStore(tmp_path / "usage.json", today=lambda: day["value"], account=GOOGLE)
    store.add(FLASH, {})
    day["value"] = "2025-01-02"
    assert store.day() == {}
    for i in range(1, 41):
        day["value"] = f"2025-03-{i:02d}" if i <= 31 else f"2025-04-{i - 31:02d}"
        store.add(FLASH, {})
    kept = json.loads((tmp_path / "usage.json").read_text())["accounts"][GOOGLE]
    assert len(kept) == UsageStore.KEEP_DAYS and min(kept) == "2025-03-10" and max(kept) == "2025-04-09"


def test_usage_table_names_the_endpoint_and_the_limits(tmp_path):
    store = store_for(tmp_path / "usage.json")
    store.add(LITE, {"prompt_tokens": 1_234_567, "output_tokens": 8})
    text = usage_table(store, Limiter("free"))
    first = text.splitlines()[0]
    assert first.startswith(f"Usage on {DAY} at generativelanguage.googleapis.com (key ")
    assert "1 requests" not in text and "20 requests (free tier table)" in text
    assert "Quota tier: free" in text
    auto = usage_table(store, Limiter("auto"))
    row = next(line for line in auto.splitlines() if line.startswith(LITE))
    assert row.rstrip().endswith("-") and "Google has stated no limits" in auto
    assert store_for(tmp_path / "empty.json", LOCAL).day() == {}
    assert "No requests counted today" in usage_table(store_for(tmp_path / "empty.json", LOCAL))


@pytest.mark.parametrize(
    "moment, day",
    [
        (datetime(2025, 1, 15, 7, 59, 59, tzinfo=UTC), "2025-01-14"),
        (datetime(2025, 1, 15, 8, 0, tzinfo=UTC), "2025-01-15"),
        (datetime(2025, 7, 1, 6, 59, 59, tzinfo=UTC), "2025-06-30"),
        (datetime(2025, 7, 1, 7, 0, tzinfo=UTC), "2025-07-01"),
        (datetime(2025, 3, 9, 8, 0, tzinfo=UTC), "2025-03-09"),
        (datetime(2025, 11, 2, 7, 0, tzinfo=UTC), "2025-11-02"),
        (datetime(2025, 1, 15, 9, 0, tzinfo=ZoneInfo("Europe/Paris")), "2025-01-15"),
        (datetime(2025, 1, 15, 12, 0, tzinfo=ZoneInfo("Asia/Tokyo")), "2025-01-14"),
    ],
)
def test_quota_day_rolls_at_midnight_pacific(moment, day):
    assert quota_day(moment) == day

"""The limiter on its own: tiers, sliding windows, and what a 429 teaches it.

A fake clock and sleep (no real waiting). The default tier, auto, must never slow
or refuse a request on a guess; it paces only to what Google stated.
"""

from __future__ import annotations

import io
import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gemini_magic.transport.learned import LearnedLimits, describe, next_reset, parse_violation
from gemini_magic.transport.limits import (
    FREE_TIER,
    SHARED_GEMINI_RPD,
    SHARED_RPM,
    DailyQuotaReached,
    Limit,
    Limiter,
    Wait,
)
from gemini_magic.transport.tokens import IMAGE_TOKENS, image_tokens, request_tokens
from gemini_magic.usage import UsageStore
from tests.conftest import FakeTime

FLASH = "gemini-2.5-flash"
LITE = "gemini-2.5-flash-lite"
REALWIRE = Path(__file__).with_name("realwire")
RPM_FREE = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
RPD_FREE = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
TPM_PAID = "GenerateContentPaidTierInputTokensPerModelPerMinute"


def fake_limiter(tier: str = "free", overrides: dict | None = None, path=None, **kwargs) -> tuple[Limiter, FakeTime]:
    t = FakeTime()
    learned = LearnedLimits(path, clock=t.wall)
    return Limiter(tier, overrides, clock=t.clock, sleep=t.sleep, learned=learned, **kwargs), t


def free_requests(limiter: Limiter, t: FakeTime, model: str, count: int) -> None:
    """`count` acquires that must not wait."""
    for i in range(count):
        limiter.acquire(model)
        assert t.slept == [], f"request {i + 1} on {model} waited"


def quota_body(quota_id: str = RPM_FREE, value: int | str = 5, model: str = FLASH, delay: str | None = "30s") -> dict:
    """A 429 body shaped like Google's (Help, QuotaFailure, RetryInfo)."""
    metric = "generate_content_paid_tier_input_token_count" if "Token" in quota_id else \
        "generate_content_free_tier_requests"
    details = [
        {"@type": "type.googleapis.com/google.rpc.Help", "links": [{"url": "https://ai.google.dev"}]},
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
            "quotaMetric": f"generativelanguage.googleapis.com/{metric}", "quotaId": quota_id,
            "quotaDimensions": {"location": "global", "model": model}, "quotaValue": str(value)}]},
    ]
    if delay:
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay})
    return {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "quota", "details": details}}


# -- the default: auto never paces or refuses on a guess -------------------------------------------


@pytest.mark.parametrize("tier", ["auto", "paid"])
def test_auto_and_paid_never_wait_or_refuse_without_a_stated_limit(tier, tmp_path):
    store = UsageStore(tmp_path / "usage.json")
    store.add(FLASH, {"prompt_tokens": 50_000_000}, requests=10_000)  # far over any free-tier table
    limiter, t = fake_limiter(tier, usage=store)
    assert limiter.limit(FLASH) == Limit() and limiter.shared() is None
    for model in (FLASH, LITE, "gemma-3-27b-it", "gemini-2.5-pro"):
        free_requests(limiter, t, model, 300)
    assert not limiter.wants_tokens(FLASH)  # nothing to estimate tokens for


def test_default_tier_is_auto():
    assert Limiter().tier == "auto"
    with pytest.raises(ValueError, match="quota tier must be one of auto, free, paid, off"):
        Limiter("premium")


# -- the opt-in free tier: the published table ---------------------------------------------------


@pytest.mark.parametrize(
    "model, expected",
    [
        (LITE, Limit(rpm=10, tpm=250_000, rpd=20, tpd=15_000_000)),
        ("models/gemini-2.0-flash-lite", Limit(rpm=10, tpm=250_000, rpd=20, tpd=15_000_000)),
        (FLASH, Limit(rpm=5, tpm=250_000, rpd=20, tpd=15_000_000)),
        ("models/gemini-3-flash-preview", Limit(rpm=5, tpm=250_000, rpd=20, tpd=15_000_000)),
        ("gemini-2.5-pro", Limit(tpd=3_000_000)),
        ("gemma-3-27b-it", Limit(rpm=30, tpm=15_000, rpd=14_400, tpd=4_000_000)),
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


def test_shared_limit_spans_models_on_the_free_tier_or_when_set():
    limiter, t = fake_limiter("free")
    assert limiter.shared() == SHARED_RPM == 60
    models = ["gemini-a", "gemini-b", "gemma-c"]
    for i in range(60):
        limiter.acquire(models[i % 3])
    assert t.slept == []
    limiter.acquire("gemini-d")  # a fourth model, never used: still waits for the shared window
    assert t.now == pytest.approx(1060.6)
    chosen, t = fake_limiter("auto", shared_rpm=2)
    free_requests(chosen, t, "gemini-a", 2)
    chosen.acquire("gemini-b")
    assert t.slept


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
    assert max(t.slept) <= 1.0 and len(t.slept) > 10  # in steps, so a countdown can tick
    assert limiter.waited == pytest.approx(sum(t.slept))


def test_a_slot_counts_from_when_the_server_answered_and_a_refused_one_not_at_all():
    limiter, t = fake_limiter("auto", {"gemini-x": {"rpm": 1}})
    slot = limiter.acquire("gemini-x")
    t.advance(5)  # the request travels, the server answers
    limiter.confirm(slot)
    limiter.acquire("gemini-x")
    assert t.now == pytest.approx(1005 + 60.6)  # a window from the answer, not from the acquire
    refused = limiter.acquire("gemini-y")
    limiter.release(refused)  # a 429: the server did not count it
    limiter.acquire("gemini-y")
    assert limiter._models["gemini-y"].requests and len(limiter._models["gemini-y"].requests) == 1


def test_tokens_per_minute_and_a_request_bigger_than_the_budget():
    limiter, t = fake_limiter("auto", {"gemini-x": {"tpm": 1000}})
    assert limiter.wants_tokens("gemini-x")
    limiter.acquire("gemini-x", tokens=600)
    limiter.acquire("gemini-x", tokens=300)
    assert t.slept == []
    waits: list[Wait] = []
    with limiter.listening(waits.append):
        limiter.acquire("gemini-x", tokens=200)  # 1,100: waits for the first 600 to leave
    assert t.now == pytest.approx(1060.6)
    assert waits[0].reason == "rate limit: 1,000 input tokens a minute on gemini-x"
    big, t = fake_limiter("auto", {"gemini-x": {"tpm": 1000}})
    big.acquire("gemini-x", tokens=5000)  # alone in the window: it goes
    assert t.slept == []


def test_countdown_callback_reports_this_threads_waits_only():
    limiter, t = fake_limiter()
    free_requests(limiter, t, FLASH, 5)
    t.advance(50)
    seen: list[Wait] = []
    with limiter.listening(seen.append):
        limiter.acquire(FLASH)
    assert [round(w.seconds, 1) for w in seen][0] == 10.6 and len(seen) == 11
    assert all(w.reason == f"rate limit: 5 requests a minute on {FLASH}" for w in seen)
    assert getattr(limiter.listener, "callback", None) is None

    limiter, t = fake_limiter()
    free_requests(limiter, t, FLASH, 5)
    other: list[Wait] = []
    done = threading.Event()

    def waiter():
        limiter.acquire(FLASH)
        done.set()

    with limiter.listening(other.append):
        thread = threading.Thread(target=waiter)
        thread.start()
        thread.join(timeout=10)
    assert done.is_set() and t.slept and other == []


def test_off_tier_never_waits_refuses_or_learns(tmp_path):
    store = UsageStore(tmp_path / "usage.json")
    store.add(FLASH, {}, requests=10_000)
    limiter, t = fake_limiter("off", {FLASH: {"rpm": 1}}, usage=store)
    assert not limiter.active and limiter.acquire(FLASH) is None
    free_requests(limiter, t, FLASH, 100)
    assert limiter.learn(quota_body(), FLASH) == [] and limiter.limit(FLASH) == Limit()


def test_overrides_merge_over_the_table():
    limiter = Limiter("free", {FLASH: {"rpm": 1000, "rpd": None, "unknown_key": 3}})
    assert limiter.limit(FLASH) == Limit(rpm=1000, tpm=250_000, rpd=None, tpd=15_000_000)
    assert limiter.limit(LITE).rpm == 10
    assert Limiter("auto", {FLASH: {"rpm": 7}}).limit(FLASH) == Limit(rpm=7)


# -- the free tier's daily figures, checked against today's counts -------------------------------


def test_free_tier_daily_requests_are_checked_before_sending(tmp_path):
    store = UsageStore(tmp_path / "usage.json", today=lambda: "2025-06-01")
    store.add(FLASH, {}, requests=19)
    limiter, _ = fake_limiter(usage=store)
    limiter.acquire(FLASH)  # the 20th of 20 may go
    store.add(FLASH, {})
    with pytest.raises(DailyQuotaReached) as info:
        limiter.acquire(FLASH)
    assert info.value.message.startswith(
        "The daily quota for gemini-2.5-flash (20 requests a day on the free tier) is used up. "
        "It resets at midnight Pacific time: ")
    limiter.acquire(LITE)  # another model has its own quota
    assert len(limiter._models[FLASH].requests) == 1  # the refused request took no slot


def test_free_tier_daily_tokens_and_the_shared_gemini_quota(tmp_path):
    store = UsageStore(tmp_path / "usage.json", today=lambda: "2025-06-01")
    store.add("gemini-2.5-pro", {"prompt_tokens": 2_000_000, "output_tokens": 1_000_000})
    limiter, _ = fake_limiter(usage=store)
    with pytest.raises(DailyQuotaReached, match=r"3,000,000 tokens a day on the free tier"):
        limiter.acquire("gemini-2.5-pro")
    store = UsageStore(tmp_path / "other.json", today=lambda: "2025-06-01")
    store.add("gemini-exp-1206", {}, requests=SHARED_GEMINI_RPD)
    store.add("gemma-3-27b-it", {}, requests=500)
    limiter, _ = fake_limiter(usage=store)
    with pytest.raises(DailyQuotaReached, match=r"1,500 requests a day across them"):
        limiter.acquire("gemini-exp-other")
    limiter.acquire("gemma-3-27b-it")  # Gemma is outside the shared Gemini quota


# -- learning from a 429 ---------------------------------------------------------------------------


@pytest.mark.parametrize("quota_id, metric, window, tier", [
    (RPM_FREE, "requests", "minute", "free"),
    (RPD_FREE, "requests", "day", "free"),
    (TPM_PAID, "tokens", "minute", "paid"),
    ("GenerateContentInputTokensPerModelPerMinute-FreeTier", "tokens", "minute", "free"),
    ("GenerateRequestsPerMinutePerProjectPerModel", "requests", "minute", ""),
])
def test_quota_ids_say_metric_window_and_tier(quota_id, metric, window, tier):
    stated = parse_violation({"quotaId": quota_id, "quotaValue": "42", "quotaDimensions": {"model": FLASH}},
                             "ignored", now=1_000_000.0)
    assert (stated.metric, stated.window, stated.tier, stated.value, stated.model) == (metric, window, tier, 42, FLASH)
    assert parse_violation({"quotaId": "SomethingElse"}, FLASH) is None


def test_a_per_minute_429_blocks_until_the_delay_then_paces_to_the_stated_figure():
    limiter, t = fake_limiter("auto")
    free_requests(limiter, t, FLASH, 2)
    [stated] = limiter.learn(quota_body(value=3, delay="30s"), FLASH)
    assert describe(stated) == "3 requests a minute on the free tier"
    assert limiter.limit(FLASH) == Limit(rpm=3)
    reasons: list[str] = []
    with limiter.listening(lambda w: reasons.append(w.reason)):
        limiter.acquire(FLASH)  # the window has room, but Google asked for 30 s
    assert t.now == pytest.approx(1030.6)
    assert reasons[0] == f"Google asked to wait before asking {FLASH} again"
    before = t.now
    limiter.acquire(FLASH)  # a fourth within the minute waits: paced to 3 a minute
    assert t.now == pytest.approx(1060.6) and t.now > before
    assert limiter.limit(LITE) == Limit()  # other models are not slowed


def test_the_real_paid_tier_tokens_429_teaches_tokens_not_requests():
    recorded = json.loads((REALWIRE / "h_429_resource_exhausted_quota_retryinfo_ruby_llm.json").read_text())
    limiter, t = fake_limiter("auto")
    [stated] = limiter.learn(json.loads(recorded["body"]), "gemini-2.5-flash")
    assert (stated.metric, stated.window, stated.tier, stated.value) == ("tokens", "minute", "paid", 1_000_000)
    assert limiter.limit(FLASH) == Limit(tpm=1_000_000)  # not a million requests a minute
    assert limiter.wants_tokens(FLASH)
    assert limiter._models[FLASH].blocked_until == pytest.approx(t.now + 48)  # RetryInfo's whole seconds


def test_a_stated_figure_replaces_the_table_and_caps_the_users():
    free, _ = fake_limiter("free")
    free.learn(quota_body(value=10), FLASH)
    assert free.limit(FLASH).rpm == 10  # the server is the authority, even above the table's 5
    capped, _ = fake_limiter("auto", {FLASH: {"rpm": 1000}})
    capped.learn(quota_body(value=5), FLASH)
    assert capped.limit(FLASH).rpm == 5
    lower, _ = fake_limiter("auto", {FLASH: {"rpm": 3}})
    lower.learn(quota_body(value=5), FLASH)
    assert lower.limit(FLASH).rpm == 3


def test_a_daily_429_refuses_until_the_reset_and_says_so_in_words():
    limiter, t = fake_limiter("auto")
    limiter.learn(quota_body(RPD_FREE, value=20, delay="17s"), FLASH)
    assert limiter._models.get(FLASH) is None or limiter._models[FLASH].blocked_until == 0  # no retry wait
    with pytest.raises(DailyQuotaReached) as info:
        limiter.acquire(FLASH)
    error = info.value
    assert error.message.startswith("The daily quota for gemini-2.5-flash (20 requests a day on the free tier) "
                                    "is used up. It resets at midnight Pacific time: ")
    assert "your time" in error.message and RPD_FREE in error.hint
    assert "flash-lite" not in (error.message + error.hint)  # no model advice that may not fit
    limiter.acquire(LITE)  # other models are not refused
    # At the reset (midnight Pacific), the model may be asked again.
    reset = next_reset(t.wall())
    t.advance(reset - t.wall() + 1)
    limiter.acquire(FLASH)


def test_a_429_without_details_teaches_only_its_delay():
    limiter, t = fake_limiter("auto")
    assert limiter.learn({"error": {"code": 429, "details": [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "5s"}]}}, FLASH) == []
    assert limiter.limit(FLASH) == Limit()
    limiter.acquire(FLASH)
    assert t.now == pytest.approx(1005.6, abs=0.7)


def test_next_reset_is_midnight_pacific_across_daylight_saving():
    for moment, expected in [
        (datetime(2025, 1, 15, 7, 59, tzinfo=UTC), datetime(2025, 1, 15, 8, 0, tzinfo=UTC)),
        (datetime(2025, 7, 1, 7, 0, tzinfo=UTC), datetime(2025, 7, 2, 7, 0, tzinfo=UTC)),
        (datetime(2025, 3, 9, 8, 30, tzinfo=UTC), datetime(2025, 3, 10, 7, 0, tzinfo=UTC)),  # DST starts
        (datetime(2025, 11, 2, 7, 30, tzinfo=UTC), datetime(2025, 11, 3, 8, 0, tzinfo=UTC)),  # DST ends
    ]:
        assert next_reset(moment.timestamp()) == expected.timestamp()


# -- token estimates count media as the API does --------------------------------------------------


def _png(width: int, height: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 100, 50)).save(buffer, format="PNG")
    return buffer.getvalue()


def _body(*parts) -> bytes:
    return json.dumps({"contents": [{"role": "user", "parts": list(parts)}]}).encode()


def test_images_count_in_tiles_not_base64_length():
    import base64
    import os

    from PIL import Image

    assert image_tokens(_png(300, 200)) == IMAGE_TOKENS
    assert image_tokens(_png(1536, 1000)) == 2 * 2 * IMAGE_TOKENS
    # A 750 KB photo: its base64 text alone would be ~1,000,000 "tokens" at four characters each.
    buffer = io.BytesIO()
    Image.frombytes("RGB", (1200, 900), os.urandom(1200 * 900 * 3)).save(buffer, format="JPEG", quality=95)
    photo = buffer.getvalue()
    assert len(photo) > 700_000
    data = base64.b64encode(photo).decode()
    tokens = request_tokens(_body({"text": "Describe this photo."},
                                  {"inlineData": {"mimeType": "image/jpeg", "data": data}}))
    assert tokens < 2000 and tokens >= 4 * IMAGE_TOKENS
    # So a 250,000 tokens-a-minute limit does not hold it back.
    limiter, t = fake_limiter("free")
    limiter.acquire(FLASH, tokens=200_000)
    limiter.acquire(FLASH, tokens=tokens)
    assert t.slept == []


def test_text_pdf_audio_and_signatures_in_estimates():
    import base64

    text = request_tokens(_body({"text": "x" * 4000}))
    assert 990 <= text <= 1020
    signed = request_tokens(_body({"text": "x" * 4000, "thoughtSignature": "s" * 400_000}))
    assert signed == text  # a signature is not input the model reads
    pdf = b"%PDF-1.4\n" + b"".join(b"1 0 obj << /Type /Page >> endobj\n" for _ in range(3)) + b"<< /Type /Pages >>"
    tokens = request_tokens(_body({"inlineData": {"mimeType": "application/pdf",
                                                  "data": base64.b64encode(pdf).decode()}}))
    assert 3 * 258 <= tokens < 3 * 258 + 20
    audio = base64.b64encode(b"\0" * 160_000).decode()  # ten seconds at 128 kbit/s
    assert 320 <= request_tokens(_body({"inline_data": {"mime_type": "audio/mp3", "data": audio}})) < 340

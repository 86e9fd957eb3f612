"""Counting before sending: --dry-run by part, for chats, attachments and batches; the
model's input limit, checked before a real request; gemini_magic.count()."""

from __future__ import annotations

import pytest

import gemini_magic
from gemini_magic.counting import SAMPLE, Count
from tests.conftest import ask, fails
from tests.fake_gemini import Reply

GENERATE = ("generateContent", "streamGenerateContent")


def actions(server) -> list[str]:
    return [r.action for r in server.requests]


def dry(ip, prompt: str, options: str = "") -> Count:
    ip.run_cell_magic("gemini", f"--dry-run -o _count {options}".strip(), prompt)
    return ip.user_ns.pop("_count")


@pytest.fixture
def picture(ip):
    from PIL import Image

    ip.user_ns["picture"] = Image.new("RGB", (800, 800), "white")  # 2 x 2 tiles of 768 px: 1,032 tokens


def test_a_dry_run_sends_only_count_tokens_and_counts_each_piece(ip, server, picture, capsys):
    def double(x: int) -> int:
        """Double a number."""
        return 2 * x

    ip.user_ns["double"] = double
    count = dry(ip, "What is in this picture?", "--image picture -s 'Be brief.' --tools double")
    assert not set(actions(server)) & set(GENERATE)  # nothing generated
    assert set(actions(server)) <= {"countTokens", "get"}
    pieces = {p.label: p for p in count.pieces}
    assert pieces["image 1 (image/png)"].tokens == 1032
    assert pieces["text"].tokens > 0
    assert pieces["system instruction"].note == "counted as text"
    assert pieces["tool declarations (1)"].tokens > 0
    assert count.total == sum(p.tokens for p in count.pieces)
    assert count.limit == 1_048_576 and count.fits
    assert count.cost == pytest.approx(count.total * 0.30 / 1e6)
    out = capsys.readouterr().out
    assert "this request was counted, not sent" in out and "fits the model's input limit of 1,048,576" in out
    assert "Estimated input cost:" in out and "$0.30 per 1M input tokens" in out


def test_the_dry_run_total_is_what_the_answer_then_counts(ip, server, picture):
    count = dry(ip, "Describe it in detail.", "--image picture")
    server.queue(Reply(text="A white square."))
    ask(ip, "Describe it in detail.", "--image picture")
    assert gemini_magic._magics.session.engine  # the same session
    sent = [r for r in server.requests if r.action in GENERATE][-1]
    assert sent.body["contents"] and count.total > 1000
    # The fake server counts both the same way (tests/fake_gemini): the figure a user sees
    # before is the one the answer's usage reports after.
    answer_usage = gemini_magic.ask("Describe it in detail.", image=["picture"], namespace=ip.user_ns)
    server.queue(Reply(text="Still white."))
    answer_usage.read()
    assert answer_usage.usage["prompt_tokens"] == count.total


def test_a_chats_dry_run_counts_its_history_and_keeps_no_turn(ip, server):
    server.queue("Kyoto is lovely in April.")
    ip.run_cell("%%gemini -c trip\nPlan three days in Kyoto.", cell_id="a")
    count = dry(ip, "And day four?", "-c trip")
    assert count.pieces[0].label == "history (1 turn)" and count.pieces[0].tokens > 0
    assert len(gemini_magic.conversation("trip").turns) == 1  # nothing was asked, nothing kept


def test_a_batch_dry_run_counts_every_item_or_a_stated_sample(ip, server, capsys):
    ip.user_ns["few"] = ["one", "two two", "three three three"]
    count = ip.run_cell_magic("gemini", "--over few --dry-run", "Say {item}")
    assert isinstance(count, Count) and (count.items, count.counted) == (3, 3)
    assert count.total == sum(p.tokens for p in count.pieces if p.label != "average item") + \
        [p for p in count.pieces if p.label == "average item"][0].tokens
    assert not count.notes
    server.requests.clear()
    ip.user_ns["many"] = [f"item {i}" for i in range(1000)]
    count = ip.run_cell_magic("gemini", "--over many --dry-run", "Say {item}")
    assert (count.items, count.counted) == (1000, SAMPLE)
    assert actions(server).count("countTokens") == SAMPLE
    assert "Counted 20 of 1,000 items, evenly spaced" in count.text() and "an estimate" in count.text()
    assert "for 1,000 items" in count.text()


def test_a_batch_api_dry_run_is_priced_at_the_batch_price(ip, server):
    ip.user_ns["few"] = ["a", "b"]
    local = ip.run_cell_magic("gemini", "--over few --dry-run", "Say {item}")
    api = ip.run_cell_magic("gemini", "--over few --dry-run --batch-api", "Say {item}")
    assert api.cost == pytest.approx(local.cost / 2) and api.tier == "batch"
    assert not [r for r in server.requests if r.action == "batchGenerateContent"]


def test_an_input_over_the_models_limit_is_refused_before_sending(ip, server):
    server.models.append({"name": "models/gemini-tiny", "baseModelId": "gemini-tiny", "version": "001",
                          "displayName": "Tiny", "inputTokenLimit": 40_000, "outputTokenLimit": 1000,
                          "supportedGenerationMethods": ["generateContent", "countTokens"]})
    long_text = "Summarise: " + "word " * 50_000  # in the cell: a {variable} would be summarised
    error = fails(ip, long_text, "-m gemini-tiny")
    assert "over gemini-tiny's limit of 40,000" in str(error) and "nothing was sent" in str(error)
    assert "--dry-run shows what takes the room" in str(error)
    assert not [r for r in server.requests if r.action in GENERATE]
    # A dry run says the same, without failing.
    count = dry(ip, long_text, "-m gemini-tiny")
    assert count.fits is False and "is OVER the model's input limit of 40,000" in count.text()


def test_a_short_request_asks_nothing_extra(ip, server):
    server.queue("Hi.")
    ask(ip, "Hello")
    assert actions(server) == ["streamGenerateContent"]


def test_count_from_python_and_refused_options(ip, server, picture):
    count = gemini_magic.count("What is this?", image=["picture"], namespace=ip.user_ns)
    assert isinstance(count, Count) and count.total > 1032
    from gemini_magic.options import Options, refusal

    assert "gemini_magic.count" in refusal(Options(dry_run=True), "ask")
    assert "calculator button" in refusal(Options(dry_run=True), "widget")


def test_a_model_without_a_price_or_on_the_free_tier_says_so(ip, server):
    server.models.append({"name": "models/gemini-2.5-flash-image", "inputTokenLimit": 32_768,
                          "supportedGenerationMethods": ["generateContent", "countTokens"]})
    count = dry(ip, "Hi", "-m gemini-2.5-flash-image")
    assert count.cost is None and "no price for this model" in count.text()
    ip.run_line_magic("config", "GeminiMagics.quota_tier = 'free'")
    assert "nothing (free tier)" in dry(ip, "Hi").text()

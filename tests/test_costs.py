"""What an answer cost: prices.json, overrides, the footer and %gemini usage; service tiers and
media resolution, which change what is sent and what it costs."""

from __future__ import annotations

import json

import pytest

from gemini_magic.costs import Price, check_prices, cost_of, money, price_for, table
from tests.conftest import ask
from tests.fake_gemini import Reply

FLASH = "gemini-2.5-flash"


def usage(prompt: int, out: int, thoughts: int = 0, cached: int = 0, audio: int = 0) -> dict:
    """usageMetadata as the API writes it (cachedContentTokenCount is part of promptTokenCount)."""
    body = {"promptTokenCount": prompt, "candidatesTokenCount": out, "totalTokenCount": prompt + out + thoughts}
    if thoughts:
        body["thoughtsTokenCount"] = thoughts
    if cached:
        body["cachedContentTokenCount"] = cached
        body["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached}]
    details = [{"modality": "TEXT", "tokenCount": prompt - audio}]
    if audio:
        details.append({"modality": "AUDIO", "tokenCount": audio})
    body["promptTokensDetails"] = details
    return body


# -- the price table ---------------------------------------------------------------------------


def test_the_table_says_when_and_where_its_prices_were_read():
    data = table()
    assert data["read"] and data["source"].startswith("https://ai.google.dev/gemini-api/docs/pricing")
    assert data["tiers"] == {"standard": 1.0, "flex": 0.5, "batch": 0.5, "priority": 1.8}
    for model, entry in data["models"].items():
        Price.of(model, entry)  # every entry is complete


@pytest.mark.parametrize(("model", "priced_as"), [
    ("gemini-2.5-flash", "gemini-2.5-flash"),
    ("models/gemini-2.5-pro", "gemini-2.5-pro"),
    ("gemini-2.5-flash-preview-09-2025", "gemini-2.5-flash"),
    ("gemini-2.5-flash-lite-preview-06-17", "gemini-2.5-flash-lite"),
    ("gemini-2.0-flash-001", "gemini-2.0-flash"),
    ("gemini-2.5-flash-image", None),  # another model, not a version: no guess
    ("gemini-flash-latest", None),  # an alias whose model changes
    ("my-gateway-model", None),
])
def test_a_version_is_priced_as_its_model_and_nothing_is_guessed(model, priced_as):
    price = price_for(model)
    assert (price.model if price else None) == priced_as


def test_costs_follow_the_pricing_rules():
    # 1,000,000 tokens each way on flash: $0.30 in, $2.50 out; thinking at the output rate.
    cost = cost_of({"prompt_tokens": 1_000_000, "output_tokens": 1_000_000, "thinking_tokens": 1_000_000}, FLASH)
    assert (cost.input, cost.output, cost.thinking) == pytest.approx((0.30, 2.50, 2.50))
    # Cached input is part of the prompt, billed at the cached rate instead.
    cost = cost_of({"prompt_tokens": 1_000_000, "cached_tokens": 900_000}, FLASH)
    assert (cost.input, cost.cached_input) == pytest.approx((0.03, 0.027))
    # Audio at its own rate, cached audio at its own.
    cost = cost_of({"prompt_tokens": 1_000_000, "prompt_audio_tokens": 1_000_000}, FLASH)
    assert cost.input == pytest.approx(1.00)
    # Long context: over 200,000 prompt tokens every token of the request at the higher rate.
    short = cost_of({"prompt_tokens": 200_000, "output_tokens": 1000}, "gemini-2.5-pro")
    long = cost_of({"prompt_tokens": 200_001, "output_tokens": 1000}, "gemini-2.5-pro")
    assert short.input == pytest.approx(0.25) and long.input == pytest.approx(200_001 * 2.5 / 1e6)
    assert (short.output, long.output) == pytest.approx((0.01, 0.015))
    # Service tiers scale it all; the batch price is half.
    base = cost_of({"prompt_tokens": 1000, "output_tokens": 1000}, FLASH).total
    assert cost_of({"prompt_tokens": 1000, "output_tokens": 1000}, FLASH, service_tier="flex").total == \
        pytest.approx(base / 2)
    assert cost_of({"prompt_tokens": 1000, "output_tokens": 1000}, FLASH, service_tier="priority").total == \
        pytest.approx(base * 1.8)
    assert cost_of({"prompt_tokens": 1000, "output_tokens": 1000}, FLASH, batch=True).total == pytest.approx(base / 2)
    assert cost_of({"prompt_tokens": 10}, "unknown-model") is None


def test_overrides_add_and_replace_models_and_bad_ones_are_named():
    overrides = check_prices({"my-model": {"input": 1, "output": 2}, FLASH: {"input": 10, "output": 20}})
    assert cost_of({"prompt_tokens": 1_000_000}, "my-model", overrides=overrides).total == pytest.approx(1)
    assert cost_of({"prompt_tokens": 1_000_000}, FLASH, overrides=overrides).total == pytest.approx(10)
    with pytest.raises(ValueError, match="needs 'input' and 'output'"):
        check_prices({"m": {"input": 1}})
    with pytest.raises(ValueError, match=r"\[up to, over the threshold\]"):
        check_prices({"m": {"input": "cheap", "output": 1}})


@pytest.mark.parametrize(("amount", "shown"), [(0, "$0"), (0.00003, "$0.000030"), (0.00072, "$0.00072"),
                                               (0.0123, "$0.012"), (0.5, "$0.50"), (12.345, "$12.35"),
                                               (1e-9, "<$0.000001")])
def test_money_shows_two_significant_figures_of_a_small_cost(amount, shown):
    assert money(amount) == shown


# -- in a cell -----------------------------------------------------------------------------------


def test_the_usage_footer_shows_cached_tokens_and_the_cost(ip, server, capsys):
    server.queue(Reply(text="Done.", usage=usage(10_000, 100, thoughts=50, cached=9_000)))
    ask(ip, "Summarise the cached handbook.", "--usage")
    out = capsys.readouterr().out
    # 1,000 fresh in at $0.30, 9,000 cached at $0.03, 150 out/thinking at $2.50 per 1M tokens.
    expected = money((1000 * 0.30 + 9000 * 0.03 + 150 * 2.50) / 1e6)
    assert f"10,000 in (9,000 cached), 100 out, 50 thinking tokens · {expected} · complete" in out


def test_a_model_without_a_price_says_so_and_an_override_prices_it(ip, server, capsys):
    server.queue(Reply(text="A."), Reply(text="B."))
    ask(ip, "Hi", "--usage -m gemini-2.5-flash-image")
    assert "no price for this model" in capsys.readouterr().out
    ip.run_line_magic("config", "GeminiMagics.prices = {'gemini-2.5-flash-image': {'input': 0.3, 'output': 30}}")
    ask(ip, "Hi", "--usage -m gemini-2.5-flash-image")
    assert "no price" not in capsys.readouterr().out


def test_a_bad_price_override_fails_at_once(ip):
    from traitlets import TraitError

    import gemini_magic

    with pytest.raises(TraitError, match="needs 'input' and 'output'"):
        gemini_magic._magics.prices = {"m": {"input": 1}}
    assert gemini_magic._magics.prices == {}


def test_the_free_tier_shows_free_not_a_price(ip, server, capsys):
    ip.run_line_magic("config", "GeminiMagics.quota_tier = 'free'")
    server.queue(Reply(text="A."))
    ask(ip, "Hi", "--usage")
    out = capsys.readouterr().out
    assert "· free tier ·" in out and "$" not in out.split("[")[-1]


def test_usage_shows_the_days_cost_per_model(ip, server, capsys):
    server.queue(Reply(text="A.", usage=usage(1000, 100)), Reply(text="B.", usage=usage(1000, 100)))
    ask(ip, "one")
    ask(ip, "two")
    capsys.readouterr()
    ip.run_line_magic("gemini", "usage")
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith(FLASH)).split()
    assert row[:7] == [FLASH, "2", "2,000", "0", "200", "0", money(2 * (1000 * 0.3 + 100 * 2.5) / 1e6)]
    assert "prices read" in out and "ai.google.dev" in out


# -- service tier and media resolution -------------------------------------------------------------


def test_service_tier_reaches_the_wire_and_the_footer(ip, server, capsys):
    server.queue(Reply(text="Later.", usage=usage(1000, 1000)))
    ask(ip, "Hi", "--service-tier flex --usage")
    body = server.last.body
    assert body.get("serviceTier", body.get("service_tier")) == "flex"
    out = capsys.readouterr().out
    assert "· flex tier ·" in out
    # The cost is the flex price, half the standard one (what the server says served it).
    assert money((1000 * 0.3 + 1000 * 2.5) / 1e6 / 2) in out


def test_service_tier_as_a_setting_and_refused_for_a_batch_api_job(ip, server):
    ip.run_line_magic("config", "GeminiMagics.service_tier = 'priority'")
    server.queue(Reply(text="Now."))
    ask(ip, "Hi")
    assert server.last.body.get("serviceTier", server.last.body.get("service_tier")) == "priority"
    from gemini_magic.options import Options, refusal

    assert "billed at the batch price" in refusal(Options(service_tier="flex"), "batch-api")


def test_media_resolution_global_and_per_attachment(ip, server, capsys):
    from PIL import Image

    ip.user_ns["chart"] = Image.new("RGB", (64, 64), "white")
    ip.user_ns["scan"] = Image.new("RGB", (64, 64), "black")
    server.queue(Reply(text="Two images."))
    ask(ip, "Compare them.", "--media-resolution low --image chart --image high:scan --usage")
    body = server.last.body
    config = body.get("generationConfig") or body.get("generation_config")
    assert config.get("mediaResolution", config.get("media_resolution")) == "MEDIA_RESOLUTION_LOW"
    parts = body["contents"][-1]["parts"]
    levels = [(p.get("mediaResolution") or p.get("media_resolution") or {}).get("level") for p in parts
              if p.get("inlineData") or p.get("inline_data")]
    assert levels == [None, "MEDIA_RESOLUTION_HIGH"]
    assert "media low" in capsys.readouterr().out


def test_settings_for_tier_resolution_and_ttl_are_checked(ip):
    from traitlets import TraitError

    import gemini_magic

    magics = gemini_magic._magics
    for name, value, said in (("service_tier", "cheap", "expected any of"), ("media_resolution", "ultra", "any of"),
                              ("cache_ttl", "soon", "takes a duration such as 30m")):
        with pytest.raises(TraitError, match=said):
            setattr(magics, name, value)
    magics.cache_ttl = "90m"
    assert magics.settings().cache_ttl == "90m"


def test_the_price_file_ships_with_the_package():
    from importlib import resources

    text = resources.files("gemini_magic").joinpath("prices.json").read_text()
    assert json.loads(text)["unit"] == "USD per 1,000,000 tokens"

"""What a request costs, from the tokens Gemini reports and the prices in prices.json.

    cost = cost_of(answer.usage, "gemini-2.5-flash", service_tier="flex")
    cost.total, cost_words(cost)          # 0.00042, "$0.00042"

Prices live in one data file, `prices.json`, with the date they were read and their
source; `GeminiMagics.prices` adds or overrides models (the same shape as an entry of
the file, by model id). A model the table lacks has no price, and says so: a guess
from a similar name would be worse than no figure.

How Gemini bills, and so how the cost is reckoned (the pricing page):
- input tokens at the input rate, audio at its own where the model has one; tokens
  served from a cache (`cachedContentTokenCount`, included in `promptTokenCount`) at
  the cached rate instead;
- output and thinking tokens at the output rate (shown apart);
- a model with long-context pricing charges every token of a request at the higher
  rate once its prompt is over the threshold (200,000 tokens);
- the service tier scales it all (Flex and Batch half price, Priority more);
- free-tier keys pay nothing: the caller says "free tier" instead of a price.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

# The trailing parts of an id that name a version of a model, not another model.
_VERSION_PART = re.compile(r"^(preview|exp|experimental|latest|\d+)$")


@lru_cache(maxsize=1)
def table() -> dict:
    """prices.json as shipped: {"read", "source", "unit", "tiers", "models"}."""
    return json.loads(resources.files(__package__).joinpath("prices.json").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Price:
    """One model's rates, USD per 1,000,000 tokens; pairs are (up to, over) the long-context threshold."""

    model: str
    input: tuple[float, float]
    output: tuple[float, float]
    cached_input: tuple[float, float] | None = None
    input_audio: tuple[float, float] | None = None
    cached_input_audio: tuple[float, float] | None = None
    cache_storage_per_hour: float | None = None
    long_context_over: int | None = None

    @classmethod
    def of(cls, model: str, entry: dict) -> Price:
        def pair(name):
            value = entry.get(name)
            if value is None:
                return None
            if isinstance(value, (int, float)):
                return (float(value), float(value))
            if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
                return (float(value[0]), float(value[1]))
            raise ValueError(f"{model}: {name} must be a price or [up to, over the threshold]")

        if pair("input") is None or pair("output") is None:
            raise ValueError(f"{model}: a price needs 'input' and 'output' (USD per 1,000,000 tokens)")
        over = entry.get("long_context_over")
        return cls(model, pair("input"), pair("output"), pair("cached_input"), pair("input_audio"),
                   pair("cached_input_audio"), entry.get("cache_storage_per_hour"), int(over) if over else None)


def check_prices(value: dict) -> dict:
    """`GeminiMagics.prices`, checked: {model: entry}; an error names what is wrong."""
    if not isinstance(value, dict):
        raise ValueError("prices must be a dict: {model id: {'input': ..., 'output': ...}}")
    for model, entry in value.items():
        if not isinstance(entry, dict):
            raise ValueError(f"{model}: a price entry must be a dict")
        Price.of(str(model), entry)
    return value


def price_for(model: str, overrides: dict | None = None) -> Price | None:
    """`model`'s price: an override, else the table's entry for it or for the model it is a
    version of (gemini-2.5-flash-preview-09-2025 is priced as gemini-2.5-flash); None if
    neither has one."""
    pieces = model.removeprefix("models/").split("-")
    while pieces:
        name = "-".join(pieces)
        for source in (overrides or {}, table()["models"]):
            if name in source:
                return Price.of(name, source[name])
        # Only a version suffix is dropped: gemini-2.5-flash-image is another model.
        if not _VERSION_PART.match(pieces[-1]):
            return None
        pieces.pop()
    return None


@dataclass
class Cost:
    """A request's (or a whole answer's) cost in USD, by kind of token."""

    model: str = ""
    input: float = 0.0
    cached_input: float = 0.0
    output: float = 0.0
    thinking: float = 0.0
    tier: str = "standard"

    @property
    def total(self) -> float:
        return self.input + self.cached_input + self.output + self.thinking

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.model or other.model, self.input + other.input, self.cached_input + other.cached_input,
                    self.output + other.output, self.thinking + other.thinking, self.tier)


def tier_factor(service_tier: str | None, batch: bool = False) -> float:
    tiers = table()["tiers"]
    if batch:
        return tiers["batch"]
    return tiers.get((service_tier or "standard").lower(), 1.0)


def cost_of(usage: dict, model: str, *, service_tier: str | None = None, batch: bool = False,
            overrides: dict | None = None) -> Cost | None:
    """The cost of one request's `usage` (reading.usage_dict), or None without a price."""
    price = price_for(model, overrides)
    if price is None:
        return None
    prompt = usage.get("prompt_tokens", 0) + usage.get("tool_prompt_tokens", 0)
    cached = min(usage.get("cached_tokens", 0), prompt)
    audio = min(usage.get("prompt_audio_tokens", 0), prompt)
    cached_audio = min(usage.get("cached_audio_tokens", 0), cached, audio)
    long = int(bool(price.long_context_over and prompt > price.long_context_over))
    factor = tier_factor(service_tier, batch) / 1_000_000

    def rate(pair, fallback=None):
        chosen = pair or fallback
        return chosen[long] if chosen else 0.0

    fresh_audio = audio - cached_audio
    fresh_other = prompt - cached - fresh_audio
    cached_other = cached - cached_audio
    input_cost = fresh_other * rate(price.input) + fresh_audio * rate(price.input_audio, price.input)
    cached_rate = price.cached_input or price.input  # no cached price: billed as input
    cached_cost = cached_other * rate(cached_rate) + cached_audio * rate(price.cached_input_audio, cached_rate)
    return Cost(price.model, input_cost * factor, cached_cost * factor,
                usage.get("output_tokens", 0) * rate(price.output) * factor,
                usage.get("thinking_tokens", 0) * rate(price.output) * factor,
                (service_tier or ("batch" if batch else "standard")).lower())


def input_cost(tokens: int, model: str, *, cached: int = 0, service_tier: str | None = None, batch: bool = False,
               overrides: dict | None = None) -> tuple[float, Price] | None:
    """What `tokens` input tokens would cost (a dry run), `cached` of them from a context
    cache, and the price used."""
    price = price_for(model, overrides)
    if price is None:
        return None
    cost = cost_of({"prompt_tokens": tokens, "cached_tokens": cached}, model, service_tier=service_tier, batch=batch,
                   overrides=overrides)
    return cost.total, price


def money(amount: float) -> str:
    """$0.00042, $0.013, $1.27: enough digits to see a small request's cost."""
    if amount <= 0:
        return "$0"
    if amount < 0.000001:
        return "<$0.000001"
    if amount >= 1:
        return f"${amount:,.2f}"
    digits = min(8, max(2, 1 - math.floor(math.log10(amount))))  # two significant figures
    return f"${amount:.{digits}f}"


def cost_words(cost: Cost | None, free: bool = False) -> str:
    """The footer's cost: "$0.00042", "free tier", or "no price for MODEL"."""
    if free:
        return "free tier"
    if cost is None:
        return "no price for this model"
    return money(cost.total)


def where_from() -> str:
    """Where the prices come from, for a footnote."""
    data = table()
    return f"prices read {data['read']} from {data['source'].split(' ')[0]}"

"""Rate limits: pace requests to the limits Google states, instead of collecting 429s.

The server is the authority on quota. The default tier, `auto`, never slows or
refuses a request on a guess: it paces only to limits a 429 has stated (see
learned.py) and to figures the user set (`rate_limits`, `limits.json`). The opt-in
`free` tier adds the free tier's published table, for zero 429s from the first
request; `paid` is `auto` under its old name; `off` sends everything at once.

The limiter sits in the HTTP transport (QuotaTransport, under record/replay), so
only requests that really go to the network wait, count or teach it: a replayed
answer costs no quota.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from ..errors import GeminiError
from ..options import TIERS
from .cancel import current
from .learned import (
    LearnedLimits,
    Stated,
    describe,
    local_time,
    next_reset,
    parse_violation,
    quota_violations,
    retry_seconds,
)

TIER_VARIABLE = "GEMINI_MAGIC_QUOTA"
# The requests paced and counted per model: answers, and embeddings (gemini_magic.embed:
# one request per up to 100 texts, counted as one request here).
_GENERATE = re.compile(r"/models/([^/:]+):(?:generateContent|streamGenerateContent|batchEmbedContents)$")


@dataclass
class Limit:
    rpm: int | None = None  # requests per minute
    tpm: int | None = None  # tokens per minute
    rpd: int | None = None  # requests per day
    tpd: int | None = None  # tokens per day

    def merged(self, override: dict) -> Limit:
        values = asdict(self)
        values.update({k: v for k, v in override.items() if k in values})
        return Limit(**values)


# The free tier, by model family (first match wins): the seed guide's table. Used
# only when the user chose quota_tier = "free".
FREE_TIER: list[tuple[str, Limit]] = [
    ("flash-lite", Limit(rpm=10, tpm=250_000, rpd=20, tpd=15_000_000)),
    ("flash", Limit(rpm=5, tpm=250_000, rpd=20, tpd=15_000_000)),
    ("pro", Limit(tpd=3_000_000)),
    ("gemma", Limit(rpm=30, tpm=15_000, rpd=14_400, tpd=4_000_000)),
]
# Across all models on the free tier: 60 requests a minute; 1,500 a day across Gemini models.
SHARED_RPM = 60
SHARED_GEMINI_RPD = 1_500


class DailyQuotaReached(GeminiError):
    kind = "daily-quota"


def daily_quota_error(model: str, stated: Stated | None, *, sent: bool, figure: str = "") -> DailyQuotaReached:
    """The used-up daily quota, in words: which model, when it resets, what to do."""
    what = figure or (describe(stated) if stated is not None else "")
    limit = f" ({what})" if what else ""
    reset = local_time(stated.expires if stated is not None else next_reset())
    told = "Google says the" if sent else "The"
    message = f"{told} daily quota for {model}{limit} is used up. It resets at midnight Pacific time: {reset}."
    hint = ("Wait for the reset, ask another model with -m, or use a key with a higher quota; nothing more is "
            "sent to this model until then. After an upgrade, `%gemini limits forget` clears what Google told us.")
    if stated is not None and stated.quota_id:
        hint += f" ({stated.quota_id})"
    return DailyQuotaReached(message, hint)


@dataclass
class Wait:
    """Why a request waits, for the countdown a front end shows."""

    seconds: float
    reason: str


class Slot:
    """A request's place in the windows: reserved when it may go, and moved to when
    the server answered (`confirm`), since the server counts it on arrival."""

    __slots__ = ("time", "tokens", "model")

    def __init__(self, time: float, tokens: int, model: str):
        self.time = time
        self.tokens = tokens
        self.model = model


@dataclass
class _ModelWindow:
    requests: deque = field(default_factory=deque)  # Slots, oldest first
    blocked_until: float = 0.0  # after a 429, the server's delay


class Limiter:
    """Per-model and shared sliding windows; `acquire` waits for a free slot.

    `window` is a minute, except in tests and benchmarks, which shorten it."""

    def __init__(self, tier: str = "auto", overrides: dict | None = None, shared_rpm: int | None = None,
                 usage=None, learned: LearnedLimits | None = None, window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        if tier not in TIERS:
            raise ValueError(f"quota tier must be one of {', '.join(TIERS)}, not {tier!r}")
        self.tier = tier
        self.overrides = overrides or {}
        self.shared_rpm = shared_rpm
        self.usage = usage
        self.learned = learned if learned is not None else LearnedLimits(None)
        self.window = window
        self.clock = clock
        self.sleep = sleep
        self._models: dict[str, _ModelWindow] = {}
        self._all: deque = deque()
        self._lock = threading.Lock()
        self.listener = threading.local()  # .callback(Wait) of the answer being sent on this thread
        self.waited = 0.0
        self.rejected = 0  # 429s seen by this limiter
        self.first_learned: float | None = None  # when (clock) a 429 first taught it something
        self.problem: str | None = None  # a limits.json that could not be used, said once

    @property
    def active(self) -> bool:
        return self.tier != "off"

    # -- figures ----------------------------------------------------------------------

    def limit(self, model: str) -> Limit:
        """The per-minute and per-day figures in force for `model`: the user's, else
        the free table's (tier free); a figure Google stated replaces the table's and
        caps the user's."""
        model = model.removeprefix("models/")
        if not self.active:
            return Limit()
        table = next((lim for family, lim in FREE_TIER if family in model), Limit()) if self.tier == "free" \
            else Limit()
        user = self.overrides.get(model) or {}
        values = {name: user.get(name, getattr(table, name)) for name in ("rpm", "tpm", "rpd", "tpd")}
        for stated in self.learned.for_model(model):
            if stated.window != "minute" or stated.value is None:
                continue
            name = "tpm" if stated.metric == "tokens" else "rpm"
            figure = values[name]
            values[name] = stated.value if figure is None or name not in user else min(figure, stated.value)
        return Limit(**values)

    def shared(self) -> int | None:
        if self.shared_rpm is not None:
            return self.shared_rpm or None
        return SHARED_RPM if self.tier == "free" else None

    def wants_tokens(self, model: str) -> bool:
        """Whether a request's token estimate matters (a tokens-a-minute limit applies)."""
        return self.active and self.limit(model).tpm is not None

    # -- pacing -----------------------------------------------------------------------

    def acquire(self, model: str, tokens: int = 0) -> Slot | None:
        """Wait until `model` may be asked again and reserve the slot; raises
        DailyQuotaReached when a daily quota is used up (Google said so, or on the
        free tier the day's count reached the table's figure)."""
        if not self.active:
            return None
        model = model.removeprefix("models/")
        self._check_daily(model)
        while True:
            with self._lock:
                wait = self._wait(model, tokens)
                if wait is None:
                    slot = Slot(self.clock(), tokens, model)
                    self._models.setdefault(model, _ModelWindow()).requests.append(slot)
                    self._all.append(slot)
                    return slot
            callback = getattr(self.listener, "callback", None)
            if callback is not None:
                callback(wait)
            step = min(wait.seconds, 1.0)  # in steps, so the countdown can tick
            self.waited += step
            cancel = current()
            if cancel is not None and self.sleep is time.sleep:
                cancel.wait(step)  # a Stop wakes it
            else:
                self.sleep(step)
            if cancel is not None:
                cancel.check()  # stopped while waiting: the request is never sent

    def confirm(self, slot: Slot | None) -> None:
        """The server has answered: it counted the request by now, so its window
        runs from here (the time it took to get there is not free quota)."""
        if slot is not None:
            with self._lock:
                slot.time = self.clock()

    def release(self, slot: Slot | None) -> None:
        """A request the server did not count (refused with a 429, or never sent)."""
        if slot is None:
            return
        with self._lock:
            for slots in (self._models.get(slot.model, _ModelWindow()).requests, self._all):
                try:
                    slots.remove(slot)
                except ValueError:
                    pass

    def _wait(self, model: str, tokens: int) -> Wait | None:
        # A slot frees a little after the window: the server counted the request when
        # it arrived, a little after it was sent (1% of a minute, at least 50 ms).
        now = self.clock() - max(self.window * 0.01, 0.05)
        state = self._models.setdefault(model, _ModelWindow())
        for slots in (state.requests, self._all):
            # Confirmation can move a slot later than the ones after it: drop by time.
            kept = [slot for slot in slots if now - slot.time < self.window]
            if len(kept) != len(slots):
                slots.clear()
                slots.extend(sorted(kept, key=lambda slot: slot.time))
        limit = self.limit(model)
        waits = []
        if state.blocked_until > now:
            waits.append(Wait(state.blocked_until - now, f"Google asked to wait before asking {model} again"))
        if limit.rpm and len(state.requests) >= limit.rpm:
            oldest = sorted(slot.time for slot in state.requests)[-limit.rpm]
            waits.append(Wait(oldest + self.window - now, f"rate limit: {_requests(limit.rpm)} a minute on {model}"))
        shared = self.shared()
        if shared and len(self._all) >= shared:
            oldest = sorted(slot.time for slot in self._all)[-shared]
            waits.append(Wait(oldest + self.window - now, f"rate limit: {_requests(shared)} a minute across models"))
        if limit.tpm and state.requests:
            used = sum(slot.tokens for slot in state.requests)
            if used + tokens > limit.tpm and used > 0:
                waits.append(Wait(min(slot.time for slot in state.requests) + self.window - now,
                                  f"rate limit: {limit.tpm:,} input tokens a minute on {model}"))
        if not waits:
            return None
        return max(waits, key=lambda w: w.seconds)

    def _check_daily(self, model: str) -> None:
        for stated in self.learned.for_model(model):
            if stated.window == "day":
                raise daily_quota_error(model, stated, sent=False)
        if self.tier != "free" or self.usage is None:
            return
        # The opt-in free tier: the table's daily figures against today's counts.
        limit = self.limit(model)
        today = self.usage.day()
        used = today.get(model, {})
        if limit.rpd and used.get("requests", 0) >= limit.rpd:
            raise daily_quota_error(model, None, sent=False, figure=f"{limit.rpd:,} requests a day on the free tier")
        tokens = used.get("prompt_tokens", 0) + used.get("output_tokens", 0) + used.get("thinking_tokens", 0)
        if limit.tpd and tokens >= limit.tpd:
            raise daily_quota_error(model, None, sent=False, figure=f"{limit.tpd:,} tokens a day on the free tier")
        if model.startswith("gemini"):
            total = sum(c.get("requests", 0) for m, c in today.items() if m.startswith("gemini"))
            if total >= SHARED_GEMINI_RPD:
                raise daily_quota_error("Gemini models", None, sent=False,
                                        figure=f"{SHARED_GEMINI_RPD:,} requests a day across them on the free tier")

    # -- learning ---------------------------------------------------------------------

    def learn(self, body, model: str | None) -> list[Stated]:
        """What a 429's body states: its limits (kept, for this and later kernels)
        and its delay (no request to the model before it ends)."""
        if not self.active:
            return []
        self.rejected += 1
        if self.first_learned is None:
            self.first_learned = self.clock()
        now = self.learned.clock()  # the epoch clock stated limits expire by
        stated = [s for s in (parse_violation(v, model or "", now) for v in quota_violations(body)) if s is not None]
        delay = retry_seconds(body)
        per_minute = not stated or any(s.window != "day" for s in stated)
        if delay and per_minute:
            with self._lock:
                for name in {s.model for s in stated} or {model or "*"}:
                    if name == "*":
                        for state in self._models.values():
                            state.blocked_until = max(state.blocked_until, self.clock() + delay)
                        continue
                    state = self._models.setdefault(name, _ModelWindow())
                    state.blocked_until = max(state.blocked_until, self.clock() + delay)
        self.learned.learn(stated)
        return stated

    def listening(self, callback):
        """Report this thread's waits to `callback` while the block runs."""
        limiter = self

        class _Listening:
            def __enter__(self):
                self.previous = getattr(limiter.listener, "callback", None)
                limiter.listener.callback = callback

            def __exit__(self, *exc):
                limiter.listener.callback = self.previous

        return _Listening()

    # -- for %gemini usage and %gemini limits -----------------------------------------

    def daily_limits(self, model: str) -> str:
        parts = [f"used up ({describe(s)})" for s in self.learned.for_model(model) if s.window == "day"]
        if self.tier == "free":
            limit = self.limit(model)
            if limit.rpd:
                parts.append(f"{limit.rpd:,} requests (free tier table)")
        return ", ".join(parts)

    def describe_limits(self) -> list[str]:
        lines = [f"Quota tier: {self.tier}" + {
            "auto": " (paces only to limits Google stated in a 429, and to rate_limits)",
            "paid": " (same as auto)",
            "free": " (the free tier's published table, plus what Google stated)",
            "off": " (no pacing)"}[self.tier]]
        stated = sorted(self.learned.all(), key=lambda s: (s.model, s.window, s.metric))
        if stated:
            lines.append("Limits Google stated for this key and endpoint:")
            for item in stated:
                until = ("until the daily reset, " + local_time(item.expires)) if item.window == "day" else \
                    "kept for a day after it was stated"
                lines.append(f"  {item.model}: {describe(item)} ({item.quota_id}); {until}")
        elif self.active:
            lines.append("Google has stated no limits for this key and endpoint yet.")
        for model, figures in sorted(self.overrides.items()):
            shown = ", ".join(f"{k} {v:,}" for k, v in figures.items() if isinstance(v, int))
            lines.append(f"  {model}: {shown} (rate_limits)")
        return lines


def _requests(count: int) -> str:
    return f"{count:,} request" + ("" if count == 1 else "s")

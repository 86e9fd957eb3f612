"""Staying under Gemini's rate limits instead of collecting 429s, and counting usage.

The limiter sits in the HTTP transport (replay.py), so only requests that really go
to the network wait or count: a replayed answer costs no quota. Limits come from
the free tier's table (the seed guide's figures), which the user can override or
switch off; a 429 that still happens teaches the limiter the server's own figure.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from .errors import GeminiError

TIERS = ("free", "paid", "off")
DATA_DIR_VARIABLE = "GEMINI_MAGIC_DATA_DIR"
TIER_VARIABLE = "GEMINI_MAGIC_QUOTA"


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


# The free tier, by model family (first match wins): the seed guide's table.
FREE_TIER: list[tuple[str, Limit]] = [
    ("flash-lite", Limit(rpm=10, tpm=250_000, rpd=20, tpd=15_000_000)),
    ("flash", Limit(rpm=5, tpm=250_000, rpd=20, tpd=15_000_000)),
    ("pro", Limit(tpd=3_000_000)),
    ("gemma", Limit(rpm=30, tpm=15_000, rpd=14_400, tpd=4_000_000)),
]
# Across all models: 60 requests a minute; 1,500 a day across Gemini models.
SHARED_RPM = 60
SHARED_GEMINI_RPD = 1_500


class DailyQuotaReached(GeminiError):
    kind = "daily-quota"


def data_dir() -> Path:
    """Where usage is kept across kernel restarts: the platform's user data folder."""
    override = os.environ.get(DATA_DIR_VARIABLE)
    if override:
        return Path(override)
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "gemini-magic"


def quota_day(now: datetime | None = None) -> str:
    """Gemini's daily quotas reset at midnight Pacific time."""
    try:
        from zoneinfo import ZoneInfo

        pacific = ZoneInfo("America/Los_Angeles")
    except Exception:  # no tz database (some Windows installs): standard time
        pacific = timezone(timedelta(hours=-8))
    return (now or datetime.now(UTC)).astimezone(pacific).date().isoformat()


# -- usage ------------------------------------------------------------------------------

COUNTERS = ("requests", "prompt_tokens", "output_tokens", "thinking_tokens")


class UsageStore:
    """Requests and tokens per model per day, in `usage.json` under the data folder.

    Saving re-reads the file and adds this session's new counts, so two kernels
    counting at once do not overwrite each other."""

    KEEP_DAYS = 31

    def __init__(self, path: Path | None = None, today: Callable[[], str] = quota_day):
        self.path = path or data_dir() / "usage.json"
        self.today = today
        self._pending: dict[str, dict[str, dict[str, int]]] = {}
        self._lock = threading.Lock()

    def _read(self) -> dict:
        """The saved counts; anything not shaped {day: {model: {counter: int}}} (a
        hand-edited or damaged file) is dropped rather than breaking a cell."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        clean: dict = {}
        for day, models in data.items():
            if not isinstance(models, dict):
                continue
            for model, counts in models.items():
                if isinstance(counts, dict):
                    clean.setdefault(day, {})[model] = {
                        c: counts[c] for c in COUNTERS if isinstance(counts.get(c), int)}
        return clean

    def add(self, model: str, usage: dict, requests: int = 1) -> None:
        counts = {"requests": requests, **{k: int(usage.get(k) or 0) for k in COUNTERS[1:]}}
        with self._lock:
            day = self._pending.setdefault(self.today(), {}).setdefault(model, dict.fromkeys(COUNTERS, 0))
            for name, value in counts.items():
                day[name] += value
        self.save()

    def save(self) -> None:
        from .files import locked, write_atomic

        with self._lock:
            if not self._pending:
                return
            try:
                with locked(self.path):  # read, add and write as one step across kernels
                    data = self._read()
                    for day, models in self._pending.items():
                        for model, counts in models.items():
                            stored = data.setdefault(day, {}).setdefault(model, dict.fromkeys(COUNTERS, 0))
                            for name, value in counts.items():
                                stored[name] = stored.get(name, 0) + value
                    for day in sorted(data)[: -self.KEEP_DAYS]:
                        del data[day]
                    write_atomic(self.path, json.dumps(data, indent=1, sort_keys=True) + "\n")
                self._pending.clear()
            except OSError:
                pass  # a read-only home must not break a cell: counts stay pending

    def day(self, day: str | None = None) -> dict[str, dict[str, int]]:
        """Counts per model for a day (default today), saved and pending."""
        day = day or self.today()
        stored = self._read().get(day, {})
        with self._lock:
            pending = self._pending.get(day, {})
        models = set(stored) | set(pending)
        return {m: {c: stored.get(m, {}).get(c, 0) + pending.get(m, {}).get(c, 0) for c in COUNTERS}
                for m in sorted(models)}


# -- the limiter ------------------------------------------------------------------------


@dataclass
class Wait:
    """Why a request waits, for the countdown a front end shows."""

    seconds: float
    reason: str


class Slot:
    """A request's place in the windows: reserved when it may go, and moved to when
    the server answered (`confirm`), since the server counts it on arrival."""

    __slots__ = ("time", "tokens")

    def __init__(self, time: float, tokens: int):
        self.time = time
        self.tokens = tokens


@dataclass
class _ModelWindow:
    requests: deque = field(default_factory=deque)  # Slots, oldest first
    blocked_until: float = 0.0  # after a 429, the server's delay
    learned_rpm: int | None = None  # a 429's quota value, when lower than the table's


class Limiter:
    """Per-model and shared sliding windows; `acquire` waits for a free slot.

    `window` is a minute, except in tests and benchmarks, which shorten it."""

    def __init__(self, tier: str = "free", overrides: dict | None = None, shared_rpm: int | None = SHARED_RPM,
                 usage: UsageStore | None = None, window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.tier = tier
        self.overrides = overrides or {}
        self.shared_rpm = shared_rpm
        self.usage = usage
        self.window = window
        self.clock = clock
        self.sleep = sleep
        self._models: dict[str, _ModelWindow] = {}
        self._all: deque = deque()
        self._lock = threading.Lock()
        self.listener = threading.local()  # .callback(Wait) of the answer being sent on this thread
        self.waited = 0.0

    def limit(self, model: str) -> Limit:
        model = model.removeprefix("models/")
        limit = Limit()
        if self.tier == "free":
            limit = next((lim for family, lim in FREE_TIER if family in model), Limit())
        override = self.overrides.get(model)
        if override:
            limit = limit.merged(override)
        learned = self._models.get(model)
        if learned is not None and learned.learned_rpm is not None:
            limit = limit.merged({"rpm": min(limit.rpm or learned.learned_rpm, learned.learned_rpm)})
        return limit

    @property
    def active(self) -> bool:
        return self.tier != "off"

    def acquire(self, model: str, tokens: int = 0) -> Slot | None:
        """Wait until `model` may be asked again and reserve the slot; raises
        DailyQuotaReached when a daily quota is used up (before sending, not after a
        429)."""
        if not self.active:
            return None
        model = model.removeprefix("models/")
        self._check_daily(model)
        while True:
            with self._lock:
                wait = self._wait(model, tokens)
                if wait is None:
                    slot = Slot(self.clock(), tokens)
                    self._models.setdefault(model, _ModelWindow()).requests.append(slot)
                    self._all.append(slot)
                    return slot
            callback = getattr(self.listener, "callback", None)
            if callback is not None:
                callback(wait)
            step = min(wait.seconds, 1.0)  # in steps, so the countdown can tick
            self.waited += step
            self.sleep(step)

    def confirm(self, slot: Slot | None) -> None:
        """The server has answered: it counted the request by now, so its window
        runs from here (the time it took to get there is not free quota)."""
        if slot is not None:
            with self._lock:
                slot.time = self.clock()

    def _wait(self, model: str, tokens: int) -> Wait | None:
        # A slot frees a little after the window too: clocks and travel differ a bit.
        now = self.clock() - self.window * 0.01
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
            waits.append(Wait(state.blocked_until - now, f"Gemini asked to wait (429) on {model}"))
        if limit.rpm and len(state.requests) >= limit.rpm:
            oldest = sorted(slot.time for slot in state.requests)[-limit.rpm]
            waits.append(Wait(oldest + self.window - now, f"rate limit: {_requests(limit.rpm)} a minute on {model}"))
        if self.shared_rpm and len(self._all) >= self.shared_rpm:
            oldest = sorted(slot.time for slot in self._all)[-self.shared_rpm]
            waits.append(Wait(oldest + self.window - now,
                              f"rate limit: {_requests(self.shared_rpm)} a minute across models"))
        if limit.tpm and state.requests:
            used = sum(slot.tokens for slot in state.requests)
            if used + tokens > limit.tpm and used > 0:
                waits.append(Wait(min(slot.time for slot in state.requests) + self.window - now,
                                  f"rate limit: {limit.tpm:,} tokens a minute on {model}"))
        if not waits:
            return None
        return max(waits, key=lambda w: w.seconds)

    def _check_daily(self, model: str) -> None:
        if self.usage is None:
            return
        limit = self.limit(model)
        today = self.usage.day()
        used = today.get(model, {})
        hint = ("Daily quotas reset at midnight Pacific time. Use another model, or raise the limit: "
                "%config GeminiMagics.rate_limits = {...} (or quota_tier = 'paid').")
        if limit.rpd and used.get("requests", 0) >= limit.rpd:
            raise DailyQuotaReached(f"The daily quota of {limit.rpd} requests on {model} is used up "
                                    "(nothing was sent).", hint)
        tokens = used.get("prompt_tokens", 0) + used.get("output_tokens", 0) + used.get("thinking_tokens", 0)
        if limit.tpd and tokens >= limit.tpd:
            raise DailyQuotaReached(f"The daily quota of {limit.tpd:,} tokens on {model} is used up "
                                    "(nothing was sent).", hint)
        if self.tier == "free" and model.startswith("gemini"):
            total = sum(c.get("requests", 0) for m, c in today.items() if m.startswith("gemini"))
            if total >= SHARED_GEMINI_RPD:
                raise DailyQuotaReached(f"The daily quota of {SHARED_GEMINI_RPD:,} requests across Gemini "
                                        "models is used up (nothing was sent).", hint)

    def penalize(self, model: str, seconds: float | None, quota_value: int | None = None,
                 per_minute: bool = True) -> None:
        """Learn from a 429: no request to `model` before the server's delay, and
        a per-minute limit lower than the table's is kept for the session."""
        model = model.removeprefix("models/")
        with self._lock:
            state = self._models.setdefault(model, _ModelWindow())
            if seconds:
                state.blocked_until = max(state.blocked_until, self.clock() + seconds)
            if quota_value and per_minute:
                current = self.limit(model).rpm
                if current is None or quota_value < current:
                    state.learned_rpm = quota_value

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


def _requests(count: int) -> str:
    return f"{count:,} request" + ("" if count == 1 else "s")


def usage_table(store: UsageStore, limiter: Limiter | None) -> str:
    """Today's usage per model against its daily quota, as text."""
    today = store.day()
    if not today:
        return f"No requests counted today ({store.today()}, Pacific time)."
    rows = [("model", "requests", "prompt", "output", "thinking", "daily quota")]
    for model, counts in today.items():
        limit = limiter.limit(model) if limiter is not None and limiter.active else Limit()
        quota = []
        if limit.rpd:
            quota.append(f"{counts['requests']:,}/{limit.rpd:,} requests")
        if limit.tpd:
            used = counts["prompt_tokens"] + counts["output_tokens"] + counts["thinking_tokens"]
            quota.append(f"{used:,}/{limit.tpd:,} tokens")
        rows.append((model, f"{counts['requests']:,}", f"{counts['prompt_tokens']:,}", f"{counts['output_tokens']:,}",
                     f"{counts['thinking_tokens']:,}", ", ".join(quota) or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i in (0, 5) else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]
    text = "\n".join(line.rstrip() for line in lines)
    return f"Usage on {store.today()} (Pacific time; daily quotas reset at midnight there)\n" + text

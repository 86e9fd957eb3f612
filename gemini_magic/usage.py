"""Requests and tokens used, per account, model and day, kept across kernel restarts.

An account is an endpoint and a fingerprint of the key (transport/learned.py): a
test server, a gateway or a second key is counted apart from Google's quota.
Counts are informational (`%gemini usage`), and on the opt-in free tier they are
what keeps daily quotas from being exceeded.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

DATA_DIR_VARIABLE = "GEMINI_MAGIC_DATA_DIR"
# cost_micros: the requests' cost in millionths of a US dollar, as priced when they were
# made (costs.py), so a later price change does not rewrite what was spent.
COUNTERS = ("requests", "prompt_tokens", "output_tokens", "thinking_tokens", "cached_tokens", "cost_micros")
# Counts saved before they were kept per account (gemini-magic 0.1).
LEGACY_ACCOUNT = "(before accounts were counted apart)"


def data_dir() -> Path:
    """Where usage and learned limits are kept: the platform's user data folder."""
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
    from .transport.learned import pacific

    return (now or datetime.now(UTC)).astimezone(pacific()).date().isoformat()


class UsageStore:
    """Counts in `usage.json` under the data folder: {"version": 2, "accounts":
    {account: {day: {model: {counter: n}}}}}.

    Saving re-reads the file and adds this session's new counts under a file lock,
    so two kernels counting at once do not overwrite each other. A damaged file is
    moved aside (not overwritten) and the user is told once."""

    KEEP_DAYS = 31

    def __init__(self, path: Path | None = None, today: Callable[[], str] = quota_day, account: str = ""):
        self.path = path or data_dir() / "usage.json"
        self.today = today
        self.account = account
        self._pending: dict[tuple[str, str, str], dict[str, int]] = {}  # (account, day, model)
        self._lock = threading.Lock()
        self.problem: str | None = None  # a note for the user, once

    def _read(self) -> dict:
        """{account: {day: {model: counts}}}; a file in the old shape is read as one account."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, NotADirectoryError):
            return {}
        except OSError as exc:
            self.problem = self.problem or f"The usage file {self.path} cannot be read: {exc.strerror or exc}."
            return {}
        except ValueError:
            self._set_aside("is not valid JSON")
            return {}
        if not isinstance(data, dict):
            self._set_aside("is not a usage file")
            return {}
        if "accounts" not in data:  # version 1: {day: {model: counts}}
            data = {"accounts": {LEGACY_ACCOUNT: data}}
        clean: dict = {}
        for account, days in (data.get("accounts") or {}).items():
            for day, models in (days or {}).items() if isinstance(days, dict) else ():
                for model, counts in (models or {}).items() if isinstance(models, dict) else ():
                    if isinstance(counts, dict):
                        clean.setdefault(account, {}).setdefault(day, {})[model] = {
                            c: counts[c] for c in COUNTERS if isinstance(counts.get(c), int)}
        return clean

    def _set_aside(self, why: str) -> None:
        aside = self.path.with_name(self.path.name + ".damaged")
        try:
            os.replace(self.path, aside)
            self.problem = f"The usage file {self.path} {why}: it was moved to {aside.name} and counting starts afresh."
        except OSError:
            self.problem = f"The usage file {self.path} {why}; counts are not saved."

    def add(self, model: str, usage: dict, requests: int = 1) -> None:
        counts = {"requests": requests, **{k: int(usage.get(k) or 0) for k in COUNTERS[1:]}}
        with self._lock:
            day = self._pending.setdefault((self.account, self.today(), model), dict.fromkeys(COUNTERS, 0))
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
                    for (account, day, model), counts in self._pending.items():
                        stored = data.setdefault(account, {}).setdefault(day, {}).setdefault(
                            model, dict.fromkeys(COUNTERS, 0))
                        for name, value in counts.items():
                            stored[name] = stored.get(name, 0) + value
                    for days in data.values():
                        for day in sorted(days)[: -self.KEEP_DAYS]:
                            del days[day]
                    text = json.dumps({"version": 2, "accounts": data}, indent=1, sort_keys=True) + "\n"
                    write_atomic(self.path, text)
                self._pending.clear()
            except OSError as exc:
                # A read-only home must not break a cell: counts stay pending, and
                # the user is told once why they are not kept.
                if self.problem is None:
                    self.problem = f"Usage counts cannot be saved to {self.path}: {exc.strerror or exc}."

    def day(self, day: str | None = None) -> dict[str, dict[str, int]]:
        """Counts per model of this account for a day (default today), saved and pending."""
        day = day or self.today()
        stored = self._read().get(self.account, {}).get(day, {})
        with self._lock:
            pending = {model: counts for (account, d, model), counts in self._pending.items()
                       if account == self.account and d == day}
        models = set(stored) | set(pending)
        return {m: {c: stored.get(m, {}).get(c, 0) + pending.get(m, {}).get(c, 0) for c in COUNTERS}
                for m in sorted(models)}


def usage_table(store: UsageStore, limiter=None, free=None) -> str:
    """Today's usage per model of the store's account, with its cost and the daily limits
    known; `free(model)` says whether a model's requests were free (the free tier)."""
    from .transport.learned import account_label

    today = store.day()
    where = account_label(store.account) if store.account else "this endpoint"
    lines = []
    if not today:
        lines.append(f"No requests counted today ({store.today()}, Pacific time) at {where}.")
    else:
        from .costs import money, price_for, where_from

        rows = [("model", "requests", "prompt", "(cached)", "output", "thinking", "cost", "daily limit")]
        unpriced = False
        for model, counts in today.items():
            c = {name: counts.get(name, 0) for name in COUNTERS}
            limit = limiter.daily_limits(model) if limiter is not None else ""
            if free is not None and free(model):
                cost = "free tier"
            elif price_for(model) is None and not c["cost_micros"]:
                cost, unpriced = "no price", True
            else:
                cost = money(c["cost_micros"] / 1e6)
            rows.append((model, f"{c['requests']:,}", f"{c['prompt_tokens']:,}", f"{c['cached_tokens']:,}",
                         f"{c['output_tokens']:,}", f"{c['thinking_tokens']:,}", cost, limit or "-"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        table = ["  ".join(cell.ljust(w) if i in (0, 7) else cell.rjust(w)
                           for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip()
                 for row in rows]
        lines.append(f"Usage on {store.today()} at {where} (Pacific time; daily quotas reset at midnight there)")
        lines += table
        lines.append(f"Cost at paid-tier prices as priced when asked ({where_from()}); cached input is part of "
                     "prompt." + (" A model with no price: add it with %config GeminiMagics.prices." if unpriced
                                  else ""))
    if limiter is not None:
        lines += limiter.describe_limits()
    return "\n".join(lines)


def limits_file(path: Path) -> tuple[dict, str | None]:
    """Per-model limits from `limits.json` (e.g. a paid tier's figures), and why the file
    could not be used, if it could not: a bad file is reported, never silently ignored."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, None
    except (OSError, ValueError) as exc:
        return {}, f"{path} was not used: {type(exc).__name__}: {exc}."
    from .settings import SettingError, check_rate_limits

    try:
        return check_rate_limits(data), None
    except SettingError as exc:
        return {}, f"{path} was not used: {exc}"

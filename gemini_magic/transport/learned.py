"""Limits that Google stated in its 429s, kept per account across kernels.

Gemini's 429 names the limit it enforced: `QuotaFailure.violations[].quotaId` says
what is counted, over which window and on which tier
(`GenerateRequestsPerMinutePerProjectPerModel-FreeTier`,
`GenerateRequestsPerDayPerProjectPerModel-FreeTier`,
`GenerateContentPaidTierInputTokensPerModelPerMinute`), `quotaValue` the figure and
`quotaDimensions.model` the model. The client cannot know a key's tier in advance;
this is how it learns it, and the only figures the default tier paces to.

What is learned is kept in `learned-limits.json` in the data folder, keyed by the
endpoint and a fingerprint of the key (a hash, never the key), so the next kernel
starts paced, and a test server or another key is not. A per-minute figure expires
after a day (a key's tier can change); a used-up daily quota lasts until the daily
reset, midnight Pacific time.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

# How long a stated per-minute limit is trusted without being stated again.
MINUTE_LIMIT_TTL = 24 * 3600.0
GOOGLE_ENDPOINT = "https://generativelanguage.googleapis.com"


def pacific():
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo("America/Los_Angeles")
    except Exception:  # no tz database (some Windows installs): standard time
        return timezone(timedelta(hours=-8))


def next_reset(now: float | None = None) -> float:
    """When Gemini's daily quotas reset next (midnight Pacific time), as epoch seconds."""
    moment = datetime.fromtimestamp(now if now is not None else time.time(), UTC).astimezone(pacific())
    # Aware datetimes add days in wall-clock time, so this is midnight across DST too.
    midnight = (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight.timestamp()


def account_id(endpoint: str | None, key: str | None) -> str:
    """Where quota is counted: the endpoint and a fingerprint of the key."""
    host = (endpoint or GOOGLE_ENDPOINT).rstrip("/")
    if not key:
        return host
    digest = hashlib.sha256(("gemini-magic account:" + key).encode()).hexdigest()[:16]
    return f"{host}#{digest}"


@dataclass
class Stated:
    """One limit Google stated: `metric` ("requests" or "tokens") per `window`
    ("minute" or "day") on `model` ("*" when the limit spans models)."""

    model: str
    metric: str
    window: str
    value: int | None
    tier: str  # "free", "paid" or "" (not said)
    quota_id: str
    learned: float  # epoch seconds
    expires: float

    @property
    def slot(self) -> tuple[str, str, str]:
        return (self.model, self.metric, self.window)


_WINDOWS = (("perminute", "minute"), ("perday", "day"), ("perhour", "hour"))


def parse_violation(violation: dict, model: str, now: float | None = None) -> Stated | None:
    """A QuotaFailure violation as a Stated limit (None when it names no window)."""
    now = time.time() if now is None else now
    quota_id = str(violation.get("quotaId") or "")
    metric_name = str(violation.get("quotaMetric") or "")
    text = (quota_id + " " + metric_name).lower().replace("_", "")
    window = next((name for marker, name in _WINDOWS if marker in text), None)
    if window is None:
        return None
    metric = "tokens" if "token" in text else "requests"
    tier = "free" if "freetier" in text else ("paid" if "paidtier" in text else "")
    dimensions = violation.get("quotaDimensions") or {}
    stated_model = str(dimensions.get("model") or model or "*").removeprefix("models/")
    try:
        value = int(str(violation.get("quotaValue")))
    except ValueError:
        value = None
    expires = next_reset(now) if window == "day" else now + MINUTE_LIMIT_TTL
    return Stated(stated_model, metric, window, value, tier, quota_id, now, expires)


def quota_violations(body) -> list[dict]:
    """The QuotaFailure violations of an error body (parsed JSON)."""
    error = body.get("error", body) if isinstance(body, dict) else {}
    found = []
    for detail in (error.get("details") or []) if isinstance(error, dict) else []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("google.rpc.QuotaFailure"):
            found += [v for v in detail.get("violations") or [] if isinstance(v, dict)]
    return found


def retry_seconds(body) -> float | None:
    error = body.get("error", body) if isinstance(body, dict) else {}
    for detail in (error.get("details") or []) if isinstance(error, dict) else []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = re.fullmatch(r"\s*([\d.]+)s\s*", str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


def describe(stated: Stated) -> str:
    """'5 requests a minute on the free tier', for messages."""
    unit = "input tokens" if stated.metric == "tokens" else "requests"
    amount = f"{stated.value:,} {unit}" if stated.value is not None else unit
    tier = {"free": " on the free tier", "paid": " on the paid tier"}.get(stated.tier, "")
    return f"{amount} a {stated.window}{tier}"


class LearnedLimits:
    """The limits stated to one account, backed by a file shared with other kernels.

    Reading re-checks the file only when it changed (one stat per request)."""

    def __init__(self, path: Path | None, clock=time.time):
        self.path = path
        self.clock = clock
        self.account = GOOGLE_ENDPOINT
        self._limits: dict[tuple, Stated] = {}
        self._mtime: float | None = None
        self._lock = threading.RLock()
        self.problem: str | None = None  # why the file could not be read, once

    def use_account(self, account: str) -> None:
        with self._lock:
            if account != self.account:
                self.account = account
                self._mtime = None
                self._limits = {}

    def all(self) -> list[Stated]:
        """Every limit in force for this account (expired ones dropped)."""
        with self._lock:
            self._refresh()
            now = self.clock()
            return [s for s in self._limits.values() if s.expires > now]

    def for_model(self, model: str) -> list[Stated]:
        return [s for s in self.all() if s.model in (model, "*")]

    def learn(self, stated: list[Stated]) -> None:
        if not stated:
            return
        with self._lock:
            self._refresh()
            for item in stated:
                self._limits[item.slot] = item
            self._save(stated)

    def forget(self) -> int:
        """Forget this account's limits (after an upgrade, say); how many there were."""
        with self._lock:
            self._refresh()
            count = len(self._limits)
            self._limits = {}
            self._save([], drop_account=True)
            return count

    # -- the file ----------------------------------------------------------------------

    def _read(self) -> dict:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            self.problem = f"{self.path} could not be read ({type(exc).__name__}); it will be rewritten."
            return {}
        return data if isinstance(data, dict) and isinstance(data.get("accounts"), dict) else {}

    def _refresh(self) -> None:
        if self.path is None:
            return
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            mtime = None
        if mtime == self._mtime and self._mtime is not None:
            return
        self._mtime = mtime
        entries = self._read().get("accounts", {}).get(self.account, [])
        limits = {}
        for raw in entries if isinstance(entries, list) else []:
            try:
                item = Stated(**raw)
            except TypeError:
                continue  # a field this version does not know: skip the entry
            limits[item.slot] = item
        self._limits = limits

    def _save(self, stated: list[Stated], drop_account: bool = False) -> None:
        if self.path is None:
            return
        from ..files import locked, write_atomic

        now = self.clock()
        try:
            with locked(self.path):  # merge with what other kernels learned meanwhile
                data = self._read() or {"version": 1, "accounts": {}}
                accounts = data.setdefault("accounts", {})
                if drop_account:
                    accounts.pop(self.account, None)
                else:
                    mine = {Stated(**e).slot: Stated(**e) for e in accounts.get(self.account, [])
                            if isinstance(e, dict) and _fields_ok(e)}
                    for item in stated:
                        mine[item.slot] = item
                    accounts[self.account] = [asdict(s) for s in mine.values() if s.expires > now]
                for account in list(accounts):  # expired entries of every account go
                    kept = [e for e in accounts[account] if isinstance(e, dict) and e.get("expires", 0) > now]
                    if kept:
                        accounts[account] = kept
                    else:
                        del accounts[account]
                write_atomic(self.path, json.dumps(data, indent=1, sort_keys=True) + "\n")
            self._mtime = self.path.stat().st_mtime
        except OSError as exc:
            # A read-only data folder: the limits still apply to this kernel.
            self.problem = f"Cannot save learned limits to {self.path}: {exc.strerror or exc}."


def _fields_ok(entry: dict) -> bool:
    try:
        Stated(**entry)
    except TypeError:
        return False
    return True


def default_path() -> Path:
    from ..usage import data_dir

    return data_dir() / "learned-limits.json"


def local_time(epoch: float) -> str:
    """'09:00 your time, in 7 h 12 min'."""
    moment = datetime.fromtimestamp(epoch).astimezone()
    left = max(0, int(epoch - time.time()))
    hours, minutes = divmod(left // 60, 60)
    span = f"{hours} h {minutes} min" if hours else f"{minutes} min"
    return f"{moment:%H:%M} your time ({moment:%Z}), in {span}"


def account_label(account: str) -> str:
    host, _, fingerprint = account.partition("#")
    host = host.split("://", 1)[-1]
    return f"{host} (key {fingerprint[:6]})" if fingerprint else host


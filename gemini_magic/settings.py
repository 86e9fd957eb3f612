"""Every setting, validated, as one snapshot that requests are built from.

GeminiMagics' traitlets mirror these fields (`%config`, ipython_config.py, the settings
panel) and are checked by `check` when set, so a bad value fails at once with a
message, not later inside a request. Outside IPython (the Python API), a snapshot
comes from the defaults and the environment. A request is built from one snapshot,
so a setting changed while a batch runs does not change it halfway.

    settings = Settings(model="gemini-2.5-pro", temperature=0.2)
    settings.replace(timeout=300)
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from .options import APPROVE_MODES, FORMATS, MEDIA_RESOLUTIONS, SERVICE_TIERS, THINKING_LEVELS, TIERS


class SettingError(ValueError):
    """A setting given a value it cannot take; the message says what it takes."""


@dataclass(frozen=True)
class Settings:
    model: str = "gemini-2.5-flash"
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_tokens: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    thinking: str | None = None
    system: str | None = None
    format: str = "markdown"
    stream: bool = True
    interpolate: bool = True
    usage: bool = False
    debug: bool = False
    base_url: str | None = None
    api_version: str | None = None
    timeout: float = 120.0
    vertexai: bool | None = None
    project: str | None = None
    location: str | None = None
    proxy: str | None = None
    ca_bundle: str | None = None
    retry_attempts: int = 4
    retry_max_wait: float = 90.0
    update_interval: float = 0.1
    max_image_side: int | None = 1536
    quota_tier: str = "auto"
    rate_limits: dict = field(default_factory=dict)
    shared_rpm: int | None = None
    track_usage: bool = True
    approve: str = "auto"
    max_steps: int = 10
    chat_token_budget: int = 200_000
    summary_chars: int = 4000
    summary_items: int = 50
    summary_rows: int = 5
    service_tier: str | None = None
    media_resolution: str | None = None
    prices: dict = field(default_factory=dict)
    cache_ttl: str = "1h"
    agent_approve: str = "ask"  # agent mode's code runs: only "auto" runs them without asking

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            object.__setattr__(self, item.name, check(item.name, getattr(self, item.name)))

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_environment(cls, **overrides: Any) -> Settings:
        """The defaults a new kernel gets, with the environment's quota tier."""
        tier = os.environ.get("GEMINI_MAGIC_QUOTA", "auto").strip().lower()
        values: dict[str, Any] = {"quota_tier": tier if tier in TIERS else "auto"}
        values.update(overrides)
        return cls(**values)


NAMES = tuple(item.name for item in dataclasses.fields(Settings))


# -- checks ----------------------------------------------------------------------------------


def _number(name: str, value: Any, low: float | None = None, high: float | None = None, *, integer: bool = False,
            optional: bool = True, exclusive_low: bool = False) -> Any:
    if value is None and optional:
        return None
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "a whole number" if integer else "a number"
        raise SettingError(f"{name} takes {kind}{' or None' if optional else ''}, not {value!r}.")
    too_low = low is not None and (value <= low if exclusive_low else value < low)
    if too_low or (high is not None and value > high):
        if high is not None:
            bounds = f"between {low:g} and {high:g}"
        else:
            bounds = f"more than {low:g}" if exclusive_low else f"at least {low:g}"
        raise SettingError(f"{name} must be {bounds}, not {value!r}.")
    return value


def _choice(name: str, value: Any, choices: tuple) -> Any:
    if value not in choices:
        raise SettingError(f"{name} takes one of {', '.join(map(repr, choices))}, not {value!r}.")
    return value


def _text(name: str, value: Any, optional: bool = True) -> Any:
    if value is None and optional:
        return None
    if not isinstance(value, str) or (not optional and not value.strip()):
        raise SettingError(f"{name} takes a {'non-empty ' if not optional else ''}string, not {value!r}.")
    return value


def _flag(name: str, value: Any, optional: bool = False) -> Any:
    if (value is None and optional) or isinstance(value, bool):
        return value
    raise SettingError(f"{name} takes True or False, not {value!r}.")


def check_thinking(value: Any) -> dict:
    """A thinking setting as the request's thinking_config (raises SettingError)."""
    if value is None:
        return {}
    text = str(value).strip().lower()
    if text in THINKING_LEVELS:
        return {"thinking_level": text.upper()}
    if text in ("off", "none"):
        return {"thinking_budget": 0}
    try:
        budget = int(text)
    except ValueError:
        raise SettingError(f"thinking takes a token budget (0 off, -1 dynamic) or one of "
                           f"{', '.join(THINKING_LEVELS)}, not {value!r}.") from None
    if budget < -1:
        raise SettingError("thinking budget must be -1 (dynamic), 0 (off) or more.")
    return {"thinking_budget": budget}


_LIMIT_KEYS = ("rpm", "tpm", "rpd", "tpd")


def check_rate_limits(value: Any) -> dict:
    if not isinstance(value, dict):
        raise SettingError(f"rate_limits takes a dict of models, e.g. {{'gemini-2.5-flash': {{'rpm': 1000}}}}, "
                           f"not {value!r}.")
    for model, figures in value.items():
        if not isinstance(model, str) or not isinstance(figures, dict):
            raise SettingError(f"rate_limits[{model!r}] takes a dict of {', '.join(_LIMIT_KEYS)}, not {figures!r}.")
        for key, figure in figures.items():
            if key not in _LIMIT_KEYS:
                raise SettingError(f"rate_limits[{model!r}]: unknown limit {key!r}; use {', '.join(_LIMIT_KEYS)}.")
            if figure is not None and (isinstance(figure, bool) or not isinstance(figure, int) or figure < 1):
                raise SettingError(f"rate_limits[{model!r}][{key!r}] takes a whole number of at least 1 or None, "
                                   f"not {figure!r}.")
    return dict(value)


def _url(name: str, value: Any) -> Any:
    value = _text(name, value)
    if value is not None and not value.lower().startswith(("http://", "https://", "socks5://", "socks5h://")):
        raise SettingError(f"{name} takes a URL such as http://host:port, not {value!r}.")
    return value


def _path(name: str, value: Any) -> Any:
    value = _text(name, value)
    if value is not None and not os.path.exists(os.path.expanduser(value)):
        raise SettingError(f"{name}: no such file or folder: {value}.")
    return value


_CHECKS = {
    "model": lambda v: _text("model", v, optional=False).strip().removeprefix("models/"),
    "temperature": lambda v: _number("temperature", v, 0.0, 2.0),
    "top_p": lambda v: _number("top_p", v, 0.0, 1.0),
    "top_k": lambda v: _number("top_k", v, 1, integer=True),
    "max_tokens": lambda v: _number("max_tokens", v, 1, integer=True),
    "seed": lambda v: _number("seed", v, integer=True),
    "thinking": lambda v: (check_thinking(v), v)[1],
    "system": lambda v: _text("system", v),
    "format": lambda v: _choice("format", v, FORMATS),
    "base_url": lambda v: _url("base_url", v),
    "api_version": lambda v: _text("api_version", v),
    "timeout": lambda v: _number("timeout", v, 0, optional=False, exclusive_low=True),
    "vertexai": lambda v: _flag("vertexai", v, optional=True),
    "project": lambda v: _text("project", v),
    "location": lambda v: _text("location", v),
    "proxy": lambda v: _url("proxy", v),
    "ca_bundle": lambda v: _path("ca_bundle", v),
    "retry_attempts": lambda v: _number("retry_attempts", v, 1, integer=True, optional=False),
    "retry_max_wait": lambda v: _number("retry_max_wait", v, 0, optional=False),
    "update_interval": lambda v: _number("update_interval", v, 0, optional=False),
    "max_image_side": lambda v: _number("max_image_side", v, 16, integer=True),
    "quota_tier": lambda v: _choice("quota_tier", v, TIERS),
    "rate_limits": check_rate_limits,
    "shared_rpm": lambda v: _number("shared_rpm", v, 1, integer=True),
    "approve": lambda v: _choice("approve", v, APPROVE_MODES),
    "agent_approve": lambda v: _choice("agent_approve", v, APPROVE_MODES),
    "max_steps": lambda v: _number("max_steps", v, 1, integer=True, optional=False),
    "chat_token_budget": lambda v: _number("chat_token_budget", v, 1, integer=True, optional=False),
    "summary_chars": lambda v: _number("summary_chars", v, 1, integer=True, optional=False),
    "summary_items": lambda v: _number("summary_items", v, 1, integer=True, optional=False),
    "summary_rows": lambda v: _number("summary_rows", v, 1, integer=True, optional=False),
    "service_tier": lambda v: None if v is None else _choice("service_tier", v, SERVICE_TIERS),
    "media_resolution": lambda v: None if v is None else _choice("media_resolution", v, MEDIA_RESOLUTIONS),
    "prices": lambda v: _prices(v),
    "cache_ttl": lambda v: (seconds_of("cache_ttl", v), v)[1],
}


def _prices(value: Any) -> dict:
    from .costs import check_prices

    try:
        return check_prices(value)
    except ValueError as exc:
        raise SettingError(f"prices: {exc}.") from None


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds_of(name: str, value: Any) -> int:
    """A duration such as 90s, 30m, 2h, 1d (or a number of seconds) in seconds."""
    text = str(value).strip().lower()
    try:
        seconds = float(text[:-1]) * _UNITS[text[-1]] if text and text[-1] in _UNITS else float(text)
    except ValueError:
        raise SettingError(f"{name} takes a duration such as 30m, 2h or 1d, not {value!r}.") from None
    if seconds < 1:
        raise SettingError(f"{name} must be at least a second, not {value!r}.")
    return int(seconds)
for _name in ("stream", "interpolate", "usage", "debug", "track_usage"):
    _CHECKS[_name] = lambda v, name=_name: _flag(name, v)


def check(name: str, value: Any) -> Any:
    """`value` for setting `name`, normalized; SettingError says what it takes."""
    if name == "stop":
        if isinstance(value, str) or not all(isinstance(v, str) for v in value or ()):
            raise SettingError(f"stop takes a list of strings, not {value!r}.")
        return tuple(value or ())
    checker = _CHECKS.get(name)
    return value if checker is None else checker(value)

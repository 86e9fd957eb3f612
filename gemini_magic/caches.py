"""Explicit context caching: a large context cached once, then asked about by many cells.

    %%gemini --cache-create handbook --ttl 2h --image handbook.pdf -s "Answer from the handbook."
    {notes}

    %%gemini --cache handbook
    What does chapter 3 say about release checks?

    %gemini caches                        # name, model, tokens, expiry
    %gemini cache-extend handbook 4h      # keep it 4 more hours from now
    %gemini cache-delete handbook

A cache is made from a cell's request, built as any request is (requests.py): its text
with {variables} filled in (a DataFrame becomes its bounded summary), `--image` files
and URLs (large ones through the Files API), `--context`, the system instruction and
the tools. Gemini keeps it until its TTL runs out, and bills its tokens at the cached
rate each time it is used, plus storage by the hour (costs.py).

Names: Gemini names a cache `cachedContents/<id>`; we give it the display name NAME, and
`--cache NAME` finds the newest of the key's caches with that display name (a resource
name works too). A cell that uses a cache asks its model, and sends no system
instruction or tools of its own: the API takes those only inside the cache.

(`%gemini replay-or-record` is record/replay, which was once called `%gemini cache`:
a different thing, see transport/replay.py.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from . import client as sdk
from .errors import CacheGone, GeminiError, explain
from .named import ByName


@dataclass
class CacheInfo:
    """One cache, as Gemini last described it."""

    name: str  # the display name given at creation (or the resource name)
    resource: str  # cachedContents/<id>
    model: str
    tokens: int | None
    expires: datetime | None
    created: datetime | None
    seen: datetime | None = None  # the server's clock when this was read (time left counts from it)

    @classmethod
    def of(cls, cached, seen: datetime | None = None) -> CacheInfo:
        usage = cached.usage_metadata
        return cls(cached.display_name or cached.name or "", cached.name or "",
                   (cached.model or "").removeprefix("models/"), usage.total_token_count if usage else None,
                   cached.expire_time, cached.create_time, seen)

    def expiry_words(self, now: datetime | None = None) -> str:
        """"until 2026-12-02 14:05 UTC (1 h 58 min left)", or "expired at ..."."""
        if self.expires is None:
            return "no expiry given"
        now = now or self.seen or datetime.now(UTC)
        left = (self.expires - now).total_seconds()
        at = self.expires.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        if left <= 0:
            return f"expired at {at}"
        hours, minutes = divmod(round(left / 60), 60)
        span = " ".join(part for part in (f"{hours} h" if hours else "", f"{minutes} min" if minutes else "") if part)
        return f"until {at} ({span or 'under a minute'} left)"


class Caches(ByName):
    """The caches of one connection, by name (made on first use by the session)."""

    prefix = "cachedContents/"

    def __init__(self, connection):
        super().__init__()
        self.connection = connection

    def _client(self):
        return self.connection.client()

    def _info(self, cached) -> CacheInfo:
        return CacheInfo.of(cached, self.connection.server_time())

    def create(self, name: str, request, ttl_seconds: int) -> CacheInfo:
        """Cache `request`'s contents (engine.Request: its contents, system instruction,
        server tools and function declarations) under the display name `name`."""
        types = sdk.types()
        contents = list(request.contents) if isinstance(request.contents, list) else [request.contents]
        config = {"display_name": name, "contents": contents, "ttl": f"{ttl_seconds}s"}
        system = request.config.get("system_instruction")
        if system:
            config["system_instruction"] = system
        tools = list(request.server_tools)
        if request.toolbox:
            tools.append({"function_declarations": request.toolbox.declarations()})
        if tools:
            config["tools"] = tools
        if request.config.get("tool_config"):
            config["tool_config"] = request.config["tool_config"]  # --location's retrieval config
        try:
            cached = self._client().caches.create(model=request.model_id,
                                                  config=types.CreateCachedContentConfig(**config))
        except Exception as exc:
            raise explain(exc, _context(self.connection, request.model_id)) from exc
        info = self._info(cached)
        info.name = name
        self.remember(name, info)
        return info

    def list(self) -> list[CacheInfo]:
        try:
            found = list(self._client().caches.list(config={"page_size": 100}))
        except Exception as exc:
            raise explain(exc, _context(self.connection)) from exc
        return [self._info(c) for c in found]

    def _get(self, resource: str) -> CacheInfo:
        try:
            return self._info(self._client().caches.get(name=resource))
        except Exception as exc:
            raise explain(exc, _context(self.connection)) from exc

    @staticmethod
    def _missing(name: str) -> GeminiError:
        return CacheGone(f"No context cache is called {name!r}: it expired, was deleted, or was never made.",
                         f"Create it with %%gemini --cache-create {name}; %gemini caches lists those alive.")

    def extend(self, name: str, ttl_seconds: int) -> CacheInfo:
        """Keep `name` for `ttl_seconds` from now."""
        info = self.find(name)
        try:
            updated = self._client().caches.update(
                name=info.resource, config=sdk.types().UpdateCachedContentConfig(ttl=f"{ttl_seconds}s"))
        except Exception as exc:
            self.forget(name)
            raise named_error(explain(exc, _context(self.connection, info.model)), name) from exc
        fresh = self._info(updated)
        fresh.name = info.name
        self.remember(name, fresh)
        return fresh

    def delete(self, name: str) -> CacheInfo:
        info = self.find(name)
        try:
            self._client().caches.delete(name=info.resource)
        except Exception as exc:
            raise named_error(explain(exc, _context(self.connection, info.model)), name) from exc
        finally:
            self.forget(name)
        return info



def named_error(error: GeminiError, name: str) -> GeminiError:
    """A cache error that names the cache the user gave."""
    if isinstance(error, CacheGone):
        return CacheGone(f"The context cache {name!r} is gone: it expired, or was deleted.",
                         f"Create it again with %%gemini --cache-create {name}; %gemini caches lists those alive.")
    return error


def storage_cost(info: CacheInfo, overrides: dict | None = None) -> float | None:
    """USD an hour to keep `info` cached, at the paid-tier price."""
    from .costs import price_for

    price = price_for(info.model, overrides)
    if price is None or price.cache_storage_per_hour is None or info.tokens is None:
        return None
    return info.tokens * price.cache_storage_per_hour / 1_000_000


def _context(connection, model: str = ""):
    from .errors import Context

    return Context(model=model, base_url=connection.base_url or "", timeout=connection.timeout)

"""%gemini caches, cache-extend and cache-delete: explicit context caches (caches.py).
A cache is made by a cell: `%%gemini --cache-create NAME`."""

from __future__ import annotations

from ...caches import CacheInfo, storage_cost
from ...costs import money


def caches(magics, args) -> None:
    found = magics.session.caches.list()
    if not found:
        print("No context caches alive for this key. Make one: %%gemini --cache-create NAME")
        return
    rows = [("name", "model", "tokens", "expires")]
    for info in sorted(found, key=lambda c: (c.name, c.created or 0)):
        rows.append((info.name, info.model, f"{info.tokens:,}" if info.tokens is not None else "?",
                     info.expiry_words()))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.rjust(w) if i == 2 else cell.ljust(w)
                        for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip())


def extend(magics, args) -> None:
    from ...errors import GeminiError
    from ...settings import SettingError, seconds_of

    name, ttl = args
    try:
        seconds = seconds_of("cache-extend", ttl)
    except SettingError as exc:
        raise GeminiError(str(exc), "For example: %gemini cache-extend NAME 2h.") from None
    info = magics.session.caches.extend(name, seconds)
    print(f"Cache {name!r} kept {info.expiry_words()}.")


def delete(magics, args) -> None:
    info = magics.session.caches.delete(args[0])
    print(f"Deleted cache {args[0]!r} ({info.resource}).")


def created(info: CacheInfo, prices: dict | None = None) -> str:
    """What a --cache-create cell says once the cache exists."""
    hourly = storage_cost(info, prices)
    storage = f" Keeping it costs about {money(hourly)} an hour at the paid-tier price." if hourly else ""
    tokens = f"{info.tokens:,} tokens" if info.tokens is not None else "its tokens"
    return (f"Cached {info.name!r}: {tokens} for {info.model}, kept {info.expiry_words()}. "
            f"Ask about it with %%gemini --cache {info.name}.{storage}")

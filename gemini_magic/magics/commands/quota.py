"""%gemini usage and limits: what was used today, and the limits in force (usage.py,
transport/limits.py)."""

from __future__ import annotations

from IPython.core.error import UsageError

from ...errors import GeminiError


def _ready(magics) -> None:
    """The limiter and store made, and the account named (it takes the client; without
    a key, as in replay, the endpoint alone)."""
    magics.engine  # noqa: B018
    try:
        magics.connection.client()
    except GeminiError:
        pass


def usage(magics, args) -> None:
    from ...usage import usage_table

    _ready(magics)
    if magics.connection.usage is None:
        print("Usage is not tracked (GeminiMagics.track_usage = False).")
        return
    print(usage_table(magics.connection.usage, magics.connection.limiter, free=magics.session.engine.free_tier))


def limits(magics, args) -> None:
    _ready(magics)
    limiter = magics.connection.limiter
    if args == ["forget"]:
        count = limiter.learned.forget()
        print(f"Forgot {count} limit(s) Google stated for this key and endpoint.")
        return
    if args:
        raise UsageError("Usage: %gemini limits  (or: %gemini limits forget)")
    print("\n".join(limiter.describe_limits()))

"""Failures a user can meet, as short messages that say what to do next.

`explain(exc)` turns whatever the SDK, the HTTP layer or the replay transport raised
into a `GeminiError`; the original stays in `__cause__` for `--debug`.
"""

from __future__ import annotations

import os
import re


def sentence(text: str) -> str:
    """`text` ending as a sentence ends: with a full stop unless it has one (or ?, !)."""
    text = text.strip()
    # Not after a path or address, where a full stop would read as part of it.
    if text and text[-1] not in ".!?…:" and not re.search(r"[/\\]\S*$", text):
        text += "."
    return text


class GeminiError(Exception):
    """An error with a one-line message and a next step.

    `transient` errors are retried; `retry_after` is the server's own delay (seconds).
    """

    kind = "error"
    transient = False

    def __init__(self, message: str, hint: str = "", *, retry_after: float | None = None):
        # Whole sentences, so message and hint read as two when joined (a server's own
        # message often has no full stop: "Fake INTERNAL This is usually temporary").
        message, hint = sentence(message), sentence(hint)
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()


class NoApiKey(GeminiError):
    kind = "no-key"

    def __init__(self) -> None:
        super().__init__(
            "No Gemini API key found.",
            "Set GEMINI_API_KEY in the environment (get a key at https://aistudio.google.com/apikey), "
            "or replay a recording: %gemini replay PATH.",
        )


class InvalidKey(GeminiError):
    kind = "invalid-key"


class PermissionDenied(GeminiError):
    kind = "permission"


class UnknownModel(GeminiError):
    kind = "unknown-model"


class QuotaExhausted(GeminiError):
    kind = "quota"
    transient = True
    stated: list = []  # the limits the 429 stated (transport/learned.py Stated)


class ServerProblem(GeminiError):
    kind = "server"
    transient = True


class Timeout(GeminiError):
    kind = "timeout"
    transient = True


class ConnectionFailed(GeminiError):
    kind = "connection"


class BadRequest(GeminiError):
    kind = "bad-request"


class PromptBlocked(GeminiError):
    kind = "blocked"


class NotRecorded(GeminiError):
    kind = "not-recorded"


class CacheGone(GeminiError):
    """A context cache that expired, was deleted, or never was (caches.py)."""

    kind = "cache-gone"


class CacheRefused(GeminiError):
    """A context cache Gemini would not make or use: too small, a model without
    caching, a different model, or a request setting what only the cache may hold."""

    kind = "cache"


class Context:
    """What an error message may name: the model asked for, the endpoint, and a way
    to list models (for close matches) that must not raise. (A plain class, not a
    dataclass: this module is imported when the extension loads, which must stay fast.)"""

    def __init__(self, model: str = "", base_url: str = "", timeout: float = 0.0, list_models=None):
        self.model = model
        self.base_url = base_url
        self.timeout = timeout
        self.list_models = list_models  # callable returning model ids, or None


def _seconds(text: str) -> float | None:
    match = re.fullmatch(r"\s*([\d.]+)s\s*", text or "")
    return float(match.group(1)) if match else None


def _details(exc) -> list:
    body = getattr(exc, "details", None)
    if isinstance(body, dict):
        body = body.get("error", body)
        if isinstance(body, dict):
            return body.get("details") or []
    return []


def retry_delay(exc) -> float | None:
    for detail in _details(exc):
        if isinstance(detail, dict) and detail.get("@type", "").endswith("google.rpc.RetryInfo"):
            return _seconds(detail.get("retryDelay", ""))
    return None


def _reason(exc) -> str:
    for detail in _details(exc):
        if isinstance(detail, dict) and detail.get("reason"):
            return detail["reason"]
    return ""


def explain(exc: BaseException, context: Context | None = None) -> GeminiError:
    """Translate an exception from a request into a GeminiError, scrubbed of the key
    (a server may echo it): every front end shows these messages as they are."""
    error = _explain(exc, context)
    from .client import find_api_key

    key = find_api_key()
    error.message, error.hint = scrub(error.message, key), scrub(error.hint, key)
    return error


def _explain(exc: BaseException, context: Context | None = None) -> GeminiError:
    context = context or Context()
    if isinstance(exc, GeminiError):
        return exc
    from .transport.replay import ReplayMiss

    if isinstance(exc, ReplayMiss):
        return _not_recorded(exc)
    name = type(exc).__name__
    module = type(exc).__module__
    if module.startswith("google.genai") and hasattr(exc, "code"):
        return _api_error(exc, context)
    if name in ("ConnectTimeout", "ReadTimeout", "WriteTimeout", "PoolTimeout", "TimeoutException") or (
        isinstance(exc, TimeoutError)
    ):
        limit = f" after {context.timeout:g} s" if context.timeout else ""
        return Timeout(
            f"The request timed out{limit}.",
            "Try again, or raise the limit: %config GeminiMagics.timeout = 300.",
        )
    if "CERTIFICATE_VERIFY_FAILED" in str(exc) or name == "SSLCertVerificationError":
        where = context.base_url or "the Gemini API"
        return ConnectionFailed(
            f"The certificate of {where} could not be verified.",
            "Behind a corporate proxy or firewall, point SSL_CERT_FILE (or "
            "%config GeminiMagics.ca_bundle) at your organisation's CA certificates.",
        )
    if name == "ProxyError":
        return ConnectionFailed(
            f"The proxy refused or failed the request ({exc}).",
            "Check HTTPS_PROXY / HTTP_PROXY / ALL_PROXY (or %config GeminiMagics.proxy), and NO_PROXY.",
        )
    if name in ("ConnectError", "RemoteProtocolError", "ReadError") or isinstance(exc, ConnectionError):
        where = context.base_url or "the Gemini API"
        return ConnectionFailed(
            f"Could not connect to {where}.",
            "Check your network and proxy (HTTPS_PROXY, NO_PROXY, %config GeminiMagics.proxy), or the "
            "endpoint in GOOGLE_GEMINI_BASE_URL / %config GeminiMagics.base_url.",
        )
    if isinstance(exc, ValueError) and "API key" in str(exc):
        return NoApiKey()
    if name in ("DefaultCredentialsError", "RefreshError"):
        return GeminiError(
            "No usable Google Cloud credentials for Vertex AI.",
            "Run `gcloud auth application-default login`, or use an API key without a project "
            "(Vertex AI express mode).",
        )
    return GeminiError(f"The request failed: {name}: {exc}", "Re-run with --debug for the full traceback.")


def _api_error(exc, context: Context) -> GeminiError:
    code = exc.code
    status = getattr(exc, "status", None) or ""
    message = (getattr(exc, "message", None) or "").strip()
    first_line = message.splitlines()[0] if message else status
    reason = _reason(exc)
    if reason == "API_KEY_INVALID" or (code == 400 and "API key" in message):
        return InvalidKey(
            "The API key was rejected (API_KEY_INVALID).",
            "Check GEMINI_API_KEY, or make a new key at https://aistudio.google.com/apikey; "
            "`%gemini models` tests a key.",
        )
    cache = _cache_error(code, message, context)
    if cache is not None:
        return cache
    if code == 403:
        return PermissionDenied(
            f"Permission denied: {first_line}",
            "The key may lack access to this model or API; check its project in AI Studio.",
        )
    if code == 404:
        return _unknown_model(first_line, context)
    if code == 429:
        return _quota_error(exc, context)
    if code in (408, 504):
        return Timeout(f"The server timed out ({code} {status}).", "Try again in a moment.")
    if code >= 500:
        return ServerProblem(
            f"Gemini had a server error ({code} {status}): {first_line}",
            "This is usually temporary: try again in a minute.",
            retry_after=retry_delay(exc),
        )
    return BadRequest(f"The request was rejected ({code} {status}): {first_line}",
                      "Check the options given (a cell's flags, or the chat's).")


_TOO_SMALL = re.compile(r"total_token_count=(\d+), min_total_token_count=(\d+)")


def _cache_error(code: int, message: str, context: Context) -> GeminiError | None:
    """Context-cache errors in words (the server's texts: realwire and gemini-wire.md)."""
    model = context.model.removeprefix("models/") or "This model"
    if code == 403 and "CachedContent not found" in message:
        return CacheGone("The context cache is gone: it expired, or was deleted.",
                         "Create it again with %%gemini --cache-create NAME; %gemini caches lists those alive.")
    if code == 404 and "createCachedContent" in message:
        return CacheRefused(f"{model} cannot cache context (it does not support createCachedContent).",
                            "Use a model that does, such as gemini-2.5-flash; `%gemini models` lists them.")
    if code != 400:
        return None
    small = _TOO_SMALL.search(message)
    if "too small" in message and small:
        tokens, least = int(small.group(1)), int(small.group(2))
        return CacheRefused(f"The context is too small to cache: {tokens:,} tokens, and {model} caches "
                            f"{least:,} or more.",
                            "Add to it, or ask without a cache: Gemini 2.5 and later reuse a repeated context "
                            "by themselves (implicit caching, shown as cached in the --usage footer).")
    if "CachedContent can not be used" in message:
        return CacheRefused("A request that uses a context cache cannot set its own system instruction or tools.",
                            "Give them to the cache (--cache-create with -s or --tools), or ask without --cache.")
    if "CachedContent" in message and "has to be the same" in message:
        return CacheRefused("The context cache was made for another model than the one asked.",
                            "Leave out -m: a cell with --cache asks the cache's model.")
    return None


def _quota_error(exc, context: Context) -> GeminiError:
    """A 429 in words: the limit Google stated (which model, how much, over what
    window, on which tier) and when to try again. A used-up daily quota is not
    retried; the limiter keeps it until the daily reset."""
    from .transport.learned import describe, parse_violation, quota_violations

    delay = retry_delay(exc)
    violations = quota_violations(getattr(exc, "details", None))
    stated = [s for s in (parse_violation(v, context.model.removeprefix("models/")) for v in violations) if s]
    daily = next((s for s in stated if s.window == "day"), None)
    if daily is not None:
        from .transport.limits import daily_quota_error

        return daily_quota_error(daily.model, daily, sent=True)
    if stated:
        first = stated[0]
        where = "" if first.model == "*" else f" for {first.model}"
        message = f"Gemini's rate limit{where} was reached: {describe(first)}."
    else:
        message = "Gemini's quota is exhausted for now (429 RESOURCE_EXHAUSTED)."
    hint = f"Retry in {delay:g} s." if delay is not None else "Wait a minute, then try again."
    if stated:
        hint += " Requests are paced to this limit from now on (`%gemini limits` shows it)."
    error = QuotaExhausted(message, hint, retry_after=delay)
    error.stated = stated
    return error


def _unknown_model(message: str, context: Context) -> GeminiError:
    model = context.model.removeprefix("models/")
    hint = "`%gemini models` lists the models your key can use."
    if model and callable(context.list_models):
        try:
            names = [m.removeprefix("models/") for m in context.list_models()]
        except Exception:  # the list is a nicety; never hide the real error
            names = []
        import difflib

        close = difflib.get_close_matches(model, names, n=3, cutoff=0.5)
        if close:
            hint = f"Did you mean {', '.join(close)}? " + hint
    what = f"Unknown model {model!r}." if model else f"Not found: {message}"
    return UnknownModel(what, hint)


def _not_recorded(miss) -> GeminiError:
    prompt = " ".join(miss.prompt.split())
    if len(prompt) > 60:
        prompt = prompt[:57] + "..."
    shown = f" for the prompt {prompt!r}" if prompt else f" for {miss.request.get('path') or miss.request.get('url')}"
    where = f" in {_shown_path(miss.path)}" if miss.path else ""
    if miss.reason == "no-key":
        return NotRecorded(
            f"No recorded answer{shown}{where}, and no API key to ask Gemini.",
            "Set GEMINI_API_KEY to record it (replay-or-record mode records what is missing).",
        )
    closest = f"{miss.closest} " if miss.closest else ""
    if miss.step:
        # An agent's code (or a tool) ran again on replay and returned something else: the
        # model's next step was recorded for the old result, so replay cannot go on.
        return NotRecorded(
            f"Replay miss at {miss.step}{where}.",
            "The tool ran again on replay and gave another result: make it deterministic (fixed data, a "
            "seed, sorted output), or record again: %gemini replay-or-record "
            f"{_shown_path(miss.path) if miss.path else 'PATH'}, then run the cell again.",
        )
    return NotRecorded(
        f"No recorded answer{shown}{where} (replay mode sends nothing to the network).",
        f"{closest}Record it with a key: %gemini replay-or-record "
        f"{_shown_path(miss.path) if miss.path else 'PATH'} (or GEMINI_MAGIC_MODE=replay-or-record), then run the "
        "cell again.",
    )


def _shown_path(path) -> str:
    """A recording's path relative to the working directory when it is below it."""
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative


def scrub(text: str, secret: str | None) -> str:
    """Remove a secret from text shown to the user (tracebacks with --debug)."""
    if secret and len(secret) >= 6:
        text = text.replace(secret, "<redacted>")
    return text

"""What identifies a recorded request, and how close two requests are.

A request is matched by a hash of its normalized form (the same on every machine and
run); a request that misses exactly can still be served the answer of one it only adds
fields to (what a newer SDK does), and a miss names how the closest one differs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

import httpx2

# Set on requests that are not Gemini API calls (URL fetches for --image): their
# host is part of what identifies them.
FETCH_EXTENSION = "gemini_magic_fetch"

_VERSION_PREFIX = re.compile(r"^/(upload/)?(v\d+(?:alpha|beta)?\d*)/")
# Query parameters that never identify a request (the upload session id is new
# on every run of a Files API upload).
_DROPPED_QUERY = {"key", "$alt", "upload_id"}


def last_user_text(body: dict) -> str:
    for content in reversed(body.get("contents") or []):
        for part in reversed(content.get("parts") or []):
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                return part["text"]
    return ""


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def _normalize_json(value: Any, tool_result: bool = False) -> Any:
    """Camel-case keys (the SDK mixes spellings across versions), drop nulls (a
    default, the server reads them as absent) and replace inline bytes with their
    hash, so images match by content and are not stored.

    An image inside a function response (an agent's figure, made again when a
    recording replays) matches by type and pixel size only: its bytes differ with the
    machine's fonts and matplotlib's version."""
    if isinstance(value, dict):
        # A turn carrying function responses carries their images too (models other than
        # Gemini 3 get them beside the responses): they match by size as well.
        parts = value.get("parts")
        tool_result = tool_result or (isinstance(parts, list) and any(
            isinstance(p, dict) and ("functionResponse" in p or "function_response" in p) for p in parts))
        out = {}
        for k, v in value.items():
            if v is not None:
                key = _camel(k)
                out[key] = _normalize_json(v, tool_result or key == "functionResponse")
        inline = out.get("inlineData")
        if isinstance(inline, dict) and isinstance(inline.get("data"), str):
            raw = _b64decode(inline["data"])
            if tool_result:
                inline = dict(inline, data={"image": _pixel_size(raw)})
            else:
                inline = dict(inline, data={"sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)})
            out["inlineData"] = inline
        return out
    if isinstance(value, list):
        return [_normalize_json(v, tool_result) for v in value]
    return value


def _pixel_size(raw: bytes) -> str:
    if raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) >= 24:
        return f"{int.from_bytes(raw[16:20], 'big')}x{int.from_bytes(raw[20:24], 'big')}"
    return "an image"


def _b64decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.urlsafe_b64decode(padded)
    except ValueError:
        return base64.b64decode(padded)


def normalize_request(request: httpx2.Request) -> dict:
    """What identifies a request, free of what varies between machines and runs:
    host, API version prefix, headers (key, SDK version), key query parameter.
    A URL fetch is identified by its whole URL."""
    if request.extensions.get(FETCH_EXTENSION):
        return {"method": request.method, "url": str(request.url)}
    path = _VERSION_PREFIX.sub(lambda m: m.group(1) or "", request.url.path)
    query = {k: v for k, v in sorted(request.url.params.items()) if k not in _DROPPED_QUERY}
    body: Any = None
    content = request.content
    if content:
        try:
            body = _normalize_json(json.loads(content))
        except ValueError:
            body = {"sha256": hashlib.sha256(content).hexdigest(), "bytes": len(content)}
    normalized = {"method": request.method, "path": path, "query": query, "body": body}
    if not query:
        del normalized["query"]
    return normalized


def request_key(normalized: dict) -> str:
    canonical = json.dumps(normalized, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


# -- near matches: what a newer SDK adds to a request --------------------------------------


def added_fields(recorded: Any, live: Any, where: str = "") -> list[str] | None:
    """The fields `live` has beyond `recorded`, when it differs in nothing else
    (None when a recorded value differs or is missing)."""
    if isinstance(recorded, dict) and isinstance(live, dict):
        added = [f"{where}{key}" for key in live if key not in recorded]
        for key, value in recorded.items():
            if key not in live:
                return None
            inner = added_fields(value, live[key], f"{where}{key}.")
            if inner is None:
                return None
            added += inner
        return added
    if isinstance(recorded, list) and isinstance(live, list):
        if len(recorded) != len(live):
            return None
        added = []
        for index, (old, new) in enumerate(zip(recorded, live, strict=True)):
            inner = added_fields(old, new, f"{where}{index}.")
            if inner is None:
                return None
            added += inner
        return added
    return [] if recorded == live else None


def differences(recorded: Any, live: Any, where: str = "") -> list[tuple[str, Any, Any]]:
    """(field path, recorded value, live value) where two requests differ, for a miss's
    message; a field one of them lacks has the value _ABSENT there."""
    if isinstance(recorded, dict) and isinstance(live, dict):
        out = []
        for key in sorted(recorded.keys() | live.keys()):
            out += differences(recorded.get(key, _ABSENT), live.get(key, _ABSENT), f"{where}{key}.")
        return out
    if isinstance(recorded, list) and isinstance(live, list) and len(recorded) == len(live):
        out = []
        for index, (old, new) in enumerate(zip(recorded, live, strict=True)):
            out += differences(old, new, f"{where}{index}.")
        return out
    return [] if recorded == live else [(where.rstrip(".") or "(the whole request)", recorded, live)]


_ABSENT = object()


def describe_difference(diff: list[tuple[str, Any, Any]]) -> str:
    """Changed values first, with both values when short; then fields only one side has."""
    changed = [(p, old, new) for p, old, new in diff if old is not _ABSENT and new is not _ABSENT]
    shown = []
    for path, old, new in changed[:3]:
        old_text, new_text = json.dumps(old, ensure_ascii=False), json.dumps(new, ensure_ascii=False)
        short = len(old_text) + len(new_text) <= 60
        shown.append(f"{path} ({old_text} recorded, {new_text} now)" if short else path)
    others = [p for p, old, new in diff if old is _ABSENT or new is _ABSENT]
    if others and len(shown) < 3:
        shown.append("fields only one has: " + ", ".join(others[: 3 - len(shown)]))
    more = len(changed) + len(others) - 3
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


_TOOL_RESULT = re.compile(r"^contents\.(\d+)\.parts\.(\d+)\.functionResponse(?:\.(.*))?$")


def tool_result_change(diff: list[tuple[str, Any, Any]], live: Any) -> str:
    """When a request differs from the closest recorded one in what a tool returned
    (an agent's code, run again, printed something else): "step N: TOOL's result
    differs ...", naming the step of the tool loop and the tool. Else ""."""
    for path, _old, _new in diff:
        found = _TOOL_RESULT.match(path)
        if not found or not isinstance(live, dict):
            continue
        contents = live.get("contents") or []
        index = int(found.group(1))
        try:
            name = contents[index]["parts"][int(found.group(2))]["functionResponse"].get("name", "a tool")
        except (IndexError, KeyError, TypeError):
            name = "a tool"
        step = sum(1 for content in contents[: index + 1]
                   if any(isinstance(p, dict) and "functionResponse" in p for p in content.get("parts") or []))
        within = [(_inner(p), old, new) for p, old, new in diff if p.startswith(f"contents.{index}.")]
        return f"step {step}: {name}'s result differs from the recording, in {describe_difference(within)}"
    return ""


def _inner(path: str) -> str:
    found = _TOOL_RESULT.match(path)
    rest = (found.group(3) or "response") if found else path
    return rest.removeprefix("response.")


def same_route(entry: dict, normalized: dict) -> bool:
    recorded = entry["request"]
    return all(recorded.get(k) == normalized.get(k) for k in ("method", "path", "query", "url"))

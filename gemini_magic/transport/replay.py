"""Record and replay Gemini traffic, at the HTTP seam.

Why here and not around the SDK's calls: a transport handed to the SDK through
`HttpOptions(httpx_client=...)` sees every request the SDK makes (answers, streams,
model lists, token counts, errors) as bytes on the wire. Replaying at this level
runs the SDK's own parsing, error classes and streaming unchanged, so everything
built above it (display, retries, chats, tools) behaves in replay exactly as live.

A recording is one JSON file: a list of entries in the order first seen, each the
normalized request (what matching hashes) and the responses as they arrived; a
streamed answer keeps its chunk boundaries, one JSON object per SSE event.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2

from .client import MODE_VARIABLE, MODES, PATH_VARIABLE  # noqa: F401  (re-exported)
from .files import write_atomic

FORMAT_VERSION = 1
REDACTED = "<redacted>"

_GENERATE = re.compile(r"/models/([^/:]+):(?:generateContent|streamGenerateContent)$")
_VERSION_PREFIX = re.compile(r"^/(upload/)?(v\d+(?:alpha|beta)?\d*)/")
# Query parameters that never identify a request (the upload session id is new
# on every run of a Files API upload).
_DROPPED_QUERY = {"key", "$alt", "upload_id"}
# Response headers the SDK reads: the resumable upload protocol's.
_KEPT_HEADERS = ("x-goog-upload-url", "x-goog-upload-status")


class ReplayMiss(Exception):
    """A request with no recorded answer, in a mode that may not go live."""

    def __init__(self, request: dict, path: Path | None, reason: str = "replay"):
        self.request = request
        self.path = path
        self.reason = reason  # "replay" (mode forbids live) or "no-key"
        super().__init__(f"no recorded answer for {request.get('path')}")

    @property
    def prompt(self) -> str:
        return last_user_text(self.request.get("body") or {})


def last_user_text(body: dict) -> str:
    for content in reversed(body.get("contents") or []):
        for part in reversed(content.get("parts") or []):
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                return part["text"]
    return ""


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def _normalize_json(value: Any) -> Any:
    """Camel-case keys (the SDK mixes spellings across versions) and replace inline
    bytes with their hash, so images match by content and are not stored."""
    if isinstance(value, dict):
        out = {_camel(k): _normalize_json(v) for k, v in value.items()}
        inline = out.get("inlineData")
        if isinstance(inline, dict) and isinstance(inline.get("data"), str):
            raw = _b64decode(inline["data"])
            inline = dict(inline, data={"sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)})
            out["inlineData"] = inline
        return out
    if isinstance(value, list):
        return [_normalize_json(v) for v in value]
    return value


def _b64decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.urlsafe_b64decode(padded)
    except ValueError:
        return base64.b64decode(padded)


def normalize_request(request: httpx2.Request) -> dict:
    """What identifies a request, free of what varies between machines and runs:
    host, API version prefix, headers (key, SDK version), key query parameter."""
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


def _parse_sse(raw: bytes) -> list:
    events = []
    for block in re.split(rb"\r?\n\r?\n", raw):
        lines = [line[5:].lstrip() for line in block.splitlines() if line.startswith(b"data:")]
        if not lines:
            continue
        text = b"\n".join(lines).decode("utf-8", "replace")
        try:
            events.append(json.loads(text))
        except ValueError:
            events.append(text)
    return events


def _record_response(status: int, headers, raw: bytes) -> dict:
    content_type = headers.get("content-type", "")
    if "text/event-stream" in content_type:
        return {"status": status, "stream": _parse_sse(raw)}
    try:
        body: Any = json.loads(raw) if raw else None
    except ValueError:
        # Not one JSON value (a downloaded file, e.g. a batch job's JSONL results):
        # kept as text and replayed byte for byte, not as a JSON string.
        recorded = {"status": status, "text": raw.decode("utf-8", "replace")}
        return recorded
    recorded = {"status": status, "body": body}
    kept = {name: headers[name] for name in _KEPT_HEADERS if name in headers}
    if kept:
        recorded["headers"] = kept
    return recorded


class Recording:
    """The recording file: entries keyed by request hash, written atomically."""

    def __init__(self, path: str | os.PathLike, *, fresh: bool = False):
        self.path = Path(path)
        self.entries: dict[str, dict] = {}
        if not fresh and self.path.exists():
            data = json.loads(self.path.read_text(encoding="utf-8"))
            for entry in data.get("entries", []):
                self.entries[entry["key"]] = entry

    def __len__(self) -> int:
        return len(self.entries)

    def save(self, secret: str | None = None) -> None:
        data = {
            "format": "gemini-magic recording",
            "version": FORMAT_VERSION,
            "entries": list(self.entries.values()),
        }
        text = json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
        if secret and secret in text:  # belt and braces: nothing should carry it
            text = text.replace(secret, REDACTED)
        write_atomic(self.path, text)


class _ReplayStream(httpx2.SyncByteStream):
    def __init__(self, events: list):
        self.events = events

    def __iter__(self) -> Iterator[bytes]:
        for event in self.events:
            text = event if isinstance(event, str) else json.dumps(event, ensure_ascii=False)
            yield f"data: {text}\r\n\r\n".encode()


class _TeeStream(httpx2.SyncByteStream):
    """Passes a live body through as it arrives and records it once complete."""

    def __init__(self, inner, on_complete):
        self.inner = inner
        self.on_complete = on_complete
        self.buffer = bytearray()

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.inner:
            self.buffer += chunk
            yield chunk
        # Only a body read to its end is recorded: an interrupted stream would
        # otherwise replay as a complete, truncated answer.
        self.on_complete(bytes(self.buffer))

    def close(self) -> None:
        self.inner.close()


class RecordingTransport(httpx2.BaseTransport):
    """An httpx transport that passes requests through, records them, or replays them.

    live: pass through. record: pass through and record (the file starts empty).
    replay: answer from the recording only. cache: replay what is recorded, record
    what is not.
    """

    def __init__(self, mode: str = "live", path: str | os.PathLike | None = None):
        self._inner: httpx2.HTTPTransport | None = None
        self._lock = threading.Lock()
        self._local = threading.local()
        self.api_key: str | None = None
        self.limiter = None  # quota.Limiter: live generate requests wait for a slot
        self.set_mode(mode, path)

    def set_mode(self, mode: str, path: str | os.PathLike | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if mode != "live" and path is None:
            raise ValueError(f"{mode} needs a recording file")
        with self._lock:
            self.mode = mode
            self.recording = None if mode == "live" else Recording(path, fresh=(mode == "record"))
            self._cursor: dict[str, int] = {}
            self._seen: set[str] = set()  # recorded in this session (record/cache)
            self.hits = self.misses = 0

    @property
    def last_was_replayed(self) -> bool:
        """Whether this thread's last response came from the recording (waits
        before a retry of a replayed error are skipped)."""
        return getattr(self._local, "replayed", False)

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        self._local.replayed = False
        if self.mode == "live":
            return self._live(request)
        normalized = normalize_request(request)
        key = request_key(normalized)
        if self.mode in ("replay", "cache"):
            replayed = self._replay(key, request)
            if replayed is not None:
                self._local.replayed = True
                return replayed
            if self.mode == "replay":
                self.misses += 1
                raise ReplayMiss(normalized, self.recording.path)
            if self.api_key is None or self.api_key == _no_key():
                self.misses += 1
                raise ReplayMiss(normalized, self.recording.path, reason="no-key")
        response = self._live(request)
        if self.mode == "live":
            return response

        def store(raw: bytes) -> None:
            self._store(key, normalized, _record_response(response.status_code, response.headers, raw))

        response.stream = _TeeStream(response.stream, store)
        return response

    def _replay(self, key: str, request: httpx2.Request) -> httpx2.Response | None:
        with self._lock:
            entry = self.recording.entries.get(key)
            if entry is None:
                return None
            # A request recorded several times (a 429, then its retry) replays its
            # answers in order; the last one repeats, so re-running a cell works.
            index = self._cursor.get(key, 0)
            self._cursor[key] = index + 1
            self.hits += 1
            recorded = entry["responses"][min(index, len(entry["responses"]) - 1)]
        if "stream" in recorded:
            return httpx2.Response(
                recorded["status"],
                headers={"content-type": "text/event-stream"},
                stream=_ReplayStream(recorded["stream"]),
                request=request,
            )
        body = recorded.get("body")
        content = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
        if "text" in recorded:
            content = recorded["text"].encode("utf-8")
        return httpx2.Response(
            recorded["status"],
            headers={"content-type": "application/json; charset=UTF-8", **recorded.get("headers", {})},
            content=content,
            request=request,
        )

    def _store(self, key: str, normalized: dict, response: dict) -> None:
        with self._lock:
            entry = self.recording.entries.get(key)
            if entry is not None and key in self._seen:
                # The same request again in this session (a retry after a 429, a
                # re-run cell): keep the sequence, so replay serves it in order.
                if entry["responses"][-1] != response:
                    entry["responses"].append(response)
            else:
                self.recording.entries[key] = {"key": key, "request": normalized, "responses": [response]}
            self._seen.add(key)
            self.recording.save(secret=self.api_key)

    def _live(self, request: httpx2.Request) -> httpx2.Response:
        generate = _GENERATE.search(request.url.path)
        slot = None
        if generate and self.limiter is not None:
            # Only what really goes out waits for a slot: a replayed answer costs no quota.
            slot = self.limiter.acquire(generate.group(1), tokens=len(request.content or b"") // 4)
        if self._inner is None:
            with self._lock:  # a batch's threads share one connection pool
                if self._inner is None:
                    self._inner = httpx2.HTTPTransport()
        response = self._inner.handle_request(request)
        if slot is not None:
            self.limiter.confirm(slot)  # headers are back: the server has counted it
        return response

    def close(self) -> None:
        # The SDK closes its client (and so this transport) when the client is
        # rebuilt; the transport outlives it, so reopen the pool on next use.
        if self._inner is not None:
            self._inner.close()
            self._inner = None

    def status(self) -> str:
        if self.mode == "live":
            return "live: requests go to the API; nothing is recorded"
        return (
            f"{self.mode}: {self.recording.path} ({len(self.recording)} recorded requests; "
            f"{self.hits} replayed, {self.misses} missed this session)"
        )


def _no_key() -> str:
    from .client import NO_KEY

    return NO_KEY

"""Record and replay Gemini traffic, at the HTTP seam.

Why here and not around the SDK's calls: a transport handed to the SDK through
`HttpOptions(httpx_client=...)` sees every request the SDK makes (answers, streams,
model lists, token counts, uploads, errors) as bytes on the wire. Replaying at this
level runs the SDK's own parsing, error classes and streaming unchanged, so
everything built above it (display, retries, chats, tools) behaves in replay exactly
as live. URL fetches for `--image` go through the same stack, so replay needs no
network at all.

This layer is the outermost: replay around the quota layer around the network. A
replayed answer never waits for a rate-limit slot and never teaches the limiter.

A recording is one JSON file: a list of entries in the order first seen, each the
normalized request (what matching hashes) and the responses as they arrived; a
streamed answer keeps its chunk boundaries, one JSON object per SSE event.

Matching survives SDK upgrades: a request that misses exactly is served the
recorded answer of a request with the same method, path and query whose body the
live one only adds to (a newer SDK's extra fields), when the mode cannot go live
anyway; `status()` says how many answers were served that way, and which fields.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2

from ..client import MODE_VARIABLE, MODES, PATH_VARIABLE, mode_of  # noqa: F401  (re-exported)
from ..files import write_atomic
from .matching import (  # noqa: F401  (FETCH_EXTENSION and last_user_text are re-exported)
    FETCH_EXTENSION,
    added_fields,
    describe_difference,
    differences,
    last_user_text,
    normalize_request,
    request_key,
    same_route,
    tool_result_change,
)

FORMAT_VERSION = 1
REDACTED = "<redacted>"
# Response headers the SDK reads: the resumable upload protocol's.
_KEPT_HEADERS = ("x-goog-upload-url", "x-goog-upload-status")
_JSON_TYPE = "application/json; charset=UTF-8"


def _weight(diff: list) -> tuple[int, int]:
    """How far apart two requests are: the size of what differs, then how many fields (a
    request with one more step differs in one field, "contents", but in all of it)."""
    return sum(len(json.dumps(old, default=str)) + len(json.dumps(new, default=str)) for _, old, new in diff), len(diff)


class ReplayMiss(Exception):
    """A request with no recorded answer, in a mode that may not go live."""

    def __init__(self, request: dict, path: Path | None, reason: str = "replay", closest: str = "",
                 step: str = ""):
        self.request = request
        self.path = path
        self.reason = reason  # "replay" (mode forbids live) or "no-key"
        self.closest = closest  # how the closest recorded request differs, if any
        self.step = step  # "step N: TOOL's result differs ...": a tool that returned something else now
        super().__init__(f"no recorded answer for {request.get('path') or request.get('url')}")

    @property
    def prompt(self) -> str:
        return last_user_text(self.request.get("body") or {})


# -- responses ----------------------------------------------------------------------------


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


def _record_response(status: int, headers, raw: bytes, path: str = "") -> dict:
    content_type = headers.get("content-type", "")
    # An error on ?alt=sse comes as a plain JSON body under an event-stream type.
    if "text/event-stream" in content_type and status < 400:
        return {"status": status, "stream": _parse_sse(raw)}
    recorded: dict[str, Any] = {"status": status}
    try:
        recorded["body"] = json.loads(raw) if raw else None
    except ValueError:
        # Not one JSON value: a downloaded file (a batch job's JSONL results), a
        # fetched image. Kept exactly: as text when it is text, else as base64.
        try:
            recorded["text"] = raw.decode("utf-8")
        except UnicodeDecodeError:
            recorded["base64"] = base64.b64encode(raw).decode("ascii")
    kept = {name: headers[name] for name in _KEPT_HEADERS if name in headers}
    if "cachedContents" in path and "date" in headers:
        kept["date"] = headers["date"]  # a cache's expiry is shown from the server's clock (server_time)
    if content_type and content_type != _JSON_TYPE:
        kept["content-type"] = content_type
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
                # Keys are computed afresh, so a recording made before a change to
                # normalization still matches.
                entry["key"] = request_key(entry["request"])
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
    """An httpx transport that passes requests to `inner`, records them, or replays them.

    live: pass through. record: pass through and record (the file starts empty).
    replay: answer from the recording only. replay-or-record: replay what is recorded, record
    what is not.
    """

    def __init__(self, inner: httpx2.BaseTransport, mode: str = "live", path: str | os.PathLike | None = None):
        self.inner = inner
        self._lock = threading.Lock()
        self._local = threading.local()
        self.api_key: str | None = None
        self.set_mode(mode, path)

    def set_mode(self, mode: str, path: str | os.PathLike | None = None) -> None:
        mode = mode_of(mode)
        if mode != "live" and path is None:
            raise ValueError(f"{mode} needs a recording file")
        with self._lock:
            self.mode = mode
            self.recording = None if mode == "live" else Recording(path, fresh=(mode == "record"))
            self._cursor: dict[str, int] = {}
            self._seen: set[str] = set()  # recorded in this session (record, replay-or-record)
            self.hits = self.misses = 0
            self.near: dict[str, list[str]] = {}  # near matches served: recorded key -> fields added

    @property
    def last_was_replayed(self) -> bool:
        """Whether this thread's last response came from the recording (waits
        before a retry of a replayed error are skipped)."""
        return getattr(self._local, "replayed", False)

    def server_time(self):
        """The Date of this thread's last response (a recorded one's, in replay), as an
        aware datetime; None when it had none. A cache's time left is counted from it,
        so a replayed notebook shows what the recorded one showed."""
        date = getattr(self._local, "date", None)
        if not date:
            return None
        from email.utils import parsedate_to_datetime

        try:
            return parsedate_to_datetime(date)
        except (TypeError, ValueError):
            return None

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = self._handle(request)
        self._local.date = response.headers.get("date")
        return response

    def _handle(self, request: httpx2.Request) -> httpx2.Response:
        self._local.replayed = False
        if self.mode == "live":
            return self.inner.handle_request(request)
        normalized = normalize_request(request)
        key = request_key(normalized)
        if self.mode in ("replay", "replay-or-record"):
            replayed = self._replay(key, request)
            can_go_live = self.mode == "replay-or-record" and self.api_key not in (None, _no_key())
            if replayed is None and not can_go_live:
                replayed = self._replay_near(normalized, request)
            if replayed is not None:
                self._local.replayed = True
                return replayed
            if not can_go_live:
                self.misses += 1
                reason = "replay" if self.mode == "replay" else "no-key"
                closest, step = self._closest(normalized)
                raise ReplayMiss(normalized, self.recording.path, reason, closest, step)
        response = self.inner.handle_request(request)

        def store(raw: bytes) -> None:
            self._store(key, normalized, _record_response(response.status_code, response.headers, raw,
                                                          str(normalized.get("path") or "")))

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
        return _response(recorded, request)

    def _replay_near(self, normalized: dict, request: httpx2.Request) -> httpx2.Response | None:
        """The recorded answer of a request this one only adds fields to (what a
        newer SDK does): the fewest added fields wins."""
        best: tuple[int, str, list[str]] | None = None
        with self._lock:
            for key, entry in self.recording.entries.items():
                if not same_route(entry, normalized):
                    continue
                added = added_fields(entry["request"].get("body"), normalized.get("body"))
                if added is not None and (best is None or len(added) < best[0]):
                    best = (len(added), key, added)
        if best is None:
            return None
        _, key, added = best
        self.near[key] = added
        return self._replay(key, request)

    def _closest(self, normalized: dict) -> tuple[str, str]:
        """How the closest recorded request on the same route differs, briefly; and when
        the difference is a tool's result, which step and tool (tool_result_change)."""
        best: list | None = None
        with self._lock:
            for entry in self.recording.entries.values():
                if same_route(entry, normalized):
                    diff = differences(entry["request"].get("body"), normalized.get("body"))
                    if best is None or _weight(diff) < _weight(best):
                        best = diff
        if not best:
            return "", ""
        return (f"The closest recorded request differs in {describe_difference(best)}.",
                tool_result_change(best, normalized.get("body")))

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

    def close(self) -> None:
        self.inner.close()

    def status(self) -> str:
        if self.mode == "live":
            return "live: requests go to the API; nothing is recorded"
        text = (
            f"{self.mode}: {self.recording.path} ({len(self.recording)} recorded requests; "
            f"{self.hits} replayed, {self.misses} missed this session)"
        )
        if self.near:
            fields = sorted({field for added in self.near.values() for field in added})
            text += (f"\n{len(self.near)} replayed from recorded requests that this version of google-genai "
                     f"adds fields to: {', '.join(fields[:5])}. Re-record to refresh them.")
        return text


def _response(recorded: dict, request: httpx2.Request) -> httpx2.Response:
    headers = dict(recorded.get("headers", {}))
    if "stream" in recorded:
        headers.setdefault("content-type", "text/event-stream")
        return httpx2.Response(recorded["status"], headers=headers, stream=_ReplayStream(recorded["stream"]),
                               request=request)
    headers.setdefault("content-type", _JSON_TYPE)
    if "text" in recorded:
        content = recorded["text"].encode("utf-8")
    elif "base64" in recorded:
        content = base64.b64decode(recorded["base64"])
    else:
        body = recorded.get("body")
        content = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
    return httpx2.Response(recorded["status"], headers=headers, content=content, request=request)


def _no_key() -> str:
    from ..client import NO_KEY

    return NO_KEY

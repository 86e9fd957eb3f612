"""The Files API: data over the inline limit, uploaded once per session by content."""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..errors import GeminiError, explain
from .kinds import MediaError

if TYPE_CHECKING:
    from google.genai import types

Progress = Callable[[str, "float | None"], None]


def _sdk_types():
    from ..client import types as sdk_types  # waits for the background import, if any

    return sdk_types()


class _ReadProgress(io.BytesIO):
    """Reports how much the SDK has sent: it reads the stream one chunk per request,
    so at each read the bytes before it are on their way."""

    def __init__(self, data: bytes, report: Callable[[float], None]):
        super().__init__(data)
        self._size = len(data) or 1
        self._report = report

    def read(self, size: int | None = -1) -> bytes:
        sent = self.tell()
        if sent:
            self._report(sent / self._size)
        return super().read(size)


def _silent(stage: str, fraction: float | None) -> None:
    pass


def _state(file: Any) -> str:
    state = getattr(file, "state", None)
    return getattr(state, "name", None) or str(state or "")


class Uploads:
    """Files uploaded in this session, by content: the same bytes upload once.

        uploads = Uploads()
        part = uploads.part_for(video_bytes, "video/mp4", client, progress=bar)
        again = uploads.part_for(video_bytes, "video/mp4", client)   # no request

    `progress(stage, fraction)` is called with ("uploading", 0.0), ("uploading", f)
    as chunks go, ("uploaded", 1.0), ("processing", None) while Gemini prepares the
    file, and ("done", 1.0). A cached file reports nothing. `max_wait` bounds the
    wait for processing (seconds); `sleep` and `clock` are for tests.
    """

    # Uploads expire after 48 hours; one about to expire is uploaded again.
    EXPIRY_MARGIN = timedelta(hours=1)

    def __init__(
        self,
        *,
        max_wait: float = 300.0,
        poll_interval: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.max_wait = max_wait
        self.poll_interval = poll_interval
        self.sleep = sleep
        self.clock = clock
        self.files: dict[tuple[str, str], Any] = {}  # (sha256, mime type) -> types.File
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.files)

    def clear(self) -> None:
        """Forget every upload (the files stay on the server until they expire)."""
        with self._lock:
            self.files.clear()

    def part_for(
        self,
        data: bytes,
        mime_type: str,
        client: Any,
        progress: Progress | None = None,
        *,
        display_name: str | None = None,
    ) -> types.Part:
        """A file_data part for `data`, uploading it unless this session already did."""
        report = progress or _silent
        digest = hashlib.sha256(data).hexdigest()
        name = display_name or f"upload-{digest[:12]}"
        # Keyed by type too: the same text sent as .md and as .txt are two parts.
        key = (digest, mime_type)
        with self._lock:
            file = self.files.get(key)
        busy = file is None or self._expiring(file)
        if busy:
            file = self._upload(data, mime_type, client, report, name)
            # Cached before processing ends: a run that gave up waiting reuses it.
            with self._lock:
                self.files[key] = file
        if _state(file) == "PROCESSING":
            busy = True
            file = self._wait_until_active(file, client, report, name)
            with self._lock:
                self.files[key] = file
        if _state(file) == "FAILED":
            with self._lock:
                self.files.pop(key, None)  # so that running the cell again uploads afresh
            error = getattr(file, "error", None)
            why = f": {error.message}" if error is not None and error.message else "."
            raise MediaError(
                f"Gemini could not process {name}{why}",
                "The file may be damaged or in a format Gemini cannot read; try another format.",
            )
        if busy:
            report("done", 1.0)
        types = _sdk_types()
        return types.Part(file_data=types.FileData(file_uri=file.uri, mime_type=mime_type))

    def _expiring(self, file: Any) -> bool:
        expires = getattr(file, "expiration_time", None)
        if not isinstance(expires, datetime):
            return False
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
        return expires - datetime.now(UTC) < self.EXPIRY_MARGIN

    def _upload(self, data: bytes, mime_type: str, client: Any, report: Progress, name: str) -> Any:
        report("uploading", 0.0)
        stream = _ReadProgress(data, lambda fraction: report("uploading", fraction))
        try:
            file = client.files.upload(file=stream, config={"mime_type": mime_type, "display_name": name})
        except GeminiError:
            raise
        except Exception as exc:  # SDK / HTTP errors read like every other request's
            raise explain(exc) from exc
        report("uploaded", 1.0)
        return file

    def _wait_until_active(self, file: Any, client: Any, report: Progress, name: str) -> Any:
        """Poll files.get while the file is PROCESSING; the file in its final state."""
        deadline = self.clock() + self.max_wait
        delay = self.poll_interval
        first = True
        while _state(file) == "PROCESSING":
            # The first look is immediate: images are usually ready at once.
            if not first:
                if self.clock() >= deadline:
                    raise MediaError(
                        f"{name} is still being processed by Gemini after {self.max_wait:g} s.",
                        "Long videos take minutes: run the cell again later (the upload is reused).",
                    )
                self.sleep(max(0.0, min(delay, deadline - self.clock())))
                delay = min(delay * 1.5, 5.0)
            first = False
            report("processing", None)
            try:
                file = client.files.get(name=file.name)
            except Exception as exc:
                raise explain(exc) from exc
        return file


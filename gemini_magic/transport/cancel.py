"""Stopping an answer from any thread: its HTTP responses close now, and nothing more is sent.

A Stop button runs on the kernel's thread while the answer streams on another, which
sits in a blocking read for as long as the model thinks (or in a rate-limit wait).
Closing the SDK's generator from outside does not work ("generator already
executing"), and closing a socket's file descriptor does not wake a read blocked on
it. So every response an answer opens is registered with its `Cancel`, and
`cancel()` shuts the socket down (the server sees the connection close, the read
returns at once), then refuses any request the answer would still make.

    cancel = Cancel()
    with cancel.scope():        # on the answer's thread: its requests register here
        ...
    cancel.cancel()             # from any thread

The stack is CancelTransport(RecordingTransport(QuotaTransport(NetworkTransport))):
the limiter's waits and the engine's retry pauses wake on cancel() too."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import httpx2

_current = threading.local()


class Cancelled(Exception):
    """The answer was stopped; raised where a request would be sent or read."""


def current() -> Cancel | None:
    """The Cancel of the answer running on this thread, if any."""
    return getattr(_current, "cancel", None)


def leave(previous: Cancel | None) -> None:
    _current.cancel = previous


class Cancel:
    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._responses: list[httpx2.Response] = []

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    @contextlib.contextmanager
    def scope(self) -> Iterator[Cancel]:
        previous = self.enter()
        try:
            yield self
        finally:
            leave(previous)

    def enter(self) -> Cancel | None:
        """Make this the thread's Cancel (cheaper than scope(), for every streamed
        chunk); give what it returns to leave()."""
        previous = getattr(_current, "cancel", None)
        _current.cancel = self
        return previous

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking early when cancelled; True if cancelled."""
        return self._event.wait(seconds)

    def register(self, response: httpx2.Response) -> None:
        with self._lock:
            if not self._event.is_set():
                self._responses.append(response)
                return
        _shut(response)
        raise Cancelled()

    def forget(self, response: httpx2.Response) -> None:
        with self._lock:
            if response in self._responses:
                self._responses.remove(response)

    def cancel(self) -> None:
        with self._lock:
            self._event.set()
            responses, self._responses = self._responses, []
        for response in responses:
            _shut(response)


def _shut(response: httpx2.Response) -> None:
    """Shut the response's socket down (wakes a read blocked on it), then close it."""
    stream = response.extensions.get("network_stream")
    if stream is not None:
        try:
            sock = stream.get_extra_info("socket")
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # already closed
            pass
    try:
        response.close()
    except Exception:  # noqa: BLE001  (closing from another thread may race the reader; it is closed either way)
        pass


class _Watched(httpx2.SyncByteStream):
    """A response body that stops between chunks once cancelled, and is forgotten when done."""

    def __init__(self, inner, cancel: Cancel, response: httpx2.Response):
        self.inner = inner
        self.cancel = cancel
        self.response = response

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self.inner:
                self.cancel.check()
                yield chunk
        except (httpx2.HTTPError, OSError):
            self.cancel.check()  # a read ended by cancel() is a cancellation, not a network error
            raise

    def close(self) -> None:
        self.cancel.forget(self.response)
        self.inner.close()


class CancelTransport(httpx2.BaseTransport):
    """The outermost layer: a cancelled answer sends nothing more, and its open
    responses are registered so that cancel() can close them."""

    def __init__(self, inner: httpx2.BaseTransport):
        self.inner = inner

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        cancel = current()
        if cancel is None:
            return self.inner.handle_request(request)
        cancel.check()
        response = self.inner.handle_request(request)
        cancel.register(response)
        response.stream = _Watched(response.stream, cancel, response)
        return response

    def close(self) -> None:
        self.inner.close()

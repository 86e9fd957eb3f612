"""The quota layer of the HTTP stack: generate requests wait for the limiter's slot,
and every 429 teaches it (limits.py). It sits under record/replay, over the network:
only requests that really go out wait, count or teach."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx2

from .cancel import current
from .limits import _GENERATE, Limiter


def _on_sent(request: httpx2.Request, confirm: Callable[[], None]) -> list:
    """Call `confirm` when the request's body has been sent: the server counts a request
    when it arrives, and a non-streamed answer's headers come only after the whole
    answer, so waiting for them would put the window behind by the answer's latency.
    httpcore's documented `trace` extension says when the body is out."""
    sent: list = []
    previous = request.extensions.get("trace")

    def trace(name: str, info: dict) -> None:
        if name == "http11.send_request_body.complete" and not sent:
            sent.append(True)
            confirm()
        if previous is not None:
            previous(name, info)

    request.extensions["trace"] = trace
    return sent


class QuotaTransport(httpx2.BaseTransport):
    """Generate requests wait for the limiter's slot; every 429 teaches it.

    Sits between record/replay (outside) and the network (inside)."""

    def __init__(self, inner: httpx2.BaseTransport, limiter: Limiter | None = None):
        self.inner = inner
        self.limiter = limiter

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        limiter = self.limiter
        if limiter is None or not limiter.active:
            return self.inner.handle_request(request)
        match = _GENERATE.search(request.url.path)
        model = match.group(1) if match else None
        slot = sent = None
        if model is not None:
            if limiter.wants_tokens(model):
                from .tokens import request_tokens

                slot = limiter.acquire(model, request_tokens(request.content))
            else:
                slot = limiter.acquire(model)
            sent = _on_sent(request, lambda: limiter.confirm(slot))
        try:
            cancel = current()
            if cancel is not None:
                cancel.check()  # stopped during the wait for the slot
            response = self.inner.handle_request(request)
        except BaseException:
            limiter.release(slot)  # never reached the server
            raise
        if response.status_code != 429:
            if sent is not None and not sent:
                limiter.confirm(slot)  # no trace of the send (HTTP/2, replay): the headers are back
            return response
        limiter.release(slot)
        return self._learn(response, model)

    def _learn(self, response: httpx2.Response, model: str | None) -> httpx2.Response:
        body = response.read()
        response.close()
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = {}
        self.limiter.learn(parsed, model)
        # The body was read (and decoded) here: pass on a response that streams it
        # again (a stream, not `content=`, so a recording layer above still sees it go by).
        headers = [(k, v) for k, v in response.headers.items()
                   if k.lower() not in ("content-length", "transfer-encoding", "content-encoding")]
        headers.append(("content-length", str(len(body))))
        return httpx2.Response(response.status_code, headers=headers, stream=httpx2.ByteStream(body),
                               request=response.request, extensions=response.extensions)

    def close(self) -> None:
        self.inner.close()

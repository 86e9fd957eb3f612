"""Self-tests of tests/proxy.py: the forward proxy really relays, streams, keeps
connections alive and tunnels, so tests built on it can trust its log."""

from __future__ import annotations

import hashlib
import http.client
import queue
import random
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from tests.proxy import ForwardProxy
from tests.tls import client_ssl_context, make_test_ca, wrap_server

_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
_ACK_TIMEOUT = 2.0  # how long the origin holds the next event for the client's ack


# ---------------------------------------------------------------------------
# A tiny origin server
# ---------------------------------------------------------------------------


class _OriginHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked answers
    server: _OriginServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # events leave at once

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        origin = self.server.origin
        origin.request_lines.append(self.requestline)
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        body = self._read_body()
        if url.path == "/hello":
            self._send(200, f"hello from {origin.name}".encode())
        elif url.path == "/echo":
            framing = "chunked" if "chunked" in self.headers.get("Transfer-Encoding", "") else "length"
            self._send(200, body, {"X-Received-Sha256": hashlib.sha256(body).hexdigest(), "X-Framing": framing})
        elif url.path == "/sse":
            self._sse(query["token"], int(query["events"]))
        elif url.path == "/chunked":
            self._send_chunked(_payload(int(query["size"])))
        elif url.path == "/eof":
            # No Content-Length, no chunking: the body ends when we close.
            self.close_connection = True
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"until the end")
        else:
            self._send(404, b"not found")

    do_POST = do_PUT = do_GET

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            data = bytearray()
            while size := int(self.rfile.readline().split(b";")[0], 16):
                data += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
            return bytes(data)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_chunked(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(0, len(body), 50_000):
            piece = body[i : i + 50_000]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")

    def _sse(self, token: str, events: int) -> None:
        """Each event after the first waits for the client to ack the one before.

        So the stream can only finish promptly if every event reached the
        client while the origin was still holding the rest: a buffering proxy
        makes each wait time out, and the token is listed in ``late``.
        """
        acks = self.server.origin.acks(token)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(events):
            if i and not _wait(acks):
                self.server.origin.late.append(token)
            payload = f'data: {{"event": {i}}}\r\n\r\n'.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(payload), payload))
        self.wfile.write(b"0\r\n\r\n")


def _wait(acks: queue.Queue) -> bool:
    try:
        acks.get(timeout=_ACK_TIMEOUT)
        return True
    except queue.Empty:
        return False


def _payload(size: int) -> bytes:
    return random.Random(size).randbytes(size)


class _OriginServer(ThreadingHTTPServer):
    daemon_threads = True
    origin: Origin

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can stall offline.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class Origin:
    """An HTTP (or, given a CA, HTTPS) server on 127.0.0.1 for the proxy to reach."""

    def __init__(self, name: str, ca: Any = None):
        self.name = name
        self.request_lines: list[str] = []
        self.late: list[str] = []  # SSE tokens whose events went out without the client's ack
        self._acks: dict[str, queue.Queue] = {}
        self._httpd = _OriginServer(("127.0.0.1", 0), _OriginHandler)
        self._httpd.origin = self
        self.scheme = "http"
        if ca is not None:
            wrap_server(self._httpd, ca)
            self.scheme = "https"
        self.port = self._httpd.server_address[1]
        self.url = f"{self.scheme}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def acks(self, token: str) -> queue.Queue:
        return self._acks.setdefault(token, queue.Queue())

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def _proxy():
    with ForwardProxy() as proxy:
        yield proxy


@pytest.fixture
def proxy(_proxy):
    _proxy.unblock()
    _proxy.clear()
    yield _proxy
    _proxy.unblock()


@pytest.fixture(scope="module")
def origin():
    server = Origin("a")
    yield server
    server.close()


@pytest.fixture(scope="module")
def origin_b():
    server = Origin("b")
    yield server
    server.close()


@pytest.fixture(scope="module")
def tls_origin(tmp_path_factory):
    ca = make_test_ca(tmp_path_factory.mktemp("proxy-tls"))
    server = Origin("tls", ca=ca)
    server.ca = ca
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _no_env_proxies(monkeypatch):
    # A developer's own proxy settings must not reroute or exempt our requests.
    for name in _PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def _client(proxy: ForwardProxy, **kwargs: Any) -> httpx2.Client:
    return httpx2.Client(proxy=proxy.url, trust_env=False, timeout=10, **kwargs)


def _entry(method: str, target: str, host: str, port: int) -> dict[str, Any]:
    return {"method": method, "target": target, "host": host, "port": port}


def _logged(proxy: ForwardProxy) -> list[dict[str, Any]]:
    return [{k: e[k] for k in ("method", "target", "host", "port")} for e in proxy.requests()]


def _read_sse(response: httpx2.Response, acks: queue.Queue) -> list[str]:
    events = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            events.append(line.removeprefix("data: "))
            acks.put(True)  # lets the origin send the next event
    return events


# ---------------------------------------------------------------------------
# Plain HTTP forwarding
# ---------------------------------------------------------------------------


def test_request_is_forwarded_in_origin_form_and_logged(proxy, origin):
    url = f"{origin.url}/hello?x=1&y=%20"
    with _client(proxy) as client:
        response = client.get(url)
    assert response.status_code == 200
    assert response.text == "hello from a"
    assert _logged(proxy) == [_entry("GET", url, "127.0.0.1", origin.port)]
    assert proxy.requests()[0]["blocked"] is False
    # The proxy rewrote the absolute-form target for the origin.
    assert origin.request_lines[-1] == "GET /hello?x=1&y=%20 HTTP/1.1"


def test_sse_events_arrive_while_the_origin_still_holds_the_rest(proxy, origin):
    token = "plain-sse"
    url = f"{origin.url}/sse?token={token}&events=4"
    with _client(proxy) as client, client.stream("POST", url, content=b"{}") as response:
        assert response.headers["content-type"] == "text/event-stream"
        events = _read_sse(response, origin.acks(token))
    assert events == [f'{{"event": {i}}}' for i in range(4)]
    assert token not in origin.late, "the proxy buffered the stream"
    assert _logged(proxy) == [_entry("POST", url, "127.0.0.1", origin.port)]


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_large_upload_and_answer_arrive_intact(proxy, origin, framing):
    data = _payload(3 * 1024 * 1024 + 17)
    # A generator makes httpx2 send Transfer-Encoding: chunked.
    content = data if framing == "length" else (data[i : i + 100_000] for i in range(0, len(data), 100_000))
    with _client(proxy) as client:
        response = client.post(f"{origin.url}/echo", content=content)
    assert response.status_code == 200
    assert response.headers["x-framing"] == framing
    assert response.headers["x-received-sha256"] == hashlib.sha256(data).hexdigest()
    assert response.content == data


def test_large_chunked_answer_arrives_intact(proxy, origin):
    with _client(proxy) as client:
        response = client.get(f"{origin.url}/chunked?size=3000000")
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.content == _payload(3_000_000)


def test_kept_alive_httpx2_client_reuses_its_proxy_connections(proxy, origin, origin_b):
    expected = []
    with _client(proxy) as client:
        for server, method in [(origin, "GET"), (origin_b, "GET"), (origin, "POST"), (origin_b, "GET")]:
            url = f"{server.url}/{'hello' if method == 'GET' else 'echo'}"
            response = client.request(method, url, content=b"ping" if method == "POST" else None)
            assert response.status_code == 200
            assert response.content == (b"ping" if method == "POST" else f"hello from {server.name}".encode())
            expected.append(_entry(method, url, "127.0.0.1", server.port))
    assert _logged(proxy) == expected
    # httpx2 pools proxied connections per target, so each target reused one.
    clients = [e["client"] for e in proxy.requests()]
    assert clients[0] == clients[2] and clients[1] == clients[3]


def test_one_client_connection_may_address_several_hosts(proxy, origin, origin_b):
    # Other clients (http.client, curl) send requests for any host down one connection.
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        for server in (origin, origin_b, origin):
            connection.request("GET", f"{server.url}/hello")
            assert connection.getresponse().read() == f"hello from {server.name}".encode()
        connection.request("POST", f"{origin_b.url}/echo", body=b"pong")
        assert connection.getresponse().read() == b"pong"
    finally:
        connection.close()
    assert [e["port"] for e in proxy.requests()] == [origin.port, origin_b.port, origin.port, origin_b.port]
    assert len({e["client"] for e in proxy.requests()}) == 1


def test_answer_without_framing_ends_at_close_and_client_recovers(proxy, origin):
    with _client(proxy) as client:
        assert client.get(f"{origin.url}/eof").content == b"until the end"
        assert client.get(f"{origin.url}/hello").text == "hello from a"
    assert [e["method"] for e in proxy.requests()] == ["GET", "GET"]


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
def test_environment_proxy_is_used(proxy, origin, monkeypatch, variable):
    monkeypatch.setenv(variable, proxy.url)
    with httpx2.Client(trust_env=True, timeout=10) as client:
        assert client.get(f"{origin.url}/hello").status_code == 200
    assert _logged(proxy) == [_entry("GET", f"{origin.url}/hello", "127.0.0.1", origin.port)]


def test_no_proxy_exempts_the_host(proxy, origin, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with httpx2.Client(trust_env=True, timeout=10) as client:
        assert client.get(f"{origin.url}/hello").status_code == 200
    assert proxy.requests() == []


# ---------------------------------------------------------------------------
# Blocking, failures, lifecycle
# ---------------------------------------------------------------------------


def test_blocked_host_gets_403_and_never_reaches_the_origin(proxy, origin):
    seen = len(origin.request_lines)
    proxy.block("127.0.0.1")
    with _client(proxy) as client:
        blocked = client.post(f"{origin.url}/echo", content=b"x" * 100_000)
        proxy.unblock("127.0.0.1")
        allowed = client.get(f"{origin.url}/hello")  # same connection: the 403 kept it in step
    assert blocked.status_code == 403
    assert allowed.status_code == 200
    assert len(origin.request_lines) == seen + 1
    assert [e["blocked"] for e in proxy.requests()] == [True, False]


def test_fail_mode_blocks_everything_including_connect(origin, tls_origin):
    with ForwardProxy(fail=True) as proxy:
        with _client(proxy) as client:
            assert client.get(f"{origin.url}/hello").status_code == 403
        with _client(proxy, verify=client_ssl_context(tls_origin.ca)) as client, pytest.raises(httpx2.ProxyError):
            client.get(f"{tls_origin.url}/hello")
        assert [(e["method"], e["blocked"]) for e in proxy.requests()] == [("GET", True), ("CONNECT", True)]


def test_unreachable_target_gets_502(proxy):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with _client(proxy) as client:
        assert client.get(f"http://127.0.0.1:{port}/").status_code == 502


def test_clear_forgets_earlier_requests(proxy, origin):
    with _client(proxy) as client:
        client.get(f"{origin.url}/hello")
        proxy.clear()
        assert proxy.requests() == []
        client.get(f"{origin.url}/hello?after")
    assert [e["target"] for e in proxy.requests()] == [f"{origin.url}/hello?after"]


def test_stop_ends_the_proxy_process():
    proxy = ForwardProxy().start()
    process, port = proxy._proc, proxy.port
    proxy.stop()
    assert process.poll() is not None
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


# ---------------------------------------------------------------------------
# CONNECT tunnels
# ---------------------------------------------------------------------------


def test_connect_tunnels_https_with_keep_alive_and_streaming(proxy, tls_origin):
    token = "tls-sse"
    with _client(proxy, verify=client_ssl_context(tls_origin.ca)) as client:
        assert client.get(f"{tls_origin.url}/hello").text == "hello from tls"
        data = _payload(1024 * 1024)
        assert client.post(f"{tls_origin.url}/echo", content=data).content == data
        with client.stream("GET", f"{tls_origin.url}/sse?token={token}&events=3") as response:
            events = _read_sse(response, tls_origin.acks(token))
    assert len(events) == 3
    assert token not in tls_origin.late, "the tunnel buffered the stream"
    # One tunnel carried all three requests: the proxy saw only the CONNECT.
    assert _logged(proxy) == [_entry("CONNECT", f"127.0.0.1:{tls_origin.port}", "127.0.0.1", tls_origin.port)]

"""A real forward HTTP proxy for tests, running in its own process.

    with ForwardProxy() as proxy:           # 127.0.0.1, free port
        httpx2.Client(proxy=proxy.url).get("http://127.0.0.1:5555/v1/models")
        proxy.requests()  # [{"method": "GET", "target": "http://127.0.0.1:5555/v1/models",
                          #   "host": "127.0.0.1", "port": 5555, "client": "127.0.0.1:40312",
                          #   "blocked": False}]
        proxy.block("127.0.0.1")   # later requests for that host get 403
        proxy.clear()

The proxy is a separate process (``python -m tests.proxy --port 0 --log FILE``)
so nothing in the test's own process (a patched socket, a mocked transport)
can make a request look proxied when it was not: the log is written by the
proxy, and a request only reaches its target through the proxy's sockets.

What it speaks:

* Plain HTTP in absolute form (``POST http://host:port/path?q HTTP/1.1``).
  Each request is parsed, logged, and sent on a new upstream connection in
  origin form with ``Connection: close``. Bodies (Content-Length or chunked)
  are copied in their own framing as their bytes arrive, both ways, so
  server-sent events reach the client event by event. The client connection
  stays alive between requests, and each request on it may go to a different
  host, because every request is routed on its own.
* ``CONNECT host:port`` (HTTPS): answered ``200`` and then a blind two-way
  byte tunnel until either side closes.

Each log line is written and flushed before the proxy contacts the target, so
once a client has its answer, ``requests()`` already lists the request.
Only the standard library is used.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import shutil
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

_ROOT = Path(__file__).resolve().parent.parent  # so that ``-m tests.proxy`` imports in the child
_PIECE = 65536  # relay granularity: whatever has arrived, up to this much, is sent on at once
_MAX_LINE = 65536  # a request line or header longer than this is an attack or a bug, not a test
_CONNECT_TIMEOUT = 10.0
# Never forwarded: they describe one hop (client-proxy or proxy-server), not the message.
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authorization", "expect"})


# ---------------------------------------------------------------------------
# The proxy (runs in the child process)
# ---------------------------------------------------------------------------


class _Malformed(Exception):
    """The peer sent something that is not HTTP/1.x we can relay."""


class _Reader:
    """Buffered reads that never wait for more bytes than asked for.

    A file object from ``socket.makefile`` may block to fill its buffer; a
    relay must instead pass on whatever has arrived, or SSE would stall.
    """

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = bytearray()

    def _fill(self) -> bool:
        data = self.sock.recv(_PIECE)
        self.buf += data
        return bool(data)

    def readline(self) -> bytes:
        """One line with its newline; shorter (no newline) only at end of stream."""
        start = 0
        while (end := self.buf.find(b"\n", start)) < 0:
            if len(self.buf) > _MAX_LINE:
                raise _Malformed("line too long")
            start = len(self.buf)
            if not self._fill():
                line = bytes(self.buf)
                self.buf.clear()
                return line
        line = bytes(self.buf[: end + 1])
        del self.buf[: end + 1]
        return line

    def read_some(self, limit: int) -> bytes:
        """Up to ``limit`` bytes, waiting only if none are buffered; b"" at end of stream."""
        if not self.buf and not self._fill():
            return b""
        piece = bytes(self.buf[:limit])
        del self.buf[:limit]
        return piece

    def take_buffer(self) -> bytes:
        data = bytes(self.buf)
        self.buf.clear()
        return data


Headers = list[tuple[str, str]]


def _read_head(reader: _Reader) -> tuple[str, Headers] | None:
    """The start line and headers of the next message; None if the peer closed before one."""
    line = reader.readline()
    while line in (b"\r\n", b"\n"):  # RFC 9112 2.2: tolerate stray CRLFs between messages
        line = reader.readline()
    if not line:
        return None
    headers: Headers = []
    while True:
        field = reader.readline()
        if not field.endswith(b"\n"):
            raise _Malformed("end of stream inside a message head")
        if field in (b"\r\n", b"\n"):
            break
        name, colon, value = field.decode("latin-1").partition(":")
        if not colon:
            raise _Malformed(f"bad header line {field!r}")
        headers.append((name.strip(), value.strip()))
    return line.decode("latin-1").rstrip("\r\n"), headers


def _get(headers: Headers, name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _tokens(headers: Headers, name: str) -> set[str]:
    return {t.strip().lower() for key, value in headers if key.lower() == name for t in value.split(",")}


def _forwardable(headers: Headers) -> Headers:
    # Headers named in Connection are hop-by-hop too (RFC 9110 7.6.1).
    drop = _HOP_BY_HOP | _tokens(headers, "connection")
    return [(k, v) for k, v in headers if k.lower() not in drop]


def _encode_head(start: str, headers: Headers) -> bytes:
    lines = [start, *(f"{k}: {v}" for k, v in headers), "", ""]
    return "\r\n".join(lines).encode("latin-1")


def _relay_exact(reader: _Reader, send: Callable[[bytes], Any], count: int) -> bool:
    while count > 0:
        piece = reader.read_some(min(count, _PIECE))
        if not piece:
            return False
        send(piece)
        count -= len(piece)
    return True


def _relay_body(reader: _Reader, send: Callable[[bytes], Any], headers: Headers, *, until_eof: bool = False) -> bool:
    """Copy one message body as it arrives, keeping its framing; False if the stream ended early.

    Chunked bodies are copied chunk by chunk rather than re-framed, so the
    receiver sees the sender's chunks (SSE events) with no added delay.
    """
    if "chunked" in _tokens(headers, "transfer-encoding"):
        while True:
            line = reader.readline()
            if not line.endswith(b"\n"):
                return False
            send(line)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise _Malformed(f"bad chunk size line {line!r}")
            if size == 0:
                break
            if not _relay_exact(reader, send, size + 2):  # the data and its CRLF
                return False
        while True:  # trailer fields, up to and including the blank line
            line = reader.readline()
            if not line.endswith(b"\n"):
                return False
            send(line)
            if line in (b"\r\n", b"\n"):
                return True
    length = _get(headers, "content-length")
    if length is not None:
        try:
            count = int(length)
        except ValueError:
            raise _Malformed(f"bad Content-Length {length!r}")
        return _relay_exact(reader, send, count)
    if until_eof:  # a response without framing ends when the server closes (RFC 9112 6.3)
        while piece := reader.read_some(_PIECE):
            send(piece)
    return True


def _discard(data: bytes) -> None:
    pass


def _split_authority(authority: str) -> tuple[str, int]:
    host, colon, port = authority.rpartition(":")
    if not colon or not host or not port.isdigit():
        raise _Malformed(f"bad CONNECT target {authority!r}")
    return host.strip("[]").lower(), int(port)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """One direction of a tunnel."""
    try:
        while data := src.recv(_PIECE):
            dst.sendall(data)
    except OSError:
        # A reset on either side ends the tunnel both ways, or the other
        # direction would wait forever on a peer that is gone.
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return
    # A clean end of stream is passed on as a half-close: TLS may still be
    # finishing in the other direction.
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


class _Handler(socketserver.BaseRequestHandler):
    """One client connection: any number of requests, or one CONNECT tunnel."""

    server: _ProxyServer
    request: socket.socket

    def handle(self) -> None:
        client = self.request
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small SSE chunks must not wait
        host, port = self.client_address[:2]
        self.client_name = f"{host}:{port}"
        reader = _Reader(client)
        try:
            while (head := _read_head(reader)) is not None:
                if not self._one(reader, *head):
                    return
        except _Malformed as exc:
            self._answer(400, str(exc), close=True)
        except OSError:
            pass  # either peer went away: nothing left to tell anyone

    def _answer(self, status: int, text: str, *, close: bool) -> None:
        body = f"proxy: {text}\n".encode()
        headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
        if close:
            headers.append(("Connection", "close"))
        reason = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway"}.get(status, "Error")
        with contextlib.suppress(OSError):
            self.request.sendall(_encode_head(f"HTTP/1.1 {status} {reason}", headers) + body)

    def _log(self, method: str, target: str, host: str, port: int, blocked: bool) -> None:
        self.server.log(
            {"method": method, "target": target, "host": host, "port": port,
             "client": self.client_name, "blocked": blocked}
        )

    def _one(self, reader: _Reader, start: str, headers: Headers) -> bool:
        """Relay one request and its response; True if the client connection stays usable."""
        parts = start.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _Malformed(f"bad request line {start!r}")
        method, target, version = parts
        if method == "CONNECT":
            self._tunnel(target)
            return False
        client_close = "close" in _tokens(headers, "connection") or (
            version == "HTTP/1.0" and "keep-alive" not in _tokens(headers, "connection")
        )
        if "100-continue" in _tokens(headers, "expect"):
            # We read the body unconditionally, so the client may send it now.
            self.request.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        url = urlsplit(target)
        if url.scheme != "http" or not url.hostname:
            _relay_body(reader, _discard, headers)
            self._answer(400, f"a forward proxy needs an absolute http:// URL, not {target!r}", close=client_close)
            return not client_close
        host, port = url.hostname.lower(), url.port or 80
        blocked = self.server.is_blocked(host)
        self._log(method, target, host, port, blocked)
        if blocked:
            # The body is read (and dropped) so the connection stays in step.
            _relay_body(reader, _discard, headers)
            self._answer(403, f"{host} is blocked by the test", close=client_close)
            return not client_close
        try:
            upstream = socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT)
        except OSError as exc:
            _relay_body(reader, _discard, headers)
            self._answer(502, f"cannot connect to {host}:{port}: {exc}", close=client_close)
            return not client_close
        with upstream:
            upstream.settimeout(None)  # a slow stream is legitimate; the client decides when to give up
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return self._forward(reader, upstream, method, url, headers, client_close)

    def _forward(self, reader: _Reader, upstream: socket.socket, method: str, url: Any,
                 headers: Headers, client_close: bool) -> bool:
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        out = _forwardable(headers)
        if _get(out, "host") is None:
            out.insert(0, ("Host", url.netloc.rpartition("@")[2]))
        # One upstream connection per request keeps routing trivial: the next
        # request on this client connection may name another host.
        out.append(("Connection", "close"))
        try:
            upstream.sendall(_encode_head(f"{method} {path} HTTP/1.1", out))
            if not _relay_body(reader, upstream.sendall, headers):
                return False  # the client stopped mid-body
        except OSError:
            self._answer(502, "the server closed the connection while receiving the request", close=True)
            return False
        up = _Reader(upstream)
        sent_head = False
        try:
            while True:
                head = _read_head(up)
                if head is None:
                    self._answer(502, "the server closed the connection without answering", close=True)
                    return False
                status_line, resp_headers = head
                try:
                    status = int(status_line.split(" ", 2)[1])
                except (IndexError, ValueError):
                    raise _Malformed(f"bad status line from the server {status_line!r}")
                if 100 <= status < 200 and status != 101:
                    self.request.sendall(_encode_head(status_line, resp_headers))  # interim answer
                    continue
                break
            bodiless = method == "HEAD" or status in (204, 304) or status < 200
            framed = "chunked" in _tokens(resp_headers, "transfer-encoding") or _get(resp_headers, "content-length")
            # Without framing the body ends when the server closes, so the client
            # connection must close too for the client to see where it ends.
            close = client_close or not (bodiless or framed)
            out_headers = _forwardable(resp_headers)
            if close:
                out_headers.append(("Connection", "close"))
            self.request.sendall(_encode_head(status_line, out_headers))
            sent_head = True
            if not bodiless and not _relay_body(up, self.request.sendall, resp_headers, until_eof=True):
                return False  # the server stopped mid-body: the client must see the cut
        except _Malformed as exc:
            # The server's fault, not the client's: 502, or just a cut if the answer already began.
            if not sent_head:
                self._answer(502, str(exc), close=True)
            return False
        return not close

    def _tunnel(self, target: str) -> None:
        host, port = _split_authority(target)
        blocked = self.server.is_blocked(host)
        self._log("CONNECT", target, host, port, blocked)
        if blocked:
            self._answer(403, f"{host} is blocked by the test", close=True)
            return
        try:
            upstream = socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT)
        except OSError as exc:
            self._answer(502, f"cannot connect to {host}:{port}: {exc}", close=True)
            return
        with upstream:
            upstream.settimeout(None)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            back = threading.Thread(target=_pump, args=(upstream, self.request), daemon=True)
            back.start()
            _pump(self.request, upstream)
            back.join()


class _ProxyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True  # open tunnels must not keep the process alive when it is told to stop
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = 128  # a client pool may open many connections at once

    def __init__(self, address: tuple[str, int], log_path: Path, blocklist: Path | None):
        self.log_path = log_path
        self.blocklist = blocklist
        self._log_lock = threading.Lock()
        super().__init__(address, _Handler)

    def log(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry) + "\n"
        with self._log_lock, open(self.log_path, "a", encoding="utf-8") as f:
            f.write(line)  # one write of a whole line, so a reader never sees half an entry

    def is_blocked(self, host: str) -> bool:
        # Re-read per request: the test process changes it while we run.
        if self.blocklist is None:
            return False
        try:
            names = {n.strip().lower() for n in self.blocklist.read_text(encoding="utf-8").split()}
        except FileNotFoundError:
            return False
        return "*" in names or host.lower() in names


def _exit_when_parent_goes() -> None:
    # stdin is a pipe from the parent: EOF means it closed it or died, and a
    # leftover proxy must not outlive the test run.
    with contextlib.suppress(OSError, ValueError):
        while sys.stdin.buffer.read(4096):
            pass
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.proxy", description="A forward HTTP proxy for tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = a free port")
    parser.add_argument("--log", required=True, type=Path, help="file to append one JSON line per request to")
    parser.add_argument("--blocklist", type=Path, help="file of host names to answer 403 for ('*' = all)")
    parser.add_argument("--watch-stdin", action="store_true", help="exit when stdin reaches end of file")
    args = parser.parse_args(argv)
    server = _ProxyServer((args.host, args.port), args.log, args.blocklist)
    if args.watch_stdin:
        threading.Thread(target=_exit_when_parent_goes, daemon=True).start()
    # The first stdout line tells the parent which port was chosen.
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


# ---------------------------------------------------------------------------
# The test-side handle
# ---------------------------------------------------------------------------


class ForwardProxy:
    """Starts ``python -m tests.proxy`` and reads its log. See the module docstring."""

    def __init__(self, log: str | Path | None = None, *, block: Iterable[str] = (), fail: bool = False,
                 startup_timeout: float = 10.0):
        self._log_arg = Path(log) if log is not None else None
        self._initial_block = [*block, *(["*"] if fail else [])]
        self._startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: Path | None = None
        self._offset = 0
        self.port: int | None = None
        self.log_path: Path | None = None
        self.blocklist: Path | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> Self:
        if self._proc is not None:
            raise RuntimeError("ForwardProxy already started")
        self._tmp = Path(tempfile.mkdtemp(prefix="gemini-magic-proxy-"))
        self.log_path = self._log_arg or self._tmp / "requests.jsonl"
        self.log_path.touch()
        self._offset = self.log_path.stat().st_size  # a reused log file: only our requests count
        self.blocklist = self._tmp / "blocked.txt"
        self._write_blocklist(self._initial_block)
        cmd = [sys.executable, "-m", "tests.proxy", "--port", "0", "--log", str(self.log_path),
               "--blocklist", str(self.blocklist), "--watch-stdin"]
        self._proc = subprocess.Popen(cmd, cwd=_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            self.port = self._read_port(self._proc)
        except BaseException:
            self.stop()
            raise
        return self

    def _read_port(self, proc: subprocess.Popen[bytes]) -> int:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], self._startup_timeout)
        line = proc.stdout.readline() if ready else b""
        if not line.strip().isdigit():
            raise RuntimeError(f"the test proxy did not start (exit code {proc.poll()}, said {line!r})")
        return int(line)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.close()  # the child exits on EOF
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            if proc.stdout is not None:
                proc.stdout.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self.port is None or self._proc is None:
            raise RuntimeError("ForwardProxy is not started")
        return f"http://127.0.0.1:{self.port}"

    # -- the log -----------------------------------------------------------

    def requests(self) -> list[dict[str, Any]]:
        """Requests seen since start() or the last clear(), oldest first.

        Each: method, target (absolute URL, or host:port for CONNECT), host,
        port, client (the client connection's host:port: equal for requests on
        one kept-alive connection) and blocked (answered 403).
        """
        if self.log_path is None:
            return []
        with open(self.log_path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        # A line still being written has no newline yet: leave it for next time.
        return [json.loads(line) for line in data.split(b"\n")[:-1] if line.strip()]

    def clear(self) -> None:
        # Remember where the log ends instead of truncating it under the
        # writer's feet in the other process.
        if self.log_path is not None:
            self._offset = self.log_path.stat().st_size

    # -- blocking ----------------------------------------------------------

    def _write_blocklist(self, names: Iterable[str]) -> None:
        assert self.blocklist is not None
        tmp = self.blocklist.with_suffix(".tmp")
        tmp.write_text("".join(f"{n.lower()}\n" for n in names), encoding="utf-8")
        os.replace(tmp, self.blocklist)  # the proxy reads it concurrently: never a half-written file

    def _blocked(self) -> list[str]:
        if self.blocklist is None:
            return list(self._initial_block)
        return self.blocklist.read_text(encoding="utf-8").split()

    def block(self, host: str = "*") -> None:
        """Answer 403 for ``host`` ("*": every host) from the next request on."""
        if self.blocklist is None:
            self._initial_block.append(host)
        else:
            self._write_blocklist([*self._blocked(), host])

    def unblock(self, host: str | None = None) -> None:
        """Stop blocking ``host``, or every host if None."""
        names = [] if host is None else [n for n in self._blocked() if n != host.lower()]
        if self.blocklist is None:
            self._initial_block = names
        else:
            self._write_blocklist(names)


if __name__ == "__main__":
    main()

"""A private test certificate authority, and HTTPS serving with it.

    ca = make_test_ca(tmp_path_factory.mktemp("tls"))   # openssl CLI, cached per folder
    with TLSFakeGemini(ca=ca) as server:                  # server.url == "https://127.0.0.1:PORT"
        httpx2.Client(verify=client_ssl_context(ca)).get(server.url + "/v1/models")
        # or: SSL_CERT_FILE=ca.ca_cert, SSL_CERT_DIR=ca.ca_dir

The server certificate names IP:127.0.0.1 and DNS:localhost and is signed by
the CA, so a client trusts it exactly when it is given the CA (a file, or a
hashed directory) and not with the system store. Keys are EC prime256v1, so
making a CA takes a few milliseconds of openssl; no Python dependency is added.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import socketserver
import ssl
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from tests.fake_gemini.server import FakeGemini, _HTTPServer

_DAYS = 30  # outlives any test run; nothing ever needs renewing
_HANDSHAKE_TIMEOUT = 10.0  # a client that connects and never speaks TLS must not hold a thread forever

# Our own config, so the system's openssl.cnf (default extensions, policies)
# cannot change what we make. Python 3.13's strict verification wants key
# usage, AKI/SKI and a critical basicConstraints on the CA: all present.
_OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no

[dn]
CN = unused

[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[v3_server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""


@dataclass(frozen=True)
class TestCA:
    """Paths of a test CA and of the server certificate it signed."""

    __test__ = False  # a helper, not a pytest test class, despite the name

    folder: Path  # holds everything below
    ca_cert: Path  # PEM: give this to clients (cafile, SSL_CERT_FILE)
    ca_key: Path
    server_cert: Path  # PEM, for 127.0.0.1 and localhost
    server_key: Path
    ca_dir: Path  # usable as capath / SSL_CERT_DIR: the CA and its <hash>.0 link


_cache: dict[Path, TestCA] = {}
_cache_lock = threading.Lock()


def _paths(folder: Path) -> TestCA:
    return TestCA(
        folder=folder,
        ca_cert=folder / "ca.pem",
        ca_key=folder / "ca.key",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        ca_dir=folder / "certs",
    )


def _complete(ca: TestCA) -> bool:
    files = (ca.ca_cert, ca.ca_key, ca.server_cert, ca.server_key)
    return all(p.is_file() for p in files) and any(ca.ca_dir.glob("*.0"))


def _openssl(*args: str, cwd: Path) -> str:
    env = {**os.environ, "OPENSSL_CONF": str(cwd / "openssl.cnf")}
    try:
        done = subprocess.run(["openssl", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise RuntimeError("the openssl command is needed to make the test CA")
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def _build(work: Path) -> None:
    """Make the CA, the server certificate and the hashed CA directory in ``work``."""
    (work / "openssl.cnf").write_text(_OPENSSL_CNF, encoding="ascii")
    tag = secrets.token_hex(4)  # each CA its own name: two test CAs never look like one
    # `ecparam -genkey` rather than `-newkey ec -pkeyopt`: it also works with LibreSSL (macOS).
    for key in ("ca.key", "server.key"):
        _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key, cwd=work)
    _openssl("req", "-new", "-x509", "-config", "openssl.cnf", "-extensions", "v3_ca", "-key", "ca.key",
             "-subj", f"/O=gemini-magic tests/CN=gemini-magic test CA {tag}", "-days", str(_DAYS),
             "-sha256", "-set_serial", f"0x{secrets.token_hex(8)}", "-out", "ca.pem", cwd=work)
    _openssl("req", "-new", "-config", "openssl.cnf", "-key", "server.key",
             "-subj", "/O=gemini-magic tests/CN=localhost", "-out", "server.csr", cwd=work)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-set_serial", f"0x{secrets.token_hex(8)}", "-days", str(_DAYS), "-sha256",
             "-extfile", "openssl.cnf", "-extensions", "v3_server", "-out", "server.pem", cwd=work)
    certs = work / "certs"
    certs.mkdir()
    shutil.copyfile(work / "ca.pem", certs / "ca.pem")
    # OpenSSL finds CAs in a directory by subject-name hash: <hash>.0 (what `openssl rehash` makes).
    subject_hash = _openssl("x509", "-hash", "-noout", "-in", "ca.pem", cwd=work).strip()
    os.symlink("ca.pem", certs / f"{subject_hash}.0")  # relative: survives the rename below
    (work / "server.csr").unlink()


def make_test_ca(folder: str | Path) -> TestCA:
    """A test CA and server certificate in ``folder``/test-ca, made once per folder.

    Built in a temporary directory and renamed into place, so a crash or a
    concurrent maker (another pytest worker) never leaves a half-made CA.
    """
    folder = Path(folder).resolve()
    with _cache_lock:
        cached = _cache.get(folder)
        if cached is not None and _complete(cached):
            return cached
        ca = _paths(folder / "test-ca")
        if not _complete(ca):
            folder.mkdir(parents=True, exist_ok=True)
            if ca.folder.exists():  # damaged by someone: start over
                shutil.rmtree(ca.folder)
            work = Path(tempfile.mkdtemp(prefix=".test-ca-", dir=folder))
            try:
                _build(work)
                os.rename(work, ca.folder)
            except OSError:
                if not _complete(ca):  # not a maker that beat us to it
                    raise
            finally:
                shutil.rmtree(work, ignore_errors=True)
        _cache[folder] = ca
        return ca


def client_ssl_context(ca: TestCA) -> ssl.SSLContext:
    """A client context that trusts only the test CA."""
    return ssl.create_default_context(cafile=str(ca.ca_cert))


def server_ssl_context(ca: TestCA) -> ssl.SSLContext:
    """A server context presenting the CA-signed certificate for 127.0.0.1/localhost."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(ca.server_cert), str(ca.server_key))
    return context


def wrap_server(httpserver: socketserver.TCPServer, ca: TestCA | ssl.SSLContext) -> socketserver.TCPServer:
    """Make a socketserver/http.server server speak HTTPS. Call before serve_forever.

    The listening socket is wrapped without handshaking on accept: a TLS
    handshake in accept() would run in the serving loop, where one stalled
    or refusing client would stop all others. Instead each connection
    handshakes first thing in its own request thread, and a client that
    rejects our certificate (a test expecting exactly that) is dropped
    quietly instead of printing a traceback.
    """
    context = ca if isinstance(ca, ssl.SSLContext) else server_ssl_context(ca)
    httpserver.socket = context.wrap_socket(httpserver.socket, server_side=True, do_handshake_on_connect=False)
    serve = httpserver.finish_request

    def finish_request(request: Any, client_address: Any) -> None:
        timeout = request.gettimeout()
        try:
            request.settimeout(_HANDSHAKE_TIMEOUT)
            request.do_handshake()
            request.settimeout(timeout)
        except OSError:  # ssl.SSLError included: bad certificate, plain HTTP, or the client left
            return
        serve(request, client_address)

    httpserver.finish_request = finish_request  # type: ignore[method-assign]
    return httpserver


_default_folder: Path | None = None


def _default_ca() -> TestCA:
    # Only for TLSFakeGemini() without a CA (e.g. from_script): tests should pass one from tmp_path_factory.
    global _default_folder
    if _default_folder is None:
        _default_folder = Path(tempfile.mkdtemp(prefix="gemini-magic-test-ca-"))
        atexit.register(shutil.rmtree, _default_folder, True)
    return make_test_ca(_default_folder)


class TLSFakeGemini(FakeGemini):
    """FakeGemini over HTTPS, with a certificate signed by a test CA."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, verbose: bool = False, *, ca: TestCA | None = None):
        super().__init__(host, port, verbose)
        self.ca = ca if ca is not None else _default_ca()

    def start(self) -> Self:
        # FakeGemini.start, with the socket wrapped before serving begins.
        if self._httpd is not None:
            raise RuntimeError("FakeGemini already started")
        self._stopping.clear()
        httpd = _HTTPServer((self.host, self.port), self)
        try:
            wrap_server(httpd, self.ca)
        except BaseException:
            httpd.server_close()
            raise
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-gemini-tls",
            daemon=True,
        )
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        # Also what the server puts in upload and file URLs, so they say https too.
        return "https" + super().url.removeprefix("http")

"""Self-tests of tests/tls.py: the test CA is trusted exactly where it is given
(cafile, capath, SSL_CERT_FILE, SSL_CERT_DIR) and TLSFakeGemini serves the real
SDK over HTTPS, directly and through a CONNECT proxy."""

from __future__ import annotations

import os
import socket
import ssl
import time

import httpx2
import pytest
from google import genai

from tests.proxy import ForwardProxy
from tests.tls import TLSFakeGemini, client_ssl_context, make_test_ca

_CLEARED = (
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
    # OpenSSL's default verify paths read these, so even the "system" context would trust the test CA.
    "SSL_CERT_FILE", "SSL_CERT_DIR",
    "GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_GENAI_USE_VERTEXAI",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in _CLEARED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return make_test_ca(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def _tls_server(ca):
    with TLSFakeGemini(ca=ca) as server:
        yield server


@pytest.fixture
def server(_tls_server):
    _tls_server.reset()
    yield _tls_server
    _tls_server.reset()


@pytest.fixture(scope="module")
def _proxy():
    with ForwardProxy() as proxy:
        yield proxy


@pytest.fixture
def proxy(_proxy):
    _proxy.clear()
    return _proxy


# The fake server, like the real one, answers 403 to a request without a key.
_KEY = {"x-goog-api-key": "k"}


def _sdk(server: TLSFakeGemini) -> genai.Client:
    return genai.Client(api_key="k", http_options=genai.types.HttpOptions(base_url=server.url))


def _model_names(client: genai.Client) -> list[str]:
    return [model.name for model in client.models.list()]


def _is_verify_failure(exc: BaseException | None) -> bool:
    while exc is not None:  # the SDK and httpx2 wrap the ssl error; look down the chain
        if isinstance(exc, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


# ---------------------------------------------------------------------------
# The CA itself
# ---------------------------------------------------------------------------


def test_make_test_ca_writes_everything_once_per_folder(tmp_path):
    first = make_test_ca(tmp_path)
    stamps = {p: p.stat().st_mtime_ns for p in (first.ca_cert, first.server_cert, first.server_key)}
    assert make_test_ca(tmp_path) == first
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # cached, not remade
    links = list(first.ca_dir.glob("*.0"))
    assert len(links) == 1 and links[0].read_bytes() == first.ca_cert.read_bytes()
    assert make_test_ca(tmp_path / "other").ca_cert.read_bytes() != first.ca_cert.read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".test-ca-")]  # no leftover work dirs


def test_server_certificate_names_and_validity(ca, server):
    port = int(server.url.rsplit(":", 1)[1])
    context = client_ssl_context(ca)
    for name in ("127.0.0.1", "localhost"):  # check_hostname is on: both SANs must match
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname=name) as tls:
                cert = tls.getpeercert()
    assert ("IP Address", "127.0.0.1") in cert["subjectAltName"]
    assert ("DNS", "localhost") in cert["subjectAltName"]
    assert ssl.cert_time_to_seconds(cert["notBefore"]) <= time.time()
    assert ssl.cert_time_to_seconds(cert["notAfter"]) > time.time() + 7 * 86400


# ---------------------------------------------------------------------------
# httpx2 against TLSFakeGemini
# ---------------------------------------------------------------------------


def test_server_says_https(server):
    assert server.url.startswith("https://127.0.0.1:")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_cafile_context_reaches_the_server(ca, server, host):
    url = server.url.replace("127.0.0.1", host) + "/v1/models"
    with httpx2.Client(verify=ssl.create_default_context(cafile=str(ca.ca_cert)), headers=_KEY) as client:
        response = client.get(url)
    assert response.status_code == 200
    assert response.json()["models"]


def test_capath_context_reaches_the_server(ca, server):
    with httpx2.Client(verify=ssl.create_default_context(capath=str(ca.ca_dir)), headers=_KEY) as client:
        assert client.get(f"{server.url}/v1/models").status_code == 200


def test_system_context_rejects_the_server_which_keeps_serving(ca, server):
    with httpx2.Client(verify=ssl.create_default_context(), headers=_KEY) as client:
        with pytest.raises(httpx2.ConnectError) as info:
            client.get(f"{server.url}/v1/models")
    assert _is_verify_failure(info.value)
    # A refused handshake costs the server nothing: the next client is served.
    with httpx2.Client(verify=client_ssl_context(ca), headers=_KEY) as client:
        assert client.get(f"{server.url}/v1/models").status_code == 200


# ---------------------------------------------------------------------------
# The google-genai SDK
# ---------------------------------------------------------------------------


def test_sdk_trusts_ssl_cert_file(ca, server, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca_cert))
    client = _sdk(server)
    assert "models/gemini-2.5-flash" in _model_names(client)
    server.queue("over TLS")
    chunks = [c.text for c in client.models.generate_content_stream(model="gemini-2.5-flash", contents="hi")]
    assert "".join(chunks) == "over TLS"


def test_sdk_trusts_ssl_cert_dir(ca, server, monkeypatch):
    monkeypatch.setenv("SSL_CERT_DIR", str(ca.ca_dir))
    assert "models/gemini-2.5-flash" in _model_names(_sdk(server))


def test_sdk_without_the_ca_fails_verification(server):
    with pytest.raises(Exception) as info:  # noqa: B017 - what matters is the cause, checked below
        _model_names(_sdk(server))
    assert _is_verify_failure(info.value)
    assert not server.requests  # no request got through


# ---------------------------------------------------------------------------
# HTTPS through the CONNECT proxy
# ---------------------------------------------------------------------------


def test_httpx2_reaches_tls_server_through_connect(ca, server, proxy):
    port = int(server.url.rsplit(":", 1)[1])
    with httpx2.Client(proxy=proxy.url, verify=client_ssl_context(ca), trust_env=False, headers=_KEY) as client:
        assert client.get(f"{server.url}/v1/models").status_code == 200
    assert [(e["method"], e["target"]) for e in proxy.requests()] == [("CONNECT", f"127.0.0.1:{port}")]


def test_sdk_follows_https_proxy_and_ssl_cert_file(ca, server, proxy, monkeypatch):
    port = int(server.url.rsplit(":", 1)[1])
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca_cert))
    client = _sdk(server)
    assert "models/gemini-2.5-flash" in _model_names(client)
    server.queue("tunnelled")
    chunks = [c.text for c in client.models.generate_content_stream(model="gemini-2.5-flash", contents="hi")]
    assert "".join(chunks) == "tunnelled"
    connects = [e for e in proxy.requests() if e["method"] == "CONNECT"]
    assert connects and {e["target"] for e in connects} == {f"127.0.0.1:{port}"}
    assert len(proxy.requests()) == len(connects)  # nothing went around the tunnel


def test_blocked_proxy_proves_the_sdk_depended_on_it(ca, server, proxy, monkeypatch):
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca_cert))
    proxy.block("127.0.0.1")
    try:
        with pytest.raises(Exception):  # noqa: B017 - the proxy's 403 surfaces as the SDK's connect error
            _model_names(_sdk(server))
    finally:
        proxy.unblock()
    assert not server.requests
    assert [e["blocked"] for e in proxy.requests()] == [True]


def test_environment_is_clean():
    # Guards the fixtures above: a leaked SSL_CERT_FILE would make the failure tests meaningless.
    assert "SSL_CERT_FILE" not in os.environ and "SSL_CERT_DIR" not in os.environ

"""Networks: every request the extension makes honours the proxy and certificate
settings the SDK honours (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY, SSL_CERT_FILE,
SSL_CERT_DIR), plus `GeminiMagics.proxy` and `GeminiMagics.ca_bundle`.

A real forward proxy runs in its own process (tests/proxy.py) and logs what passes
through it; an HTTPS test server presents a certificate of a private test CA
(tests/tls.py). Each kind of request is checked: streamed and whole answers, the
model list, a Files API upload, a Batch API job and its results download, and an
`--image` URL fetch.
"""

from __future__ import annotations

import pytest

import gemini_magic
from gemini_magic import media
from gemini_magic.batches import api as batch_api
from gemini_magic.engine import Request
from tests.conftest import TEST_KEY, ask, fails
from tests.fake_gemini import Reply
from tests.proxy import ForwardProxy
from tests.test_media import encoded, pattern_image
from tests.tls import TLSFakeGemini, make_test_ca

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
                   "all_proxy", "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR")


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


@pytest.fixture
def net(env):
    """No proxy or certificate variables but those a test sets."""
    for name in PROXY_VARIABLES:
        env.delenv(name, raising=False)
    return env


def via(proxy, port: int) -> list[str]:
    """What went through the proxy to the test server on `port`: method and path."""
    return [f"{r['method']} {r['target'].split(str(port), 1)[-1]}" for r in proxy.requests() if r["port"] == port]


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def config(ip, assignment: str) -> None:
    ip.run_line_magic("config", f"GeminiMagics.{assignment}")


# -- proxies ------------------------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
def test_every_kind_of_request_goes_through_the_environments_proxy(ip, server, net, proxy, site, variable,
                                                                    monkeypatch, tmp_path):
    net.setenv(variable, proxy.url)  # the fake server speaks plain http
    port = port_of(server.url)
    # A streamed answer, a whole one, the model list.
    assert ask(ip, "streamed") == "Echo: streamed"
    assert ask(ip, "whole", "--no-stream") == "Echo: whole"
    ip.run_line_magic("gemini", "models")
    # An --image URL fetch, from another local site.
    image_url = site.serve("/cat.png", "image/png", encoded(pattern_image((20, 20)), "PNG"))
    assert ask(ip, "Describe", f"--image {image_url}") == "Echo: Describe"
    # A Files API upload (a file over the inline limit).
    monkeypatch.setattr(media.inputs, "INLINE_LIMIT", 1000)
    big = tmp_path / "notes.txt"
    big.write_text("word " * 1000)
    assert ask(ip, "Summarise", f"--image {big}") == "Echo: Summarise"
    # A Batch API job, inline, and one as a file: its upload, the job, its polls, the results download.
    assert list(gemini_magic.batch("Capital of {item}?", ["France", "Peru"], mode="api")) == [
        "Echo: Capital of France?", "Echo: Capital of Peru?"]
    requests = [Request(model="gemini-2.5-flash", contents=f"Capital of {c}?") for c in ("Chile", "Japan")]
    results = batch_api.run(requests, gemini_magic._magics.connection, inline_limit=0, poll=0,
                            progress=lambda job: None)
    assert list(results) == ["Echo: Capital of Chile?", "Echo: Capital of Japan?"]

    seen = via(proxy, port)
    assert any(s.startswith("POST /v1/models/gemini-2.5-flash:streamGenerateContent") for s in seen), seen
    assert any(s.startswith("POST /v1/models/gemini-2.5-flash:generateContent") for s in seen), seen
    assert any(s.startswith("GET /v1/models") for s in seen), seen
    assert any(s.startswith("POST /upload/v1/files") for s in seen), seen
    assert any(":batchGenerateContent" in s for s in seen), seen
    assert any(s.startswith("GET /v1/batches/") for s in seen), seen
    assert any(":download" in s for s in seen), seen
    assert [r for r in proxy.requests() if r["target"] == image_url], proxy.requests()
    # Every request to the test server went through the proxy, none around it.
    assert len(seen) == len(server.requests)
    # (Upload chunks go to the session URL the start answered, which authorizes them: no key.)
    assert all(r.api_key == TEST_KEY for r in server.requests if "upload_id" not in r.query)


def test_no_proxy_exempts_a_host(ip, server, net, proxy, site):
    net.setenv("HTTP_PROXY", proxy.url)
    net.setenv("NO_PROXY", "localhost")
    local = server.url.replace("127.0.0.1", "localhost")
    config(ip, f"base_url = {local!r}")
    assert ask(ip, "direct") == "Echo: direct"  # to localhost: around the proxy
    assert proxy.requests() == []
    image_url = site.serve("/dog.png", "image/png", encoded(pattern_image((20, 20)), "PNG"))  # 127.0.0.1: through it
    ask(ip, "Describe", f"--image {image_url}")
    assert [r["target"] for r in proxy.requests()] == [image_url]


def test_a_proxy_set_in_a_cell_applies_to_the_next_request(ip, server, net, proxy):
    assert ask(ip, "before") == "Echo: before"
    assert proxy.requests() == []
    import os

    os.environ["HTTP_PROXY"] = proxy.url  # as a user would, in a cell (the env fixture restores it)
    net.setenv("HTTP_PROXY", proxy.url)
    assert ask(ip, "after") == "Echo: after"
    assert len(via(proxy, port_of(server.url))) == 1


def test_configured_proxy_replaces_the_environments_and_no_proxy_still_applies(ip, server, net, proxy):
    with ForwardProxy() as other:
        net.setenv("HTTP_PROXY", other.url)
        config(ip, f"proxy = {proxy.url!r}")
        assert ask(ip, "configured") == "Echo: configured"
        assert len(via(proxy, port_of(server.url))) == 1 and other.requests() == []
        net.setenv("NO_PROXY", "127.0.0.1")
        assert ask(ip, "exempt") == "Echo: exempt"
        assert len(via(proxy, port_of(server.url))) == 1 and other.requests() == []


def test_a_refusing_proxy_fails_the_cell_with_proxy_advice(ip, server, net, proxy):
    net.setenv("HTTP_PROXY", proxy.url)
    proxy.block("*")  # the request depends on the proxy: refused, nothing reaches the server
    config(ip, "retry_attempts = 1")
    failure = fails(ip, "blocked")
    assert server.requests == []
    text = failure.error.message + " " + failure.error.hint
    assert "HTTPS_PROXY" in text or "proxy" in text.lower()


def test_a_dead_proxy_says_to_check_the_proxy(ip, server, net):
    net.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    config(ip, "retry_attempts = 1")
    failure = fails(ip, "nowhere")
    assert "NO_PROXY" in failure.error.hint and "GeminiMagics.proxy" in failure.error.hint
    assert server.requests == []


# -- certificates -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return make_test_ca(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def _tls_server(ca):
    with TLSFakeGemini(ca=ca) as server:
        yield server


@pytest.fixture
def tls_server(_tls_server, net):
    _tls_server.reset()
    net.setenv("GOOGLE_GEMINI_BASE_URL", _tls_server.url)
    net.setenv("NO_PROXY", "127.0.0.1,localhost")
    yield _tls_server
    _tls_server.reset()


def test_an_unknown_certificate_authority_fails_with_what_to_set(ip, tls_server):
    config(ip, "retry_attempts = 1")
    failure = fails(ip, "hello")
    assert failure.error.message == f"The certificate of {tls_server.url} could not be verified." or \
        failure.error.message == "The certificate of the Gemini API could not be verified."
    assert "SSL_CERT_FILE" in failure.error.hint and "GeminiMagics.ca_bundle" in failure.error.hint
    assert tls_server.requests == []


@pytest.mark.parametrize("how", ["SSL_CERT_FILE", "SSL_CERT_DIR", "ca_bundle file", "ca_bundle folder"])
def test_a_corporate_ca_is_trusted_where_it_is_given(ip, tls_server, ca, net, how):
    if how == "SSL_CERT_FILE":
        net.setenv("SSL_CERT_FILE", str(ca.ca_cert))
    elif how == "SSL_CERT_DIR":
        net.setenv("SSL_CERT_DIR", str(ca.ca_dir))
    elif how == "ca_bundle file":
        config(ip, f"ca_bundle = {str(ca.ca_cert)!r}")
    else:
        config(ip, f"ca_bundle = {str(ca.ca_dir)!r}")
    assert ask(ip, "over TLS") == "Echo: over TLS"
    ip.run_line_magic("gemini", "models")
    assert len(tls_server.requests) == 2


def test_https_through_a_connect_proxy(ip, tls_server, ca, net, proxy):
    net.setenv("HTTPS_PROXY", proxy.url)
    net.setenv("NO_PROXY", "")
    net.setenv("SSL_CERT_FILE", str(ca.ca_cert))
    tls_server.queue(Reply(text="tunnelled"))
    assert ask(ip, "secret") == "tunnelled"
    port = port_of(tls_server.url)
    assert [r["method"] for r in proxy.requests() if r["port"] == port] == ["CONNECT"]

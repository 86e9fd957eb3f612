"""The network underneath every request: proxies and certificates as the SDK would use them.

The SDK honours HTTPS_PROXY, HTTP_PROXY, ALL_PROXY and NO_PROXY, and SSL_CERT_FILE /
SSL_CERT_DIR, only when it builds its own HTTP client. We hand it ours (so record/
replay and the quota layer see every request), and an httpx client given a custom
transport drops the environment's proxies. So the bottom of our stack is an httpx2
client built the way the SDK builds its own (`_ensure_httpx_ssl_ctx` in
google/genai/_api_client.py: SSL_CERT_FILE/SSL_CERT_DIR, else httpx2's default
context), with the environment trusted, and our layers wrap it as a transport.

    network = NetworkTransport(proxy=None, ca_bundle=None)
    stack = RecordingTransport(QuotaTransport(network, limiter), mode, path)
"""

from __future__ import annotations

import os
import ssl
import threading

import httpx2

# What the environment says about the network: a change rebuilds the client, so a
# proxy set in a notebook cell (os.environ[...] = ...) applies to the next request.
NETWORK_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "https_proxy", "http_proxy",
                     "all_proxy", "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR")


def ssl_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """The certificates to trust: a configured CA bundle (file or folder), else
    SSL_CERT_FILE / SSL_CERT_DIR, else httpx2's default (as the SDK chooses)."""
    if ca_bundle:
        path = os.path.expanduser(ca_bundle)
        if os.path.isdir(path):
            return ssl.create_default_context(capath=path)
        return ssl.create_default_context(cafile=path)
    cert_file, cert_dir = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if cert_file or cert_dir:
        return ssl.create_default_context(cafile=cert_file or None, capath=cert_dir or None)
    return httpx2.create_ssl_context()


class NetworkTransport(httpx2.BaseTransport):
    """Sends requests to the network through an httpx2 client that trusts the
    environment: proxies per scheme, NO_PROXY, certificates.

    `proxy` (GeminiMagics.proxy) replaces the environment's proxy variables for
    every scheme; NO_PROXY still exempts its hosts. `ca_bundle` (GeminiMagics.ca_bundle)
    is a PEM file or a folder of certificates, trusted instead of the defaults."""

    def __init__(self, proxy: str | None = None, ca_bundle: str | None = None):
        self.proxy = proxy
        self.ca_bundle = ca_bundle
        self._client: httpx2.Client | None = None
        self._built_for: tuple | None = None
        self._lock = threading.Lock()

    def settings(self) -> tuple:
        return (self.proxy, self.ca_bundle, *(os.environ.get(name) for name in NETWORK_VARIABLES))

    def client(self) -> httpx2.Client:
        settings = self.settings()
        if self._client is None or settings != self._built_for:
            # A batch's threads share one client (one connection pool).
            with self._lock:
                if self._client is None or settings != self._built_for:
                    old, self._client = self._client, self._build()
                    self._built_for = settings
                    if old is not None:
                        old.close()
        return self._client

    def _build(self) -> httpx2.Client:
        context = ssl_context(self.ca_bundle)
        mounts = None
        if self.proxy:
            # Over the environment's per-scheme proxies; NO_PROXY's host patterns are
            # more specific than these and still win (httpx sorts mounts that way).
            via = httpx2.HTTPTransport(verify=context, proxy=self.proxy)
            mounts = {"all://": via, "http://": via, "https://": via}
        return httpx2.Client(verify=context, mounts=mounts, trust_env=True, timeout=None)

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        # The request keeps its own timeout extension (set by the client above us);
        # redirects are not followed here, as the SDK's own client does not.
        return self.client().send(request, stream=True)

    def close(self) -> None:
        with self._lock:
            client, self._client, self._built_for = self._client, None, None
        if client is not None:
            client.close()

"""Shared fixtures: the fake Gemini server, a clean environment, an in-process
IPython shell with the extension loaded, and a real kernel.

The SDK is never patched: it talks HTTP to tests.fake_gemini on 127.0.0.1.
"""

from __future__ import annotations

import os
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.fake_gemini import FakeGemini
from tests.kernel import KernelSession

# Distinctive, so a scan of any output or file can prove it never leaks.
TEST_KEY = "test-key-DO-NOT-LEAK-7f3c9a1e"

# Usage counts and learned limits of the test session go under here, never to the
# user's data folder: each test (and each kernel) gets a folder of its own, so a
# limit one test's 429 taught does not pace the next test.
_DATA_ROOT = tempfile.mkdtemp(prefix="gemini-magic-test-data-")


def fresh_data_dir() -> str:
    return tempfile.mkdtemp(dir=_DATA_ROOT)

_CLEARED = (
    "GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GENAI_USE_ENTERPRISE", "GOOGLE_GENAI_API_VERSION",
    "GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_CLOUD_PROJECT",
    "GOOGLE_CLOUD_LOCATION", "GOOGLE_VERTEX_BASE_URL",
    "GEMINI_MAGIC_MODE", "GEMINI_MAGIC_RECORDING", "GEMINI_MAGIC_QUOTA", "GEMINI_MAGIC_DATA_DIR",
    "JPY_SESSION_NAME",  # a test says which notebook file a kernel runs, if any
)
# Proxy variables are left as the machine has them: NO_PROXY exempts the local test
# server, as it would for a user behind a proxy (tests/test_networks.py proves both).


def kernel_environment(server_url: str | None, key: str | None = TEST_KEY) -> dict:
    """The environment a test process or kernel runs with."""
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    # The quota tier is the default a user gets (auto), never switched off for tests.
    env["GEMINI_MAGIC_DATA_DIR"] = fresh_data_dir()
    if key:
        env["GEMINI_API_KEY"] = key
    if server_url:
        env["GOOGLE_GEMINI_BASE_URL"] = server_url
    return env


@pytest.fixture(scope="session")
def _server():
    with FakeGemini() as server:
        yield server


@pytest.fixture
def server(_server):
    """The fake server, reset for each test."""
    _server.reset()
    yield _server
    _server.reset()


@pytest.fixture
def env(server, monkeypatch):
    """This process's environment pointed at the fake server, with the test key."""
    for name in _CLEARED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("GEMINI_API_KEY", TEST_KEY)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.url)
    monkeypatch.setenv("GEMINI_MAGIC_DATA_DIR", fresh_data_dir())
    return monkeypatch


@pytest.fixture(scope="session")
def _shell():
    from IPython.testing.globalipapp import start_ipython

    return start_ipython()


@pytest.fixture
def ip(_shell, env):
    """An in-process IPython shell (no kernel: the terminal renderer) with the
    extension freshly loaded, and a namespace cleaned up afterwards."""
    before = set(_shell.user_ns)
    # %config writes into the shell's config, which outlives the extension: start clean.
    _shell.config.pop("GeminiMagics", None)
    _shell.run_line_magic("load_ext", "gemini_magic")
    yield _shell
    _shell.run_line_magic("unload_ext", "gemini_magic")
    _shell.config.pop("GeminiMagics", None)
    for name in set(_shell.user_ns) - before:
        del _shell.user_ns[name]


@pytest.fixture(scope="module")
def kernel(_server):
    """A real ipykernel, started once per module, with the extension loaded."""
    session = KernelSession(kernel_environment(_server.url))
    session.start()
    session.run("%load_ext gemini_magic")
    yield session
    session.stop()


@pytest.fixture
def kern(kernel, server):
    """The module's kernel, with the server reset for this test."""
    return kernel


def ask(ip, prompt: str, options: str = "") -> str:
    """Run a %%gemini cell and return the answer text (stored with -o)."""
    ip.run_cell_magic("gemini", f"{options} -o _gm_answer".strip(), prompt)
    return ip.user_ns.pop("_gm_answer")


def fails(ip, prompt: str, options: str = ""):
    """Run a %%gemini cell that must fail, and return its CellFailed."""
    from gemini_magic.magics import CellFailed

    with pytest.raises(CellFailed) as info:
        ip.run_cell_magic("gemini", options, prompt)
    return info.value


@pytest.fixture
def site():
    """A local web server: site.serve(path, content_type, body) -> its URL."""
    routes: dict[str, tuple[str, bytes]] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path not in routes:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            content_type, body = routes[self.path]
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()

    class Site:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"

        def serve(self, path: str, content_type: str, body: bytes) -> str:
            routes[path] = (content_type, body)
            return self.url + path

    yield Site()
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


class FakeTime:
    """A clock that only moves when the limiter sleeps (or a test says so); `wall`
    is the epoch clock learned limits expire by, moving with it."""

    def __init__(self, start: float = 1000.0, wall: float = 1_767_225_600.0):  # 2026-01-01 00:00 UTC
        self.now = start
        self.wall_start = wall - start
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.wall_start + self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, "the limiter slept for nothing"
        self.slept.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds

"""Processes and page helpers for the JupyterLab end-to-end test.

Facts from /work/shared/browser-testing.md: JupyterLab needs --allow-root as root; fresh
config/data/runtime/settings folders keep earlier workspaces away; the toolbar says
"idle" before a kernel exists, so readiness is read from /api/sessions; a stray
"Select Kernel" dialog is accepted.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"  # screenshots (git-ignored)
BUILT = ROOT / "gemini_magic" / "labextension"  # the prebuilt JupyterLab extension (js/)
EXTENSION = "gemini-magic-lab"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


def missing_requirements() -> str | None:
    """Why the browser test cannot run here, or None."""
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        return f"{CHROMIUM} is not installed (apt-get install -y chromium)"
    for module, package in (("playwright.sync_api", "playwright"), ("jupyterlab", "jupyterlab"),
                            ("ipywidgets", "ipywidgets")):
        try:
            __import__(module)
        except ImportError:
            return f"{package} is not installed (pip install {package})"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(process: subprocess.Popen | None, timeout: float = 10) -> None:
    """End a process this test started, and its children (its own session)."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


def start_fake_gemini(script: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """`python -m tests.fake_gemini --port 0 --script FILE`; returns (process, URL)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_gemini", "--port", "0", "--script", str(script)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=log.open("wb"), text=True, start_new_session=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=30)
    except queue.Empty:
        stop(process)
        raise RuntimeError("the fake Gemini server printed no URL in 30 s") from None
    if not line.startswith("URL="):
        stop(process)
        raise RuntimeError(f"the fake Gemini server did not start: {line!r}; see {log}")
    return process, line.strip().removeprefix("URL=")


class Lab:
    """A JupyterLab server on 127.0.0.1 with its own settings, serving `root`."""

    def __init__(self, root: Path, home: Path, env: dict, log: Path):
        self.root, self.home, self.log = root, home, log
        self.port = free_port()
        self.token = "e2e-" + os.urandom(8).hex()
        self.env = dict(env)
        for name, folder in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"),
                             ("JUPYTER_RUNTIME_DIR", "runtime"), ("JUPYTERLAB_SETTINGS_DIR", "settings"),
                             ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"), ("IPYTHONDIR", "ipython")):
            (home / folder).mkdir(parents=True, exist_ok=True)
            self.env[name] = str(home / folder)
        news = home / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        news.parent.mkdir(parents=True, exist_ok=True)
        news.write_text(json.dumps({"fetchNews": "false"}))
        # The kernel imports gemini_magic from this checkout.
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), self.env.get("PYTHONPATH")) if p)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> Lab:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
             f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}", "--allow-root",
             "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
            cwd=self.root, env=self.env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited ({self.process.returncode}); see {self.log}")
            try:
                self.api("/api/status")
                return self
            except OSError:
                time.sleep(0.25)
        raise RuntimeError(f"JupyterLab did not answer in {timeout} s; see {self.log}")

    def api(self, path: str, method: str = "GET"):
        request = urllib.request.Request(f"{self.url}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy
        with opener.open(request, timeout=10) as response:
            return json.loads(response.read() or b"null")

    def delete_sessions(self, notebook: str) -> None:
        """Shut the notebook's kernel down through the server's REST API (two cores are few)."""
        for session in self.api("/api/sessions"):
            if session.get("path", "").endswith(notebook):
                self.api(f"/api/sessions/{session['id']}", "DELETE")

    def kernel_ready(self, notebook: str) -> bool:
        """The notebook's kernel exists, is idle and has a connection (the page's)."""
        try:
            sessions = self.api("/api/sessions")
        except OSError:
            return False
        for session in sessions:
            kernel = session.get("kernel") or {}
            if session.get("path", "").endswith(notebook) and kernel.get("execution_state") == "idle" \
                    and kernel.get("connections", 0) >= 1:
                return True
        return False

    def stop(self) -> None:
        stop(self.process, timeout=15)


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def write_notebook(path: Path, cells: list) -> None:
    """Code cells, each a source or a (source, metadata) pair."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    pairs = [(cell, {}) if isinstance(cell, str) else cell for cell in cells]
    nb.cells = [nbformat.v4.new_code_cell(source, metadata=metadata) for source, metadata in pairs]
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nbformat.write(nb, path)


class LabNotebook:
    """One notebook, written with `cells` and open in its own Lab workspace (so no other
    test's tabs come back), its kernel idle."""

    def __init__(self, lab: Lab, context, name: str, cells: list):
        self.lab, self.name = lab, name
        write_notebook(lab.root / name, cells)
        self.page = context.new_page()
        workspace = name.removesuffix(".ipynb").replace("_", "-")
        self.page.goto(f"{lab.url}/lab/workspaces/{workspace}/tree/{name}?token={lab.token}")
        tab = self.page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text=name).first
        tab.wait_for(timeout=60_000)
        self.panel = self.page.locator(f"[id='{tab.get_attribute('data-id')}']")
        self.panel.locator(".jp-CodeCell").first.wait_for()
        wait_until(lambda: lab.kernel_ready(name), 60, f"the kernel of {name} to be idle")

    def cell(self, index: int):
        return self.panel.locator(".jp-CodeCell").nth(index)

    def close(self) -> None:
        """Close the page and shut the notebook's kernel down."""
        self.page.close()
        try:
            self.lab.delete_sessions(self.name)
        except OSError:
            pass


def serve_lab(tmp_path_factory, label: str, env: dict, *, extension: str = "required", notebooks=()):
    """A module fixture's JupyterLab (use with `yield from`): skipped, with the reason,
    where Chromium, Playwright or JupyterLab is missing; with the checkout's build of the
    extension (`extension="required"` fails without one, "optional" runs without it);
    `notebooks` are (name, cells) written to its root first."""
    import pytest

    reason = missing_requirements()
    if reason:
        pytest.skip(f"browser test needs Chromium, Playwright and JupyterLab: {reason}")
    built = (BUILT / "package.json").exists()
    if extension == "required" and not built:
        pytest.fail(f"the prebuilt extension is missing from {BUILT}: cd js && npm install && npm run build")
    base = tmp_path_factory.mktemp(label)
    root = base / "root"
    root.mkdir()
    for name, cells in notebooks:
        write_notebook(root / name, cells)
    env = dict(env)
    # In a virtualenv Jupyter looks in the env's share/ first (where a `jupyter labextension
    # develop` link may be): this makes our copy of the checkout's build the one loaded.
    env["JUPYTER_PREFER_ENV_PATH"] = "0"
    lab = Lab(root, base / "home", env, base / "jupyterlab.log")
    if built:
        shutil.copytree(BUILT, base / "home" / "data" / "labextensions" / EXTENSION)
    try:
        lab.start()
        yield lab
    finally:
        lab.stop()


def serve_fake(script: dict | None = None):
    """A module fixture's fake Gemini server in the test's process (use with `yield from`),
    answering from `script` (rules, as tests/fake_gemini takes them) if given."""
    from tests.fake_gemini import FakeGemini

    server = FakeGemini()
    if script is not None:
        server.load_script(script)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def browser_context(clipboard_for: str | None = None):
    """Headless Debian Chromium's browser context for a module (use with `yield from`):
    1280x1000, 20 s default timeout; clipboard access granted for `clipboard_for`'s origin."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1000})
            if clipboard_for is not None:
                context.grant_permissions(["clipboard-read", "clipboard-write"], origin=clipboard_for)
            context.set_default_timeout(20_000)
            yield context
        finally:
            browser.close()

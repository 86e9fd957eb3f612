"""Browser tests: JupyterLab in headless Chromium, driven by Playwright.

They are skipped, with the reason, where Chromium, Playwright or JupyterLab is missing;
CI installs all three (Debian's chromium; never `playwright install`).
"""

from __future__ import annotations


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: end-to-end test in JupyterLab and headless Chromium")

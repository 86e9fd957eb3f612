"""Tutorial notebooks run under strict nbval offline: every answer is replayed from
the recording beside each notebook, and nothing can reach the network even if a
recording were missing (the endpoint is a closed local port, and no key is set)."""

import os
import tempfile
from pathlib import Path

os.environ["GEMINI_MAGIC_MODE"] = "replay"
os.environ.setdefault("GEMINI_MAGIC_DATA_DIR", tempfile.mkdtemp(prefix="gemini-magic-nbval-"))
os.environ["GOOGLE_GEMINI_BASE_URL"] = "http://127.0.0.1:9"
for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GEMINI_MAGIC_RECORDING", "GOOGLE_GENAI_USE_VERTEXAI"):
    os.environ.pop(name, None)


def pytest_configure(config):
    # The one sanitizing rule (a tool call's measured duration), found from any
    # working directory.
    if hasattr(config.option, "nbval_sanitize_with") and not config.option.nbval_sanitize_with:
        config.option.nbval_sanitize_with = str(Path(__file__).with_name("nbval-sanitize.cfg"))

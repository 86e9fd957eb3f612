"""Write the tutorials' offline recordings from hand-written answers.

    python tests/write_tutorial_recordings.py [NAME ...]

No key can reach Gemini here, so each tutorial's answers are written by hand in
notebooks/answers/NAME.json; this serves them from the fake Gemini server and runs
the notebook in record mode through the real SDK. The requests in the recording
are therefore exactly the ones the notebook makes, and replay matches them. With a
real key, `python -m gemini_magic run --mode record notebooks/NAME.ipynb` refreshes a
recording from the live API instead.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gemini_magic.__main__ import run  # noqa: E402
from tests.fake_gemini import FakeGemini  # noqa: E402

NOTEBOOKS = ROOT / "notebooks"


def main(names: list[str]) -> int:
    names = names or sorted(p.stem for p in (NOTEBOOKS / "answers").glob("*.json"))
    for name in ("GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GENAI_API_VERSION", "GOOGLE_API_KEY", "GEMINI_MAGIC_RECORDING"):
        os.environ.pop(name, None)
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    os.environ["GEMINI_API_KEY"] = "hand-written-answers"
    os.environ["GEMINI_MAGIC_QUOTA"] = "off"  # the test server has no quota to respect
    os.environ["GEMINI_MAGIC_DATA_DIR"] = tempfile.mkdtemp()  # nor usage worth keeping
    status = 0
    for name in names:
        with FakeGemini.from_script(NOTEBOOKS / "answers" / f"{name}.json") as server:
            os.environ["GOOGLE_GEMINI_BASE_URL"] = server.url
            status |= run([NOTEBOOKS / f"{name}.ipynb"], "record", inplace=True, timeout=120)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

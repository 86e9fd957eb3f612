"""The IPython front end: `%%gemini` cells and `%gemini` commands.

- magic.py: the GeminiMagics class: settings as traitlets, option parsing, dispatch;
- cell.py: one `%%gemini` cell, from options to the answer shown;
- failure.py: a failed cell, shown as one short message;
- commands/: `%gemini COMMAND`, one module per topic.
"""

from __future__ import annotations

from .failure import CellFailed
from .magic import GeminiMagics

__all__ = ["CellFailed", "GeminiMagics"]

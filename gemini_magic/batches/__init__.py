"""Many prompts at once.

- local.py: one request per item of a list, Series or DataFrame, run concurrently
  from here within the rate limits (`gemini_magic.batch`, `%%gemini --over`);
- api.py: the Gemini Batch API's jobs, run on Google's side (`mode="api"`,
  `--batch-api`, `%gemini batch-status`);
- wire.py: the Batch API's request and result formats.
"""

from __future__ import annotations

from .local import BatchRun, ItemError

__all__ = ["BatchRun", "ItemError"]

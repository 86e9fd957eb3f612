"""Many prompts at once.

- local.py: one request per item of a list, Series or DataFrame, run concurrently
  from here within the rate limits (`gemini_magic.batch`, `%%gemini --over`);
- api.py: the Gemini Batch API's jobs, run on Google's side (`mode="api"`,
  `--batch-api`, `%gemini batch-status`);
- wire.py: the Batch API's request and result formats.

    results, run = ask_many(session, "Capital of {item}?", ["France", "Peru"], Options())
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .local import BatchRun, ItemError, build_requests, shape

__all__ = ["BatchRun", "ItemError", "ask_many", "last_run"]

last_run: BatchRun | None = None  # gemini_magic.last_batch()


def ask_many(session, template: str, rows, options, *, mode: str = "local", column: str | None = None,
             concurrency: int | None = None, progress=None, previous: BatchRun | None = None,
             surroundings: dict | None = None) -> tuple[Any, BatchRun | None]:
    """Every item of `rows` asked with the same options, built as a cell's would be:
    (the results shaped like `rows`, the local run or None for a Batch API job).
    A `previous` run of the same requests that did not finish is resumed."""
    global last_run
    if mode not in ("local", "api"):
        raise ValueError("mode is 'local' (requests from here) or 'api' (a Batch API job)")
    column = column or options.column or "answer"
    # What says how to batch (the cell's --over, --column, --batch-api, --out, and for a
    # local run --concurrency) is used here; the rest is each item's request.
    if mode == "local":
        concurrency = concurrency or options.concurrency or 8
        options = dataclasses.replace(options, concurrency=None)
    elif concurrency is not None:
        options = dataclasses.replace(options, concurrency=concurrency)  # refused below, by name
    options = dataclasses.replace(options, over=None, column=None, batch_api=False, out=None)
    recipe = session.recipe(options, "batch-api" if mode == "api" else "batch", **(surroundings or {}))
    requests, like = build_requests(recipe, template.strip(), rows)
    if options.dry_run:
        from ..counting import count_batch

        return count_batch(session.engine, requests, batch_api=mode == "api",
                           service_tier=recipe.config.get("service_tier"), cache=recipe.cache), None
    if mode == "api":
        from .api import run as run_job

        return shape(list(run_job(requests, session.connection, model=recipe.model)), like, column), None
    if previous is not None and previous.same(requests) and previous.pending():
        previous.progress = progress
        batch = previous.resume()
    else:
        batch = BatchRun(requests, session.engine, concurrency=max(1, concurrency), progress=progress).resume()
    if recipe.cache is not None and any(getattr(r, "kind", "") == "cache-gone" for r in batch.results):
        session.caches.forget(recipe.cache.name)  # gone: the next use looks for it again
    last_run = batch
    return shape(batch.results, like, column), batch

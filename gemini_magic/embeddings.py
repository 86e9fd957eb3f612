"""Embeddings over data: one vector per text, aligned with a list, Series or column.

    vectors = gemini_magic.embed(df["review"], task_type="CLUSTERING", dimensions=256)
    vectors.shape            # (len(df), 256): row i is df["review"].iloc[i]

Texts go up to 100 to a request (`batchEmbedContents` takes no more) through the
session's connection, so the same limiter, retries, proxies and record/replay apply,
with the batch progress bar. Each text is its own Content: the SDK would otherwise merge
a list of strings into one embedding on the newer multimodal embedding models.

Vectors shorter than the model's full size (`dimensions`) are normalised to length 1
here, as Google's embeddings guide asks (only full-size ones come normalised).

What fails is kept apart, as in batch(): an empty or missing text, or a request that
still fails after its retries, leaves a row of NaN; `gemini_magic.last_embedding()` has
`.errors` ({index: ItemError}) and a note says how many. An interrupted run returns
what it finished. `mode="api"` sends everything as one Batch API embeddings job
(google-genai marks it experimental): no per-minute limits, half the price.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from typing import Any

from .errors import GeminiError, explain

DEFAULT_MODEL = "gemini-embedding-001"
MAX_PER_REQUEST = 100
TASK_TYPES = ("RETRIEVAL_QUERY", "RETRIEVAL_DOCUMENT", "SEMANTIC_SIMILARITY", "CLASSIFICATION", "CLUSTERING",
              "QUESTION_ANSWERING", "FACT_VERIFICATION", "CODE_RETRIEVAL_QUERY")
# A Batch API embeddings job goes inline, in its create call: at most this much JSON.
API_INLINE_LIMIT = 20 * 1024 * 1024


@dataclass
class EmbedRun:
    """One embed() call: the vectors (NaN rows where it failed) and what failed."""

    vectors: Any = None  # numpy array, (n, d)
    errors: dict = field(default_factory=dict)  # index -> batches.ItemError
    model: str = ""
    interrupted: bool = False

    def summary(self) -> str:
        n = len(self.vectors) if self.vectors is not None else 0
        if not self.errors and not self.interrupted:
            return f"Embedded {n:,} texts with {self.model}."
        first = next(iter(self.errors.items()), None)
        example = f" First: item {first[0]}: {first[1].message}" if first else ""
        stopped = " Interrupted: the rest were not asked." if self.interrupted else ""
        return (f"Embedded {n - len(self.errors):,} of {n:,} texts with {self.model}; {len(self.errors):,} "
                f"are rows of NaN (gemini_magic.last_embedding().errors).{stopped}{example}")


last_run: EmbedRun | None = None


def texts_of(rows) -> list:
    """A list, tuple, pandas Series or single-column DataFrame, as a list (None where missing)."""
    if hasattr(rows, "columns"):  # a DataFrame: its one column
        if len(rows.columns) != 1:
            raise GeminiError(f"embed() takes one column of texts, not a DataFrame of {len(rows.columns)}.",
                              'Pass the column: embed(df["text"]).')
        rows = rows.iloc[:, 0]
    values = list(rows.tolist() if hasattr(rows, "tolist") else rows)
    return [v if isinstance(v, str) else None for v in values]


def embed(session, rows, *, model: str | None = None, task_type: str | None = None, dimensions: int | None = None,
          mode: str = "local", batch_size: int = MAX_PER_REQUEST, progress=None):
    """See gemini_magic.embed."""
    import numpy as np

    from .batches.local import ItemError

    global last_run
    if task_type is not None and task_type.upper() not in TASK_TYPES:
        raise GeminiError(f"task_type {task_type!r} is not one Gemini knows.", f"Use one of {', '.join(TASK_TYPES)}.")
    if dimensions is not None and (not isinstance(dimensions, int) or dimensions < 1):
        raise GeminiError(f"dimensions must be a positive whole number, not {dimensions!r}.",
                          "For example dimensions=768 (gemini-embedding-001 gives 3072 at most).")
    if not 1 <= batch_size <= MAX_PER_REQUEST:
        raise GeminiError(f"batch_size must be 1 to {MAX_PER_REQUEST}, not {batch_size!r}.", "")
    if mode not in ("local", "api"):
        raise GeminiError(f"mode must be 'local' or 'api', not {mode!r}.", "")
    texts = texts_of(rows)
    model = (model or DEFAULT_MODEL).removeprefix("models/")
    config = {k: v for k, v in (("task_type", task_type and task_type.upper()),
                                ("output_dimensionality", dimensions)) if v is not None}
    run = last_run = EmbedRun(model=model)
    found: dict[int, list[float]] = {}
    wanted = []
    for index, text in enumerate(texts):
        if text is None or not text.strip():
            run.errors[index] = ItemError("empty or missing text", "empty")
        else:
            wanted.append(index)
    if not wanted:
        raise GeminiError(f"There is nothing to embed: {'all ' if texts else ''}{len(texts)} texts are empty or "
                          "missing.", "Give a list, Series or column of texts.")
    try:
        if mode == "api":
            found.update(_by_job(session, model, texts, wanted, config, run))
        else:
            for start in range(0, len(wanted), batch_size):
                chunk = wanted[start:start + batch_size]
                try:
                    vectors = _request(session.engine, model, [texts[i] for i in chunk], config)
                except GeminiError as error:
                    if not found and start + batch_size >= len(wanted) or _fatal(error):
                        raise
                    run.errors.update({i: ItemError(error.message, error.kind) for i in chunk})
                else:
                    found.update(zip(chunk, vectors, strict=True))
                if progress is not None:
                    progress(len(found), len(texts), len(run.errors))
    except KeyboardInterrupt:
        run.interrupted = True
        for index in wanted:
            if index not in found and index not in run.errors:
                run.errors[index] = ItemError("not asked: interrupted", "interrupted")
    width = len(next(iter(found.values()))) if found else (dimensions or 0)
    out = np.full((len(texts), width), np.nan)
    for index, vector in found.items():
        out[index] = vector
    if dimensions is not None and found:
        rows_done = list(found)
        norms = np.linalg.norm(out[rows_done], axis=1, keepdims=True)
        out[rows_done] = out[rows_done] / np.where(norms == 0, 1, norms)
    run.vectors = out
    return out


def _fatal(error: GeminiError) -> bool:
    """Errors that every other request would meet too: stop at once, say it once."""
    return error.kind in ("no-key", "invalid-key", "unknown-model", "permission", "not-recorded")


def _contents(texts: list[str]) -> list:
    from .client import types

    return [types().Content(role="user", parts=[types().Part(text=t)]) for t in texts]


def _request(engine, model: str, texts: list[str], config: dict) -> list[list[float]]:
    """One batchEmbedContents, retried as an answer is: transient errors (429, 5xx,
    timeouts) wait the server's delay or a growing one, within the retry policy."""
    from .client import types

    client = engine.connection.client()
    policy = engine.retry
    waited = 0.0
    for attempt in range(1, policy.attempts + 1):
        try:
            response = client.models.embed_content(
                model=model, contents=_contents(texts),
                config=types().EmbedContentConfig(**config) if config else None)
            engine.count(model, {})  # today's usage: one request (the free tier's daily figures count it)
            return [list(e.values or []) for e in response.embeddings or []]
        except Exception as exc:  # noqa: BLE001  (translated, then retried or raised)
            error = exc if isinstance(exc, GeminiError) else explain(exc, engine.context(model))
        delay = error.retry_after if error.retry_after is not None else policy.base_delay * 2 ** (attempt - 1)
        if error.transient and attempt < policy.attempts and waited + delay <= policy.max_wait:
            engine.pause(delay)
            waited += delay
            continue
        raise error
    raise AssertionError("unreachable")


def _by_job(session, model: str, texts: list, wanted: list[int], config: dict, run: EmbedRun) -> dict:
    """mode="api": one Batch API embeddings job, inline, polled until it ends."""
    from .batches.api import DONE_STATES, POLL_DELAYS, _client, _context
    from .batches.local import ItemError
    from .client import types

    if not wanted:
        return {}
    client = _client(session.connection)
    source = {"inlined_requests": {"contents": _contents([texts[i] for i in wanted]), "config": config or None}}
    size = len(json.dumps([texts[i] for i in wanted]))
    if size > API_INLINE_LIMIT:
        raise GeminiError(f"{len(wanted):,} texts are {size / 2**20:.0f} MB: over what a Batch API embeddings job "
                          "takes inline (20 MB).", "Split them, and call embed() once per part.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # google-genai warns that embeddings jobs are experimental
            job = client.batches.create_embeddings(
                model=model, src=types().EmbeddingsBatchJobSource(**source),
                config={"display_name": f"gemini-magic embed ({len(wanted)} texts)"})
    except Exception as exc:  # noqa: BLE001
        raise explain(exc, _context(session.connection, model)) from exc
    from .render.notes import note

    note(f"Batch API embeddings job {job.name} created for {len(wanted):,} texts; waiting for it.")
    delays = list(POLL_DELAYS)
    while _state(job) not in DONE_STATES:
        session.engine.pause(delays.pop(0) if len(delays) > 1 else delays[0])
        try:
            job = client.batches.get(name=job.name)
        except Exception as exc:  # noqa: BLE001
            raise explain(exc, _context(session.connection, model)) from exc
    responses = list(getattr(job.dest, "inlined_embed_content_responses", None) or []) if job.dest else []
    found = {}
    for index, item in zip(wanted, responses, strict=False):
        embedding = item.response.embedding if item.response is not None else None
        if embedding is not None and embedding.values:
            found[index] = list(embedding.values)
        else:
            message = getattr(item.error, "message", None) or "no embedding in the job's results"
            run.errors[index] = ItemError(message)
    ended = _state(job).removeprefix("JOB_STATE_").lower()
    if not found:
        raise GeminiError(f"The Batch API embeddings job {job.name} ended {ended} with no embeddings.",
                          "Try again later, or embed(..., mode='local').")
    for index in wanted[len(responses):]:
        run.errors[index] = ItemError(f"the job ended {ended} without it")
    return found


def _state(job) -> str:
    state = job.state
    return str(getattr(state, "name", state) or "")

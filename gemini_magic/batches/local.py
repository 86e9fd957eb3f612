"""One prompt per item of a list, Series or DataFrame, run concurrently within the limits.

    import gemini_magic
    df["summary"] = gemini_magic.batch("Summarise in one line: {text}", df)["answer"]

Every item is built like a cell's request (requests.py: the same options, tools,
search, attachments) and goes through the same engine (retries, rate limits, record
and replay), so a batch runs as fast as the quota allows without collecting 429s.
An item that fails keeps its error in its place; the batch goes on.

A run keeps its own results: an interrupted run resumes where it stopped
(`resume()`, or running the same cell again), waiting for requests still in flight
rather than asking again. Nothing is cached across runs: running a batch again asks
again (and records, under `%gemini record`), N identical prompts are N requests.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from ..errors import GeminiError


@dataclass
class ItemError:
    """A failed item: its place in the results holds this instead of an answer."""

    message: str
    kind: str = "error"

    def __str__(self) -> str:
        return f"error: {self.message}"

    def __bool__(self) -> bool:
        return False


def _identity(request) -> str:
    text = json.dumps([request.model_id, repr(request.contents), repr(sorted(request.config.items())),
                       repr(request.server_tools), sorted(request.toolbox.tools) if request.toolbox else None],
                      sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class BatchRun:
    """One batch: its requests, results as they finish, and what is left.

    `results` is aligned with the inputs (None where an item has not finished);
    `resume()` runs what is left after an interruption."""

    requests: list
    engine: Any
    concurrency: int = 8
    results: list = field(default_factory=list)
    interrupted: bool = False
    progress: Any = None  # callable(done, total, failed)
    seconds: float = 0.0
    usage: dict = field(default_factory=dict)  # tokens of the answers, added up
    bugs: int = 0  # items that failed on an unexpected exception (reported, not hidden)

    def __post_init__(self) -> None:
        if not self.results:
            self.results = [None] * len(self.requests)
        self._in_flight: dict[int, threading.Event] = {}
        self._lock = threading.Lock()
        self.identities = [_identity(r) for r in self.requests]

    @property
    def done(self) -> int:
        return sum(r is not None for r in self.results)

    @property
    def errors(self) -> dict[int, ItemError]:
        return {i: r for i, r in enumerate(self.results) if isinstance(r, ItemError)}

    def pending(self) -> list[int]:
        return [i for i, r in enumerate(self.results) if r is None or isinstance(r, ItemError)]

    def same(self, requests: list) -> bool:
        """Whether `requests` are this run's (a re-run cell that may resume it)."""
        return [_identity(r) for r in requests] == self.identities

    def resume(self) -> BatchRun:
        """Run the items that have not finished (or failed), keeping the others."""
        self.interrupted = False
        todo = self.pending()
        self._report()
        if not todo:
            return self
        started = time.perf_counter()
        pool = ThreadPoolExecutor(max_workers=max(1, min(self.concurrency, len(todo))),
                                  thread_name_prefix="gemini-batch")
        futures = {pool.submit(self._one, i): i for i in todo}
        try:
            remaining = set(futures)
            while remaining:
                finished, remaining = wait(remaining, timeout=0.5, return_when=FIRST_COMPLETED)
                if finished:
                    self._report()
        except KeyboardInterrupt:
            # Keep what finished and return at once: what waits is dropped; what is in
            # flight finishes in its thread and its answer is kept for a resume, which
            # waits for it rather than asking again.
            self.interrupted = True
            for future in futures:
                future.cancel()
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        self.seconds += time.perf_counter() - started
        self._report()
        return self

    def _one(self, index: int) -> None:
        if self.interrupted:
            return  # dropped: it had not started when the batch was interrupted
        with self._lock:
            running = self._in_flight.get(index)
            if running is None:
                self._in_flight[index] = threading.Event()
        if running is not None:
            running.wait()  # still out from an interrupted run: its answer lands in results
            if self.results[index] is not None:
                return
            with self._lock:
                self._in_flight.setdefault(index, threading.Event())
        try:
            answer = self.engine.send(self.requests[index]).wait()
            if answer.error is not None:
                self.results[index] = ItemError(answer.error.message, answer.error.kind)
                return
            self.results[index] = answer.parsed if answer.parsed is not None else answer.text
            with self._lock:
                for name, value in answer.usage.items():
                    self.usage[name] = self.usage.get(name, 0) + value
        except Exception as exc:  # noqa: BLE001  (a bug must not leave a hole: the item says what happened)
            from ..client import find_api_key
            from ..errors import scrub

            self.bugs += 1
            self.results[index] = ItemError(scrub(f"Unexpected {type(exc).__name__}: {exc}", find_api_key()), "bug")
        finally:
            with self._lock:
                done = self._in_flight.pop(index, None)
            if done is not None:
                done.set()

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(self.done - len(self.errors), len(self.requests), len(self.errors))


def items(rows) -> tuple[list[dict], Any]:
    """Each row as the fields a template can name, and how to shape the results."""
    if isinstance(rows, (str, bytes)) or not hasattr(rows, "__iter__"):
        raise GeminiError(f"A batch runs over a list, a pandas Series or a DataFrame, not a {type(rows).__name__}.",
                          "Put the items in a list.")
    kind = type(rows)
    module = kind.__module__.split(".")[0]
    if module == "pandas" and kind.__name__ == "DataFrame":
        records = rows.to_dict("records")
        return [dict(r, index=i) for i, r in zip(rows.index, records, strict=True)], rows
    if module == "pandas" and kind.__name__ == "Series":
        name = rows.name if isinstance(rows.name, str) and rows.name.isidentifier() else None
        out = []
        for i, value in rows.items():
            fields = {"item": value, "index": i}
            if name:
                fields[name] = value
            out.append(fields)
        return out, rows
    out = []
    for i, value in enumerate(list(rows)):
        fields = dict(value) if isinstance(value, dict) else {}
        fields.setdefault("item", value)
        fields.setdefault("index", i)
        out.append(fields)
    return out, None


def shape(results: list, like, column: str):
    """The results aligned like the input: a list, a Series, or the DataFrame with `column`."""
    if like is None:
        return results
    if type(like).__name__ == "DataFrame":
        return like.assign(**{column: results})
    import pandas as pd

    return pd.Series(results, index=like.index, name=column)


def build_requests(recipe, template: str, rows) -> tuple[list, Any]:
    """One request per row, built by `recipe` (requests.py) with the row's fields
    filling the template before the notebook's variables."""
    fields, like = items(rows)
    return [recipe.prepare(template, fields=row).request for row in fields], like


def run(requests: list, engine, *, concurrency: int = 8, progress=None) -> BatchRun:
    return BatchRun(requests, engine, concurrency=concurrency, progress=progress).resume()


def summary(batch: BatchRun, usage: bool = False) -> str:
    failed = len(batch.errors)
    text = f"{batch.done - failed} of {len(batch.requests)} done"
    if failed:
        text += f", {failed} failed (their places hold the error)"
    if batch.bugs:
        text += f"; {batch.bugs} of them on an unexpected error (please report it: the message is in its place)"
    if usage:
        u = batch.usage
        text += (f"; {u.get('prompt_tokens', 0):,} tokens in, {u.get('output_tokens', 0):,} out"
                 + (f", {u['thinking_tokens']:,} thinking" if u.get("thinking_tokens") else ""))
    if batch.interrupted:
        text += ". Interrupted: run it again to resume; finished items are kept"
    return text + "."

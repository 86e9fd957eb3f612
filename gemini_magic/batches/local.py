"""One prompt per item of a list, Series or DataFrame, run concurrently within the limits.

    import gemini_magic
    df["summary"] = gemini_magic.batch("Summarise in one line: {text}", df)["answer"]

Every item goes through the same engine as a cell (retries, rate limits, record and
replay), so a batch runs as fast as the quota allows without collecting 429s, and a
re-run under `%gemini cache` costs nothing. An item that fails keeps its error in
its place; the batch goes on.
"""

from __future__ import annotations

import hashlib
import json
import sys
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


# Finished items of this session, by request: an interrupted batch resumes where it
# stopped, and a re-run cell only sends what is missing.
_finished: dict[str, Any] = {}
_in_flight: dict[str, threading.Event] = {}  # requests still out, set when they end
_finished_lock = threading.Lock()
last_run: BatchRun | None = None


def _identity(request) -> str:
    text = json.dumps([request.model_id, repr(request.contents), repr(sorted(request.config.items()))],
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

    def __post_init__(self) -> None:
        if not self.results:
            self.results = [None] * len(self.requests)

    @property
    def done(self) -> int:
        return sum(r is not None for r in self.results)

    @property
    def errors(self) -> dict[int, ItemError]:
        return {i: r for i, r in enumerate(self.results) if isinstance(r, ItemError)}

    def pending(self) -> list[int]:
        return [i for i, r in enumerate(self.results) if r is None or isinstance(r, ItemError)]

    def resume(self) -> BatchRun:
        """Run the items that have not finished (or failed), keeping the others."""
        self.interrupted = False
        todo = self.pending()
        for i in todo:
            cached = _finished.get(_identity(self.requests[i]))
            self.results[i] = cached
        todo = [i for i in todo if self.results[i] is None]
        self._report()
        if not todo:
            return self
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
        self._report()
        return self

    def _one(self, index: int) -> None:
        if self.interrupted:
            return  # dropped: it had not started when the batch was interrupted
        request = self.requests[index]
        identity = _identity(request)
        with _finished_lock:
            running = _in_flight.get(identity)
            if running is None:
                _in_flight[identity] = threading.Event()
        if running is not None:
            # The same request is still out from an interrupted run: wait for it.
            running.wait()
            if identity in _finished:
                self.results[index] = _finished[identity]
                return
            with _finished_lock:
                _in_flight.setdefault(identity, threading.Event())
        try:
            answer = self.engine.send(request).wait()
            if answer.error is not None:
                self.results[index] = ItemError(answer.error.message, answer.error.kind)
                return
            value = answer.parsed if answer.parsed is not None else answer.text
            self.results[index] = value
            with _finished_lock:
                _finished[identity] = value
        finally:
            with _finished_lock:
                done = _in_flight.pop(identity, None)
            if done is not None:
                done.set()

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(self.done - len(self.errors), len(self.requests), len(self.errors))


def _items(rows) -> tuple[list[dict], Any]:
    """Each row as the fields a template can name, and how to shape the results."""
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
    items = list(rows)
    out = []
    for i, value in enumerate(items):
        fields = dict(value) if isinstance(value, dict) else {}
        fields.setdefault("item", value)
        fields.setdefault("index", i)
        out.append(fields)
    return out, None


def _shape(results: list, like, column: str):
    if like is None:
        return results
    kind = type(like).__name__
    if kind == "DataFrame":
        return like.assign(**{column: results})
    import pandas as pd

    return pd.Series(results, index=like.index, name=column)


def build_requests(template: str, rows, namespace: dict, make_request) -> tuple[list, Any]:
    """One request per row: the template filled from the row's fields, then the
    notebook's variables."""
    from ..context import summarize
    from ..prompt import interpolate

    if isinstance(rows, (str, bytes)) or not hasattr(rows, "__iter__"):
        raise GeminiError(f"A batch runs over a list, a pandas Series or a DataFrame, not a {type(rows).__name__}.",
                          "Put the items in a list.")
    items, like = _items(rows)
    requests = []
    for fields in items:
        scope = {**namespace, **fields}
        result = interpolate(template, scope, render=summarize)
        requests.append(make_request(result.text))
    return requests, like


def progress_for(shell, label: str = "Gemini batch"):
    """An ipywidgets bar under a kernel; a line every 10% in a terminal."""
    if shell is not None and getattr(shell, "kernel", None) is not None:
        import ipywidgets
        from IPython.display import display

        bar = ipywidgets.IntProgress(min=0, max=1, description=label)
        text = ipywidgets.Label()
        display(ipywidgets.HBox([bar, text]))

        def show(done: int, total: int, failed: int) -> None:
            bar.max = max(total, 1)
            bar.value = done + failed
            text.value = f"{done} done" + (f", {failed} failed" if failed else "") + f" of {total}"

        return show
    state = {"last": -1}

    def line(done: int, total: int, failed: int) -> None:
        tenth = (done + failed) * 10 // max(total, 1)
        if tenth != state["last"]:
            state["last"] = tenth
            print(f"{label}: {done} done" + (f", {failed} failed" if failed else "") + f" of {total}",
                  file=sys.stderr)

    return line


def run(requests: list, engine, *, concurrency: int = 8, progress=None) -> BatchRun:
    batch = BatchRun(requests, engine, concurrency=concurrency, progress=progress)
    started = time.perf_counter()
    batch.resume()
    batch.seconds = time.perf_counter() - started
    return batch


def summary(batch: BatchRun) -> str:
    failed = len(batch.errors)
    text = f"{batch.done - failed} of {len(batch.requests)} done"
    if failed:
        text += f", {failed} failed (their places hold the error)"
    if batch.interrupted:
        text += ". Interrupted: run it again to resume; finished items are kept"
    return text + "."

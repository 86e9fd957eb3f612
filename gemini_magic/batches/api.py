"""Jobs for the Gemini Batch API: thousands to millions of prompts at half the price.

    job = api.submit(requests, connection, model="gemini-2.5-flash")
    job.wait()                  # polls, showing the state as it changes
    answers = job.results()     # aligned with `requests`: text (or parsed), ItemError

    answers = api.run(requests, connection)   # the three at once

A job runs on Google's side (the target is 24 hours, usually much less) with no
per-minute limits, so it outlives the kernel that made it: its id is printed when it
is created, and `%gemini batch-status ID` (or `Job.attach(ID, connection).results()`)
collects it later, from any kernel with a key of the same project. Its display name
ends with its number of prompts, "(N prompts)", so a later kernel aligns to N.

Jobs that end without succeeding: a failed, cancelled or expired job raises
BatchJobError from `results()`, carrying what it did answer (`.results`, aligned,
ItemError elsewhere); `results(partial=True)`, `run` and `%gemini batch-status`
return those with a warning instead, and raise only when nothing was answered.

How requests travel (their format is wire.py's):
- Small batches go inline, in the create call itself: one request, no upload, and
  the answers come back inside the job. That is when the requests' JSON is at most
  `inline_limit` bytes (INLINE_LIMIT, 2 MB; the API takes up to 20 MB inline, but
  then answers arrive in the job's every GET once it is done). Larger batches go as a
  JSONL file through the Files API (up to 2 GB), and the results file is downloaded
  once. `inline_limit=0` always uses a file.
- Vertex AI's batch prediction reads Cloud Storage or BigQuery and writes there; it is
  not supported here (a Vertex connection gets a clear error).
"""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from ..errors import Context, GeminiError, explain
from ..render.notes import note
from .local import ItemError
from .wire import _COUNT, _JOB_ID, _inlined, align, inlined_lines, key_for, request_json, result_lines

# Requests whose JSON is at most this many bytes go inline in the create call.
INLINE_LIMIT = 2 * 1024 * 1024
# What the API takes inline at most, whatever `inline_limit` says.
API_INLINE_LIMIT = 20 * 1024 * 1024
# The Files API's limit per file: the input file's ceiling.
FILE_LIMIT = 2 * 1024 * 1024 * 1024
# The MIME type the Batch API documentation uploads its JSONL input with.
JSONL_MIME_TYPE = "jsonl"
# Seconds between polls: growing from the first to the last, unless `wait(poll=)` says.
POLL_DELAYS = (2.0, 5.0, 10.0, 20.0, 30.0)

SUCCEEDED = "JOB_STATE_SUCCEEDED"
FAILED = "JOB_STATE_FAILED"
CANCELLED = "JOB_STATE_CANCELLED"
EXPIRED = "JOB_STATE_EXPIRED"
DONE_STATES = (SUCCEEDED, FAILED, CANCELLED, EXPIRED, "JOB_STATE_PARTIALLY_SUCCEEDED")


class BatchJobError(GeminiError):
    """A job that ended without succeeding (failed, cancelled, expired). `results`
    holds what it did answer, aligned with the inputs (ItemError elsewhere)."""

    kind = "batch-failed"

    def __init__(self, message: str, hint: str = "", *, job: Job | None = None, results: list | None = None):
        super().__init__(message, hint)
        self.job = job
        self.results = results if results is not None else []


class JobNotDone(GeminiError):
    """A job still pending or running when we stopped waiting for it."""

    kind = "batch-pending"

    def __init__(self, message: str, hint: str = "", *, job: Job | None = None):
        super().__init__(message, hint)
        self.job = job


class UnknownJob(GeminiError):
    kind = "batch-unknown"


class ResultsUnavailable(GeminiError):
    kind = "batch-results"


class Results(list):
    """The aligned results of a job: a plain list, shown briefly (a job can hold a
    million answers, and an Out[] cell should not)."""

    shown = 10

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        if cycle:
            printer.text("[...]")
            return
        failed = sum(isinstance(r, ItemError) for r in self)
        head = f"{len(self)} results" + (f", {failed} failed" if failed else "")
        if len(self) <= self.shown:
            printer.text(head + ": ")
            printer.pretty(list(self))
            return
        printer.text(head + ", the first " + str(self.shown) + ": ")
        printer.pretty(list(self[: self.shown]))


def job_name(job_id: str) -> str:
    """'batches/abc' from 'batches/abc' or 'abc'; a GeminiError for anything else."""
    match = _JOB_ID.match((job_id or "").strip())
    if match is None:
        raise UnknownJob(f"{job_id!r} is not a batch job id.",
                         "Use the id printed when the job was created, like batches/abc123.")
    return f"batches/{match.group(1)}"


# -- submitting -------------------------------------------------------------------------


def _context(connection, model: str = "") -> Context:
    return Context(model=model, base_url=getattr(connection, "base_url", None) or "",
                   timeout=getattr(connection, "timeout", 0.0))


def _client(connection):
    client = connection.client()
    if getattr(client, "vertexai", False):
        raise GeminiError(
            "The Batch API is used here through the Gemini Developer API only: on Vertex AI batch "
            "jobs read Cloud Storage or BigQuery.",
            "Use a Gemini API key (GEMINI_API_KEY) for batch jobs, or run a local batch (mode='local').",
        )
    return client


def _common_model(requests: list, model: str | None) -> str:
    ids = {r.model_id for r in requests if getattr(r, "model", "")}
    chosen = (model or "").removeprefix("models/").strip()
    if not chosen:
        if len(ids) > 1:
            raise GeminiError(f"A batch job runs one model; these requests name {len(ids)}: "
                              f"{', '.join(sorted(ids))}.", "Submit one job per model.")
        chosen = next(iter(ids), "")
    if not chosen:
        raise GeminiError("No model for the batch job.", "Pass model=..., or set %config GeminiMagics.model.")
    others = ids - {chosen}
    if others:
        raise GeminiError(f"A batch job runs one model ({chosen}); some requests name {', '.join(sorted(others))}.",
                          "Submit one job per model.")
    return chosen


def submit(requests: list, connection, *, model: str | None = None, display_name: str | None = None,
           inline_limit: int = INLINE_LIMIT, out=None) -> Job:
    """Create a Batch API job answering `requests` (engine Requests), and return it.

    Inline when the requests' JSON is at most `inline_limit` bytes, else as an uploaded
    JSONL file (see the module docstring). The job id is printed to `out` (stdout):
    `%gemini batch-status ID` collects the job later, from any kernel."""
    requests = list(requests)
    if not requests:
        raise GeminiError("Nothing to submit: the batch has no requests.", "")
    model = _common_model(requests, model)
    client = _client(connection)
    base = display_name or "gemini-magic batch"
    display_name = f"{base} ({len(requests)} prompt{'s' * (len(requests) != 1)})"
    try:
        lines = [{"key": key_for(i), "request": request_json(r, client._api_client)} for i, r in enumerate(requests)]
        data = b"".join(json.dumps(line, ensure_ascii=False).encode("utf-8") + b"\n" for line in lines)
        inline = len(data) <= min(inline_limit, API_INLINE_LIMIT)
        if not inline and len(data) > FILE_LIMIT:
            raise GeminiError(f"The batch is {len(data) / 2**30:.1f} GB as JSONL, over the 2 GB the Files API "
                              "takes.", "Split it into several jobs.")
        if inline:
            src: Any = [_inlined(r, key_for(i)) for i, r in enumerate(requests)]
        else:
            uploaded = client.files.upload(
                file=io.BytesIO(data),
                config={"mime_type": JSONL_MIME_TYPE, "display_name": f"{base} requests"},
            )
            src = uploaded.name
        batch = client.batches.create(model=model, src=src, config={"display_name": display_name})
    except GeminiError:
        raise
    except Exception as exc:
        raise explain(exc, _context(connection, model)) from exc
    job = Job(batch.name, connection, model=model, display_name=display_name, count=len(requests),
              requests=requests, inline=inline)
    job._update(batch)
    how = "inline" if inline else f"as the file {src}"
    print(f"Submitted Gemini batch job {job.id}: {len(requests)} prompts to {model}, sent {how}.\n"
          f"Collect it later, from any kernel: %gemini batch-status {job.id}", file=out or sys.stdout)
    return job


# -- the job ------------------------------------------------------------------------------


class Job:
    """A Batch API job: its state, and its results once done.

    A job made by `submit` knows its requests (so structured-output answers are
    parsed); one attached by id from a later kernel returns text, aligned to the
    number of prompts its display name ends with ("... (N prompts)"), else to the
    highest key it finds."""

    def __init__(self, id: str, connection, *, model: str | None = None, display_name: str | None = None,
                 count: int | None = None, requests: list | None = None, inline: bool | None = None):
        self.id = id
        self.connection = connection
        self.model = model
        self.display_name = display_name
        self.count = count
        self.requests = requests
        self.inline = inline
        self.state = "JOB_STATE_PENDING"
        self.batch: Any = None  # the SDK's BatchJob, as last seen

    @classmethod
    def attach(cls, job_id: str, connection) -> Job:
        """The job `job_id` ('batches/abc' or 'abc'), as it is now; UnknownJob if there
        is none (for this key's project)."""
        job = cls(job_name(job_id), connection)
        return job.refresh()

    def __repr__(self) -> str:
        return f"<gemini_magic batch job {self.id}: {self.state}>"

    @property
    def done(self) -> bool:
        return self.state in DONE_STATES

    @property
    def succeeded(self) -> bool:
        return self.state == SUCCEEDED

    def _update(self, batch) -> None:
        self.batch = batch
        state = getattr(batch, "state", None)
        if state is not None:
            self.state = getattr(state, "value", None) or str(state)
        if getattr(batch, "model", None) and not self.model:
            self.model = batch.model.removeprefix("models/")
        if getattr(batch, "display_name", None) and not self.display_name:
            self.display_name = batch.display_name
        if self.count is None and self.display_name:
            match = _COUNT.search(self.display_name)
            self.count = int(match.group(1)) if match else None

    def refresh(self) -> Job:
        """Ask the service for the job's state."""
        try:
            batch = _client(self.connection).batches.get(name=self.id)
        except GeminiError:
            raise
        except Exception as exc:
            if getattr(exc, "code", None) == 404:
                raise UnknownJob(
                    f"No batch job {self.id}.",
                    "Check the id printed when the job was created; a job is visible only to keys of "
                    "the project that made it, and is deleted some weeks after it ends.",
                ) from exc
            raise explain(exc, _context(self.connection, self.model or "")) from exc
        self._update(batch)
        return self

    def _replaying(self) -> bool:
        transport = getattr(self.connection, "_transport", None)
        return bool(transport is not None and getattr(transport, "last_was_replayed", False))

    def wait(self, poll: float | None = None, timeout: float | None = None,
             progress: Callable[[Job], None] | None = None, sleep: Callable[[float], None] = time.sleep) -> Job:
        """Poll until the job ends. `progress(job)` is called when the state changes
        (default: a line on stdout). After `timeout` seconds, or on Ctrl-C, a
        JobNotDone error says how to collect the job later: it runs on regardless."""
        show = progress or _print_state
        started = time.monotonic()
        seen = None
        polls = 0
        try:
            while True:
                if polls:
                    self.refresh()
                polls += 1
                if self.state != seen:
                    seen = self.state
                    show(self)
                if self.done:
                    return self
                if timeout is not None and time.monotonic() - started >= timeout:
                    raise JobNotDone(
                        f"Batch job {self.id} is still {_word(self.state)} after {timeout:g} s.",
                        f"It runs on: collect it later with %gemini batch-status {self.id}.", job=self)
                delay = poll if poll is not None else POLL_DELAYS[min(polls - 1, len(POLL_DELAYS) - 1)]
                if not self._replaying():  # a replayed poll needs no real wait
                    sleep(delay)
        except KeyboardInterrupt:
            raise JobNotDone(f"Stopped waiting for batch job {self.id} ({_word(self.state)}).",
                             f"It runs on: collect it later with %gemini batch-status {self.id}.",
                             job=self) from None

    def cancel(self) -> Job:
        """Stop the job: what it has answered is kept (`results(partial=True)`)."""
        try:
            _client(self.connection).batches.cancel(name=self.id)
        except GeminiError:
            raise
        except Exception as exc:
            code = getattr(exc, "code", None)
            if code == 404:
                raise UnknownJob(f"No batch job {self.id}.", "Check the id printed when it was created.") from exc
            if code == 400:
                self.refresh()
                if self.done:
                    raise GeminiError(f"Batch job {self.id} has already ended ({self.state}): nothing to cancel.",
                                      f"Collect it: %gemini batch-status {self.id}.") from exc
            raise explain(exc, _context(self.connection, self.model or "")) from exc
        return self.refresh()

    # -- results ------------------------------------------------------------------------

    def results(self, aligned_to: int | None = None, *, partial: bool = False) -> Results:
        """The answers, aligned with the inputs: text (or the parsed value, for
        structured output), or an ItemError for an item that failed or has no result.

        A job that failed, was cancelled or expired raises BatchJobError with what it
        did answer in `.results`; `partial=True` returns those instead."""
        if not self.done:
            raise JobNotDone(f"Batch job {self.id} has not finished: it is {_word(self.state)}.",
                             f"Wait for it (job.wait()), or collect it later: %gemini batch-status {self.id}.",
                             job=self)
        lines = self._lines()
        size = aligned_to if aligned_to is not None else self.count
        results = align(lines, size, self.requests)
        kept = sum(r is not None and not isinstance(r, ItemError) for r in results)
        missing = _missing_reason(self.state)
        results = Results(ItemError(missing, "batch-missing") if r is None else r for r in results)
        if self.succeeded or partial:
            return results
        total = len(results)
        what = {
            FAILED: ("failed", "Check that the model can run batch jobs (`%gemini models`) and submit again."),
            CANCELLED: ("was cancelled", "Submit the items without a result again to finish them."),
            EXPIRED: ("expired: it did not finish within 48 hours",
                      "Submit the items without a result again, perhaps as smaller jobs."),
        }.get(self.state, (f"ended {_word(self.state)}", "Submit it again."))
        kept_text = f" {kept} of {total} results were kept (in error.results)." if kept else " No results were kept."
        raise BatchJobError(f"Batch job {self.id} {what[0]}.{kept_text}", what[1], job=self, results=results)

    def _lines(self) -> list[dict]:
        """Result lines as dicts: {"key"|"metadata", "response"|"error"} (responses
        stay JSON-shaped dicts for file lines, SDK objects for inlined ones)."""
        dest = getattr(self.batch, "dest", None)
        file_name = getattr(dest, "file_name", None)
        inlined = getattr(dest, "inlined_responses", None)
        if file_name:
            return self._download(file_name)
        if inlined is not None:
            return inlined_lines(inlined)
        if self.succeeded:
            raise ResultsUnavailable(f"Batch job {self.id} succeeded but names no results.",
                                     "Try again later: %gemini batch-status " + self.id)
        return []

    def _download(self, file_name: str) -> list[dict]:
        client = _client(self.connection)
        try:
            data = client.files.download(file=file_name)
        except Exception as exc:
            error = explain(exc, _context(self.connection))
            raise ResultsUnavailable(
                f"The results of batch job {self.id} ({file_name}) could not be downloaded: {error.message}",
                "Results are kept for some weeks after a job ends, for keys of the project that ran it. "
                f"Try again: %gemini batch-status {self.id}.",
            ) from exc
        lines, skipped = result_lines(data)
        for number in skipped:
            note(f"Batch job {self.id}: line {number} of its results is not JSON; skipped.", "warning")
        return lines


def _word(state: str) -> str:
    """'running' for JOB_STATE_RUNNING."""
    return state.removeprefix("JOB_STATE_").lower().replace("_", " ")


def _missing_reason(state: str) -> str:
    if state == SUCCEEDED:
        return "The batch job returned no result for this item."
    return f"No result: the batch job {_word(state)} before answering this item."


def _print_state(job: Job) -> None:
    print(f"Batch job {job.id}: {job.state}")


# -- collecting -------------------------------------------------------------------------------


def _collect(job: Job) -> Results:
    """A finished job's results, with a one-line summary; a job that ended without
    succeeding returns what it answered, with a warning, or raises BatchJobError
    when it answered nothing."""
    try:
        results = job.results()
    except BatchJobError as error:
        if not any(not isinstance(r, ItemError) for r in error.results):
            raise
        note(str(error), "warning")
        return error.results
    failed = sum(isinstance(r, ItemError) for r in results)
    print(f"{len(results) - failed} of {len(results)} results"
          + (f", {failed} failed (their places hold the error)" if failed else "") + ".")
    return results


def run(requests: list, connection, *, model: str | None = None, display_name: str | None = None,
        inline_limit: int = INLINE_LIMIT, poll: float | None = None, timeout: float | None = None,
        progress: Callable[[Job], None] | None = None) -> Results:
    """Submit a job, wait for it and return its results aligned with `requests`
    (what `gemini_magic.batch(..., mode="api")` does). Ctrl-C or `timeout` stop the
    waiting, not the job: the JobNotDone error names the id to collect it by."""
    job = submit(requests, connection, model=model, display_name=display_name, inline_limit=inline_limit)
    job.wait(poll=poll, timeout=timeout, progress=progress)
    return _collect(job)


# -- %gemini batch-status ID --------------------------------------------------------------


def job_status(connection, job_id: str):
    """For `%gemini batch-status ID`: print the job's state; once it has ended, return
    its results (aligned by key, as text), so a later kernel collects them. A job that
    failed, was cancelled or expired returns what it answered, with a warning, or
    raises BatchJobError when it answered nothing."""
    job = Job.attach(job_id, connection)
    name = f" ({job.display_name})" if job.display_name else ""
    model = f", model {job.model}" if job.model else ""
    print(f"Batch job {job.id}{name}: {job.state}{model}")
    if not job.done:
        print(f"Not finished yet: run %gemini batch-status {job.id} again later.")
        return None
    return _collect(job)

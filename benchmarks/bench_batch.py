"""Batch throughput under a per-minute rate limit: gemini_magic.batch() against the
seed document's asyncio.gather pattern, on the same rate-limited server.

Run from the repository root (no key, no network):

    python benchmarks/bench_batch.py           # 2 runs of each, about a minute
    python benchmarks/bench_batch.py --quick   # 1 run of 60 items: checks the script

The issue: "on the local server configured with a per-minute limit, a 200-item batch
reaches at least 95% of that limit with zero 429 responses." A minute is shortened to
a window of a few seconds (`--window`, default 3 s, with `--limit` 30 requests in it),
so 200 items take about 20 s instead of 7 minutes: the server's window and the
limiter's are the same length. tests/fake_gemini runs in its own process (this script
with --serve), enforcing the limit as Gemini does: over it, a 429 with RetryInfo and a
QuotaFailure. The real google-genai SDK talks HTTP to it, never patched. Figures are
printed, never asserted; benchmarks/README.md says what each one means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from bench_core import FAKE_KEY, MODEL, REPO, Results, facts, load_average, say, use_environment

ITEMS = 200
LIMIT = 30  # requests per window, on the server and in the limiter
WINDOW = 3.0  # seconds: the shortened "minute"
TARGET = 0.95  # of the limit, in steady state
CITIES = ["Lima", "Oslo", "Nairobi", "Hanoi", "Quito", "Tunis", "Riga", "Perth", "Dakar", "Sucre"]


# -- the server process -------------------------------------------------------------------------


def serve(limit: int, window: float) -> int:
    """The fake server with a rate limit, in this process; commands on stdin, one per line:
    `stats` prints a JSON line (429s, admission times), `reset` forgets them, EOF stops."""
    from tests.fake_gemini import FakeGemini
    from tests.fake_gemini.server import _HTTPServer

    # socketserver's listen backlog is 5: the baseline's hundreds of simultaneous
    # connections would then fail to connect at all, and never be counted as 429s.
    # The real API accepts them; so does this server process.
    _HTTPServer.request_queue_size = 1024
    server = FakeGemini()
    admitted: list[float] = []
    lock = threading.Lock()

    def responder(request):
        # Called only for requests the rate limit let through: their arrival times.
        with lock:
            admitted.append(time.monotonic())
        return None  # the echo

    rejected: list[float] = []
    over_limit = server._over_rate_limit

    def limited():  # measurement only: when each 429 was answered
        answer = over_limit()
        if answer is not None:
            with lock:
                rejected.append(time.monotonic())
        return answer

    server._over_rate_limit = limited

    def configure() -> None:
        server.reset()
        server.rate_limit, server.rate_window = limit, window
        server.responder = responder
        with lock:
            admitted.clear()
            rejected.clear()

    configure()
    server.start()
    print(f"URL={server.url}", flush=True)
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "stats":
                generate = [r for r in server.requests if r.action in ("generateContent", "streamGenerateContent")]
                with lock:
                    times, refused = list(admitted), list(rejected)
                print(json.dumps({"rejected": server.rejected, "generate": len(generate), "admitted": times,
                                  "refused": refused, "errors": len(server.errors)}), flush=True)
            elif command == "reset":
                configure()
                print("{}", flush=True)
    finally:
        server.stop()
    return 0


class LimitedServer:
    """This script with --serve, in its own process (its work does not compete for our GIL)."""

    def __init__(self, limit: int, window: float):
        self.args = ["--serve", "--limit", str(limit), "--window", str(window)]
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def __enter__(self) -> LimitedServer:
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *self.args], cwd=REPO,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("URL="):
            raise RuntimeError(f"fake server did not start: {line!r}")
        self.url = line.removeprefix("URL=")
        return self

    def _ask(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def stats(self) -> dict:
        return self._ask("stats")

    def reset(self) -> None:
        self._ask("reset")

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        self.proc.stdin.close()  # EOF: the server stops
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


# -- one run of each side -----------------------------------------------------------------------


@dataclass
class Run:
    name: str
    items: int
    answered: int
    failed: int
    seconds: float
    rejected: int  # 429s the server answered
    sent: int  # generate requests the server received (retries included)
    admitted: list[float] = field(default_factory=list)  # server arrival times, sorted
    slots: list[float] = field(default_factory=list)  # ours: when the limiter let a request go
    refused: list[float] = field(default_factory=list)  # when the server answered 429
    error_kinds: dict = field(default_factory=dict)


def prompts(run: int, count: int) -> list[str]:
    # Different in every run, so no run is answered from an earlier one's session cache.
    return [f"Run {run}, question {i}: one fact about {CITIES[i % len(CITIES)]}." for i in range(count)]


class Ours:
    """gemini_magic.batch in an InteractiveShell with the extension loaded, as in a notebook."""

    def __init__(self, limit: int, window: float):
        from IPython.core.interactiveshell import InteractiveShell
        from traitlets.config import Config

        config = Config()
        config.HistoryManager.enabled = False
        self.shell = InteractiveShell.instance(config=config)
        self.limit, self.window = limit, window

    def run(self, number: int, count: int, server: LimitedServer) -> Run:
        import gemini_magic
        from gemini_magic.batches import ItemError

        shell = self.shell
        # A fresh extension for every run: a new connection (cold HTTP pool) and a new
        # limiter, as in a kernel's first batch.
        if gemini_magic._magics is not None:
            shell.run_line_magic("unload_ext", "gemini_magic")
        shell.run_line_magic("load_ext", "gemini_magic")
        shell.run_line_magic("config", "GeminiMagics.quota_tier = 'free'")
        # The server's figure for the model; no daily quota (200 items > Flash's 20 a day).
        limits = {MODEL: {"rpm": self.limit, "rpd": None}}
        shell.run_line_magic("config", f"GeminiMagics.rate_limits = {limits!r}")
        magics = gemini_magic._magics
        magics.engine  # noqa: B018  (makes the limiter)
        limiter = magics.connection.limiter
        limiter.window = self.window  # the shortened minute, the server's
        slots: list[float] = []
        acquire = limiter.acquire

        def observed(model, tokens=0):  # measurement only: when each slot was granted
            granted = acquire(model, tokens)
            slots.append(time.monotonic())
            return granted

        limiter.acquire = observed
        progress = io.StringIO()
        started = time.perf_counter()
        with contextlib.redirect_stderr(progress):  # the progress lines
            results = gemini_magic.batch("{item}", prompts(number, count), model=MODEL)
        seconds = time.perf_counter() - started
        errors = [r for r in results if isinstance(r, ItemError)]
        stats = server.stats()
        kinds: dict[str, int] = {}
        for error in errors:
            kinds[error.kind] = kinds.get(error.kind, 0) + 1
        return Run("ours", count, sum(1 for r in results if r and isinstance(r, str)), len(errors), seconds,
                   stats["rejected"], stats["generate"], sorted(stats["admitted"]), slots=sorted(slots),
                   refused=sorted(stats["refused"]), error_kinds=kinds)


def baseline(number: int, count: int, url: str, server: LimitedServer) -> Run:
    """The seed document's pattern with the raw SDK: every prompt at once, gathered.
    (The seed's own code has no return_exceptions, so its first 429 would raise and lose
    every answer; return_exceptions=True lets us count what came back.)"""
    from google import genai

    async def batch_generate(items: list[str]):
        client = genai.Client(api_key=FAKE_KEY, http_options=genai.types.HttpOptions(base_url=url))
        try:
            tasks = [client.aio.models.generate_content(model=MODEL, contents=p) for p in items]
            return await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await client.aio.aclose()

    started = time.perf_counter()
    responses = asyncio.run(batch_generate(prompts(number, count)))
    seconds = time.perf_counter() - started
    kinds: dict[str, int] = {}
    answered = 0
    for response in responses:
        if isinstance(response, BaseException):
            code = getattr(response, "code", None)
            kind = f"{code} {type(response).__name__}" if code else type(response).__name__
            kinds[kind] = kinds.get(kind, 0) + 1
        elif response.text:
            answered += 1
    stats = server.stats()
    return Run("baseline", count, answered, count - answered, seconds, stats["rejected"], stats["generate"],
               sorted(stats["admitted"]), refused=sorted(stats["refused"]), error_kinds=kinds)


# -- figures ------------------------------------------------------------------------------------


def steady_rate(admitted: list[float], limit: int, window: float) -> float | None:
    """Requests per window in steady state: from the first request of the second window's
    worth (index `limit`) to the first of the last whole one (index k*limit), so neither
    the free first burst nor a partial last window counts. None when too few got through."""
    last = (len(admitted) - 1) // limit * limit
    if len(admitted) <= limit or last <= limit:
        return None
    return (last - limit) / (admitted[last] - admitted[limit]) * window


def per_window(times: list[float], window: float, start: float | None = None) -> list[int]:
    """Events in consecutive windows from `start` (default: the first event)."""
    if not times:
        return []
    start = times[0] if start is None else start
    counts = [0] * (int((times[-1] - start) / window) + 1)
    for t in times:
        counts[int((t - start) / window)] += 1
    return counts


def busiest_window(admitted: list[float], window: float) -> int:
    """The most admissions in any sliding window (the server never allows more than its limit)."""
    best, start = 0, 0
    for end, t in enumerate(admitted):
        while t - admitted[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def first_window_lags(run: Run, limit: int) -> list[float]:
    """ms from the limiter granting each of the first window's slots to the server receiving
    the request (k-th slot against k-th arrival; both are the system's monotonic clock).
    The first window's requests are all admitted, so the two lists line up there."""
    count = min(limit, len(run.slots), len(run.admitted))
    return [(run.admitted[k] - run.slots[k]) * 1000 for k in range(count)]


def describe(run: Run, limit: int, window: float) -> None:
    rate = steady_rate(run.admitted, limit, window)
    shown = f"{rate:.1f}/window ({rate / limit:.0%})" if rate is not None else "n/a"
    say(f"  {run.name:<8} {run.answered}/{run.items} answered, {run.failed} in error {run.error_kinds or ''}; "
        f"{run.seconds:.2f} s; server: {run.sent} requests, {run.rejected} answered 429; steady state {shown}; "
        f"busiest window {busiest_window(run.admitted, window)}")
    say(f"           admitted per window: {per_window(run.admitted, window)}")
    if run.refused and run.admitted:
        say(f"           429s per window:      {per_window(run.refused, window, run.admitted[0])}")
    lags = first_window_lags(run, limit)
    if lags:
        say(f"           first window, limiter slot -> server arrival: median {statistics.median(lags):.0f} ms, "
            f"max {max(lags):.0f} ms (travel the limiter must not count as free quota)")


def summarize(results: Results, ours: list[Run], base: list[Run], limit: int, window: float, items: int) -> None:
    def med(values):
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    n = len(ours)
    ours_rate = med([steady_rate(r.admitted, limit, window) for r in ours])
    base_rate = med([steady_rate(r.admitted, limit, window) for r in base])
    floor = (items - 1) // limit * window  # the last request cannot go before this
    results.add(f"Steady-state throughput, requests per {window:g} s window (limit {limit}; median of {n})",
                f"{ours_rate:.1f} ({ours_rate / limit:.0%})" if ours_rate else "n/a",
                f"{base_rate:.1f}" if base_rate else
                f"n/a: {med([r.answered for r in base]):.0f} answered in the first window, then nothing",
                f">= {TARGET:.0%} of {limit}", None if ours_rate is None else ours_rate >= TARGET * limit)
    results.add(f"429 responses seen by the server ({items}-item batch, median of {n})",
                f"{med([r.rejected for r in ours]):.0f} (runs: {', '.join(str(r.rejected) for r in ours)})",
                f"{med([r.rejected for r in base]):.0f}", "0", all(r.rejected == 0 for r in ours))
    results.add(f"Items that ended in error (of {items})",
                f"{med([r.failed for r in ours]):.0f}", f"{med([r.failed for r in base]):.0f}", "0",
                all(r.failed == 0 for r in ours))
    results.add(f"Answered per window over the whole batch (answered / elapsed x {window:g} s)",
                f"{med([r.answered / r.seconds * window for r in ours]):.1f} "
                f"({med([r.seconds for r in ours]):.1f} s for {items})",
                f"{med([r.answered for r in base]):.0f} answered in {med([r.seconds for r in base]):.2f} s, "
                f"{med([r.failed for r in base]):.0f} lost",
                "-", None)
    results.add(f"Total time for {items} items", f"{med([r.seconds for r in ours]):.1f} s",
                f"{med([r.seconds for r in base]):.2f} s (most items failed)",
                f"floor {floor:g} s at {limit} per {window:g} s", None)


def print_table(results: Results, elapsed: float, load_before: str, limit: int, window: float, items: int) -> None:
    say("\n## Results\n")
    say("| figure | ours: gemini_magic.batch | baseline: asyncio.gather, raw SDK | target | met |")
    say("|---|---|---|---|---|")
    for row in results.rows:
        met = {True: "yes", False: "**no**", None: "-"}[row.met]
        say(f"| {row.figure} | {row.ours} | {row.baseline} | {row.target} | {met} |")
    say("")
    say(f"- Server: tests/fake_gemini in its own process, {limit} generate requests per {window:g} s sliding "
        f"window (a shortened minute), else 429 + RetryInfo; the limiter's window set to the same {window:g} s.")
    say(f"- Ours: gemini_magic.batch over {items} prompts, default concurrency (8), quota tier free with "
        f"rate_limits {{model: {{rpm: {limit}}}}}, a fresh extension per run. Baseline: "
        f"asyncio.gather of client.aio.models.generate_content, one per prompt, SDK defaults (no retry).")
    for line in facts(load_before):
        say(f"- {line}")
    say(f"- Whole benchmark: {elapsed:.0f} s; runs alternated, a full window of quiet between runs.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 run of 60 items: checks the script works")
    parser.add_argument("--runs", type=int, default=2, help="runs of each side (2)")
    parser.add_argument("--items", type=int, default=ITEMS)
    parser.add_argument("--limit", type=int, default=LIMIT, help="requests per window, server and limiter")
    parser.add_argument("--window", type=float, default=WINDOW, help="seconds: the shortened minute")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args.limit, args.window)
    runs, items = (1, 60) if args.quick else (args.runs, args.items)
    started = time.perf_counter()
    load_before = load_average()
    results = Results()
    ours: list[Run] = []
    base: list[Run] = []
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp, LimitedServer(args.limit, args.window) as server:
        use_environment(server.url, str(Path(tmp) / "ipython"))
        import os

        os.environ["GEMINI_MAGIC_DATA_DIR"] = str(Path(tmp) / "data")  # usage counts: not the user's
        os.environ.pop("GEMINI_MAGIC_QUOTA", None)
        say(f"Fake Gemini server (own process) at {server.url}: {args.limit} requests per {args.window:g} s; "
            f"{runs} run(s) of each side, {items} items" + (" (QUICK: checks the script)" if args.quick else ""))
        side = Ours(args.limit, args.window)
        number = 0
        for i in range(runs):
            for name in ("ours", "baseline") if i % 2 == 0 else ("baseline", "ours"):
                number += 1
                time.sleep(args.window * 1.1)  # the server's window empties
                server.reset()
                try:
                    if name == "ours":
                        ours.append(side.run(number, items, server))
                        describe(ours[-1], args.limit, args.window)
                    else:
                        base.append(baseline(number, items, server.url, server))
                        describe(base[-1], args.limit, args.window)
                except Exception:
                    failures.append(f"{name} run {i + 1}")
                    traceback.print_exc()
    if ours and base:
        summarize(results, ours, base, args.limit, args.window, items)
    print_table(results, time.perf_counter() - started, load_before, args.limit, args.window, items)
    if failures:
        say(f"\nCrashed: {', '.join(failures)} (tracebacks above)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

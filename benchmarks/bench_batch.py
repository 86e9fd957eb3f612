"""Batches with the default settings: gemini_magic.batch() against the raw SDK, on a
server with no limit and on one enforcing a per-minute limit.

Run from the repository root (no key, no network):

    python benchmarks/bench_batch.py           # the full run, about 2 minutes
    python benchmarks/bench_batch.py --quick   # 1 run of each, fewer items: checks the script

Three figures, each against a baseline measured in the same run (benchmarks/README.md
says what each one means):

1. Default settings (quota tier `auto`, nothing learned), 40 items, a server with no
   limit answering in 0.2 s: batch time against the raw SDK doing the same 40 requests
   in a ThreadPoolExecutor of the same concurrency (8). Pacing must cost nothing here.
2. Default settings, 200 items, a server allowing 30 requests per 3 s window (a
   shortened minute: it stands for 30 requests a minute; the limiter's window is set to
   the same 3 s): 429s in all, 429s after the limiter first learned the limit, and the
   steady-state throughput, against the seed guide's asyncio.gather over the raw SDK.
3. Quota tier `free` with rate_limits {model: {rpm: 30}}, the same server: 0 429s.

tests/fake_gemini runs in its own process (this script with --serve); the real
google-genai SDK talks HTTP to it, never patched. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bench_core import FAKE_KEY, MODEL, Results, ServedScript, facts, load_average, say, spread, use_environment

ITEMS = 200  # figures 2 and 3
OPEN_ITEMS = 40  # figure 1
CONCURRENCY = 8  # gemini_magic.batch's default, and the raw SDK's pool in figure 1
LATENCY = 0.2  # s: how long the server takes to answer, in figure 1
LIMIT = 30  # requests per window, on the server (and, for figure 3, in rate_limits)
WINDOW = 3.0  # seconds: the shortened "minute"
TARGET = 0.95  # of the limit, in steady state
RATIO_TARGET = 1.2  # figure 1: ours / raw SDK
CITIES = ["Lima", "Oslo", "Nairobi", "Hanoi", "Quito", "Tunis", "Riga", "Perth", "Dakar", "Sucre"]


# -- the server process -------------------------------------------------------------------------


def serve() -> int:
    """The fake server, in this process; commands on stdin, one per line:
    `config {"limit": 30 | null, "window": 3.0, "hang": 0.2}` resets it with these settings,
    `stats` prints a JSON line (429s and their times, admission times), EOF stops.
    Times are time.monotonic(): CLOCK_MONOTONIC, the same clock in every process on Linux."""
    from tests.fake_gemini import FakeGemini
    from tests.fake_gemini.server import Reply, _HTTPServer

    # The baseline of figure 2 opens 200 connections at once: a larger listen backlog,
    # so that they all reach the server and are counted (the real API accepts them).
    _HTTPServer.request_queue_size = 1024
    server = FakeGemini()
    admitted: list[float] = []
    lock = threading.Lock()
    settings = {"hang": 0.0}

    def responder(request):
        # Called only for requests the rate limit let through: their arrival times.
        with lock:
            admitted.append(time.monotonic())
        hang = settings["hang"]
        return Reply(text="Echo: " + request.last_user_text(), hang=hang) if hang else None

    def configure(limit: int | None, window: float, hang: float) -> None:
        server.reset()  # also clears server.rejected and server.rejections
        server.rate_limit, server.rate_window = limit, window
        settings["hang"] = hang
        server.responder = responder
        with lock:
            admitted.clear()

    configure(None, 60.0, 0.0)
    server.start()
    print(f"URL={server.url}", flush=True)
    try:
        for line in sys.stdin:
            command, _, argument = line.strip().partition(" ")
            if command == "stats":
                generate = [r for r in server.requests if r.action in ("generateContent", "streamGenerateContent")]
                with lock:
                    times = list(admitted)
                print(json.dumps({"rejected": server.rejected, "generate": len(generate), "admitted": times,
                                  "refused": list(server.rejections), "errors": len(server.errors)}), flush=True)
            elif command == "config":
                settings_ = json.loads(argument)
                configure(settings_["limit"], settings_["window"], settings_["hang"])
                print("{}", flush=True)
    finally:
        server.stop()
    return 0


class BenchServer(ServedScript):
    """This script's server, with a request limit per window and a log of what it admitted."""

    def __init__(self) -> None:
        super().__init__(__file__)
        self.window = 60.0

    def configure(self, limit: int | None, window: float, hang: float) -> None:
        """Reset the server (log, 429 count, admissions) with these settings."""
        self.window = window
        self.ask("config " + json.dumps({"limit": limit, "window": window, "hang": hang}))

    def stats(self) -> dict:
        return self.ask("stats")


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
    refused: list[float] = field(default_factory=list)  # when the server answered 429, sorted
    error_kinds: dict = field(default_factory=dict)
    # Ours only (the limiter, in this process):
    tier: str = ""
    slots: list[float] = field(default_factory=list)  # when the limiter let each request go
    refused_slots: list[float] = field(default_factory=list)  # when it let go those answered 429
    first_learned: float | None = None  # limiter.first_learned
    learned: str = ""  # what it learned, in words
    waited: float = 0.0  # limiter.waited: seconds threads spent waiting for a slot

    @property
    def after_learning(self) -> int:
        """429s the server answered after the limiter first learned the limit."""
        if self.first_learned is None:
            return 0
        return sum(1 for t in self.refused if t > self.first_learned)

    @property
    def sent_after_learning(self) -> int:
        """429s to requests the limiter let go after it first learned the limit."""
        if self.first_learned is None:
            return 0
        return sum(1 for t in self.refused_slots if t > self.first_learned)


def prompts(run: int, count: int) -> list[str]:
    # Different in every run, so no run is answered from an earlier one's session cache.
    return [f"Run {run}, question {i}: one fact about {CITIES[i % len(CITIES)]}." for i in range(count)]


def error_kind(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    return f"{code} {type(exc).__name__}" if code else type(exc).__name__


class Ours:
    """gemini_magic.batch in an InteractiveShell with the extension loaded, as in a notebook."""

    def __init__(self, workdir: Path):
        from IPython.core.interactiveshell import InteractiveShell
        from traitlets.config import Config

        config = Config()
        config.HistoryManager.enabled = False
        self.shell = InteractiveShell.instance(config=config)
        self.workdir = workdir

    def run(self, number: int, count: int, server: BenchServer, *, free_limit: int | None = None) -> Run:
        """One batch with a fresh extension (a new connection with a cold HTTP pool, a new
        limiter) and a fresh, empty data folder (no limit learned by an earlier run), as in
        a kernel's first batch. Default settings, unless `free_limit`: tier free with that rpm."""
        import gemini_magic
        from gemini_magic.batches import ItemError

        os.environ["GEMINI_MAGIC_DATA_DIR"] = str(self.workdir / f"data-{number}")
        os.environ.pop("GEMINI_MAGIC_QUOTA", None)
        shell = self.shell
        if gemini_magic._magics is not None:
            shell.run_line_magic("unload_ext", "gemini_magic")
        shell.run_line_magic("load_ext", "gemini_magic")
        magics = gemini_magic._magics
        if free_limit is not None:
            # Set on the instance, not with %config (which would stay in the shell's
            # config and change the defaults of the later runs). No daily quota here:
            # 200 items are more than Flash's 20 a day on the free tier.
            magics.rate_limits = {MODEL: {"rpm": free_limit, "rpd": None}}
            magics.quota_tier = "free"
        magics.engine  # noqa: B018  (makes the limiter)
        limiter = magics.connection.limiter
        limiter.window = server.window  # the shortened minute, the server's
        slots: list[float] = []
        refused_slots: list[float] = []
        acquire, release = limiter.acquire, limiter.release

        # Measurement only: when each slot was granted, and which were given back after
        # a 429 (release) while still holding their grant time (confirm never ran).
        def observed_acquire(model, tokens=0):
            slot = acquire(model, tokens)
            slots.append(time.monotonic())
            return slot

        def observed_release(slot):
            if slot is not None:
                refused_slots.append(slot.time)
            release(slot)

        limiter.acquire, limiter.release = observed_acquire, observed_release
        progress = io.StringIO()
        started = time.perf_counter()
        with contextlib.redirect_stderr(progress):  # the progress lines
            results = gemini_magic.batch("{item}", prompts(number, count), model=MODEL,
                                         concurrency=CONCURRENCY)
        seconds = time.perf_counter() - started
        errors = [r for r in results if isinstance(r, ItemError)]
        stats = server.stats()
        kinds: dict[str, int] = {}
        for error in errors:
            kinds[error.kind] = kinds.get(error.kind, 0) + 1
        learned = "; ".join(f"{s.value} {s.metric} a {s.window}" for s in limiter.learned.all())
        return Run("ours", count, sum(1 for r in results if r and isinstance(r, str)), len(errors), seconds,
                   stats["rejected"], stats["generate"], sorted(stats["admitted"]), sorted(stats["refused"]),
                   kinds, tier=limiter.tier, slots=sorted(slots), refused_slots=sorted(refused_slots),
                   first_learned=limiter.first_learned, learned=learned, waited=limiter.waited)


def raw_pool(number: int, count: int, server: BenchServer) -> Run:
    """The raw SDK, the same requests from a ThreadPoolExecutor of the same concurrency."""
    from google import genai

    items = prompts(number, count)
    started = time.perf_counter()
    client = genai.Client(api_key=FAKE_KEY, http_options=genai.types.HttpOptions(base_url=server.url))

    def one(prompt: str):
        try:
            return client.models.generate_content(model=MODEL, contents=prompt)
        except Exception as exc:  # counted below
            return exc

    with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
        responses = list(pool.map(one, items))
    seconds = time.perf_counter() - started
    client.close()
    return _baseline_run("raw SDK", count, responses, seconds, server)


def gathered(number: int, count: int, server: BenchServer) -> Run:
    """The seed guide's pattern with the raw SDK: every prompt at once, gathered.
    (The seed's own code has no return_exceptions, so its first 429 would raise and lose
    every answer; return_exceptions=True lets us count what came back.)"""
    from google import genai

    async def batch_generate(items: list[str]):
        client = genai.Client(api_key=FAKE_KEY, http_options=genai.types.HttpOptions(base_url=server.url))
        try:
            tasks = [client.aio.models.generate_content(model=MODEL, contents=p) for p in items]
            return await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await client.aio.aclose()

    started = time.perf_counter()
    responses = asyncio.run(batch_generate(prompts(number, count)))
    return _baseline_run("gather", count, responses, time.perf_counter() - started, server)


def _baseline_run(name: str, count: int, responses: list, seconds: float, server: BenchServer) -> Run:
    kinds: dict[str, int] = {}
    answered = 0
    for response in responses:
        if isinstance(response, BaseException):
            kinds[error_kind(response)] = kinds.get(error_kind(response), 0) + 1
        elif response.text:
            answered += 1
    stats = server.stats()
    return Run(name, count, answered, count - answered, seconds, stats["rejected"], stats["generate"],
               sorted(stats["admitted"]), sorted(stats["refused"]), kinds)


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


def rounds(refused: list[float], gap: float) -> list[int]:
    """429s grouped into rounds: a round ends where no 429 came for `gap` seconds."""
    groups: list[int] = []
    for i, t in enumerate(refused):
        if i == 0 or t - refused[i - 1] > gap:
            groups.append(0)
        groups[-1] += 1
    return groups


def describe(run: Run, limit: int | None, window: float) -> None:
    head = f"  {run.name:<8} {run.answered}/{run.items} answered, {run.failed} in error {run.error_kinds or ''}; " \
           f"{run.seconds:.2f} s; server: {run.sent} requests, {run.rejected} answered 429"
    if limit is None:
        if run.tier:
            head += f"; tier {run.tier}, limiter waits {run.waited:.2f} s"
        say(head)
        return
    rate = steady_rate(run.admitted, limit, window)
    shown = f"{rate:.1f}/window ({rate / limit:.0%})" if rate is not None else "n/a"
    say(f"{head}; steady state {shown}; busiest window {busiest_window(run.admitted, window)}")
    say(f"           admitted per window: {per_window(run.admitted, window)}")
    if run.refused and run.admitted:
        say(f"           429s per window:     {per_window(run.refused, window, run.admitted[0])}; "
            f"rounds (gap > {window / 10:g} s): {rounds(run.refused, window / 10)}")
    if run.tier:
        learned = "nothing" if run.first_learned is None else \
            f"{run.learned or '?'} at +{run.first_learned - run.admitted[0]:.2f} s"
        say(f"           tier {run.tier}; limiter learned {learned}; 429s after that: {run.after_learning} "
            f"(to requests sent after it: {run.sent_after_learning}); threads waited {run.waited:.1f} s in all")


def med(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def runs_of(values: list) -> str:
    return ", ".join(str(v) for v in values)


def summarize_open(results: Results, ours: list[Run], raw: list[Run], items: int) -> None:
    n = len(ours)
    ratios = [o.seconds / r.seconds for o, r in zip(ours, raw, strict=False)]  # paired: round i of each
    ours_s, raw_s = [r.seconds for r in ours], [r.seconds for r in raw]
    ratio = med(ours_s) / med(raw_s)
    say(f"  ours s:    {spread(ours_s, '{:.3f}')}")
    say(f"  raw SDK s: {spread(raw_s, '{:.3f}')}")
    say(f"  ours / raw SDK, paired by round: {spread(ratios, '{:.2f}')}; limiter waits in ours: "
        f"{runs_of([round(r.waited, 2) for r in ours])} s; 429s: {sum(r.rejected for r in ours + raw)}")
    results.add(f"1. Default settings, {items} items, no server limit, {LATENCY:g} s per answer: batch time "
                f"(median of {n} [min-max])",
                f"{med(ours_s):.2f} s [{min(ours_s):.2f}-{max(ours_s):.2f}] ({ratio:.2f}x)",
                f"{med(raw_s):.2f} s [{min(raw_s):.2f}-{max(raw_s):.2f}] (raw SDK, {CONCURRENCY} threads)",
                f"<= {RATIO_TARGET:g}x", ratio <= RATIO_TARGET)


def summarize_limited(results: Results, label: str, ours: list[Run], base: list[Run], limit: int, window: float,
                      items: int, *, learning: bool) -> None:
    n = len(ours)
    minute = f"{limit} per {window:g} s = {limit} a minute"
    ours_rate = med([steady_rate(r.admitted, limit, window) for r in ours])
    base_rate = med([steady_rate(r.admitted, limit, window) for r in base])
    base_429 = f"{med([r.rejected for r in base]):.0f} (gather, runs: {runs_of([r.rejected for r in base])})"
    if learning:
        results.add(f"{label}, {items} items, limit {minute}: 429s in all (median of {n})",
                    f"{med([r.rejected for r in ours]):.0f} (runs: {runs_of([r.rejected for r in ours])})",
                    base_429, f"<= {CONCURRENCY} (one round)", all(r.rejected <= CONCURRENCY for r in ours))
        results.add(f"{label}: 429s after the limiter first learned the limit (server time > first_learned)",
                    f"{med([r.after_learning for r in ours]):.0f} (runs: {runs_of([r.after_learning for r in ours])}; "
                    f"to requests sent after it: {runs_of([r.sent_after_learning for r in ours])})",
                    "-", f"<= {CONCURRENCY} in flight, then 0",
                    all(r.sent_after_learning == 0 and r.after_learning <= CONCURRENCY for r in ours))
    else:
        results.add(f"{label}, {items} items, limit {minute}: 429s in all (median of {n})",
                    f"{med([r.rejected for r in ours]):.0f} (runs: {runs_of([r.rejected for r in ours])})",
                    base_429, "0", all(r.rejected == 0 for r in ours))
    results.add(f"{label}: steady-state throughput, requests per {window:g} s window (median of {n})",
                f"{ours_rate:.1f} ({ours_rate / limit:.0%}; runs: "
                f"{runs_of([f'{steady_rate(r.admitted, limit, window):.1f}' for r in ours])})" if ours_rate else "n/a",
                f"{base_rate:.1f}" if base_rate else
                f"n/a: {med([r.answered for r in base]):.0f} answered in the first window, then nothing",
                f">= {TARGET:.0%} of {limit}", None if ours_rate is None else ours_rate >= TARGET * limit)
    floor = (items - 1) // limit * window  # the last request cannot go before this
    results.add(f"{label}: items in error; total time",
                f"{med([r.failed for r in ours]):.0f}; {med([r.seconds for r in ours]):.1f} s",
                f"{med([r.failed for r in base]):.0f} lost; {med([r.seconds for r in base]):.2f} s",
                f"0; floor {floor:g} s", all(r.failed == 0 for r in ours))


def print_table(results: Results, elapsed: float, load_before: str, args, hang: float) -> None:
    say("\n## Results\n")
    say("| figure | ours: gemini_magic.batch | baseline: raw SDK | target | met |")
    say("|---|---|---|---|---|")
    for row in results.rows:
        met = {True: "yes", False: "**no**", None: "-"}[row.met]
        say(f"| {row.figure} | {row.ours} | {row.baseline} | {row.target} | {met} |")
    say("")
    say(f"- Server: tests/fake_gemini in its own process. Figure 1: no limit, every answer after {LATENCY:g} s. "
        f"Figures 2-3: {args.limit} generate requests per {args.window:g} s sliding window (a shortened minute: "
        f"it stands for {args.limit} requests a minute), else a 429 with QuotaFailure and RetryInfo; answers after "
        f"{hang * 1000:.0f} ms ({LATENCY:g} s scaled like the minute); the limiter's window set to {args.window:g} s.")
    say(f"- Ours: gemini_magic.batch, concurrency {CONCURRENCY}, a fresh extension and an empty data folder per run. "
        "Figures 1-2: default settings (GEMINI_MAGIC_QUOTA unset: tier auto, nothing learned). Figure 3: tier "
        f"free with rate_limits {{model: {{rpm: {args.limit}}}}}.")
    say(f"- Baselines: figure 1, client.models.generate_content in a ThreadPoolExecutor({CONCURRENCY}); figures "
        "2-3, the seed guide's asyncio.gather of client.aio.models.generate_content (SDK defaults, no retry).")
    for line in facts(load_before):
        say(f"- {line}")
    say(f"- Whole benchmark: {elapsed:.0f} s; runs alternated, a full window of quiet between limited runs.")


# -- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 run of each, fewer items: checks the script")
    parser.add_argument("--runs", type=int, default=2, help="runs of each side in figures 2 and 3 (2)")
    parser.add_argument("--open-runs", type=int, default=7, help="runs of each side in figure 1 (7)")
    parser.add_argument("--items", type=int, default=ITEMS, help="items in figures 2 and 3")
    parser.add_argument("--limit", type=int, default=LIMIT, help="requests per window on the server")
    parser.add_argument("--window", type=float, default=WINDOW, help="seconds: the shortened minute")
    parser.add_argument("--hang", type=float, default=None,
                        help=f"s before each answer in figures 2-3 (default {LATENCY:g} s x window / 60 s)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve()
    runs, open_runs, items = (1, 1, 70) if args.quick else (args.runs, args.open_runs, args.items)
    hang = LATENCY * args.window / 60 if args.hang is None else args.hang
    started = time.perf_counter()
    load_before = load_average()
    results = Results()
    failures: list[str] = []
    counter = iter(range(1, 1_000_000))  # run numbers: every run's prompts differ

    def attempt(name: str, step):
        try:
            return step()
        except Exception:
            failures.append(name)
            traceback.print_exc()
            return None

    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp, BenchServer() as server:
        use_environment(server.url, Path(tmp))
        say(f"Fake Gemini server (own process) at {server.url}" + (" (QUICK: checks the script)" if args.quick else ""))
        side = Ours(Path(tmp))

        # 1. No limit: pacing must cost nothing.
        say(f"\n[1] Default settings, {OPEN_ITEMS} items, server with no limit answering in {LATENCY:g} s: "
            f"{open_runs} run(s) of each, alternated (after one discarded warm-up of each)")
        server.configure(None, 60.0, LATENCY)
        ours: list[Run] = []
        raw: list[Run] = []
        attempt("warm-up", lambda: (side.run(next(counter), OPEN_ITEMS, server),
                                    raw_pool(next(counter), OPEN_ITEMS, server)))
        for i in range(open_runs):
            for name in ("ours", "raw") if i % 2 == 0 else ("raw", "ours"):
                server.configure(None, 60.0, LATENCY)
                run = attempt(f"1. {name} run {i + 1}",
                              lambda name=name: side.run(next(counter), OPEN_ITEMS, server) if name == "ours"
                              else raw_pool(next(counter), OPEN_ITEMS, server))
                if run is not None:
                    (ours if name == "ours" else raw).append(run)
                    describe(run, None, 60.0)
        if ours and raw:
            summarize_open(results, ours, raw, OPEN_ITEMS)

        # 2 and 3. A per-minute limit (shortened).
        for label, free in (("2. Default settings (tier auto)", None), ("3. Tier free + rate_limits", args.limit)):
            say(f"\n[{label[0]}] {label[3:]}, {items} items, server allowing {args.limit} requests per "
                f"{args.window:g} s (stands for {args.limit} a minute), answers after {hang * 1000:.0f} ms; "
                f"{runs} run(s) of each, alternated")
            ours, base = [], []
            for i in range(runs):
                for name in ("ours", "gather") if i % 2 == 0 else ("gather", "ours"):
                    if free is not None and name == "gather" and i > 0:
                        continue  # the same baseline as figure 2: once is enough
                    time.sleep(args.window * 1.1)  # the server's window empties
                    server.configure(args.limit, args.window, hang)
                    run = attempt(f"{label[0]}. {name} run {i + 1}",
                                  lambda name=name, free=free: side.run(next(counter), items, server, free_limit=free)
                                  if name == "ours" else gathered(next(counter), items, server))
                    if run is not None:
                        (ours if name == "ours" else base).append(run)
                        describe(run, args.limit, args.window)
            if ours and base:
                summarize_limited(results, label, ours, base, args.limit, args.window, items, learning=free is None)
    print_table(results, time.perf_counter() - started, load_before, args, hang)
    if failures:
        say(f"\nCrashed: {', '.join(failures)} (tracebacks above)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

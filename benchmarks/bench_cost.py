"""What context caching saves, and what a dry run costs in time.

Run from the repository root (no key, no network):

    python benchmarks/bench_cost.py           # about 20 seconds
    python benchmarks/bench_cost.py --quick   # fewer repeats: checks the script

Two figures, each against a baseline from the same run (benchmarks/README.md says what
each one means):

1. Ten questions about one large document (50,000 words; the test server counts a
   token a word, as its countTokens and usage agree): input tokens billed at the full
   rate, and the cost at gemini-2.5-flash's paid-tier price, asking with the document
   attached each time (the baseline) and with it in a context cache. The cached run pays
   the cache's creation at the full input rate (an upper bound: Google bills creation
   as input), an hour of storage, and each question's cached tokens at the cached rate.
   Tokens are the server's own counts (usageMetadata), priced by gemini_magic.costs.
2. `gemini_magic.count()` (a dry run: the total, the pieces, the model's limit) against
   the raw SDK's single `models.count_tokens` call for the same contents: wall time.

The test server (tests/fake_gemini) runs in this process; the real google-genai SDK talks
HTTP to it, never patched. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_core import MODEL, Results, load_average, print_table, say, spread, use_environment  # noqa: E402

WORDS = 50_000
QUESTIONS = 10


def document() -> str:
    return " ".join(f"clause{i % 997} of section {i // 500}: the tenant keeps the premises tidy." for i in
                    range(WORDS // 10))


def bench_caching(results: Results, server) -> None:
    import gemini_magic
    from gemini_magic.costs import cost_of, money, price_for
    from tests.fake_gemini import Reply

    server.responder = lambda request: Reply(text="Section 3 says the tenant keeps the premises tidy.")
    doc = document()
    questions = [f"Question {i}: what does section {i} say?" for i in range(QUESTIONS)]
    usage_plain = []
    for q in questions:
        answer = gemini_magic.ask(f"{doc}\n\n{q}", model=MODEL, stream=False, interpolate=False)
        answer.read()
        usage_plain.append(answer.usage)
    cost_plain = sum(cost_of(u, MODEL).total for u in usage_plain)
    tokens_plain = sum(u["prompt_tokens"] for u in usage_plain)

    server.cache_min_tokens = 1024
    info = gemini_magic.create_cache("bench-doc", doc, model=MODEL, interpolate=False, ttl="1h")
    price = price_for(MODEL)
    create_cost = info.tokens * price.input[0] / 1e6  # upper bound: creation billed as input
    storage = info.tokens * price.cache_storage_per_hour / 1e6
    usage_cached = []
    for q in questions:
        answer = gemini_magic.ask(q, cache="bench-doc", stream=False)
        answer.read()
        usage_cached.append(answer.usage)
    cost_cached = create_cost + storage + sum(cost_of(u, MODEL).total for u in usage_cached)
    full_rate_cached = info.tokens + sum(u["prompt_tokens"] - u.get("cached_tokens", 0) for u in usage_cached)
    served_from_cache = sum(u.get("cached_tokens", 0) for u in usage_cached)
    say(f"  document: {info.tokens:,} tokens (server-counted); cached tokens served: {served_from_cache:,}")
    results.add(f"1. {QUESTIONS} questions about one {info.tokens:,}-token document: input tokens at the full rate",
                f"{full_rate_cached:,} (cache)", f"{tokens_plain:,} (attached each time)", "-",
                None)
    results.add(f"1. the same: cost at {MODEL}'s paid-tier price (cache: creation, 1 h storage, questions)",
                f"{money(cost_cached)} ({cost_cached / cost_plain:.2f}x)", money(cost_plain), "< 1x",
                cost_cached < cost_plain)
    gemini_magic.current_session().caches.delete("bench-doc")


def bench_dry_run(results: Results, repeats: int) -> None:
    import gemini_magic
    from gemini_magic import client as sdk

    prompt = document()[:20_000] + "\n\nSummarise it."
    session = gemini_magic.current_session()
    client = session.connection.client()
    types = sdk.types()
    contents = [types.Content(role="user", parts=[types.Part(text=prompt)])]
    gemini_magic.count(prompt, model=MODEL, interpolate=False)  # warm: models.get once per session

    ours, raw = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        client.models.count_tokens(model=MODEL, contents=contents)
        raw.append(time.perf_counter() - started)
        started = time.perf_counter()
        gemini_magic.count(prompt, model=MODEL, interpolate=False)
        ours.append(time.perf_counter() - started)
    say(f"  raw count_tokens ms: {spread([r * 1000 for r in raw], '{:.2f}')}")
    say(f"  count() ms:          {spread([o * 1000 for o in ours], '{:.2f}')}")
    mine, base = statistics.median(ours), statistics.median(raw)
    results.add(f"2. dry run (gemini_magic.count: total + each piece), wall time (median of {repeats})",
                f"{mine * 1000:.2f} ms ({mine / base:.1f}x)", f"{base * 1000:.2f} ms (one raw count_tokens)",
                "-", None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args(argv)
    load_before = load_average()
    started = time.perf_counter()
    from tests.fake_gemini import FakeGemini

    results = Results()
    with tempfile.TemporaryDirectory() as tmp, FakeGemini() as server:
        use_environment(server.url, Path(tmp))
        say("Figure 1: ten questions about one large document, with and without a context cache")
        bench_caching(results, server)
        say("Figure 2: the time a dry run takes")
        bench_dry_run(results, 5 if args.quick else 40)
    print_table(results, time.perf_counter() - started, load_before, "baselines measured in the same run")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Embedding 10,000 short texts: gemini_magic.embed() against the raw SDK looping one
request per text, the way a notebook user without it would.

Run from the repository root (no key, no network):

    python benchmarks/bench_embed.py           # about a minute
    python benchmarks/bench_embed.py --quick   # 1,000 texts: checks the script

Both ask tests/fake_gemini (in this process) for 64-dimension vectors of the same
texts, through the real google-genai SDK over HTTP; ours sends 100 texts a request
(batchEmbedContents takes no more) with the default settings (quota tier auto, retries,
recording off). The figure is the wall time of each and their ratio, plus the number of
HTTP requests. Printed, never asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_core import Results, load_average, print_table, say, use_environment  # noqa: E402

MODEL = "gemini-embedding-001"
DIMENSIONS = 64


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1,000 texts")
    args = parser.parse_args(argv)
    count = 1_000 if args.quick else 10_000
    load_before = load_average()
    started = time.perf_counter()
    from tests.fake_gemini import FakeGemini

    results = Results()
    texts = [f"review {i}: the {['soup', 'bread', 'tea', 'cake'][i % 4]} was {['good', 'cold', 'fine'][i % 3]}"
             for i in range(count)]
    with tempfile.TemporaryDirectory() as tmp, FakeGemini() as server:
        use_environment(server.url, Path(tmp))
        import numpy as np

        import gemini_magic
        from gemini_magic import client as sdk

        session = gemini_magic.current_session()
        client = session.connection.client()
        types = sdk.types()
        config = types.EmbedContentConfig(output_dimensionality=DIMENSIONS)

        server.reset()
        begun = time.perf_counter()
        raw = []
        for text in texts:
            response = client.models.embed_content(model=MODEL, contents=text, config=config)
            raw.append(response.embeddings[0].values)
        raw_time = time.perf_counter() - begun
        raw_requests = len(server.requests)

        server.reset()
        begun = time.perf_counter()
        ours = gemini_magic.embed(texts, dimensions=DIMENSIONS)
        our_time = time.perf_counter() - begun
        our_requests = len(server.requests)

        same = np.allclose(ours, np.array(raw) / np.linalg.norm(np.array(raw), axis=1, keepdims=True), atol=1e-6)
        say(f"  raw SDK: {raw_time:.2f} s, {raw_requests:,} requests; embed(): {our_time:.2f} s, "
            f"{our_requests:,} requests; same vectors (normalised): {same}")
        results.add(f"{count:,} short texts, {DIMENSIONS}-dimension embeddings: wall time",
                    f"{our_time:.2f} s ({our_time / raw_time:.3f}x), {our_requests:,} requests",
                    f"{raw_time:.2f} s, {raw_requests:,} requests (raw SDK, one text a request)", "< 1x",
                    our_time < raw_time)
    print_table(results, time.perf_counter() - started, load_before, "baselines measured in the same run")
    return 0


if __name__ == "__main__":
    sys.exit(main())

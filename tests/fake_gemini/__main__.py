"""Run the fake Gemini server until killed.

    python -m tests.fake_gemini --port 0 --script rules.json [--chunk-delay 0.05] [--implicit-cache]

Prints ``URL=http://127.0.0.1:PORT`` on one line (flushed) once it is
listening, so a parent process can read the address.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .server import FakeGemini


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fake_gemini")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--script", help="JSON file with rules/default/chunk_delay")
    parser.add_argument(
        "--chunk-delay",
        type=float,
        default=None,
        help="seconds between streamed chunks (overrides the script's)",
    )
    parser.add_argument(
        "--valid-key",
        action="append",
        default=None,
        help="accept only this API key (repeatable); default accepts any key",
    )
    parser.add_argument("--implicit-cache", action="store_true",
                        help="report repeated prompt prefixes as cached, as Gemini 2.5+ does")
    parser.add_argument("--verbose", action="store_true", help="log requests to stderr")
    args = parser.parse_args(argv)

    server = FakeGemini(host=args.host, port=args.port, verbose=args.verbose, implicit_cache=args.implicit_cache)
    if args.script:
        server.load_script(args.script)
    if args.chunk_delay is not None:
        server.chunk_delay = args.chunk_delay
    if args.valid_key:
        server.valid_keys = set(args.valid_key)

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    server.start()
    print(f"URL={server.url}", flush=True)
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

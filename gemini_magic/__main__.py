"""Run notebooks with a record/replay mode set from outside:

    python -m gemini_magic run notebooks/*.ipynb              # offline, from recordings
    python -m gemini_magic run --mode record notebooks/*.ipynb   # refresh with a real key

Each notebook runs in a fresh kernel from its own folder, with GEMINI_MAGIC_MODE set,
so its `%gemini replay-or-record FILE` line picks the mode without the notebook being edited.
`record` saves the executed notebook in place (outputs and recording stay in step);
the other modes leave the file alone unless --inplace is given.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .client import MODE_ALIASES, MODE_VARIABLE, MODES, PATH_VARIABLE, mode_of


def run(paths: list[Path], mode: str, inplace: bool, timeout: int) -> int:
    try:
        import nbformat
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError
    except ImportError:
        print("Running notebooks needs nbclient: pip install nbclient", file=sys.stderr)
        return 2
    env = dict(os.environ)
    env[MODE_VARIABLE] = mode
    env.pop(PATH_VARIABLE, None)  # each notebook names its own recording
    failures = 0
    for path in paths:
        started = time.perf_counter()
        nb = nbformat.read(path, as_version=4)
        # No per-cell timestamps: a refreshed notebook then differs only where answers do.
        # No widget state either: it holds random model ids that change on every run.
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                                store_widget_state=False,
                                resources={"metadata": {"path": str(path.parent.resolve())}})
        try:
            client.execute(env=env)
        except CellExecutionError as exc:
            failures += 1
            print(f"FAILED {path} ({mode}): {exc.ename}: {exc.evalue}")
            continue
        cells = sum(1 for c in nb.cells if c.cell_type == "code")
        print(f"ok     {path} ({mode}): {cells} code cells in {time.perf_counter() - started:.1f} s")
        if inplace or mode == "record":
            nbformat.write(nb, path)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gemini-magic", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    runner = commands.add_parser("run", help="execute notebooks in a record/replay mode")
    runner.add_argument("notebooks", nargs="+", type=Path)
    runner.add_argument("--mode", choices=MODES + tuple(MODE_ALIASES), default="replay",
                        help="replay (default, offline), replay-or-record, record (needs a key), live")
    runner.add_argument("--inplace", action="store_true", help="save the executed notebooks")
    runner.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.notebooks if not p.exists()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")
    return run(args.notebooks, mode_of(args.mode), args.inplace, args.timeout)


if __name__ == "__main__":
    sys.exit(main())

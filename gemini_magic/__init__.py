"""gemini-magic: Google Gemini in Jupyter and IPython.

    %load_ext gemini_magic

    %%gemini -m gemini-2.5-flash
    Explain list comprehensions in two sentences.

Loading registers the magics and starts importing google-genai in the background;
nothing here imports the SDK in the foreground.
"""

from __future__ import annotations

import os

__version__ = "0.1.0"

__all__ = ["batch", "conversation", "conversations", "last_batch", "load_ipython_extension", "tool",
           "unload_ipython_extension"]

_magics = None


def __getattr__(name: str):
    # `gemini_magic.tool` without importing tools.py (and pydantic) at load time.
    if name == "tool":
        from .tools import tool

        return tool
    raise AttributeError(f"module 'gemini_magic' has no attribute {name!r}")


def _loaded():
    if _magics is None:
        raise RuntimeError("Load the extension first: %load_ext gemini_magic")
    return _magics


def conversation(name: str):
    """The conversation NAME (as used by `%%gemini --chat NAME`), made if new.

    >>> chat = gemini_magic.conversation("story")
    >>> chat.messages()     # [{"role": "user", "text": ...}, {"role": "model", ...}]
    """
    return _loaded().conversations.get_or_create(name)


def batch(template: str, rows, *, column: str = "answer", concurrency: int = 8, mode: str = "local", **options):
    """Ask once per item of `rows` (a list, Series or DataFrame); results come back
    aligned: a list, a Series, or the DataFrame with a new `column`. A failed item
    holds a falsy `ItemError` in its place; the batch goes on.

    >>> gemini_magic.batch("Capital of {item}?", ["France", "Peru"], model="gemini-2.5-flash-lite")
    ['Paris.', 'Lima.']
    >>> gemini_magic.batch("One-line summary: {text}", df)   # df with a 'text' column
    ... # a copy of df with an 'answer' column

    `options` are the cell's: model, temperature, top_p, top_k, max_tokens, seed,
    system, json=True, schema=<pydantic model, dataclass or TypedDict>. A scalar item
    is `{item}` in the template; every item also has `{index}`. An interrupted batch
    keeps its finished results: `gemini_magic.last_batch().resume()` runs the rest.

    `mode="api"` sends the prompts as one Gemini Batch API job instead (half the
    price, no per-minute limits, for thousands of prompts): the job id is printed, the
    call waits for the job and returns its results aligned the same way; a later
    kernel collects a job with `%gemini batch-status ID`.
    """
    if mode not in ("local", "api"):
        raise ValueError("mode is 'local' (requests from here) or 'api' (a Batch API job)")
    from .batches import local as batching
    from .schema import Schema

    magics = _loaded()
    args = magics._parse("")
    for name, value in options.items():
        if not hasattr(args, name):
            raise TypeError(f"batch() got an unexpected option {name!r}")
        setattr(args, name, value)
    if options.get("schema") is not None and not isinstance(options["schema"], str):
        args.schema = Schema(options["schema"], getattr(options["schema"], "__name__", "schema"))
    requests, like = batching.build_requests(template, rows, magics.shell.user_ns, magics.request_factory(args))
    if mode == "api":
        from .batches import api as batch_api

        results = batch_api.run(requests, magics.connection, model=args.model or magics.model)
        return batching._shape(list(results), like, column)
    run = batching.run(requests, magics.engine, concurrency=concurrency, progress=batching.progress_for(magics.shell))
    batching.last_run = run
    if run.interrupted or run.errors:
        import sys

        print(batching.summary(run), file=sys.stderr)
    return batching._shape(run.results, like, column)


def last_batch():
    """The last batch run (`.results`, `.errors`, `.resume()`)."""
    from .batches import local as batching

    return batching.last_run


def conversations() -> dict:
    """Every conversation of this shell, by name."""
    return dict(_loaded().conversations)


def load_ipython_extension(ipython) -> None:
    global _magics
    from .client import MODE_VARIABLE, PATH_VARIABLE, warm_up
    from .magics import GeminiMagics

    warm_up()
    _magics = GeminiMagics(shell=ipython)
    ipython.register_magics(_magics)
    if _magics not in ipython.configurables:
        ipython.configurables.append(_magics)
    ipython.events.register("pre_run_cell", _magics.pre_run_cell)
    ipython.events.register("post_run_cell", _magics.post_run_cell)
    # A whole notebook can run recorded from outside (CI, nbval) without editing it.
    mode = os.environ.get(MODE_VARIABLE, "").strip().lower()
    path = os.environ.get(PATH_VARIABLE)
    if mode and mode != "live" and path:
        _magics._set_recording(mode, path)


def unload_ipython_extension(ipython) -> None:
    global _magics
    if _magics is None:
        return
    for kind in ("line", "cell"):
        ipython.magics_manager.magics[kind].pop("gemini", None)
    ipython.magics_manager.registry.pop(type(_magics).__name__, None)
    if _magics in ipython.configurables:
        ipython.configurables.remove(_magics)
    for event in ("pre_run_cell", "post_run_cell"):
        try:
            ipython.events.unregister(event, getattr(_magics, event))
        except ValueError:  # never registered
            pass
    _magics.connection.close()
    _magics = None

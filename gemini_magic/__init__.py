"""gemini-magic: Google Gemini in Jupyter and IPython.

    %load_ext gemini_magic

    %%gemini -m gemini-2.5-flash
    Explain list comprehensions in two sentences.

The same from Python, in a notebook or any program (the options are the cell's):

    import gemini_magic
    answer = gemini_magic.ask("Explain list comprehensions", model="gemini-2.5-flash")
    print(answer.read())                      # or: for event in answer: ...

Loading registers the magics and starts importing google-genai in the background;
nothing here imports the SDK in the foreground.
"""

from __future__ import annotations

import os

__version__ = "0.1.0"

__all__ = ["ask", "batch", "conversation", "count", "conversations", "create_cache", "current_session", "embed",
           "last_batch", "last_embedding", "list_caches", "load_ipython_extension", "stores", "tool",
           "unload_ipython_extension"]

_magics = None
_session = None  # the Python API's, outside IPython


def __getattr__(name: str):
    # `gemini_magic.tool` and `.events` without importing them (and pydantic) at load time.
    if name == "tool":
        from .tools import tool

        return tool
    if name in ("events", "errors"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'gemini_magic' has no attribute {name!r}")


def current_session():
    """The session requests go through: the loaded extension's (its settings are
    `%config GeminiMagics.*`), else one of this program's, with the default settings
    and the environment's key, endpoint and quota tier."""
    global _session
    if _magics is not None:
        return _magics.session
    if _session is None:
        from .session import Session

        _session = Session()
    return _session


def ask(prompt: str, *, namespace: dict | None = None, **options):
    """Ask Gemini: an Answer, sent when it is read. Iterate it for events (TextDelta,
    ToolUpdate, Finished, ...) or `.read()` it whole (raises its error if it failed).

    >>> answer = gemini_magic.ask("Capital of Peru?", model="gemini-2.5-flash-lite", temperature=0)
    >>> answer.read()
    'Lima.'
    >>> gemini_magic.ask("Describe {img}", namespace={"img": image}).read()

    Options are the cell's, as keyword arguments: model, temperature, top_p, top_k,
    max_tokens, seed, stop, thinking, system, json, schema, stream, interpolate, tools
    (names or functions), approve, max_steps, search, code_exec, url_context, image,
    downscale, thoughts, chat (a conversation's name), context, error. {fields} are
    filled from `namespace` (in a notebook with the extension loaded, its variables).
    """
    active = current_session()
    if namespace is None and _magics is not None:
        namespace = _magics.shell.user_ns
    return active.ask(prompt, namespace=namespace, **options)


def count(prompt: str, *, namespace: dict | None = None, **options):
    """Count a request without sending it (countTokens only): a `counting.Count` with
    the total, the pieces (history, text, each attachment, system, tools), whether it fits
    the model's input limit, and the input cost at the paid-tier price.

    >>> gemini_magic.count("Summarise {report}", image=["scan.pdf"]).total
    """
    from .counting import count_request, price
    from .options import Options

    active = current_session()
    if namespace is None and _magics is not None:
        namespace = _magics.shell.user_ns
    given = Options.of(options, "count()")
    prepared = active.prepare(prompt, given, "ask", **({} if namespace is None else {"namespace": namespace}))
    return price(count_request(active.engine, prepared.request, cache=prepared.cache), active.engine,
                 prepared.request.config.get("service_tier"))


def create_cache(name: str, prompt: str = "", *, ttl: str | int | None = None, namespace: dict | None = None,
                 **options):
    """Cache a large context once (Gemini's explicit context caching), then ask about it
    many times with `cache=name` (or `%%gemini --cache NAME`): a `caches.CacheInfo`.

    >>> gemini_magic.create_cache("handbook", "The staff handbook:", image=["handbook.pdf"],
    ...                           system="Answer from the handbook only.", ttl="2h")
    >>> gemini_magic.ask("What does it say about leave?", cache="handbook").read()

    The context is built as a request is (the cell's options: image, context, system,
    tools, search, model ...); `ttl` is how long it lives (default GeminiMagics.cache_ttl).
    """
    from .options import Options
    from .settings import seconds_of

    active = current_session()
    if namespace is None and _magics is not None:
        namespace = _magics.shell.user_ns
    given = Options.of(options, "create_cache()")
    given.cache_create = name
    prepared = active.prepare(prompt, given, "cell",
                              **({} if namespace is None else {"namespace": namespace}))
    seconds = seconds_of("ttl", ttl if ttl is not None else active.settings.cache_ttl)
    return active.caches.create(name, prepared.request, seconds)


def list_caches() -> list:
    """The context caches alive for this key (`caches.CacheInfo`: name, model, tokens, expires)."""
    return current_session().caches.list()


def conversation(name: str):
    """The conversation NAME (as used by `%%gemini --chat NAME`), made if new.

    >>> chat = gemini_magic.conversation("story")
    >>> chat.messages()     # [{"role": "user", "text": ...}, {"role": "model", ...}]
    """
    return current_session().conversations.get_or_create(name)


def batch(template: str, rows, *, column: str = "answer", concurrency: int | None = None, mode: str = "local",
          namespace: dict | None = None, **options):
    """Ask once per item of `rows` (a list, Series or DataFrame); results come back
    aligned: a list, a Series, or the DataFrame with a new `column`. A failed item
    holds a falsy `ItemError` in its place; the batch goes on.

    >>> gemini_magic.batch("Capital of {item}?", ["France", "Peru"], model="gemini-2.5-flash-lite")
    ['Paris.', 'Lima.']
    >>> gemini_magic.batch("One-line summary: {text}", df)   # df with a 'text' column
    ... # a copy of df with an 'answer' column

    `options` are the cell's, as in `ask` (tools, search, image, schema=<class> ...);
    one that cannot apply to a batch (chat, thoughts) is refused, naming it. A scalar
    item is `{item}` in the template; every item also has `{index}`. An interrupted
    batch keeps its finished results: `gemini_magic.last_batch().resume()` runs the rest.

    `mode="api"` sends the prompts as one Gemini Batch API job instead (half the
    price, no per-minute limits, for thousands of prompts): the job id is printed, the
    call waits for the job and returns its results aligned the same way; a later
    kernel collects a job with `%gemini batch-status ID`.
    """
    from .batches import ask_many
    from .batches.local import summary
    from .options import Options, refusal

    given = Options.of(options, "batch()")
    refused = refusal(given, "batch")  # before the cell's own batch options are taken out
    if refused:
        from .requests import OptionError

        raise OptionError(refused, "Leave it out.")
    active = current_session()
    surroundings = {}
    progress = None
    if _magics is not None:
        from .render.progress import batch_progress

        surroundings = {"last_error": _magics.last_error, "progress": None}
        progress = batch_progress(_magics.shell) if mode != "api" else None
    if namespace is not None:
        surroundings["namespace"] = namespace
    results, run = ask_many(active, template, rows, given, mode=mode, column=column, concurrency=concurrency,
                            progress=progress, surroundings=surroundings)
    if run is not None and (run.interrupted or run.errors or given.usage):
        from .render.notes import note

        note(summary(run, usage=bool(given.usage)), "warning" if run.errors or run.interrupted else "note")
    return results


def embed(texts, *, model: str | None = None, task_type: str | None = None, dimensions: int | None = None,
          mode: str = "local", batch_size: int = 100):
    """Embeddings of a list, Series or one-column DataFrame of texts: a NumPy array with
    one row per text, in order (a row of NaN where a text was empty or failed).

    >>> vectors = gemini_magic.embed(df["review"], task_type="CLUSTERING", dimensions=256)

    `model` (gemini-embedding-001), `task_type` (RETRIEVAL_QUERY, RETRIEVAL_DOCUMENT,
    SEMANTIC_SIMILARITY, CLASSIFICATION, CLUSTERING, ...) and `dimensions` (the output
    size; shorter vectors are normalised) are Gemini's. Up to `batch_size` (100) texts go
    in one request, through the same limiter, retries and recording as every request.
    `mode="api"` sends them as one Batch API embeddings job. `last_embedding()` keeps the
    failures.
    """
    from .embeddings import embed as run
    from .render.notes import note

    progress = None
    if _magics is not None and mode == "local":
        from .render.progress import batch_progress

        progress = batch_progress(_magics.shell, "Gemini embed")
    vectors = run(current_session(), texts, model=model, task_type=task_type, dimensions=dimensions, mode=mode,
                  batch_size=batch_size, progress=progress)
    done = last_embedding()
    if done.errors or done.interrupted:
        note(done.summary(), "warning")
    return vectors


def last_embedding():
    """The last embed() call (`.vectors`, `.errors` by index, `.model`)."""
    from . import embeddings

    return embeddings.last_run


def stores():
    """Your File Search stores (file_search.Stores): `.create(name)`, `.add(name, paths)`,
    `.list()`, `.documents(name)`, `.remove(name, document)`, `.delete(name)`; ask one with
    `ask(..., store=name)` or `%%gemini --store NAME`."""
    return current_session().stores


def last_batch():
    """The last batch run (`.results`, `.errors`, `.resume()`)."""
    from . import batches

    return batches.last_run


def conversations() -> dict:
    """Every conversation of this session, by name."""
    return dict(current_session().conversations)


def _jupyter_labextension_paths() -> list[dict]:
    """Where the prebuilt JupyterLab extension is, for `jupyter labextension develop .`
    (a wheel installs it to share/jupyter/labextensions itself)."""
    return [{"src": "labextension", "dest": "gemini-magic-lab"}]


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
    _magics.frontend.hello(ipython)
    # A whole notebook can run recorded from outside (CI, nbval) without editing it.
    mode = os.environ.get(MODE_VARIABLE, "").strip().lower()
    path = os.environ.get(PATH_VARIABLE)
    if mode and mode != "live" and path:
        from .magics.commands.recording import set_recording

        set_recording(_magics, mode, path)


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
    _magics.close()
    _magics = None

"""One `%%gemini` cell: build the request (requests.py), stream the answer into the cell,
keep what the options ask for (`--out`, `-f code`), and fail the cell on an error."""

from __future__ import annotations

from ..errors import GeminiError
from ..options import Options


def ask(magics, options: Options, line: str, cell: str):
    session = magics.session
    settings = magics.settings()
    debug = options.debug or settings.debug
    try:
        recipe = session.recipe(options, "cell", **magics.surroundings())
        if options.agent:
            _check_can_ask(magics, recipe)
        key = magics.turn_key(line, cell)
        prepared = recipe.prepare(cell, key=key)
    except GeminiError as error:
        raise magics.fail(error, debug) from None
    from ..render import inserts, play, renderer_for
    from ..render.notes import note

    for text in prepared.notes:
        note(text, shell=magics.shell)

    if options.dry_run:
        return _dry_run(magics, options, prepared, debug)
    if options.cache_create:
        return _create_cache(magics, options, prepared, debug)
    renderer = renderer_for(magics.shell, fmt=prepared.fmt, footer=bool(options.usage or settings.usage),
                            interval=settings.update_interval)
    # -f code: the JupyterLab extension, when it answered our hello, puts the code in the
    # cell below (replacing its own earlier one); without it, IPython's set_next_input.
    by_kernel = not magics.frontend.inserts_cells
    if prepared.fmt == "code" and not magics._colab:
        renderer.insert = (key, by_kernel)
    answer = session.send(prepared)
    play(answer, renderer)
    done = answer.commit
    if done is not None and done.dropped:
        note(f"Chat {prepared.pending.conversation.name!r}: this cell's earlier turn was replaced, and the "
             f"{done.dropped} turn(s) after it were dropped.", shell=magics.shell)
    if options.out and (answer.text_parts or answer.parsed is not None or answer.other_parts):
        # A partial answer is stored too: nothing that arrived is lost.
        from ..media import answer_value

        magics.shell.user_ns[options.out] = answer_value(answer)
    if prepared.fmt == "code" and inserts(answer):
        _next_cell(magics, answer.text, by_kernel)
    if options.agent:
        _code_that_ran(magics, answer, key)
    if answer.error is not None:
        raise magics.fail(answer.error, debug) from None
    if answer.interrupted:
        raise magics.fail(GeminiError("Interrupted.", "The partial answer above is kept.")) from None


def _check_can_ask(magics, recipe) -> None:
    """Agent mode asks before running code; where the frontend cannot ask (nbclient,
    papermill: no stdin), the cell fails before anything is sent. The Toolbox refuses
    such a run anyway: this only saves a request that could not do what was asked."""
    toolbox = recipe.toolbox
    kernel = getattr(magics.shell, "kernel", None)
    if toolbox is None or toolbox.code_approve != "ask" or toolbox.approve == "never" or kernel is None:
        return
    if getattr(kernel, "_allow_stdin", True) is False:
        raise GeminiError("Agent mode asks before it runs code, and this frontend cannot ask (it has no input: "
                          "nbclient, papermill, a scheduled run).",
                          "If you trust what it may run, use --agent --approve auto.")


def _code_that_ran(magics, answer, key: str) -> None:
    """The code the agent ran, in the notebook: cells below where the JupyterLab
    extension can insert several (an answer that ran none removes the earlier ones),
    else one block to copy."""
    from IPython.display import display

    from ..render.code_cards import code_that_ran

    many = getattr(magics.frontend, "inserts_many", False)
    shown = code_that_ran(answer.tool_calls, key, many)
    if shown is not None:
        bundle, metadata = shown
        display(bundle, raw=True, metadata=metadata)


def _next_cell(magics, text: str, by_kernel: bool) -> None:
    from ..render.markdown import extract_code
    from ..render.notes import note

    if magics._colab:
        note("Colab cannot insert cells from a kernel: copy the code above.", shell=magics.shell)
    elif by_kernel:
        # Whether the front end acts on the payload is unknown (nbclient, papermill and
        # nbval ignore it), so nothing claims a cell was made.
        magics.shell.set_next_input(extract_code(text)[0], replace=False)
    else:
        note("The code is in the cell below.", shell=magics.shell)


def _dry_run(magics, options: Options, prepared, debug: bool):
    """--dry-run: count the request (countTokens only), show the counts and the cost."""
    from ..counting import count_request, price

    engine = magics.session.engine
    try:
        count = price(count_request(engine, prepared.request, cache=prepared.cache), engine,
                      prepared.request.config.get("service_tier"))
    except GeminiError as error:
        raise magics.fail(error, debug) from None
    if options.out:
        magics.shell.user_ns[options.out] = count
    from IPython.display import display

    display(count.bundle(), raw=True)


def _create_cache(magics, options: Options, prepared, debug: bool):
    """--cache-create NAME: cache the cell's context (nothing is asked); -o keeps its CacheInfo."""
    from ..magics.commands.caches import created
    from ..render.notes import note
    from ..settings import SettingError, seconds_of

    settings = magics.settings()
    try:
        ttl = seconds_of("--ttl", options.ttl if options.ttl is not None else settings.cache_ttl)
        info = magics.session.caches.create(options.cache_create, prepared.request, ttl)
    except SettingError as exc:
        raise magics.fail(GeminiError(str(exc), "For example: --ttl 30m, --ttl 2h.")) from None
    except GeminiError as error:
        raise magics.fail(error, debug) from None
    note(created(info, settings.prices), shell=magics.shell)
    if options.out:
        magics.shell.user_ns[options.out] = info

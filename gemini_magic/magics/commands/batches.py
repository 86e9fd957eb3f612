"""`%%gemini --over VAR` and `%gemini batch-status ID`: batches (batches/)."""

from __future__ import annotations

from ...errors import GeminiError


def over(magics, options, template: str):
    from ...batches import ask_many
    from ...batches.local import summary
    from ...render.progress import batch_progress

    namespace = magics.shell.user_ns
    if options.over not in namespace:
        raise magics.fail(GeminiError(f"--over: no variable named {options.over!r}.",
                                      "Name a list, a pandas Series or a DataFrame."))
    rows = namespace[options.over]
    if isinstance(rows, (str, bytes)) or not hasattr(rows, "__iter__"):
        raise magics.fail(GeminiError(f"--over {options.over}: a {type(rows).__name__} is not a list of items.",
                                      "Name a list, a pandas Series or a DataFrame."))
    key = magics.batch_key(f"--over {options.over}", template)
    mode = "api" if options.batch_api else "local"
    surroundings = magics.surroundings()
    surroundings.pop("ask_approval")  # nobody answers a batch's questions (--approve ask is refused)
    try:
        results, run = ask_many(magics.session, template, rows, options, mode=mode,
                                progress=None if mode == "api" else batch_progress(magics.shell),
                                previous=magics.batch_runs.get(key), surroundings=surroundings)
    except GeminiError as error:
        raise magics.fail(error, options.debug) from None
    if run is not None:
        magics.batch_runs[key] = run
        from ...render.notes import note

        note(summary(run, usage=bool(options.usage or magics.usage)),
             "warning" if run.errors or run.interrupted else "note", shell=magics.shell)
    if options.out:
        magics.shell.user_ns[options.out] = results
        return None
    return results


def status(magics, args):
    from ...batches.api import job_status

    return job_status(magics.connection, args[0])

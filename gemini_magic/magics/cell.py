"""One `%%gemini` cell: build the request (requests.py), stream the answer into the cell,
keep what the options ask for (`--out`, `-f code`), and fail the cell on an error."""

from __future__ import annotations

import sys

from ..errors import GeminiError
from ..options import Options


def ask(magics, options: Options, line: str, cell: str):
    session = magics.session
    settings = magics.settings()
    debug = options.debug or settings.debug
    try:
        recipe = session.recipe(options, "cell", **magics.surroundings())
        prepared = recipe.prepare(cell, key=magics.turn_key(line, cell))
    except GeminiError as error:
        raise magics.fail(error, debug) from None
    for note in prepared.notes:
        print(note, file=sys.stderr)
    from ..render import play, renderer_for

    renderer = renderer_for(magics.shell, fmt=prepared.fmt, footer=bool(options.usage or settings.usage),
                            interval=settings.update_interval)
    answer = session.send(prepared)
    play(answer, renderer)
    done = answer.commit
    if done is not None and done.dropped:
        print(f"Chat {prepared.pending.conversation.name!r}: this cell's earlier turn was replaced, and the "
              f"{done.dropped} turn(s) after it were dropped.", file=sys.stderr)
    if options.out and (answer.text_parts or answer.parsed is not None or answer.other_parts):
        # A partial answer is stored too: nothing that arrived is lost.
        from ..media import answer_value

        magics.shell.user_ns[options.out] = answer_value(answer)
    if prepared.fmt == "code" and answer.text_parts and answer.error is None:
        _next_cell(magics, answer.text)
    if answer.error is not None:
        raise magics.fail(answer.error, debug) from None
    if answer.interrupted:
        raise magics.fail(GeminiError("Interrupted.", "The partial answer above is kept.")) from None


def _next_cell(magics, text: str) -> None:
    from ..render.markdown import extract_code

    code, _ = extract_code(text)
    if magics._colab:
        print("Colab cannot insert cells from a kernel: copy the code above.", file=sys.stderr)
        return
    magics.shell.set_next_input(code, replace=False)
    print("The code is in a new cell below.", file=sys.stderr)

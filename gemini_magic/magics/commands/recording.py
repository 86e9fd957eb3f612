"""%gemini record, replay, replay-or-record, live and recording: record/replay
(transport/replay.py). `%gemini cache PATH` is replay-or-record's old name, kept working."""

from __future__ import annotations

import os

from IPython.core.error import UsageError

from ...client import MODE_VARIABLE, MODES, PATH_VARIABLE, mode_of
from ...errors import GeminiError


def record(magics, args) -> None:
    _choose(magics, "record", args[0])


def replay(magics, args) -> None:
    _choose(magics, "replay", args[0])


def replay_or_record(magics, args) -> None:
    _choose(magics, "replay-or-record", args[0])


def cache(magics, args) -> None:
    from ...render.notes import note

    note(f"%gemini cache is now called %gemini replay-or-record {args[0]} (\"cache\" now means Gemini's context "
         "caches: %gemini caches). The old name still works, for now.", shell=magics.shell)
    _choose(magics, "replay-or-record", args[0])


def live(magics, args) -> None:
    set_recording(magics, "live", None)


def status(magics, args) -> None:
    print(describe(magics))


def _choose(magics, mode: str, path: str) -> None:
    # CI and nbval set the mode from outside, so one notebook runs in replay there and
    # records with a key elsewhere, unedited.
    forced = os.environ.get(MODE_VARIABLE, "").strip().lower()
    if forced:
        try:
            mode = mode_of(forced)
        except ValueError:
            raise UsageError(f"{MODE_VARIABLE}={forced!r}: use one of {', '.join(MODES)}.") from None
    set_recording(magics, mode, os.environ.get(PATH_VARIABLE) or path)


def set_recording(magics, mode: str, path: str | None) -> None:
    try:
        magics.connection.set_recording(mode, os.path.abspath(os.path.expanduser(path)) if path else None)
    except (ValueError, OSError) as exc:
        raise GeminiError(f"Cannot use the recording {path}: {exc}", "Check the path and the file.") from exc


def describe(magics) -> str:
    connection = magics.connection
    if connection._transport is not None:
        return connection.transport.status()
    if connection.mode == "live":
        return "live: requests go to the API; nothing is recorded"
    return f"{connection.mode}: {connection.recording_path}"

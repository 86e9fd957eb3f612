"""%gemini record, replay, cache, live and recording: record/replay (transport/replay.py)."""

from __future__ import annotations

import os

from IPython.core.error import UsageError

from ...client import MODE_VARIABLE, MODES, PATH_VARIABLE
from ...errors import GeminiError


def record(magics, args) -> None:
    _choose(magics, "record", args[0])


def replay(magics, args) -> None:
    _choose(magics, "replay", args[0])


def cache(magics, args) -> None:
    _choose(magics, "cache", args[0])


def live(magics, args) -> None:
    set_recording(magics, "live", None)


def status(magics, args) -> None:
    print(describe(magics))


def _choose(magics, mode: str, path: str) -> None:
    # CI and nbval set the mode from outside, so one notebook runs in replay there and
    # records with a key elsewhere, unedited.
    forced = os.environ.get(MODE_VARIABLE, "").strip().lower()
    if forced:
        if forced not in MODES:
            raise UsageError(f"{MODE_VARIABLE}={forced!r}: use one of {', '.join(MODES)}.")
        mode = forced
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

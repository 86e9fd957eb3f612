"""%gemini help, version, models and config."""

from __future__ import annotations

import os


def help(magics, args) -> None:  # noqa: A001  (the command's name)
    from . import COMMANDS

    width = max(len(c.usage) for c in COMMANDS.values())
    lines = [f"  %gemini {c.usage.ljust(width)}  {c.help}" for c in COMMANDS.values()]
    print("Commands:\n" + "\n".join(lines))
    print("Prompts: %%gemini [options] in a cell; %%gemini? shows the options.")


def version(magics, args) -> None:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    from ... import __version__

    try:
        sdk_version = installed("google-genai")
    except PackageNotFoundError:
        sdk_version = "not installed"
    print(f"gemini-magic {__version__}, google-genai {sdk_version}")


def models(magics, args) -> None:
    from ...engine import can_generate

    rows = []
    for model in magics.engine.models():
        mark = "*" if can_generate(model) else " "
        limit = f"{model.input_token_limit:,}" if model.input_token_limit else ""
        rows.append((mark, (model.name or "").removeprefix("models/"), model.display_name or "", limit))
    width = max((len(r[1]) for r in rows), default=10)
    print(f"  {'model'.ljust(width)}  {'input tokens':>12}  name")
    for mark, name, display, limit in rows:
        print(f"{mark} {name.ljust(width)}  {limit:>12}  {display}")
    print("* can generate content (usable in %%gemini)")


def config(magics, args) -> None:
    from ...client import KEY_VARIABLES, find_api_key
    from .recording import describe

    lines = [f"  GeminiMagics.{name} = {getattr(magics, name)!r}" for name in sorted(magics.trait_names(config=True))]
    key_from = next((v for v in KEY_VARIABLES if os.environ.get(v)), None)
    key = f"from {key_from}" if key_from else ("found" if find_api_key() else "not set")
    connection = magics.connection
    endpoint = magics.base_url or os.environ.get("GOOGLE_GEMINI_BASE_URL") or "Google's default"
    if connection.use_vertex():
        project, location = connection.vertex_place()
        endpoint = magics.base_url or os.environ.get("GOOGLE_VERTEX_BASE_URL") or "Google's default"
        endpoint += (f" (Vertex AI, project {project}, {location}; ADC)" if project
                     else " (Vertex AI express mode, API key)")
    print("\n".join(lines))
    print(f"API key: {key}\nEndpoint: {endpoint}\nRecording: {describe(magics)}")

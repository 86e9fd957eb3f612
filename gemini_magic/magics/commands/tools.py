"""%gemini tools [F,G]: the declarations Gemini gets (tools.py)."""

from __future__ import annotations

import json


def tools(magics, args) -> None:
    from ...tools import resolve

    names = [n.strip() for n in ",".join(args).split(",") if n.strip()]
    bound = resolve(names, magics.shell.user_ns)
    if not bound:
        print("No tools: mark functions with @gemini_magic.tool, or name them: %gemini tools f,g")
        return
    for tool in bound:
        confirm = " (asks before each call)" if tool.confirm else ""
        print(f"{tool.name}{confirm}: {tool.description}")
        print("  " + json.dumps(tool.schema, indent=2, sort_keys=True).replace("\n", "\n  "))

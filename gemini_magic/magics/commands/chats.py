"""%gemini chat, chats, history, reset, save and load: conversations (history.py).

A conversation is one object per name for the whole shell: `reset` and `load`
change it in place, so a chat widget showing it (or a cell holding it) sees the
change instead of keeping an orphan copy.
"""

from __future__ import annotations

from IPython.core.error import UsageError

from ...errors import GeminiError


def chat(magics, args) -> None:
    name = args[0]
    if name.lower() == "off":
        magics.default_chat = None
        return
    magics.default_chat = name
    magics.conversations.get_or_create(name)


def chats(magics, args) -> None:
    conversations = magics.conversations
    if not conversations:
        print("No conversations yet: %%gemini --chat NAME starts one.")
        return
    width = max(len(n) for n in conversations)
    for name, conversation in conversations.items():
        mark = "*" if name == magics.default_chat else " "
        print(f"{mark} {name.ljust(width)}  {len(conversation):>3} turns  {conversation.tokens():>8,} tokens")
    if magics.default_chat:
        print("* the default chat of plain %%gemini cells")


def named(magics, command: str, args: list[str]):
    name = args[0] if args else magics.default_chat
    if name is None:
        raise UsageError(f"%gemini {command}: name a conversation (no default chat is set).")
    if name not in magics.conversations:
        known = ", ".join(magics.conversations) or "none yet"
        raise GeminiError(f"No conversation named {name!r}.", f"Conversations: {known}.")
    return magics.conversations[name]


def history(magics, args) -> None:
    from IPython.display import display

    from ...render.bundles import transcript_bundle

    display(transcript_bundle(named(magics, "history", args)), raw=True)


def reset(magics, args) -> None:
    named(magics, "reset", args).reset()


def save(magics, args) -> None:
    conversation = named(magics, "save", args[:1])
    path = args[1]
    try:
        conversation.save(path)
    except OSError as exc:
        raise GeminiError(f"Cannot save to {path}: {exc.strerror}.", "Check the path.") from exc


def load(magics, args) -> None:
    from ...history import Conversation

    name, path = args
    if path.lower().endswith(".ipynb"):
        _load_notebook(magics, name, path)
        return
    try:
        loaded = Conversation.load(path, name)
    except FileNotFoundError:
        raise GeminiError(f"No such file: {path}.", "Check the path.") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise GeminiError(f"{path} is not a saved conversation ({exc}).",
                          "Use a file written by %gemini save.") from None
    magics.conversations.get_or_create(name).replace_turns(loaded.turns)


def _load_notebook(magics, name: str, path: str) -> None:
    """The conversation NAME as saved in a notebook's outputs (notebook_file.py)."""
    from ...notebook_file import read, records, saved_turns

    try:
        notebook, origin = read(path=path)
    except FileNotFoundError:
        raise GeminiError(f"No such file: {path}.", "Check the path.") from None
    except (OSError, ValueError) as exc:
        raise GeminiError(f"{path} could not be read as a notebook ({exc}).", "Check the path.") from None
    saved = saved_turns(notebook, name, magics._cell_ids)
    if not saved.turns:
        found = sorted({r["conversation"] for r, _ in records(notebook) if isinstance(r.get("conversation"), str)})
        raise GeminiError(f"{path} holds no saved turns of chat {name!r}.",
                          f"Chats saved there: {', '.join(found)}." if found else
                          "Its outputs hold no chat turns: run its chat cells, then save it.")
    conversation = magics.conversations.get_or_create(name)
    conversation.replace_turns(saved.turns)
    conversation.origin, conversation.broken, conversation.announced = origin, saved.broken, False


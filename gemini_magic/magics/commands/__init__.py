"""`%gemini COMMAND ...`: one module per topic, arguments split like a shell's (quotes
keep a path with spaces whole: `%gemini save quiz "my chats/quiz.json"`).

Each command is `function(magics, args)` with a usage line, and takes a fixed
number of arguments (`arity`: (least, most)); a wrong count is a usage error showing
its usage line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from IPython.core.error import UsageError
from IPython.utils.process import arg_split

from ...errors import GeminiError


@dataclass(frozen=True)
class Command:
    usage: str  # "save NAME PATH"
    help: str
    module: str  # the module under commands/ that runs it
    function: str
    arity: tuple[int, int] = (0, 0)

    def run(self, magics, args: list[str]):
        least, most = self.arity
        if not least <= len(args) <= most:
            raise UsageError(f"Usage: %gemini {self.usage}")
        from importlib import import_module

        module = import_module(f"{__name__}.{self.module}")
        function: Callable = getattr(module, self.function)
        return function(magics, args)


COMMANDS: dict[str, Command] = {
    "models": Command("models", "list the models your key can use (marks those that generate content)", "info",
                      "models"),
    "config": Command("config", "show the settings in force", "info", "config"),
    "help": Command("help", "show this list", "info", "help"),
    "version": Command("version", "show the versions of gemini-magic and google-genai", "info", "version"),
    "record": Command("record PATH", "record every request into PATH (starts the file afresh)", "recording",
                      "record", (1, 1)),
    "replay": Command("replay PATH", "answer only from PATH; nothing goes to the network", "recording", "replay",
                      (1, 1)),
    "replay-or-record": Command("replay-or-record PATH", "replay what PATH holds, record what it does not",
                                "recording", "replay_or_record", (1, 1)),
    "cache": Command("cache PATH", "old name of replay-or-record (context caches are %gemini caches)", "recording",
                     "cache", (1, 1)),
    "live": Command("live", "stop recording or replaying", "recording", "live"),
    "recording": Command("recording", "show the record/replay mode and its file", "recording", "status"),
    "chat": Command("chat NAME", "make NAME the conversation of plain %%gemini cells ('off': single-turn cells "
                    "again)", "chats", "chat", (1, 1)),
    "chats": Command("chats", "list the conversations, with turn and token counts", "chats", "chats"),
    "history": Command("history [NAME]", "show a conversation (default: the current one)", "chats", "history",
                       (0, 1)),
    "reset": Command("reset [NAME]", "clear a conversation", "chats", "reset", (0, 1)),
    "save": Command("save NAME PATH", "save a conversation to a JSON file", "chats", "save", (2, 2)),
    "load": Command("load NAME PATH", "load a conversation from a JSON file", "chats", "load", (2, 2)),
    "explain": Command("explain [QUESTION]", "ask Gemini to explain the last error and suggest a fix", "explain",
                       "explain", (0, 100)),
    "tools": Command("tools [F,G]", "show the declarations Gemini gets for the @tool-marked functions (and F, G)",
                     "tools", "tools", (0, 100)),
    "usage": Command("usage", "today's requests and tokens per model at this endpoint, and the limits in force",
                     "quota", "usage"),
    "limits": Command("limits [forget]", "the rate limits in force: those Google stated in a 429 ('forget' clears "
                      "them)", "quota", "limits", (0, 1)),
    "caches": Command("caches", "the context caches alive for this key: name, model, tokens, expiry (make one with "
                      "%%gemini --cache-create NAME)", "caches", "caches"),
    "cache-extend": Command("cache-extend NAME DURATION", "keep context cache NAME for DURATION from now (30m, 2h, "
                            "1d)", "caches", "extend", (2, 2)),
    "cache-delete": Command("cache-delete NAME", "delete context cache NAME (its storage stops being billed)", "caches",
                            "delete", (1, 1)),
    "stores": Command("stores", "your File Search stores: name, documents, size", "stores", "stores"),
    "store-create": Command("store-create NAME", "make File Search store NAME (then store-add files to it)", "stores",
                            "create", (1, 1)),
    "store-add": Command("store-add NAME PATH...", "upload files or folders into store NAME and wait until indexed "
                         "(skips files already in it)", "stores", "add", (2, 1000)),
    "store-docs": Command("store-docs NAME", "the documents of store NAME, with their state", "stores", "documents",
                          (1, 1)),
    "store-remove": Command("store-remove NAME DOCUMENT", "remove a document from store NAME", "stores", "remove",
                            (2, 2)),
    "store-delete": Command("store-delete NAME", "delete store NAME and its documents", "stores", "delete", (1, 1)),
    "voices": Command("voices", "the voices of the speech models, for --voice", "speech", "voices"),
    "batch-status": Command("batch-status ID", "the state of a Gemini Batch API job (and its results, once done)",
                            "batches", "status", (1, 1)),
    "settings": Command("settings", "a panel of widgets for the model and its settings, bound to %%gemini cells",
                        "widgets", "settings"),
    "chat-ui": Command("chat-ui [NAME] [options]", "an interactive chat widget for conversation NAME (default: "
                       "chat); options as in a cell, e.g. --search", "widgets", "chat_ui", (0, 100)),
}


def run(magics, line: str):
    """Run `%gemini LINE`."""
    try:
        words = arg_split(line, posix=True)
    except ValueError as exc:  # an unclosed quote
        raise UsageError(f"Cannot read the command: {exc}.") from None
    if not words:
        words = ["help"]
    name, args = words[0].lower(), words[1:]
    command = COMMANDS.get(name)
    if command is None:
        raise UsageError(f"Unknown command {name!r}. Commands: {', '.join(COMMANDS)}. "
                         "A prompt goes in a %%gemini cell.")
    try:
        return command.run(magics, args)
    except GeminiError as error:
        raise magics.fail(error) from None

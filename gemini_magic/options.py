"""The options of a request, the same in every front end, and where each one applies.

One table (`OPTIONS`) is the source of the `%%gemini` flags and their `%%gemini?` help,
of the keyword arguments of `gemini_magic.ask()` and `batch()`, and of the chat
widget's options. Every option reaches the request in every front end, or that
front end refuses it with a message that names it (`refusal`): none is ever
silently dropped. Kept free of heavy imports: defining the magic reads it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

FORMATS = ("markdown", "text", "code", "json")
APPROVE_MODES = ("auto", "ask", "never")
THINKING_LEVELS = ("minimal", "low", "medium", "high")
TIERS = ("auto", "free", "paid", "off")  # quota tiers (transport/limits.py)
SERVICE_TIERS = ("standard", "flex", "priority")  # how a request is served and priced (costs.py)
MEDIA_RESOLUTIONS = ("low", "medium", "high")  # tokens per image/page/frame; a part may also say ultra_high
ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")  # image models' ImageConfig
IMAGE_SIZES = ("1K", "2K", "4K")
FRONT_ENDS = ("cell", "batch", "batch-api", "widget", "ask")
# The settings (settings.py's fields), named here so that the magic can check them when
# set without importing settings.py at load; a test keeps the two in step.
SETTING_NAMES = (
    "model", "temperature", "top_p", "top_k", "max_tokens", "seed", "stop", "thinking", "system", "format",
    "stream", "interpolate", "usage", "debug", "base_url", "api_version", "timeout", "vertexai", "project",
    "location", "proxy", "ca_bundle", "retry_attempts", "retry_max_wait", "update_interval", "max_image_side",
    "quota_tier", "rate_limits", "shared_rpm", "track_usage", "approve", "max_steps", "chat_token_budget",
    "summary_chars", "summary_items", "summary_rows", "service_tier", "media_resolution", "prices", "cache_ttl",
    "agent_approve",
)


class Option:
    """One option: its flags and argparse settings for the cell, and its help."""

    __slots__ = ("dest", "flags", "help", "argparse")

    def __init__(self, dest: str, flags: tuple[str, ...], help: str, argparse: dict):  # noqa: A002
        self.dest, self.flags, self.help, self.argparse = dest, flags, help, argparse


def _opt(dest: str, *flags: str, help: str, **argparse: Any) -> Option:
    return Option(dest, flags, help, argparse)


OPTIONS: tuple[Option, ...] = (
    _opt("model", "-m", "--model", help="Model id, with or without 'models/' (default: GeminiMagics.model)."),
    _opt("temperature", "-t", "--temperature", type=float, help="Sampling temperature, 0 to 2."),
    _opt("top_p", "--top-p", type=float, help="Nucleus sampling probability, 0 to 1."),
    _opt("top_k", "--top-k", type=int, help="Sample from the k most likely tokens."),
    _opt("max_tokens", "--max-tokens", type=int, help="Output token limit."),
    _opt("seed", "--seed", type=int, help="Seed for repeatable sampling."),
    _opt("stop", "--stop", action="append", metavar="TEXT", help="Stop sequence (repeatable)."),
    _opt("thinking", "--thinking", metavar="BUDGET|LEVEL",
         help="Thinking budget in tokens (0 off, -1 dynamic) or level: minimal, low, medium, high."),
    _opt("system", "-s", "--system", metavar="TEXT|VAR", help="System instruction, or the name of a str variable."),
    _opt("out", "-o", "--out", metavar="VAR", help="Store the answer in VAR (the parsed object with --json/--schema)."),
    _opt("format", "-f", "--format", choices=FORMATS,
         help="markdown (default), text, code (into the next cell), json."),
    _opt("json", "--json", action="store_true", help="Ask for JSON; --out stores the parsed value."),
    _opt("schema", "--schema", metavar="NAME", help="Structured output: a pydantic model, dataclass or TypedDict."),
    _opt("stream", "--no-stream", action="store_const", const=False, help="Wait for the whole answer, then show it."),
    _opt("interpolate", "--no-interpolate", action="store_const", const=False, help="Send {braces} as written."),
    _opt("tools", "--tools", metavar="F,G", help="Let Gemini call these notebook functions (and @tool-marked ones)."),
    _opt("approve", "--approve", choices=APPROVE_MODES,
         help="auto: run tool calls (default); ask: ask before each; never: run none."),
    _opt("max_steps", "--max-steps", type=int, metavar="N", help="Tool-call rounds before Gemini must answer (10)."),
    _opt("search", "--search", action="store_true", help="Ground the answer with Google Search, with citations."),
    _opt("code_exec", "--code-exec", action="store_true",
         help="Let Gemini write and run Python code on Google's side."),
    _opt("url_context", "--url-context", action="store_true", help="Let Gemini read the URLs named in the prompt."),
    _opt("image", "--image", action="append", metavar="X",
         help="Attach an image, PDF, audio, video or text: a variable, a file path or an http(s) URL (repeatable)."),
    _opt("downscale", "--no-downscale", action="store_const", const=False,
         help="Send images at full size (default: longer side 1536)."),
    _opt("thoughts", "--thoughts", action="store_true",
         help="Ask for the model's thought summaries (shown collapsed)."),
    _opt("over", "--over", metavar="VAR", help="Run the prompt once per item of a list, Series or DataFrame "
                                                "(fields of each row fill the template); see gemini_magic.batch."),
    _opt("column", "--column", metavar="NAME", help="With --over a DataFrame: the results' column (answer)."),
    _opt("batch_api", "--batch-api", action="store_true",
         help="With --over: send the prompts as one Gemini Batch API job (half price, no per-minute limits)."),
    _opt("concurrency", "--concurrency", type=int, metavar="N", help="With --over: requests in flight (8)."),
    _opt("chat", "-c", "--chat", metavar="NAME", help="Make this cell a turn of conversation NAME."),
    _opt("chat", "--no-chat", action="store_const", const=False,
         help="A single-turn cell, even with a default chat set."),
    _opt("context", "--context", action="append", metavar="VAR",
         help="Attach a summary of VAR (a DataFrame, function, ...) to the prompt (repeatable)."),
    _opt("error", "--error", action="store_true",
         help="Send the last error, its traceback and cell, asking for an explanation and a fix."),
    _opt("usage", "--usage", action="store_const", const=True,
         help="Add a footer with model, tokens, cost and finish reason."),
    _opt("dry_run", "--dry-run", action="store_true",
         help="Count the request's tokens (by part) and estimate its cost; send nothing but countTokens."),
    _opt("service_tier", "--service-tier", choices=SERVICE_TIERS,
         help="standard (default), flex (half price, slower, may be shed) or priority (dearer, fastest)."),
    _opt("media_resolution", "--media-resolution", choices=MEDIA_RESOLUTIONS,
         help="Tokens spent per image, PDF page or video frame; one attachment: --image high:FILE."),
    _opt("store", "--store", metavar="NAME[,NAME]",
         help="Answer from your documents in File Search store NAME (see the store-create command)."),
    _opt("maps", "--maps", action="store_true", help="Ground the answer in Google Maps, with the places as sources."),
    _opt("location", "--location", metavar="LAT,LNG|PLACE",
         help="Where the user is, for --maps (or --search): latitude,longitude, or a place name."),
    _opt("aspect_ratio", "--aspect-ratio", choices=ASPECT_RATIOS, help="Image models: the images' shape, e.g. 16:9."),
    _opt("image_size", "--image-size", choices=IMAGE_SIZES, help="Image models: 1K (default), 2K or 4K."),
    _opt("voice", "--voice", metavar="NAME|SPEAKER=NAME,...",
         help="Speech models: answer as audio in this voice, or one voice per speaker (Joe=Kore,Jane=Puck)."),
    _opt("cache", "--cache", metavar="NAME",
         help="Ask about the context cache NAME (made with --cache-create), with the model it was made for."),
    _opt("cache_create", "--cache-create", metavar="NAME",
         help="Cache this cell's context (text, --image files, -s, --tools) as NAME instead of asking."),
    _opt("ttl", "--ttl", metavar="DURATION",
         help="With --cache-create: how long the cache lives, e.g. 30m, 2h (GeminiMagics.cache_ttl, 1h)."),
    _opt("agent", "--agent", action="store_true",
         help="Agent mode: Gemini looks at your variables and runs Python in this kernel to answer, asking "
              "before each run (--approve auto: without asking)."),
    _opt("debug", "--debug", action="store_const", const=True, help="Show full tracebacks for errors."),
)

# What each front end cannot do, and why: an option given there is refused with this.
_DISPLAY = "it is a display option of a cell; the Python API returns the Answer for you to show"
_OVER_ONLY = "it goes with --over VAR"
_CREATE_ONLY = "it goes with --cache-create NAME"
REFUSED: dict[str, dict[str, str]] = {
    "cell": {"column": _OVER_ONLY, "batch_api": _OVER_ONLY, "concurrency": _OVER_ONLY},
    "batch": {
        "over": "batch() takes the rows as its second argument",
        "batch_api": "batch() takes mode='api'",
        "out": "batch() returns the results",
        "chat": "a batch's items are single-turn requests; ask in a loop to build a conversation",
        "interpolate": "a batch fills each item's {fields} into the template",
        "error": "--error explains the last error, once",
        "thoughts": "a batch keeps each answer's text, not its thoughts",
        "format": "a batch returns values, not a display",
        "debug": "a batch keeps each failure's message in its place (ItemError)",
        "cache_create": "create the cache in a cell first, then give the batch cache=NAME",
        "ttl": _CREATE_ONLY + ", in a cell",
        "agent": "agent mode runs code in this kernel one step at a time, with approval; ask in a cell",
    },
    "widget": {
        "over": "the chat widget asks one message at a time",
        "column": "the chat widget asks one message at a time",
        "batch_api": "the chat widget asks one message at a time",
        "concurrency": "the chat widget asks one message at a time",
        "out": "the widget keeps its answers in its conversation (chat.conversation)",
        "chat": "the widget's conversation is the name it was opened with",
        "error": "--error belongs in a cell, after the error",
        "format": "the widget shows Markdown",
        "debug": "the widget shows errors in its messages",
        "dry_run": "the chat's calculator button counts a message before it is sent (ChatWidget.count())",
        "cache_create": "create the cache in a cell, then open the chat with --cache NAME",
        "ttl": _CREATE_ONLY + ", in a cell",
    },
    "ask": {
        "over": "use gemini_magic.batch() for many prompts",
        "column": "use gemini_magic.batch() for many prompts",
        "batch_api": "use gemini_magic.batch(mode='api')",
        "concurrency": "use gemini_magic.batch() for many prompts",
        "out": _DISPLAY,
        "format": _DISPLAY,
        "usage": _DISPLAY + " (answer.usage)",
        "debug": "answer.read() raises the error itself, with its traceback (answer.error keeps it)",
        "error": "it explains IPython's last error: use %gemini explain in a cell",
        "dry_run": "use gemini_magic.count(prompt, ...) for the counts",
        "cache_create": "use gemini_magic.create_cache(name, prompt, ...)",
        "ttl": "use gemini_magic.create_cache(name, prompt, ttl=...)",
    },
}
REFUSED["batch-api"] = {
    **REFUSED["batch"],
    "tools": "a Batch API job runs on Google's side and cannot call notebook functions",
    "approve": "a Batch API job runs on Google's side and cannot call notebook functions",
    "max_steps": "a Batch API job runs on Google's side and cannot call notebook functions",
    "concurrency": "a Batch API job runs on Google's side, not in requests from here",
    "usage": "a Batch API job's usage is billed with the job",
    "service_tier": "a Batch API job is billed at the batch price, half the standard one",
}


def refusal(options, front_end: str) -> str | None:
    """Why `front_end` cannot take one of the options given, naming it (None: it can)."""
    refused = REFUSED[front_end]
    for name, value in options.given().items():
        if name in refused:
            return f"{flag_of(name, value)} does not apply here: {refused[name]}."
    if front_end in ("batch", "batch-api") and options.approve == "ask":
        return "--approve ask does not apply to a batch: nobody can answer its questions; use auto or never."
    return None


def flag_of(dest: str, value: Any = None) -> str:
    """How the user wrote an option: `--no-chat` for chat=False, `--chat` otherwise."""
    candidates = [o for o in OPTIONS if o.dest == dest]
    for option in candidates:
        if option.argparse.get("action") == "store_const" and option.argparse.get("const") == value:
            return option.flags[-1]
    return candidates[0].flags[-1] if candidates else dest


# -- the Options dataclass, made on first use ----------------------------------------------
# Defining a dataclass costs a few milliseconds, and this module is read when the extension
# loads (the %%gemini flags come from OPTIONS): `Options` is made the first time it is
# asked for (`from gemini_magic.options import Options` works as usual).


def _make_options():
    @dataclass
    class Options:
        """One request's options; None (or empty) means "the setting in force"."""

        model: str | None = None
        temperature: float | None = None
        top_p: float | None = None
        top_k: int | None = None
        max_tokens: int | None = None
        seed: int | None = None
        stop: list[str] | None = None
        thinking: str | None = None
        system: str | None = None
        out: str | None = None
        format: str | None = None
        json: bool = False
        schema: Any = None  # a name in the namespace, or the class itself
        stream: bool | None = None  # --no-stream: False
        interpolate: bool | None = None  # --no-interpolate: False
        tools: Any = None  # "f,g", or a list of names or functions
        approve: str | None = None
        max_steps: int | None = None
        search: bool = False
        code_exec: bool = False
        url_context: bool = False
        image: list | None = None
        downscale: bool | None = None  # --no-downscale: False
        thoughts: bool = False
        over: str | None = None
        column: str | None = None
        batch_api: bool = False
        concurrency: int | None = None
        chat: Any = None  # a conversation's name; False: --no-chat
        context: list[str] | None = None
        error: bool = False
        usage: bool | None = None
        debug: bool | None = None
        dry_run: bool = False
        service_tier: str | None = None
        media_resolution: str | None = None
        store: str | None = None  # File Search stores' names, comma-separated
        maps: bool = False
        location: str | None = None  # "lat,lng" or a place name
        aspect_ratio: str | None = None
        image_size: str | None = None
        voice: str | None = None  # a voice, or "Speaker=Voice,Speaker=Voice"
        cache: str | None = None  # a context cache's name (caches.py)
        cache_create: str | None = None
        ttl: str | None = None
        agent: bool = False  # agent mode: built-in tools that look at and run code in the kernel

        def given(self) -> dict[str, Any]:
            """The options set to something other than their default."""
            defaults = Options()
            return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                    if getattr(self, f.name) != getattr(defaults, f.name)}

        @classmethod
        def of(cls, values: dict[str, Any], where: str) -> Options:
            """Options from keyword arguments (the Python API, the widget); an unknown
            name is a TypeError naming it."""
            names = {f.name for f in dataclasses.fields(cls)}
            unknown = [name for name in values if name not in names]
            if unknown:
                raise TypeError(f"{where} got an unknown option {unknown[0]!r}; options: {', '.join(sorted(names))}.")
            return cls(**values)

    return Options


_made: dict = {}


def __getattr__(name: str):
    if name == "Options":
        if "Options" not in _made:
            _made["Options"] = _make_options()
        return _made["Options"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The `%%gemini` cell magic and `%gemini` commands: option parsing and dispatch only.

Requests are made by the engine (engine.py) and shown by a renderer (render/);
this class turns options and configuration into an engine `Request`.
"""

from __future__ import annotations

import os
import sys
import traceback
from functools import cached_property
from typing import TYPE_CHECKING

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.utils.process import arg_split
from traitlets import Bool, Dict, Enum, Float, Int, List, Unicode, default, observe

from . import __version__
from .client import KEY_VARIABLES, Connection, find_api_key
from .client import types as sdk_types
from .errors import GeminiError, scrub
from .options import APPROVE_MODES, FORMATS, THINKING_LEVELS, TIERS

# The engine, conversations, renderers and tools are imported where they are first
# used: `%load_ext` must stay fast (see benchmarks/).
if TYPE_CHECKING:
    from .context import LastError
    from .engine import Request
    from .history import Conversation

COMMANDS = {
    "models": "list the models your key can use (marks those that generate content)",
    "config": "show the settings in force",
    "help": "show this list",
    "version": "show the versions of gemini-magic and google-genai",
    "record PATH": "record every request into PATH (starts the file afresh)",
    "replay PATH": "answer only from PATH; nothing goes to the network",
    "cache PATH": "replay what PATH holds, record what it does not",
    "live": "stop recording or replaying",
    "recording": "show the record/replay mode and its file",
    "chat NAME": "make NAME the conversation of plain %%gemini cells ('off': single-turn cells again)",
    "chats": "list the conversations, with turn and token counts",
    "history [NAME]": "show a conversation (default: the current one)",
    "reset [NAME]": "clear a conversation",
    "save NAME PATH": "save a conversation to a JSON file",
    "load NAME PATH": "load a conversation from a JSON file",
    "explain": "ask Gemini to explain the last error and suggest a fix",
    "tools [F,G]": "show the declarations Gemini gets for the @tool-marked functions (and F, G)",
    "usage": "today's requests and tokens per model at this endpoint, and the limits in force",
    "limits [forget]": "the rate limits in force: those Google stated in a 429 ('forget' clears them)",
    "batch-status ID": "the state of a Gemini Batch API job (and its results, once done)",
    "settings": "a panel of widgets for the model and its settings, bound to %%gemini cells",
    "chat-ui [NAME]": "an interactive chat widget for conversation NAME (default: chat)",
}


class CellFailed(Exception):
    """Raised to end a cell that failed, shown as one short message (no traceback).

    IPython prints `_render_traceback_()` instead of a traceback; the cell still
    counts as failed, so "Run All" stops there as after any error."""

    def __init__(self, error: GeminiError, debug_text: str = ""):
        super().__init__(scrub(str(error), find_api_key()))
        self.error = error
        self.debug_text = debug_text

    def _render_traceback_(self) -> list[str]:
        lines = [f"\x1b[31mGeminiError\x1b[0m: {self.error.message}"]
        if self.error.hint:
            lines.append(self.error.hint)
        if self.debug_text:
            lines.append(self.debug_text)
        # A server may echo the key in an error message; it never reaches the output.
        key = find_api_key()
        return [scrub(line, key) for line in lines]


@magics_class
class GeminiMagics(Magics):
    """Settings are traitlets: `%config GeminiMagics.model = "gemini-2.5-pro"`, or
    `c.GeminiMagics.model = ...` in ipython_config.py."""

    model = Unicode("gemini-2.5-flash", help="Model for %%gemini cells (-m).").tag(config=True)
    temperature = Float(None, allow_none=True, help="Sampling temperature, 0-2 (-t).").tag(config=True)
    top_p = Float(None, allow_none=True, help="Nucleus sampling, 0-1 (--top-p).").tag(config=True)
    top_k = Int(None, allow_none=True, help="Top-k sampling (--top-k).").tag(config=True)
    max_tokens = Int(None, allow_none=True, help="Output token limit (--max-tokens).").tag(config=True)
    seed = Int(None, allow_none=True, help="Sampling seed (--seed).").tag(config=True)
    stop = List(Unicode(), help="Stop sequences (--stop).").tag(config=True)
    thinking = Unicode(None, allow_none=True,
                       help="Thinking: a token budget (0 off, -1 dynamic) or a level "
                            "(minimal, low, medium, high) (--thinking).").tag(config=True)
    system = Unicode(None, allow_none=True, help="System instruction (-s).").tag(config=True)
    format = Enum(FORMATS, "markdown", help="How answers are shown (-f).").tag(config=True)
    stream = Bool(True, help="Stream answers as they are generated (--no-stream).").tag(config=True)
    interpolate = Bool(True, help="Fill {name} fields from the namespace (--no-interpolate).").tag(config=True)
    usage = Bool(False, help="Add a model/token footer to each answer (--usage).").tag(config=True)
    debug = Bool(False, help="Show full tracebacks for errors (--debug).").tag(config=True)
    base_url = Unicode(None, allow_none=True,
                       help="API endpoint; default GOOGLE_GEMINI_BASE_URL or Google's.").tag(config=True)
    api_version = Unicode(None, allow_none=True, help="API version, e.g. v1beta; default the SDK's.").tag(config=True)
    timeout = Float(120.0, help="Seconds to wait for a response.").tag(config=True)
    vertexai = Bool(None, allow_none=True,
                    help="Use Vertex AI instead of the Gemini API; default GOOGLE_GENAI_USE_VERTEXAI.").tag(config=True)
    project = Unicode(None, allow_none=True,
                      help="Vertex AI: Google Cloud project (authenticates with ADC); default "
                           "GOOGLE_CLOUD_PROJECT. Without one, the API key is used (express mode).").tag(config=True)
    location = Unicode(None, allow_none=True,
                       help="Vertex AI: location, e.g. us-central1; default GOOGLE_CLOUD_LOCATION, else global.").tag(
        config=True)
    retry_attempts = Int(4, help="Tries in all for 429, 5xx and timeouts (1 = no retry).").tag(config=True)
    retry_max_wait = Float(90.0, help="Seconds of waiting between retries, at most, in all.").tag(config=True)
    update_interval = Float(0.1, help="Seconds between display updates while streaming.").tag(config=True)
    max_image_side = Int(1536, allow_none=True,
                         help="Images are downscaled so their longer side is at most this (None: never).").tag(
        config=True)
    quota_tier = Enum(TIERS, "auto",
                      help="Client-side rate limits: 'auto' paces only to limits Google stated in a 429 (and "
                           "rate_limits); 'free' adds the free tier's published table; 'paid' is 'auto'; 'off' "
                           "sends at once. Default GEMINI_MAGIC_QUOTA, else auto.").tag(config=True)
    rate_limits = Dict(help="Per-model limits, e.g. {'gemini-2.5-flash': {'rpm': 1000, 'rpd': 10000, 'tpm': "
                            "1000000}}; also read from limits.json in the data folder.").tag(config=True)
    shared_rpm = Int(None, allow_none=True,
                     help="Requests a minute across all models (None: the free tier's 60 on quota_tier 'free', "
                          "else no limit).").tag(config=True)
    proxy = Unicode(None, allow_none=True,
                    help="Proxy URL for every request, over HTTPS_PROXY/HTTP_PROXY/ALL_PROXY (NO_PROXY still "
                         "applies); default: the environment's.").tag(config=True)
    ca_bundle = Unicode(None, allow_none=True,
                        help="CA certificates to trust (a PEM file or a folder), e.g. a corporate proxy's; default "
                             "SSL_CERT_FILE / SSL_CERT_DIR, else the system's.").tag(config=True)
    track_usage = Bool(True, help="Count requests and tokens per model and day (%gemini usage).").tag(config=True)
    approve = Enum(APPROVE_MODES, "auto", help="Tool calls: auto, ask before each, or never (--approve).").tag(
        config=True)
    max_steps = Int(10, help="Tool-call rounds before Gemini must answer (--max-steps).").tag(config=True)
    chat_token_budget = Int(200_000, help="Estimated tokens a conversation may send; the oldest turns "
                                          "beyond it are trimmed.").tag(config=True)
    summary_chars = Int(4000, help="Longest text one interpolated value may become.").tag(config=True)
    summary_items = Int(50, help="List/dict items and DataFrame columns shown of a value.").tag(config=True)
    summary_rows = Int(5, help="DataFrame/Series rows shown of a value.").tag(config=True)

    def __init__(self, shell=None, **kwargs):
        # Made first: loading %config values during super().__init__ notifies the
        # observers that configure it.
        self.connection = Connection()
        super().__init__(shell=shell, **kwargs)
        self.default_chat: str | None = None
        self._cell_key: str | None = None  # the running cell, from the pre_run_cell event
        self._last_error: LastError | None = None
        self._sync_connection()

    @default("quota_tier")
    def _quota_tier_default(self) -> str:
        # GEMINI_MAGIC_QUOTA sets it from outside (a CI job, a machine on the free tier).
        value = os.environ.get("GEMINI_MAGIC_QUOTA", "auto").strip().lower()
        return value if value in TIERS else "auto"

    @cached_property
    def engine(self):
        from .engine import Engine

        engine = Engine(self.connection)
        engine.retry = self._retry_policy()
        self._configure_quota()
        return engine

    def _configure_quota(self) -> None:
        from .transport.learned import LearnedLimits, default_path
        from .transport.limits import Limiter
        from .usage import UsageStore, data_dir

        usage = UsageStore(account=self.connection.account) if self.track_usage else None
        overrides = _limits_file(data_dir() / "limits.json")
        overrides.update(self.rate_limits)
        learned = LearnedLimits(default_path())
        learned.use_account(self.connection.account or learned.account)
        self.connection.usage = usage
        self.connection.limiter = Limiter(self.quota_tier, overrides, self.shared_rpm, usage, learned)
        if self.connection._transport is not None:
            self.connection.transport  # noqa: B018  (hands the new limiter to the quota layer)

    @observe("quota_tier", "rate_limits", "shared_rpm", "track_usage")
    def _quota_changed(self, change) -> None:
        if "engine" in self.__dict__:
            self._configure_quota()

    @cached_property
    def conversations(self):
        from .history import Conversations

        return Conversations()

    def _retry_policy(self):
        from .engine import RetryPolicy

        return RetryPolicy(attempts=max(1, self.retry_attempts), max_wait=self.retry_max_wait)

    # -- IPython events (registered at load) -------------------------------------------

    def pre_run_cell(self, info) -> None:
        # A re-run cell replaces its turn: the frontend's cell id identifies it, or,
        # where none is sent (nbclient, the terminal), the cell's source.
        cell_id = getattr(info, "cell_id", None)
        raw = getattr(info, "raw_cell", "") or ""
        self._cell_key = f"cell:{cell_id}" if cell_id else _source_key(raw)

    def post_run_cell(self, result) -> None:
        exc = getattr(result, "error_in_exec", None)
        # Our own failures are not "the last error" to explain: the user's code's are.
        if exc is not None and not isinstance(exc, (CellFailed, UsageError)):
            from .context import capture_error

            self._last_error = capture_error(exc, getattr(result.info, "raw_cell", "") or "")

    @observe("base_url", "api_version", "timeout", "retry_attempts", "retry_max_wait", "vertexai", "project",
             "location", "proxy", "ca_bundle")
    def _settings_changed(self, change) -> None:
        self._sync_connection()

    def _sync_connection(self) -> None:
        # The connection rebuilds its client when these change (client.py).
        self.connection.base_url = self.base_url
        self.connection.api_version = self.api_version
        self.connection.timeout = self.timeout
        self.connection.vertexai = self.vertexai
        self.connection.project = self.project
        self.connection.location = self.location
        self.connection.proxy = self.proxy
        self.connection.ca_bundle = self.ca_bundle
        if "engine" in self.__dict__:  # made on first use, with the policy then in force
            self.engine.retry = self._retry_policy()

    # -- %%gemini ---------------------------------------------------------------------

    @magic_arguments()
    @argument("-m", "--model", help="Model id, with or without 'models/' (default: GeminiMagics.model).")
    @argument("-t", "--temperature", type=float, help="Sampling temperature, 0 to 2.")
    @argument("--top-p", type=float, help="Nucleus sampling probability, 0 to 1.")
    @argument("--top-k", type=int, help="Sample from the k most likely tokens.")
    @argument("--max-tokens", type=int, help="Output token limit.")
    @argument("--seed", type=int, help="Seed for repeatable sampling.")
    @argument("--stop", action="append", metavar="TEXT", help="Stop sequence (repeatable).")
    @argument("--thinking", metavar="BUDGET|LEVEL",
              help="Thinking budget in tokens (0 off, -1 dynamic) or level: minimal, low, medium, high.")
    @argument("-s", "--system", metavar="TEXT|VAR", help="System instruction, or the name of a str variable.")
    @argument("-o", "--out", metavar="VAR", help="Store the answer in VAR (the parsed object with --json/--schema).")
    @argument("-f", "--format", choices=FORMATS, help="markdown (default), text, code (into the next cell), json.")
    @argument("--json", action="store_true", help="Ask for JSON; --out stores the parsed value.")
    @argument("--schema", metavar="NAME", help="Structured output: a pydantic model, dataclass or TypedDict.")
    @argument("--no-stream", action="store_true", help="Wait for the whole answer, then show it.")
    @argument("--no-interpolate", action="store_true", help="Send {braces} as written.")
    @argument("--tools", metavar="F,G", help="Let Gemini call these notebook functions (and @tool-marked ones).")
    @argument("--approve", choices=APPROVE_MODES,
              help="auto: run tool calls (default); ask: ask before each; never: run none.")
    @argument("--max-steps", type=int, metavar="N", help="Tool-call rounds before Gemini must answer (10).")
    @argument("--search", action="store_true", help="Ground the answer with Google Search, with citations.")
    @argument("--code-exec", action="store_true", help="Let Gemini write and run Python code on Google's side.")
    @argument("--url-context", action="store_true", help="Let Gemini read the URLs named in the prompt.")
    @argument("--image", action="append", metavar="X",
              help="Attach an image, PDF, audio, video or text: a variable, a file path or an http(s) URL "
                   "(repeatable).")
    @argument("--no-downscale", action="store_true", help="Send images at full size (default: longer side 1536).")
    @argument("--thoughts", action="store_true", help="Ask for the model's thought summaries (shown collapsed).")
    @argument("--over", metavar="VAR", help="Run the prompt once per item of a list, Series or DataFrame "
                                            "(fields of each row fill the template); see gemini_magic.batch.")
    @argument("--column", default="answer", metavar="NAME", help="With --over a DataFrame: the results' column.")
    @argument("--batch-api", action="store_true",
              help="With --over: send the prompts as one Gemini Batch API job (half price, no per-minute limits).")
    @argument("--concurrency", type=int, default=8, metavar="N", help="With --over: requests in flight (8).")
    @argument("-c", "--chat", metavar="NAME", help="Make this cell a turn of conversation NAME.")
    @argument("--no-chat", action="store_true", help="A single-turn cell, even with a default chat set.")
    @argument("--context", action="append", metavar="VAR",
              help="Attach a summary of VAR (a DataFrame, function, ...) to the prompt (repeatable).")
    @argument("--error", action="store_true",
              help="Send the last error, its traceback and cell, asking for an explanation and a fix.")
    @argument("--usage", action="store_true", help="Add a footer with model and token usage.")
    @argument("--debug", action="store_true", help="Show full tracebacks for errors.")
    @line_cell_magic
    def gemini(self, line: str, cell: str | None = None):
        """Ask Gemini: the cell body is the prompt; the answer streams into the cell.

        %%gemini [options]
        Explain the difference between a list and a tuple.

        As a line magic, runs a command: %gemini help lists them.
        """
        if cell is None:
            if line.lstrip().startswith("-"):
                # `%gemini --image chart.png` asks with options alone (IPython refuses
                # a %%gemini cell with an empty body).
                cell = ""
            else:
                return self._command(line)
        try:
            args = self._parse(line)
        except UsageError as exc:
            raise UsageError(f"{exc}\n{self.gemini.parser.format_usage()}See %%gemini? for every option.") from None
        return self._ask(args, line, cell)

    def _parse(self, line: str):
        # POSIX splitting, so -s "two words" arrives without its quotes.
        try:
            argv = arg_split(line, posix=True)
        except ValueError as exc:  # an unclosed quote
            raise UsageError(f"Cannot read the options: {exc}.") from None
        args = self.gemini.parser.parse_args(argv)
        _check_range("--temperature", args.temperature, 0.0, 2.0)
        _check_range("--top-p", args.top_p, 0.0, 1.0)
        _check_range("--top-k", args.top_k, 1, None)
        _check_range("--max-tokens", args.max_tokens, 1, None)
        _check_range("--max-steps", args.max_steps, 1, None)
        if args.thinking is not None:
            _thinking(args.thinking)
        return args

    def _ask(self, args, line: str, cell: str):
        if args.over:
            return self._batch(args, cell)
        debug = args.debug or self.debug
        try:
            request, fmt = self._request(args, cell)
        except GeminiError as error:
            raise CellFailed(error) from None
        from .render import play, renderer_for

        renderer = renderer_for(self.shell, fmt=fmt, footer=args.usage or self.usage,
                                interval=self.update_interval)
        chat = self._chat_for(args)
        key = self._cell_key or _source_key(f"%%gemini {line}\n{cell}")
        pending = None
        if chat is not None:
            from .history import begin

            pending = begin(chat, key, request.contents, self.chat_token_budget)
            if pending.trimmed:
                print(f"Chat {chat.name!r}: the {len(pending.trimmed)} oldest turn(s) are no longer sent, to stay "
                      f"within {self.chat_token_budget:,} tokens (GeminiMagics.chat_token_budget).", file=sys.stderr)
            request.contents = pending.contents
        answer = self.engine.send(request)
        play(answer, renderer)
        done = pending.finish(answer) if pending is not None else None
        if done is not None:
            if done.dropped:
                print(f"Chat {chat.name!r}: this cell's earlier turn was replaced, and the {done.dropped} "
                      f"turn(s) after it were dropped.", file=sys.stderr)
        if args.out and (answer.text_parts or answer.parsed is not None or answer.other_parts):
            # A partial answer is stored too: nothing that arrived is lost.
            from .media import answer_value

            self.shell.user_ns[args.out] = answer_value(answer)
        if fmt == "code" and answer.text_parts and answer.error is None:
            self._next_cell(answer.text)
        if answer.error is not None:
            raise CellFailed(answer.error, self._debug_text(answer.error) if debug else "") from None
        if answer.interrupted:
            raise CellFailed(GeminiError("Interrupted.", "The partial answer above is kept.")) from None

    def _request(self, args, cell: str) -> tuple[Request, str]:
        from .context import describe, error_prompt, last_error
        from .media import is_media
        from .prompt import interpolate

        prompt = cell = cell.strip()
        segments = [prompt]
        if self.interpolate and not args.no_interpolate:
            result = interpolate(cell, self.shell.user_ns, render=self._summarize, keep=is_media)
            prompt, segments = result.text, result.segments
            if result.unresolved:
                print(f"Note: left as written, no such variable: {', '.join(result.unresolved)} "
                      "(use {{ }} for literal braces).", file=sys.stderr)
        if args.error:
            error = self._last_error or last_error(ignore=(CellFailed, UsageError))
            if error is None:
                raise GeminiError("There is no error to explain yet.", "Run the cell that fails first.")
            prompt = error_prompt(error, prompt)
        if args.context:
            missing = [name for name in args.context if name not in self.shell.user_ns]
            if missing:
                raise GeminiError(f"--context: no variable named {', '.join(missing)}.",
                                  "Define it first, or check the spelling.")
            summaries = [describe(name, self.shell.user_ns[name], self._limits(), fallback=self._summarize)
                         for name in args.context]
            context = "Context from the notebook:\n\n" + "\n\n".join(summaries) + "\n\n"
            prompt, segments = context + prompt, [context, *segments]
        if args.error:
            segments = [prompt]
        if not prompt.strip() and not args.image:
            raise GeminiError("The prompt is empty.", "Write the prompt in the cell, below %%gemini.")
        model = (args.model or self.model or "").strip()
        if not model:
            raise GeminiError("No model given.", "Use -m MODEL or %config GeminiMagics.model = '...'.")
        config = self._config(args)
        schema = None
        fmt = args.format or self.format
        if args.schema or args.json:
            from .schema import Schema, resolve

            schema = resolve(args.schema, self.shell.user_ns) if args.schema else Schema()
            config.update(schema.config())
            fmt = "json" if args.format is None else fmt
        stream = self.stream and not args.no_stream
        user = sdk_types().Content(role="user", parts=self._parts(args, segments))
        from .engine import Request

        request = Request(model=model, contents=user, config=config, stream=stream, schema=schema)
        self._add_tools(request, args)
        return request, fmt

    def _parts(self, args, segments: list) -> list:
        """The user turn's parts: attachments first, then the prompt's text and the
        media named in it, in the order written."""
        types = sdk_types()
        merged: list = []  # adjacent text is one part, as if written in one piece
        for segment in segments:
            if isinstance(segment, str) and merged and isinstance(merged[-1], str):
                merged[-1] += segment
            else:
                merged.append(segment)
        segments = merged
        if not args.image and len(segments) == 1 and isinstance(segments[0], str):
            return [types.Part(text=segments[0])]
        from .media import attachment, to_part
        from .render.progress import upload_progress

        options = {
            "client": _LazyClient(self.connection),
            "max_side": None if args.no_downscale else self.max_image_side,
            "uploads": self.uploads,
            "progress": upload_progress(self.shell),
            "open_url": self.connection.open_url,
        }
        parts = [attachment(spec, self.shell.user_ns, **options) for spec in args.image or ()]
        for segment in segments:
            if isinstance(segment, str):
                if segment.strip():
                    parts.append(types.Part(text=segment))
            else:
                parts.append(to_part(segment, **options))
        return parts

    @cached_property
    def uploads(self):
        from .media import Uploads

        # Waits between processing checks are skipped when the check was replayed.
        return Uploads(sleep=lambda seconds: self.engine.pause(seconds))

    def _add_tools(self, request: Request, args) -> None:
        from .tools import Toolbox, resolve

        names = [n.strip() for n in (args.tools or "").split(",") if n.strip()]
        bound = resolve(names, self.shell.user_ns)
        if bound:
            request.toolbox = Toolbox(bound, approve=args.approve or self.approve, ask=self._ask_approval)
            request.max_steps = args.max_steps if args.max_steps is not None else self.max_steps
        if args.search:
            request.server_tools.append({"google_search": {}})
        if args.code_exec:
            request.server_tools.append({"code_execution": {}})
        if args.url_context:
            request.server_tools.append({"url_context": {}})

    def _ask_approval(self, call) -> bool:
        from .render.tools import call_signature

        answer = input(f"Allow Gemini to run {call_signature(call)}? [y/N] ")
        return answer.strip().lower() in ("y", "yes")

    def _limits(self):
        from .context import Limits

        return Limits(chars=self.summary_chars, items=self.summary_items, rows=self.summary_rows)

    def _summarize(self, value) -> str:
        from .context import summarize

        try:
            return summarize(value, self._limits())
        except Exception:  # a value whose str() fails still gets a placeholder
            return f"<{type(value).__name__} object>"

    def _chat_for(self, args):
        name = None if args.no_chat else (args.chat or self.default_chat)
        return self.conversations.get_or_create(name) if name else None

    def _config(self, args) -> dict:
        def pick(value, default):
            return default if value is None else value

        settings = {
            "temperature": pick(args.temperature, self.temperature),
            "top_p": pick(args.top_p, self.top_p),
            "top_k": pick(args.top_k, self.top_k),
            "max_output_tokens": pick(args.max_tokens, self.max_tokens),
            "seed": pick(args.seed, self.seed),
            "stop_sequences": args.stop or list(self.stop) or None,
        }
        _check_range("--temperature", settings["temperature"], 0.0, 2.0)
        _check_range("--top-p", settings["top_p"], 0.0, 1.0)
        _check_range("--top-k", settings["top_k"], 1, None)
        _check_range("--max-tokens", settings["max_output_tokens"], 1, None)
        system = pick(args.system, self.system)
        if system:
            value = self.shell.user_ns.get(system) if system.isidentifier() else None
            settings["system_instruction"] = value if isinstance(value, str) else system
        thinking = pick(args.thinking, self.thinking)
        if thinking is not None or args.thoughts:
            settings["thinking_config"] = _thinking(thinking)
            if args.thoughts:
                settings["thinking_config"]["include_thoughts"] = True
        return {k: v for k, v in settings.items() if v is not None}

    def _next_cell(self, text: str) -> None:
        from .render.markdown import extract_code

        code, _ = extract_code(text)
        if "google.colab" in sys.modules:
            print("Colab cannot insert cells from a kernel: copy the code above.", file=sys.stderr)
            return
        self.shell.set_next_input(code, replace=False)
        print("The code is in a new cell below.", file=sys.stderr)

    def _debug_text(self, error: GeminiError) -> str:
        cause = error.__cause__ or error
        text = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
        return scrub(text, find_api_key())

    # -- %gemini COMMAND --------------------------------------------------------------

    def _command(self, line: str):
        words = line.split()
        if not words:
            return self._help()
        name, rest = words[0].lower(), words[1:]
        simple = {
            "models": self._models, "config": self._show_config, "help": self._help,
            "version": self._version, "live": self._live, "recording": self._recording,
            "chats": self._chats,
        }
        with_arguments = {
            "record": self._record, "replay": self._record, "cache": self._record,
            "chat": self._chat, "history": self._history, "reset": self._reset,
            "save": self._save, "load": self._load, "explain": self._explain, "tools": self._tools,
            "chat-ui": self._chat_ui, "batch-status": self._batch_status, "limits": self._rate_limits,
        }
        simple["settings"] = self._settings
        simple["usage"] = self._usage
        if name not in simple and name not in with_arguments:
            raise UsageError(f"Unknown command {name!r}. Commands: {', '.join(c.split()[0] for c in COMMANDS)}. "
                             "A prompt goes in a %%gemini cell.")
        try:
            if name in with_arguments:
                return with_arguments[name](name, rest)
            if rest:
                raise UsageError(f"%gemini {name} takes no arguments.")
            return simple[name]()
        except GeminiError as error:
            raise CellFailed(error, self._debug_text(error) if self.debug else "") from None

    def _help(self) -> None:
        width = max(len(c) for c in COMMANDS)
        lines = [f"  %gemini {c.ljust(width)}  {h}" for c, h in COMMANDS.items()]
        print("Commands:\n" + "\n".join(lines))
        print("Prompts: %%gemini [options] in a cell; %%gemini? shows the options.")

    def _version(self) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            sdk_version = version("google-genai")
        except PackageNotFoundError:
            sdk_version = "not installed"
        print(f"gemini-magic {__version__}, google-genai {sdk_version}")

    def _models(self) -> None:
        from .engine import can_generate

        models = self.engine.models()
        rows = []
        for model in models:
            mark = "*" if can_generate(model) else " "
            limit = f"{model.input_token_limit:,}" if model.input_token_limit else ""
            rows.append((mark, (model.name or "").removeprefix("models/"), model.display_name or "", limit))
        width = max((len(r[1]) for r in rows), default=10)
        print(f"  {'model'.ljust(width)}  {'input tokens':>12}  name")
        for mark, name, display, limit in rows:
            print(f"{mark} {name.ljust(width)}  {limit:>12}  {display}")
        print("* can generate content (usable in %%gemini)")

    def _show_config(self) -> None:
        lines = []
        for name in sorted(self.trait_names(config=True)):
            lines.append(f"  GeminiMagics.{name} = {getattr(self, name)!r}")
        key_from = next((v for v in KEY_VARIABLES if os.environ.get(v)), None)
        key = f"from {key_from}" if key_from else ("found" if find_api_key() else "not set")
        endpoint = self.base_url or os.environ.get("GOOGLE_GEMINI_BASE_URL") or "Google's default"
        if self.connection.use_vertex():
            project, location = self.connection.vertex_place()
            endpoint = self.base_url or os.environ.get("GOOGLE_VERTEX_BASE_URL") or "Google's default"
            endpoint += (f" (Vertex AI, project {project}, {location}; ADC)" if project
                         else " (Vertex AI express mode, API key)")
        print("\n".join(lines))
        print(f"API key: {key}\nEndpoint: {endpoint}\nRecording: {self._recording_status()}")

    # -- conversations ----------------------------------------------------------------

    def _chat(self, command: str, rest: list[str]) -> None:
        if len(rest) != 1:
            raise UsageError("Usage: %gemini chat NAME  (or: %gemini chat off)")
        name = rest[0]
        if name.lower() == "off":
            self.default_chat = None
            return
        self.default_chat = name
        self.conversations.get_or_create(name)

    def _named_chat(self, command: str, rest: list[str]) -> Conversation:
        if len(rest) > 1:
            raise UsageError(f"Usage: %gemini {command} [NAME]")
        name = rest[0] if rest else self.default_chat
        if name is None:
            raise UsageError(f"%gemini {command}: name a conversation (no default chat is set).")
        if name not in self.conversations:
            known = ", ".join(self.conversations) or "none yet"
            raise GeminiError(f"No conversation named {name!r}.", f"Conversations: {known}.")
        return self.conversations[name]

    def _history(self, command: str, rest: list[str]) -> None:
        from IPython.display import display

        from .render.bundles import transcript_bundle

        chat = self._named_chat(command, rest)
        display(transcript_bundle(chat), raw=True)

    def _reset(self, command: str, rest: list[str]) -> None:
        chat = self._named_chat(command, rest)
        chat.turns.clear()

    def _chats(self) -> None:
        if not self.conversations:
            print("No conversations yet: %%gemini --chat NAME starts one.")
            return
        width = max(len(n) for n in self.conversations)
        for name, chat in self.conversations.items():
            mark = "*" if name == self.default_chat else " "
            print(f"{mark} {name.ljust(width)}  {len(chat):>3} turns  {chat.tokens():>8,} tokens")
        if self.default_chat:
            print("* the default chat of plain %%gemini cells")

    def _save(self, command: str, rest: list[str]) -> None:
        if len(rest) != 2:
            raise UsageError("Usage: %gemini save NAME PATH")
        chat = self._named_chat(command, rest[:1])
        try:
            chat.save(rest[1])
        except OSError as exc:
            raise GeminiError(f"Cannot save to {rest[1]}: {exc.strerror}.", "Check the path.") from exc

    def _load(self, command: str, rest: list[str]) -> None:
        if len(rest) != 2:
            raise UsageError("Usage: %gemini load NAME PATH")
        from .history import Conversation

        name, path = rest
        try:
            self.conversations[name] = Conversation.load(path, name)
        except FileNotFoundError:
            raise GeminiError(f"No such file: {path}.", "Check the path.") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise GeminiError(f"{path} is not a saved conversation ({exc}).",
                              "Use a file written by %gemini save.") from None

    def _explain(self, command: str, rest: list[str]):
        return self._ask(self._parse("--error " + " ".join(rest)), "--error", "")

    # -- batches ----------------------------------------------------------------------

    def request_factory(self, args):
        """`make(prompt_text) -> Request` with the options of `args`: one request per
        batch item, built like a cell's (model, settings, structured output)."""
        from .engine import Request

        model = (args.model or self.model or "").strip()
        config = self._config(args)
        schema = None
        if args.schema or args.json:
            from .schema import Schema, resolve

            schema = args.schema if isinstance(args.schema, Schema) else (
                resolve(args.schema, self.shell.user_ns) if args.schema else Schema())
            config.update(schema.config())

        def make(text: str) -> Request:
            user = sdk_types().Content(role="user", parts=[sdk_types().Part(text=text)])
            return Request(model=model, contents=user, config=dict(config), stream=False, schema=schema)

        return make

    def _batch(self, args, template: str):
        from .batches import local as batching

        if args.over not in self.shell.user_ns:
            raise CellFailed(GeminiError(f"--over: no variable named {args.over!r}.",
                                         "Name a list, a pandas Series or a DataFrame."))
        rows = self.shell.user_ns[args.over]
        if isinstance(rows, (str, bytes)) or not hasattr(rows, "__iter__"):
            raise CellFailed(GeminiError(f"--over {args.over}: a {type(rows).__name__} is not a list of items.",
                                         "Name a list, a pandas Series or a DataFrame."))
        try:
            requests, like = batching.build_requests(template.strip(), rows, self.shell.user_ns,
                                                     self.request_factory(args))
        except GeminiError as error:
            raise CellFailed(error) from None
        if args.batch_api:
            from .batches import api as batch_api

            try:
                answers = batch_api.run(requests, self.connection, model=args.model or self.model)
            except GeminiError as error:
                raise CellFailed(error) from None
            results = batching._shape(list(answers), like, args.column)
        else:
            run = batching.run(requests, self.engine, concurrency=max(1, args.concurrency),
                               progress=batching.progress_for(self.shell))
            batching.last_run = run
            results = batching._shape(run.results, like, args.column)
            print(batching.summary(run), file=sys.stderr)
        if args.out:
            self.shell.user_ns[args.out] = results
            return None
        return results

    def _batch_status(self, command: str, rest: list[str]):
        if len(rest) != 1:
            raise UsageError("Usage: %gemini batch-status ID  (the id printed when the job was created)")
        from .batches.api import job_status

        return job_status(self, rest[0])

    # -- quota ------------------------------------------------------------------------

    def _usage(self) -> None:
        from .usage import usage_table

        self.engine  # noqa: B018  (sets up the limiter and the usage store)
        if self.connection.usage is None:
            print("Usage is not tracked (GeminiMagics.track_usage = False).")
            return
        self._account()
        print(usage_table(self.connection.usage, self.connection.limiter))

    def _rate_limits(self, command: str, rest: list[str]) -> None:
        self.engine  # noqa: B018
        self._account()
        limiter = self.connection.limiter
        if rest == ["forget"]:
            count = limiter.learned.forget()
            print(f"Forgot {count} limit(s) Google stated for this key and endpoint.")
            return
        if rest:
            raise UsageError("Usage: %gemini limits  (or: %gemini limits forget)")
        print("\n".join(limiter.describe_limits()))

    def _account(self) -> None:
        """Which endpoint and key quota is counted for: the client knows (without a
        key, as in replay, the endpoint alone)."""
        try:
            self.connection.client()
        except GeminiError:
            pass

    # -- widgets ----------------------------------------------------------------------

    def _settings(self):
        from .widgets import settings_panel

        return settings_panel(self)

    def _chat_ui(self, command: str, rest: list[str]):
        if len(rest) > 1:
            raise UsageError("Usage: %gemini chat-ui [NAME]")
        from .widgets import chat_widget

        return chat_widget(self, rest[0] if rest else (self.default_chat or "chat"))

    # -- tools ------------------------------------------------------------------------

    def _tools(self, command: str, rest: list[str]) -> None:
        import json

        from .tools import resolve

        names = [n.strip() for n in ",".join(rest).split(",") if n.strip()]
        bound = resolve(names, self.shell.user_ns)
        if not bound:
            print("No tools: mark functions with @gemini_magic.tool, or name them: %gemini tools f,g")
            return
        for tool in bound:
            confirm = " (asks before each call)" if tool.confirm else ""
            print(f"{tool.name}{confirm}: {tool.description}")
            print("  " + json.dumps(tool.schema, indent=2, sort_keys=True).replace("\n", "\n  "))

    # -- record / replay --------------------------------------------------------------

    def _record(self, mode: str, rest: list[str]) -> None:
        from .client import MODE_VARIABLE, MODES, PATH_VARIABLE

        if len(rest) != 1:
            raise UsageError(f"Usage: %gemini {mode} PATH (a JSON file, e.g. {mode}.gemini.json)")
        path = rest[0]
        # CI and nbval set the mode from outside, so one notebook runs in replay
        # there and records with a key elsewhere, unedited.
        forced = os.environ.get(MODE_VARIABLE, "").strip().lower()
        if forced:
            if forced not in MODES:
                raise UsageError(f"{MODE_VARIABLE}={forced!r}: use one of {', '.join(MODES)}.")
            mode = forced
        path = os.environ.get(PATH_VARIABLE) or path
        self._set_recording(mode, path)

    def _live(self) -> None:
        self._set_recording("live", None)

    def _set_recording(self, mode: str, path: str | None) -> None:
        try:
            self.connection.set_recording(mode, os.path.abspath(path) if path else None)
        except (ValueError, OSError) as exc:
            raise GeminiError(f"Cannot use the recording {path}: {exc}", "Check the path and the file.") from exc

    def _recording_status(self) -> str:
        if self.connection._transport is not None:
            return self.connection.transport.status()
        if self.connection.mode == "live":
            return "live: requests go to the API; nothing is recorded"
        return f"{self.connection.mode}: {self.connection.recording_path}"

    def _recording(self) -> None:
        print(self._recording_status())


def _check_range(option: str, value, low, high) -> None:
    if value is None:
        return
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise UsageError(f"{option} must be {bounds}, not {value}.")


def _thinking(value: str | None) -> dict:
    if value is None:
        return {}
    text = str(value).strip().lower()
    if text in THINKING_LEVELS:
        return {"thinking_level": text.upper()}
    if text in ("off", "none"):
        return {"thinking_budget": 0}
    try:
        budget = int(text)
    except ValueError:
        raise UsageError(f"--thinking takes a token budget (0 off, -1 dynamic) or one of "
                         f"{', '.join(THINKING_LEVELS)}, not {value!r}.") from None
    if budget < -1:
        raise UsageError("--thinking budget must be -1 (dynamic), 0 (off) or more.")
    return {"thinking_budget": budget}


def _source_key(source: str) -> str:
    import hashlib

    return "source:" + hashlib.sha256(source.strip().encode()).hexdigest()[:16]


class _LazyClient:
    """The SDK client, built only if a large file must go through the Files API."""

    def __init__(self, connection: Connection):
        self._connection = connection

    def __getattr__(self, name: str):
        return getattr(self._connection.client(), name)


def _limits_file(path) -> dict:
    """Per-model limits from a small JSON file, e.g. a paid tier's figures."""
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}

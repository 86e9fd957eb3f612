"""`%%gemini` and `%gemini`: settings as traitlets, option parsing, and dispatch.

The request is built by requests.py and sent by the session (session.py), as for
every other front end; the commands live in commands/, one module per topic.
"""

from __future__ import annotations

import os
import sys
from functools import cached_property
from typing import TYPE_CHECKING

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.utils.process import arg_split
from traitlets import Bool, Dict, Enum, Float, Int, List, TraitError, Unicode, default, validate

from ..frontend import Frontend
from ..history import cell_key
from ..options import APPROVE_MODES, FORMATS, MEDIA_RESOLUTIONS, OPTIONS, SERVICE_TIERS, SETTING_NAMES, TIERS
from .failure import CellFailed, failed

if TYPE_CHECKING:
    from ..errors import GeminiError
    from ..options import Options
    from ..settings import Settings


def _with_options(function):
    """The `%%gemini` flags, from the one table of options (options.py)."""
    for option in reversed(OPTIONS):
        function = argument(*option.flags, dest=option.dest, help=option.help, **option.argparse)(function)
    return magic_arguments()(function)


# Options checked like the settings of the same name when a cell is parsed: a bad
# value is a usage error naming the flag, before anything is built or sent.
_CHECKED = {"temperature": "--temperature", "top_p": "--top-p", "top_k": "--top-k", "max_tokens": "--max-tokens",
            "max_steps": "--max-steps", "thinking": "--thinking"}


@magics_class
class GeminiMagics(Magics):
    """Settings are traitlets: `%config GeminiMagics.model = "gemini-2.5-pro"`, or
    `c.GeminiMagics.model = ...` in ipython_config.py. Each is checked when set."""

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
    proxy = Unicode(None, allow_none=True,
                    help="Proxy URL for every request, over HTTPS_PROXY/HTTP_PROXY/ALL_PROXY (NO_PROXY still "
                         "applies); default: the environment's.").tag(config=True)
    ca_bundle = Unicode(None, allow_none=True,
                        help="CA certificates to trust (a PEM file or a folder), e.g. a corporate proxy's; default "
                             "SSL_CERT_FILE / SSL_CERT_DIR, else the system's.").tag(config=True)
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
    track_usage = Bool(True, help="Count requests and tokens per model and day (%gemini usage).").tag(config=True)
    approve = Enum(APPROVE_MODES, "auto", help="Tool calls: auto, ask before each, or never (--approve).").tag(
        config=True)
    agent_approve = Enum(APPROVE_MODES, "ask",
                         help="Agent mode's code runs (--agent): ask before each (default), auto (run without "
                              "asking) or never. --approve on the cell wins.").tag(config=True)
    max_steps = Int(10, help="Tool-call rounds before Gemini must answer (--max-steps).").tag(config=True)
    chat_token_budget = Int(200_000, help="Estimated tokens a conversation may send; the oldest turns "
                                          "beyond it are trimmed.").tag(config=True)
    summary_chars = Int(4000, help="Longest text one interpolated value may become.").tag(config=True)
    summary_items = Int(50, help="List/dict items and DataFrame columns shown of a value.").tag(config=True)
    summary_rows = Int(5, help="DataFrame/Series rows shown of a value.").tag(config=True)
    service_tier = Enum(SERVICE_TIERS, None, allow_none=True,
                        help="Service tier of requests: standard, flex (half price, slower) or priority (dearer, "
                             "fastest); None: the API's default (--service-tier).").tag(config=True)
    media_resolution = Enum(MEDIA_RESOLUTIONS, None, allow_none=True,
                            help="Tokens spent per image, PDF page or video frame: low, medium or high; None: the "
                                 "model's default (--media-resolution).").tag(config=True)
    prices = Dict(help="Prices to add or override, USD per 1M tokens, by model, e.g. {'my-model': {'input': 0.3, "
                       "'output': 2.5, 'cached_input': 0.03}} (costs.py; prices.json ships with the package).").tag(
        config=True)
    cache_ttl = Unicode("1h", help="How long a context cache lives unless --ttl says (30m, 2h, 1d).").tag(config=True)

    def __init__(self, shell=None, **kwargs):
        from ..session import Session

        # Made first: loading %config values during super().__init__ validates them.
        self.session = Session(settings=self.settings, namespace=lambda: self.shell.user_ns,
                               restore=self._restore_conversation)
        super().__init__(shell=shell, **kwargs)
        self._cell_key: str | None = None  # the running cell, from the pre_run_cell event
        self._asks_in_cell = 0  # %%gemini calls in the running cell (each its own chat turn)
        self._cell_ids = False  # whether the frontend sends cell ids (an interactive one does)
        self._told_no_file = False  # said once: the notebook file cannot be found (magics/restore.py)
        self._last_error = None  # context.LastError of the user's last failing cell
        self.widgets: list = []  # chat widgets and panels made here, closed on unload
        self.frontend = Frontend()  # what the JupyterLab extension said it can do (frontend.py)
        self.batch_runs: dict = {}  # the last local batch of each cell, for a resume

    @default("quota_tier")
    def _quota_tier_default(self) -> str:
        # GEMINI_MAGIC_QUOTA sets it from outside (a CI job, a machine on the free tier).
        value = os.environ.get("GEMINI_MAGIC_QUOTA", "auto").strip().lower()
        return value if value in TIERS else "auto"

    @validate(*SETTING_NAMES)
    def _check_setting(self, proposal):
        from ..settings import SettingError, check

        try:
            value = check(proposal.trait.name, proposal.value)
        except SettingError as exc:
            raise TraitError(str(exc)) from None
        return list(value) if proposal.trait.name == "stop" else value

    def settings(self) -> Settings:
        """A snapshot of every setting, as requests are built from it."""
        from ..settings import Settings

        return Settings(**{name: getattr(self, name) for name in SETTING_NAMES})

    # The session's parts, under the names the rest of the package (and tests) use.
    @property
    def connection(self):
        return self.session.connection

    @property
    def engine(self):
        return self.session.engine

    @property
    def conversations(self):
        return self.session.conversations

    @property
    def uploads(self):
        return self.session.uploads

    @property
    def default_chat(self) -> str | None:
        return self.session.default_chat

    @default_chat.setter
    def default_chat(self, name: str | None) -> None:
        self.session.default_chat = name

    def close(self) -> None:
        """On unload: widgets, their threads and observers, and the connection pool."""
        for widget in list(self.widgets):
            try:
                widget.close()
            except Exception:  # noqa: BLE001  (a widget already torn down by its frontend)
                pass
        self.widgets.clear()
        self.frontend.close()
        self.session.close()

    # -- IPython events (registered at load) -------------------------------------------

    def pre_run_cell(self, info) -> None:
        # A re-run cell replaces its turn: the frontend's cell id identifies it, or,
        # where none is sent (nbclient, the terminal), the cell's source.
        cell_id = getattr(info, "cell_id", None)
        raw = getattr(info, "raw_cell", "") or ""
        self._cell_key = cell_key(cell_id, raw)
        self._cell_ids = self._cell_ids or bool(cell_id)
        self._asks_in_cell = 0

    def post_run_cell(self, result) -> None:
        exc = getattr(result, "error_in_exec", None)
        # Our own failures are not "the last error" to explain: the user's code's are.
        if exc is not None and not isinstance(exc, (CellFailed, UsageError)):
            from ..context import capture_error

            self._last_error = capture_error(exc, getattr(result.info, "raw_cell", "") or "")

    def last_error(self):
        from ..context import last_error

        return self._last_error or last_error(ignore=(CellFailed, UsageError))

    # -- %%gemini ---------------------------------------------------------------------

    @_with_options
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
                from .commands import run

                return run(self, line)
        options = self.parse(line)
        if options.over:
            from .commands.batches import over

            return over(self, options, cell)
        from .cell import ask

        return ask(self, options, line, cell)

    def parse(self, line: str) -> Options:
        """The cell's options; a usage error (with the usage line) for a bad one."""
        from ..options import Options
        from ..settings import SettingError, check

        try:
            # POSIX splitting, so -s "two words" arrives without its quotes.
            try:
                argv = arg_split(line, posix=True)
            except ValueError as exc:  # an unclosed quote
                raise UsageError(f"Cannot read the options: {exc}.") from None
            values = vars(self.gemini.parser.parse_args(argv))
            for name, flag in _CHECKED.items():
                if values.get(name) is None:
                    continue
                try:
                    check(name, values[name])
                except SettingError as exc:
                    raise UsageError(flag + str(exc).removeprefix(name)) from None
            if values.get("concurrency") is not None and values["concurrency"] < 1:
                raise UsageError(f"--concurrency must be at least 1, not {values['concurrency']}.")
            return Options(**values)
        except UsageError as exc:
            raise UsageError(f"{exc}\n{self.gemini.parser.format_usage()}See %%gemini? for every option.") from None

    def turn_key(self, line: str, cell: str) -> str:
        """Which turn of a chat this call is: its cell, and its place among the cell's
        %%gemini calls (a cell that asks three times makes three turns)."""
        self._asks_in_cell += 1
        base = self._cell_key or cell_key(None, f"%%gemini {line}\n{cell}")
        return base if self._asks_in_cell == 1 else f"{base}#{self._asks_in_cell}"

    def batch_key(self, line: str, template: str) -> str:
        """Which cell a batch belongs to, so running it again resumes what it left."""
        return (self._cell_key or "") + cell_key(None, f"{line}\n{template}")

    def ask_approval(self, call) -> bool:
        """Ask in the cell before a tool runs ("Allow Gemini to run f(...)? [y/N]"); for
        agent mode's code, shown above in its card, "Run this code (#1)? [y/N]"."""
        from ..render.tools import call_signature

        if call.kind == "code":
            # The code is shown above, in its card of the same number: the answers stay above
            # the final cards once the cell ends, and the number says which was which.
            answer = input(f"Run this code (#{call.number})? [y/N] ")
        else:
            answer = input(f"Allow Gemini to run {call_signature(call)}? [y/N] ")
        return answer.strip().lower() in ("y", "yes")

    def surroundings(self) -> dict:
        """What a cell adds to a request's surroundings: its last error, a way to ask, progress."""
        from ..render.progress import upload_progress

        return {"last_error": self.last_error, "ask_approval": self.ask_approval,
                "progress": upload_progress(self.shell), "shell": self.shell}

    def _restore_conversation(self, conversation) -> None:
        """A conversation's first use in this kernel: continue it from the saved notebook."""
        from .restore import restore

        restore(self, conversation)

    def fail(self, error: GeminiError, debug: bool | None = None) -> CellFailed:
        return failed(error, self.debug if debug is None else debug)

    @cached_property
    def _colab(self) -> bool:
        return "google.colab" in sys.modules

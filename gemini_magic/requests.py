"""Settings + options + a prompt -> an engine `Request`, the same for every front end.

The cell, `--over` and `gemini_magic.batch()`, the chat widget and `gemini_magic.ask()`
all build their requests here, so an option means the same wherever it is given
(`options.refusal` says where one cannot apply). Nothing here imports IPython: a
front end passes what it knows of its surroundings in a `Surroundings`.

    recipe = Recipe.make(options, settings, surroundings, front_end="cell")
    prepared = recipe.prepare("Describe {img}")     # interpolation, parts, chat turn
    answer = engine.send(prepared.request)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import GeminiError
from .options import Options, refusal
from .settings import SettingError, Settings, check, check_thinking

# Gemini refuses a request over 20 MB; base64 makes inline bytes a third bigger, and
# the request also carries the text, the history and the config. Parts are moved to
# the Files API until the encoded request fits under this.
REQUEST_LIMIT = 20 * 1024 * 1024 - 256 * 1024


class OptionError(GeminiError):
    """An option that cannot apply, or a value it cannot take."""

    kind = "usage"


@dataclass
class Surroundings:
    """What a front end knows that a request may use: the namespace for {fields},
    conversations, Files API uploads, and how to ask the user or show progress."""

    namespace: dict = field(default_factory=dict)
    conversations: Any = None  # history.Conversations
    uploads: Any = None  # media.Uploads
    connection: Any = None  # client.Connection: the Files API and URL fetches
    last_error: Callable[[], Any] | None = None  # -> context.LastError | None
    ask_approval: Callable[[Any], bool] | None = None  # a tool call -> allowed?
    progress: Callable | None = None  # upload progress
    default_chat: str | None = None  # the conversation of plain cells (%gemini chat NAME)
    caches: Any = None  # caches.Caches: context caches by name (--cache NAME)
    stores: Any = None  # file_search.Stores: File Search stores by name (--store NAME)
    notes: list = field(default_factory=list)  # one-line notes for the user, as they come
    shell: Any = None  # IPython's shell, for agent mode (--agent) to run code in; None: get_ipython()
    code_runner: Callable | None = None  # runner(job): where agent code runs (the widget: the main thread)


@dataclass
class Prepared:
    """A request ready to send, and what the front end needs around it."""

    request: Any  # engine.Request
    fmt: str
    pending: Any = None  # history.PendingTurn, for a chat turn
    notes: list = field(default_factory=list)
    cache: Any = None  # caches.CacheInfo of the context cache it asks about (--cache NAME)


def _pick(option, setting):
    return setting if option is None else option


@dataclass
class Recipe:
    """Everything about a request but its prompt: made once per cell, or once for a
    whole batch (attachments are read and tools bound once)."""

    options: Options
    settings: Settings
    surroundings: Surroundings
    model: str
    config: dict
    fmt: str
    stream: bool
    schema: Any
    toolbox: Any
    server_tools: list
    max_steps: int
    attachments: list  # parts from --image, before the prompt
    front_end: str = "cell"
    cache: Any = None  # caches.CacheInfo (--cache NAME)
    notes: list = field(default_factory=list)  # notes every prompt of this recipe gets

    @classmethod
    def make(cls, options: Options, settings: Settings, surroundings: Surroundings,
             front_end: str = "cell") -> Recipe:
        refused = refusal(options, front_end)
        if refused:
            raise OptionError(refused, "Leave it out, or use a %%gemini cell.")
        _check_cache_options(options)
        cached = _find_cache(options, surroundings) if options.cache else None
        if cached is not None:
            model = cached.model  # a cache is bound to the model it was made for
        else:
            try:
                model = check("model", _pick(options.model, settings.model))
            except SettingError as exc:
                raise OptionError("No model given." if not (options.model or settings.model) else str(exc),
                                  "Use -m MODEL or %config GeminiMagics.model = '...'.") from None
        config = _generation_config(options, settings, surroundings.namespace)
        if options.agent:
            from .agent import instruction

            config["system_instruction"] = instruction(config.get("system_instruction"))
        notes = []
        if cached is not None:
            # The API takes a system instruction and tools only inside the cache: a request
            # naming a cache and setting either is refused (400). The settings' system
            # instruction is therefore left out, and said so.
            if config.pop("system_instruction", None) is not None:
                notes.append(f"GeminiMagics.system is not sent with --cache: the cache {cached.name!r} holds its "
                             "own system instruction (or none).")
            config["cached_content"] = cached.resource
        fmt = options.format or settings.format
        schema = None
        if options.schema is not None or options.json:
            from .schema import Schema, resolve

            if options.schema is None:
                schema = Schema()
            elif isinstance(options.schema, str):
                schema = resolve(options.schema, surroundings.namespace)
            else:
                schema = Schema(options.schema, getattr(options.schema, "__name__", "schema"))
            config.update(schema.config())
            fmt = "json" if options.format is None else fmt
        stream = settings.stream if options.stream is None else options.stream
        if options.voice:
            stream = False  # speech comes as one audio part; a player needs it whole
        if front_end in ("batch", "batch-api"):
            stream = False  # nothing shows an item's answer as it arrives
        recipe = cls(options, settings, surroundings, model, config, fmt, stream, schema, None, [],
                     _pick(options.max_steps, settings.max_steps), [], front_end, cached, notes)
        recipe._bind_tools()
        recipe.attachments = [recipe._attachment(spec) for spec in options.image or ()]
        return recipe

    # -- parts ----------------------------------------------------------------------------

    def _media_options(self) -> dict:
        s = self.surroundings
        downscale = self.options.downscale is not False
        return {"client": _LazyClient(s.connection) if s.connection is not None else None,
                "max_side": self.settings.max_image_side if downscale else None,
                "uploads": s.uploads, "progress": s.progress,
                "open_url": s.connection.open_url if s.connection is not None else None}

    def _attachment(self, spec):
        from .media import attachment, to_part

        if isinstance(spec, str):
            return attachment(spec, self.surroundings.namespace, **self._media_options())
        return to_part(spec, **self._media_options())

    def _bind_tools(self) -> None:
        from .tools import Toolbox, resolve

        given = self.options.tools
        names = [n.strip() for n in given.split(",") if n.strip()] if isinstance(given, str) else list(given or [])
        bound = resolve(names, self.surroundings.namespace)
        if self.options.agent:
            bound = self._agent_tools(bound) + bound
        if bound:
            approve = _pick(self.options.approve, self.settings.approve)
            connection = self.surroundings.connection
            self.toolbox = Toolbox(bound, approve=approve, ask=self.surroundings.ask_approval,
                                   code_approve=_pick(self.options.approve, self.settings.agent_approve),
                                   secrets=connection.secrets if connection is not None else None)
        for wanted, tool in (("search", "google_search"), ("code_exec", "code_execution"),
                             ("url_context", "url_context"), ("maps", "google_maps")):
            if getattr(self.options, wanted):
                self.server_tools.append({tool: {}})
        if self.options.store:
            stores = self.surroundings.stores
            if stores is None:
                raise OptionError("--store needs a connection to Gemini.", "Use it in a %%gemini cell.")
            names = [n.strip() for n in self.options.store.split(",") if n.strip()]
            resources = [stores.find(name).resource for name in names]
            self.server_tools.append({"file_search": {"file_search_store_names": resources}})

    def _agent_tools(self, user_tools: list) -> list:
        from .agent import NAMES, agent_tools
        from .context import Limits

        taken = [t.name for t in user_tools if t.name in NAMES]
        if taken:
            raise OptionError(f"--agent has its own tool named {taken[0]!r}, and so does --tools (or @tool).",
                              "Rename your function.")
        shell = self.surroundings.shell
        if shell is None:
            from IPython import get_ipython

            shell = get_ipython()
        if shell is None:
            raise OptionError("--agent runs code in an IPython kernel, and there is none here.",
                              "Use it in a notebook or in IPython.")
        s = self.settings
        connection = self.surroundings.connection
        keys = tuple(connection.secrets()) if connection is not None else ()
        limits = Limits(chars=s.summary_chars, items=s.summary_items, rows=s.summary_rows, secrets=keys)
        return agent_tools(shell, limits, in_cell=self.front_end == "cell", runner=self.surroundings.code_runner,
                           secrets=connection.secrets if connection is not None else None)

    # -- a prompt -------------------------------------------------------------------------

    def prepare(self, prompt: str, *, fields: dict | None = None, key: str | None = None,
                notes: list | None = None) -> Prepared:
        """The request for `prompt`; `fields` (a batch item's) come before the namespace
        for {fields}; `key` identifies the turn when the request is a chat's."""
        from .engine import Request

        notes = notes if notes is not None else []
        notes.extend(self.notes)
        segments = self._segments(prompt.strip(), fields, notes)
        if not any(isinstance(s, str) and s.strip() or not isinstance(s, str) for s in segments) \
                and not self.attachments:
            raise GeminiError("The prompt is empty.", "Write the prompt in the cell, below %%gemini.")
        parts = self.attachments + _parts(segments, self._media_options())
        from .client import types

        user = types().Content(role="user", parts=parts)
        request = Request(model=self.model, contents=user, config=dict(self.config), stream=self.stream,
                          schema=self.schema, toolbox=self.toolbox, server_tools=list(self.server_tools),
                          max_steps=self.max_steps)
        pending = self._chat_turn(request, user, key, notes)
        fit(request, self._media_options())
        return Prepared(request, self.fmt, pending, notes, self.cache)

    def _segments(self, prompt: str, fields: dict | None, notes: list) -> list:
        from .context import Limits, describe, error_prompt, summarize
        from .media import is_media
        from .prompt import interpolate

        s, o = self.settings, self.options
        limits = Limits(chars=s.summary_chars, items=s.summary_items, rows=s.summary_rows)

        def render(value) -> str:
            try:
                return summarize(value, limits)
            except Exception:  # a value whose str() fails still gets a placeholder
                return f"<{type(value).__name__} object>"

        namespace = self.surroundings.namespace if fields is None else {**self.surroundings.namespace, **fields}
        segments: list = [prompt]
        if fields is not None or (s.interpolate and o.interpolate is not False):
            result = interpolate(prompt, namespace, render=render, keep=is_media)
            prompt, segments = result.text, result.segments
            if result.unresolved and fields is None:
                notes.append(f"Note: left as written, no such variable: {', '.join(result.unresolved)} "
                             "(use {{ }} for literal braces).")
        if o.error:
            error = self.surroundings.last_error() if self.surroundings.last_error else None
            if error is None:
                raise GeminiError("There is no error to explain yet.", "Run the cell that fails first.")
            prompt = error_prompt(error, prompt)
            segments = [prompt]
        if o.location and coordinates(o.location) is None:
            # No geocoder here: a place name goes to the model as the user's words.
            segments = [f"(I am in {o.location}.)\n\n", *segments]
        if o.context:
            missing = [name for name in o.context if name not in namespace]
            if missing:
                raise GeminiError(f"--context: no variable named {', '.join(missing)}.",
                                  "Define it first, or check the spelling.")
            summaries = [describe(name, namespace[name], limits, fallback=render) for name in o.context]
            context = "Context from the notebook:\n\n" + "\n\n".join(summaries) + "\n\n"
            segments = [context, *segments]
        return segments

    def _chat_turn(self, request, user, key: str | None, notes: list):
        name = self.options.chat
        if self.options.cache_create:
            return None  # a cache holds one request's context, not a chat's turn
        if name is None and self.front_end not in ("batch", "batch-api"):
            name = self.surroundings.default_chat  # a batch's items are single-turn, whatever the default
        if not name or self.surroundings.conversations is None:
            return None
        from .history import begin, continuing

        chat = self.surroundings.conversations.get_or_create(name)
        budget = self.settings.chat_token_budget
        pending = begin(chat, key or "turn", user, budget)
        told = continuing(chat, pending.key)
        if told:
            notes.append(told)
        if pending.trimmed:
            notes.append(f"Chat {chat.name!r}: the {len(pending.trimmed)} oldest turn(s) are no longer sent, to "
                         f"stay within {budget:,} tokens (GeminiMagics.chat_token_budget).")
        request.contents = pending.contents
        return pending


def _check_cache_options(options: Options) -> None:
    """What cannot go with --cache or --cache-create, refused before anything is sent."""
    if options.ttl is not None and not options.cache_create:
        raise OptionError("--ttl goes with --cache-create NAME.",
                          "To keep an existing cache longer: %gemini cache-extend NAME 2h.")
    if options.cache_create and options.cache:
        raise OptionError("--cache-create and --cache cannot go together.",
                          "Create the cache in one cell, then ask about it with --cache NAME in the next.")
    if options.cache_create and options.agent:
        raise OptionError("--cache-create caches a context: agent mode's tools and instruction are not cached.",
                          "Create the cache without --agent, and ask with --agent and no cache.")
    if options.cache_create and options.chat:
        raise OptionError("--cache-create caches a context, not a chat's turn.",
                          "Leave out --chat; a chat can then ask about the cache: --chat NAME --cache CACHE.")
    if not options.cache:
        return
    own = [flag for flag, given in (("-s", options.system), ("--agent", options.agent), ("--search", options.search),
                                     ("--code-exec", options.code_exec), ("--url-context", options.url_context),
                                     ("--maps", options.maps), ("--store", options.store)) if given]
    if own:
        raise OptionError(f"{', '.join(own)} cannot go with --cache: Gemini takes a system instruction and "
                          "tools only inside the cache.",
                          "Give them to the cell that creates it (--cache-create), or ask without --cache.")


def _find_cache(options: Options, surroundings: Surroundings):
    if surroundings.caches is None:
        raise OptionError("--cache needs a connection to Gemini.", "Use it in a %%gemini cell.")
    cached = surroundings.caches.find(options.cache)
    given = (options.model or "").removeprefix("models/")
    if given and given != cached.model:
        raise OptionError(f"The context cache {options.cache!r} was made for {cached.model}: -m {given} cannot "
                          "use it.", "Leave out -m (a cell with --cache asks the cache's model), or create a cache "
                          "for that model.")
    return cached


def _generation_config(options: Options, settings: Settings, namespace: dict) -> dict:
    values = {
        "temperature": _pick(options.temperature, settings.temperature),
        "top_p": _pick(options.top_p, settings.top_p),
        "top_k": _pick(options.top_k, settings.top_k),
        "max_output_tokens": _pick(options.max_tokens, settings.max_tokens),
        "seed": _pick(options.seed, settings.seed),
        "stop_sequences": list(options.stop or settings.stop) or None,
    }
    for name, key in (("temperature", "temperature"), ("top_p", "top_p"), ("top_k", "top_k"),
                      ("max_tokens", "max_output_tokens"), ("seed", "seed")):
        try:
            check(name, values[key])
        except SettingError as exc:
            raise OptionError(f"--{name.replace('_', '-')}: {exc}".replace(f"{name} ", "", 1),
                              "See %%gemini? for the options.") from None
    system = _pick(options.system, settings.system)
    if system:
        value = namespace.get(system) if system.isidentifier() else None
        values["system_instruction"] = value if isinstance(value, str) else system
    thinking = _pick(options.thinking, settings.thinking)
    if thinking is not None or options.thoughts:
        try:
            values["thinking_config"] = check_thinking(thinking)
        except SettingError as exc:
            raise OptionError(f"--{exc}", "See %%gemini? for the options.") from None
        if options.thoughts:
            values["thinking_config"]["include_thoughts"] = True
    tier = _pick(options.service_tier, settings.service_tier)
    if tier:
        values["service_tier"] = tier
    resolution = _pick(options.media_resolution, settings.media_resolution)
    if resolution:
        values["media_resolution"] = "MEDIA_RESOLUTION_" + resolution.upper()
    image = {"aspect_ratio": options.aspect_ratio, "image_size": options.image_size}
    if any(image.values()):
        values["image_config"] = {k: v for k, v in image.items() if v}
    if options.voice:
        values["response_modalities"] = ["AUDIO"]
        values["speech_config"] = speech_config(options.voice)
    where = coordinates(options.location)
    if options.location and not (options.maps or options.search):
        raise OptionError("--location goes with --maps or --search.", "Add --maps to ground the answer in Google Maps.")
    if where is not None:
        values["tool_config"] = {"retrieval_config": {"lat_lng": {"latitude": where[0], "longitude": where[1]}}}
    return {k: v for k, v in values.items() if v is not None}


def speech_config(voice: str) -> dict:
    """--voice Kore, or one voice per speaker: --voice "Joe=Kore,Jane=Puck" (the names the
    prompt's dialogue uses)."""
    def prebuilt(name: str) -> dict:
        return {"prebuilt_voice_config": {"voice_name": name.strip()}}

    if "=" not in voice:
        return {"voice_config": prebuilt(voice)}
    speakers = []
    for pair in voice.split(","):
        speaker, equals, name = pair.partition("=")
        if not equals or not speaker.strip() or not name.strip():
            raise OptionError(f"--voice {voice!r}: give SPEAKER=VOICE pairs, comma-separated.",
                              "For example: --voice \"Joe=Kore,Jane=Puck\".")
        speakers.append({"speaker": speaker.strip(), "voice_config": prebuilt(name)})
    return {"multi_speaker_voice_config": {"speaker_voice_configs": speakers}}


def coordinates(location: str | None) -> tuple[float, float] | None:
    """"35.01,135.77" -> (35.01, 135.77); a place name (or nothing) -> None."""
    if not location:
        return None
    latitude, comma, longitude = location.partition(",")
    try:
        lat, lng = float(latitude), float(longitude)
    except ValueError:
        return None
    if not comma or not (-90 <= lat <= 90 and -180 <= lng <= 180):
        raise OptionError(f"--location {location!r}: a latitude is -90 to 90 and a longitude -180 to 180.",
                          "For example: --location 35.01,135.77, or a place name: --location Kyoto.")
    return lat, lng


def _parts(segments: list, media_options: dict) -> list:
    """The prompt's parts: text and the media named in it, in the order written;
    adjacent text is one part, as if written in one piece."""
    from .client import types

    merged: list = []
    for segment in segments:
        if isinstance(segment, str) and merged and isinstance(merged[-1], str):
            merged[-1] += segment
        else:
            merged.append(segment)
    parts = []
    for segment in merged:
        if isinstance(segment, str):
            if segment.strip():
                parts.append(types().Part(text=segment))
        else:
            from .media import to_part

            parts.append(to_part(segment, **media_options))
    return parts


def fit(request, media_options: dict, limit: int | None = None) -> None:
    """Move the largest inline parts of the request's own turn to the Files API until the
    encoded request (base64, text, history) fits under `limit` (REQUEST_LIMIT)."""
    limit = REQUEST_LIMIT if limit is None else limit
    contents = request.contents if isinstance(request.contents, list) else [request.contents]
    size = sum(_encoded_size(content) for content in contents) + len(str(request.config))
    if size <= limit:
        return
    user = contents[-1]
    inline = sorted((p for p in user.parts or [] if p.inline_data is not None and p.inline_data.data),
                    key=lambda p: len(p.inline_data.data), reverse=True)
    for part in inline:
        if size <= limit:
            break
        blob = part.inline_data
        encoded = (len(blob.data) + 2) // 3 * 4
        uploads, client = media_options.get("uploads"), media_options.get("client")
        if uploads is None or client is None:
            raise GeminiError(f"The request is {size / 2**20:.1f} MB encoded, over Gemini's 20 MB, and no Files "
                              "API client is at hand.", "Attach fewer or smaller files.")
        moved = uploads.part_for(blob.data, blob.mime_type, client, media_options.get("progress"))
        index = user.parts.index(part)
        user.parts[index] = moved
        size -= encoded
    if size > limit:
        raise GeminiError(f"The request is {size / 2**20:.1f} MB even with its files uploaded: the conversation "
                          "or the text is too long.", "Start a new chat, or send less text.")


def _encoded_size(content) -> int:
    total = 0
    for part in content.parts or []:
        if part.thought_signature:  # base64 on the wire; an image's can be hundreds of KB
            total += (len(part.thought_signature) + 2) // 3 * 4
        if part.inline_data is not None and part.inline_data.data:
            total += (len(part.inline_data.data) + 2) // 3 * 4
        elif part.text:
            total += len(part.text.encode("utf-8"))
        else:
            total += 200  # a call, a result, a file reference: small
    return total


class _LazyClient:
    """The SDK client, built only if a large file must go through the Files API."""

    def __init__(self, connection):
        self._connection = connection

    def __getattr__(self, name: str):
        return getattr(self._connection.client(), name)

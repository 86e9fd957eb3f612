"""One place that asks Gemini: settings, the connection, conversations and uploads,
shared by every front end (the cell, batches, the chat widget, the Python API).

It knows nothing of IPython. The magic makes one per shell and gives it its traitlets
as a settings snapshot; outside IPython, `gemini_magic.ask()` uses one made from the
defaults and the environment.

    session = Session(Settings(model="gemini-2.5-flash"))
    answer = session.ask("Two facts about otters")
    for event in answer: ...          # or answer.read()
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

# Made when the extension loads: what requests are built with is imported on first use.
if TYPE_CHECKING:
    from .options import Options
    from .requests import Prepared, Recipe, Surroundings
    from .settings import Settings


class Session:
    def __init__(self, settings: Settings | Callable[[], Settings] | None = None,
                 namespace: Callable[[], dict] | None = None, restore: Callable[[Any], None] | None = None):
        from .client import Connection

        if settings is None:
            from .settings import Settings

            settings = Settings.from_environment()
        self._settings = settings
        self._namespace = namespace or dict
        self.connection = Connection()
        self.default_chat: str | None = None
        self._applied: Settings | None = None
        self._quota: tuple | None = None
        self._engine = None
        self._conversations = None
        self._restore = restore  # fills a conversation on first use (the magic's: from the notebook)
        self._uploads = None
        self._caches = None
        self._stores = None
        self._lock = threading.RLock()
        self._asks = itertools.count(1)  # each ask() is a turn of its own in a chat

    # -- what it is made of, made on first use (loading the extension imports none of it) --

    @property
    def settings(self) -> Settings:
        return self._settings() if callable(self._settings) else self._settings

    @property
    def engine(self):
        with self._lock:
            if self._engine is None:
                from .engine import Engine

                self._engine = Engine(self.connection)
            self.apply(self.settings)
            return self._engine

    @property
    def conversations(self):
        with self._lock:
            if self._conversations is None:
                from .history import Conversations

                self._conversations = Conversations(self._restore)
            return self._conversations

    @property
    def uploads(self):
        with self._lock:
            if self._uploads is None:
                from .media import Uploads

                # Waits between processing checks are skipped when the check was replayed.
                self._uploads = Uploads(sleep=lambda seconds: self.engine.pause(seconds))
            return self._uploads

    @property
    def caches(self):
        """Explicit context caches by name (caches.py)."""
        with self._lock:
            if self._caches is None:
                from .caches import Caches

                self._caches = Caches(self.connection)
            return self._caches

    @property
    def stores(self):
        """File Search stores by name (file_search.py)."""
        with self._lock:
            if self._stores is None:
                from .file_search import Stores

                # Waits for indexing are skipped when the check was replayed.
                self._stores = Stores(self.connection, pause=lambda seconds: self.engine.pause(seconds))
            return self._stores

    def apply(self, settings: Settings) -> None:
        """Bring the connection, retry policy and quota in line with `settings`."""
        if settings == self._applied and self._engine is not None:
            return
        c = self.connection
        c.base_url, c.api_version, c.timeout = settings.base_url, settings.api_version, settings.timeout
        c.vertexai, c.project, c.location = settings.vertexai, settings.project, settings.location
        c.proxy, c.ca_bundle = settings.proxy, settings.ca_bundle
        if self._engine is not None:
            from .engine import RetryPolicy

            self._engine.retry = RetryPolicy(attempts=settings.retry_attempts, max_wait=settings.retry_max_wait)
            self._engine.prices = dict(settings.prices)
            quota = (settings.quota_tier, repr(sorted(settings.rate_limits.items())), settings.shared_rpm,
                     settings.track_usage)
            if quota != self._quota:
                self._configure_quota(settings)
                self._quota = quota
            self._applied = settings

    def _configure_quota(self, settings: Settings) -> None:
        from .transport.learned import LearnedLimits, default_path
        from .transport.limits import Limiter
        from .usage import UsageStore, data_dir, limits_file

        c = self.connection
        usage = UsageStore(account=c.account) if settings.track_usage else None
        overrides, problem = limits_file(data_dir() / "limits.json")
        overrides.update(settings.rate_limits)
        learned = LearnedLimits(default_path())
        if c.account:
            learned.use_account(c.account)
        c.usage = usage
        c.limiter = Limiter(settings.quota_tier, overrides, settings.shared_rpm, usage, learned)
        c.limiter.problem = problem
        if c._transport is not None:
            c.transport  # noqa: B018  (hands the new limiter to the quota layer)

    # -- asking --------------------------------------------------------------------------

    def surroundings(self, **given: Any) -> Surroundings:
        """What this session can give a request; a front end adds its own (approval)."""
        values = {"namespace": self._namespace(), "conversations": self.conversations, "uploads": self.uploads,
                  "connection": self.connection, "default_chat": self.default_chat,
                  "caches": self.caches, "stores": self.stores}
        values.update(given)
        from .requests import Surroundings

        return Surroundings(**values)

    def recipe(self, options: Options, front_end: str = "cell", **surroundings: Any) -> Recipe:
        from .requests import Recipe

        settings = self.settings
        self.engine  # noqa: B018  (the connection follows the settings before anything is built)
        return Recipe.make(options, settings, self.surroundings(**surroundings), front_end)

    def prepare(self, prompt: str, options: Options, front_end: str = "cell", key: str | None = None,
                **surroundings: Any) -> Prepared:
        return self.recipe(options, front_end, **surroundings).prepare(prompt, key=key)

    def send(self, prepared: Prepared):
        """The Answer for a prepared request; a chat turn is kept when the answer is
        complete (a failed or interrupted one leaves the conversation as it was)."""
        answer = self.engine.send(prepared.request)
        pending = prepared.pending
        if pending is not None:
            answer.on_done(lambda done: setattr(done, "commit", pending.finish(done)))
        if prepared.cache is not None:
            answer.on_done(lambda done: self._cache_outcome(done, prepared.cache))
        return answer

    def _cache_outcome(self, answer, cache) -> None:
        """A cache that turned out gone is forgotten (the next use looks for it again),
        and the error names it."""
        from .caches import named_error
        from .errors import CacheGone

        if isinstance(answer.error, CacheGone):
            self.caches.forget(cache.name)
            answer.error = named_error(answer.error, cache.name)

    def ask(self, prompt: str, *, namespace: dict | None = None, **options: Any):
        """`gemini_magic.ask`: the Answer to `prompt`, not yet sent (iterate it, or
        `.read()` it). Options are the cell's, as keyword arguments."""
        from .options import Options

        given = Options.of(options, "ask()")
        extra = {} if namespace is None else {"namespace": namespace}
        prepared = self.prepare(prompt, given, "ask", key=f"ask:{next(self._asks)}", ask_approval=_ask_in_terminal,
                                **extra)
        return self.send(prepared)

    def close(self) -> None:
        self.connection.close()


def _ask_in_terminal(call) -> bool:
    from .render.tools import call_signature

    if call.kind == "code":  # agent mode: nothing else shows the code here, so the question does
        answer = input(f"Gemini wants to run this Python:\n{call.args.get('code', '')}\n"
                       f"Run this code (#{call.number})? [y/N] ")
    else:
        answer = input(f"Allow Gemini to run {call_signature(call)}? [y/N] ")
    return answer.strip().lower() in ("y", "yes")

"""The SDK, imported lazily, and the one long-lived client per shell.

`google.genai` costs about half a second to import, so loading the extension only
starts a background thread that warms it; the first cell joins that import instead
of paying for it again.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from google import genai

    from .transport.replay import RecordingTransport

# Record/replay modes (replay.py), and the variables that set them from outside.
MODES = ("live", "record", "replay", "replay-or-record")
# Old names still taken: "cache" was replay-or-record's name until context caching
# (caches.py) made the word mean something else.
MODE_ALIASES = {"cache": "replay-or-record"}
MODE_VARIABLE = "GEMINI_MAGIC_MODE"
PATH_VARIABLE = "GEMINI_MAGIC_RECORDING"
# Seconds after loading before the SDK import starts in the background: loading
# itself stays fast, and the import does not compete with it for the GIL.
WARM_UP_DELAY = 0.3

# Environment variables the SDK itself reads for the key; GOOGLE_API_KEY wins,
# as in the SDK.
KEY_VARIABLES = ("GOOGLE_API_KEY", "GEMINI_API_KEY")
# Vertex AI, as the SDK reads it from the environment.
VERTEX_VARIABLE = "GOOGLE_GENAI_USE_VERTEXAI"
PROJECT_VARIABLE = "GOOGLE_CLOUD_PROJECT"
LOCATION_VARIABLE = "GOOGLE_CLOUD_LOCATION"
# Used when replaying without a key: the SDK refuses to build a client with none,
# and nothing that carries it leaves this process in replay mode.
NO_KEY = "no-key-replay-only"

_warm_thread: threading.Timer | None = None


def _import_sdk() -> None:
    try:
        import google.genai.types  # noqa: F401
        import markdown_it  # noqa: F401
    except Exception:  # the foreground import reports it properly
        pass


def mode_of(name: str) -> str:
    """A record/replay mode by name (an old name gives its new one); ValueError if none."""
    name = MODE_ALIASES.get(name, name)
    if name not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    return name


def warm_up(delay: float = WARM_UP_DELAY) -> None:
    """Import the SDK (and the Markdown renderer) in a daemon thread, shortly after."""
    global _warm_thread
    if _warm_thread is not None or "google.genai.types" in sys.modules:
        return
    _warm_thread = threading.Timer(delay, _import_sdk)
    _warm_thread.name = "gemini-magic-warm-up"
    _warm_thread.daemon = True
    _warm_thread.start()


def sdk():
    """Return the `google.genai` module. A warm-up that has not begun yet is called
    off (this import happens now instead); one under way is waited for."""
    if _warm_thread is not None:
        _warm_thread.cancel()
        _warm_thread.join()
    from google import genai

    return genai


def types():
    return sdk().types


def find_api_key() -> str | None:
    """The key from the environment (SDK precedence), else from Colab's secrets."""
    for name in KEY_VARIABLES:
        value = os.environ.get(name)
        if value:
            return value
    if "google.colab" in sys.modules:
        try:
            from google.colab import userdata  # type: ignore[import-not-found]

            for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY"):
                try:
                    value = userdata.get(name)
                except Exception:  # secret missing or access not granted
                    value = None
                if value:
                    return value
        except ImportError:
            pass
    return None


class Connection:
    """Builds the SDK client and keeps it until a setting that shapes it changes.

    One client per shell: clients made per call have been seen closing their HTTP
    pool early, and building one costs a few milliseconds we do not want per cell.
    Under it, one HTTP stack (transport/__init__.py) for every request: record/
    replay, the rate limiter, and the network with the SDK's proxy and TLS rules.
    """

    # A plain class, not a dataclass: it is made when the extension loads, which must
    # stay fast (making a dataclass costs a millisecond or two).
    def __init__(self, base_url: str | None = None, api_version: str | None = None, timeout: float = 120.0,
                 vertexai: bool | None = None, project: str | None = None, location: str | None = None,
                 proxy: str | None = None, ca_bundle: str | None = None, mode: str = "live",
                 recording_path: str | None = None):
        self.base_url = base_url
        self.api_version = api_version
        self.timeout = timeout
        # Vertex AI (None: GOOGLE_GENAI_USE_VERTEXAI, GOOGLE_CLOUD_PROJECT and
        # GOOGLE_CLOUD_LOCATION decide, as in the SDK). With a project, Google's
        # Application Default Credentials authenticate (`gcloud auth application-default
        # login`); without one, the API key is used in Vertex AI express mode.
        self.vertexai = vertexai
        self.project = project
        self.location = location
        # The network: a proxy for every request (over HTTPS_PROXY and the others), and a
        # CA bundle (file or folder) trusted instead of the default certificates.
        self.proxy = proxy
        self.ca_bundle = ca_bundle
        # Record/replay: kept here as plain values so that setting a mode (even from
        # the environment at load time) imports nothing; the transport is made with
        # the client.
        self.mode = mode
        self.recording_path = recording_path
        self._transport: RecordingTransport | None = None
        # Rate limits and usage (transport/limits.py, usage.py): applied to live requests
        # by the transport, counted per account (the endpoint and a fingerprint of the key).
        self.limiter: Any = None
        self.usage: Any = None
        self.account = ""
        self._client: Any = None
        self._http: Any = None
        self._fetcher: Any = None
        self._lock = threading.RLock()
        self._built_for: tuple | None = None

    def __repr__(self) -> str:
        return f"Connection(base_url={self.base_url!r}, mode={self.mode!r})"

    def api_key(self) -> str | None:
        key = find_api_key()
        if key is None and self.mode in ("replay", "replay-or-record"):
            return NO_KEY
        return key

    def set_recording(self, mode: str, path: str | None = None) -> None:
        mode = mode_of(mode)
        if mode != "live" and not path:
            raise ValueError(f"{mode} needs a recording file")
        if self._transport is not None:
            self._transport.set_mode(mode, path)
        self.mode, self.recording_path = mode, (path if mode != "live" else None)

    @property
    def transport(self) -> RecordingTransport:
        with self._lock:
            if self._transport is None:
                from .transport import stack

                self._transport = stack(self.mode, self.recording_path, proxy=self.proxy, ca_bundle=self.ca_bundle)
            stack_ = self._transport
            stack_.inner.limiter = self.limiter
            network = stack_.inner.inner
            network.proxy, network.ca_bundle = self.proxy, self.ca_bundle
            return stack_

    def use_vertex(self) -> bool:
        if self.vertexai is not None:
            return self.vertexai
        return os.environ.get(VERTEX_VARIABLE, "").strip().lower() in ("1", "true")

    def vertex_place(self) -> tuple[str | None, str | None]:
        """(project, location) for Vertex AI; with a project, the location defaults to "global"."""
        project = self.project or os.environ.get(PROJECT_VARIABLE) or None
        location = self.location or os.environ.get(LOCATION_VARIABLE) or None
        return project, (location or "global") if project else location

    def client(self) -> genai.Client:
        # Batches ask from several threads at once: one builds the client, the others
        # wait for it, so there is still one client (and one connection pool).
        with self._lock:
            return self._client_locked()

    def _client_locked(self) -> genai.Client:
        from .errors import NoApiKey

        vertex = self.use_vertex()
        project, location = self.vertex_place() if vertex else (None, None)
        key = self.api_key()
        if key is None and not project:  # a Vertex project authenticates with ADC instead
            raise NoApiKey()
        base_url = self.base_url or os.environ.get(
            "GOOGLE_VERTEX_BASE_URL" if vertex else "GOOGLE_GEMINI_BASE_URL") or None
        settings = (hash(key), base_url, self.api_version, self.timeout, vertex, project, location)
        if self._client is None or settings != self._built_for:
            if self._client is not None:
                self._client.close()
            self._client = self._build(key, base_url, vertex, project, location)
            self._built_for = settings
            self._use_account(key, base_url, vertex, project, location)
        return self._client

    def _use_account(self, key, base_url, vertex, project, location) -> None:
        """Quota is counted and learned per endpoint and key (a hash of it)."""
        from .transport.learned import account_id

        if vertex:
            endpoint = base_url or (f"vertex:{project}/{location}" if project else "vertex:express")
            key = None if project else key
        else:
            endpoint = base_url
        self.account = account_id(endpoint, None if key == NO_KEY else key)
        if self.limiter is not None:
            self.limiter.learned.use_account(self.account)
        if self.usage is not None:
            self.usage.account = self.account

    def http(self):
        """The httpx client handed to the SDK: one for the connection's life, on the stack."""
        import httpx2

        from .transport.cancel import CancelTransport

        with self._lock:
            if self._http is None:
                self._http = httpx2.Client(transport=CancelTransport(self.transport), timeout=self.timeout)
            return self._http

    def secrets(self) -> list[str]:
        """The keys in use (the environment's, and the one the client was built with): never
        to be shown or sent back to the model (tools.Toolbox, answer.py scrub them)."""
        built = getattr(self._transport, "api_key", None) if self._transport is not None else None
        found = {os.environ.get(name) for name in KEY_VARIABLES} | {find_api_key(), built}  # both may be set
        return [key for key in found if key]

    def server_time(self):
        """The server's clock at this thread's last response (a recorded one's in replay,
        so what is shown from it replays the same), else this machine's."""
        from datetime import UTC, datetime

        found = self._transport.server_time() if self._transport is not None else None
        return found or datetime.now(UTC)

    def open_url(self, url: str, timeout: float):
        """GET a URL through the same stack (proxies, certificates, record/replay);
        a streamed response, to be used as a context manager."""
        import httpx2

        from .transport.cancel import CancelTransport
        from .transport.replay import FETCH_EXTENSION

        with self._lock:
            if self._fetcher is None:
                self._fetcher = httpx2.Client(transport=CancelTransport(self.transport), follow_redirects=True)
            fetcher = self._fetcher
        request = fetcher.build_request("GET", url, timeout=timeout, extensions={FETCH_EXTENSION: True})
        return contextlib.closing(fetcher.send(request, stream=True))

    def _build(self, key: str | None, base_url: str | None, vertex: bool = False,
               project: str | None = None, location: str | None = None) -> genai.Client:
        genai = sdk()

        transport = self.transport
        transport.api_key = key  # so it can be scrubbed from anything recorded
        options = genai.types.HttpOptions(
            base_url=base_url,
            api_version=self.api_version,
            timeout=int(self.timeout * 1000),
            # Our own httpx client so that record/replay sits at the HTTP seam:
            # everything above it (SDK parsing, errors, streaming) runs unchanged.
            httpx_client=self.http(),
        )
        if vertex and project:
            # Paths under projects/P/locations/L, a Bearer token from ADC (no key is
            # sent). Replaying needs no credentials: a stand-in token never leaves.
            credentials = None
            if self.mode == "replay":
                from google.oauth2.credentials import Credentials

                credentials = Credentials(token=NO_KEY)
            return genai.Client(vertexai=True, project=project, location=location, credentials=credentials,
                                http_options=options)
        if vertex:  # Vertex AI express mode: /v1beta1/publishers/google/models/M:..., the key
            return genai.Client(vertexai=True, api_key=key, http_options=options)
        return genai.Client(api_key=key, http_options=options)

    def close(self) -> None:
        """Close the client, its HTTP clients and connection pools (the SDK never
        closes an httpx client it was handed)."""
        with self._lock:
            client, self._client, self._built_for = self._client, None, None
            http, fetcher, self._http, self._fetcher = self._http, self._fetcher, None, None
        for closeable in (client, http, fetcher):
            if closeable is not None:
                try:
                    closeable.close()
                except Exception:  # closing must not fail an unload
                    pass
        if self._transport is not None:
            self._transport.close()

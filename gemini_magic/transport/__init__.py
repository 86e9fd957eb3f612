"""The HTTP stack under the SDK, one transport wrapping the next:

    RecordingTransport   record / replay: a replayed answer goes no further (replay.py)
      QuotaTransport     waits for a rate-limit slot; every 429 teaches it (limits.py)
        NetworkTransport the SDK's own proxies and certificates (network.py)

Every request gemini-magic makes goes through it: model calls and streams, model
lists, token counts, Files API uploads, Batch API jobs and downloads, and the URL
fetches of `--image`.
"""

from __future__ import annotations

from .network import NetworkTransport
from .quota import QuotaTransport
from .replay import RecordingTransport


def stack(mode: str = "live", path=None, *, limiter=None, proxy: str | None = None,
          ca_bundle: str | None = None) -> RecordingTransport:
    """Replay around the limiter around the network."""
    return RecordingTransport(QuotaTransport(NetworkTransport(proxy, ca_bundle), limiter), mode, path)


__all__ = ["NetworkTransport", "QuotaTransport", "RecordingTransport", "stack"]

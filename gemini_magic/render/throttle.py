"""How often a streaming answer is re-rendered, for every renderer that shows it whole."""

from __future__ import annotations

import time
from collections.abc import Callable


class Throttle:
    """The first chunk shows at once; later ones at most every `interval` seconds, so a
    10,000-chunk answer does not send 10,000 messages. A long answer costs more to
    re-render each time: the gap grows to 50 times that cost, keeping rendering under
    about 2% of the stream's time. An interval of 0 switches throttling off."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self.clock = clock
        self._last = float("-inf")
        self._gap = interval
        self._renders = 0

    def render(self, show: Callable[[], None]) -> bool:
        """Call `show()` if it is time; whether it was."""
        now = self.clock()
        if now - self._last < self._gap:
            return False
        self._last = now
        show()
        # The first render pays one-time costs (imports, a first layout): only later
        # ones say what a render costs.
        if self.interval > 0 and self._renders:
            self._gap = max(self.interval, (self.clock() - now) * 50)
        self._renders += 1
        return True

    def now(self, show: Callable[[], None]) -> None:
        """Show at once (a tool call starts or ends: rare and meaningful)."""
        self._last = self.clock()
        show()

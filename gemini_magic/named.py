"""What the user names by display name and Gemini by resource name (context caches,
`cachedContents/<id>`; File Search stores, `fileSearchStores/<id>`): found once per
session and remembered, the newest of a display name winning."""

from __future__ import annotations

import threading
from datetime import UTC, datetime


class ByName:
    """A subclass gives `prefix`, `list()` (objects with `.name` and `.created`),
    `_get(resource)` and `_missing(name)` (the error to raise)."""

    prefix = ""

    def __init__(self):
        self._names: dict = {}  # resolved this session
        self._lock = threading.Lock()

    def find(self, name: str):
        """The one called `name` (the newest of that display name), or a resource name."""
        with self._lock:
            known = self._names.get(name)
        if known is not None:
            return known
        if name.startswith(self.prefix):
            info = self._get(name)
        else:
            matches = [found for found in self.list() if found.name == name]
            if not matches:
                raise self._missing(name)
            info = max(matches, key=lambda found: found.created or datetime.min.replace(tzinfo=UTC))
        self.remember(name, info)
        return info

    def remember(self, name: str, info) -> None:
        with self._lock:
            self._names[name] = info

    def forget(self, name: str) -> None:
        """Drop what this session remembers of `name` (it is gone or changed, or may be)."""
        with self._lock:
            self._names.pop(name, None)

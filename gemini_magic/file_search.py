"""File Search: ask questions of your own documents.

    %gemini store-create handbook
    %gemini store-add handbook docs/ notes.md report.pdf   # folders too; waits for indexing
    %gemini stores                                         # name, documents, size

    %%gemini --store handbook
    What is the refund policy?

Gemini keeps the documents in a File Search store (`fileSearchStores/<id>`) and, when a
cell names the store, searches it and answers with the passages it used, which show as
numbered sources (document, page where the API gives one, and the passage).

Names: NAME is the store's display name; the newest of your stores with it is used (a
resource name works too), as for context caches. Adding uploads each file (the SDK's
resumable upload), waits until Gemini has indexed it (polling the operation), and skips
a file whose name and size are already in the store. Types File Search takes are named
here by extension; others are skipped, and said so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .errors import GeminiError, explain
from .named import ByName

# The types a store takes, by extension (Google's File Search docs list many more office
# formats; these are the ones a notebook user has at hand).
TYPES = {
    ".pdf": "application/pdf", ".txt": "text/plain", ".md": "text/markdown", ".markdown": "text/markdown",
    ".csv": "text/csv", ".tsv": "text/tab-separated-values", ".json": "application/json", ".html": "text/html",
    ".htm": "text/html", ".xml": "application/xml", ".yaml": "text/plain", ".yml": "text/plain",
    ".rst": "text/plain", ".py": "text/x-python", ".ipynb": "application/json", ".js": "text/javascript",
    ".ts": "text/plain", ".java": "text/x-java", ".c": "text/x-c", ".h": "text/x-c", ".cpp": "text/x-c++",
    ".go": "text/plain", ".rs": "text/plain", ".rb": "text/plain", ".sh": "text/x-sh", ".sql": "text/plain",
    ".r": "text/plain", ".tex": "text/x-tex",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
}
MAX_FILE_BYTES = 100 * 1024 * 1024  # per document, as Google's File Search docs give it
POLL_DELAYS = (1.0, 2.0, 3.0, 5.0)  # seconds between checks of an upload's indexing
WAIT_LIMIT = 600.0  # seconds to wait for one batch of uploads to be indexed


class StoreError(GeminiError):
    kind = "store"


@dataclass
class StoreInfo:
    name: str  # display name
    resource: str  # fileSearchStores/<id>
    active: int = 0
    pending: int = 0
    failed: int = 0
    size: int = 0
    created: datetime | None = None

    @classmethod
    def of(cls, store) -> StoreInfo:
        return cls(store.display_name or store.name or "", store.name or "", store.active_documents_count or 0,
                   store.pending_documents_count or 0, store.failed_documents_count or 0, store.size_bytes or 0,
                   store.create_time)


@dataclass
class Added:
    """What store-add did: documents indexed, skipped (and why), failed (and why)."""

    indexed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def summary(self, store: str) -> str:
        parts = [f"Indexed {len(self.indexed)} file{'s' * (len(self.indexed) != 1)} into {store!r}."]
        already = [n for n, why in self.skipped if why == "already in the store"]
        other = [(n, why) for n, why in self.skipped if why != "already in the store"]
        if already:
            parts.append(f"Skipped {len(already)} already in it.")
        if other:
            parts.append("Skipped " + "; ".join(f"{n} ({why})" for n, why in other) + ".")
        if self.failed:
            parts.append("Failed: " + "; ".join(f"{n} ({why})" for n, why in self.failed) + ".")
        return " ".join(parts)


class Stores(ByName):
    """The File Search stores of one connection, by name (made on first use by the session)."""

    prefix = "fileSearchStores/"

    def __init__(self, connection, pause=None):
        super().__init__()
        self.connection = connection
        self._pause = pause or (lambda seconds: __import__("time").sleep(seconds))

    def _api(self):
        return self.connection.client().file_search_stores

    def _fail(self, exc: Exception, model: str = "") -> GeminiError:
        from .errors import Context

        code = getattr(exc, "code", None)
        if code == 403 and "FileSearchStore" in str(exc):
            # Google answers a missing store as a permission error (the SDK's recorded tests).
            return StoreError("That File Search store does not exist, or this key cannot use it.",
                              "%gemini stores lists your stores.")
        if code == 404:
            if "requested URL" in str(exc):  # the route itself is unknown there
                return StoreError("File Search is not served at this endpoint or API version.",
                                  "It is a Gemini Developer API feature; try %config GeminiMagics.api_version = "
                                  "'v1beta'.")
            return StoreError("That File Search store or document does not exist (any more).",
                              "%gemini stores lists your stores; %gemini store-docs NAME a store's documents.")
        return explain(exc, Context(model=model, base_url=self.connection.base_url or ""))

    def create(self, name: str) -> StoreInfo:
        try:
            store = self._api().create(config={"display_name": name})
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc) from exc
        info = StoreInfo.of(store)
        info.name = name
        self.remember(name, info)
        return info

    def list(self) -> list[StoreInfo]:
        try:
            return [StoreInfo.of(s) for s in self._api().list(config={"page_size": 20})]
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc) from exc

    def _get(self, resource: str) -> StoreInfo:
        try:
            return StoreInfo.of(self._api().get(name=resource))
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc) from exc

    @staticmethod
    def _missing(name: str) -> GeminiError:
        return StoreError(f"No File Search store is called {name!r}.",
                          f"Create it: %gemini store-create {name}; %gemini stores lists yours.")

    def documents(self, name: str) -> list:
        store = self.find(name)
        try:
            return list(self._api().documents.list(parent=store.resource))
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc) from exc

    def add(self, name: str, paths: list[str | os.PathLike], progress=None) -> Added:
        """Upload files (folders: the files under them) and wait until they are indexed."""
        store = self.find(name)
        done = Added()
        files = _files(paths, done)
        present = {(d.display_name, d.size_bytes) for d in self.documents(name)
                   if str(getattr(d.state, "name", d.state)) != "STATE_FAILED"}
        pending = []
        for shown, path in files:
            size = path.stat().st_size
            if (shown, size) in present:
                done.skipped.append((shown, "already in the store"))
                continue
            if size > MAX_FILE_BYTES:
                done.failed.append((shown, f"{size / 2**20:.0f} MB, over File Search's 100 MB"))
                continue
            try:
                op = self._api().upload_to_file_search_store(
                    file_search_store_name=store.resource, file=str(path),
                    config={"display_name": shown, "mime_type": TYPES[path.suffix.lower()]})
            except Exception as exc:  # noqa: BLE001
                done.failed.append((shown, self._fail(exc).message))
                continue
            pending.append((shown, op))
            if progress is not None:
                progress(len(done.indexed), len(files), len(done.failed))
        self._wait(pending, done, len(files), progress)
        self.forget(name)  # its counts changed
        return done

    def _wait(self, pending: list, done: Added, total: int, progress) -> None:
        operations = self.connection.client().operations
        delays, waited = list(POLL_DELAYS), 0.0
        while pending:
            still = []
            for shown, op in pending:
                if not op.done:
                    try:
                        op = operations.get(op)
                    except Exception as exc:  # noqa: BLE001
                        done.failed.append((shown, self._fail(exc).message))
                        continue
                if not op.done:
                    still.append((shown, op))
                elif op.error:
                    done.failed.append((shown, str((op.error or {}).get("message") or op.error)))
                else:
                    done.indexed.append(shown)
                if progress is not None:
                    progress(len(done.indexed), total, len(done.failed))
            pending = still
            if pending:
                if waited >= WAIT_LIMIT:
                    done.failed.extend((shown, f"not indexed after {WAIT_LIMIT:.0f} s (it may still be)")
                                       for shown, _ in pending)
                    return
                delay = delays.pop(0) if len(delays) > 1 else delays[0]
                self._pause(delay)
                waited += delay

    def remove(self, name: str, document: str) -> str:
        """Delete the document called `document` (its display name, or resource name)."""
        found = [d for d in self.documents(name) if document in (d.display_name, d.name)]
        if not found:
            raise StoreError(f"Store {name!r} has no document {document!r}.",
                             f"%gemini store-docs {name} lists its documents.")
        try:
            for doc in found:
                self._api().documents.delete(name=doc.name, config={"force": True})
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc) from exc
        self.forget(name)
        return found[0].name

    def delete(self, name: str) -> StoreInfo:
        store = self.find(name)
        try:
            self._api().delete(name=store.resource, config={"force": True})
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc) from exc
        finally:
            self.forget(name)
        return store


def _files(paths: list, done: Added) -> list[tuple[str, Path]]:
    """(display name, path) of each file to add: a file as given, or the files under a
    folder (named by their path from it); types File Search does not take are skipped."""
    out: list[tuple[str, Path]] = []
    for given in paths:
        path = Path(given).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and not any(
                part.startswith(".") for part in p.relative_to(path).parts))
            entries = [(str(p.relative_to(path.parent)), p) for p in found]
        elif path.is_file():
            entries = [(path.name, path)]
        else:
            raise StoreError(f"No file or folder {str(given)!r}.", "Check the path (relative to the notebook).")
        for shown, file in entries:
            if file.suffix.lower() in TYPES:
                out.append((shown, file))
            else:
                done.skipped.append((shown, f"File Search does not take {file.suffix or 'extensionless'} files"))
    return out

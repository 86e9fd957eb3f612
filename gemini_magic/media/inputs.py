"""Values that become non-text prompt parts: images, arrays, figures, files, bytes, URLs.

    part = to_part(Image.open("cat.jpg"))          # inline JPEG, longer side <= 1536 px
    part = to_part(Path("report.pdf"))             # inline application/pdf
    part = to_part(big_video_bytes, client=c, uploads=session_uploads)  # > 20 MB: Files API

Each value is converted to one `google.genai.types.Part`; where parts go in the prompt
is the caller's business (requests.py). Large data goes through the Files API once per
session (uploads.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from .images import _from_array, _from_figure, _from_pil, _shrink_encoded
from .kinds import (
    _GENERIC_TYPES,
    EXTENSIONS,
    SUPPORTED_FILES,
    SUPPORTED_VALUES,
    MediaError,
    _is_array,
    _is_figure,
    _is_pil_image,
    _is_sdk,
    _Media,
    _sniff_or_fail,
)
from .uploads import Progress, Uploads, _sdk_types

if TYPE_CHECKING:
    from google.genai import types

# Gemini refuses requests over 20 MB; anything bigger goes through the Files API
# (per part: the rest of a prompt is small next to this).
INLINE_LIMIT = 20 * 1024 * 1024
# The Files API's own limit per file.
UPLOAD_LIMIT = 2 * 1024 * 1024 * 1024
DEFAULT_MAX_SIDE = 1536
FETCH_TIMEOUT = 30.0


# -- files and URLs --------------------------------------------------------------------


def _too_large(name: str, size: int) -> MediaError:
    return MediaError(
        f"{name} is too large even for the Files API ({size / 2**30:.1f} GB; the limit is "
        f"{UPLOAD_LIMIT / 2**30:g} GB).",
        "Send a smaller or compressed file, or a clip of it.",
    )


def _from_path(path: Path, max_side: int | None) -> _Media:
    path = path.expanduser()
    if not path.exists():
        raise MediaError(f"File not found: {path}", "Check the path (relative paths start at the notebook's folder).")
    if path.is_dir():
        raise MediaError(f"{path} is a folder, not a file.", "Name one file.")
    mime = EXTENSIONS.get(path.suffix.lower())
    if mime is None:
        raise MediaError(f"Unsupported file type {path.suffix or '(none)'!r}: {path}", SUPPORTED_FILES)
    size = path.stat().st_size
    if size > UPLOAD_LIMIT:  # before reading gigabytes into memory
        raise _too_large(str(path), size)
    return _shrink_encoded(_Media(path.read_bytes(), mime, path.name), max_side)


def _is_url(text: str) -> bool:
    return text[:8].lower().startswith(("http://", "https://"))


def _fetch(url: str, max_side: int | None, open_url: Callable | None = None) -> _Media:
    """Download a URL. `open_url(url, timeout)` is the connection's (client.py), so the
    fetch goes through the proxies, certificates and record/replay of every request."""
    import httpx2

    if open_url is None:
        def open_url(address: str, timeout: float):
            return httpx2.stream("GET", address, timeout=timeout, follow_redirects=True)
    try:
        with open_url(url, FETCH_TIMEOUT) as response:
            response.raise_for_status()
            declared = int(response.headers.get("content-length") or 0)
            if declared > UPLOAD_LIMIT:
                raise _too_large(url, declared)
            data = bytearray()
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > UPLOAD_LIMIT:
                    raise _too_large(url, len(data))
            content_type = response.headers.get("content-type", "")
    except httpx2.HTTPStatusError as exc:
        status = exc.response
        raise MediaError(
            f"Could not fetch URL: {url} ({status.status_code} {status.reason_phrase}).",
            "Check the address; the page must be public.",
        ) from exc
    except (httpx2.HTTPError, httpx2.InvalidURL, ValueError) as exc:
        raise MediaError(
            f"Could not fetch URL: {url} ({type(exc).__name__}: {exc}).",
            "Check the address and your network (proxy: HTTPS_PROXY, NO_PROXY or %config GeminiMagics.proxy).",
        ) from exc
    data = bytes(data)
    mime = content_type.split(";")[0].strip().lower()
    if mime in _GENERIC_TYPES:
        mime = _sniff_or_fail(data, url)
    name = url.split("?")[0].rstrip("/").rsplit("/", 1)[-1] or url
    return _shrink_encoded(_Media(data, mime, name), max_side)


# -- conversion ------------------------------------------------------------------------


def _to_media(value: Any, max_side: int | None, open_url: Callable | None = None) -> _Media:
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        return _Media(data, _sniff_or_fail(data, "these bytes"), "bytes")
    if isinstance(value, PurePath):
        return _from_path(Path(value), max_side)
    if isinstance(value, str):
        return _fetch(value, max_side, open_url) if _is_url(value) else _from_path(Path(value), max_side)
    if _is_pil_image(value):
        return _from_pil(value, max_side)
    if _is_array(value):
        return _from_array(value, max_side)
    if _is_figure(value):
        return _from_figure(value, max_side)
    raise MediaError(f"Cannot send a {type(value).__name__} as an image or file.", SUPPORTED_VALUES)


def to_part(
    value: Any,
    *,
    client: Any = None,
    max_side: int | None = DEFAULT_MAX_SIDE,
    uploads: Uploads | None = None,
    progress: Progress | None = None,
    open_url: Callable | None = None,
) -> types.Part:
    """One value as one `types.Part`: inline bytes, or a Files API reference when the
    data is over INLINE_LIMIT (which needs `client`).

        >>> to_part(b"%PDF-1.4 ...").inline_data.mime_type
        'application/pdf'

        to_part(Image.new("RGB", (4000, 1000)))                  # inline PNG, 1536x384
        to_part(Path("talk.mp4"), client=c, uploads=u, progress=bar)  # 300 MB: file_data

    Raises MediaError for what cannot be sent, with the supported kinds in its hint.
    """
    types = _sdk_types()
    if _is_sdk(value, "Part"):
        return value
    if _is_sdk(value, "File"):  # an upload the user made with client.files.upload
        return types.Part(file_data=types.FileData(file_uri=value.uri, mime_type=value.mime_type))
    media = _to_media(value, max_side, open_url)
    size = len(media.data)
    if size > UPLOAD_LIMIT:
        raise _too_large(media.name, size)
    if size <= INLINE_LIMIT:
        return types.Part.from_bytes(data=media.data, mime_type=media.mime_type)
    if client is None:
        raise MediaError(
            f"{media.name} ({size / 2**20:.0f} MB) is over the {INLINE_LIMIT / 2**20:g} MB inline limit "
            "and needs the Files API, but no client was given.",
            "Pass client= to to_part.",
        )
    uploads = uploads if uploads is not None else Uploads()
    return uploads.part_for(media.data, media.mime_type, client, progress, display_name=media.name)


# Per attachment (Part.media_resolution): the request-wide levels, and ultra_high (Gemini 3).
PART_RESOLUTIONS = ("low", "medium", "high", "ultra_high")


def attachment(spec: str, namespace: dict, **kwargs: Any) -> types.Part:
    """The part for `--image SPEC`: a variable of the namespace, else a file path or URL.

        attachment("img", shell.user_ns)                 # the variable img
        attachment("plots/fig1.png", shell.user_ns)      # a file
        attachment("https://example.com/cat.jpg", {})    # a download

    `kwargs` go to `to_part` (client, max_side, uploads, progress, open_url). A level
    before the name sets this attachment's media resolution, whatever the request's:
    `high:scan.png`, `low:img`, `ultra_high:chart.png` (Gemini 3).
    """
    spec = spec.strip()
    level, colon, rest = spec.partition(":")
    if colon and level.lower() in PART_RESOLUTIONS and rest.strip():
        part = attachment(rest, namespace, **kwargs)
        resolution = _sdk_types().PartMediaResolution(level="MEDIA_RESOLUTION_" + level.upper())
        return part.model_copy(update={"media_resolution": resolution})
    if spec in namespace and spec.isidentifier():
        return to_part(namespace[spec], **kwargs)
    if spec.isidentifier() and not Path(spec).expanduser().exists():
        raise MediaError(
            f"--image {spec}: there is no variable or file named {spec!r}.",
            "Give a variable name, a file path or an http(s) URL.",
        )
    return to_part(spec, **kwargs)


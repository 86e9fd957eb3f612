"""Values that become non-text prompt parts: images, arrays, figures, files, bytes, URLs.

    part = to_part(Image.open("cat.jpg"))          # inline JPEG, longer side <= 1536 px
    part = to_part(Path("report.pdf"))             # inline application/pdf
    part = to_part(big_video_bytes, client=c, uploads=session_uploads)  # > 20 MB: Files API

Each value is converted to one `google.genai.types.Part`; where parts go in the prompt
is the caller's business. PIL, numpy, matplotlib and httpx2 are imported only when a
value needs them (a value of one of their types means the package is loaded already),
so importing this module costs nothing. Large data goes through the Files API once per
session: `Uploads` remembers what it uploaded by content hash.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from .errors import GeminiError, explain

if TYPE_CHECKING:
    from google.genai import types

# Gemini refuses requests over 20 MB; anything bigger goes through the Files API
# (per part: the rest of a prompt is small next to this).
INLINE_LIMIT = 20 * 1024 * 1024
# The Files API's own limit per file.
UPLOAD_LIMIT = 2 * 1024 * 1024 * 1024
DEFAULT_MAX_SIDE = 1536
FETCH_TIMEOUT = 30.0
# A 2-D array smaller than this is more likely a matrix of numbers than a picture:
# interpolated, it stays text. (An explicit to_part / --image converts any size.)
ARRAY_MIN_SIDE = 16

EXTENSIONS = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".pdf": "application/pdf",
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".csv": "text/csv",
    ".mp3": "audio/mp3",
    ".wav": "audio/wav",
    ".mp4": "video/mp4",
}
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")
SUPPORTED_FILES = "Supported files: " + " ".join(EXTENSIONS) + "."
SUPPORTED_VALUES = (
    "Send PIL images, numpy image arrays (HxW, HxWx3, HxWx4), matplotlib figures, bytes, "
    "pathlib.Path or a file path / http(s) URL string (" + " ".join(EXTENSIONS) + ")."
)
SUPPORTED_BYTES = "Recognized bytes: PNG, JPEG, GIF, WebP, PDF, WAV, MP3, MP4, or UTF-8 text."

# Content-Types that say nothing about the content: sniff instead.
_GENERIC_TYPES = {"", "application/octet-stream", "binary/octet-stream", "application/x-download"}

Progress = Callable[[str, "float | None"], None]


class MediaError(GeminiError):
    """A value that cannot be sent: unknown type, missing file, failed fetch or upload."""

    kind = "media"


@dataclass
class _Media:
    data: bytes
    mime_type: str
    name: str  # for messages and the uploaded file's display name


# -- recognizing values ----------------------------------------------------------------


def _from_package(value: Any, package: str) -> bool:
    """Whether value's class (or a base) comes from `package`, without importing it:
    an instance of a package's class means the package is imported already."""
    return any(cls.__module__.partition(".")[0] == package for cls in type(value).__mro__)


def _is_pil_image(value: Any) -> bool:
    if not _from_package(value, "PIL"):
        return False
    from PIL import Image

    return isinstance(value, Image.Image)


def _is_figure(value: Any) -> bool:
    if not _from_package(value, "matplotlib"):
        return False
    from matplotlib.figure import Figure

    return isinstance(value, Figure)


def _is_array(value: Any) -> bool:
    if not _from_package(value, "numpy"):
        return False
    import numpy as np

    return isinstance(value, np.ndarray)


def _image_array_problem(array: Any) -> str | None:
    """Why an array is not an image, or None when it is one."""
    import numpy as np

    shape = array.shape
    if not (len(shape) == 2 or (len(shape) == 3 and shape[2] in (3, 4))):
        return f"an array of shape {shape} is not an image (HxW, HxWx3 or HxWx4)"
    if 0 in shape[:2]:
        return f"an array of shape {shape} has no pixels"
    if array.dtype == np.uint8 or array.dtype == np.bool_:
        return None
    if array.dtype.kind == "f":
        if np.isfinite(array).all() and array.min() >= 0 and array.max() <= 1:
            return None
        return "a float array must hold values in [0, 1] to be an image"
    return f"an array of dtype {array.dtype} is not an image (uint8, or float in [0, 1])"


def _is_sdk(value: Any, name: str) -> bool:
    cls = type(value)
    return cls.__name__ == name and cls.__module__ == "google.genai.types"


def is_media(value: Any) -> bool:
    """Whether an interpolated value must become a non-text part.

    Plain strings are never media here (a path in a prompt is just text); only
    `--image` and `to_part` read them as paths or URLs.

        >>> is_media(b"%PDF-1.4")
        True
        >>> is_media("photo.png")
        False
    """
    if isinstance(value, (bytes, bytearray, memoryview, PurePath)):
        return True
    if _is_pil_image(value) or _is_figure(value):
        return True
    if _is_sdk(value, "Part") or _is_sdk(value, "File"):
        return True
    if _is_array(value):
        return _image_array_problem(value) is None and min(value.shape[:2]) >= ARRAY_MIN_SIDE
    return False


# -- MIME types ------------------------------------------------------------------------


def sniff(data: bytes) -> str | None:
    """The MIME type told by the first bytes, or None.

        >>> sniff(b"%PDF-1.4 ...")
        'application/pdf'
    """
    head = bytes(data[:16])
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "audio/wav"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head[4:8] == b"ftyp":
        return "audio/mp4" if head[8:12] in (b"M4A ", b"M4B ") else "video/mp4"
    if head.startswith(b"ID3") or _mp3_frame(head):
        return "audio/mp3"
    if _is_utf8(data):
        return "text/plain"
    return None


def _mp3_frame(head: bytes) -> bool:
    # MPEG audio frame sync: 11 set bits, then a layer other than "reserved" (00),
    # which keeps AAC/ADTS (layer 00) out.
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and (head[1] >> 1) & 0x3 != 0


def _is_utf8(data: bytes) -> bool:
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        return False
    # NUL bytes decode as UTF-8 but mean binary data.
    return "\x00" not in text


def _sniff_or_fail(data: bytes, what: str) -> str:
    mime = sniff(data)
    if mime is None:
        raise MediaError(f"Could not tell what kind of data {what} is ({len(data)} bytes).", SUPPORTED_BYTES)
    return mime


# -- images ----------------------------------------------------------------------------


def _downscale(image: Any, max_side: int | None) -> Any:
    """The image with its longer side at most max_side (aspect kept); the same object
    when it is small enough: never upscaled."""
    if max_side is None or max(image.size) <= max_side:
        return image
    from PIL import Image

    width, height = image.size
    scale = max_side / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # Palette and 1-bit images resize with NEAREST only; LANCZOS needs real channels.
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode == "1":
        image = image.convert("L")
    return image.resize(size, Image.Resampling.LANCZOS)


def _upright(image: Any) -> Any:
    """Apply an EXIF rotation: re-encoding drops EXIF, and with it the orientation."""
    try:
        orientation = image.getexif().get(0x0112, 1)
    except Exception:  # unreadable EXIF: leave the pixels as they are
        return image
    if orientation in (None, 1):
        return image
    from PIL import ImageOps

    return ImageOps.exif_transpose(image)


_PNG_MODES = {"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"}


def _encode(image: Any, jpeg: bool, untouched: bool) -> _Media:
    buffer = io.BytesIO()
    if jpeg:
        if image.mode not in ("L", "RGB", "CMYK"):
            image = image.convert("RGB")
        # An unmodified JPEG keeps its own quantization: no second generation loss.
        if untouched and getattr(image, "quantization", None):
            image.save(buffer, format="JPEG", quality="keep", subsampling="keep")
        else:
            image.save(buffer, format="JPEG", quality=90)
        return _Media(buffer.getvalue(), "image/jpeg", "image.jpg")
    if image.mode not in _PNG_MODES:
        has_alpha = "A" in image.mode or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    image.save(buffer, format="PNG")
    return _Media(buffer.getvalue(), "image/png", "image.png")


def _from_pil(image: Any, max_side: int | None) -> _Media:
    jpeg = getattr(image, "format", None) == "JPEG"
    ready = _downscale(_upright(image), max_side)
    return _encode(ready, jpeg, untouched=ready is image)


def _from_array(array: Any, max_side: int | None) -> _Media:
    import numpy as np
    from PIL import Image

    problem = _image_array_problem(array)
    if problem is not None:
        raise MediaError(f"Cannot send this array as an image: {problem}.", SUPPORTED_VALUES)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype.kind == "f":
        array = (array * 255).round().astype(np.uint8)
    image = Image.fromarray(np.ascontiguousarray(array))
    return _encode(_downscale(image, max_side), jpeg=False, untouched=False)


def _from_figure(figure: Any, max_side: int | None) -> _Media:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=figure.dpi)
    return _shrink_encoded(_Media(buffer.getvalue(), "image/png", "figure.png"), max_side)


def _shrink_encoded(media: _Media, max_side: int | None) -> _Media:
    """Downscale an encoded image that is too large; small ones keep their exact bytes."""
    if max_side is None or media.mime_type not in IMAGE_TYPES:
        return media
    from PIL import Image

    try:
        image = Image.open(io.BytesIO(media.data))  # reads the header only
        too_big = max(image.size) > max_side
    except Exception as exc:
        raise MediaError(f"{media.name} is not a readable image ({type(exc).__name__}).", SUPPORTED_FILES) from exc
    # An animated GIF would lose its frames; send it as it is.
    if not too_big or getattr(image, "is_animated", False):
        return media
    shrunk = _encode(_downscale(_upright(image), max_side), jpeg=image.format == "JPEG", untouched=False)
    return _Media(shrunk.data, shrunk.mime_type, media.name)


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


def _sdk_types():
    from .client import types as sdk_types  # waits for the background import, if any

    return sdk_types()


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


def attachment(spec: str, namespace: dict, **kwargs: Any) -> types.Part:
    """The part for `--image SPEC`: a variable of the namespace, else a file path or URL.

        attachment("img", shell.user_ns)                 # the variable img
        attachment("plots/fig1.png", shell.user_ns)      # a file
        attachment("https://example.com/cat.jpg", {})    # a download

    `kwargs` go to `to_part` (client, max_side, uploads, progress, open_url).
    """
    spec = spec.strip()
    if spec in namespace and spec.isidentifier():
        return to_part(namespace[spec], **kwargs)
    if spec.isidentifier() and not Path(spec).expanduser().exists():
        raise MediaError(
            f"--image {spec}: there is no variable or file named {spec!r}.",
            "Give a variable name, a file path or an http(s) URL.",
        )
    return to_part(spec, **kwargs)


# -- the Files API ---------------------------------------------------------------------


class _ReadProgress(io.BytesIO):
    """Reports how much the SDK has sent: it reads the stream one chunk per request,
    so at each read the bytes before it are on their way."""

    def __init__(self, data: bytes, report: Callable[[float], None]):
        super().__init__(data)
        self._size = len(data) or 1
        self._report = report

    def read(self, size: int | None = -1) -> bytes:
        sent = self.tell()
        if sent:
            self._report(sent / self._size)
        return super().read(size)


def _silent(stage: str, fraction: float | None) -> None:
    pass


def _state(file: Any) -> str:
    state = getattr(file, "state", None)
    return getattr(state, "name", None) or str(state or "")


class Uploads:
    """Files uploaded in this session, by content: the same bytes upload once.

        uploads = Uploads()
        part = uploads.part_for(video_bytes, "video/mp4", client, progress=bar)
        again = uploads.part_for(video_bytes, "video/mp4", client)   # no request

    `progress(stage, fraction)` is called with ("uploading", 0.0), ("uploading", f)
    as chunks go, ("uploaded", 1.0), ("processing", None) while Gemini prepares the
    file, and ("done", 1.0). A cached file reports nothing. `max_wait` bounds the
    wait for processing (seconds); `sleep` and `clock` are for tests.
    """

    # Uploads expire after 48 hours; one about to expire is uploaded again.
    EXPIRY_MARGIN = timedelta(hours=1)

    def __init__(
        self,
        *,
        max_wait: float = 300.0,
        poll_interval: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.max_wait = max_wait
        self.poll_interval = poll_interval
        self.sleep = sleep
        self.clock = clock
        self.files: dict[tuple[str, str], Any] = {}  # (sha256, mime type) -> types.File
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.files)

    def clear(self) -> None:
        """Forget every upload (the files stay on the server until they expire)."""
        with self._lock:
            self.files.clear()

    def part_for(
        self,
        data: bytes,
        mime_type: str,
        client: Any,
        progress: Progress | None = None,
        *,
        display_name: str | None = None,
    ) -> types.Part:
        """A file_data part for `data`, uploading it unless this session already did."""
        report = progress or _silent
        digest = hashlib.sha256(data).hexdigest()
        name = display_name or f"upload-{digest[:12]}"
        # Keyed by type too: the same text sent as .md and as .txt are two parts.
        key = (digest, mime_type)
        with self._lock:
            file = self.files.get(key)
        busy = file is None or self._expiring(file)
        if busy:
            file = self._upload(data, mime_type, client, report, name)
            # Cached before processing ends: a run that gave up waiting reuses it.
            with self._lock:
                self.files[key] = file
        if _state(file) == "PROCESSING":
            busy = True
            file = self._wait_until_active(file, client, report, name)
            with self._lock:
                self.files[key] = file
        if _state(file) == "FAILED":
            with self._lock:
                self.files.pop(key, None)  # so that running the cell again uploads afresh
            error = getattr(file, "error", None)
            why = f": {error.message}" if error is not None and error.message else "."
            raise MediaError(
                f"Gemini could not process {name}{why}",
                "The file may be damaged or in a format Gemini cannot read; try another format.",
            )
        if busy:
            report("done", 1.0)
        types = _sdk_types()
        return types.Part(file_data=types.FileData(file_uri=file.uri, mime_type=mime_type))

    def _expiring(self, file: Any) -> bool:
        expires = getattr(file, "expiration_time", None)
        if not isinstance(expires, datetime):
            return False
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
        return expires - datetime.now(UTC) < self.EXPIRY_MARGIN

    def _upload(self, data: bytes, mime_type: str, client: Any, report: Progress, name: str) -> Any:
        report("uploading", 0.0)
        stream = _ReadProgress(data, lambda fraction: report("uploading", fraction))
        try:
            file = client.files.upload(file=stream, config={"mime_type": mime_type, "display_name": name})
        except GeminiError:
            raise
        except Exception as exc:  # SDK / HTTP errors read like every other request's
            raise explain(exc) from exc
        report("uploaded", 1.0)
        return file

    def _wait_until_active(self, file: Any, client: Any, report: Progress, name: str) -> Any:
        """Poll files.get while the file is PROCESSING; the file in its final state."""
        deadline = self.clock() + self.max_wait
        delay = self.poll_interval
        first = True
        while _state(file) == "PROCESSING":
            # The first look is immediate: images are usually ready at once.
            if not first:
                if self.clock() >= deadline:
                    raise MediaError(
                        f"{name} is still being processed by Gemini after {self.max_wait:g} s.",
                        "Long videos take minutes: run the cell again later (the upload is reused).",
                    )
                self.sleep(max(0.0, min(delay, deadline - self.clock())))
                delay = min(delay * 1.5, 5.0)
            first = False
            report("processing", None)
            try:
                file = client.files.get(name=file.name)
            except Exception as exc:
                raise explain(exc) from exc
        return file


# -- answers that carry media ------------------------------------------------------------


class MediaAnswer(str):
    """An answer's text that also carries the images and audio it came with: it is
    the text everywhere a str is expected, and `.images` (PIL images) and `.audio`
    (a list of (mime type, bytes)) hold the rest.

        %%gemini -m gemini-2.5-flash-image -o drawing
        Draw a cat.

        drawing.images[0].save("cat.png")
    """

    images: list
    audio: list


def answer_value(answer) -> Any:
    """What `--out` stores: the parsed value with structured output, else the text,
    as a MediaAnswer when the answer has image or audio parts."""
    if answer.parsed is not None:
        return answer.parsed
    images, audio = [], []
    for part in answer.other_parts:
        blob = part.inline_data
        if blob is None or not blob.data:
            continue
        mime = (blob.mime_type or "").lower()
        if mime in IMAGE_TYPES:
            from PIL import Image, UnidentifiedImageError

            try:
                images.append(Image.open(io.BytesIO(blob.data)))
            except (UnidentifiedImageError, OSError):
                pass  # unreadable bytes: the answer's text is still stored
        elif mime.startswith("audio/"):
            audio.append((mime, blob.data))
    if not images and not audio:
        return answer.text
    value = MediaAnswer(answer.text)
    value.images, value.audio = images, audio
    return value

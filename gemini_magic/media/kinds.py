"""What a value is, as a prompt part: media or text, and its MIME type.

PIL, numpy and matplotlib are never imported here to find out: a value of one of
their types means the package is loaded already.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from ..errors import GeminiError

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


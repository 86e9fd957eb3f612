"""How many input tokens a request will cost, estimated from its parts, as the API counts them.

Only needed where a tokens-per-minute limit is known, so it runs only then. Media
are counted from what they are, never from the length of their base64 text (a
750 KB photo is 1,000,000 characters of base64 but about 1,300 tokens):
- an image is 258 tokens up to 384 px a side, else 258 per 768x768 tile;
- audio 32 tokens a second, video 263 a second (the duration estimated from the
  size where the container is not read);
- a PDF 258 tokens a page;
- text about four characters a token; thought signatures are not input the
  model reads, and are not counted.
(https://ai.google.dev/gemini-api/docs/tokens)
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
from typing import Any

IMAGE_TOKENS = 258
TILE = 768
SMALL_IMAGE = 384
AUDIO_TOKENS_PER_SECOND = 32
VIDEO_TOKENS_PER_SECOND = 263
PDF_PAGE_TOKENS = 258
# Bytes a second, for a duration when the container is not read: 128 kbit/s audio,
# 2 Mbit/s video (typical of what is uploaded; an estimate is all a limiter needs).
AUDIO_BYTES_PER_SECOND = 16_000
VIDEO_BYTES_PER_SECOND = 250_000
# A Files API reference carries no size: count it like one image.
FILE_REFERENCE_TOKENS = IMAGE_TOKENS


def request_tokens(body: bytes) -> int:
    """Estimated input tokens of a generateContent request body (JSON bytes)."""
    try:
        data = json.loads(body)
    except ValueError:
        return len(body) // 4
    return _value_tokens(data)


def _value_tokens(value: Any) -> int:
    if isinstance(value, dict):
        total = 0
        for key, item in value.items():
            if key in ("thoughtSignature", "thought_signature"):
                continue
            if key in ("inlineData", "inline_data") and isinstance(item, dict):
                total += blob_tokens(_get(item, "mimeType") or "", _get(item, "data") or "")
            elif key in ("fileData", "file_data"):
                total += FILE_REFERENCE_TOKENS
            else:
                total += _value_tokens(item)
        return total
    if isinstance(value, list):
        return sum(_value_tokens(item) for item in value)
    if isinstance(value, str):
        return len(value) // 4 + 1
    return 1


def _get(blob: dict, camel: str) -> Any:
    return blob.get(camel) or blob.get(re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower())


def blob_tokens(mime_type: str, data: str) -> int:
    """Tokens of one inline part, from its base64 data."""
    mime = mime_type.lower()
    size = len(data) * 3 // 4 - data[-2:].count("=")
    if mime.startswith(("image/", "application/pdf")):
        return bytes_tokens(mime, _decode(data))
    if mime.startswith("audio/"):
        return math.ceil(size / AUDIO_BYTES_PER_SECOND) * AUDIO_TOKENS_PER_SECOND
    if mime.startswith("video/"):
        return math.ceil(size / VIDEO_BYTES_PER_SECOND) * VIDEO_TOKENS_PER_SECOND
    return size // 4 + 1  # text-like files


def image_tokens(data: bytes) -> int:
    """258 tokens for a small image, else 258 per 768-pixel tile."""
    try:
        from PIL import Image

        width, height = Image.open(io.BytesIO(data)).size  # reads the header only
    except Exception:  # an image PIL cannot read: count it as one tile
        return IMAGE_TOKENS
    if width <= SMALL_IMAGE and height <= SMALL_IMAGE:
        return IMAGE_TOKENS
    return math.ceil(width / TILE) * math.ceil(height / TILE) * IMAGE_TOKENS


def _pdf_pages(data: bytes) -> int:
    # Page objects, not /Pages tree nodes: good enough to size a request.
    return len(re.findall(rb"/Type\s*/Page(?!s)", data))


def _decode(data: str) -> bytes:
    padded = data + "=" * (-len(data) % 4)
    try:
        return base64.urlsafe_b64decode(padded)
    except ValueError:
        return base64.b64decode(padded)


def contents_tokens(contents: list) -> int:
    """Estimated input tokens of SDK Contents, read from the parts themselves (cheap: no
    JSON is made, no bytes are encoded)."""
    total = 0
    for content in contents:
        if isinstance(content, str):  # Request(contents="Hi") is allowed
            total += len(content) // 4 + 1
            continue
        for part in getattr(content, "parts", None) or []:
            if part.text:
                total += len(part.text) // 4 + 1
            elif part.inline_data is not None and part.inline_data.data:
                total += bytes_tokens(part.inline_data.mime_type or "", part.inline_data.data)
            elif part.file_data is not None:
                total += FILE_REFERENCE_TOKENS
            elif part.function_call is not None or part.function_response is not None:
                total += len(str(part.function_call or part.function_response)) // 4 + 1
    return total


def bytes_tokens(mime_type: str, data: bytes) -> int:
    """Tokens of one inline part, from its bytes (see blob_tokens)."""
    mime = mime_type.lower()
    if mime.startswith("image/"):
        return image_tokens(data)
    if mime.startswith("audio/"):
        return math.ceil(len(data) / AUDIO_BYTES_PER_SECOND) * AUDIO_TOKENS_PER_SECOND
    if mime.startswith("video/"):
        return math.ceil(len(data) / VIDEO_BYTES_PER_SECOND) * VIDEO_TOKENS_PER_SECOND
    if mime == "application/pdf":
        return max(1, _pdf_pages(data)) * PDF_PAGE_TOKENS
    return len(data) // 4 + 1

"""Images made ready to send: upright, downscaled to what the model needs, encoded."""

from __future__ import annotations

import io
from typing import Any

from .kinds import IMAGE_TYPES, SUPPORTED_FILES, SUPPORTED_VALUES, MediaError, _image_array_problem, _Media


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


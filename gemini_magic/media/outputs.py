"""Answers that carry media: what `--out` stores for an image or audio answer."""

from __future__ import annotations

import io
from typing import Any

from .kinds import IMAGE_TYPES


class MediaAnswer(str):
    """An answer's text that also carries the images and audio it came with: it is
    the text everywhere a str is expected, and `.images` (PIL images) and `.audio`
    (a list of (mime type, bytes); speech as WAV) hold the rest.

        %%gemini -m gemini-2.5-flash-image -o drawing
        Draw a cat.

        drawing.images[0].save("cat.png")

        %%gemini -m gemini-2.5-flash-preview-tts --voice Kore -o hello
        Say cheerfully: have a wonderful day!

        open("hello.wav", "wb").write(hello.audio[0][1])
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
            from .audio import playable

            audio.append(playable(mime, blob.data))  # TTS's raw PCM as a WAV file
    if not images and not audio:
        return answer.text
    value = MediaAnswer(answer.text)
    value.images, value.audio = images, audio
    return value


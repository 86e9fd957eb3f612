"""Speech out: Gemini's TTS models answer raw PCM (`audio/L16;codec=pcm;rate=24000`),
which no browser plays and no player opens. It is wrapped as WAV (the stdlib's `wave`)
wherever it is shown or stored; the conversation keeps the part as Gemini sent it."""

from __future__ import annotations

import io
import wave

PCM_TYPES = ("audio/l16", "audio/pcm")
DEFAULT_RATE = 24_000  # Gemini's TTS output


def is_pcm(mime_type: str) -> bool:
    return (mime_type or "").lower().split(";")[0].strip() in PCM_TYPES


def pcm_to_wav(data: bytes, rate: int = DEFAULT_RATE, channels: int = 1) -> bytes:
    """16-bit little-endian PCM samples as a WAV file."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(data)
    return out.getvalue()


def playable(mime_type: str, data: bytes) -> tuple[str, bytes]:
    """(mime type, bytes) a browser plays and a file keeps: PCM becomes WAV, at the rate
    its type names (`rate=24000`); anything else is returned as it is."""
    if not is_pcm(mime_type):
        return mime_type, data
    params = dict(p.strip().partition("=")[::2] for p in mime_type.split(";")[1:] if "=" in p)
    try:
        rate = int(params.get("rate", DEFAULT_RATE))
        channels = int(params.get("channels", 1))
    except ValueError:
        rate, channels = DEFAULT_RATE, 1
    return "audio/wav", pcm_to_wav(data, rate, channels)

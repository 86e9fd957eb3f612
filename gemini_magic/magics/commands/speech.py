"""%gemini voices: the voices of Gemini's speech (TTS) models, for --voice."""

from __future__ import annotations

# Google's prebuilt TTS voices and their styles, from the speech-generation docs
# (https://ai.google.dev/gemini-api/docs/speech-generation, read 2026-03). Shown when the
# API's own list (client.voices, new in google-genai 3.x) is not served.
VOICES = {
    "Zephyr": "Bright", "Puck": "Upbeat", "Charon": "Informative", "Kore": "Firm", "Fenrir": "Excitable",
    "Leda": "Youthful", "Orus": "Firm", "Aoede": "Breezy", "Callirrhoe": "Easy-going", "Autonoe": "Bright",
    "Enceladus": "Breathy", "Iapetus": "Clear", "Umbriel": "Easy-going", "Algieba": "Smooth", "Despina": "Smooth",
    "Erinome": "Clear", "Algenib": "Gravelly", "Rasalgethi": "Informative", "Laomedeia": "Upbeat",
    "Achernar": "Soft", "Alnilam": "Firm", "Schedar": "Even", "Gacrux": "Mature", "Pulcherrima": "Forward",
    "Achird": "Friendly", "Zubenelgenubi": "Casual", "Vindemiatrix": "Gentle", "Sadachbia": "Lively",
    "Sadaltager": "Knowledgeable", "Sulafat": "Warm",
}


def voices(magics, args) -> None:
    found = _listed(magics)
    if found:
        rows, source = found, "the API's voice list"
    else:
        rows, source = list(VOICES.items()), "Google's documentation (read 2026-03; the API did not list them)"
    width = max(len(name) for name, _ in rows)
    print(f"Voices for --voice, from {source}:")
    for name, style in rows:
        print(f"  {name.ljust(width)}  {style}".rstrip())
    print('Use: %%gemini -m gemini-2.5-flash-preview-tts --voice Kore, or per speaker: --voice "Joe=Kore,Jane=Puck".')


def _listed(magics) -> list[tuple[str, str]]:
    """The prebuilt voices the API lists, or [] when it lists none (not served, an
    endpoint without it, replay without it): a nicety that never fails the command."""
    try:
        response = magics.session.connection.client().voices.list(type_=["prebuilt"], page_size=100)
        found = getattr(response, "voices", None) or []
        return [(v.id or v.display_name or "", v.description or v.persona or "") for v in found if v.id]
    except Exception:  # noqa: BLE001  (any failure: the documented list is shown instead)
        return []

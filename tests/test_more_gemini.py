"""More of Gemini in a cell: speech out (--voice, WAV), image generation options and
galleries, editing an image in a chat, and Google Maps grounding (--maps, --location).

The real SDK over HTTP to tests/fake_gemini; answers are queued as the real API shapes
them (inlineData parts, groundingMetadata with maps chunks).
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
import struct
import wave

import pytest
from PIL import Image

import gemini_magic
from gemini_magic.media.audio import pcm_to_wav, playable
from tests.conftest import ask, fails
from tests.fake_gemini import Reply

PCM_TYPE = "audio/L16;codec=pcm;rate=24000"  # what Gemini's TTS models answer


def pcm(seconds: float = 0.25, rate: int = 24000) -> bytes:
    samples = int(seconds * rate)
    return b"".join(struct.pack("<h", int(8000 * math.sin(i / 8))) for i in range(samples))


def speech_reply(data: bytes) -> Reply:
    return Reply(parts=[{"inlineData": {"mimeType": PCM_TYPE, "data": base64.b64encode(data).decode()}}])


def png(color: str, size: tuple[int, int] = (32, 16)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def image_part(data: bytes, signature: bytes | None = None) -> dict:
    part = {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(data).decode()}}
    if signature is not None:
        part["thoughtSignature"] = base64.b64encode(signature).decode()
    return part


def last_html(ex) -> str:
    """The HTML of a cell's last display (its final answer)."""
    shown = [m["content"]["data"].get("text/html", "") for m in ex.outputs if m["msg_type"] == "display_data"]
    return shown[-1]


def html_of(ip, prompt: str, options: str, capsys) -> str:
    """Run a cell with --out and return what the terminal renderer printed."""
    capsys.readouterr()
    ask(ip, prompt, options)
    said = capsys.readouterr()
    return said.out + said.err


# -- speech ----------------------------------------------------------------------------------------


def test_pcm_becomes_a_wav_at_the_rate_its_type_names():
    data = pcm(0.5, 16000)
    mime, wav_bytes = playable("audio/L16;codec=pcm;rate=16000", data)
    assert mime == "audio/wav"
    with wave.open(io.BytesIO(wav_bytes)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
        assert wav.readframes(wav.getnframes()) == data
    assert playable("audio/mpeg", b"ID3") == ("audio/mpeg", b"ID3")  # playable already


def test_voice_asks_for_audio_and_out_holds_a_playable_wav(ip, server):
    data = pcm()
    server.queue(speech_reply(data))
    ip.run_cell_magic("gemini", "-m gemini-2.5-flash-preview-tts --voice Kore -o hello",
                      "Say cheerfully: have a wonderful day!")
    body = server.last.body
    assert server.last.action == "generateContent"  # speech comes whole
    config = body["generationConfig"]
    assert config["responseModalities"] == ["AUDIO"]
    assert config["speechConfig"] == {"voice_config": {"prebuilt_voice_config": {"voice_name": "Kore"}}}
    hello = ip.user_ns["hello"]
    (mime, wav_bytes), = hello.audio
    assert mime == "audio/wav" and wav_bytes == pcm_to_wav(data)
    with wave.open(io.BytesIO(wav_bytes)) as wav:
        assert wav.getframerate() == 24000 and wav.getnframes() == len(data) // 2


def test_the_notebook_plays_speech_as_wav(kern, server):
    data = pcm()
    server.queue(speech_reply(data))
    ex = kern.run("%%gemini -m gemini-2.5-flash-preview-tts --voice Puck\nSay hi.", check=True)
    markup = last_html(ex)
    wav_b64 = base64.b64encode(pcm_to_wav(data)).decode()
    assert f'<audio controls src="data:audio/wav;base64,{wav_b64}">' in markup
    assert "audio/L16" not in markup


def test_one_voice_per_speaker(ip, server):
    server.queue(speech_reply(pcm()))
    ask(ip, "TTS the conversation:\nJoe: Hi Jane.\nJane: Hi Joe!",
        '-m gemini-2.5-flash-preview-tts --voice "Joe=Kore, Jane=Puck"')
    speech = server.last.body["generationConfig"]["speechConfig"]
    assert speech == {"multi_speaker_voice_config": {"speaker_voice_configs": [
        {"speaker": "Joe", "voice_config": {"prebuilt_voice_config": {"voice_name": "Kore"}}},
        {"speaker": "Jane", "voice_config": {"prebuilt_voice_config": {"voice_name": "Puck"}}}]}}


def test_a_voice_pair_without_a_name_is_refused_before_sending(ip, server):
    failure = fails(ip, "Hi", '--voice "Joe=Kore,Jane"')
    assert "give SPEAKER=VOICE pairs" in str(failure.error)
    assert server.requests == []


def test_voices_lists_the_documented_voices_when_the_api_lists_none(ip, server, capsys):
    ip.run_line_magic("gemini", "voices")
    out = capsys.readouterr().out
    assert "from Google's documentation" in out
    assert re.search(r"^\s+Kore\s+Firm$", out, re.M) and re.search(r"^\s+Puck\s+Upbeat$", out, re.M)
    assert len(re.findall(r"^  \S", out, re.M)) == 30
    assert "voices" in [r.path.rsplit("/", 1)[-1].split("?")[0] for r in server.requests]  # the API was asked


# -- images ----------------------------------------------------------------------------------------


def test_aspect_ratio_and_size_reach_the_image_config(ip, server):
    server.queue(Reply(parts=[image_part(png("red"))]))
    ask(ip, "A red square", "-m gemini-2.5-flash-image --aspect-ratio 16:9 --image-size 2K")
    assert server.last.body["generationConfig"]["imageConfig"] == {"aspectRatio": "16:9", "imageSize": "2K"}


def test_an_unknown_aspect_ratio_is_a_usage_error(ip, server):
    from IPython.core.error import UsageError

    with pytest.raises(UsageError):
        ip.run_cell_magic("gemini", "--aspect-ratio 7:3", "A square")
    assert server.requests == []


def test_several_images_show_as_a_gallery_each_opening_full_size(kern, server):
    server.queue(Reply(parts=[{"text": "Three tiles:"}, image_part(png("red")), image_part(png("green")),
                              image_part(png("blue"))]))
    ex = kern.run("%%gemini -m gemini-2.5-flash-image -o tiles\nThree tiles", check=True)
    markup = last_html(ex)
    gallery = re.search(r'<div class="gemini-gallery".*?</div>\n', markup, re.S)
    assert gallery is not None
    assert gallery.group(0).count("<img ") == 3 and gallery.group(0).count("cursor:zoom-in") == 3
    sizes = kern.run("print([(i.size, i.mode) for i in tiles.images])", check=True).stream_text()
    assert sizes.strip() == "[((32, 16), 'RGB'), ((32, 16), 'RGB'), ((32, 16), 'RGB')]"


def test_out_images_save_as_files(ip, server, tmp_path):
    server.queue(Reply(parts=[image_part(png("purple", (40, 30)))]))
    ip.run_cell_magic("gemini", "-m gemini-2.5-flash-image -o drawing", "A purple card")
    path = tmp_path / "card.png"
    ip.user_ns["drawing"].images[0].save(path)
    assert Image.open(path).size == (40, 30)


def test_editing_in_a_chat_sends_the_image_and_its_signature_back_unshown(ip, server, capsys):
    signature = bytes(range(256)) * 1200  # 300 KB, as image signatures can be
    first = png("skyblue", (64, 32))
    server.queue(Reply(parts=[{"text": "A sky:"}, image_part(first, signature)]))
    shown = html_of(ip, "Draw a sky", "-m gemini-3-pro-image-preview -c art", capsys)
    encoded = base64.b64encode(signature).decode()
    assert encoded[:200] not in shown
    server.queue(Reply(parts=[image_part(png("purple", (64, 32)))]))
    ask(ip, "Make the sky purple", "-m gemini-3-pro-image-preview -c art")
    model_turn = server.last.body["contents"][1]
    sent = [p for p in model_turn["parts"] if "inlineData" in p or "inline_data" in p][0]
    # The SDK writes bytes as URL-safe base64 when it sends them back.
    assert base64.urlsafe_b64decode(sent["thoughtSignature"]) == signature
    assert base64.urlsafe_b64decode((sent.get("inlineData") or sent["inline_data"])["data"]) == first
    # The limiter's estimate of that request counts the image, not its signature's text.
    from gemini_magic.transport.tokens import request_tokens

    estimate = request_tokens(json.dumps(server.last.body).encode())
    assert estimate < 5_000, estimate


# -- Google Maps ----------------------------------------------------------------------------------

MAPS_GROUNDING = {
    "groundingChunks": [
        {"maps": {"uri": "https://maps.google.com/?cid=123", "title": "Café (Kyoto) [best]", "placeId": "places/x1"}},
        {"maps": {"uri": "javascript:alert(1)", "title": "<b>Evil</b>", "placeId": "places/x2"}},
    ],
    "groundingSupports": [{"segment": {"startIndex": 0, "endIndex": 21, "text": "Try Café Kyoto today."},
                           "groundingChunkIndices": [0]}],
    "googleMapsWidgetContextToken": "widgetcontent/<script>window.pwned=1</script>",
}


def test_maps_sends_the_tool_and_shows_places_as_safe_sources(kern, server):
    server.queue(Reply(text="Try Café Kyoto today.", grounding=MAPS_GROUNDING))
    ex = kern.run("%%gemini --maps --location 35.01,135.77\nCoffee near me?", check=True)
    body = server.last.body
    assert {"googleMaps": {}} in body["tools"]
    assert body["toolConfig"]["retrievalConfig"] == {"lat_lng": {"latitude": 35.01, "longitude": 135.77}}
    markup = last_html(ex)
    assert 'href="https://maps.google.com/?cid=123"' in markup
    assert "Café (Kyoto) [best]" in markup and "(Google Maps)" in markup
    assert "javascript:" not in markup and "<b>Evil</b>" not in markup and "&lt;b&gt;Evil&lt;/b&gt;" in markup
    assert "widgetcontent" not in markup and "<script" not in markup


def test_a_place_name_goes_to_the_model_as_the_users_words(ip, server):
    ask(ip, "Coffee near me?", "--maps --location 'Gion, Kyoto'")
    assert server.last.last_user_text().startswith("(I am in Gion, Kyoto.)")
    assert "toolConfig" not in server.last.body


@pytest.mark.parametrize("options, says", [
    ("--location 35,135", "--location goes with --maps or --search"),
    ("--maps --location 95,10", "a latitude is -90 to 90"),
])
def test_a_location_that_cannot_apply_is_refused(ip, server, options, says):
    failure = fails(ip, "Coffee?", options)
    assert says in str(failure.error)
    assert server.requests == []


def test_maps_in_the_python_api(ip, server):
    server.queue(Reply(text="Try Café Kyoto today.", grounding=MAPS_GROUNDING))
    answer = gemini_magic.ask("Coffee near me?", maps=True, location="35.01,135.77")
    assert answer.read() == "Try Café Kyoto today."
    assert answer.grounding.grounding_chunks[0].maps.place_id == "places/x1"

"""The magic's multimodal side: media in prompts, uploads, media and thoughts in answers.

`tests/test_media.py` unit-tests `gemini_magic.media` itself; here every check goes
through `%%gemini` cells (in-process shell or a real kernel) and reads what the fake
server received, or what a frontend would display.
"""

from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

import gemini_magic
from gemini_magic import media
from gemini_magic.magics import CellFailed
from gemini_magic.media import MediaAnswer
from tests.fake_gemini import Reply
from tests.test_media import encoded, wav_bytes

GENERATE = ("generateContent", "streamGenerateContent")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
SMALL_INLINE_LIMIT = 2000  # bytes: a 64x64 noise image is far over it


# -- helpers ------------------------------------------------------------------------------


def _k(obj, camel: str, default=None):
    """obj[camel] or its snake_case spelling (the SDK mixes both)."""
    if not isinstance(obj, dict):
        return default
    if camel in obj:
        return obj[camel]
    snake = "".join("_" + c.lower() if c.isupper() else c for c in camel)
    return obj.get(snake, default)


def b64(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    return base64.b64decode(padded.replace("-", "+").replace("_", "/"))


def described(part: dict) -> tuple:
    """A part as (kind, payload): ("text", str), ("inline", mime, bytes), ("file", mime, uri)."""
    if isinstance(part.get("text"), str):
        return ("text", part["text"])
    inline = _k(part, "inlineData")
    if isinstance(inline, dict):
        return ("inline", _k(inline, "mimeType"), b64(_k(inline, "data") or ""))
    data = _k(part, "fileData")
    if isinstance(data, dict):
        return ("file", _k(data, "mimeType"), _k(data, "fileUri"))
    return ("other", part)


def sent_parts(server) -> list[tuple]:
    return [described(p) for p in server.last.user_parts()]


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG_MAGIC), data[:16]
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image.size


def generate_requests(server) -> list:
    return [r for r in server.requests if r.action in GENERATE]


def actions(server) -> list[str]:
    return [r.action for r in server.requests]


def pattern(size: tuple[int, int]) -> Image.Image:
    """An RGB image whose pixels differ, so a decoded copy can prove the exact pixels."""
    width, height = size
    x = np.arange(width, dtype=np.uint16)[None, :]
    y = np.arange(height, dtype=np.uint16)[:, None]
    layers = [((x * 7 + y * 3 + c * 50) % 256).astype(np.uint8) for c in range(3)]
    return Image.fromarray(np.stack(layers, axis=-1))


def noise(size: tuple[int, int] = (64, 64), seed: int = 0) -> Image.Image:
    """An image that compresses badly: its PNG is well over SMALL_INLINE_LIMIT."""
    width, height = size
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def png_bytes(image: Image.Image) -> bytes:
    return encoded(image, "PNG")


def run_ok(ip, source: str):
    result = ip.run_cell(source)
    assert result.error_before_exec is None, result.error_before_exec
    assert result.error_in_exec is None, result.error_in_exec
    return result


def run_failing(ip, source: str) -> CellFailed:
    result = ip.run_cell(source)
    assert isinstance(result.error_in_exec, CellFailed), f"expected CellFailed, got {result.error_in_exec!r}"
    return result.error_in_exec


class _Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.elements: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag


def elements(markup: str) -> list[tuple[str, dict]]:
    parser = _Elements()
    parser.feed(markup)
    parser.close()
    return parser.elements


def _data(msg) -> dict:
    return msg["content"].get("data", {})


def _display_id(msg) -> str | None:
    return msg["content"].get("transient", {}).get("display_id")


def final_display(ex) -> dict:
    """The answer's final display_data bundle in a kernel execution."""
    shown = [m for m in ex.of_type("display_data") if _data(m).get("text/html")]
    assert shown, [m["msg_type"] for m in ex.outputs]
    return _data(shown[-1])


@pytest.fixture
def small_inline_limit(monkeypatch):
    monkeypatch.setattr(media.inputs, "INLINE_LIMIT", SMALL_INLINE_LIMIT)
    return SMALL_INLINE_LIMIT


# -- media interpolated into the prompt ------------------------------------------------------


def test_images_in_the_prompt_are_sent_in_place(ip, server):
    ip.user_ns["img"] = pattern((30, 20))
    ip.user_ns["img2"] = pattern((20, 40))
    run_ok(ip, "%%gemini\nDescribe {img} and {img2} please.")

    parts = sent_parts(server)
    assert [p[0] for p in parts] == ["text", "inline", "text", "inline", "text"]
    assert [p[1] for p in parts if p[0] == "text"] == ["Describe ", " and ", " please."]
    first, second = parts[1], parts[3]
    assert first[1] == second[1] == "image/png"
    assert png_size(first[2]) == (30, 20)
    assert png_size(second[2]) == (20, 40)
    # The exact pixels arrived.
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(first[2]))), np.asarray(ip.user_ns["img"]))
    assert server.last.media() == [("image/png", first[2]), ("image/png", second[2])]


def test_a_dataframe_and_a_string_stay_text(ip, server, tmp_path):
    import pandas as pd

    picture = tmp_path / "cat.png"
    picture.write_bytes(png_bytes(pattern((8, 8))))
    ip.user_ns["df"] = pd.DataFrame({"height_cm": [150, 160], "weight_kg": [50, 60]})
    ip.user_ns["where"] = str(picture)  # a path in a str is text in a prompt
    run_ok(ip, "%%gemini\nLook at {df} and {where}")

    parts = sent_parts(server)
    assert [p[0] for p in parts] == ["text"], parts
    assert server.last.media() == []
    text = parts[0][1]
    assert text.startswith("Look at ")
    assert "height_cm" in text and "weight_kg" in text
    assert text.endswith(f"and {picture}")


def test_a_numpy_image_array_and_a_figure_are_images(ip, server):
    from matplotlib.figure import Figure

    array = np.zeros((32, 48, 3), dtype=np.uint8)
    array[:, :24, 0] = 255
    figure = Figure(figsize=(2, 1), dpi=50)
    figure.add_subplot().plot([0, 1], [1, 0])
    ip.user_ns["arr"] = array
    ip.user_ns["fig"] = figure
    run_ok(ip, "%%gemini\nCompare {arr} with {fig}")

    parts = sent_parts(server)
    assert [p[0] for p in parts] == ["text", "inline", "text", "inline"]
    assert parts[0] == ("text", "Compare ") and parts[2] == ("text", " with ")
    assert parts[1][1] == parts[3][1] == "image/png"
    assert png_size(parts[1][2]) == (48, 32)
    decoded = np.asarray(Image.open(io.BytesIO(parts[1][2])))
    assert np.array_equal(decoded, array)
    assert png_size(parts[3][2]) == (100, 50)


# -- --image -----------------------------------------------------------------------------


def test_attachments_come_before_the_prompt_in_the_order_given(ip, server, tmp_path, site):
    ip.user_ns["photo"] = pattern((11, 7))
    path_png = tmp_path / "chart.png"
    path_png.write_bytes(png_bytes(pattern((13, 9))))
    path_pdf = tmp_path / "report.pdf"
    path_pdf.write_bytes(PDF)
    url = site.serve("/x.png", "image/png", png_bytes(pattern((17, 5))))

    run_ok(ip, f"%%gemini --image photo --image {path_png} --image {path_pdf} --image {url}\nCompare these.")
    parts = sent_parts(server)
    assert [p[:2] for p in parts] == [
        ("inline", "image/png"), ("inline", "image/png"), ("inline", "application/pdf"), ("inline", "image/png"),
        ("text", "Compare these."),
    ]
    assert png_size(parts[0][2]) == (11, 7)
    assert png_size(parts[1][2]) == (13, 9)
    assert parts[2][2] == PDF
    assert png_size(parts[3][2]) == (17, 5)


def test_attachments_and_interpolated_images_together(ip, server):
    ip.user_ns["first"] = pattern((10, 10))
    ip.user_ns["inner"] = pattern((12, 6))
    run_ok(ip, "%%gemini --image first\nIs {inner} the same?")
    parts = sent_parts(server)
    assert [p[0] for p in parts] == ["inline", "text", "inline", "text"]
    assert png_size(parts[0][2]) == (10, 10)
    assert parts[1] == ("text", "Is ")
    assert png_size(parts[2][2]) == (12, 6)
    assert parts[3] == ("text", " the same?")


def test_image_without_prompt_text(ip, server):
    ip.user_ns["only"] = pattern((16, 12))
    server.queue("A picture of stripes.")
    # (A blank line below the magic: IPython itself refuses a cell magic with no body at all.)
    run_ok(ip, "%%gemini --image only -o said\n\n")
    parts = sent_parts(server)
    assert len(parts) == 1
    assert parts[0][:2] == ("inline", "image/png")
    assert png_size(parts[0][2]) == (16, 12)
    assert ip.user_ns["said"] == "A picture of stripes."


def test_image_only_prompt_as_a_one_line_cell(ip, server):
    """`%%gemini --image x` alone in a cell is refused by IPython ("the cell body is empty.
    Did you mean the line magic %gemini?"), so the line form must take the options."""
    ip.user_ns["only"] = pattern((16, 12))
    server.queue("A picture of stripes.")
    refused = ip.run_cell("%%gemini --image only -o said")
    assert "%gemini" in str(refused.error_in_exec)  # IPython's own advice: the line magic
    assert server.requests == []
    run_ok(ip, "%gemini --image only -o said")
    parts = sent_parts(server)
    assert [p[:2] for p in parts] == [("inline", "image/png")]
    assert png_size(parts[0][2]) == (16, 12)
    assert ip.user_ns["said"] == "A picture of stripes."


def test_empty_prompt_without_image_still_fails(ip, server):
    error = run_failing(ip, "%%gemini\n   \n")
    assert "empty" in error.error.message.lower()
    assert server.requests == []


def test_unknown_image_name_fails_before_anything_is_sent(ip, server, capsys):
    error = run_failing(ip, "%%gemini --image missing_thing\nWhat is it?")
    assert "missing_thing" in error.error.message
    assert "variable" in error.error.message and "file" in error.error.message
    assert error.error.hint  # says what --image takes
    assert server.requests == []
    shown = capsys.readouterr()
    assert "missing_thing" in shown.out + shown.err
    assert "Traceback" not in shown.out + shown.err


def test_missing_image_file_is_named(ip, server, tmp_path):
    gone = tmp_path / "gone.png"
    error = run_failing(ip, f"%%gemini --image {gone}\nWhat is it?")
    assert str(gone) in error.error.message
    assert server.requests == []


def test_unsupported_file_type_names_the_supported_ones(ip, server, tmp_path):
    odd = tmp_path / "data.xyz"
    odd.write_bytes(b"whatever")
    error = run_failing(ip, f"%%gemini --image {odd}\nRead this.")
    assert ".xyz" in error.error.message
    for suffix in (".png", ".jpg", ".pdf", ".wav", ".mp4"):
        assert suffix in error.error.hint
    assert server.requests == []


# -- downscaling ------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["interpolated", "attached"])
def test_large_images_are_downscaled_by_default(ip, server, where):
    ip.user_ns["wide"] = pattern((4000, 1000))
    source = "%%gemini\nLook: {wide}" if where == "interpolated" else "%%gemini --image wide\nLook."
    run_ok(ip, source)
    [(mime, data)] = server.last.media()
    assert mime == "image/png"
    assert png_size(data) == (1536, 384)


def test_large_image_file_is_downscaled(ip, server, tmp_path):
    path = tmp_path / "wide.png"
    path.write_bytes(png_bytes(pattern((4000, 1000))))
    run_ok(ip, f"%%gemini --image {path}\nLook.")
    [(_, data)] = server.last.media()
    assert png_size(data) == (1536, 384)


def test_no_downscale_sends_the_full_size(ip, server):
    ip.user_ns["wide"] = pattern((4000, 1000))
    run_ok(ip, "%%gemini --no-downscale\nLook: {wide}")
    [(_, data)] = server.last.media()
    assert png_size(data) == (4000, 1000)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), np.asarray(ip.user_ns["wide"]))


def test_max_image_side_setting(ip, server):
    ip.user_ns["wide"] = pattern((4000, 1000))
    run_ok(ip, "%config GeminiMagics.max_image_side = 512")
    run_ok(ip, "%%gemini --image wide\nLook.")
    [(_, data)] = server.last.media()
    assert png_size(data) == (512, 128)
    # --no-downscale still wins over the setting.
    run_ok(ip, "%%gemini --image wide --no-downscale\nLook again.")
    [(_, data)] = server.last.media()
    assert png_size(data) == (4000, 1000)


def test_small_images_are_not_upscaled(ip, server):
    ip.user_ns["tiny"] = pattern((20, 10))
    run_ok(ip, "%config GeminiMagics.max_image_side = 512")
    run_ok(ip, "%%gemini\nLook: {tiny}")
    [(_, data)] = server.last.media()
    assert png_size(data) == (20, 10)


# -- the Files API through the magic -----------------------------------------------------------


def test_large_image_goes_through_the_files_api(ip, server, small_inline_limit, capsys):
    ip.user_ns["big"] = noise()
    server.file_processing_polls = 2  # PROCESSING at the first look, ACTIVE at the second
    server.queue("A noisy picture.")
    run_ok(ip, "%%gemini --image big -o said\nWhat is it?")

    assert actions(server) == ["uploadStart", "uploadChunk", "getFile", "getFile", "streamGenerateContent"]
    [(name, entry)] = server.files.items()
    assert entry["meta"]["state"] == "ACTIVE"
    assert entry["meta"]["mimeType"] == "image/png"
    assert len(entry["data"]) > small_inline_limit
    assert png_size(entry["data"]) == (64, 64)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(entry["data"]))), np.asarray(ip.user_ns["big"]))
    assert [r.file for r in server.requests if r.action == "getFile"] == [name, name]
    # The answer's request references the upload; no inline copy of the image.
    assert sent_parts(server) == [("file", "image/png", entry["meta"]["uri"]), ("text", "What is it?")]
    assert ip.user_ns["said"] == "A noisy picture."

    # In a terminal, the progress goes to stderr, never into the answer's output.
    out, err = capsys.readouterr()
    assert "Uploading to the Gemini Files API" in err
    assert "Waiting for Gemini to process the file" in err
    assert "File ready" in err
    assert "Uploading" not in out and "File ready" not in out
    assert "A noisy picture." in out

    # The same cell again reuses the upload: no new upload, no progress.
    run_ok(ip, "%%gemini --image big -o said\nWhat is it?")
    assert actions(server).count("uploadStart") == 1
    assert actions(server)[-1] == "streamGenerateContent"
    assert sent_parts(server)[0] == ("file", "image/png", entry["meta"]["uri"])
    assert len(server.files) == 1
    assert "Uploading" not in capsys.readouterr().err


def test_interpolated_large_image_is_uploaded_in_place(ip, server, small_inline_limit):
    ip.user_ns["big"] = noise(seed=1)
    run_ok(ip, "%%gemini\nBefore {big} after")
    [entry] = server.files.values()
    assert sent_parts(server) == [("text", "Before "), ("file", "image/png", entry["meta"]["uri"]), ("text", " after")]


# -- record and replay of an upload -----------------------------------------------------------


def test_recorded_upload_replays_with_nothing_on_the_wire(ip, server, small_inline_limit, tmp_path):
    rec = tmp_path / "upload.gemini.json"
    big = noise(seed=2)
    ip.user_ns["big"] = big
    server.queue("It is noise.")
    cell = "%%gemini --image big -o said\nDescribe the picture."
    run_ok(ip, f"%gemini record {rec}")
    run_ok(ip, cell)
    recorded = ip.user_ns.pop("said")
    assert recorded == "It is noise."
    assert "uploadStart" in actions(server)
    sent = next(iter(server.files.values()))["data"]  # the bytes that were uploaded

    run_ok(ip, "%reload_ext gemini_magic")
    run_ok(ip, f"%gemini replay {rec}")
    before = len(server.requests)
    run_ok(ip, cell)
    assert len(server.requests) == before, actions(server)[before:]
    assert ip.user_ns["said"] == recorded

    # The recording holds no copy of the image, and no per-run upload session id.
    raw = rec.read_bytes()
    text = raw.decode("utf-8")
    assert sent not in raw
    assert sent.decode("latin-1") not in text
    for as_base64 in (base64.b64encode(sent).decode(), base64.urlsafe_b64encode(sent).decode()):
        assert as_base64[:60] not in text
        assert as_base64[len(as_base64) // 2: len(as_base64) // 2 + 60] not in text
    entries = json.loads(text)["entries"]
    paths = [e["request"]["path"] for e in entries]
    assert any(p.startswith("upload/") for p in paths) and any(":streamGenerateContent" in p for p in paths)
    for entry in entries:
        assert "upload_id" not in entry["request"].get("query", {})
        assert "upload_id" not in entry["request"]["path"]


# -- media in answers --------------------------------------------------------------------------


def test_image_answer_is_stored_with_its_images(ip, server):
    picture = png_bytes(pattern((24, 16)))
    server.queue(Reply(parts=[{"text": "Here:"}, {"inlineData": {"mimeType": "image/png",
                                                                 "data": base64.b64encode(picture).decode()}}]))
    run_ok(ip, "%%gemini -o pic\nDraw stripes.")
    pic = ip.user_ns["pic"]
    assert isinstance(pic, MediaAnswer) and isinstance(pic, str)
    assert pic == "Here:"
    assert len(pic.images) == 1
    assert pic.images[0].size == (24, 16)
    assert np.array_equal(np.asarray(pic.images[0].convert("RGB")), np.asarray(pattern((24, 16))))
    assert pic.audio == []


def test_audio_answer_is_stored_with_its_audio(ip, server):
    sound = wav_bytes()
    server.queue(Reply(parts=[{"text": "Listen."}, {"inlineData": {"mimeType": "audio/wav",
                                                                   "data": base64.b64encode(sound).decode()}}]))
    run_ok(ip, "%%gemini -o tune\nSing.")
    tune = ip.user_ns["tune"]
    assert tune == "Listen."
    assert tune.audio == [("audio/wav", sound)]
    assert tune.images == []


def test_plain_answer_is_a_plain_str(ip, server):
    server.queue("Just words.")
    run_ok(ip, "%%gemini -o words\nSay something.")
    assert type(ip.user_ns["words"]) is str
    assert ip.user_ns["words"] == "Just words."


@pytest.mark.parametrize("mime", ["text/html", "image/svg+xml"])
def test_markup_parts_are_not_read_as_images(ip, server, mime):
    payload = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script></svg>'
    server.queue(Reply(parts=[{"text": "Made it."}, {"inlineData": {"mimeType": mime,
                                                                    "data": base64.b64encode(payload).decode()}}]))
    run_ok(ip, "%%gemini -o made\nMake markup.")
    made = ip.user_ns["made"]
    assert made == "Made it."
    assert getattr(made, "images", []) == []


# -- media and thoughts in a real kernel -------------------------------------------------------


def test_kernel_shows_an_image_answer_after_its_text(kern, server):
    picture = png_bytes(pattern((24, 16)))
    data = base64.b64encode(picture).decode()
    server.queue(Reply(parts=[{"text": "Here:"}, {"inlineData": {"mimeType": "image/png", "data": data}}]))
    ex = kern.run("%%gemini\nDraw stripes.", check=True)
    final = final_display(ex)
    html = final["text/html"]
    tag = f'<img src="data:image/png;base64,{data}"'
    assert tag in html
    assert html.index("Here:") < html.index(tag)
    imgs = [attrs for name, attrs in elements(html) if name == "img"]
    assert [a["src"] for a in imgs] == [f"data:image/png;base64,{data}"]
    assert final["text/plain"].startswith("Here:")
    assert f"[image/png data, {len(picture):,} bytes]" in final["text/plain"]


def test_kernel_plays_an_audio_answer(kern, server):
    sound = wav_bytes()
    data = base64.b64encode(sound).decode()
    server.queue(Reply(parts=[{"text": "Listen."}, {"inlineData": {"mimeType": "audio/wav", "data": data}}]))
    ex = kern.run("%%gemini\nSing.", check=True)
    html = final_display(ex)["text/html"]
    assert f'<audio controls src="data:audio/wav;base64,{data}">' in html
    assert html.index("Listen.") < html.index("<audio")
    assert [name for name, _ in elements(html) if name in ("img", "audio")] == ["audio"]


@pytest.mark.parametrize("mime", ["text/html", "image/svg+xml", "application/xhtml+xml"])
def test_kernel_never_renders_markup_parts(kern, server, mime):
    payload = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script></svg>'
    data = base64.b64encode(payload).decode()
    server.queue(Reply(parts=[{"text": "Made it."}, {"inlineData": {"mimeType": mime, "data": data}}]))
    ex = kern.run("%%gemini\nMake markup.", check=True)
    html = final_display(ex)["text/html"]
    found = elements(html)
    assert not [name for name, _ in found if name in ("img", "svg", "script", "iframe", "object", "embed")], found
    assert not [a for _, attrs in found for a in attrs if a.lower().startswith("on")], found
    assert data not in html  # not even as a data: URL
    assert mime in html  # shown as a note of what arrived


def test_kernel_upload_progress_follows_the_nbval_rule(kern, server):
    kern.run("import numpy as _np\nfrom PIL import Image as _Image\nimport gemini_magic.media.inputs as _gm_media\n"
             "big_k = _Image.fromarray(_np.random.default_rng(5).integers(0, 256, (64, 64, 3), dtype=_np.uint8))\n"
             f"_gm_media.INLINE_LIMIT = {SMALL_INLINE_LIMIT}", check=True)
    try:
        server.queue("Noise.")
        ex = kern.run("%%gemini --image big_k\nWhat is it?", check=True)
    finally:
        kern.run(f"_gm_media.INLINE_LIMIT = {media.inputs.INLINE_LIMIT}", check=True)

    assert actions(server)[0] == "uploadStart" and actions(server)[-1] == "streamGenerateContent"
    [entry] = server.files.values()
    assert sent_parts(server)[0] == ("file", "image/png", entry["meta"]["uri"])

    outputs = ex.outputs
    displays = ex.of_type("display_data")
    progress = displays[0]
    progress_id = _display_id(progress)
    assert progress_id
    # 1. an empty placeholder first
    assert _data(progress) == {"text/plain": ""}
    updates = [m for m in ex.of_type("update_display_data") if _display_id(m) == progress_id]
    # 2. updated while the upload runs
    assert len(updates) >= 2
    shown = [_data(m).get("text/plain", "") for m in updates[:-1]]
    assert any(s.startswith("Uploading to the Gemini Files API") for s in shown), shown
    assert all(_data(m).get("text/html", "").count("<progress") == 1 for m in updates[:-1])
    # 3. and reset to empty at the end, before the answer's own output starts
    assert _data(updates[-1]) == {"text/plain": ""}
    answer_start = outputs.index(displays[1])
    assert _display_id(displays[1]) != progress_id
    assert all(outputs.index(m) < answer_start for m in updates)
    assert final_display(ex)["text/plain"] == "Noise."
    # The progress is in the display, not in the streams.
    assert "Uploading" not in ex.stream_text("stdout") + ex.stream_text("stderr")


def test_kernel_shows_thoughts_collapsed_before_the_answer(kern, server):
    server.queue(Reply(parts=[{"text": "thinking...", "thought": True}, {"text": "Answer."}]))
    ex = kern.run("%%gemini --thoughts\nWhy?", check=True)
    html = final_display(ex)["text/html"]
    opening = html.index('<details class="gemini-thoughts">')
    assert opening < html.index("thinking...") < html.index("</details>") < html.index("Answer.")
    details = html[opening:html.index("</details>")]
    assert "Answer." not in details


# -- thoughts -----------------------------------------------------------------------------------


def _thinking_config(request) -> dict:
    config = _k(request.body, "generationConfig") or {}
    return _k(config, "thinkingConfig") or {}


def test_thoughts_option_asks_for_thought_summaries(ip, server):
    run_ok(ip, "%%gemini --thoughts\nWhy?")
    config = _thinking_config(server.last)
    assert _k(config, "includeThoughts") is True
    assert len(config) == 1, config  # no budget or level unless asked for

    run_ok(ip, "%%gemini --thoughts --thinking 512\nWhy?")
    config = _thinking_config(server.last)
    assert _k(config, "includeThoughts") is True
    assert _k(config, "thinkingBudget") == 512

    run_ok(ip, "%%gemini --thinking 512\nWhy?")
    config = _thinking_config(server.last)
    assert _k(config, "includeThoughts") is None
    assert _k(config, "thinkingBudget") == 512


def test_thoughts_stay_out_of_the_stored_answer(ip, server, capsys):
    server.queue(Reply(parts=[{"text": "thinking...", "thought": True}, {"text": "Answer."}]))
    run_ok(ip, "%%gemini --thoughts -o got\nWhy?")
    assert type(ip.user_ns["got"]) is str
    assert ip.user_ns["got"] == "Answer."
    assert "Answer." in capsys.readouterr().out


def test_chat_turn_keeps_the_thought_part_apart(ip, server):
    server.queue(Reply(parts=[{"text": "thinking...", "thought": True}, {"text": "Answer."}]), "Second answer.")
    run_ok(ip, "%%gemini --thoughts -c mind\nWhy?")
    [turn] = gemini_magic.conversation("mind").turns
    parts = turn.model.parts
    assert [(p.text, bool(p.thought)) for p in parts] == [("thinking...", True), ("Answer.", False)]
    assert turn.text("model") == "Answer."

    run_ok(ip, "%%gemini -c mind\nAnd then?")
    history = server.last.body["contents"]
    assert [c.get("role") for c in history] == ["user", "model", "user"]
    model_parts = history[1]["parts"]
    answer_texts = [p["text"] for p in model_parts if "text" in p and not p.get("thought")]
    assert answer_texts == ["Answer."]
    assert all("thinking" not in text for text in answer_texts)

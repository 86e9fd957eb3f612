"""gemini_magic.media: values -> Parts, checked on the wire.

Every conversion is sent with the real SDK (`Connection().client()`) to the fake
server, which decodes what arrived; large data goes through the fake's Files API
with the SDK's own resumable upload. Nothing here sleeps: `Uploads` gets a fake
sleep and clock.
"""

from __future__ import annotations

import base64
import io
import struct
import threading
import wave
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gemini_magic import media
from gemini_magic.client import Connection
from gemini_magic.errors import GeminiError
from gemini_magic.media import MediaError, Uploads, attachment, is_media, sniff, to_part

MODEL = "gemini-2.5-flash"


# -- sample data ------------------------------------------------------------------------


def pattern_image(size=(40, 20), mode="RGB") -> Image.Image:
    """An image whose pixels differ, so a decoded copy proves the exact pixels."""
    width, height = size
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    x = np.arange(width, dtype=np.uint16)[None, :]
    y = np.arange(height, dtype=np.uint16)[:, None]
    layers = [((x * 7 + y * 3 + c * 50) % 256).astype(np.uint8) for c in range(channels)]
    array = np.stack(layers, axis=-1) if channels > 1 else layers[0]
    return Image.fromarray(array)


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def wav_bytes() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x01" * 80)
    return buffer.getvalue()


def mp4_bytes(brand: bytes = b"isom") -> bytes:
    ftyp = brand + b"\x00\x00\x02\x00" + b"isomiso2mp41"
    return struct.pack(">I", 8 + len(ftyp)) + b"ftyp" + ftyp + struct.pack(">I", 8) + b"mdat"


PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
MP3_ID3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x00" + b"\x00" * 32
MP3_FRAME = b"\xff\xfb\x90\x00" + b"\x00" * 60  # MPEG-1 layer III, no ID3 tag

SNIFFED = {
    "png": (encoded(pattern_image(), "PNG"), "image/png"),
    "jpeg": (encoded(pattern_image(), "JPEG"), "image/jpeg"),
    "gif": (encoded(pattern_image().convert("P"), "GIF"), "image/gif"),
    "webp": (encoded(pattern_image(), "WEBP"), "image/webp"),
    "pdf": (PDF, "application/pdf"),
    "wav": (wav_bytes(), "audio/wav"),
    "mp3-id3": (MP3_ID3, "audio/mp3"),
    "mp3-frame": (MP3_FRAME, "audio/mp3"),
    "mp4": (mp4_bytes(), "video/mp4"),
    "text": ("naïve café, 2 × 3\n".encode(), "text/plain"),
}

# One sample file per supported extension: (content, MIME type sent).
FILES = {
    ".png": (SNIFFED["png"][0], "image/png"),
    ".jpg": (SNIFFED["jpeg"][0], "image/jpeg"),
    ".jpeg": (SNIFFED["jpeg"][0], "image/jpeg"),
    ".webp": (SNIFFED["webp"][0], "image/webp"),
    ".gif": (SNIFFED["gif"][0], "image/gif"),
    ".pdf": (PDF, "application/pdf"),
    ".txt": (b"plain text\n", "text/plain"),
    ".md": (b"# Title\n\n*emphasis*\n", "text/markdown"),
    ".csv": (b"a,b\n1,2\n", "text/csv"),
    ".mp3": (MP3_ID3, "audio/mp3"),
    ".wav": (wav_bytes(), "audio/wav"),
    ".mp4": (mp4_bytes(), "video/mp4"),
}


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# -- fixtures and helpers ---------------------------------------------------------------


@pytest.fixture
def client(env):
    connection = Connection()
    yield connection.client()
    connection.close()


class FakeTime:
    """sleep() advances clock(): waits cost nothing and are counted."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def uploads(fake_time) -> Uploads:
    return Uploads(sleep=fake_time.sleep, clock=fake_time.clock)


def inline(part) -> tuple[str, bytes]:
    assert part.inline_data is not None, part
    assert part.file_data is None
    return part.inline_data.mime_type, part.inline_data.data


def send(client, server, *parts) -> list:
    """Send parts then a text; return the user parts as the server saw them (checked in order)."""
    client.models.generate_content(model=MODEL, contents=[*parts, "describe"])
    request = server.last
    assert request.action == "generateContent"
    seen = request.user_parts()
    assert len(seen) == len(parts) + 1
    assert seen[-1] == {"text": "describe"}
    return request.media()


def assert_round_trip(client, server, part) -> tuple[str, bytes]:
    """The part's bytes and MIME type arrive intact (and before the text)."""
    mime, data = inline(part)
    assert send(client, server, part) == [(mime, data)]
    return mime, data


# -- is_media ---------------------------------------------------------------------------


def test_is_media_accepts_media_values():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    values = [
        pattern_image(),
        np.zeros((32, 32), np.uint8),
        np.zeros((32, 48, 3), np.uint8),
        np.zeros((32, 48, 4), np.uint8),
        np.full((20, 20, 3), 0.5),
        Figure(),
        b"\x89PNG",
        bytearray(b"x"),
        memoryview(b"x"),
        Path("photo.png"),
    ]
    assert [is_media(v) for v in values] == [True] * len(values)


def test_is_media_rejects_text_and_non_image_arrays():
    values = [
        "photo.png",  # a string in a prompt is text, even when it names a file
        "https://example.com/cat.png",
        42,
        [1, 2, 3],
        {"a": 1},
        None,
        np.zeros(100, np.uint8),  # 1-D
        np.zeros((32, 32, 2), np.uint8),  # 2 channels
        np.zeros((32, 32), np.int64),  # not uint8
        np.full((32, 32), 3.5),  # float outside [0, 1]
        np.full((32, 32), np.nan),
        np.zeros((3, 3), np.uint8),  # a small matrix, not a picture
    ]
    assert [is_media(v) for v in values] == [False] * len(values)


def test_importing_media_loads_no_heavy_package():
    import subprocess
    import sys

    code = (
        "import sys, gemini_magic.media\n"
        "heavy = [m for m in ('PIL', 'numpy', 'matplotlib', 'httpx2', 'google.genai') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- PIL, numpy, matplotlib -------------------------------------------------------------


def test_pil_image_is_sent_as_png(client, server):
    image = pattern_image((40, 20))
    mime, data = assert_round_trip(client, server, to_part(image))
    assert mime == "image/png"
    assert data.startswith(b"\x89PNG")
    assert np.array_equal(np.asarray(decode(data)), np.asarray(image))


def test_rgba_image_keeps_its_alpha(client, server):
    image = pattern_image((30, 30), "RGBA")
    mime, data = assert_round_trip(client, server, to_part(image))
    sent = decode(data)
    assert (mime, sent.mode) == ("image/png", "RGBA")
    assert np.array_equal(np.asarray(sent), np.asarray(image))


def test_jpeg_opened_from_a_file_stays_jpeg(client, server, tmp_path):
    path = tmp_path / "photo.jpg"
    pattern_image((64, 48)).save(path, format="JPEG")
    with Image.open(path) as image:
        mime, data = assert_round_trip(client, server, to_part(image))
    assert mime == "image/jpeg"
    assert data.startswith(b"\xff\xd8\xff")
    assert decode(data).size == (64, 48)


def test_a_jpeg_made_in_memory_is_sent_as_png():
    image = decode(encoded(pattern_image(), "JPEG")).convert("RGB")  # no .format any more
    assert inline(to_part(image))[0] == "image/png"


def test_numpy_uint8_arrays(client, server):
    rgb = np.asarray(pattern_image((20, 10)))
    gray = rgb[:, :, 0].copy()
    rgba = np.asarray(pattern_image((20, 10), "RGBA"))
    for array, mode in ((rgb, "RGB"), (gray, "L"), (rgba, "RGBA")):
        mime, data = assert_round_trip(client, server, to_part(array))
        sent = decode(data)
        assert (mime, sent.mode, sent.size) == ("image/png", mode, (20, 10))
        assert np.array_equal(np.asarray(sent), array)


def test_numpy_float_array_in_unit_range(client, server):
    array = np.zeros((10, 20, 3))
    array[:, :10] = 1.0
    array[:, 10:] = 0.5
    mime, data = assert_round_trip(client, server, to_part(array))
    pixels = np.asarray(decode(data))
    assert mime == "image/png"
    assert pixels[0, 0].tolist() == [255, 255, 255]
    assert pixels[0, 15].tolist() == [128, 128, 128]


@pytest.mark.parametrize(
    ("array", "why"),
    [
        (np.zeros(10, np.uint8), "not an image"),
        (np.zeros((10, 10), np.int32), "dtype int32"),
        (np.full((10, 10), 2.0), "[0, 1]"),
    ],
)
def test_numpy_arrays_that_are_not_images(array, why):
    with pytest.raises(MediaError) as info:
        to_part(array)
    assert why in str(info.value)
    assert info.value.kind == "media"


def test_matplotlib_figure_is_rendered_at_its_dpi(client, server):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4, 3), dpi=50)
    figure.add_subplot().plot([0, 1, 2], [2, 0, 1])
    mime, data = assert_round_trip(client, server, to_part(figure))
    assert mime == "image/png"
    assert decode(data).size == (200, 150)


# -- downscaling ------------------------------------------------------------------------


def test_large_image_is_downscaled_keeping_aspect():
    mime, data = inline(to_part(Image.new("RGB", (4000, 1000), "red")))
    sent = decode(data)
    assert (mime, sent.size) == ("image/png", (1536, 384))
    assert sent.getpixel((700, 200)) == (255, 0, 0)


def test_portrait_and_custom_max_side():
    assert decode(inline(to_part(Image.new("L", (1000, 4000))))[1]).size == (384, 1536)
    assert decode(inline(to_part(Image.new("L", (1000, 500)), max_side=100))[1]).size == (100, 50)


def test_max_side_none_keeps_the_size():
    assert decode(inline(to_part(Image.new("RGB", (4000, 1000)), max_side=None))[1]).size == (4000, 1000)


def test_small_image_is_not_upscaled():
    assert decode(inline(to_part(Image.new("RGB", (100, 50))))[1]).size == (100, 50)


def test_large_palette_image_is_resized_smoothly():
    image = Image.new("RGB", (2000, 100), "blue").convert("P")
    assert decode(inline(to_part(image))[1]).size == (1536, 77)


def test_image_files_are_downscaled_and_keep_their_format(tmp_path):
    png = tmp_path / "wide.png"
    jpg = tmp_path / "wide.jpg"
    Image.new("RGB", (4000, 1000), "green").save(png)
    Image.new("RGB", (4000, 1000), "green").save(jpg)
    mime, data = inline(to_part(png))
    assert (mime, decode(data).size) == ("image/png", (1536, 384))
    mime, data = inline(to_part(str(jpg)))
    assert (mime, decode(data).format, decode(data).size) == ("image/jpeg", "JPEG", (1536, 384))
    assert inline(to_part(png, max_side=None))[1] == png.read_bytes()


def test_exif_rotation_is_applied_when_reencoding(tmp_path):
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    Image.new("RGB", (4000, 2000)).save(path, exif=exif)
    assert decode(inline(to_part(path))[1]).size == (768, 1536)


# -- bytes ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(SNIFFED))
def test_bytes_are_sniffed_and_sent_unchanged(client, server, kind):
    data, mime = SNIFFED[kind]
    assert sniff(data) == mime
    assert assert_round_trip(client, server, to_part(data)) == (mime, data)


def test_bytearray_and_memoryview():
    data = SNIFFED["pdf"][0]
    assert inline(to_part(bytearray(data))) == ("application/pdf", data)
    assert inline(to_part(memoryview(data))) == ("application/pdf", data)


def test_m4a_is_audio():
    assert sniff(mp4_bytes(b"M4A ")) == "audio/mp4"


@pytest.mark.parametrize("data", [b"\x00\x01\x02\xfe\xff\x80", b"\xff\xf1\x50\x80" + b"\x00" * 8, b"ab\x00cd"])
def test_unrecognized_bytes_list_the_supported_kinds(data):
    with pytest.raises(MediaError) as info:
        to_part(data)
    assert "Could not tell" in info.value.message
    for kind in ("PNG", "JPEG", "GIF", "WebP", "PDF", "WAV", "MP3", "MP4", "text"):
        assert kind in info.value.hint


# -- files ------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", sorted(FILES))
@pytest.mark.parametrize("as_str", [False, True], ids=["Path", "str"])
def test_files_of_every_extension(client, server, tmp_path, suffix, as_str):
    content, mime = FILES[suffix]
    path = tmp_path / f"sample{suffix.upper() if suffix == '.png' else suffix}"
    path.write_bytes(content)
    part = to_part(str(path) if as_str else path)
    assert assert_round_trip(client, server, part) == (mime, content)


def test_several_parts_arrive_in_order(client, server, tmp_path):
    (tmp_path / "notes.md").write_bytes(b"# notes")
    parts = [to_part(tmp_path / "notes.md"), to_part(PDF), to_part(pattern_image())]
    seen = send(client, server, *parts)
    assert [mime for mime, _ in seen] == ["text/markdown", "application/pdf", "image/png"]
    assert seen[0][1] == b"# notes" and seen[1][1] == PDF


def test_missing_file_is_named(tmp_path):
    missing = tmp_path / "nope.png"
    for value in (missing, str(missing)):
        with pytest.raises(MediaError) as info:
            to_part(value)
        assert info.value.message == f"File not found: {missing}"


def test_unsupported_extension_lists_the_working_ones(tmp_path):
    path = tmp_path / "archive.zip"
    path.write_bytes(b"PK\x03\x04")
    with pytest.raises(MediaError) as info:
        to_part(path)
    assert "'.zip'" in info.value.message
    for suffix in FILES:
        assert suffix in info.value.hint


def test_a_folder_is_not_a_file(tmp_path):
    with pytest.raises(MediaError, match="folder"):
        to_part(tmp_path)


def test_a_broken_image_file_is_reported(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"not a png at all")
    with pytest.raises(MediaError, match="not a readable image"):
        to_part(path)


def test_unsupported_value_type():
    with pytest.raises(MediaError) as info:
        to_part(3.14)
    assert "float" in info.value.message
    assert "PIL" in info.value.hint and "numpy" in info.value.hint and ".pdf" in info.value.hint


# -- URLs -------------------------------------------------------------------------------


class _Site(BaseHTTPRequestHandler):
    pages: dict[str, tuple[str, bytes]] = {}

    def do_GET(self):
        page = self.pages.get(self.path)
        if page is None:
            self.send_error(404)
            return
        content_type, body = page
        self.send_response(200)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site():
    _Site.pages = {
        "/cat.png": ("image/png", SNIFFED["png"][0]),
        "/notes.txt": ("text/plain; charset=utf-8", b"hello notes"),
        "/doc": ("application/octet-stream", PDF),
        "/wide": ("image/jpeg", encoded(Image.new("RGB", (3000, 1500)), "JPEG")),
    }
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_url_is_fetched_with_its_content_type(client, server, site):
    assert assert_round_trip(client, server, to_part(f"{site}/cat.png")) == ("image/png", SNIFFED["png"][0])
    assert inline(to_part(f"{site}/notes.txt")) == ("text/plain", b"hello notes")


def test_url_with_a_generic_content_type_is_sniffed(site):
    assert inline(to_part(f"{site}/doc")) == ("application/pdf", PDF)


def test_url_image_is_downscaled(site):
    mime, data = inline(to_part(f"{site}/wide"))
    assert (mime, decode(data).size) == ("image/jpeg", (1536, 768))


def test_url_404_is_a_media_error(site):
    with pytest.raises(MediaError) as info:
        to_part(f"{site}/missing.png")
    assert info.value.message.startswith(f"Could not fetch URL: {site}/missing.png")
    assert "404" in info.value.message


def test_refused_connection_is_a_media_error(monkeypatch):
    import socket

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(MediaError) as info:
        to_part(f"http://127.0.0.1:{port}/x.png")
    assert info.value.message.startswith("Could not fetch URL")
    assert "ConnectError" in info.value.message


# -- attachment (--image) ---------------------------------------------------------------


def test_attachment_prefers_a_variable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "img").write_bytes(b"a file named like the variable")
    namespace = {"img": PDF}
    assert inline(attachment("img", namespace)) == ("application/pdf", PDF)


def test_attachment_path_url_and_string_variable(tmp_path, site):
    path = tmp_path / "chart.png"
    path.write_bytes(SNIFFED["png"][0])
    assert inline(attachment(str(path), {})) == ("image/png", SNIFFED["png"][0])
    assert inline(attachment(f" {site}/notes.txt ", {})) == ("text/plain", b"hello notes")
    assert inline(attachment("where", {"where": str(path)}))[1] == SNIFFED["png"][0]


def test_attachment_passes_options_on():
    part = attachment("big", {"big": Image.new("RGB", (400, 100))}, max_side=40)
    assert decode(inline(part)[1]).size == (40, 10)


def test_attachment_of_an_unknown_name():
    with pytest.raises(MediaError) as info:
        attachment("picture", {"other": 1})
    assert "no variable or file named 'picture'" in info.value.message


def test_parts_and_uploaded_files_pass_through(client, server):
    from google.genai import types

    part = types.Part(text="already a part")
    assert to_part(part) is part
    assert is_media(part)
    file = client.files.upload(file=io.BytesIO(PDF), config={"mime_type": "application/pdf"})
    file_part = to_part(file)
    assert (file_part.file_data.file_uri, file_part.file_data.mime_type) == (file.uri, "application/pdf")


# -- the Files API ----------------------------------------------------------------------


@pytest.fixture
def small_inline_limit(monkeypatch):
    """Data over 1000 bytes goes through the Files API (no 20 MB test data)."""
    monkeypatch.setattr(media.inputs, "INLINE_LIMIT", 1000)


def big_pdf(size: int = 5000, fill: bytes = b"x") -> bytes:
    return PDF + fill * (size - len(PDF))


def exchange(server) -> list[tuple[str, str | None]]:
    return [(r.action, r.upload_command) for r in server.requests]


def test_large_data_is_uploaded_and_referenced(client, server, uploads, small_inline_limit):
    data = big_pdf()
    part = to_part(data, client=client, uploads=uploads)
    assert part.inline_data is None
    name = "files/file00000001"
    assert (part.file_data.file_uri, part.file_data.mime_type) == (
        f"{server.url}/v1beta/files/file00000001",
        "application/pdf",
    )
    assert server.files[name]["data"] == data
    assert server.files[name]["meta"]["state"] == "ACTIVE"
    assert server.files[name]["meta"]["mimeType"] == "application/pdf"
    # The generate request carries the reference, not the bytes, before the text.
    assert send(client, server, part) == [("application/pdf", part.file_data.file_uri)]


def test_the_resumable_exchange_as_the_server_saw_it(client, server, uploads, small_inline_limit):
    data = big_pdf()
    server.file_processing_polls = 3
    to_part(data, client=client, uploads=uploads)
    assert exchange(server) == [
        ("uploadStart", "start"),
        ("uploadChunk", "upload, finalize"),
        ("getFile", None),
        ("getFile", None),
        ("getFile", None),
    ]
    start, chunk, *polls = server.requests
    assert start.method == "POST" and start.path.startswith("/upload/") and start.path.endswith("/files")
    assert start.headers["x-goog-upload-protocol"] == "resumable"
    assert start.headers["x-goog-upload-header-content-length"] == str(len(data))
    assert start.headers["x-goog-upload-header-content-type"] == "application/pdf"
    assert start.body["file"]["mime_type"] == "application/pdf"
    assert start.body["file"]["display_name"] == "bytes"
    assert chunk.headers["x-goog-upload-offset"] == "0"
    assert chunk.query["upload_id"]
    assert chunk.raw_body == data
    assert {r.file for r in polls} == {"files/file00000001"}
    assert server.files["files/file00000001"]["meta"]["state"] == "ACTIVE"


def test_polling_sleeps_between_looks_but_not_before_the_first(client, server, fake_time, uploads,
                                                                small_inline_limit):
    server.file_processing_polls = 3
    to_part(big_pdf(), client=client, uploads=uploads)
    assert len(fake_time.sleeps) == 2
    server.reset()
    fake_time.sleeps.clear()
    server.file_processing_polls = 0  # ACTIVE in the upload's own answer
    to_part(big_pdf(fill=b"y"), client=client, uploads=uploads)
    assert [action for action, _ in exchange(server)] == ["uploadStart", "uploadChunk"]
    assert fake_time.sleeps == []


def test_the_same_bytes_upload_once_per_session(client, server, uploads, small_inline_limit):
    data = big_pdf()
    first = to_part(data, client=client, uploads=uploads)
    count = len(server.requests)
    second = to_part(bytearray(data), client=client, uploads=uploads)
    assert len(server.requests) == count  # no upload, no poll
    assert second.file_data.file_uri == first.file_data.file_uri
    other = to_part(big_pdf(fill=b"z"), client=client, uploads=uploads)
    assert other.file_data.file_uri != first.file_data.file_uri
    assert [a for a, _ in exchange(server)].count("uploadStart") == 2
    assert len(uploads) == 2


def test_a_fresh_session_uploads_again(client, server, fake_time, small_inline_limit):
    data = big_pdf()
    to_part(data, client=client, uploads=Uploads(sleep=fake_time.sleep))
    to_part(data, client=client, uploads=Uploads(sleep=fake_time.sleep))
    assert [a for a, _ in exchange(server)].count("uploadStart") == 2


def test_an_expiring_upload_is_replaced(client, server, uploads, small_inline_limit):
    from datetime import UTC, datetime

    data = big_pdf()
    first = to_part(data, client=client, uploads=uploads)
    (file,) = uploads.files.values()
    file.expiration_time = datetime.now(UTC)
    second = to_part(data, client=client, uploads=uploads)
    assert second.file_data.file_uri != first.file_data.file_uri


def test_failed_processing_is_a_media_error(client, server, uploads, small_inline_limit):
    server.file_fail = True
    with pytest.raises(MediaError) as info:
        to_part(big_pdf(), client=client, uploads=uploads)
    assert "could not process" in info.value.message
    assert "The file could not be processed." in info.value.message
    assert len(uploads) == 0  # not kept: running the cell again uploads afresh
    server.file_fail = False
    to_part(big_pdf(), client=client, uploads=uploads)
    assert [a for a, _ in exchange(server)].count("uploadStart") == 2


def test_processing_wait_is_bounded_and_the_upload_is_kept(client, server, fake_time, small_inline_limit):
    uploads = Uploads(max_wait=10, sleep=fake_time.sleep, clock=fake_time.clock)
    server.file_processing_polls = 1000
    with pytest.raises(MediaError, match="still being processed"):
        to_part(big_pdf(), client=client, uploads=uploads)
    assert fake_time.now == pytest.approx(10)
    server.file_processing_polls = 0
    server.files["files/file00000001"]["polls_left"] = 1  # ready at the next look
    part = to_part(big_pdf(), client=client, uploads=uploads)
    assert [a for a, _ in exchange(server)].count("uploadStart") == 1
    assert part.file_data.file_uri.endswith("/files/file00000001")


def test_progress_stages(client, server, uploads, small_inline_limit):
    calls = []
    to_part(big_pdf(), client=client, uploads=uploads, progress=lambda *call: calls.append(call))
    assert calls == [("uploading", 0.0), ("uploaded", 1.0), ("processing", None), ("done", 1.0)]
    calls.clear()
    to_part(big_pdf(), client=client, uploads=uploads, progress=lambda *call: calls.append(call))
    assert calls == []  # reused: nothing to show


def test_chunked_upload_reports_progress(client, server, uploads, small_inline_limit, monkeypatch):
    from google.genai import _api_client

    monkeypatch.setattr(_api_client, "CHUNK_SIZE", 2000)
    data = big_pdf(5000)
    calls = []
    to_part(data, client=client, uploads=uploads, progress=lambda *call: calls.append(call))
    chunks = [r for r in server.requests if r.action == "uploadChunk"]
    assert [(r.upload_command, r.headers["x-goog-upload-offset"]) for r in chunks] == [
        ("upload", "0"),
        ("upload", "2000"),
        ("upload, finalize", "4000"),
    ]
    assert b"".join(r.raw_body for r in chunks) == data
    assert calls[:3] == [("uploading", 0.0), ("uploading", 0.4), ("uploading", 0.8)]
    assert calls[-1] == ("done", 1.0)


def test_large_file_path_is_uploaded_with_its_name(client, server, uploads, small_inline_limit, tmp_path):
    path = tmp_path / "talk.mp4"
    path.write_bytes(mp4_bytes() + b"\x00" * 3000)
    part = to_part(path, client=client, uploads=uploads)
    assert part.file_data.mime_type == "video/mp4"
    meta = server.files["files/file00000001"]["meta"]
    size = str(path.stat().st_size)
    assert (meta["displayName"], meta["mimeType"], meta["sizeBytes"]) == ("talk.mp4", "video/mp4", size)


def test_large_data_without_a_client(small_inline_limit):
    with pytest.raises(MediaError, match="needs the Files API"):
        to_part(big_pdf())


def test_upload_errors_read_like_other_request_errors(client, server, uploads, small_inline_limit):
    server.valid_keys = {"another-key"}
    with pytest.raises(GeminiError) as info:
        to_part(big_pdf(), client=client, uploads=uploads)
    assert info.value.kind == "invalid-key"


def test_too_large_even_for_the_files_api(client, server, uploads, tmp_path, monkeypatch):
    monkeypatch.setattr(media.inputs, "UPLOAD_LIMIT", 100)
    path = tmp_path / "huge.wav"
    path.write_bytes(wav_bytes() + b"\x00" * 200)
    data = path.read_bytes()
    with pytest.raises(MediaError, match="too large even for the Files API"):
        to_part(data, client=client, uploads=uploads)

    def no_reading(self):
        raise AssertionError("a file over the limit must be refused before it is read")

    monkeypatch.setattr(Path, "read_bytes", no_reading)
    with pytest.raises(MediaError, match="too large even for the Files API"):
        to_part(path, client=client, uploads=uploads)
    assert server.requests == []


# -- the fake server's Files API, beyond what media.py uses -------------------------------


def test_files_list_get_delete(client, server):
    names = [client.files.upload(file=io.BytesIO(b"file %d" % i), config={"mime_type": "text/plain"}).name
             for i in range(3)]
    assert sorted(f.name for f in client.files.list(config={"page_size": 2})) == sorted(names)
    assert [r.action for r in server.requests].count("listFiles") == 2  # two pages
    got = client.files.get(name=names[0])
    assert (got.state.name, got.size_bytes, got.mime_type) == ("ACTIVE", 6, "text/plain")
    assert base64.b64decode(got.sha256_hash).decode() == __import__("hashlib").sha256(b"file 0").hexdigest()
    client.files.delete(name=names[0])
    assert names[0] not in server.files
    from google.genai import errors

    with pytest.raises(errors.ClientError) as info:
        client.files.get(name=names[0])
    assert info.value.code == 403
    assert [r.action for r in server.requests].count("deleteFile") == 1


def test_generate_refuses_a_file_that_is_not_active(client, server):
    from google.genai import errors, types

    server.file_processing_polls = 2
    file = client.files.upload(file=io.BytesIO(b"text"), config={"mime_type": "text/plain"})
    part = types.Part(file_data=types.FileData(file_uri=file.uri, mime_type="text/plain"))
    with pytest.raises(errors.ClientError) as info:
        client.models.generate_content(model=MODEL, contents=[part, "hi"])
    assert info.value.code == 400 and "not in an ACTIVE state" in info.value.message
    gone = types.Part(file_data=types.FileData(file_uri=f"{server.url}/v1beta/files/nosuch", mime_type="text/plain"))
    with pytest.raises(errors.ClientError) as info:
        client.models.generate_content(model=MODEL, contents=[gone, "hi"])
    assert info.value.code == 403


def test_upload_with_a_wrong_offset_is_refused(server):
    import urllib.error
    import urllib.request

    def post(url, data, headers):
        request = urllib.request.Request(url, data=data, headers={"x-goog-api-key": "k", **headers}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.headers, err.read()

    status, headers, _ = post(
        f"{server.url}/upload/v1beta/files",
        b'{"file": {"displayName": "d"}}',
        {"Content-Type": "application/json", "X-Goog-Upload-Protocol": "resumable",
         "X-Goog-Upload-Command": "start", "X-Goog-Upload-Header-Content-Length": "4",
         "X-Goog-Upload-Header-Content-Type": "text/plain"},
    )
    upload_url = headers["X-Goog-Upload-URL"]
    assert status == 200 and upload_url.startswith(f"{server.url}/upload/v1beta/files?upload_id=")
    status, headers, body = post(upload_url, b"abcd", {"X-Goog-Upload-Command": "upload, finalize",
                                                       "X-Goog-Upload-Offset": "7"})
    assert status == 400 and headers["X-Goog-Upload-Status"] == "final"
    assert b"X-Goog-Upload-Offset" in body
    status, headers, body = post(upload_url, b"abcd", {"X-Goog-Upload-Command": "upload, finalize",
                                                       "X-Goog-Upload-Offset": "0"})
    assert status == 200 and headers["X-Goog-Upload-Status"] == "final"
    assert b'"displayName": "d"' in body and b'"state": "PROCESSING"' in body


def test_reset_forgets_files(client, server):
    client.files.upload(file=io.BytesIO(b"x"), config={"mime_type": "text/plain"})
    assert server.files
    server.file_fail, server.file_processing_polls = True, 5
    server.reset()
    assert server.files == {}
    assert (server.file_fail, server.file_processing_polls) == (False, 1)

"""Answers with images and speech, as a user sees them in JupyterLab 4 (headless Chromium).

One JupyterLab server, one browser and one notebook serve the module. The fake Gemini
server runs in this process and is given the two answers before the notebook runs:

1. an image model's answer with a caption and three PNGs (red, green, blue, 640x360):
   the output holds one `.gemini-gallery` with three decoded images (natural size
   640x360; the pixel drawn at each one's centre has its colour, in order), side by side
   (at least two in the first row; the gallery wraps in a narrow output), each visible and
   scaled down to fit its tile; a click shows one at its full size (the ZOOM handler lifts
   its max-width and max-height), a second click fits it again;
2. a TTS model's answer, one part of raw PCM (`audio/L16;codec=pcm;rate=24000`, a 0.5 s
   440 Hz tone): the output holds an `<audio controls>` whose src is a
   `data:audio/wav;base64,` URI that Chromium decodes to a 0.5 s clip (PCM not wrapped
   as WAV would not load; a wrong rate would give another duration), and the output's
   HTML never names audio/L16;
3. both outputs are inert: no <script>, iframe, object or embed, no error output, and no
   event handler but the extension's own ZOOM onclick on each gallery image.

4. a zoomed gallery image takes a row of its own: no other image is drawn over it.

Screenshots go to test-artifacts/browser/media-*.png.
"""

from __future__ import annotations

import base64
import io
import math
import re
from typing import Any, NamedTuple

import pytest

from tests.browser.lab import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    serve_fake,
    serve_lab,
    wait_until,
    write_notebook,
)
from tests.conftest import TEST_KEY, kernel_environment

pytestmark = pytest.mark.browser

NOTEBOOK = "media_answers.ipynb"
IMAGE_MODEL = "gemini-2.5-flash-image"
TTS_MODEL = "gemini-2.5-flash-preview-tts"
CAPTION = "Three postcards, as asked."
COLOURS = [(220, 30, 30), (30, 200, 60), (30, 60, 220)]
SIZE = (640, 360)  # larger than a gallery tile (320 px), so full size differs from fitted
RATE, SECONDS = 24_000, 0.5
CELLS = [
    "%load_ext gemini_magic",
    f"%%gemini -m {IMAGE_MODEL} --aspect-ratio 16:9\nThree postcards",
    f"%%gemini -m {TTS_MODEL} --voice Kore\nSay hi.",
]
IMAGE_CELL, AUDIO_CELL = 1, 2


def png(colour: tuple[int, int, int]) -> str:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", SIZE, colour).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def pcm_tone() -> str:
    """SECONDS of a 440 Hz sine: 16-bit little-endian mono PCM at RATE, as Gemini's TTS sends."""
    samples = int(RATE * SECONDS)
    data = b"".join(int(8000 * math.sin(2 * math.pi * 440 * i / RATE)).to_bytes(2, "little", signed=True)
                    for i in range(samples))
    return base64.b64encode(data).decode()


# -- the module's services ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake():
    yield from serve_fake()


@pytest.fixture(scope="module")
def lab(tmp_path_factory, fake):
    # The outputs themselves are plain HTML: the extension is loaded where built, not needed.
    yield from serve_lab(tmp_path_factory, "media", kernel_environment(fake.url, TEST_KEY), extension="optional")


@pytest.fixture(scope="module")
def page(lab, fake):
    """The notebook, run once with both answers queued; the page showing it."""
    from playwright.sync_api import sync_playwright

    from tests.fake_gemini import Reply

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    fake.queue(
        Reply(parts=[{"text": CAPTION}] + [{"inlineData": {"mimeType": "image/png", "data": png(c)}}
                                           for c in COLOURS]),
        Reply(parts=[{"inlineData": {"mimeType": f"audio/L16;codec=pcm;rate={RATE}", "data": pcm_tone()}}]),
    )
    write_notebook(lab.root / NOTEBOOK, CELLS)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1000})
            context.set_default_timeout(20_000)
            page = context.new_page()
            page.goto(f"{lab.url}/lab/workspaces/media/tree/{NOTEBOOK}?token={lab.token}")
            tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text=NOTEBOOK).first
            tab.wait_for(timeout=60_000)
            panel = page.locator(f"[id='{tab.get_attribute('data-id')}']")
            panel.locator(".jp-CodeCell").first.wait_for()
            wait_until(lambda: lab.kernel_ready(NOTEBOOK), 60, f"the kernel of {NOTEBOOK} to be idle")
            run_all(page)
            cells = panel.locator(".jp-CodeCell")
            # The last cell's prompt gets its number once every cell has run.
            wait_until(lambda: re.search(r"\[\d+\]", cells.nth(AUDIO_CELL).locator(".jp-InputPrompt").inner_text()),
                       60, "every cell to have run")
            yield Shown(page, panel)
        finally:
            browser.close()


class Shown(NamedTuple):
    page: Any
    panel: Any


def run_all(page) -> None:
    def menu() -> None:
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel").filter(has_text=re.compile("^Run All Cells$")).first.click()

    menu()
    dialog = page.locator(".jp-Dialog .jp-mod-accept")
    if dialog.count():  # a stray "Select Kernel" dialog: accept it and run again
        dialog.first.click()
        menu()


def output(shown: Shown, index: int):
    return shown.panel.locator(".jp-CodeCell").nth(index).locator(".jp-OutputArea")


def shot(locator, name: str) -> None:
    locator.screenshot(path=str(ARTIFACTS / f"media-{name}.png"))


# Each image: where it is, its displayed and natural size, whether it is visible and on top
# at its centre, and the colour of the pixel at its centre once drawn on a canvas.
IMAGES = """gallery => [...gallery.querySelectorAll('img')].map(img => {
  const r = img.getBoundingClientRect();
  const hit = document.elementFromPoint((r.left + r.right) / 2, (r.top + r.bottom) / 2);
  let colour = null;
  if (img.complete && img.naturalWidth) {
    const c = document.createElement('canvas');
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const g = c.getContext('2d'); g.drawImage(img, 0, 0);
    colour = [...g.getImageData(img.naturalWidth >> 1, img.naturalHeight >> 1, 1, 1).data].slice(0, 3);
  }
  return {top: r.top, left: r.left, right: r.right, width: r.width, height: r.height,
          naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight, complete: img.complete,
          onTop: hit === img, colour, cursor: img.style.cursor};
})"""

DURATION = """audio => new Promise((resolve, reject) => {
  if (audio.readyState >= 1) { resolve(audio.duration); return; }
  audio.addEventListener('loadedmetadata', () => resolve(audio.duration));
  audio.addEventListener('error', () => reject(new Error('audio error ' + (audio.error && audio.error.code))));
  audio.load();
})"""


def requests_by_model(fake) -> list[str]:
    return [r.model for r in list(fake.requests) if r.action in ("generateContent", "streamGenerateContent")]


# -- 1. the image gallery ------------------------------------------------------------------------------


def test_images_show_side_by_side_in_a_gallery_and_open_full_size(page, fake):
    out = output(page, IMAGE_CELL)
    gallery = out.locator(".gemini-gallery")
    gallery.wait_for(timeout=30_000)
    assert requests_by_model(fake)[:1] == [IMAGE_MODEL], requests_by_model(fake)
    assert gallery.count() == 1
    imgs = gallery.locator("img")
    assert imgs.count() == 3
    assert CAPTION in out.inner_text()
    wait_until(lambda: all(i["complete"] for i in gallery.evaluate(IMAGES)), 10, "the images to load")
    gallery.scroll_into_view_if_needed()
    shot(page.page, "1-gallery-page")
    shot(out, "1-gallery")
    images = gallery.evaluate(IMAGES)
    for n, (img, colour) in enumerate(zip(images, COLOURS, strict=True)):
        # Decoded from its data URI, at its own size, and the image that was sent in this place.
        assert (img["naturalWidth"], img["naturalHeight"]) == SIZE, (n, img)
        assert img["colour"] == list(colour), (n, img)
        assert imgs.nth(n).is_visible()
        assert img["width"] > 100 and img["height"] > 50 and img["onTop"], (n, img)
        # Fitted to its tile (at most 320 px), in proportion.
        assert img["width"] <= 321 and abs(img["width"] / img["height"] - 16 / 9) < 0.05, (n, img)
        assert img["cursor"] == "zoom-in", (n, img)
    # Side by side: in rows (the gallery wraps where the output is narrow), at least two in
    # the first; in each row left to right without overlapping; each row under the last.
    rows: list[list[dict]] = []
    for img in images:
        if rows and abs(img["top"] - rows[-1][0]["top"]) <= 2:
            rows[-1].append(img)
        else:
            rows.append([img])
    assert len(rows[0]) >= 2, images
    for row in rows:
        assert all(a["right"] <= b["left"] for a, b in zip(row, row[1:], strict=False)), images
    for above, below in zip(rows, rows[1:], strict=False):
        assert below[0]["top"] >= above[0]["top"] + above[0]["height"], images

    # A click shows the image at full size; another fits it again.
    first = imgs.nth(0)
    first.click()
    wait_until(lambda: gallery.evaluate(IMAGES)[0]["width"] == SIZE[0], 5, "the image at full size")
    zoomed = gallery.evaluate(IMAGES)[0]
    assert (zoomed["width"], zoomed["height"]) == SIZE, zoomed
    assert zoomed["cursor"] == "zoom-out", zoomed
    shot(out, "1-gallery-zoomed")
    first.click(position={"x": 20, "y": 20})  # a corner of it that no neighbour can cover
    wait_until(lambda: gallery.evaluate(IMAGES)[0]["width"] <= 321, 5, "the image fitted again")
    assert gallery.evaluate(IMAGES)[0]["cursor"] == "zoom-in"


# -- 2. the audio player -------------------------------------------------------------------------------


def test_speech_plays_as_wav_of_the_right_length(page, fake):
    out = output(page, AUDIO_CELL)
    audio = out.locator("audio")
    audio.wait_for(timeout=30_000)
    assert requests_by_model(fake)[1:2] == [TTS_MODEL], requests_by_model(fake)
    assert audio.count() == 1
    assert audio.get_attribute("controls") is not None
    src = audio.get_attribute("src") or ""
    assert src.startswith("data:audio/wav;base64,"), src[:80]
    wav = base64.b64decode(src.removeprefix("data:audio/wav;base64,"))
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE", wav[:16]
    duration = audio.evaluate(DURATION)
    assert 0.4 <= duration <= 0.6, duration
    assert audio.is_visible()
    assert "audio/l16" not in out.inner_html().lower()
    audio.scroll_into_view_if_needed()
    shot(page.page, "2-audio-page")
    shot(out, "2-audio")


# -- 3. both outputs are inert -------------------------------------------------------------------------

# Every element of an output with an event-handler attribute: [tag, attribute names].
HANDLERS = """out => [...out.querySelectorAll('*')]
  .map(e => [e.tagName.toLowerCase(), e.getAttributeNames().filter(n => n.startsWith('on'))])
  .filter(([, names]) => names.length)"""


def test_media_outputs_are_inert(page):
    for index in (IMAGE_CELL, AUDIO_CELL):
        out = output(page, index)
        out.locator(".gemini-answer").first.wait_for(timeout=30_000)
        assert out.locator("script").count() == 0, out.inner_html()[:500]
        assert out.locator("iframe, object, embed").count() == 0, out.inner_html()[:500]
        # No error or traceback beside the answer.
        assert out.locator("[data-mime-type='application/vnd.jupyter.stderr'],"
                           " [data-mime-type='application/vnd.jupyter.error']").count() == 0, out.inner_text()
    # The only handlers are the extension's own: ZOOM on each gallery image; none by audio.
    assert output(page, IMAGE_CELL).evaluate(HANDLERS) == [["img", ["onclick"]]] * 3
    assert output(page, AUDIO_CELL).evaluate(HANDLERS) == []


# -- a known defect: a zoomed gallery image is covered by its neighbour --------------------------------

# Sample points over the image's box (5 x 5, inset 2 px): which ones show something else on top.
COVERED = """img => { const r = img.getBoundingClientRect(), out = [];
  for (let i = 0; i < 5; i++) for (let j = 0; j < 5; j++) {
    const x = r.left + 2 + (r.width - 4) * i / 4, y = r.top + 2 + (r.height - 4) * j / 4;
    const hit = document.elementFromPoint(x, y);
    if (hit !== img) out.push([Math.round(x), Math.round(y), hit && hit.outerHTML.slice(0, 60)]);
  }
  return out; }"""


def test_zoomed_gallery_image_is_not_covered(page):
    gallery = output(page, IMAGE_CELL).locator(".gemini-gallery")
    gallery.wait_for(timeout=30_000)
    first = gallery.locator("img").nth(0)
    first.click(position={"x": 20, "y": 20})
    try:
        wait_until(lambda: first.evaluate("i => i.getBoundingClientRect().width") == SIZE[0], 5,
                   "the image at full size")
        assert first.evaluate(COVERED) == []
    finally:
        first.click(position={"x": 20, "y": 20})
        wait_until(lambda: first.evaluate("i => i.getBoundingClientRect().width") <= 321, 5, "the image fitted")

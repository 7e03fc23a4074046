"""Issue 14 in real headless Chromium, as a first visitor meets the app, at desktop (1366x900) and phone
(390x844) sizes: the live webcam mode driven by a fake camera (a real photo animated by fdin.synth),
the example visible without scrolling, the consent hint, every pair of a six-face photo, the no-face
message, one message for a renamed text file, the HEVC preview note and the phone layout.

Screenshots go to a temporary folder, or to ``docs/screenshots/`` with ``FDIN_UPDATE_SCREENSHOTS=1``.
Skips (with the reason) only when no chromium executable is installed; ``make test`` installs it.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tests.app_support import HAVE_FDIN_WEIGHTS, NO_FDIN_WEIGHTS, group_photo, launched, smile_clip, text_as

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium executable (make test installs Debian's chromium)"),
]

SCREENSHOTS = (Path(__file__).resolve().parents[2] / "docs" / "screenshots"
               if os.environ.get("FDIN_UPDATE_SCREENSHOTS") == "1"
               else Path(tempfile.gettempdir()) / "fdin-screenshots")
MODEL_TIMEOUT_MS = 180_000
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}


def camera_y4m(folder: Path) -> Path:
    """640x480 fake-camera clip: the astronaut photo smiling (fdin.synth), forward and back, 4 times."""
    import cv2

    from benchmarks.live import frames_640x480

    frames = frames_640x480(2 * 95)
    path = folder / "camera_640x480.y4m"
    with open(path, "wb") as out:
        out.write(b"YUV4MPEG2 W640 H480 F30:1 Ip A1:1 C420jpeg\n")
        for _ in range(4):
            for frame in frames:
                out.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).tobytes())
    return path


def hevc_clip(folder: Path) -> Path:
    """The smile clip re-encoded as HEVC in a .mov (what iPhones record)."""
    import av

    src, dst = smile_clip(folder), folder / "smile_hevc.mov"
    if dst.is_file():
        return dst
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = out.add_stream("libx265", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 320, "yuv420p"
        stream.options = {"x265-params": "log-level=none"}
        for frame in inp.decode(video=0):
            for packet in stream.encode(frame.reformat(320, 320, "yuv420p")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return dst


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("visitor-media")


@pytest.fixture(scope="module")
def app():
    from fdin.app import build_demo
    from fdin.app.examples import prepare_examples

    prepare_examples()
    with launched(build_demo(examples="lazy")) as demo:
        yield demo


@pytest.fixture(scope="module")
def browser(media):
    from playwright.sync_api import sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={camera_y4m(media).resolve()}"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        yield browser
        browser.close()


def _page(browser, app, viewport):
    context = browser.new_context(viewport=viewport, device_scale_factor=1,
                                  is_mobile=viewport is PHONE, has_touch=viewport is PHONE)
    context.grant_permissions(["camera"])
    page = context.new_page()
    page.goto(app.local_url)
    page.wait_for_selector("#fdin-consent input[type=checkbox]")
    return context, page


@pytest.fixture(params=["desktop", "phone"])
def page(request, browser, app):
    context, page = _page(browser, app, DESKTOP if request.param == "desktop" else PHONE)
    page.fdin_size = request.param
    yield page
    context.close()


@pytest.fixture()
def desktop(browser, app):
    context, page = _page(browser, app, DESKTOP)
    yield page
    context.close()


def _consent(page) -> None:
    page.check("#fdin-consent input[type=checkbox]")
    page.wait_for_function("() => !document.querySelector('#analyze-btn').disabled")


def _tab(page, name: str) -> None:
    """Open a tab; on a phone the later tabs sit behind the "More tabs" menu."""
    tab = page.get_by_role("tab", name=name)
    if tab.count() and tab.first.is_visible():
        tab.first.click()
        return
    page.get_by_label("More tabs").click()
    page.locator(".overflow-dropdown button", has_text=name).first.click()


def _shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(500)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _plot(page, elem_id: str):
    page.wait_for_function(
        f"() => {{ const p = document.querySelector('#{elem_id} .js-plotly-plot');"
        " return p && p.getBoundingClientRect().height > 50; }", timeout=MODEL_TIMEOUT_MS)
    return page.locator(f"#{elem_id} .js-plotly-plot").first


def _no_horizontal_scroll(page) -> None:
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"] + 1, f"the page is {width} px wide"


# --- item 7 and 5: the example and the consent hint, before anything is clicked ---------------------
def test_example_visible_without_scrolling_and_consent_hint(desktop) -> None:
    example = desktop.get_by_text("Example: a smile generated by fdin").first
    example.wait_for()
    box = desktop.locator("#video-in").locator("xpath=..").locator(".gallery, table, button.gallery-item").first
    box = example.bounding_box()
    assert box is not None and box["y"] + box["height"] <= DESKTOP["height"], box
    button = desktop.locator("#analyze-btn")
    assert button.is_disabled() and "Tick the consent box" in button.inner_text()
    # the example fills the input only: no analysis runs while consent is missing
    desktop.locator(".gallery-item, [data-testid='example-item'], table.gallery td, button.gallery-item").first.click()
    desktop.wait_for_timeout(1500)
    assert desktop.locator("#analysis-summary").inner_text().strip() == ""
    _consent(desktop)
    assert desktop.locator("#analyze-btn").inner_text().strip() == "Analyse video"
    _shot(desktop, "first_view_desktop")


# --- item 3: the live webcam mode -----------------------------------------------------------------
@pytest.mark.skipif(not HAVE_FDIN_WEIGHTS, reason=NO_FDIN_WEIGHTS)
def test_live_webcam_tracks_estimates_and_analyses(page) -> None:
    _consent(page)
    _tab(page, "Live webcam")
    cam = page.locator("#live-cam")
    cam.get_by_role("button", name=re.compile("Click to Access Webcam", re.I)).first.click(timeout=10_000) \
        if cam.get_by_text(re.compile("Click to Access Webcam", re.I)).count() else None
    page.locator('#live-cam video').first.wait_for(state="visible", timeout=30_000)
    page.locator("#live-cam button.capture-button, #live-cam button[aria-label*='ecord' i]").first.click()
    # the overlay updates with in-memory JPEGs; count updates for 5 s
    page.wait_for_function("() => { const i = document.querySelector('#live-overlay img');"
                           " return i && i.src.startsWith('data:image/jpeg'); }", timeout=60_000)
    updates = page.evaluate("""async () => {
        const seen = new Set(); const t0 = performance.now();
        while (performance.now() - t0 < 5000) {
          const i = document.querySelector('#live-overlay img'); if (i) seen.add(i.src.length + ':' + i.src.slice(-40));
          await new Promise(r => setTimeout(r, 10));
        }
        return seen.size; }""")
    print(f"\n[{page.fdin_size}] live overlay updates seen by the browser: {updates / 5:.1f} per second")
    # the browser sends the next frame when the last reply is in: the rate seen here is the round trip
    # on a shared machine (server-side speed: python -m benchmarks.live); it must stream, not stall
    assert updates >= 4, updates
    page.get_by_text(re.compile("Rolling FDIN (demonstration output|estimate)")).first.wait_for(timeout=60_000)
    _plot(page, "live-heat")  # refreshed about once a second: measure it in the page, not by handle
    width = page.evaluate("() => document.querySelector('#live-heat .js-plotly-plot').getBoundingClientRect().width")
    assert width > 300, width
    text = page.locator("#live-text").inner_text()
    assert "p_female" in text and "confidence" not in text.lower()
    page.wait_for_timeout(3000)  # a few seconds in the buffer
    page.click("#live-btn")
    page.get_by_text("Live webcam: the last").first.wait_for(timeout=MODEL_TIMEOUT_MS)
    summary = page.locator("#live-summary").inner_text()
    assert "from appearance" in summary and "from facial dynamics" in summary
    _plot(page, "live-heat-gender")
    _no_horizontal_scroll(page)
    _shot(page, f"live_webcam_{page.fdin_size}")


# --- items 1 and 2: every pair, readable at both sizes --------------------------------------------
def test_six_faces_every_pair_and_readable(page) -> None:
    _consent(page)
    _tab(page, "Relations")
    page.set_input_files("#photo-a input[type=file]", str(group_photo()))
    page.locator("#photo-a img").first.wait_for(timeout=30_000)
    page.click("#relate-btn")
    chart = _plot(page, "trait-chart")
    labels = page.evaluate("() => [...document.querySelectorAll('#trait-chart .ytick text')].map(t => t.textContent)")
    assert len(labels) == 15 and {"2 – 4", "3 – 5", "4 – 5"} <= set(labels), labels
    traits = page.evaluate("() => [...document.querySelectorAll('#trait-chart .xtick text')].map(t => t.textContent)")
    assert len(traits) == 8, traits
    assert "15 pairs" in chart.inner_text()
    assert chart.bounding_box()["width"] >= min(page.viewport_size["width"] - 80, 900)
    headers = page.locator("#faces-table th").all_inner_texts()
    assert any("apparent gender" in h for h in headers) and any("expression" in h for h in headers)
    if page.fdin_size == "phone":  # header words are not broken mid-word: each header's words fit its cell
        broken = page.evaluate("""() => [...document.querySelectorAll('#faces-table th')]
            .filter(th => th.scrollWidth > th.clientWidth + 1).length""")
        assert broken == 0
    _no_horizontal_scroll(page)
    _shot(page, f"relations_group_{page.fdin_size}")


@pytest.mark.skipif(not HAVE_FDIN_WEIGHTS, reason=NO_FDIN_WEIGHTS)
def test_heatmaps_on_a_phone_show_every_region(browser, app, media) -> None:
    context, page = _page(browser, app, PHONE)
    try:
        _consent(page)
        page.set_input_files("#video-in input[type=file]", str(smile_clip(media)))
        page.locator("#video-in video").first.wait_for(timeout=30_000)
        page.click("#analyze-btn")
        heat = _plot(page, "heat-gender")
        assert heat.bounding_box()["width"] >= 300  # the full phone width, not squeezed beside the age heatmap
        ticks = page.evaluate("() => [...document.querySelectorAll('#heat-gender .xtick text')].map(t => t.textContent)")
        assert len(ticks) == 12, ticks
        summary = page.locator("#analysis-summary").inner_text()
        assert "confidence" not in summary.lower() and "demonstration output" in summary
        assert "lost in" in summary and "averaged over" in summary
        _no_horizontal_scroll(page)
        _shot(page, "trait_estimation_phone")
    finally:
        context.close()


# --- items 3, 9: the Faces tab's messages ---------------------------------------------------------
def test_no_face_says_so(desktop, media) -> None:
    import cv2

    y, x = np.mgrid[0:400, 0:600]
    landscape = np.stack([(x // 3) % 256, (y // 2) % 256, np.full_like(x, 140)], -1).astype(np.uint8)
    path = media / "landscape.png"
    cv2.imwrite(str(path), landscape)
    _consent(desktop)
    _tab(desktop, "Faces")
    desktop.set_input_files("#faces-in input[type=file]", str(path))
    desktop.locator("#faces-in img").first.wait_for(timeout=30_000)
    desktop.click("#faces-btn")
    desktop.get_by_text("No face found").first.wait_for(timeout=MODEL_TIMEOUT_MS)
    assert "600×400" in desktop.locator("#faces-status").inner_text()


def test_renamed_text_file_gives_one_message(desktop, media) -> None:
    _consent(desktop)
    _tab(desktop, "Faces")
    desktop.set_input_files("#faces-in input[type=file]", str(text_as(media, "holiday.jpg")))
    desktop.wait_for_timeout(1500)
    desktop.click("#faces-btn")
    desktop.locator('[data-testid="toast-body"]').first.wait_for(timeout=60_000)
    desktop.wait_for_timeout(1500)
    toasts = desktop.locator('[data-testid="toast-body"]').all_inner_texts()
    assert len(toasts) == 1 and "not a photo" in toasts[0], toasts
    badges = desktop.evaluate("() => [...document.querySelectorAll('[data-testid=status-tracker] .error')]"
                              ".filter(e => e.offsetParent).length")
    assert badges == 0, f"{badges} red 'Error' badges on the outputs"
    _shot(desktop, "friendly_error")


# --- item 4: HEVC preview -----------------------------------------------------------------------------
def test_hevc_upload_explains_the_blank_preview(desktop, media) -> None:
    _consent(desktop)
    desktop.set_input_files("#video-in input[type=file]", str(hevc_clip(media)))
    desktop.get_by_text("This browser cannot preview this video").first.wait_for(timeout=30_000)
    assert "the upload worked" in desktop.locator("#preview-note").inner_text()

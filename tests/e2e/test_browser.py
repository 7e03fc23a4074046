"""End to end in real headless Chromium (Debian's package, driven by Playwright): the consent gate,
upload a video and see the importance heatmap render, record from a fake webcam fed by a generated
``.y4m`` clip and analyse it, two photos on the Relations tab, a bad file's friendly toast.
Screenshots of each tab are written to a temporary folder, or to ``docs/screenshots/`` (committed as
documentation) when ``FDIN_UPDATE_SCREENSHOTS=1`` is set, so a test run does not modify the checkout.

Skips (with the reason) only when no chromium executable is installed; ``make test`` installs it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app_support import (
    HAVE_FDIN_WEIGHTS,
    NO_FDIN_WEIGHTS,
    astronaut_photo,
    face_crop,
    group_photo,
    smile_clip,
    smile_y4m,
    text_as,
)
from tests.browser_support import BROWSER_MARKS, MODEL_TIMEOUT_MS, shot

pytestmark = BROWSER_MARKS
VIEWPORT = {"width": 1400, "height": 1000}


@pytest.fixture(scope="module")
def camera_clip(media) -> Path:
    return smile_y4m(media)


@pytest.fixture()
def page(browser, app):
    context = browser.new_context(viewport=VIEWPORT)
    context.grant_permissions(["camera"])
    page = context.new_page()
    page.goto(app.local_url)
    page.wait_for_selector("#fdin-consent input[type=checkbox]")
    yield page
    context.close()


def _consent(page) -> None:
    assert page.locator("#analyze-btn").is_disabled(), "buttons are disabled until consent is given"
    page.check("#fdin-consent input[type=checkbox]")
    page.wait_for_function("() => !document.querySelector('#analyze-btn').disabled")


def _plot_box(page, elem_id: str) -> dict:
    locator = page.locator(f"#{elem_id} .js-plotly-plot").first
    locator.wait_for(state="visible", timeout=MODEL_TIMEOUT_MS)
    page.wait_for_function(
        f"() => {{ const p = document.querySelector('#{elem_id} .js-plotly-plot');"
        " return p && p.getBoundingClientRect().height > 50 && p.getBoundingClientRect().width > 50; }",
        timeout=30_000)
    return locator.bounding_box()


def _tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def test_notice_and_consent_gate(page) -> None:
    assert page.locator("#fdin-notice").is_visible()
    assert "Nothing is stored" in page.locator("#fdin-notice").inner_text()
    assert page.locator("#analyze-btn").is_disabled()
    _tab(page, "Faces")  # tabs render when first shown
    assert page.locator("#faces-btn").is_disabled()
    page.check("#fdin-consent input[type=checkbox]")
    page.wait_for_function("() => !document.querySelector('#faces-btn').disabled")
    _tab(page, "Traits")
    assert page.locator("#analyze-btn").is_enabled()


@pytest.mark.skipif(not HAVE_FDIN_WEIGHTS, reason=NO_FDIN_WEIGHTS)
def test_upload_video_renders_the_heatmap(page, media) -> None:
    _consent(page)
    page.set_input_files("#video-in input[type=file]", str(smile_clip(media)))
    page.locator("#video-in video").first.wait_for(timeout=30_000)
    page.click("#analyze-btn")
    box = _plot_box(page, "heat-gender")
    assert box["height"] > 100 and box["width"] > 100
    assert _plot_box(page, "heat-age")["height"] > 100
    assert _plot_box(page, "region-dynamics")["height"] > 100
    heatmap_text = page.locator("#heat-gender").inner_text()
    assert "left eye" in heatmap_text or "right eye" in heatmap_text  # region names on the axes
    assert "from facial dynamics" in page.locator("#analysis-summary").inner_text()
    shot(page, "trait_estimation")


@pytest.mark.skipif(not HAVE_FDIN_WEIGHTS, reason=NO_FDIN_WEIGHTS)
def test_record_from_fake_webcam_and_analyse(page) -> None:
    _consent(page)
    page.click('#video-in button[aria-label="Capture from camera"]')
    access = page.locator('#video-in button:has-text("Click to Access Webcam")')
    if access.count():
        access.click()
    preview = page.locator('#video-in video[data-testid="webcam-video"]')
    preview.wait_for(state="visible", timeout=30_000)
    # the preview is not mirrored (WebcamOptions(mirror=False)): left/right stay the camera's
    assert "flip" not in (preview.get_attribute("class") or "")
    record = page.locator("#video-in button.capture-button")
    record.click()  # the same button starts and stops the recording
    page.locator('#video-in button.capture-button:has-text("Stop")').wait_for(timeout=10_000)
    page.wait_for_timeout(4500)
    record.click()
    # the recording is uploaded, then shown in a player (a <video> with a source)
    page.wait_for_function("() => [...document.querySelectorAll('#video-in video')]"
                           ".some(v => v.getAttribute('src') && v.dataset.testid !== 'webcam-video')",
                           timeout=30_000)
    page.click("#analyze-btn")
    box = _plot_box(page, "heat-gender")
    assert box["height"] > 100
    summary = page.locator("#analysis-summary").inner_text()
    assert "from facial dynamics" in summary
    shot(page, "webcam_recording")


def test_relations_with_two_photos_shows_the_trait_chart(page, media) -> None:
    _consent(page)
    _tab(page, "Relations")
    page.set_input_files("#photo-a input[type=file]", str(astronaut_photo()))
    page.set_input_files("#photo-b input[type=file]", str(face_crop(media)))
    page.locator("#photo-b img").first.wait_for(timeout=30_000)
    page.click("#relate-btn")
    box = _plot_box(page, "trait-chart")
    assert box["height"] > 100
    assert "warm" in page.locator("#trait-chart").inner_text()
    assert not page.locator("#trait-in").is_visible()  # two faces: no matrix, so no trait to choose for it
    shot(page, "relations_two_photos")


def _relate_group_photo(page) -> None:
    """Consent, relate the six-face group photo, and wait for the relation matrix."""
    _consent(page)
    _tab(page, "Relations")
    page.set_input_files("#photo-a input[type=file]", str(group_photo()))
    page.locator("#photo-a img").first.wait_for(timeout=30_000)
    page.click("#relate-btn")
    assert _plot_box(page, "relation-matrix")["height"] > 100
    page.locator("#trait-in").wait_for(state="visible", timeout=30_000)  # 3+ faces: the matrix's trait


def test_relations_group_photo_shows_the_matrix(page) -> None:
    _relate_group_photo(page)
    shot(page, "relations_group")


def test_faces_tab(page) -> None:
    _consent(page)
    _tab(page, "Faces")
    page.set_input_files("#faces-in input[type=file]", str(group_photo()))
    page.locator("#faces-in img").first.wait_for(timeout=30_000)
    page.click("#faces-btn")
    page.locator("#faces-status").get_by_text("Found 6 faces").wait_for(timeout=MODEL_TIMEOUT_MS)
    shot(page, "faces")


def test_bad_file_shows_a_friendly_toast(page, media) -> None:
    _consent(page)
    _tab(page, "Faces")
    page.set_input_files("#faces-in input[type=file]", str(text_as(media, "<img src=x onerror=alert(1)>not-a-photo.jpg")))
    page.wait_for_timeout(1000)
    page.click("#faces-btn")
    toast = page.locator('[data-testid="toast-body"]').first
    toast.wait_for(timeout=60_000)
    text = toast.inner_text()
    assert "not a photo" in text, text
    assert "Traceback" not in text and "not-a-photo" not in text
    shot(page, "friendly_error")
    # the next request still works
    page.set_input_files("#faces-in input[type=file]", str(astronaut_photo()))
    page.wait_for_timeout(1000)
    page.click("#faces-btn")
    page.get_by_text('"landmarks"').first.wait_for(timeout=MODEL_TIMEOUT_MS)


def test_models_tab(page) -> None:
    _tab(page, "About & API")
    page.get_by_text("Disclaimers").first.wait_for()
    # the tab's parts render one after another: wait for the last one (a loaded server is slower)
    page.wait_for_function("() => document.body.innerText.includes('gradio_client')", timeout=30_000)
    text = page.inner_text("body")
    assert "gradio_client" in text and "binary label" in text and "generated" in text
    shot(page, "models_and_api")


def test_relations_trait_dropdown_redraws_the_matrix_from_the_server(page) -> None:
    """The redraw reads the session's last result kept on the server (gr.State)."""
    _relate_group_photo(page)
    page.get_by_label("Trait for the relation matrix (3+ faces)").click()
    page.get_by_role("option", name="dominant").click()
    page.locator("#relation-matrix", has_text="Dominant across all pairs").wait_for(timeout=30_000)

"""Shared by the real-browser tests in ``tests/e2e/`` (their fixtures live in ``tests/e2e/conftest.py``):
the chromium executable, the markers every browser module carries, where screenshots go, and the
timeout for model work seen through the browser."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: ``pytestmark`` of every browser module: skipped (with the reason) only without a chromium executable
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium executable (make test installs Debian's chromium)"),
]
#: a temporary folder, or ``docs/screenshots/`` (committed as documentation) with FDIN_UPDATE_SCREENSHOTS=1,
#: so a test run does not modify the checkout
SCREENSHOTS = (Path(__file__).resolve().parents[1] / "docs" / "screenshots"
               if os.environ.get("FDIN_UPDATE_SCREENSHOTS") == "1"
               else Path(tempfile.gettempdir()) / "fdin-screenshots")
MODEL_TIMEOUT_MS = 180_000
#: chromium flags: headless, no network side traffic, a fake camera fed by a file (appended per module)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]


def shot(page, name: str) -> None:
    """Full-page screenshot ``name``.png in :data:`SCREENSHOTS`."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(500)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

"""Fixtures of the real-browser tests: the launched app (examples prepared), a media folder, and one
chromium per module whose fake camera plays the module's ``camera_clip`` fixture (a ``.y4m`` file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app_support import launched
from tests.browser_support import CHROMIUM, CHROMIUM_ARGS


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e-media")


@pytest.fixture(scope="module")
def app():
    from fdin.app import build_demo
    from fdin.app.examples import prepare_examples

    prepare_examples()
    with launched(build_demo(examples="lazy")) as demo:
        yield demo


@pytest.fixture(scope="module")
def browser(camera_clip: Path):
    from playwright.sync_api import sync_playwright

    args = [*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={camera_clip.resolve()}"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        yield browser
        browser.close()

"""Helpers shared by the app tests: launch the real app on loopback, and generated inputs.

Inputs are real photos shipped in installed packages (insightface ``t1.jpg``, scikit-image's
astronaut) and clips generated from them (:mod:`tests.clips`); nothing is downloaded or committed.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fdin.weights import weights_dir


def _have_fdin_weights() -> bool:
    """The gender and age FDIN models the app would use (``weights/`` or ``FDIN_*_REPO``) exist."""
    from fdin.app.settings import resolved_model_dir
    from fdin.errors import FdinError

    try:
        return bool(resolved_model_dir("gender") and resolved_model_dir("age"))
    except FdinError:
        return False


HAVE_FDIN_WEIGHTS = _have_fdin_weights()
NO_FDIN_WEIGHTS = f"the FDIN gender/age weights are not present (looked in {weights_dir()})"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def launched(demo: Any = None, *, queue_max_size: int | None = None, **launch_overrides: Any) -> Iterator[Any]:
    """Launch ``demo`` (default: a fresh ``build_demo(examples="off")``) with the app's hardened
    settings on a free loopback port; yields the demo (``demo.local_url``); closes it afterwards."""
    from fdin.app import build_demo, launch_kwargs, queue_kwargs

    demo = demo if demo is not None else build_demo(examples="off")
    queue = queue_kwargs() if queue_max_size is None else queue_kwargs(max_size=queue_max_size)
    kwargs = {**launch_kwargs(port=free_port()), "prevent_thread_lock": True, "quiet": True,
              **launch_overrides}
    demo.queue(**queue).launch(**kwargs)
    try:
        yield demo
    finally:
        demo.close()


def wait_until_serving(url: str, log_path: Path, timeout_s: float = 120.0) -> None:
    """Wait until a launched ``app.py`` answers ``GET {url}config`` with 200; fail with the end of its
    log if it does not within ``timeout_s``."""
    import time

    import httpx
    import pytest

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "config", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.5)
    pytest.fail("the app did not start: " + log_path.read_text()[-2000:])


def group_photo() -> Path:
    """insightface's ``t1.jpg`` (six faces), copied to the examples folder."""
    from fdin.app.examples import example_photos

    return Path(example_photos()["group"])


def astronaut_photo() -> Path:
    from fdin.app.examples import example_photos

    return Path(example_photos()["astronaut"])


def face_crop(folder: Path, index: int = 2) -> Path:
    """One face of the group photo (by left-to-right index), with margin, as a JPEG."""
    import cv2

    from fdin.media import load_image
    from fdin.perception import detect_faces

    image = load_image(group_photo())
    face = detect_faces(image, with_appearance=False)[index]
    x0, y0, x1, y1 = face.bbox
    w, h = x1 - x0, y1 - y0
    crop = image[max(0, int(y0 - h)): int(y1 + h), max(0, int(x0 - w)): int(x1 + w)]
    path = folder / f"face_{index}.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    return path


def no_face_photo(folder: Path) -> Path:
    import cv2

    y, x = np.mgrid[0:240, 0:320]
    image = np.stack([x % 256, y % 256, np.full_like(x, 120)], -1).astype(np.uint8)
    path = folder / "gradient.png"
    cv2.imwrite(str(path), image)
    return path


def text_as(folder: Path, name: str) -> Path:
    """A text file under a media name (e.g. ``notes.jpg`` or ``notes.mp4``)."""
    path = folder / name
    path.write_text("this is not a picture\n" * 20)
    return path


def smile_clip(folder: Path, **kwargs: Any) -> Path:
    """The generated smile clip of :mod:`tests.clips` (astronaut photo) as H.264 MP4."""
    from tests.clips import smile_clip as make

    path = folder / "smile.mp4"
    if not path.is_file():
        make(path, **kwargs)
    return path


def smile_y4m(folder: Path, *, seconds_repeat: int = 3) -> Path:
    """The smile clip as a ``.y4m`` for Chromium's fake camera (``YUV4MPEG2 ... C420jpeg``).

    The clip is played forward then backward (``seconds_repeat`` times) so a recording of a few
    seconds always contains a full expression, whatever moment the camera loop starts at.
    """
    import cv2

    from tests.clips import smile_frames

    frames = smile_frames(fps=25.0)
    loop = np.concatenate([frames, frames[::-1]] * seconds_repeat)
    h, w = loop.shape[1:3]
    path = folder / "fake_camera.y4m"
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{w} H{h} F25:1 Ip A1:1 C420jpeg\n".encode())
        for frame in loop:
            out.write(b"FRAME\n")
            out.write(cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).tobytes())
    return path


def rss_mb(pid: int | None = None) -> float:
    """Resident set size of a process in MB (Linux ``/proc``)."""
    with open(f"/proc/{pid or os.getpid()}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")

"""The app's example inputs, made lazily: real photos that ship in installed packages and a smile
clip generated from one of them, written once into the cache folder (``<cache>/app-examples``).

Nothing here runs while the UI is built: the layout registers examples by path, and the files are
produced on the first call of :func:`example_photos` / :func:`example_clip` (``app.py`` calls
:func:`prepare_examples` before launching; the clip's face detection and H.264 encode then run once
per cache folder, not per start). No gradio here.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from fdin.config import cache_dir

log = logging.getLogger(__name__)

CLIP_NAME, GROUP_NAME, ASTRONAUT_NAME = "smile_astronaut_head.mp4", "group_t1.jpg", "astronaut.png"


def examples_dir() -> Path:
    """Where example inputs are written (inside the cache folder, which Gradio may serve from)."""
    return cache_dir("app-examples")


def examples_mode(mode: str | None = None) -> str:
    """``mode`` or ``FDIN_EXAMPLES``: "lazy" (default), "eager" or "off" (no examples). Examples only
    fill the input (the consent-gated button runs them), so "lazy" and "eager" show the same."""
    mode = (mode or os.environ.get("FDIN_EXAMPLES", "lazy")).strip().lower()
    return mode if mode in ("lazy", "eager", "off") else "lazy"


def example_photos() -> dict[str, str]:
    """Real photos that ship in installed packages, copied once to :func:`examples_dir`:
    ``{"group": insightface t1.jpg, "astronaut": scikit-image's astronaut}`` (missing ones left out)."""
    out: dict[str, str] = {}
    folder = examples_dir()
    try:
        import insightface

        src = Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"
        if src.is_file():
            dst = folder / GROUP_NAME
            if not dst.is_file():
                shutil.copyfile(src, dst)
            out["group"] = str(dst)
    except ImportError:
        pass
    try:
        dst = folder / ASTRONAUT_NAME
        if not dst.is_file():
            from PIL import Image
            from skimage.data import astronaut

            Image.fromarray(astronaut()).save(dst)
        out["astronaut"] = str(dst)
    except ImportError:
        pass
    return out


def example_clip() -> str | None:
    """A short smile clip generated from the astronaut photo (written once into :func:`examples_dir`)."""
    dst = examples_dir() / CLIP_NAME
    if dst.is_file():
        return str(dst)
    try:
        import cv2
        import numpy as np
        from skimage.data import astronaut

        from fdin.media import write_video
        from fdin.perception import detect_faces
        from fdin.synth import animate_photo, smile_sequence

        # head and shoulders, as a video call frames a face (on a tighter 300 px crop the
        # appearance model read the animated smile as male on half the frames, 0.48 +- 0.34 on average)
        photo = np.ascontiguousarray(cv2.resize(astronaut()[0:400, 60:460], (480, 480),
                                                interpolation=cv2.INTER_CUBIC))
        faces = detect_faces(photo)
        if not faces:
            return None
        landmarks = max(faces, key=lambda f: f.area).landmarks
        frames = animate_photo(photo, landmarks, smile_sequence(seed=0, fps=25.0))
        tmp = dst.with_suffix(f".tmp{os.getpid()}.mp4")
        write_video(frames, 25.0, tmp)
        os.replace(tmp, dst)
        return str(dst)
    except Exception:  # examples are optional: the app still works without them
        log.exception("could not generate the example clip")
        return None


def prepare_examples() -> dict[str, str | None]:
    """Make every example file now (idempotent): ``{"clip": ..., **photos}``."""
    return {"clip": example_clip(), **example_photos()}

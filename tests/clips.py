"""Test clip builders (generated at test time; no media fixtures are committed).

* :func:`photo` — a real photo shipped in an installed package (scikit-image's ``astronaut``),
  cropped to the face and upscaled so face backends find it easily.
* :func:`photo_landmarks` — its 68 landmarks from the perception layer.
* :func:`smile_frames` / :func:`smile_clip` — :func:`fdin.synth.animate_photo` of a synthetic smile on
  that photo (optionally encoded with :func:`fdin.media.write_video`).
* :func:`no_face_clip` — a video with no face in it.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np


@functools.lru_cache(maxsize=2)
def photo(side: int = 320) -> np.ndarray:
    """(side, side, 3) uint8 RGB: the astronaut's face and shoulders (public domain, NASA)."""
    import cv2
    from skimage.data import astronaut

    crop = astronaut()[0:300, 110:410]
    return np.ascontiguousarray(cv2.resize(crop, (side, side), interpolation=cv2.INTER_CUBIC))


@functools.lru_cache(maxsize=2)
def photo_landmarks(side: int = 320) -> np.ndarray:
    """(68, 2) float32 pixel landmarks of the largest face in :func:`photo` (perception layer)."""
    from fdin.perception import detect_faces

    faces = detect_faces(photo(side))
    if not faces:
        raise RuntimeError("the perception backend found no face in the test photo")
    return max(faces, key=lambda f: f.area).landmarks.astype(np.float32)


def smile_frames(*, fps: float = 25.0, seed: int = 0, side: int = 320, head_motion: bool = False,
                 motion_scale: float = 0.7) -> np.ndarray:
    """(T, side, side, 3) uint8 frames of the photo performing a synthetic smile (~3-4 s)."""
    from fdin.synth import animate_photo, smile_sequence

    sequence = smile_sequence(seed=seed, fps=fps, head_motion=head_motion)
    return animate_photo(photo(side), photo_landmarks(side), sequence, motion_scale=motion_scale)


def smile_clip(path: str | Path, **kwargs) -> Path:
    """Write :func:`smile_frames` as an H.264 MP4 at ``path``."""
    from fdin.media import write_video

    fps = kwargs.get("fps", 25.0)
    return write_video(smile_frames(**kwargs), fps, path)


def no_face_clip(path: str | Path, *, frames: int = 40, fps: float = 20.0, side: int = 160) -> Path:
    """A short MP4 of moving colour gradients (no face)."""
    from fdin.media import write_video

    y, x = np.mgrid[0:side, 0:side]
    out = np.stack([np.stack([(x + 3 * t) % 256, (y + 2 * t) % 256, np.full_like(x, 90)], -1)
                    for t in range(frames)]).astype(np.uint8)
    return write_video(out, fps, path)


def long_clip(path: str | Path, *, seconds: float = 65.0, fps: float = 10.0, side: int = 160) -> Path:
    """An MP4 of :func:`smile_frames` repeated for ``seconds`` (longer than the 60 s the analyzer used
    to stop at) at a low frame rate and size, so analysing it whole stays cheap (~650 frames)."""
    from fdin.media import write_video

    loop = smile_frames(fps=fps, side=side)
    reps = int(np.ceil(seconds * fps / len(loop)))
    frames = np.concatenate([loop, loop[::-1]] * ((reps + 1) // 2))[:round(seconds * fps)]
    return write_video(frames, fps, path)

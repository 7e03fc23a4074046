"""Regenerate the measured tables of ``docs/perception.md``: ``python -m benchmarks.perception``.

Prints Markdown: faces found on the packaged test photos, per-stage latency at 640x480 (median of
``--repeat`` runs after 3 warm-ups, one process), tracking speed on a generated 640x480 clip, and the
offline backend's box calibration (``--calibrate``). ``--mmod`` adds dlib's CNN detector (~1.3 s per
frame on 2 cores). Numbers depend on the machine and its load: note both when you publish them.

Test images (shipped in installed packages, nothing is downloaded): insightface's ``t1.jpg`` (6 faces),
scikit-image's ``astronaut`` (1 face + a mission patch that detectors mistake for a face),
``Tom_Hanks_54745.png``.
"""

from __future__ import annotations

import argparse
import importlib.resources
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from fdin.geometry import interocular_distance, iou


# --- test material ---------------------------------------------------------------------------------
def photo(name: str) -> np.ndarray:
    """``"t1"``, ``"astronaut"`` or ``"tom"`` as (H, W, 3) uint8 RGB."""
    if name == "astronaut":
        from skimage.data import astronaut

        return np.ascontiguousarray(astronaut())
    from fdin.media import load_image

    files = {"t1": "t1.jpg", "tom": "Tom_Hanks_54745.png"}
    return load_image(importlib.resources.files("insightface") / "data/images" / files[name])


def at_640x480(image: np.ndarray) -> np.ndarray:
    """Crop to 4:3 (centre) and resize to 640x480; taller images are padded instead (edge colour)."""
    import cv2

    h, w = image.shape[:2]
    if w / h >= 4 / 3:
        cw = round(h * 4 / 3)
        image = image[:, (w - cw) // 2:(w - cw) // 2 + cw]
    else:
        pad = round(h * 4 / 3) - w
        image = cv2.copyMakeBorder(image, 0, 0, pad // 2, pad - pad // 2, cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(cv2.resize(image, (640, 480), interpolation=cv2.INTER_AREA))


def background(width: int = 640, height: int = 480, seed: int = 0) -> np.ndarray:
    """Smooth colour texture with no face in it."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(40, 215, size=(height // 40 + 1, width // 40 + 1, 3)).astype(np.uint8)
    return np.ascontiguousarray(cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC))


#: The astronaut's head and shoulders (rows, cols) used by :func:`moving_face_clip`; her face box is
#: x 178-267, y 63-175 in the full photo.
_PATCH = (slice(20, 230), slice(140, 310))
_FACE_IN_PATCH = np.array([178 - 140, 63 - 20, 267 - 140, 175 - 20], np.float64)


def moving_face_clip(n: int = 60, *, step: float = 12.0, x_start: float = 40.0, y: int = 150,
                     width: int = 640, height: int = 480) -> tuple[np.ndarray, np.ndarray]:
    """``(n, height, width, 3)`` uint8 frames of the astronaut's face moving right by ``step`` px per
    frame from ``x_start`` until it leaves the picture, and the ``(n, 4)`` true face boxes (xyxy,
    frame coordinates, possibly outside the frame)."""
    patch = photo("astronaut")[_PATCH]
    ph, pw = patch.shape[:2]
    base = background(width, height)
    frames = np.empty((n, height, width, 3), np.uint8)
    boxes = np.empty((n, 4), np.float64)
    for i in range(n):
        x = round(x_start + step * i)
        frame = base.copy()
        x0, x1 = max(x, 0), min(x + pw, width)
        if x1 > x0:
            frame[y:y + ph, x0:x1] = patch[:, x0 - x:x1 - x]
        frames[i] = frame
        boxes[i] = np.add(_FACE_IN_PATCH, (x, y, x, y))
    return frames, boxes


# --- timing ----------------------------------------------------------------------------------------
def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """(median wall ms, median process-CPU ms). On a busy machine the CPU time is the steadier figure
    for single-threaded stages; both are printed as ``wall (cpu)``."""
    for _ in range(3):
        fn()
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    return statistics.median(wall), statistics.median(cpu)


def _fmt(wall_cpu: tuple[float, float], per: int = 1, digits: int = 1) -> str:
    return f"{wall_cpu[0] / per:.{digits}f} ({wall_cpu[1] / per:.{digits}f})"


def _dlib_detectors(mmod: bool) -> dict[str, Callable[[np.ndarray], list]]:
    import dlib
    import face_recognition_models

    hog = dlib.get_frontal_face_detector()
    out: dict[str, Callable[[np.ndarray], list]] = {
        "dlib HOG, upsample 0": lambda im: list(hog(im, 0)),
        "dlib HOG, upsample 1": lambda im: list(hog(im, 1)),
    }
    if mmod:
        cnn = dlib.cnn_face_detection_model_v1(face_recognition_models.cnn_face_detector_model_location())
        out["dlib MMOD CNN, upsample 0"] = lambda im: list(cnn(im, 0))
    return out


def detector_table(backends: list[Any], repeat: int, mmod: bool) -> list[str]:
    t1, ast = photo("t1"), photo("astronaut")
    t1_640, ast_640 = at_640x480(t1), at_640x480(ast)
    rows = ["| detector | faces found in t1 (6): full size / 640x480 | astronaut (1): full / 640x480 "
            "| ms at 640x480, wall (cpu): t1 / astronaut |", "|---|---|---|---|"]
    runs: list[tuple[str, Callable[[np.ndarray], list], int]] = [
        (f"{be.name}: {be.models['bbox']}", be.detect_boxes, repeat) for be in backends]
    runs += [(f"{name} (comparison)", fn, 3 if "MMOD" in name else repeat)
             for name, fn in _dlib_detectors(mmod).items()]
    for label, fn, reps in runs:
        ms = (timed(lambda f=fn: f(t1_640), reps), timed(lambda f=fn: f(ast_640), reps))
        rows.append(f"| {label} | {len(fn(t1))} / {len(fn(t1_640))} | {len(fn(ast))} / {len(fn(ast_640))} "
                    f"| {_fmt(ms[0])} / {_fmt(ms[1])} |")
    return rows


def stage_table(be: Any, repeat: int) -> list[str]:
    from fdin.perception.pose import head_pose

    rows = [f"Backend `{be.name}`, one 640x480 image, median of {repeat} runs, ms wall (cpu):", "",
            "| stage | t1 640x480 (6 faces) | astronaut 640x480 (1 face) |", "|---|---|---|"]
    cells: dict[str, list[str]] = {k: [] for k in ("detection", "landmarks (per face)", "pose (per face)",
                                                    "appearance (all faces, one batch)", "full detect()")}
    for image in (at_640x480(photo("t1")), at_640x480(photo("astronaut"))):
        dets = be.detect_boxes(image)
        faces = be.detect(image, with_appearance=False)
        size = (image.shape[1], image.shape[0])
        n = max(len(dets), 1)
        cells["detection"].append(f"{_fmt(timed(lambda im=image: be.detect_boxes(im), repeat))}, "
                                  f"{len(dets)} found")
        lm = timed(lambda im=image, ds=dets: [be.landmarks_for_box(im, d.bbox) for d in ds], repeat)
        cells["landmarks (per face)"].append(_fmt(lm, n, 2))
        pose = timed(lambda fs=faces, s=size: [head_pose(f.landmarks, s) for f in fs], repeat)
        cells["pose (per face)"].append(_fmt(pose, n, 2))
        app = timed(lambda im=image, fs=faces: be.appearance(im, fs), repeat)
        cells["appearance (all faces, one batch)"].append(f"{_fmt(app)}; per face {_fmt(app, n)}")
        cells["full detect()"].append(_fmt(timed(lambda im=image: be.detect(im), repeat)))
    rows += [f"| {k} | {v[0]} | {v[1]} |" for k, v in cells.items()]
    return rows


def tracking_table(be: Any, repeats: int = 3) -> list[str]:
    from fdin.perception.tracking import primary_track, track_faces

    frames, _ = moving_face_clip()
    rows = [f"Generated 640x480 clip, {len(frames)} frames (the astronaut's face crosses the frame and leaves it "
            "at frame ~40), appearance on 5 frames per track:", "",
            "| detect_every | detector calls | ms per frame, wall (cpu) | frames per second (wall) | found / lost frames |",
            "|---|---|---|---|---|"]
    calls = [0]
    original = be.detect_boxes

    def counting(image: np.ndarray) -> list:
        calls[0] += 1
        return original(image)

    for every in (1, 5, 10):
        be.detect_boxes = counting
        try:
            times, cpu = [], []
            for _ in range(repeats):
                calls[0] = 0
                t0, c0 = time.perf_counter(), time.process_time()
                tracks = track_faces(frames, be, detect_every=every)
                times.append((time.perf_counter() - t0) * 1000 / len(frames))
                cpu.append((time.process_time() - c0) * 1000 / len(frames))
        finally:
            del be.detect_boxes
        ms = min(times)
        track = primary_track(tracks)
        found, lost = (len(track), len(track.lost_frames)) if track else (0, 0)
        rows.append(f"| {every} | {calls[0]} | {ms:.1f} ({min(cpu):.1f}) | {1000 / ms:.0f} | {found} / {lost} |")
    return rows


# --- box calibration (offline backend) -------------------------------------------------------------
def calibrate() -> list[str]:
    """Fit yuface box → dlib HOG box (see ``fdin.perception.offline.BOX_*``) and report its effect."""
    import cv2
    import dlib
    import face_recognition_models

    from fdin.perception.offline import BOX_DY, BOX_SIDE_H, BOX_SIDE_W, OfflineBackend, detector_box_to_dlib

    be = OfflineBackend()
    hog = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
    variants = [("t1", s) for s in (1.0, 0.75, 0.6)] + [("astronaut", s) for s in (1.0, 1.5)] + \
        [("tom", s) for s in (2.0, 3.0)]
    pairs = []
    for name, scale in variants:
        base = photo(name)
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        img = cv2.resize(base, None, fx=scale, fy=scale, interpolation=interp)
        if name == "tom":  # the aligned crop touches its borders: give the detectors some context
            img = cv2.copyMakeBorder(img, 60, 60, 60, 60, cv2.BORDER_REPLICATE)
        for flip in (False, True):
            im = np.ascontiguousarray(img[:, ::-1] if flip else img)
            yu = [d.bbox.astype(np.float64) for d in be.detect_boxes(im)]
            for r in hog(im, 1):
                hb = np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1], np.float64)
                best = max(yu, key=lambda b, h=hb: iou(b, h), default=None)
                if best is not None and iou(best, hb) > 0.3:
                    pairs.append((im, best, hb))
    y = np.array([p[1] for p in pairs])
    h = np.array([p[2] for p in pairs])
    yw, yh = y[:, 2] - y[:, 0], y[:, 3] - y[:, 1]
    dx = ((h[:, 0] + h[:, 2]) - (y[:, 0] + y[:, 2])) / 2 / yw
    dy = ((h[:, 1] + h[:, 3]) - (y[:, 1] + y[:, 3])) / 2 / yh
    (cw, ch), *_ = np.linalg.lstsq(np.stack([yw, yh], 1), h[:, 2] - h[:, 0], rcond=None)
    errors = []
    for im, yb, hb in pairs:
        ref = sp(im, dlib.rectangle(*(int(v) for v in (hb[0], hb[1], hb[2] - 1, hb[3] - 1))))
        ours = sp(im, dlib.rectangle(*detector_box_to_dlib(yb)))
        a = np.array([(p.x, p.y) for p in ref.parts()], np.float64)
        b = np.array([(p.x, p.y) for p in ours.parts()], np.float64)
        errors.append(float(np.linalg.norm(a - b, axis=1).mean() / interocular_distance(a)))
    return [
        f"{len(pairs)} yuface/dlib-HOG box pairs (t1 x3 scales, astronaut x2, Tom Hanks x2, each mirrored):", "",
        "| quantity | fitted | in code |", "|---|---|---|",
        f"| horizontal centre offset / w | {np.median(dx):.3f} (sd {np.std(dx):.3f}) | 0 (symmetry) |",
        f"| vertical centre offset / h | {np.median(dy):.3f} (sd {np.std(dy):.3f}) | {BOX_DY} |",
        f"| side = a w + b h | a {cw:.3f}, b {ch:.3f} | a {BOX_SIDE_W}, b {BOX_SIDE_H} |",
        f"| 68-pt landmark difference, own box vs HOG box (/ inter-ocular) | median {np.median(errors):.3f}, "
        f"90th pct {np.percentile(errors, 90):.3f} | |",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.perception", description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per number (median)")
    parser.add_argument("--mmod", action="store_true", help="include dlib's MMOD CNN detector (slow)")
    parser.add_argument("--calibrate", action="store_true", help="also refit the offline box calibration")
    args = parser.parse_args(argv)
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    from fdin.perception import find_insightface_dir, get_backend

    backends = [get_backend("offline")]
    if find_insightface_dir() is not None:
        backends.append(get_backend("insightface"))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    out = [f"Measured with `python -m benchmarks.perception` ({os.cpu_count()} CPUs, load average "
           f"{load:.1f} at start, Python {sys.version.split()[0]}).", "", "### Detectors", ""]
    out += detector_table(backends, args.repeat, args.mmod)
    for be in backends:
        out += ["", f"### Stages ({be.name})", "", *stage_table(be, args.repeat)]
        out += ["", f"### Tracking ({be.name})", "", *tracking_table(be)]
    if args.calibrate:
        out += ["", "### Offline box calibration", "", *calibrate()]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""When a fitted face is believable: the checks tracking applies to every landmark fit (inside the
frame, a stable spread, an aligned grey patch that still looks like the last detection), and the box
arithmetic relative to the landmarks that carries a detector box from frame to frame."""

from __future__ import annotations

import numpy as np

from fdin.geometry import eye_centres
from fdin.perception.types import Face

MIN_INSIDE = 0.6
MAX_OUTSIDE_LANDMARKS = 3
MAX_SPREAD_CHANGE = 4.0 / 3.0
#: Minimum normalised cross-correlation between a fitted face's aligned patch and the patch of the
#: track's last detection. Measured with the offline backend: the same face stays >= 0.86 through a
#: generated smile with head motion (``tests/clips.py``) and >= 0.98 while translating; dlib fits on
#: background texture at the face's positions median 0.0, max 0.53; other people of t1 <= 0.22.
MIN_PATCH_NCC = 0.6
#: Side of the aligned grey patch compared between frames.
PATCH = 32


def centre_spread(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """Centroid and RMS distance to it of (N, 2) points (sums, not ``mean``: called several times
    per tracked frame, where numpy's ``mean`` wrapper costs more than the arithmetic)."""
    lm = np.asarray(landmarks, np.float64)
    n = lm.shape[0]
    c = lm.sum(0) / n
    d = lm - c
    return c, float(np.sqrt((d * d).sum() / n))


def box_relative(bbox: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """xyxy box in the landmarks' frame (centroid origin, spread unit)."""
    c, s = centre_spread(landmarks)
    return (np.asarray(bbox, np.float64) - np.concatenate((c, c))) / max(s, 1e-6)


def box_absolute(rel: np.ndarray, landmarks: np.ndarray, shift: np.ndarray | None = None) -> np.ndarray:
    c, s = centre_spread(landmarks)
    if shift is not None:
        c = c + shift
    return (rel * s + np.concatenate((c, c))).astype(np.float32)


def inside_fraction(bbox: np.ndarray, width: int, height: int) -> float:
    x0, y0, x1, y1 = (float(v) for v in bbox)
    area = (x1 - x0) * (y1 - y0)
    if area <= 0:
        return 0.0
    ix = max(0.0, min(x1, width) - max(x0, 0.0))
    iy = max(0.0, min(y1, height) - max(y0, 0.0))
    return ix * iy / area


def face_patch(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(32, 32) float32 zero-mean, unit-norm grey patch aligned on the eye centres and mouth centre.

    The colour frame is warped to the 32x32 patch first and only the patch is turned grey (grey is a
    weighted sum of R, G, B, so this equals warping a grey frame, to the uint8 rounding), rather than
    converting the frame or the face's part of it on every tracked frame."""
    import cv2

    src = np.float32([*eye_centres(landmarks), (landmarks[48] + landmarks[54]) / 2.0])
    dst = np.float32([[9, 11], [23, 11], [16, 25]])
    m = cv2.getAffineTransform(src, dst)
    colour = cv2.warpAffine(np.ascontiguousarray(image), m, (PATCH, PATCH), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    patch = cv2.cvtColor(colour, cv2.COLOR_RGB2GRAY).astype(np.float32)
    patch -= patch.mean()
    norm = float(np.linalg.norm(patch))
    return patch / norm if norm > 1e-6 else patch


#: A fit whose model-reported quality (``Face.fit_score``) is below this failed (the default
#: landmark model's face-presence probability: :data:`fdin.perception.mesh.MIN_SCORE`).
MIN_FIT_SCORE = 0.5


def fit_ok(face: Face, width: int, height: int, prev_spread: float | None) -> bool:
    if face.fit_score is not None and face.fit_score < MIN_FIT_SCORE:
        return False
    lm = face.landmarks
    if not np.isfinite(lm).all() or inside_fraction(face.bbox, width, height) < MIN_INSIDE:
        return False
    outside = (lm[:, 0] < 0) | (lm[:, 0] > width - 1) | (lm[:, 1] < 0) | (lm[:, 1] > height - 1)
    if int(outside.sum()) > MAX_OUTSIDE_LANDMARKS:
        return False
    _, spread = centre_spread(lm)
    if spread < 2.0:
        return False
    return prev_spread is None or 1.0 / MAX_SPREAD_CHANGE <= spread / prev_spread <= MAX_SPREAD_CHANGE

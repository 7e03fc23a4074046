"""Plain numpy geometry shared by every layer: the similarity transform (one implementation, used by
relation/expression alignment and by the dynamics' head-motion removal), box IoU, eye centres and the
inter-ocular distance of iBUG-68 landmarks, and the 5 keypoints derived from them.

iBUG-68 indices: eyes 36-41 (image left) and 42-47 (image right), nose tip 30, mouth corners 48/54.
Keypoints follow insightface's order (image-left eye, image-right eye, nose tip, image-left mouth
corner, image-right mouth corner). Nothing here imports anything but numpy.
"""

from __future__ import annotations

import numpy as np

EYE_IMAGE_LEFT = tuple(range(36, 42))
EYE_IMAGE_RIGHT = tuple(range(42, 48))
NOSE_TIP, MOUTH_IMAGE_LEFT, MOUTH_IMAGE_RIGHT = 30, 48, 54


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(image-left eye, image-right eye)`` centres of ``(..., 68, 2)`` landmarks, each ``(..., 2)`` float64."""
    lm = np.asarray(landmarks, dtype=np.float64)
    # slices (views) and sums: this runs several times per tracked frame
    return lm[..., 36:42, :].sum(-2) / 6.0, lm[..., 42:48, :].sum(-2) / 6.0


def interocular_distance(landmarks: np.ndarray) -> np.ndarray | float:
    """Distance between the eye centres of ``(68, 2)`` landmarks (a float) or ``(..., 68, 2)`` (an array)."""
    left, right = eye_centres(landmarks)
    iod = np.linalg.norm(right - left, axis=-1)
    return float(iod) if iod.ndim == 0 else iod


def keypoints_from_landmarks68(landmarks: np.ndarray) -> np.ndarray:
    """(68, 2) iBUG landmarks -> (5, 2) float64 keypoints in insightface order."""
    lm = np.asarray(landmarks, dtype=np.float64)
    left, right = eye_centres(lm)
    return np.stack([left, right, lm[NOSE_TIP], lm[MOUTH_IMAGE_LEFT], lm[MOUTH_IMAGE_RIGHT]])


#: iBUG-68 index of each point's mirror twin (the point it becomes when the image is flipped left-right).
IBUG68_MIRROR: tuple[int, ...] = (
    *range(16, -1, -1), *range(26, 16, -1), 27, 28, 29, 30, 35, 34, 33, 32, 31,
    45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,
    54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65)
#: The 51 inner points (brows, nose, eyes, mouth) the landmark error is measured on.
INNER51 = slice(17, 68)


def mirror_landmarks68(landmarks: np.ndarray, width: int) -> np.ndarray:
    """(68, 2) landmarks of an image ``width`` pixels wide -> the same face's landmarks in the image
    flipped left-right (x -> width - 1 - x, points renumbered by :data:`IBUG68_MIRROR`)."""
    lm = np.asarray(landmarks, np.float64)[list(IBUG68_MIRROR)].copy()
    lm[:, 0] = width - 1 - lm[:, 0]
    return lm


def landmark_nme(pred: np.ndarray, ref: np.ndarray) -> float:
    """Mean distance of the 51 inner points of ``pred`` to ``ref`` (both (68, 2)), divided by the
    distance between ``ref``'s outer eye corners (36, 45): the normalised mean error of 300-W-style
    evaluations (inter-ocular normalisation)."""
    p, r = np.asarray(pred, np.float64), np.asarray(ref, np.float64)
    norm = float(np.linalg.norm(r[45] - r[36]))
    return float(np.linalg.norm(p[INNER51] - r[INNER51], axis=1).mean() / max(norm, 1e-9))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two xyxy boxes (0 when the union is empty)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def similarity_transforms(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; never a reflection) per set.

    Args:
        src: ``(T, K, 2)`` (or ``(K, 2)``) points.
        dst: ``(K, 2)`` target shared by all sets, or ``(T, K, 2)``.

    Returns:
        ``(T, 2, 3)`` (or ``(2, 3)``) float64 matrices ``M`` with ``dst ≈ M[:, :2] @ p + M[:, 2]``. The
        2-D Procrustes problem in closed form with complex numbers: ``dst - mean = a (src - mean)``,
        ``a = <src, dst> / |src|^2`` (the same optimum as Umeyama's SVD solution without reflection).
    """
    src = np.asarray(src, dtype=np.float64)
    single = src.ndim == 2
    src = src[None] if single else src
    dst = np.broadcast_to(np.asarray(dst, dtype=np.float64), src.shape)
    mu_s, mu_d = src.mean(1), dst.mean(1)
    s0, d0 = src - mu_s[:, None], dst - mu_d[:, None]
    zs = s0[..., 0] + 1j * s0[..., 1]
    zd = d0[..., 0] + 1j * d0[..., 1]
    a = (np.conj(zs) * zd).sum(1) / np.maximum((np.abs(zs) ** 2).sum(1), 1e-12)
    rot = np.stack([np.stack([a.real, -a.imag], -1), np.stack([a.imag, a.real], -1)], -2)  # (T, 2, 2)
    trans = mu_d - np.einsum("tij,tj->ti", rot, mu_s)
    out = np.concatenate([rot, trans[..., None]], axis=-1)
    return out[0] if single else out


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """One ``(2, 3)`` similarity mapping ``src`` (K, 2) onto ``dst`` (K, 2); see :func:`similarity_transforms`."""
    return similarity_transforms(np.asarray(src, dtype=np.float64), dst)


__all__ = [
    "IBUG68_MIRROR",
    "INNER51",
    "eye_centres",
    "interocular_distance",
    "iou",
    "keypoints_from_landmarks68",
    "landmark_nme",
    "mirror_landmarks68",
    "similarity_transform",
    "similarity_transforms",
]

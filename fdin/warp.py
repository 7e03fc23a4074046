"""Piecewise-affine image warping driven by landmarks (used to make realistic synthetic clips).

:func:`warp_face` moves the pixels at ``src_points`` to ``dst_points`` with one affine map per
triangle of a Delaunay triangulation (computed on the source points plus fixed image-border anchors,
so the background stays put at the borders). It builds one backward map for the whole image (a
triangle-index raster of the destination triangles + the per-triangle affine maps) and samples it
with a single ``cv2.remap``; this is ~10x faster than scikit-image's ``PiecewiseAffineTransform``
(measured: a few ms per 640x480 frame).
"""

from __future__ import annotations

import numpy as np


def border_anchors(height: int, width: int) -> np.ndarray:
    """(8, 2) fixed anchors: the image corners and edge midpoints, pixel xy."""
    w, h = width - 1.0, height - 1.0
    return np.array([[0, 0], [w / 2, 0], [w, 0], [w, h / 2], [w, h], [w / 2, h], [0, h], [0, h / 2]],
                    dtype=np.float64)


def triangulate(points: np.ndarray) -> np.ndarray:
    """(M, 3) int Delaunay triangles of (K, 2) points."""
    from scipy.spatial import Delaunay

    return Delaunay(np.asarray(points, dtype=np.float64)).simplices.astype(np.int64)


def _affine_dst_to_src(src_tri: np.ndarray, dst_tri: np.ndarray) -> np.ndarray:
    """(M, 3, 2) triangles → (M, 2, 3) affine maps taking destination xy to source xy."""
    ones = np.ones((*dst_tri.shape[:2], 1))
    a = np.concatenate([dst_tri, ones], axis=-1)  # (M, 3, 3)
    with np.errstate(all="ignore"):
        sol = np.linalg.solve(a, src_tri)  # (M, 3, 2): [x y 1] @ sol = src
    bad = ~np.isfinite(sol).all(axis=(1, 2))
    sol[bad] = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    return np.transpose(sol, (0, 2, 1))


def warp_face(image: np.ndarray, src_points: np.ndarray, dst_points: np.ndarray, *,
              triangles: np.ndarray | None = None) -> np.ndarray:
    """Warp ``image`` so that the pixel content at ``src_points`` moves to ``dst_points``.

    Args:
        image: (H, W, 3) uint8 RGB (any channel count works).
        src_points: (K, 2) pixel xy in ``image``.
        dst_points: (K, 2) pixel xy where those points should land.
        triangles: optional (M, 3) triangulation of ``[src_points; border_anchors]`` to reuse across
            frames (see :func:`triangulate`); computed when omitted.
    Returns:
        (H, W, 3) uint8, same shape as ``image``. Pixels outside every destination triangle (only
        possible with folded meshes) keep their original value.
    """
    import cv2

    image = np.ascontiguousarray(image)
    h, w = image.shape[:2]
    anchors = border_anchors(h, w)
    src = np.concatenate([np.asarray(src_points, dtype=np.float64), anchors])
    dst = np.concatenate([np.asarray(dst_points, dtype=np.float64), anchors])
    if triangles is None:
        triangles = triangulate(src)
    maps = _affine_dst_to_src(src[triangles], dst[triangles])  # (M, 2, 3)

    # raster of destination triangle ids (0 = none); int32 image, one fillConvexPoly per triangle
    ids = np.zeros((h, w), dtype=np.int32)
    dst_int = np.round(dst[triangles] * 16).astype(np.int32)  # 4 fractional bits
    for m in range(len(triangles)):
        cv2.fillConvexPoly(ids, dst_int[m], m + 1, lineType=cv2.LINE_8, shift=4)
    maps_full = np.concatenate([np.tile(np.eye(2, 3), (1, 1, 1)), maps], axis=0).astype(np.float32)

    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    sel = maps_full[ids]  # (H, W, 2, 3)
    map_x = sel[..., 0, 0] * xs + sel[..., 0, 1] * ys + sel[..., 0, 2]
    map_y = sel[..., 1, 0] * xs + sel[..., 1, 1] * ys + sel[..., 1, 2]
    return cv2.remap(image, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


__all__ = ["border_anchors", "triangulate", "warp_face"]

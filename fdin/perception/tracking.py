"""Follow faces through a video: detect every few frames, fit landmarks in between.

:func:`track_faces` runs the backend's detector on every ``detect_every``-th frame only. On the
other frames each face that was found in the previous frame gets a box predicted from its previous
landmarks (moved by the landmark centroid's last velocity) and its 68 landmarks are re-fitted in
that box (:meth:`FaceBackend.landmarks_for_box`). A fit is accepted only if it passes a quality
check, otherwise the face is *lost* in that frame:

* at least 60 % of the face box and all but 3 of the 68 landmarks lie inside the frame (a face
  leaving the picture is lost rather than extrapolated: dlib happily places points outside it);
* the landmark spread (RMS distance from the centroid) changed by less than a third since the
  previous frame (a collapsing or exploding fit is not a face);
* between detections, a 32x32 grey patch aligned on the eyes and mouth still correlates with the
  patch of the last detection (normalised cross-correlation >= :data:`MIN_PATCH_NCC`), so a fit that
  slid onto the background or a different object is rejected.

While at least one face is being followed, ``detect_downscale`` < 1 runs the detector on a smaller
copy of the frame (boxes mapped back): the detector only has to re-confirm a face whose landmarks
are already known, and its cost grows with the pixel count (yuface: ~40 ms at 640x360, ~10 ms at
320x180 on the 2-core CPU machines). With no face being followed the full frame is searched.

On detection frames, tracks and detections are paired by IoU (Hungarian assignment, IoU >= 0.3); a
track without a detection is lost in that frame (the detector's "no face here" wins), a detection
without a track starts a new track. A lost track is searched for at the following detection frames
and closed after ``max_lost`` consecutive lost frames. Lost frames are recorded in
``FaceTrack.lost_frames``; nothing is interpolated or invented.

Boxes on fitted frames are the track's last detector box expressed relative to the landmarks
(centroid and spread), carried onto the new landmarks; ``Face.score`` there is the score of the
track's last detection, and ``Face.models["bbox"]`` says the box was propagated.

Appearance (apparent gender/age) is estimated on a few frames per track (``appearance_frames``,
spread evenly over the frames where it was found; all tracks of a frame in one batched call) and
summarised by :func:`track_appearance`.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from fdin.perception.base import FaceBackend, _backend_of
from fdin.perception.types import Face, FaceTrack

ProgressFn = Callable[[int, int], None]

DEFAULT_DETECT_EVERY = 5
DEFAULT_MAX_LOST = 30
MIN_IOU = 0.3
MIN_INSIDE = 0.6
MAX_OUTSIDE_LANDMARKS = 3
MAX_SPREAD_CHANGE = 4.0 / 3.0
#: Minimum normalised cross-correlation between a fitted face's aligned patch and the patch of the
#: track's last detection. Measured with the offline backend: the same face stays >= 0.86 through a
#: generated smile with head motion (``tests/clips.py``) and >= 0.98 while translating; dlib fits on
#: background texture at the face's positions median 0.0, max 0.53; other people of t1 <= 0.22.
MIN_PATCH_NCC = 0.6
_PATCH = 32
_PROPAGATED = "carried from the last detection by the landmarks (tracking)"


# --- geometry helpers -----------------------------------------------------------------------------
def _centre_spread(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    c = landmarks.mean(0)
    return c, float(np.sqrt(((landmarks - c) ** 2).sum(1).mean()))


def _box_relative(bbox: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """xyxy box in the landmarks' frame (centroid origin, spread unit)."""
    c, s = _centre_spread(landmarks)
    return (np.asarray(bbox, np.float64) - np.r_[c, c]) / max(s, 1e-6)


def _box_absolute(rel: np.ndarray, landmarks: np.ndarray, shift: np.ndarray | None = None) -> np.ndarray:
    c, s = _centre_spread(landmarks)
    if shift is not None:
        c = c + shift
    return (rel * s + np.r_[c, c]).astype(np.float32)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _inside_fraction(bbox: np.ndarray, width: int, height: int) -> float:
    x0, y0, x1, y1 = (float(v) for v in bbox)
    area = (x1 - x0) * (y1 - y0)
    if area <= 0:
        return 0.0
    ix = max(0.0, min(x1, width) - max(x0, 0.0))
    iy = max(0.0, min(y1, height) - max(y0, 0.0))
    return ix * iy / area


def _grey_around(image: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Full-size grey frame in which only the pixels the patch warp ``m`` can sample (its footprint
    + 2 px) are converted; the rest is 0 and never read. ``warpAffine`` then gives exactly the patch
    of a fully converted frame, without converting (and pulling through the cache) the whole frame
    on every tracked frame (~1 ms of ~3 ms per frame at 640x360 under load)."""
    import cv2

    height, width = image.shape[:2]
    corners = np.array([[0, 0, 1], [_PATCH, 0, 1], [0, _PATCH, 1], [_PATCH, _PATCH, 1]], np.float64)
    pts = corners @ cv2.invertAffineTransform(m).T
    if not np.isfinite(pts).all():
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    x0, y0 = (max(0, int(np.floor(v)) - 2) for v in pts.min(0))
    x1, y1 = (int(np.ceil(v)) + 3 for v in pts.max(0))
    x1, y1 = min(x1, width), min(y1, height)
    grey = np.zeros((height, width), np.uint8)
    if x1 > x0 and y1 > y0:
        grey[y0:y1, x0:x1] = cv2.cvtColor(np.ascontiguousarray(image[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
    return grey


def face_patch(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(32, 32) float32 zero-mean, unit-norm grey patch aligned on the eye centres and mouth centre."""
    import cv2

    src = np.float32([landmarks[36:42].mean(0), landmarks[42:48].mean(0), landmarks[[48, 54]].mean(0)])
    dst = np.float32([[9, 11], [23, 11], [16, 25]])
    m = cv2.getAffineTransform(src, dst)
    grey = _grey_around(image, m)
    patch = cv2.warpAffine(grey, m, (_PATCH, _PATCH), flags=cv2.INTER_AREA,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(np.float32)
    patch -= patch.mean()
    norm = float(np.linalg.norm(patch))
    return patch / norm if norm > 1e-6 else patch


class OneEuro:
    """One-Euro filter (Casiez et al., CHI 2012) for an array signal sampled at ``fps``.

    ``min_cutoff`` (Hz) sets the smoothing at rest, ``beta`` (per px/s) how fast the cutoff rises
    with speed, so slow jitter is removed while fast motion keeps little lag. With the defaults at
    30 fps: 1 px of per-frame jitter on a still face drops to ~0.17 px of frame-to-frame change, and
    a landmark moving 150 px/s lags ~2 px (``tests/test_tracking.py``).
    """

    def __init__(self, fps: float, *, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0) -> None:
        self.dt, self.min_cutoff, self.beta, self.d_cutoff = 1.0 / fps, min_cutoff, beta, d_cutoff
        self.x: np.ndarray | None = None
        self.dx: np.ndarray | None = None

    def _alpha(self, cutoff: np.ndarray | float) -> np.ndarray | float:
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / self.dt)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self.x is None or self.dx is None:
            self.x, self.dx = x, np.zeros_like(x)
            return x
        dx = (x - self.x) / self.dt
        self.dx = self.dx + self._alpha(self.d_cutoff) * (dx - self.dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self.dx)
        self.x = self.x + self._alpha(cutoff) * (x - self.x)
        return self.x


# --- tracking ------------------------------------------------------------------------------------
@dataclass
class _Active:
    track: FaceTrack
    landmarks: np.ndarray
    box_rel: np.ndarray
    template: np.ndarray
    score: float
    spread: float
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))
    last_box: np.ndarray | None = None
    lost: int = 0
    smoother: OneEuro | None = None


def _fit_ok(face: Face, width: int, height: int, prev_spread: float | None) -> bool:
    lm = face.landmarks
    if not np.isfinite(lm).all() or _inside_fraction(face.bbox, width, height) < MIN_INSIDE:
        return False
    outside = (lm[:, 0] < 0) | (lm[:, 0] > width - 1) | (lm[:, 1] < 0) | (lm[:, 1] > height - 1)
    if int(outside.sum()) > MAX_OUTSIDE_LANDMARKS:
        return False
    _, spread = _centre_spread(lm)
    if spread < 2.0:
        return False
    return prev_spread is None or 1.0 / MAX_SPREAD_CHANGE <= spread / prev_spread <= MAX_SPREAD_CHANGE


def track_faces(
    frames: Sequence[np.ndarray] | np.ndarray | Any,
    backend: FaceBackend | str | None = None,
    *,
    detect_every: int = DEFAULT_DETECT_EVERY,
    smooth: bool = False,
    fps: float | None = None,
    max_lost: int = DEFAULT_MAX_LOST,
    appearance_frames: int = 5,
    detect_downscale: float = 1.0,
    progress: ProgressFn | None = None,
) -> list[FaceTrack]:
    """Tracks of every face in ``frames`` (``(N, H, W, 3) uint8`` RGB, a list of frames, a
    :class:`fdin.media.Video`, or any iterable of frames, e.g. a :class:`fdin.media.VideoStream`),
    ordered by first frame. See the module docstring for the method. An iterable is consumed as
    frames arrive (so decoding can overlap tracking) and its frames are kept for the appearance step;
    anything that is not an array or a ``Sequence`` is treated so; its ``total`` for ``progress``
    is its ``__length_hint__`` (at least the frames done so far).

    Args:
        backend: instance, registered name, or None for :func:`~fdin.perception.get_backend`'s default.
        detect_every: run the detector on frames 0, k, 2k, ...; landmarks are fitted in between.
        smooth: One-Euro smoothing of the recorded landmarks (keypoints follow; pose and the internal
            propagation use the raw fit). Off by default: analysis wants the raw signal.
        fps: frame rate for the smoother (default: ``frames.fps`` for a Video, else 30).
        max_lost: a track missing for this many consecutive frames is closed.
        appearance_frames: frames per track on which apparent gender/age is estimated (0: none).
        detect_downscale: scale of the frame copy the detector sees while a face is being followed
            (1.0: the full frame always; :class:`fdin.analyze.DynamicsAnalyzer` uses 0.5).
        progress: ``progress(done, total)`` after each frame.
    """
    if detect_every < 1 or max_lost < 1:
        raise ValueError("detect_every and max_lost must be >= 1")
    if not 0.0 < detect_downscale <= 1.0:
        raise ValueError("detect_downscale must be in (0, 1]")
    fps = float(fps or getattr(frames, "fps", 0) or 30.0)
    frames = getattr(frames, "frames", frames)
    be = _backend_of(backend)
    sized = isinstance(frames, (np.ndarray, Sequence))
    if sized:
        total = len(frames)
    else:  # an iterable: never len() (a lazy sequence may wait for its end), only a cheap hint
        hint = getattr(frames, "__length_hint__", None)
        total = int(hint()) if hint is not None else operator.length_hint(frames)
    seen: list[np.ndarray] = []
    active: list[_Active] = []
    done: list[FaceTrack] = []
    next_id = 0

    def record(a: _Active, index: int, face: Face, image: np.ndarray, *, detected: bool) -> None:
        lm = face.landmarks.astype(np.float64)
        centre, spread = _centre_spread(lm)
        if a.track.frame_indices and a.track.frame_indices[-1] == index - 1:
            a.velocity = centre - _centre_spread(a.landmarks)[0]
        else:
            a.velocity = np.zeros(2)
        if detected:
            a.box_rel = _box_relative(face.bbox, lm)
            a.template = face_patch(image, lm)
            a.score = face.score
        a.landmarks, a.spread, a.lost, a.last_box = lm, spread, 0, np.asarray(face.bbox, np.float64)
        if a.smoother is not None:
            from fdin.alignment import keypoints_from_landmarks68

            sm = a.smoother(lm).astype(np.float32)
            face = replace(face, landmarks=sm, keypoints=keypoints_from_landmarks68(sm).astype(np.float32))
        a.track.frame_indices.append(index)
        a.track.faces.append(face)

    def mark_lost(a: _Active, index: int) -> None:
        a.lost += 1
        a.track.lost_frames.append(index)
        a.smoother = OneEuro(fps) if smooth else None  # restart after a gap

    source = (frames[i] for i in range(total)) if sized else iter(frames)
    for index, raw in enumerate(source):
        if not sized:
            seen.append(raw)
        image = np.ascontiguousarray(raw)
        height, width = image.shape[:2]
        if index % detect_every == 0:
            following = any(a.lost == 0 for a in active)
            detections = _detect(be, image, detect_downscale if following else 1.0)
            predicted = [_box_absolute(a.box_rel, a.landmarks, a.velocity) if a.lost == 0 else a.last_box
                         for a in active]
            pairs = _assign(predicted, [d.bbox for d in detections])
            paired_tracks, paired_dets = {p[0] for p in pairs}, {p[1] for p in pairs}
            for ai, di in pairs:
                a, det = active[ai], detections[di]
                face = be.face_for_box(image, det.bbox, score=det.score)
                # a re-found track may have changed size while lost: compare spreads only if continuous
                if _fit_ok(face, width, height, a.spread if a.lost == 0 else None):
                    record(a, index, face, image, detected=True)
                else:
                    mark_lost(a, index)
            for ai, a in enumerate(active):
                if ai not in paired_tracks:
                    mark_lost(a, index)
            for di, det in enumerate(detections):
                if di in paired_dets:  # a paired detection whose fit failed does not start a new track
                    continue
                face = be.face_for_box(image, det.bbox, score=det.score)
                if not _fit_ok(face, width, height, None):
                    continue
                a = _Active(track=FaceTrack(track_id=next_id), landmarks=face.landmarks, box_rel=np.zeros(4),
                            template=np.zeros((_PATCH, _PATCH), np.float32), score=det.score, spread=0.0,
                            smoother=OneEuro(fps) if smooth else None)
                next_id += 1
                record(a, index, face, image, detected=True)
                active.append(a)
        else:
            for a in active:
                if a.lost:
                    mark_lost(a, index)
                    continue
                box = _box_absolute(a.box_rel, a.landmarks, a.velocity)
                if _inside_fraction(box, width, height) < MIN_INSIDE:
                    mark_lost(a, index)
                    continue
                face = be.face_for_box(image, box, score=a.score)
                face = replace(face, bbox=_box_absolute(a.box_rel, face.landmarks.astype(np.float64)),
                               models={**face.models, "bbox": _PROPAGATED})
                ok = _fit_ok(face, width, height, a.spread)
                if ok and float((face_patch(image, face.landmarks) * a.template).sum()) < MIN_PATCH_NCC:
                    ok = False
                if ok:
                    record(a, index, face, image, detected=False)
                else:
                    mark_lost(a, index)
        keep = []
        for a in active:
            if a.lost >= max_lost:
                done.append(a.track)
            else:
                keep.append(a)
        active = keep
        if progress is not None:
            progress(index + 1, total if sized else max(total, index + 1))
    done += [a.track for a in active]
    tracks = sorted((t for t in done if t.faces), key=lambda t: (t.first_frame, t.track_id))
    for new_id, t in enumerate(tracks):
        t.track_id = new_id
    if appearance_frames > 0:
        _estimate_appearance(tracks, frames if sized else seen, be, appearance_frames)
    return tracks


def _detect(be: FaceBackend, image: np.ndarray, scale: float) -> list[Any]:
    """``be.detect_boxes`` on a copy of ``image`` scaled by ``scale`` (<= 1), boxes in ``image`` pixels."""
    if scale >= 1.0:
        return be.detect_boxes(image)
    import cv2

    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    sx, sy = width / size[0], height / size[1]
    box_scale = np.array([sx, sy, sx, sy], np.float32)
    return [replace(d, bbox=(np.asarray(d.bbox, np.float32) * box_scale).astype(np.float32),
                    keypoints=None if d.keypoints is None
                    else (np.asarray(d.keypoints, np.float32) * np.float32([sx, sy])).astype(np.float32))
            for d in be.detect_boxes(small)]


def _assign(tracks: list[np.ndarray | None], dets: list[np.ndarray]) -> list[tuple[int, int]]:
    """(track index, detection index) pairs with IoU >= MIN_IOU, maximising total IoU."""
    if not tracks or not dets:
        return []
    iou = np.array([[0.0 if t is None else _iou(t, d) for d in dets] for t in tracks])
    if len(tracks) == 1 or len(dets) == 1:  # the optimum is the single best pair (no scipy import: ~0.5 s)
        r, c = np.unravel_index(int(np.argmax(iou)), iou.shape)
        return [(int(r), int(c))] if iou[r, c] >= MIN_IOU else []
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(-iou)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= MIN_IOU]


def _estimate_appearance(tracks: list[FaceTrack], frames: Any, be: FaceBackend, per_track: int) -> None:
    by_frame: dict[int, list[tuple[FaceTrack, int]]] = {}
    for t in tracks:
        n = len(t.faces)
        for pos in sorted(set(np.rint(np.linspace(0, n - 1, min(per_track, n))).astype(int).tolist())):
            by_frame.setdefault(t.frame_indices[pos], []).append((t, pos))
    for index, items in sorted(by_frame.items()):
        image = np.ascontiguousarray(frames[index])
        apps = be.appearance(image, [t.faces[pos] for t, pos in items])
        for (t, pos), app in zip(items, apps, strict=True):
            t.faces[pos] = replace(t.faces[pos], appearance=app)


def primary_track(tracks: Sequence[FaceTrack]) -> FaceTrack | None:
    """The most persistent track (most frames found); ties go to the larger mean box area."""
    candidates = [t for t in tracks if t.faces]
    if not candidates:
        return None
    return max(candidates, key=lambda t: (len(t.faces), float(np.mean([f.area for f in t.faces]))))


@dataclass(frozen=True)
class AppearanceSummary:
    """Apparent gender/age of one track: mean and spread (std) over the frames where it was estimated."""

    p_female_mean: float
    p_female_std: float
    age_mean: float
    age_std: float
    frames: int
    model: str

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "gender": {"label": "female" if self.p_female_mean >= 0.5 else "male",
                       "p_female": round(self.p_female_mean, 4), "std": round(self.p_female_std, 4)},
            "age": {"years": round(self.age_mean, 1), "std": round(self.age_std, 1)},
            "frames": self.frames, "model": self.model,
        }


def track_appearance(track: FaceTrack) -> AppearanceSummary | None:
    """Mean/std of ``p_female`` and age over the track's faces that carry an appearance estimate."""
    apps = [f.appearance for f in track.faces if f.appearance is not None]
    if not apps:
        return None
    p = np.array([a.p_female for a in apps], np.float64)
    age = np.array([a.age_years for a in apps], np.float64)
    return AppearanceSummary(p_female_mean=float(p.mean()), p_female_std=float(p.std()),
                             age_mean=float(age.mean()), age_std=float(age.std()), frames=len(apps),
                             model=apps[0].model)

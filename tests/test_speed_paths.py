"""The fast paths behind the speed targets keep results: torch-free FDIN inference in analyze, model-rate
sampling, detection on a downscaled copy while tracking, the scipy-free single-track assignment."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from fdin.weights import weights_dir

REPO = Path(__file__).resolve().parent.parent
HAVE_FDIN_WEIGHTS = (weights_dir() / "fdin-gender").is_dir() and (weights_dir() / "fdin-age").is_dir()


def test_single_row_or_column_assignment_matches_hungarian():
    pytest.importorskip("scipy")
    from scipy.optimize import linear_sum_assignment

    from fdin.geometry import iou
    from fdin.perception import tracking

    rng = np.random.default_rng(0)
    for k in range(400):
        if k < 200:
            n_t, n_d = (1, int(rng.integers(1, 5))) if rng.random() < 0.5 else (int(rng.integers(1, 5)), 1)
        else:  # a few faces each: the exhaustive search (no scipy import) must find Hungarian's answer
            n_t, n_d = int(rng.integers(2, 5)), int(rng.integers(2, 5))
        boxes_t = [np.r_[xy, xy + rng.uniform(20, 60, 2)] for xy in rng.uniform(0, 100, (n_t, 2))]
        boxes_d = [np.r_[xy, xy + rng.uniform(20, 60, 2)] for xy in rng.uniform(0, 100, (n_d, 2))]
        overlap = np.array([[iou(t, d) for d in boxes_d] for t in boxes_t])
        rows, cols = linear_sum_assignment(-overlap)
        expected = [(int(r), int(c)) for r, c in zip(rows, cols, strict=True)
                    if overlap[r, c] >= tracking.MIN_IOU]
        assert tracking.assign(boxes_t, boxes_d) == expected


@dataclass(frozen=True)
class _Det:
    bbox: np.ndarray
    score: float
    keypoints: np.ndarray | None = None


class _FakeBackend:
    """Detector that reports a box at fixed *fractions* of whatever image it is given."""

    def __init__(self) -> None:
        self.sizes: list[tuple[int, int]] = []

    def detect_boxes(self, image):
        h, w = image.shape[:2]
        self.sizes.append((w, h))
        return [_Det(bbox=np.float32([0.25 * w, 0.2 * h, 0.5 * w, 0.7 * h]), score=0.9,
                     keypoints=np.float32([[0.3 * w, 0.4 * h]] * 5))]


def test_detect_on_downscaled_copy_maps_boxes_back():
    from fdin.perception.tracking import detect_scaled

    be = _FakeBackend()
    image = np.zeros((360, 640, 3), np.uint8)
    full = detect_scaled(be, image, 1.0)[0]
    half = detect_scaled(be, image, 0.5)[0]
    assert be.sizes == [(640, 360), (320, 180)]
    np.testing.assert_allclose(half.bbox, full.bbox, atol=1e-3)
    np.testing.assert_allclose(half.keypoints, full.keypoints, atol=1e-3)


@pytest.mark.slow
def test_downscaled_detection_tracks_the_same_face():
    clips = pytest.importorskip("tests.clips")
    from fdin.perception import get_backend, primary_track, track_faces

    frames = clips.smile_frames(fps=25.0, head_motion=True)
    be = get_backend("offline")
    full = primary_track(track_faces(frames, be, detect_every=5, appearance_frames=0))
    fast = primary_track(track_faces(frames, be, detect_every=10, detect_downscale=0.5, appearance_frames=0))
    assert len(fast) >= 0.95 * len(frames) and len(full) >= 0.95 * len(frames)
    common = sorted(set(full.frame_indices) & set(fast.frame_indices))
    a = np.stack([full.faces[full.frame_indices.index(i)].landmarks for i in common])
    b = np.stack([fast.faces[fast.frame_indices.index(i)].landmarks for i in common])
    iod = np.linalg.norm(a[:, 42:48].mean(1) - a[:, 36:42].mean(1), axis=-1)
    assert np.median(np.linalg.norm(a - b, axis=-1).mean(1) / iod) < 0.03


@pytest.mark.skipif(not HAVE_FDIN_WEIGHTS, reason="shipped FDIN weights are not present")
def test_analyzer_predicts_without_importing_torch(tmp_path):
    code = (
        "import sys, numpy as np\n"
        "from fdin.analyze import DynamicsAnalyzer\n"
        "from fdin.synth import smile_sequence\n"
        "a = DynamicsAnalyzer()\n"
        "lm = smile_sequence(seed=1, fps=30)\n"
        "p = a.predict_landmarks(lm, np.arange(len(lm)) / 30)\n"
        "print(a.gender.backend, a.age.backend, 'torch' in sys.modules, p.estimates.gender.p_female)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "FDIN_CACHE_DIR": str(tmp_path / "cache")}
    runs = [subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=300) for _ in range(2)]  # the first may export ONNX into the cache
    for run in runs:
        assert run.returncode == 0, run.stderr
    backend_g, backend_a, _torch_loaded, p_first = runs[0].stdout.split()
    assert (backend_g, backend_a) == ("onnxruntime", "onnxruntime")
    assert runs[1].stdout.split()[2] == "False", "analysis imported torch although an ONNX export exists"
    assert runs[1].stdout.split()[3] == p_first


@pytest.mark.skipif(not HAVE_FDIN_WEIGHTS, reason="shipped FDIN weights are not present")
def test_onnx_and_torch_analyzers_agree():
    from fdin.analyze import DynamicsAnalyzer
    from fdin.synth import smile_sequence

    lm = smile_sequence(seed=2, fps=30, head_motion=True, noise_px=0.3)
    t = np.arange(len(lm)) / 30
    with DynamicsAnalyzer() as analyzer:
        fast = analyzer.predict_landmarks(lm, t)
    slow = DynamicsAnalyzer(use_onnx=False).predict_landmarks(lm, t)
    assert abs(fast.estimates.gender.p_female - slow.estimates.gender.p_female) <= 1e-4
    assert abs(fast.estimates.age.years - slow.estimates.age.years) <= 0.1
    np.testing.assert_allclose(fast.importance.matrix, slow.importance.matrix, atol=1e-5)
    np.testing.assert_allclose(fast.importance.by_target["age"], slow.importance.by_target["age"], atol=1e-5)


def test_lazy_pose_is_the_eager_pose_computed_on_first_read(monkeypatch):
    import pickle

    from fdin.perception import pose as pose_mod
    from fdin.perception.types import Pose

    lm = pose_mod.synthetic_landmarks(20.0, -10.0, 5.0)
    eager = pose_mod.head_pose(lm, (640, 480))
    calls: list[int] = []
    original = pose_mod.head_pose
    monkeypatch.setattr(pose_mod, "head_pose", lambda *a: calls.append(1) or original(*a))
    lazy = pose_mod.LazyPose(lm, (640, 480))
    assert calls == [] and isinstance(lazy, Pose)
    assert lazy == eager and eager == lazy and hash(lazy) == hash(eager)
    assert lazy.to_json_dict() == eager.to_json_dict() and calls == [1]  # computed once, then kept
    assert pickle.loads(pickle.dumps(pose_mod.LazyPose(lm, (640, 480)))) == eager


def _counting_detector(monkeypatch):
    """The offline backend with ``detect_boxes`` recording each searched image's (width, height):
    (backend, recorded sizes, the original ``detect_boxes``)."""
    from fdin.perception import get_backend

    be = get_backend("offline")
    sizes: list[tuple[int, int]] = []
    detect = be.detect_boxes

    def counting(image):
        sizes.append((image.shape[1], image.shape[0]))
        return detect(image)

    monkeypatch.setattr(be, "detect_boxes", counting)
    return be, sizes, detect


def test_the_search_tries_the_small_copy_first_and_falls_back_to_every_pixel(monkeypatch):
    """With no face followed, ``detect_downscale`` < 1 searches the half-size copy first; a face too
    small for it (the astronaut at 96 px: found at 640x360, not at 320x180) is still found on the
    full frame, and a large face never costs a full-frame detection."""
    import cv2

    from fdin.perception import track_faces
    from tests.faces import astronaut

    be, sizes, _ = _counting_detector(monkeypatch)

    for side, full_frame_searches in ((96, 1), (200, 0)):
        frame = np.full((360, 640, 3), 90, np.uint8)
        frame[80:80 + side, 300:300 + side] = cv2.resize(astronaut(), (side, side), interpolation=cv2.INTER_AREA)
        sizes.clear()
        tracks = track_faces(np.stack([frame] * 3), be, detect_every=5, detect_downscale=0.5,
                             appearance_frames=0)
        assert len(tracks) == 1 and len(tracks[0]) == 3
        assert sizes.count((640, 360)) == full_frame_searches and sizes[0] == (320, 180)


def test_video_search_skips_the_full_frame_and_caps_the_copy_but_finds_analysable_faces(monkeypatch):
    """``search_full_frame=False`` (what :class:`fdin.analyze.DynamicsAnalyzer` uses): with no face
    followed, only the copy is searched, never the full frame; the copy is at most
    :data:`~fdin.perception.tracking.DETECT_MAX_SIDE` on its longer side even when
    ``detect_downscale`` asks for more (a 1920x1080 frame is searched at 640x360). A real face with a
    40-px box (the smallest the landmark harness fits) is still found on the copy."""
    import cv2

    from fdin.media import load_image
    from fdin.perception import track_faces
    from fdin.perception.tracking import DETECT_MAX_SIDE
    from tests import real_media

    be, sizes, detect = _counting_detector(monkeypatch)
    photo = load_image(real_media.path("single_face.jpg"))
    box = detect(photo)[0].bbox
    for (width, height), face_px, copy in (((960, 540), 40, (480, 270)), ((1920, 1080), 60, (640, 360))):
        s = face_px / float(box[2] - box[0])
        small = cv2.resize(photo, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        frame = np.full((height, width, 3), 90, np.uint8)
        frame[100:100 + small.shape[0], 300:300 + small.shape[1]] = small
        blank = np.full_like(frame, 90)
        sizes.clear()
        # three empty frames (searched: the copy only), then the face
        tracks = track_faces(np.stack([blank] * 3 + [frame] * 3), be, detect_every=1, detect_downscale=0.5,
                             search_full_frame=False, appearance_frames=0)
        assert max(copy) <= DETECT_MAX_SIDE
        assert (width, height) not in sizes and set(sizes) == {copy}, sizes
        assert len(tracks) == 1 and tracks[0].frame_indices == [3, 4, 5]
        found = float(np.ptp(tracks[0].faces[0].landmarks[:, 0]))
        assert 0.6 * face_px < found < 1.6 * face_px
        # the same empty frames with the full-frame fallback: every search of an empty copy adds one
        sizes.clear()
        track_faces(np.stack([blank] * 3), be, detect_every=1, detect_downscale=0.5, appearance_frames=0)
        assert sizes.count((width, height)) == 3


def test_the_fast_large_face_crop_keeps_the_exact_scale_crop():
    """:class:`fdin.perception.mesh.MeshLandmarker` shrinks a large face by a whole factor before the
    warp (OpenCV's fast box path) instead of INTER_AREA at the exact scale: the crop the network sees
    keeps the exact-scale crop's geometry (no shift beyond 0.1 px) and content (mean difference under
    2 grey levels), on a real photo at several crop sizes and a roll."""
    import cv2

    from fdin.media import load_image
    from fdin.perception.mesh import INPUT, MeshLandmarker, square_transform
    from tests import real_media

    image = load_image(real_media.path("single_face.jpg"))
    h, w = image.shape[:2]
    landmarker = MeshLandmarker()
    for side in (400, 470, 560, 800):
        _, side, m = square_transform(np.array([w / 2.0, h / 2.0]), side, 0.15)
        fast = landmarker._crop(image, m, side).astype(np.float32)
        # the exact-scale crop: the region shrunk by INTER_AREA to exactly 1:1, then the same warp
        k = side / INPUT
        exact_small = cv2.resize(image, (round(w / k), round(h / k)), interpolation=cv2.INTER_AREA)
        sx, sy = exact_small.shape[1] / w, exact_small.shape[0] / h
        m_small = np.diag([sx, sy]) @ m
        exact = cv2.warpAffine(exact_small, m_small, (INPUT, INPUT),
                               flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP).astype(np.float32)
        grey = [cv2.cvtColor(c, cv2.COLOR_RGB2GRAY) for c in (fast, exact)]
        (dx, dy), _ = cv2.phaseCorrelate(*grey)
        assert abs(dx) < 0.1 and abs(dy) < 0.1, (side, dx, dy)
        assert float(np.abs(fast - exact).mean()) < 2.0, side


def test_the_patch_from_the_colour_warp_is_the_grey_frame_patch():
    """:func:`fdin.perception.fit.face_patch` warps the colour frame to 32x32 and only then turns it
    grey; on a real photo at three scales that is the patch of the fully converted grey frame (the
    way it was computed before) to the uint8 rounding."""
    import cv2

    from fdin.geometry import eye_centres
    from fdin.media import load_image
    from fdin.perception import get_backend
    from fdin.perception.fit import PATCH, face_patch
    from tests import real_media

    be = get_backend("offline")
    photo = load_image(real_media.path("single_face.jpg"))
    for scale in (1.0, 0.5, 0.25):
        image = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        lm = be.detect(image, with_appearance=False)[0].landmarks
        src = np.float32([*eye_centres(lm), (lm[48] + lm[54]) / 2.0])
        m = cv2.getAffineTransform(src, np.float32([[9, 11], [23, 11], [16, 25]]))
        grey = cv2.warpAffine(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), m, (PATCH, PATCH),
                              flags=cv2.INTER_LINEAR).astype(np.float32)
        grey -= grey.mean()
        grey /= np.linalg.norm(grey)
        patch = face_patch(image, lm)
        assert patch.shape == (PATCH, PATCH) and abs(float(np.linalg.norm(patch)) - 1.0) < 1e-4
        assert float((patch * grey).sum()) > 0.999, scale


def test_appearance_of_several_frames_in_one_call_is_each_frames_own():
    """The offline backend estimates the faces of several images in one call per network
    (``appearance_of_frames``: an analysis's 5 frames at once); on real photos (one face, then five)
    each face gets what a call for its own image alone gives, in order, to float rounding."""
    from fdin.media import load_image
    from fdin.perception import get_backend
    from tests import real_media

    be = get_backend("offline")
    items = []
    for name in ("single_face.jpg", "multi_face.jpg", "0-f1-su-ph.jpg"):
        image = load_image(real_media.path(name))
        items.append((image, be.detect(image, with_appearance=False)))
    assert [len(faces) for _, faces in items] == [1, 5, 1]
    together = be.appearance_of_frames(items)
    alone = [be.appearance_of_frames([item])[0] for item in items]
    assert [len(a) for a in together] == [1, 5, 1]
    for batch, single in zip(together, alone, strict=True):
        for a, b in zip(batch, single, strict=True):
            assert abs(a.p_female - b.p_female) < 1e-5 and abs(a.age_years - b.age_years) < 1e-3
    p = [a.p_female for a in together[1]]
    assert max(p) - min(p) > 0.5  # the five faces of the group photo are told apart: order matters here
    assert be.appearance_of_frames([]) == [] and be.appearance_of_frames([(items[0][0], [])]) == [[]]


def test_a_followed_face_is_confirmed_in_a_small_region_around_it(monkeypatch):
    """``detect_around`` searches a square twice the face box around it, on a copy at most
    :data:`~fdin.perception.tracking.CONFIRM_SIDE` px a side, and maps the box back: on a real face
    placed at an offset in a 960x540 frame it finds the face the full-frame search finds (IoU >= 0.8;
    >= 0.6 for one cut by the frame's corner, whose box the two searches extend differently, still far
    above the pairing threshold); a region under 16 px is not searched."""
    import cv2

    from fdin.geometry import iou
    from fdin.media import load_image
    from fdin.perception.tracking import CONFIRM_SIDE, assign, detect_around
    from tests import real_media

    be, sizes, detect = _counting_detector(monkeypatch)
    photo = load_image(real_media.path("single_face.jpg"))
    face = cv2.resize(photo, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    for (x, y), agree in (((300, 100), 0.8), ((960 - face.shape[1] // 2 - 10, 540 - face.shape[0]), 0.6)):
        frame = np.full((540, 960, 3), 90, np.uint8)
        h, w = min(face.shape[0], 540 - y), min(face.shape[1], 960 - x)
        frame[y:y + h, x:x + w] = face[:h, :w]
        truth = detect(frame)
        assert len(truth) == 1
        sizes.clear()
        near = detect_around(be, frame, truth[0].bbox)
        pairs = assign([truth[0].bbox], [d.bbox for d in near])
        assert len(pairs) == 1 and iou(near[pairs[0][1]].bbox, truth[0].bbox) >= agree, (x, y)
        assert len(sizes) == 1 and max(sizes[0]) <= CONFIRM_SIDE, sizes
    sizes.clear()
    assert detect_around(be, frame, np.float32([955, 535, 958, 538])) == [] and sizes == []


def test_degraded_fits_on_a_real_clip_are_confirmed_locally_and_new_faces_searched_on_schedule(monkeypatch):
    """On the real crying-to-laughing clip the expression changes pull the patch correlation under
    the re-detection threshold: those frames are confirmed in a small region (never the whole frame),
    the full-frame search still runs every ``redetect_after`` frames (how a new face is found), and
    the face is followed in 98 % of the frames (465 of 472; the 7 frames it misses, at 3.9-4.1 s,
    were missed before local confirmations too)."""
    from fdin.analyze import DynamicsAnalyzer
    from fdin.media import read_video
    from fdin.perception import primary_track, track_faces
    from fdin.perception.tracking import CONFIRM_SIDE
    from tests import real_media

    be, sizes, _ = _counting_detector(monkeypatch)
    video = read_video(real_media.path("WolfgangLanger_Pexels.mp4"))
    analyzer = DynamicsAnalyzer(decode_worker=False)  # its tracking settings
    redetect_after = analyzer.redetect_after
    track = primary_track(track_faces(video.frames, be, detect_every=analyzer.detect_every,
                                      detect_downscale=analyzer.detect_downscale, redetect_after=redetect_after,
                                      search_full_frame=False, appearance_frames=0))
    full = [s for s in sizes if s == (320, 180)]
    confirming = [s for s in sizes if s != (320, 180)]
    assert confirming and all(max(s) <= CONFIRM_SIDE for s in confirming), sizes
    assert len(full) >= len(video.frames) // redetect_after
    assert track is not None and len(track) >= 0.98 * len(video.frames)

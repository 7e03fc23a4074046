"""Face tracking on generated clips built from a real photo (offline backend)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from faces import astronaut, background, moving_face_frames, t1

from fdin.perception import FaceTrack, get_backend, primary_track, track_appearance, track_faces
from fdin.perception.smoothing import OneEuro


@pytest.fixture(scope="session")
def backend():
    return get_backend("offline")


@pytest.fixture
def detector_calls(backend, monkeypatch) -> list[int]:
    """Counts the backend's full-frame detector calls (frame sizes recorded)."""
    calls: list[int] = []
    original = backend.detect_boxes

    def counting(image):
        calls.append(image.shape[1])
        return original(image)

    monkeypatch.setattr(backend, "detect_boxes", counting)
    return calls


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return ix * iy / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy)


def _inside(box, width=640, height=480) -> float:
    ix = max(0.0, min(box[2], width) - max(box[0], 0.0))
    iy = max(0.0, min(box[3], height) - max(box[1], 0.0))
    return ix * iy / ((box[2] - box[0]) * (box[3] - box[1]))


@pytest.fixture(scope="module")
def encoded_clip(tmp_path_factory):
    """The moving-face clip through H.264 and back (fdin.media), with its true face boxes."""
    from fdin.media import read_video, write_video

    frames, boxes = moving_face_frames(60)
    path = write_video(frames, 25.0, tmp_path_factory.mktemp("clips") / "moving.mp4")
    video = read_video(path)
    assert len(video) == 60
    return video, boxes


def test_face_crossing_and_leaving_the_frame(backend, detector_calls, encoded_clip):
    video, boxes = encoded_clip
    progress: list[tuple[int, int]] = []
    tracks = track_faces(video, backend, detect_every=5, progress=lambda d, t: progress.append((d, t)))
    assert progress[-1] == (60, 60) and len(progress) == 60
    # the detector ran on every 5th frame only
    assert len(detector_calls) == math.ceil(60 / 5)
    assert len(tracks) == 1
    track = primary_track(tracks)
    assert track is tracks[0]
    found = set(track.frame_indices)
    visible = {i for i in range(60) if _inside(boxes[i]) == 1.0}     # face entirely in the picture
    gone = {i for i in range(60) if _inside(boxes[i]) < 0.5}         # more than half of it outside
    assert len(found & visible) >= 0.9 * len(visible)
    assert not found & gone                                          # no invented faces
    assert set(track.lost_frames) >= gone                            # recorded as lost, not filled in
    assert not found & set(track.lost_frames)
    assert track.frame_indices == sorted(track.frame_indices)
    for i, face in zip(track.frame_indices, track.faces, strict=True):
        assert _iou(face.bbox, boxes[i]) > 0.6, i
        assert face.landmarks.shape == (68, 2)
    # detector boxes on detection frames, carried boxes in between
    assert "yuface" in track.faces[0].models["bbox"] and "carried" in track.faces[1].models["bbox"]
    summary = track_appearance(track)
    assert summary.frames == 5 and summary.p_female_mean > 0.5 and 25 <= summary.age_mean <= 50
    assert sum(f.appearance is not None for f in track.faces) == 5


def test_face_cut_away_between_detections_is_lost(backend, detector_calls):
    frames, _ = moving_face_frames(30, step=2.0, x_start=200.0)
    frames[13:] = background()  # the face vanishes at frame 13 (not a detection frame)
    tracks = track_faces(frames, backend, detect_every=5, max_lost=8, appearance_frames=0)
    assert len(tracks) == 1
    track = tracks[0]
    assert track.frame_indices == list(range(13))
    assert track.lost_frames == list(range(13, 21))  # given up after max_lost frames
    assert len(detector_calls) == 6


def test_no_face_gives_no_track(backend, detector_calls):
    frames = np.stack([background(seed=s) for s in range(12)])
    assert track_faces(frames, backend, detect_every=4) == []
    assert len(detector_calls) == 3


def test_six_faces_tracked_in_a_still_group_photo(backend):
    import cv2

    still = cv2.resize(t1(), (960, 664), interpolation=cv2.INTER_AREA)
    tracks = track_faces(np.stack([still] * 8), backend, detect_every=5, appearance_frames=2)
    assert len(tracks) == 6
    for t in tracks:
        assert t.frame_indices == list(range(8)) and t.lost_frames == []
        moved = np.abs(t.landmarks_array() - t.landmarks_array()[0]).max()
        assert moved < 3.0  # re-fitting in a carried box does not drift on a still image
    assert [t.track_id for t in tracks] == list(range(6))


def test_primary_track_is_most_persistent_then_largest():
    from fdin.perception.types import Face, Pose

    def face(size: float) -> Face:
        return Face(bbox=np.array([0, 0, size, size], np.float32), score=1.0,
                    landmarks=np.zeros((68, 2), np.float32), keypoints=np.zeros((5, 2), np.float32),
                    pose=Pose(0, 0, 0))

    short = FaceTrack(0, [0, 1], [face(500), face(500)])
    long_small = FaceTrack(1, [0, 1, 2], [face(50)] * 3)
    long_big = FaceTrack(2, [3, 4, 5], [face(80)] * 3)
    assert primary_track([short, long_small, long_big]) is long_big
    assert primary_track([]) is None
    assert track_appearance(short) is None


def test_one_euro_removes_jitter_but_follows_motion():
    rng = np.random.default_rng(0)
    still = 100 + rng.normal(0, 1.0, size=(90, 68, 2))
    f = OneEuro(30.0)
    smoothed = np.stack([f(x) for x in still])
    assert np.diff(smoothed[30:], axis=0).std() < 0.5 * np.diff(still[30:], axis=0).std()
    moving = np.arange(60, dtype=float)[:, None, None] * 5.0 + np.zeros((60, 68, 2))
    g = OneEuro(30.0)
    out = np.stack([g(x) for x in moving])
    assert abs(out[-1, 0, 0] - moving[-1, 0, 0]) < 3.0  # lags less than one frame of motion (5 px)


def test_smoothing_option_keeps_the_track(backend):
    import cv2

    face = cv2.resize(astronaut()[0:300, 110:410], (320, 320), interpolation=cv2.INTER_CUBIC)
    rng = np.random.default_rng(1)
    frames = np.stack([np.clip(face.astype(np.int16) + rng.integers(-6, 7, face.shape), 0, 255).astype(np.uint8)
                       for _ in range(10)])
    raw = track_faces(frames, backend, detect_every=5, appearance_frames=0)[0]
    smooth = track_faces(frames, backend, detect_every=5, smooth=True, fps=25, appearance_frames=0)[0]
    assert smooth.frame_indices == raw.frame_indices
    jitter = lambda t: np.abs(np.diff(t.landmarks_array(), axis=0)).mean()  # noqa: E731
    assert jitter(smooth) <= jitter(raw)


def _appears_at(first: int, n: int, hidden: range = range(0)) -> np.ndarray:
    """``n`` frames of the moving real face (astronaut photo) that shows from frame ``first`` on
    (and not in the frames of ``hidden``); the background elsewhere."""
    frames, _ = moving_face_frames(n, step=1.0, x_start=180.0)
    frames[:first] = background()
    for i in hidden:
        frames[i] = background()
    return frames


def _reused_buffer(frames: np.ndarray):
    """The frames one by one through a single reused buffer (as a capture loop would hand them out)."""
    buffer = np.empty_like(frames[0])
    for frame in frames:
        buffer[...] = frame
        yield buffer


@pytest.mark.parametrize("streamed", [False, True])
def test_a_face_found_by_a_search_is_followed_back_to_the_frame_it_appears_in(backend, streamed):
    """A face that appears at frame 12 is found by the search of frame 20 (every 10th frame) and,
    with ``follow_back``, followed back to frame 12 (the frames before it show no face, where the
    backward fit fails its checks); without it the track starts at 20. A stream whose frames live in
    one reused buffer gets the same track: the frames kept for following back are copies (kept as
    references, every kept frame would be the current one, a face where there was none)."""
    frames = _appears_at(12, 26)
    plain = track_faces(frames, backend, detect_every=10, appearance_frames=0)
    source = _reused_buffer(frames) if streamed else frames
    back = track_faces(source, backend, detect_every=10, appearance_frames=0, follow_back=9)
    assert len(plain) == 1 and plain[0].frame_indices == list(range(20, 26))
    assert len(back) == 1 and back[0].frame_indices == list(range(12, 26)) and not back[0].lost_frames
    # the found face is the same fit; after it the track carries the velocity of the frames before it
    # (plain: none yet), so its later fits start from slightly different crops
    assert np.array_equal(back[0].faces[8].landmarks, plain[0].faces[0].landmarks)
    later = np.stack([f.landmarks for f in back[0].faces[9:]]) - np.stack([f.landmarks for f in plain[0].faces[1:]])
    assert float(np.abs(later).max()) < 2.0  # px, on a face ~100 px wide
    with pytest.raises(ValueError, match="follow_back"):
        track_faces(frames, backend, follow_back=-1)


def test_a_lost_face_found_again_is_followed_back_over_its_lost_frames(backend):
    """A face hidden in frames 25-31 is lost there; the search of frame 40 finds it again and follows
    it back to frame 32: only the frames where it was hidden stay lost."""
    frames = _appears_at(0, 45, hidden=range(25, 32))
    tracks = track_faces(frames, backend, detect_every=10, appearance_frames=0, follow_back=9)
    assert len(tracks) == 1
    assert tracks[0].lost_frames == list(range(25, 32))
    assert tracks[0].frame_indices == [*range(25), *range(32, 45)]

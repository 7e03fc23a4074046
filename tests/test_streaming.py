"""Streaming decode (fdin.media.open_video_stream) and its overlap with tracking in the analyzer."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from faces import moving_face_frames

from fdin.errors import MediaError, NoFaceError, UnsupportedMediaError
from fdin.media import open_video_stream, read_video, write_video
from fdin.perception import get_backend, track_faces


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    frames = np.stack([np.full((48, 64, 3), 10 * i % 250, np.uint8) for i in range(30)])
    return write_video(frames, 30.0, tmp_path_factory.mktemp("stream") / "c.mp4")


@pytest.mark.parametrize("kwargs", [{}, {"target_fps": 25}, {"target_fps": 7.5}, {"max_frames": 10},
                                    {"max_side": 32}])
def test_stream_matches_read_video(clip, kwargs):
    reference = read_video(clip, **kwargs)
    with open_video_stream(clip, **kwargs) as stream:
        streamed = [frame.copy() for frame in stream]
        assert len(stream.timestamps) == len(streamed)
    assert stream.video is not None
    np.testing.assert_array_equal(np.stack(streamed), reference.frames)
    np.testing.assert_array_equal(stream.video.frames, reference.frames)
    np.testing.assert_array_equal(stream.video.timestamps, reference.timestamps)
    assert stream.video.to_json_dict() == reference.to_json_dict()


def test_stream_checks_before_the_first_frame(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("just some text, not a video\n")
    with pytest.raises(UnsupportedMediaError):
        open_video_stream(text)
    with pytest.raises(MediaError):
        open_video_stream(tmp_path / "missing.mp4")
    with pytest.raises(ValueError):
        open_video_stream(text, target_fps=0)


def test_stream_limit_error_raises_from_iteration(clip):
    with open_video_stream(clip, max_frames=5, on_limit="error") as stream, pytest.raises(MediaError):
        for _ in stream:
            pass


def test_track_faces_accepts_an_iterator():
    frames, _ = moving_face_frames(24)
    backend = get_backend("offline")
    seen = []
    from_array = track_faces(frames, backend, detect_every=5)
    from_iter = track_faces(iter(list(frames)), backend, detect_every=5,
                            progress=lambda done, total: seen.append((done, total)))
    assert [t.frame_indices for t in from_iter] == [t.frame_indices for t in from_array]
    for a, b in zip(from_iter, from_array, strict=True):
        np.testing.assert_array_equal(a.landmarks_array(), b.landmarks_array())
        assert [f.appearance for f in a.faces] == [f.appearance for f in b.faces]
    assert seen[-1][0] == len(frames) and all(total >= done for done, total in seen)


def test_analyze_stops_the_decoder_when_tracking_fails(clip, monkeypatch, request):
    import fdin.perception as perception
    from fdin.analyze import DynamicsAnalyzer

    def failing_track(frames, backend, **kwargs):
        next(iter(frames))
        raise RuntimeError("tracker failed")

    monkeypatch.setattr(perception, "track_faces", failing_track, raising=False)
    monkeypatch.setattr(perception, "get_backend", lambda name=None: object(), raising=False)
    for options in ({"decode_worker": False}, {"decode_worker": True}):
        analyzer = DynamicsAnalyzer(**options)
        request.addfinalizer(analyzer.close)
        with pytest.raises(RuntimeError, match="tracker failed"):
            analyzer.analyze(clip)
        assert not any(t.name == "fdin-decode" and t.is_alive() for t in threading.enumerate())
        if analyzer._decoders is not None:  # the worker stopped mid-video was replaced: the next video works
            with pytest.raises(RuntimeError, match="tracker failed"):
                analyzer.analyze(clip)


def test_analyze_streamed_matches_sequential(clip, monkeypatch):
    import fdin.perception as perception
    from fdin.analyze import DynamicsAnalyzer
    from fdin.perception.types import FaceTrack

    seen: list[int] = []

    def counting_track(frames, backend, **kwargs):
        seen.append(sum(1 for _ in frames))
        return [FaceTrack(track_id=0)]

    monkeypatch.setattr(perception, "track_faces", counting_track, raising=False)
    monkeypatch.setattr(perception, "primary_track", lambda tracks: None, raising=False)
    monkeypatch.setattr(perception, "get_backend", lambda name=None: object(), raising=False)
    for options in ({"decode_worker": False}, {"decode_worker": True}):
        with DynamicsAnalyzer(**options) as analyzer, pytest.raises(NoFaceError, match="No usable face"):
            analyzer.analyze(clip)
    assert seen == [len(read_video(clip, target_fps=25))] * 2

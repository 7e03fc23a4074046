"""Videos of any length: ``fdin analyze`` and :meth:`DynamicsAnalyzer.analyze` read
the whole video by default through a ring of frames (decode → track → keep landmarks → drop the frame),
and a limit that cuts a video is said in the JSON's ``coverage`` and on the terminal.

The clip is generated (a smile on a real photo, repeated for 65 s at 10 frames/s and 160 px: ~650
frames, so the test stays cheap); the memory figures on a real 200 s clip are measured in
``benchmarks/`` (docs/benchmarks/speed.md), not here."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fdin.analyze import APPEARANCE_SAMPLE, RING_FRAMES, DynamicsAnalyzer, FrameSample
from fdin.media import DecodeLimits, open_video_stream, read_video
from fdin.weights import weights_dir

pytestmark = pytest.mark.skipif(not (weights_dir() / "fdin-gender").is_dir(),
                                reason="shipped FDIN weights are not present")

SECONDS, FPS = 65.0, 10.0


@pytest.fixture(scope="module")
def long_mp4(tmp_path_factory):
    from tests.clips import long_clip

    return long_clip(tmp_path_factory.mktemp("long") / "long.mp4", seconds=SECONDS, fps=FPS)


@pytest.fixture(scope="module")
def analyzer():
    with DynamicsAnalyzer() as analyzer:
        yield analyzer


def test_ring_decode_gives_every_frame_with_a_fixed_buffer(long_mp4):
    whole = read_video(long_mp4, max_duration=math.inf, max_frames=10_000)
    assert len(whole) == round(SECONDS * FPS) and not whole.truncated
    frames = []
    with open_video_stream(long_mp4, max_duration=math.inf, max_frames=10_000, ring=8) as stream:
        buffers = set()
        for frame in stream:
            buffers.add(frame.base.ctypes.data if frame.base is not None else frame.ctypes.data)
            if len(frames) % 97 == 0:
                frames.append((len(stream.timestamps) - 1, frame.copy()))
            else:
                frames.append((len(stream.timestamps) - 1, None))
    assert len(buffers) == 1  # every frame is a slot of the same 8-frame buffer
    assert stream.video is not None and len(stream.video) == 0  # nothing kept: the frames were handed out
    np.testing.assert_array_equal(stream.video.timestamps, whole.timestamps)
    for index, frame in frames:
        if frame is not None:
            np.testing.assert_array_equal(frame, whole.frames[index])
    with pytest.raises(ValueError):
        DecodeLimits(ring=-1)


def test_frame_sample_stays_small_and_spread():
    sample = FrameSample(iter(np.zeros((1000, 2, 2, 3), np.uint8)), keep=24)
    assert sum(1 for _ in sample) == 1000 and sample.count == 1000
    kept = sorted(sample.kept)
    assert 12 <= len(kept) <= 24 and kept[0] == 0 and kept[-1] >= 1000 - 2 * sample.stride
    assert len(set(np.diff(kept))) == 1  # evenly spaced


@pytest.mark.parametrize("decode_worker", [True, False])
def test_long_clip_analysed_whole_with_flat_buffers(long_mp4, decode_worker, monkeypatch):
    """All ~650 frames (the analyzer used to stop at 60 s), through a buffer of RING_FRAMES frames and
    a sample of at most APPEARANCE_SAMPLE kept frames, whichever decoder runs."""
    import fdin.analyze as analyze_module

    samples: list[FrameSample] = []
    original = analyze_module.FrameSample

    def spy(frames, keep=0):
        samples.append(original(frames, keep))
        return samples[-1]

    monkeypatch.setattr(analyze_module, "FrameSample", spy)
    with DynamicsAnalyzer(decode_worker=decode_worker) as analyzer:
        result = analyzer.analyze(long_mp4)
    n = round(SECONDS * FPS)
    assert result.frames_analyzed == n
    assert result.coverage is not None and result.coverage.whole and not result.coverage.notes
    assert result.coverage.end_s == pytest.approx(SECONDS, abs=0.2)
    assert result.face_track.found >= 0.9 * n
    assert result.landmarks is not None and result.landmarks.shape[0] == result.face_track.found
    assert samples[0].count == n and len(samples[0].kept) <= APPEARANCE_SAMPLE
    assert result.appearance.frames and result.appearance.frames >= 3
    if decode_worker:  # the shared file held RING_FRAMES slots, not the video
        frames = samples[0]._frames._frames
        assert frames.shape[0] == RING_FRAMES


def test_limited_run_says_which_seconds_and_why(long_mp4, tmp_path, capsys, analyzer):
    from fdin.cli import main as cli_main

    out = tmp_path / "cut.json"
    assert cli_main(["analyze", str(long_mp4), "--max-duration", "12", "--json", str(out)]) == 0
    err = capsys.readouterr().err
    data = json.loads(out.read_text())
    coverage = data["coverage"]
    assert coverage["whole_video"] is False and coverage["start_s"] == 0.0
    assert coverage["end_s"] == pytest.approx(12.0, abs=0.15)
    assert data["frames_analyzed"] == pytest.approx(12 * FPS, abs=1)
    note = coverage["notes"][0]
    assert "0-12" in note and "--max-duration 12" in note
    assert f"note: {note}" in err
    # the API says the same with the caller's reason; the default run has no note
    result = analyzer.analyze(long_mp4, max_duration=5, duration_reason="a test asked for 5 s")
    assert not result.coverage.whole and "0-5" in result.coverage.notes[0]
    assert "a test asked for 5 s" in result.coverage.notes[0]
    with pytest.raises(ValueError):
        analyzer.analyze(long_mp4, max_duration=0)
    with pytest.raises(SystemExit) as exit_info:  # argparse: usage and one line on stderr
        cli_main(["analyze", str(long_mp4), "--max-duration", "-3"])
    assert exit_info.value.code == 2 and "positive number of seconds" in capsys.readouterr().err


def test_app_limit_note_names_the_app_and_the_seconds(long_mp4):
    from fdin.app import settings

    kwargs = {k: v for k, v in settings.video_read_kwargs().items() if k != "timeout"}
    video = read_video(long_mp4, **kwargs)
    assert video.truncated and video.duration == pytest.approx(settings.VIDEO_MAX_DURATION_S, abs=0.15)
    note = video.notes[0]
    assert f"0-{settings.VIDEO_MAX_DURATION_S:g}" in note and "this demo" in note
    from fdin.app.rendering import summary_markdown
    from tests.fakes import FakeAnalyzer, fake_video

    text = summary_markdown(FakeAnalyzer().analyze(fake_video()), list(video.notes))  # as the handler does
    assert f"Note: Only seconds 0-{settings.VIDEO_MAX_DURATION_S:g}" in text


def test_faces_tracks_the_whole_video_and_says_when_a_limit_cut_it(long_mp4, tmp_path, capsys):
    """``fdin faces`` on a video past the 60 s that ``read_video`` keeps in memory: every frame tracked
    (streamed like ``fdin analyze``); ``--max-duration`` cuts it with the same coverage and note."""
    from fdin.cli import main as cli_main

    out = tmp_path / "faces.json"
    assert cli_main(["faces", str(long_mp4), "--backend", "offline", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["frames"]["count"] == pytest.approx(SECONDS * FPS, abs=1)
    assert data["coverage"]["whole_video"] is True and data["coverage"]["notes"] == []
    assert data["coverage"]["end_s"] == pytest.approx(SECONDS, abs=0.15)
    assert data["tracks"] and data["tracks"][-1]["last_frame"] > 60 * FPS  # tracked past the old 60 s
    primary = next(t for t in data["tracks"] if t["track_id"] == data["primary_track"])
    assert primary["appearance"]["frames"] == 5 and primary["expression"]["model"]["frames"] == 5
    assert "note:" not in capsys.readouterr().err

    assert cli_main(["faces", str(long_mp4), "--backend", "offline", "--max-duration", "12", "--json", str(out)]) == 0
    err = capsys.readouterr().err
    data = json.loads(out.read_text())
    coverage = data["coverage"]
    assert coverage["whole_video"] is False and coverage["end_s"] == pytest.approx(12.0, abs=0.15)
    assert data["frames"]["count"] == pytest.approx(12 * FPS, abs=1)
    note = coverage["notes"][0]
    assert "0-12" in note and "--max-duration 12" in note and f"note: {note}" in err

"""The media package's own pieces: DecodeLimits, the decode loop against read_video, and the
public names callers rely on."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import fdin.media
from fdin.media import DecodeLimits, read_video, write_video


def test_public_names_stay() -> None:
    for name in ("load_image", "read_video", "open_video_stream", "probe_video", "write_video", "ensure_rgb_uint8",
                 "Video", "VideoInfo", "VideoStream", "DecodeLimits", "DEFAULT_MAX_OUTPUT_BYTES", "IMAGE_FORMATS"):
        assert hasattr(fdin.media, name), name


def test_decode_limits_are_frozen_checked_and_overridable() -> None:
    limits = DecodeLimits()
    with pytest.raises(dataclasses.FrozenInstanceError):
        limits.max_frames = 3  # type: ignore[misc]
    for bad in ({"on_limit": "skip"}, {"max_frames": 0}, {"max_duration": -1.0}, {"target_fps": float("nan")}):
        with pytest.raises(ValueError):
            DecodeLimits(**bad)
    assert DecodeLimits.of(None, max_frames=5).max_frames == 5
    assert DecodeLimits.of(DecodeLimits(max_side=64), target_fps=10.0) == DecodeLimits(max_side=64, target_fps=10.0)
    with pytest.raises(TypeError):
        DecodeLimits.of(None, max_frame=5)


def test_limits_record_and_keywords_decode_alike(tmp_path) -> None:
    frames = [np.full((48, 64, 3), 8 * i, np.uint8) for i in range(20)]
    path = write_video(frames, 20, tmp_path / "clip.mp4")
    by_record = read_video(path, DecodeLimits(max_frames=7, max_side=32))
    by_keywords = read_video(path, max_frames=7, max_side=32)
    assert len(by_record) == len(by_keywords) == 7 and by_record.truncated and by_keywords.notes == by_record.notes
    np.testing.assert_array_equal(by_record.frames, by_keywords.frames)
    assert by_record.frames.shape[1:] == (24, 32, 3)

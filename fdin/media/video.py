"""Reading videos: :func:`read_video` (all at once), :func:`open_video_stream` / :class:`VideoStream`
(frame by frame as decoded); both run the same :class:`~fdin.media.decode.DecodeLoop` under the same
:class:`~fdin.media.limits.DecodeLimits`."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from fdin.media.container import Video, declared_size, open_container, pick_video_stream
from fdin.media.decode import Allocate, DecodeLoop
from fdin.media.limits import DecodeLimits, asked_duration_reason
from fdin.media.sniff import stat_regular_file


def read_video(path: str | os.PathLike[str], limits: DecodeLimits | None = None, **overrides: Any) -> Video:
    """Decode a video file into upright RGB frames with real timestamps.

    Args:
        path: a local MP4/MOV, WebM/MKV or AVI file (the type is decided from its bytes).
        limits: where reading stops and how (:class:`~fdin.media.limits.DecodeLimits`; default: its
            defaults).
        **overrides: single :class:`~fdin.media.limits.DecodeLimits` fields, e.g.
            ``read_video(p, max_duration=20, target_fps=15)``.

    Raises:
        EmptyMediaError, TruncatedMediaError, UnsupportedMediaError, NoVideoStreamError,
        MediaLimitError (all :class:`~fdin.errors.MediaError`), ProcessingTimeoutError.
    """
    with open_video_stream(path, limits, **overrides) as stream:
        for _ in stream:
            pass
    assert stream.video is not None
    return stream.video


class VideoStream:
    """Frames of a video as they are decoded: what :func:`read_video` returns, one frame at a time.

    Made by :func:`open_video_stream`, which does every up-front check (arguments, file size, type
    from the bytes, demuxer whitelist, video track, declared size) before returning, so those errors
    are raised before the first frame. Iterating yields each kept frame (``(H, W, 3) uint8`` RGB,
    upright, bounded; after resampling to ``target_fps``) as soon as it is decoded, in order; the
    arrays are read-only-by-convention views into one buffer that is never overwritten, so a consumer
    may keep them. :attr:`timestamps` grows with each yielded frame. When the iteration ends normally
    :attr:`video` holds the same :class:`Video` that :func:`read_video` returns (its ``frames`` is that
    buffer); decode errors and ``on_limit="error"`` raise from the iteration exactly as from
    :func:`read_video` (at the same point: after the frames read so far). Limits and the deadline are
    the same; note the deadline is wall time, so time the consumer spends between frames counts too.
    Use as a context manager (or call :meth:`close`) to release the demuxer; one pass only.
    """

    def __init__(self, container: Any, stream: Any, limits: DecodeLimits, deadline: float | None = None,
                 allocate: Allocate | None = None) -> None:
        self._container = container
        self.timestamps: list[float] = []
        self.video: Video | None = None
        rate = stream.average_rate or stream.guessed_rate
        self.nominal_fps = float(rate) if rate and float(rate) > 0 else 30.0
        if limits.target_fps:
            self.nominal_fps = min(self.nominal_fps, float(limits.target_fps))
        declared = container.duration / 1e6 if container.duration else None
        self._expected = (round(min(declared, limits.max_duration) * self.nominal_fps)
                          if declared and math.isfinite(declared) and declared > 0 else 0)
        self._gen = DecodeLoop(container, stream, limits, self.timestamps, deadline, allocate).run()
        self._iterating = False

    def __iter__(self) -> Any:
        if self._iterating:
            raise RuntimeError("a VideoStream can be iterated only once")
        self._iterating = True
        return self._run()

    def _run(self) -> Any:
        try:
            self.video = yield from self._gen
        finally:
            self.close()

    def __length_hint__(self) -> int:
        """Frames expected from the (untrusted) header; for progress bars only."""
        return self._expected

    def close(self) -> None:
        self._gen.close()
        self._container.close()

    def __enter__(self) -> VideoStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_video_stream(path: str | os.PathLike[str], limits: DecodeLimits | None = None, *,
                      allocate: Allocate | None = None, **overrides: Any) -> VideoStream:
    """Open a video for streaming decode (see :class:`VideoStream`); arguments as :func:`read_video`,
    and ``allocate`` to choose the buffer the frames are decoded into (:data:`fdin.media.decode.Allocate`).

    Raises the up-front errors of :func:`read_video` (bad arguments, size, type, no video track,
    declared size) here; decode-time errors are raised while iterating.
    """
    limits = DecodeLimits.of(limits, **overrides)
    started = time.monotonic()
    path = Path(path)
    stat_regular_file(path, limits.max_bytes, "video")
    container = open_container(path)
    try:
        stream = pick_video_stream(container)
        declared_size(stream, limits.max_input_side)
        deadline = None if limits.deadline_s is None else started + limits.deadline_s
        return VideoStream(container, stream, limits, deadline, allocate)
    except BaseException:
        container.close()
        raise


def first_seconds(video: Video, max_duration: float | None, reason: str = "") -> Video:
    """``video`` cut to its first ``max_duration`` seconds, as a decode with that limit would have cut it
    (frames at ``max_duration`` s or later are dropped; ``truncated`` and a note say which seconds and
    why, ``reason`` as in :func:`~fdin.media.limits.whole_video_limits`). ``video`` itself when it is not longer
    (or ``max_duration`` is None): an already decoded video obeys the same ``max_duration`` as a path."""
    from dataclasses import replace

    from fdin.media.decode import duration_note

    if max_duration is None:
        return video
    if not (max_duration > 0 and math.isfinite(max_duration)):
        raise ValueError("max_duration must be a positive number of seconds (None: the whole video)")
    stamps = np.asarray(video.timestamps, dtype=np.float64)
    keep = int(np.count_nonzero(stamps - stamps[0] < max_duration - 1e-9)) if stamps.size else 0
    if keep == len(stamps):
        return video
    return replace(video, frames=video.frames[:keep], timestamps=stamps[:keep], truncated=True,
                   notes=(*video.notes, duration_note(max_duration, asked_duration_reason(max_duration, reason))))

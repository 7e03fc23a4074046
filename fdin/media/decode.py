"""The streaming decode loop behind :func:`fdin.media.read_video`: :class:`DecodeLoop` reads packets,
checks every decoded frame against the :class:`~fdin.media.limits.DecodeLimits`, resamples to a
target rate (:class:`Resampler`), converts kept frames to upright bounded RGB into one buffer and
finally builds the :class:`~fdin.media.container.Video`."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Generator
from typing import Any

import numpy as np

from fdin.errors import (
    EmptyMediaError,
    FdinError,
    MediaLimitError,
    ProcessingTimeoutError,
    TruncatedMediaError,
)
from fdin.media.container import Orientation, Video, frame_orientation
from fdin.media.limits import DecodeLimits

log = logging.getLogger(__name__)

#: Corrupt packets skipped before giving up on the rest of the file.
MAX_DECODE_ERRORS = 16


def scaled_size(width: float, height: float, max_side: int) -> tuple[int, int]:
    """``(width, height)`` shrunk (aspect kept, never enlarged) so the longer side is at most ``max_side``."""
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def duration_note(max_duration: float, reason: str = "") -> str:
    """The note of a video cut at ``max_duration`` seconds: which seconds were used, and why."""
    why = reason or f"the limit is {max_duration:g} s"
    return f"Only seconds 0-{max_duration:g} of the video were analysed (the video is longer): {why}."


class Resampler:
    """Streaming nearest-frame selection on a uniform time grid (no interpolation, no duplicates)."""

    def __init__(self, target_fps: float | None) -> None:
        self.period = 1.0 / target_fps if target_fps else None
        self.k = 0                      # index of the next grid point
        self.prev: tuple[Any, float] | None = None
        self.prev_emitted = False

    def push(self, frame: Any, t: float) -> list[tuple[Any, float]]:
        """Feed a frame at time ``t`` (seconds from the first frame); returns frames to keep."""
        if self.period is None:
            return [(frame, t)]
        out: list[tuple[Any, float]] = []
        emitted_current = False
        while self.k * self.period <= t + 1e-9:
            g = self.k * self.period
            self.k += 1
            if self.prev is not None and (g - self.prev[1]) <= (t - g):
                if not self.prev_emitted:
                    out.append(self.prev)
                    self.prev_emitted = True
            elif not emitted_current:
                out.append((frame, t))
                emitted_current = True
        self.prev, self.prev_emitted = (frame, t), emitted_current
        return out

    def finish(self, t_end: float) -> list[tuple[Any, float]]:
        """Grid points before ``t_end`` (end of the kept span) go to the last frame if it is unused."""
        if self.period is None or self.prev is None or self.prev_emitted:
            return []
        if self.k * self.period < t_end - 1e-9:
            self.prev_emitted = True
            return [self.prev]
        return []


def frame_capacity(limits: DecodeLimits, width: int, height: int) -> int:
    """Most frames of ``width`` x ``height`` one decode can keep under ``limits`` (buffer size)."""
    if limits.ring:
        return limits.ring
    capacity = max(1, min(limits.max_frames, limits.max_output_bytes // (width * height * 3)))
    if limits.target_fps and math.isfinite(limits.max_duration):
        capacity = min(capacity, int(limits.max_duration * limits.target_fps) + 2)
    return capacity


#: Makes the buffer the kept frames are written into: ``allocate((capacity, H, W, 3))`` returns a
#: writable uint8 array of that shape (default: ``np.empty``, committed lazily as frames arrive).
#: The decode worker gives a shared-memory mapping, so frames are decoded straight into it.
Allocate = Callable[[tuple[int, int, int, int]], np.ndarray]


class DecodeLoop:
    """One pass over a video track: :meth:`run` yields each kept frame and returns the :class:`Video`.

    ``timestamps`` (the caller's list) receives the time of each kept frame as it is yielded.
    ``deadline`` is a :func:`time.monotonic` instant (``None``: no wall-time budget). ``allocate``
    makes the frame buffer (:data:`Allocate`; default ``np.empty``).
    """

    def __init__(self, container: Any, stream: Any, limits: DecodeLimits, timestamps: list[float],
                 deadline: float | None = None, allocate: Allocate | None = None) -> None:
        self.container, self.stream, self.limits, self.deadline = container, stream, limits, deadline
        self.allocate = allocate
        self.kept = timestamps                 # times of kept frames (after resampling)
        self.decoded: list[float] = []         # times of every admitted decoded frame
        self.resampler = Resampler(limits.target_fps)
        rate_guess = stream.average_rate or stream.guessed_rate
        self.nominal_step = 1.0 / float(rate_guess) if rate_guess and float(rate_guess) > 0 else 1.0 / 30.0
        sar = stream.sample_aspect_ratio
        self.sar = float(sar) if sar and 0.25 <= float(sar) <= 4.0 else 1.0
        self.frames: np.ndarray | None = None  # lazily committed buffer of kept frames
        self.orientation = Orientation()
        self.first_wh = (0, 0)
        self.scaled_wh = (0, 0)
        self.t0: float | None = None
        self.last_t = -math.inf
        self.limit_note: str | None = None     # set when a limit stops the loop
        self.limit_kind = ""
        self.damage_note: str | None = None
        self.size_changed = False
        self.errors = 0
        self.reformatter: Any = None

    # --- the loop -------------------------------------------------------------------------------------
    def run(self) -> Generator[np.ndarray, None, Video]:
        import av

        ctx = self.stream.codec_context
        ctx.options = {"max_pixels": str(self.limits.max_input_side * self.limits.max_input_side)}
        ctx.thread_type = "AUTO"
        ctx.thread_count = self.limits.decoder_threads(str(ctx.name)) or min(4, os.cpu_count() or 1)
        # One scaler for the whole video, single-threaded: ``frame.reformat`` builds a new SwsContext per
        # frame with automatic threads (a thread pool per frame), ~2x slower alone and much slower while
        # the decoder threads and a consumer (tracking) use the cores.
        self.reformatter = av.video.reformatter.VideoReformatter()
        try:
            yield from self._demux()
        except FdinError:
            raise
        except MemoryError:
            raise MediaLimitError("The video needs more memory than allowed to decode.") from None
        except Exception as exc:  # demuxer errors part-way through: keep what was decoded
            log.debug("demux stopped: %s", type(exc).__name__)
            self.damage_note = "The video file is damaged or incomplete; only its readable beginning was used."
        self._raise_if_unusable()
        gaps = np.diff(np.asarray(self.decoded))
        source_step = float(np.median(gaps)) if gaps.size else self.nominal_step
        t_end = self.decoded[-1] + source_step
        if self.limit_kind == "duration":
            t_end = min(t_end, self.limits.max_duration)
        for chosen, ct in self.resampler.finish(t_end):
            if self._keep(chosen, ct):
                yield self._last_kept()
        return self._video(source_step)

    def _demux(self) -> Generator[np.ndarray, None, None]:
        for packet in self.container.demux(self.stream):
            decoded = self._decode_packet(packet)
            if decoded is None:
                return
            for frame in decoded:
                rel = self._admit(frame)
                if self.limit_note is not None:
                    return
                if rel is None:
                    continue
                for chosen, ct in self.resampler.push(frame, rel):
                    if not self._keep(chosen, ct):
                        self._stop("The video is too large to analyse in full at this resolution; "
                                   "only its beginning was used.")
                        return
                    yield self._last_kept()

    def _decode_packet(self, packet: Any) -> list[Any] | None:
        """The packet's frames; ``[]`` for a skipped corrupt packet, ``None`` when too many were corrupt."""
        import av

        try:
            return packet.decode()
        except MemoryError:
            raise MediaLimitError("The video needs more memory than allowed to decode.") from None
        except (av.error.FFmpegError, ValueError, IndexError, EOFError) as exc:
            self.errors += 1
            log.debug("skipping undecodable packet: %s", type(exc).__name__)
            if self.errors > MAX_DECODE_ERRORS:
                self.damage_note = "The video file is damaged; only its readable beginning was used."
                return None
            return []

    def _admit(self, frame: Any) -> float | None:
        """Check one decoded frame against the limits; its time from the first frame, or None to skip
        it (bad size, or a limit reached: then :attr:`limit_note` is set)."""
        limits = self.limits
        if max(frame.width, frame.height) > limits.max_input_side:
            raise MediaLimitError(f"The video is {frame.width} x {frame.height} pixels; the limit is "
                                  f"{limits.max_input_side} pixels per side. Please upload a smaller video.")
        if frame.width <= 0 or frame.height <= 0:
            return None
        t = float(frame.time) if frame.time is not None and math.isfinite(frame.time) else None
        if t is None:
            t = self.last_t + self.nominal_step if math.isfinite(self.last_t) else 0.0
        if t <= self.last_t:  # broken or duplicated timestamps: keep time strictly increasing
            t = self.last_t + 1e-3
        if self.t0 is None:
            self._start(frame, t)
        assert self.t0 is not None
        rel = t - self.t0
        if rel >= limits.max_duration - 1e-9:
            self._stop(duration_note(limits.max_duration, limits.duration_reason), "duration")
        elif len(self.decoded) >= limits.max_frames:
            self._stop(f"The video has more than {limits.max_frames} frames; "
                       f"only the first {limits.max_frames} were used.")
        elif self.deadline is not None and self.decoded and time.monotonic() > self.deadline:
            self._stop("Reading the video took too long; only its beginning was used.", "deadline")
        else:
            self.decoded.append(rel)
            self.last_t = t
            return rel
        return None

    def _start(self, frame: Any, t: float) -> None:
        """First frame: orientation, output size and the (lazily committed) frame buffer."""
        limits = self.limits
        self.t0 = t
        self.first_wh = (frame.width, frame.height)
        self.orientation = frame_orientation(frame)
        self.scaled_wh = scaled_size(frame.width * self.sar, frame.height, limits.max_side)
        width, height = self.scaled_wh
        capacity = frame_capacity(limits, width, height)
        # Lazily committed: only the pages of frames actually written use memory.
        shape = (capacity, *((height, width) if not self.orientation.transpose else (width, height)), 3)
        self.frames = np.empty(shape, dtype=np.uint8) if self.allocate is None else self.allocate(shape)

    def _stop(self, note: str, kind: str = "") -> None:
        self.limit_note, self.limit_kind = note, kind

    def _keep(self, frame: Any, t: float) -> bool:
        """Convert and store one selected frame; False when the output buffer is full."""
        assert self.frames is not None
        slot = len(self.kept) % len(self.frames) if self.limits.ring else len(self.kept)
        if slot >= len(self.frames):
            return False
        if (frame.width, frame.height) != self.first_wh:
            self.size_changed = True
        width, height = self.scaled_wh
        rgb = self.reformatter.reformat(frame, width=width, height=height, format="rgb24",
                                        interpolation="AREA" if width < frame.width else "BILINEAR",
                                        src_color_range=frame.color_range or None, threads=1).to_ndarray()
        self.frames[slot] = self.orientation.apply(rgb)
        self.kept.append(t)
        return True

    def _last_kept(self) -> np.ndarray:
        assert self.frames is not None
        return self.frames[(len(self.kept) - 1) % len(self.frames)]

    # --- the end --------------------------------------------------------------------------------------
    def _raise_if_unusable(self) -> None:
        if not self.decoded:
            if self.errors or self.damage_note or (self.stream.frames or 0) > 0 or self.container.duration:
                raise TruncatedMediaError("The video file is damaged or incomplete (for example, an upload that "
                                          "was cut short): no picture could be decoded from it.")
            raise EmptyMediaError("The video contains no frames.")
        if self.limit_note is not None and self.limits.on_limit == "error":
            if self.limit_kind == "deadline":
                raise ProcessingTimeoutError("Reading the video took too long and was stopped.")
            if self.limit_kind == "duration":
                raise MediaLimitError(f"The video is longer than {self.limits.max_duration:g} s; "
                                      "please upload a shorter or smaller video.")
            raise MediaLimitError(self.limit_note.split(";")[0] + "; please upload a shorter or smaller video.")

    def _video(self, source_step: float) -> Video:
        assert self.frames is not None
        target_fps = self.limits.target_fps
        timestamps = np.asarray(self.kept, dtype=np.float64)
        out_gaps = np.diff(timestamps)
        resampled = target_fps is not None and target_fps < 1.0 / source_step - 1e-6
        fps = float(target_fps) if resampled and target_fps else (
            1.0 / float(np.median(out_gaps)) if out_gaps.size else 1.0 / source_step)
        declared = int(self.stream.frames or 0)
        n_decoded = len(self.decoded)
        if self.limit_note is None and self.damage_note is None and declared - n_decoded >= max(3, declared // 10):
            # The header is not trusted for anything else, but a big shortfall means the file was cut.
            self.damage_note = (f"The video file seems incomplete: only {n_decoded} of the {declared} frames "
                                "it lists could be read.")
        notes = [x for x in (self.limit_note, self.damage_note) if x]
        if self.size_changed:
            notes.append("The video's resolution changes part-way; all frames were resized to the first size.")
        frames = self.frames[:0 if self.limits.ring else len(self.kept)]
        return Video(
            frames=frames, timestamps=timestamps, fps=fps, source_fps=1.0 / source_step,
            width=int(frames.shape[2]), height=int(frames.shape[1]), rotation=self.orientation.rotation,
            mirrored=self.orientation.mirrored, truncated=bool(self.limit_note or self.damage_note),
            decoded_frames=n_decoded, notes=tuple(notes), codec=str(self.stream.codec_context.name),
            container=str(self.container.format.name), start_time=float(self.t0 or 0.0))

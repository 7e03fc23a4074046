"""The limits every decode obeys (documented in ``docs/media.md``) and :class:`DecodeLimits`, the one
frozen record of a video read's limits that :func:`fdin.media.read_video`,
:func:`fdin.media.open_video_stream` and the decode loop share."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

DEFAULT_MAX_IMAGE_PIXELS = 16_800_000      # ~ 5000 x 3360; Pillow's own bomb threshold is 89.5 MP
DEFAULT_MAX_IMAGE_BYTES = 64 << 20          # 64 MiB on disk
DEFAULT_MAX_VIDEO_BYTES = 1 << 30           # 1 GiB on disk (the app's upload limit is lower)
DEFAULT_MAX_DURATION_S = 60.0               # seconds of decoded video kept whole in memory (ring=0)
DEFAULT_MAX_FRAMES = 1800                   # decoded frames (before resampling) kept whole in memory
DEFAULT_MAX_SIDE = 1920                     # returned frames are downscaled to this longer side
DEFAULT_MAX_INPUT_SIDE = 4096               # inputs with a larger side are refused
DEFAULT_MAX_OUTPUT_BYTES = 2 << 30          # pixels returned by read_video (N * H * W * 3)

#: Limits of a video streamed through a ring (:func:`whole_video_limits`; memory does not grow with
#: them): a file size and a frame count that only stop absurd inputs (a day at 25 frames/s is 2.2
#: million frames).
STREAM_MAX_BYTES = 256 << 30
STREAM_MAX_FRAMES = 50_000_000

#: Pillow plugins allowed to open photos (never EPS: it runs Ghostscript; SVG/PDF are not photos).
#: "PPM" is Pillow's Netpbm reader: PBM, PGM and PPM, plain (P1-P3) and binary (P4-P6).
IMAGE_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "PPM")
#: FFmpeg demuxers allowed to open videos (``container.format.name`` values).
VIDEO_DEMUXERS: frozenset[str] = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi"})


#: Codecs whose decoding costs several times H.264's per pixel (FFmpeg decoder names). On the 2-core
#: machines a 960x540 HEVC frame takes ~3.9 ms to decode on one thread, more than tracking it (~2.3 ms),
#: against ~0.55 ms for a 640x360 H.264 frame (``benchmarks/speed.py``'s real clips).
HEAVY_CODECS = frozenset({"hevc", "vp9", "libdav1d", "av1", "libaom-av1"})


@dataclass(frozen=True)
class DecodeLimits:
    """Where reading a video stops, and how.

    Attributes:
        max_duration: seconds of *decoded* video to read (measured on frame timestamps).
        max_frames: decoded frames to read (counted before resampling).
        max_side: returned frames are downscaled (aspect kept, area filter) to this longer side.
        max_input_side: a stream wider or taller than this (header or any decoded frame) is refused.
        target_fps: if set, keep the frames nearest to a uniform grid at this rate (no
            interpolation; a source frame is never repeated, so slower sources keep all frames).
        on_limit: ``"cut"`` returns the frames read so far with ``truncated=True`` and a note;
            ``"error"`` raises :class:`~fdin.errors.MediaLimitError` (``ProcessingTimeoutError`` for
            the deadline).
        max_bytes: file-size limit, checked before parsing.
        max_output_bytes: limit on returned pixels (``N*H*W*3``); counts as a limit like the others.
        deadline_s: wall-clock budget for decoding in seconds (``None``: no budget).
        threads: decoder threads (0: automatic, one per core up to 4). A server that runs one
            request per core passes 1: two single-threaded decodes share two cores better than two
            decodes of two threads each (``docs/benchmarks/speed.md``).
        heavy_threads: decoder threads for a stream of a codec that is costly to decode
            (:data:`HEAVY_CODECS`: HEVC, VP9, AV1); 0: ``threads`` for every stream.
        ring: 0 keeps every returned frame (``Video.frames`` holds them all, so memory grows with
            the length and ``max_output_bytes`` can cut the video). A number: frames are decoded
            into a ring of that many slots and handed out one at a time
            (:func:`fdin.media.open_video_stream`); a yielded frame stays valid until ``ring - 1``
            more frames were taken, memory is flat whatever the length, ``max_output_bytes`` does
            not apply and the final ``Video.frames`` is empty (its ``timestamps`` are all there).
        duration_reason: why ``max_duration`` applies, for the note of a cut video (e.g. "this demo
            analyses at most 20 s"); empty: "the limit is N s".

    Invalid values raise ``ValueError`` when the record is made.
    """

    max_duration: float = DEFAULT_MAX_DURATION_S
    max_frames: int = DEFAULT_MAX_FRAMES
    max_side: int = DEFAULT_MAX_SIDE
    max_input_side: int = DEFAULT_MAX_INPUT_SIDE
    target_fps: float | None = None
    on_limit: Literal["cut", "error"] = "cut"
    max_bytes: int = DEFAULT_MAX_VIDEO_BYTES
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    deadline_s: float | None = None
    threads: int = 0
    heavy_threads: int = 0
    ring: int = 0
    duration_reason: str = ""

    def __post_init__(self) -> None:
        if self.on_limit not in ("cut", "error"):
            raise ValueError("on_limit must be 'cut' or 'error'")
        if self.max_duration <= 0 or self.max_frames <= 0 or self.max_side <= 0 or self.max_input_side <= 0:
            raise ValueError("limits must be positive")
        if self.ring < 0:
            raise ValueError("ring must be 0 (keep every frame) or a number of slots")
        if not (0 <= self.threads <= 16 and 0 <= self.heavy_threads <= 16):
            raise ValueError("threads must be between 0 (automatic) and 16")
        if self.target_fps is not None and not (self.target_fps > 0 and math.isfinite(self.target_fps)):
            raise ValueError("target_fps must be a positive number")

    def decoder_threads(self, codec: str) -> int:
        """Decoder threads for a stream of ``codec`` (an FFmpeg decoder name; 0: automatic)."""
        return self.heavy_threads if self.heavy_threads and codec in HEAVY_CODECS else self.threads

    @classmethod
    def of(cls, limits: DecodeLimits | None = None, **overrides: Any) -> DecodeLimits:
        """``limits`` (default: the defaults) with some fields replaced; unknown names raise TypeError."""
        return replace(limits or cls(), **overrides)


def whole_video_limits(ring: int, max_duration: float | None = None, duration_reason: str = "",
                       **overrides: Any) -> DecodeLimits:
    """Limits that read a whole video (or its first ``max_duration`` seconds, for ``duration_reason``)
    through a ring of ``ring`` frames: memory is flat whatever the length, so the in-memory defaults
    (:data:`DEFAULT_MAX_DURATION_S`, :data:`DEFAULT_MAX_FRAMES`) do not apply. ``overrides``: other
    :class:`DecodeLimits` fields (``target_fps``, ``threads``). ``fdin analyze`` and ``fdin faces`` on a
    video both read this way."""
    if ring < 1:
        raise ValueError("ring must be a number of slots")
    if max_duration is not None and not (max_duration > 0 and math.isfinite(max_duration)):
        raise ValueError("max_duration must be a positive number of seconds (None: the whole video)")
    return DecodeLimits.of(
        None, ring=ring, max_duration=math.inf if max_duration is None else float(max_duration),
        duration_reason=asked_duration_reason(max_duration, duration_reason),
        max_frames=STREAM_MAX_FRAMES, max_bytes=STREAM_MAX_BYTES, **overrides)


def asked_duration_reason(max_duration: float | None, reason: str = "") -> str:
    """Why a video is cut at ``max_duration``: ``reason`` if given, else that the caller asked for it."""
    return reason or (f"max_duration={max_duration:g} s was asked for" if max_duration is not None else "")

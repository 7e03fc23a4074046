"""Opening videos safely and what comes out of them: the demuxer/protocol whitelists
(:func:`open_container`), the video track and its declared size, display-matrix orientation, the
:class:`Video` and :class:`VideoInfo` records, and :func:`probe_video`."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fdin.errors import MediaLimitError, NoVideoStreamError, TruncatedMediaError, UnsupportedMediaError
from fdin.media.limits import DEFAULT_MAX_INPUT_SIDE, DEFAULT_MAX_VIDEO_BYTES, VIDEO_DEMUXERS
from fdin.media.sniff import SNIFF_BYTES, VIDEO_KINDS, sniff, stat_regular_file, video_kind_message

log = logging.getLogger(__name__)

FORMAT_WHITELIST = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi"

@dataclass(frozen=True, eq=False)
class Video:
    """Decoded, upright, bounded video.

    ``frames``: ``(N, H, W, 3) uint8`` RGB, upright, longer side <= ``max_side``.
    ``timestamps``: ``(N,) float64`` seconds from the first decoded frame (so ``timestamps[0] == 0``),
    taken from each frame's ``pts * time_base``; strictly increasing.
    ``fps``: rate of the returned frames (``target_fps`` when resampled, else 1 / median frame gap).
    ``source_fps``: 1 / median gap of all decoded frames (the clip's real rate; VFR-safe).
    ``width``/``height``: size of the returned frames. ``rotation``: clockwise degrees (0/90/180/270)
    the stored frames were turned to be upright; ``mirrored``: after that turn, they were also
    mirrored left-right (the display matrix of some front cameras).
    ``truncated``: the file was longer than a limit (or damaged part-way) and only its start is
    returned; ``notes`` says why, in plain language. ``decoded_frames``: frames decoded (before
    resampling). ``start_time``: the first frame's original timestamp in seconds.
    """

    frames: np.ndarray
    timestamps: np.ndarray
    fps: float
    source_fps: float
    width: int
    height: int
    rotation: int = 0
    mirrored: bool = False
    truncated: bool = False
    decoded_frames: int = 0
    notes: tuple[str, ...] = ()
    codec: str = ""
    container: str = ""
    start_time: float = 0.0

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def duration(self) -> float:
        """Seconds covered by the returned frames: last timestamp plus one frame interval."""
        if len(self.timestamps) == 0:
            return 0.0
        step = 1.0 / self.fps if self.fps > 0 else 0.0
        return float(self.timestamps[-1] - self.timestamps[0]) + step

    def to_json_dict(self) -> dict[str, Any]:
        """Metadata for logs, the API and the UI (no pixels)."""
        return {
            "frames": len(self), "width": self.width, "height": self.height,
            "fps": round(float(self.fps), 3), "source_fps": round(float(self.source_fps), 3),
            "duration_s": round(self.duration, 3), "rotation": self.rotation, "mirrored": self.mirrored,
            "truncated": self.truncated, "decoded_frames": self.decoded_frames, "notes": list(self.notes),
            "codec": self.codec, "container": self.container, "start_time_s": round(self.start_time, 3),
        }


@dataclass(frozen=True)
class VideoInfo:
    """What a video's header *claims* (untrusted; :func:`read_video` re-checks everything)."""

    container: str
    codec: str
    width: int
    height: int
    rotation: int
    mirrored: bool
    declared_duration: float | None
    declared_frames: int | None
    declared_fps: float | None
    has_audio: bool
    size_bytes: int = 0

    def to_json_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Orientation:
    """Numpy ops that make a stored frame upright, derived from an FFmpeg display matrix."""

    transpose: bool = False
    flip_ud: bool = False
    flip_lr: bool = False
    rotation: int = 0
    mirrored: bool = False

    @classmethod
    def from_matrix(cls, matrix: Sequence[int] | None) -> Orientation:
        """``matrix``: the 9 int32 of ``AV_FRAME_DATA_DISPLAYMATRIX`` (16.16 fixed point).

        Same decisions as the ``ffmpeg`` CLI's autorotate: the 2x2 part is snapped to the nearest
        right-angle rotation/mirror (arbitrary angles are not supported and are snapped too).
        """
        if matrix is None or len(matrix) < 5:
            return cls()
        a, b, c, d = matrix[0], matrix[1], matrix[3], matrix[4]
        if abs(b) + abs(c) > abs(a) + abs(d):
            ori = cls(transpose=True, flip_ud=b < 0, flip_lr=c < 0)
        else:
            ori = cls(flip_lr=a < 0, flip_ud=d < 0)
        probe = np.arange(6).reshape(2, 3)
        done = ori.apply(probe)
        for mirrored in (False, True):  # FFmpeg's order: rotate clockwise, then mirror left-right
            for k in range(4):
                cand = np.rot90(probe, -k)
                cand = cand[:, ::-1] if mirrored else cand
                if cand.shape == done.shape and np.array_equal(cand, done):
                    ori.rotation, ori.mirrored = 90 * k, mirrored
                    return ori
        return ori  # unreachable: the 8 cases above cover every snapped matrix

    @property
    def identity(self) -> bool:
        return not (self.transpose or self.flip_ud or self.flip_lr)

    def apply(self, arr: np.ndarray) -> np.ndarray:
        if self.transpose:
            arr = arr.swapaxes(0, 1)
        if self.flip_ud:
            arr = arr[::-1]
        if self.flip_lr:
            arr = arr[:, ::-1]
        return arr


def frame_orientation(frame: Any) -> Orientation:
    import struct

    for side in frame.side_data:
        if "DISPLAYMATRIX" in str(side.type):
            raw = bytes(side)
            if len(raw) >= 36:
                return Orientation.from_matrix(struct.unpack("<9i", raw[:36]))
    return Orientation()


def open_container(path: Path, what: str = "video") -> Any:
    """Open ``path`` with the demuxer and protocol whitelists; map every failure to a MediaError."""
    import av

    with path.open("rb") as fh:
        head = fh.read(SNIFF_BYTES)
    kind = sniff(head)
    if kind not in VIDEO_KINDS:
        # Refuse before FFmpeg probes it: playlists, concat lists, pictures, documents, unknown.
        raise UnsupportedMediaError(video_kind_message(kind))
    options = {
        "format_whitelist": FORMAT_WHITELIST,
        "protocol_whitelist": "file",
        "max_pixels": str(DEFAULT_MAX_INPUT_SIDE * DEFAULT_MAX_INPUT_SIDE),
    }
    try:
        # "file:" keeps FFmpeg from reading a protocol out of the name (e.g. "concat:a|b").
        container = av.open("file:" + str(path.resolve()), mode="r", options=options)
    except MemoryError:
        raise MediaLimitError(f"The {what} needs more memory than allowed to open.") from None
    except av.error.DecoderNotFoundError:  # seen for cut MP4s whose codec fields are garbage
        raise TruncatedMediaError(f"The {what} file is damaged, or uses a compression format (codec) "
                                  "that is not supported.") from None
    except av.error.ArgumentError:  # EINVAL: refused by the demuxer whitelist
        raise UnsupportedMediaError(video_kind_message(None)) from None
    except Exception as exc:
        log.debug("video open failed: %s", type(exc).__name__)
        raise TruncatedMediaError(
            f"The {what} file is damaged or incomplete (for example, an upload that was cut short) "
            "and could not be opened.") from None
    if container.format.name not in VIDEO_DEMUXERS:  # defence in depth
        container.close()
        raise UnsupportedMediaError(video_kind_message(None))
    return container


def pick_video_stream(container: Any) -> Any:
    import av

    streams = [s for s in container.streams.video
               if not (int(s.disposition) & int(av.stream.Disposition.attached_pic))]
    if not streams:
        if container.streams.audio:
            raise NoVideoStreamError("This file has sound but no picture (no video track).")
        if not len(container.streams):  # a container with no stream at all: its index was cut off
            raise TruncatedMediaError("The video file is damaged or incomplete (for example, an upload "
                                      "that was cut short) and could not be opened.")
        raise NoVideoStreamError("This file has no video track.")
    stream = streams[0]
    if stream.codec_context is None:
        raise UnsupportedMediaError("The video's compression format (codec) is not supported.")
    return stream


def declared_size(stream: Any, max_input_side: int) -> tuple[int, int]:
    width, height = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
    if max(width, height) > max_input_side:
        raise MediaLimitError(f"The video is {width} x {height} pixels; the limit is {max_input_side} "
                              "pixels per side. Please upload a smaller video.")
    return width, height


def probe_video(path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_VIDEO_BYTES) -> VideoInfo:
    """Cheap header look (plus one decoded frame for the display rotation). Values are untrusted."""
    path = Path(path)
    size = stat_regular_file(path, max_bytes, "video")
    container = open_container(path)
    try:
        stream = pick_video_stream(container)
        width, height = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
        orientation = Orientation()
        try:
            for frame in container.decode(stream):
                orientation = frame_orientation(frame)
                break
        except Exception:  # the header is what we report; read_video decides about damage
            pass
        rate = stream.average_rate or stream.guessed_rate
        duration = container.duration / 1e6 if container.duration else None
        return VideoInfo(
            container=container.format.name, codec=stream.codec_context.name, width=width, height=height,
            rotation=orientation.rotation, mirrored=orientation.mirrored, declared_duration=duration,
            declared_frames=int(stream.frames) or None, declared_fps=float(rate) if rate else None,
            has_audio=bool(container.streams.audio), size_bytes=size)
    finally:
        container.close()

"""The only place that decodes user media: photos with Pillow, videos with PyAV (FFmpeg).

Everything here treats the input as hostile (see ``docs/media.md`` and reliability R-11..R-20):

* **Type from bytes, not names.** Images open with Pillow restricted to JPEG, PNG, WebP, GIF, BMP and
  TIFF (never EPS, SVG or PDF). Videos open with an FFmpeg demuxer whitelist (MP4/MOV family,
  Matroska/WebM, AVI) and only the ``file`` protocol; playlists (HLS ``.m3u8``), concat lists, image
  pipes and everything else are refused before FFmpeg sees them.
* **Headers are not trusted.** Image dimensions are checked from the header *before* decoding
  (16.8 MP by default); video resolution is checked from the header and again on every decoded frame
  (4096 px per side). Duration, timing and frame counts come from decoded ``pts * time_base``, never
  from ``container.duration``, ``stream.frames`` or a nominal frame rate, so variable-frame-rate clips
  and browser WebM files without a duration work.
* **Limits stop decoding.** Reading stops (:class:`DecodeLimits`) at the first of ``max_duration`` seconds of decoded video,
  ``max_frames`` decoded frames, ``max_output_bytes`` of returned pixels and ``deadline_s`` of wall
  time. With ``on_limit="cut"`` (default) the frames read so far are returned with
  ``Video.truncated=True`` and a plain-language note; with ``on_limit="error"`` a
  :class:`~fdin.errors.MediaLimitError` (or :class:`~fdin.errors.ProcessingTimeoutError`) is raised.
* **Upright, RGB, bounded.** Frames are ``uint8`` RGB, rotated/mirrored according to the container's
  display matrix (phone videos) and downscaled (aspect kept) so the longer side is at most
  ``max_side``. Photos get their EXIF orientation applied, alpha composited on white, 16-bit data
  scaled (not clipped) to 8 bits, and only their first frame is used.
* **Fail closed.** Every open/decode exception becomes a :class:`~fdin.errors.MediaError` subclass
  whose message is a plain sentence without the file name (filenames are user-controlled).

Native crashes cannot be caught in-process; :mod:`fdin.isolation` runs these functions in a child
process with memory and time limits. ``av`` and ``PIL`` are imported lazily, so importing this package
is cheap.

Where things live: :mod:`~fdin.media.sniff` (types from bytes), :mod:`~fdin.media.limits` (defaults,
:class:`DecodeLimits`), :mod:`~fdin.media.image` (photos), :mod:`~fdin.media.container` (opening
videos, :class:`Video`, :func:`probe_video`), :mod:`~fdin.media.decode` (the decode loop),
:mod:`~fdin.media.video` (:func:`read_video`, :func:`open_video_stream`; ``ring`` limits stream a video
of any length through a fixed buffer), :mod:`~fdin.media.write` (:func:`write_video`).
"""

from __future__ import annotations

from fdin.media.container import Video, VideoInfo, probe_video
from fdin.media.image import ensure_rgb_uint8, load_image
from fdin.media.limits import (
    DEFAULT_MAX_DURATION_S,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_IMAGE_BYTES,
    DEFAULT_MAX_IMAGE_PIXELS,
    DEFAULT_MAX_INPUT_SIDE,
    DEFAULT_MAX_OUTPUT_BYTES,
    DEFAULT_MAX_SIDE,
    DEFAULT_MAX_VIDEO_BYTES,
    IMAGE_FORMATS,
    VIDEO_DEMUXERS,
    DecodeLimits,
    whole_video_limits,
)
from fdin.media.video import VideoStream, first_seconds, open_video_stream, read_video
from fdin.media.write import write_video

__all__ = [
    "DEFAULT_MAX_DURATION_S",
    "DEFAULT_MAX_FRAMES",
    "DEFAULT_MAX_IMAGE_BYTES",
    "DEFAULT_MAX_IMAGE_PIXELS",
    "DEFAULT_MAX_INPUT_SIDE",
    "DEFAULT_MAX_OUTPUT_BYTES",
    "DEFAULT_MAX_SIDE",
    "DEFAULT_MAX_VIDEO_BYTES",
    "IMAGE_FORMATS",
    "VIDEO_DEMUXERS",
    "DecodeLimits",
    "Video",
    "VideoInfo",
    "VideoStream",
    "ensure_rgb_uint8",
    "first_seconds",
    "load_image",
    "open_video_stream",
    "probe_video",
    "read_video",
    "whole_video_limits",
    "write_video",
]

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
* **Limits stop decoding.** Reading stops at the first of ``max_duration`` seconds of decoded video,
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
process with memory and time limits. ``av`` and ``PIL`` are imported lazily, so importing this module
is cheap.
"""

from __future__ import annotations

import codecs
import io
import logging
import math
import os
import stat
import time
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

import numpy as np

from fdin.errors import (
    EmptyMediaError,
    FdinError,
    MediaError,
    MediaLimitError,
    NoVideoStreamError,
    ProcessingTimeoutError,
    TruncatedMediaError,
    UnsupportedMediaError,
)

if TYPE_CHECKING:
    from collections.abc import Generator, Sequence

log = logging.getLogger(__name__)

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
    "Video",
    "VideoInfo",
    "VideoStream",
    "ensure_rgb_uint8",
    "load_image",
    "open_video_stream",
    "probe_video",
    "read_video",
    "write_video",
]

# --- limits (documented in docs/media.md) --------------------------------------------------------------
DEFAULT_MAX_IMAGE_PIXELS = 16_800_000      # ~ 5000 x 3360; Pillow's own bomb threshold is 89.5 MP
DEFAULT_MAX_IMAGE_BYTES = 64 << 20          # 64 MiB on disk
DEFAULT_MAX_VIDEO_BYTES = 1 << 30           # 1 GiB on disk (the app's upload limit is lower)
DEFAULT_MAX_DURATION_S = 60.0               # seconds of decoded video
DEFAULT_MAX_FRAMES = 1800                   # decoded frames (before resampling)
DEFAULT_MAX_SIDE = 1920                     # returned frames are downscaled to this longer side
DEFAULT_MAX_INPUT_SIDE = 4096               # inputs with a larger side are refused
DEFAULT_MAX_OUTPUT_BYTES = 2 << 30          # pixels returned by read_video (N * H * W * 3)

#: Pillow plugins allowed to open photos (never EPS: it runs Ghostscript; SVG/PDF are not photos).
IMAGE_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
#: FFmpeg demuxers allowed to open videos (``container.format.name`` values).
VIDEO_DEMUXERS: frozenset[str] = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi"})
_FORMAT_WHITELIST = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi"
_MAX_DECODE_ERRORS = 16                     # corrupt packets skipped before giving up on the rest

_ACCEPTED_VIDEO = "MP4, MOV, WebM or AVI"
_ACCEPTED_IMAGE = "JPEG, PNG or WebP"


# --- sniffing ------------------------------------------------------------------------------------------
_SNIFF_BYTES = 512
_IMAGE_KINDS = frozenset({"png", "jpeg", "gif", "webp", "bmp", "tiff", "heif"})
_VIDEO_KINDS = frozenset({"mp4", "matroska", "avi"})
_MP4_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot", b"uuid"})
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1",
                          b"avif", b"avis"})


def _sniff(head: bytes) -> str | None:
    """Name the file type from its first bytes (:data:`_SNIFF_BYTES`); ``None`` if unknown."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] == b"RIFF" and head[8:11] == b"AVI":
        return "avi"
    if head[:2] == b"BM" and len(head) >= 26:
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if head[4:8] in _MP4_BOXES:
        if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
            return "heif"
        return "mp4"
    if head[:4] == b"\xc5\xd0\xd3\xc6":
        return "eps"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<?xml", b"<!doctype svg")) and b"<svg" in text:
        return "svg"
    for prefix, kind in ((b"#extm3u", "playlist"), (b"ffconcat", "concat"), (b"%!ps", "eps"),
                         (b"%pdf", "pdf"), (b"<svg", "svg"), (b"<?xml", "xml"), (b"<!doctype", "html"),
                         (b"<html", "html")):
        if text.startswith(prefix):
            return kind
    if head and all(b in b"\t\n\r" or 32 <= b < 127 or b >= 128 for b in head):
        try:  # incremental: a multi-byte character cut at the end of ``head`` is still text
            codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        except UnicodeDecodeError:
            return None
        return "text"
    return None


_NOT_A_VIDEO = {
    "playlist": "This file is a playlist (.m3u8), not a video; upload the video file itself.",
    "concat": "This file is a list of other files, not a video; upload the video file itself.",
    "svg": "This file is a drawing (SVG), not a video; upload an {v} video.",
    "eps": "This file is a PostScript document, not a video; upload an {v} video.",
    "pdf": "This file is a PDF document, not a video; upload an {v} video.",
    "xml": "This file is a text document, not a video; upload an {v} video.",
    "html": "This file is a web page, not a video; upload an {v} video.",
    "text": "This file is a text document, not a video; upload an {v} video.",
}
_NOT_AN_IMAGE = {
    "heif": "HEIC/HEIF/AVIF photos are not supported; convert the photo to JPEG or PNG first.",
    "svg": "Vector drawings (SVG) are not supported; upload a {i} photo.",
    "eps": "PostScript (EPS) files are not supported; upload a {i} photo.",
    "pdf": "PDF documents are not supported; upload a {i} photo.",
    "xml": "This file is a text document, not a photo; upload a {i} photo.",
    "html": "This file is a web page, not a photo; upload a {i} photo.",
    "text": "This file is a text document, not a photo; upload a {i} photo.",
    "playlist": "This file is a playlist, not a photo; upload a {i} photo.",
    "concat": "This file is a list of other files, not a photo; upload a {i} photo.",
}


def _video_kind_message(kind: str | None) -> str:
    if kind in _IMAGE_KINDS:
        return ("This file is a picture, not a video; upload an "
                f"{_ACCEPTED_VIDEO} video, or use the photo input for pictures.")
    if kind in _NOT_A_VIDEO:
        return _NOT_A_VIDEO[kind].format(v=_ACCEPTED_VIDEO)
    return f"This file type is not supported; upload an {_ACCEPTED_VIDEO} video."


def _image_kind_message(kind: str | None) -> str:
    if kind in _VIDEO_KINDS:
        return f"This file is a video, not a photo; upload a {_ACCEPTED_IMAGE} photo."
    if kind in _NOT_AN_IMAGE:
        return _NOT_AN_IMAGE[kind].format(i=_ACCEPTED_IMAGE)
    return f"This file type is not supported; upload a {_ACCEPTED_IMAGE} photo."


def _stat_regular_file(path: Path, max_bytes: int, what: str) -> int:
    """Size in bytes of a regular file, or a friendly MediaError (missing, not a file, empty, too big)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise MediaError(f"The {what} file could not be found.") from None
    except OSError:
        raise MediaError(f"The {what} file could not be opened.") from None
    if not stat.S_ISREG(st.st_mode):  # directories, FIFOs (would block), devices
        raise UnsupportedMediaError(f"This is not a regular {what} file.")
    if st.st_size == 0:
        raise EmptyMediaError(f"The {what} file is empty (0 bytes).")
    if st.st_size > max_bytes:
        raise MediaLimitError(f"The {what} file is {_mib(st.st_size)}; the limit is {_mib(max_bytes)}.")
    return st.st_size


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.0f} MB" if n >= (1 << 20) else f"{n} bytes"


# --- images --------------------------------------------------------------------------------------------
def load_image(
    source: str | os.PathLike[str] | bytes,
    *,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
) -> np.ndarray:
    """Decode a photo into an upright ``(H, W, 3) uint8`` RGB array.

    ``source`` is a file path or the file's bytes. The type is decided from the bytes (JPEG, PNG,
    WebP, GIF, BMP, TIFF; see :data:`IMAGE_FORMATS`); the declared size is checked against
    ``max_pixels`` before any pixel is decoded. EXIF orientation is applied; RGBA/LA/transparent
    palettes are composited on white; 16-bit and float data are scaled to 8 bits; CMYK, palette,
    1-bit and grey become RGB; animated images give their first frame. Tiny images (1x1) are returned
    as they are: callers decide what is too small.

    Raises a :class:`~fdin.errors.MediaError` subclass with a plain-language message.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise EmptyMediaError("The image file is empty (0 bytes).")
        if len(data) > max_bytes:
            raise MediaLimitError(f"The image file is {_mib(len(data))}; the limit is {_mib(max_bytes)}.")
        return _decode_image(io.BytesIO(data), data[:_SNIFF_BYTES], max_pixels)
    path = Path(source)
    _stat_regular_file(path, max_bytes, "image")
    try:
        fh = path.open("rb")
    except OSError:
        raise MediaError("The image file could not be opened.") from None
    with fh:
        head = fh.read(_SNIFF_BYTES)
        fh.seek(0)
        return _decode_image(fh, head, max_pixels)


def _decode_image(fh: BinaryIO, head: bytes, max_pixels: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    kind = _sniff(head)
    if kind not in _IMAGE_KINDS or kind == "heif":
        raise UnsupportedMediaError(_image_kind_message(kind))
    try:
        # catch_warnings is process-global state (not thread-safe before Python 3.14); the only
        # filters added here are stricter, and isolated decoding runs one image per process anyway.
        with warnings.catch_warnings():
            # Pillow warns (and only raises at 2x) above Image.MAX_IMAGE_PIXELS: make it an error.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")  # e.g. truncated TIFF
            img = Image.open(fh, formats=list(IMAGE_FORMATS))
            width, height = img.size
            if width <= 0 or height <= 0:
                raise TruncatedMediaError("The image file is damaged: it declares no pixels.")
            if width * height > max_pixels:
                raise MediaLimitError(
                    f"The image is {width} x {height} pixels ({width * height / 1e6:.3g} MP); "
                    f"the limit is {max_pixels / 1e6:.3g} MP. Please upload a smaller photo.")
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
            img.load()
            img = _exif_upright(img)
            rgb = _to_rgb(img)
            array = np.asarray(rgb, dtype=np.uint8)
    except FdinError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise MediaLimitError("The image has too many pixels to process safely; "
                              "please upload a smaller photo.") from None
    except UnidentifiedImageError:
        raise UnsupportedMediaError(_image_kind_message(kind if kind not in _IMAGE_KINDS else None)) from None
    except MemoryError:
        raise MediaLimitError("The image needs more memory than allowed; please upload a smaller photo.") from None
    except Exception as exc:  # Pillow's C and Python decoders raise many types on hostile input
        log.debug("image decode failed: %s", type(exc).__name__)
        raise TruncatedMediaError("The image file is damaged or incomplete and could not be read.") from None
    if array.ndim != 3 or array.shape[2] != 3:  # defensive: _to_rgb always returns RGB
        raise TruncatedMediaError("The image file is damaged or incomplete and could not be read.")
    return np.ascontiguousarray(array)


def _exif_upright(img: Any) -> Any:
    """Apply the EXIF orientation tag; a malformed EXIF block is ignored (the pixels are still fine)."""
    from PIL import ImageOps

    try:
        upright = ImageOps.exif_transpose(img)
    except Exception as exc:  # hostile EXIF: keep the stored orientation rather than fail
        log.debug("ignoring unreadable EXIF orientation: %s", type(exc).__name__)
        return img
    return img if upright is None else upright


def _to_rgb(img: Any) -> Any:
    """Any Pillow mode to RGB: alpha on white, 16-bit/float scaled (not clipped) to 8 bits."""
    from PIL import Image

    mode = img.mode
    if mode == "RGB":
        return img
    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        background.alpha_composite(rgba)
        return background.convert("RGB")
    if mode.startswith("I;16") or mode in ("I", "F"):
        grey = _scale_to_uint8(np.asarray(img), mode)
        return Image.fromarray(grey).convert("RGB")  # 2-D uint8 -> mode L
    return img.convert("RGB")  # 1, L, P, CMYK, YCbCr, LAB, HSV, RGBX


def _scale_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """Map one high-depth channel to uint8: 16-bit by /257, float [0,1] by *255, else min-max."""
    if mode.startswith("I;16"):
        return ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    data = values.astype(np.float64)
    data[~np.isfinite(data)] = 0.0
    lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
    if mode == "I" and lo >= 0 and hi <= 255:
        scaled = data
    elif mode == "I" and lo >= 0 and hi <= 65535:
        scaled = data / 257.0
    elif mode == "F" and lo >= 0 and hi <= 1.0:
        scaled = data * 255.0
    elif hi > lo:
        scaled = (data - lo) * (255.0 / (hi - lo))
    else:
        scaled = np.zeros_like(data)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def ensure_rgb_uint8(array: np.ndarray) -> np.ndarray:
    """Normalise an in-memory image array to ``(H, W, 3) uint8`` RGB.

    Accepts ``(H, W)`` grey, ``(H, W, 1)``, ``(H, W, 3)`` RGB and ``(H, W, 4)`` RGBA (composited on
    white); ``uint16`` is scaled by 1/257, floats in [0, 1] by 255 (other floats are min-max scaled),
    bool to 0/255. Raises ``ValueError`` for other shapes (a programming error, not a user error).
    """
    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"expected an (H, W[, 1|3|4]) image array, got shape {np.shape(array)}")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype == np.uint16:
        arr = _scale_to_uint8(arr, "I;16")
    elif np.issubdtype(arr.dtype, np.floating):
        arr = _scale_to_uint8(arr, "F")
    elif arr.dtype != np.uint8:
        arr = _scale_to_uint8(arr, "I")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 4:
        alpha = arr[:, :, 3:4].astype(np.uint16)
        arr = ((arr[:, :, :3].astype(np.uint16) * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)
    return np.ascontiguousarray(arr, dtype=np.uint8)


# --- video ---------------------------------------------------------------------------------------------
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
class _Orientation:
    """Numpy ops that make a stored frame upright, derived from an FFmpeg display matrix."""

    transpose: bool = False
    flip_ud: bool = False
    flip_lr: bool = False
    rotation: int = 0
    mirrored: bool = False

    @classmethod
    def from_matrix(cls, matrix: Sequence[int] | None) -> _Orientation:
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


def _frame_orientation(frame: Any) -> _Orientation:
    import struct

    for side in frame.side_data:
        if "DISPLAYMATRIX" in str(side.type):
            raw = bytes(side)
            if len(raw) >= 36:
                return _Orientation.from_matrix(struct.unpack("<9i", raw[:36]))
    return _Orientation()


def _open_container(path: Path, what: str = "video") -> Any:
    """Open ``path`` with the demuxer and protocol whitelists; map every failure to a MediaError."""
    import av

    with path.open("rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    kind = _sniff(head)
    if kind not in _VIDEO_KINDS:
        # Refuse before FFmpeg probes it: playlists, concat lists, pictures, documents, unknown.
        raise UnsupportedMediaError(_video_kind_message(kind))
    options = {
        "format_whitelist": _FORMAT_WHITELIST,
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
        raise UnsupportedMediaError(_video_kind_message(None)) from None
    except Exception as exc:
        log.debug("video open failed: %s", type(exc).__name__)
        raise TruncatedMediaError(
            f"The {what} file is damaged or incomplete (for example, an upload that was cut short) "
            "and could not be opened.") from None
    if container.format.name not in VIDEO_DEMUXERS:  # defence in depth
        container.close()
        raise UnsupportedMediaError(_video_kind_message(None))
    return container


def _pick_video_stream(container: Any) -> Any:
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


def _declared_size(stream: Any, max_input_side: int) -> tuple[int, int]:
    width, height = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
    if max(width, height) > max_input_side:
        raise MediaLimitError(f"The video is {width} x {height} pixels; the limit is {max_input_side} "
                              "pixels per side. Please upload a smaller video.")
    return width, height


def probe_video(path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_VIDEO_BYTES) -> VideoInfo:
    """Cheap header look (plus one decoded frame for the display rotation). Values are untrusted."""
    path = Path(path)
    size = _stat_regular_file(path, max_bytes, "video")
    container = _open_container(path)
    try:
        stream = _pick_video_stream(container)
        width, height = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
        orientation = _Orientation()
        try:
            for frame in container.decode(stream):
                orientation = _frame_orientation(frame)
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


class _Resampler:
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


def read_video(
    path: str | os.PathLike[str],
    *,
    max_duration: float = DEFAULT_MAX_DURATION_S,
    max_frames: int = DEFAULT_MAX_FRAMES,
    max_side: int = DEFAULT_MAX_SIDE,
    max_input_side: int = DEFAULT_MAX_INPUT_SIDE,
    target_fps: float | None = None,
    on_limit: Literal["cut", "error"] = "cut",
    max_bytes: int = DEFAULT_MAX_VIDEO_BYTES,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    deadline_s: float | None = None,
) -> Video:
    """Decode a video file into upright RGB frames with real timestamps.

    Args:
        path: a local MP4/MOV, WebM/MKV or AVI file (the type is decided from its bytes).
        max_duration: seconds of *decoded* video to read (measured on frame timestamps).
        max_frames: decoded frames to read (counted before resampling).
        max_side: returned frames are downscaled (aspect kept, area filter) to this longer side.
        max_input_side: a stream wider or taller than this (header or any decoded frame) is refused.
        target_fps: if set, keep the frames nearest to a uniform grid at this rate (no
            interpolation; a source frame is never repeated, so slower sources keep all frames).
        on_limit: ``"cut"`` returns the frames read so far with ``truncated=True`` and a note;
            ``"error"`` raises :class:`MediaLimitError` (``ProcessingTimeoutError`` for the deadline).
        max_bytes: file-size limit, checked before parsing.
        max_output_bytes: limit on returned pixels (``N*H*W*3``); counts as a limit like the others.
        deadline_s: wall-clock budget for decoding in seconds (``None``: no budget).

    Raises:
        EmptyMediaError, TruncatedMediaError, UnsupportedMediaError, NoVideoStreamError,
        MediaLimitError (all :class:`~fdin.errors.MediaError`), ProcessingTimeoutError.
    """
    with open_video_stream(path, max_duration=max_duration, max_frames=max_frames, max_side=max_side,
                           max_input_side=max_input_side, target_fps=target_fps, on_limit=on_limit,
                           max_bytes=max_bytes, max_output_bytes=max_output_bytes, deadline_s=deadline_s) as stream:
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

    def __init__(self, container: Any, stream: Any, **kwargs: Any) -> None:
        self._container = container
        self.timestamps: list[float] = []
        self.video: Video | None = None
        rate = stream.average_rate or stream.guessed_rate
        target = kwargs.get("target_fps")
        self.nominal_fps = float(rate) if rate and float(rate) > 0 else 30.0
        if target:
            self.nominal_fps = min(self.nominal_fps, float(target))
        declared = container.duration / 1e6 if container.duration else None
        self._expected = (round(min(declared, kwargs["max_duration"]) * self.nominal_fps)
                          if declared and math.isfinite(declared) and declared > 0 else 0)
        self._gen = _decode_video(container, stream, self.timestamps, **kwargs)
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


def open_video_stream(
    path: str | os.PathLike[str],
    *,
    max_duration: float = DEFAULT_MAX_DURATION_S,
    max_frames: int = DEFAULT_MAX_FRAMES,
    max_side: int = DEFAULT_MAX_SIDE,
    max_input_side: int = DEFAULT_MAX_INPUT_SIDE,
    target_fps: float | None = None,
    on_limit: Literal["cut", "error"] = "cut",
    max_bytes: int = DEFAULT_MAX_VIDEO_BYTES,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    deadline_s: float | None = None,
) -> VideoStream:
    """Open a video for streaming decode (see :class:`VideoStream`); arguments as :func:`read_video`.

    Raises the up-front errors of :func:`read_video` (bad arguments, size, type, no video track,
    declared size) here; decode-time errors are raised while iterating.
    """
    if on_limit not in ("cut", "error"):
        raise ValueError("on_limit must be 'cut' or 'error'")
    if max_duration <= 0 or max_frames <= 0 or max_side <= 0 or max_input_side <= 0:
        raise ValueError("limits must be positive")
    if target_fps is not None and not (target_fps > 0 and math.isfinite(target_fps)):
        raise ValueError("target_fps must be a positive number")
    started = time.monotonic()
    path = Path(path)
    _stat_regular_file(path, max_bytes, "video")
    container = _open_container(path)
    try:
        stream = _pick_video_stream(container)
        _declared_size(stream, max_input_side)
        return VideoStream(container, stream, max_duration=max_duration, max_frames=max_frames,
                           max_side=max_side, max_input_side=max_input_side, target_fps=target_fps,
                           on_limit=on_limit, max_output_bytes=max_output_bytes,
                           deadline=None if deadline_s is None else started + deadline_s)
    except BaseException:
        container.close()
        raise


def _decode_video(container: Any, stream: Any, times_out: list[float], *, max_duration: float,
                  max_frames: int, max_side: int, max_input_side: int, target_fps: float | None, on_limit: str,
                  max_output_bytes: int, deadline: float | None) -> Generator[np.ndarray, None, Video]:
    """Generator behind :class:`VideoStream`: yields each kept frame, returns the :class:`Video`."""
    import av

    ctx = stream.codec_context
    ctx.options = {"max_pixels": str(max_input_side * max_input_side)}
    ctx.thread_type = "AUTO"
    ctx.thread_count = min(4, os.cpu_count() or 1)
    rate_guess = stream.average_rate or stream.guessed_rate
    nominal_step = 1.0 / float(rate_guess) if rate_guess and float(rate_guess) > 0 else 1.0 / 30.0
    sar = stream.sample_aspect_ratio
    sar_f = float(sar) if sar and 0.25 <= float(sar) <= 4.0 else 1.0

    resampler = _Resampler(target_fps)
    frames: np.ndarray | None = None
    times_all: list[float] = []
    orientation = _Orientation()
    scaled_wh: tuple[int, int] = (0, 0)
    capacity = 0
    t0: float | None = None
    last_t = -math.inf
    limit_note: str | None = None
    limit_kind = ""
    damage_note: str | None = None
    size_changed = False
    errors = 0

    first_wh = (0, 0)
    # One scaler for the whole video, single-threaded: ``frame.reformat`` builds a new SwsContext per
    # frame with automatic threads (a thread pool per frame), ~2x slower alone and much slower while
    # the decoder threads and a consumer (tracking) use the cores.
    reformatter = av.video.reformatter.VideoReformatter()

    def keep(frame: Any, t: float) -> bool:
        """Convert and store one selected frame; False when the output budget is full."""
        nonlocal size_changed
        if len(times_out) >= capacity:
            return False
        if (frame.width, frame.height) != first_wh:
            size_changed = True
        rgb = reformatter.reformat(frame, width=scaled_wh[0], height=scaled_wh[1], format="rgb24",
                                   interpolation="AREA" if scaled_wh[0] < frame.width else "BILINEAR",
                                   src_color_range=frame.color_range or None, threads=1).to_ndarray()
        assert frames is not None
        frames[len(times_out)] = orientation.apply(rgb)
        times_out.append(t)
        return True

    stop = False
    try:
        for packet in container.demux(stream):
            try:
                decoded = packet.decode()
            except MemoryError:
                raise MediaLimitError("The video needs more memory than allowed to decode.") from None
            except (av.error.FFmpegError, ValueError, IndexError, EOFError) as exc:
                errors += 1
                log.debug("skipping undecodable packet: %s", type(exc).__name__)
                if errors > _MAX_DECODE_ERRORS:
                    damage_note = "The video file is damaged; only its readable beginning was used."
                    break
                continue
            for frame in decoded:
                if max(frame.width, frame.height) > max_input_side:
                    raise MediaLimitError(f"The video is {frame.width} x {frame.height} pixels; the limit is "
                                          f"{max_input_side} pixels per side. Please upload a smaller video.")
                if frame.width <= 0 or frame.height <= 0:
                    continue
                t = float(frame.time) if frame.time is not None and math.isfinite(frame.time) else None
                if t is None:
                    t = last_t + nominal_step if math.isfinite(last_t) else 0.0
                if t <= last_t:  # broken or duplicated timestamps: keep time strictly increasing
                    t = last_t + 1e-3
                if t0 is None:
                    t0 = t
                    first_wh = (frame.width, frame.height)
                    orientation = _frame_orientation(frame)
                    scaled_wh = _scaled_size(frame.width * sar_f, frame.height, max_side)
                    frame_bytes = scaled_wh[0] * scaled_wh[1] * 3
                    capacity = max(1, min(max_frames, max_output_bytes // frame_bytes))
                    if target_fps:
                        capacity = min(capacity, int(max_duration * target_fps) + 2)
                    # Lazily committed: only the pages of frames actually written use memory.
                    shape = (capacity, *((scaled_wh[1], scaled_wh[0]) if not orientation.transpose
                                          else (scaled_wh[0], scaled_wh[1])), 3)
                    frames = np.empty(shape, dtype=np.uint8)
                rel = t - t0
                if rel >= max_duration - 1e-9:
                    limit_note = (f"The video is longer than {max_duration:g} s; "
                                  f"only the first {max_duration:g} s were used.")
                    limit_kind = "duration"
                    stop = True
                    break
                if len(times_all) >= max_frames:
                    limit_note = (f"The video has more than {max_frames} frames; "
                                  f"only the first {max_frames} were used.")
                    stop = True
                    break
                if deadline is not None and times_all and time.monotonic() > deadline:
                    limit_note = "Reading the video took too long; only its beginning was used."
                    limit_kind = "deadline"
                    stop = True
                    break
                times_all.append(rel)
                last_t = t
                for chosen, ct in resampler.push(frame, rel):
                    if not keep(chosen, ct):
                        limit_note = ("The video is too large to analyse in full at this resolution; "
                                      "only its beginning was used.")
                        stop = True
                        break
                    assert frames is not None
                    yield frames[len(times_out) - 1]
                if stop:
                    break
            if stop:
                break
    except FdinError:
        raise
    except MemoryError:
        raise MediaLimitError("The video needs more memory than allowed to decode.") from None
    except Exception as exc:  # demuxer errors part-way through: keep what was decoded
        log.debug("demux stopped: %s", type(exc).__name__)
        damage_note = "The video file is damaged or incomplete; only its readable beginning was used."

    if not times_all:
        if errors or damage_note or (stream.frames or 0) > 0 or container.duration:
            raise TruncatedMediaError("The video file is damaged or incomplete (for example, an upload that "
                                      "was cut short): no picture could be decoded from it.")
        raise EmptyMediaError("The video contains no frames.")

    if limit_note is not None and on_limit == "error":
        if limit_kind == "deadline":
            raise ProcessingTimeoutError("Reading the video took too long and was stopped.")
        raise MediaLimitError(limit_note.split(";")[0] + "; please upload a shorter or smaller video.")

    gaps = np.diff(np.asarray(times_all))
    source_step = float(np.median(gaps)) if gaps.size else nominal_step
    t_end = times_all[-1] + source_step
    if limit_kind == "duration":
        t_end = min(t_end, max_duration)
    for chosen, ct in resampler.finish(t_end):
        if keep(chosen, ct):
            assert frames is not None
            yield frames[len(times_out) - 1]
    assert frames is not None
    n = len(times_out)
    timestamps = np.asarray(times_out, dtype=np.float64)
    out_gaps = np.diff(timestamps)
    resampled = target_fps is not None and target_fps < 1.0 / source_step - 1e-6
    fps = float(target_fps) if resampled and target_fps else (
        1.0 / float(np.median(out_gaps)) if out_gaps.size else 1.0 / source_step)
    declared = int(stream.frames or 0)
    if limit_note is None and damage_note is None and declared - len(times_all) >= max(3, declared // 10):
        # The header is not trusted for anything else, but a big shortfall means the file was cut.
        damage_note = (f"The video file seems incomplete: only {len(times_all)} of the {declared} frames "
                       "it lists could be read.")
    notes = [x for x in (limit_note, damage_note) if x]
    if size_changed:
        notes.append("The video's resolution changes part-way; all frames were resized to the first size.")
    return Video(
        frames=frames[:n], timestamps=timestamps, fps=fps, source_fps=1.0 / source_step,
        width=int(frames.shape[2]), height=int(frames.shape[1]), rotation=orientation.rotation,
        mirrored=orientation.mirrored, truncated=bool(limit_note or damage_note), decoded_frames=len(times_all),
        notes=tuple(notes), codec=str(stream.codec_context.name), container=str(container.format.name),
        start_time=float(t0 or 0.0))


def _scaled_size(width: float, height: float, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


# --- writing -------------------------------------------------------------------------------------------
def write_video(
    frames: Sequence[np.ndarray] | np.ndarray,
    fps: float,
    path: str | os.PathLike[str],
    *,
    crf: int = 23,
    preset: str = "veryfast",
    timestamps: Sequence[float] | np.ndarray | None = None,
) -> Path:
    """Write RGB ``uint8`` frames as a browser-playable H.264 (``yuv420p``) MP4 and return its path.

    ``frames``: ``(N, H, W, 3)`` array or a list of ``(H, W, 3)`` arrays, all the same size. Odd widths
    or heights are padded by one edge-replicated pixel (4:2:0 needs even sizes). ``timestamps``
    (seconds, increasing) write a variable-frame-rate file; otherwise frames are ``1/fps`` apart.
    The file is written next to ``path`` and renamed into place, with ``+faststart`` so browsers can
    start playing before the download ends. No metadata from the input is copied.
    """
    import av

    if not fps or fps <= 0 or not math.isfinite(fps):
        raise ValueError("fps must be a positive number")
    seq = list(frames) if not isinstance(frames, np.ndarray) else frames
    if len(seq) == 0:
        raise ValueError("write_video needs at least one frame")
    first = np.asarray(seq[0])
    if first.ndim != 3 or first.shape[2] != 3 or first.dtype != np.uint8:
        raise ValueError(f"frames must be (H, W, 3) uint8 RGB, got {first.shape} {first.dtype}")
    height, width = first.shape[:2]
    pad_h, pad_w = height % 2, width % 2
    if timestamps is not None and len(timestamps) != len(seq):
        raise ValueError("timestamps must have one entry per frame")
    rate = Fraction(fps).limit_denominator(1001)
    out = Path(path)
    tmp = out.with_name(f".{out.stem}.partial{out.suffix or '.mp4'}")
    time_base = Fraction(1, 90000) if timestamps is not None else None
    try:
        with av.open(str(tmp), mode="w", format="mp4", container_options={"movflags": "+faststart"}) as c:
            stream = c.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = width + pad_w, height + pad_h, "yuv420p"
            stream.options = {"crf": str(int(crf)), "preset": preset}
            if time_base is not None:
                stream.codec_context.time_base = time_base
                stream.time_base = time_base
            last_pts = -1
            for i, item in enumerate(seq):
                arr = np.asarray(item)
                if arr.shape != first.shape or arr.dtype != np.uint8:
                    raise ValueError(f"frame {i} has shape {arr.shape} {arr.dtype}, expected {first.shape} uint8")
                if pad_h or pad_w:
                    arr = np.pad(arr, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
                if time_base is not None:
                    assert timestamps is not None
                    pts = max(last_pts + 1, round(float(timestamps[i]) / time_base))
                    vf.pts, vf.time_base, last_pts = pts, time_base, pts
                for packet in stream.encode(vf):
                    c.mux(packet)
            for packet in stream.encode():
                c.mux(packet)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


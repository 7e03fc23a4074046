"""Malformed and edge-case media, generated at test time with PyAV and Pillow (reliability R-36).

Nothing here is committed as a binary: :func:`generate_corpus` writes every case into a directory in
a few seconds. :data:`CASES` lists the cases statically (so pytest can parametrise over their names
before anything is generated); each case says what :func:`fdin.media.load_image` or
:func:`fdin.media.read_video` must do with it: ``"ok"`` or the exact error class.

Pictures have an asymmetric marker (red block top-left, blue bar bottom-right, a green dot that moves
with the frame index) so that rotation/mirroring mistakes are visible in pixel comparisons.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from fdin.errors import (
    EmptyMediaError,
    MediaError,
    MediaLimitError,
    NoVideoStreamError,
    TruncatedMediaError,
    UnsupportedMediaError,
)

VIDEO_W, VIDEO_H = 96, 64          # upright size of the marker clips (even, landscape)
VFR_PTS_MS = (0, 40, 80, 200, 210, 220, 500, 533, 566, 1000, 1100, 1400)
LONG_CLIP_S, LONG_CLIP_FPS = 70, 2  # over the 60 s default limit, cheap to write and decode


@dataclass(frozen=True)
class MediaCase:
    """One corpus file and what must happen when fdin reads it."""

    name: str
    path: Path
    kind: str                                   # "image" | "video"
    expect: str | type[MediaError]              # "ok" or the exact MediaError subclass
    note: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CaseSpec:
    name: str
    filename: str
    kind: str
    expect: str | type[MediaError]
    note: str
    build: Callable[[Path, Path], None]         # build(path, corpus_dir)
    meta: dict[str, Any] = field(default_factory=dict)


CASES: list[CaseSpec] = []


def _case(name: str, filename: str, kind: str, expect: str | type[MediaError], note: str, **meta: Any):
    def register(build: Callable[[Path, Path], None]) -> Callable[[Path, Path], None]:
        CASES.append(CaseSpec(name, filename, kind, expect, note, build, meta))
        return build
    return register


# --- content ---------------------------------------------------------------------------------------------
def marker_frame(width: int = VIDEO_W, height: int = VIDEO_H, index: int = 0) -> np.ndarray:
    """Upright ``(H, W, 3) uint8`` RGB picture that looks different under every rotation/mirror."""
    img = np.full((height, width, 3), 128, np.uint8)
    img[: height // 3, : width // 3] = (220, 30, 30)                       # red block, top-left
    img[height - max(1, height // 6):, width // 2:] = (30, 30, 220)        # blue bar, bottom-right half
    x = (index * 3) % max(1, width - 4)
    img[height // 2 - 2: height // 2 + 2, x: x + 4] = (30, 200, 30)         # green dot, moves with index
    return img


def _encode_video(path: Path, frames: list[np.ndarray], *, codec: str = "libx264", fps: float = 30,
                  fmt: str | None = None, pix_fmt: str = "yuv420p", display_rotation: int | None = None,
                  hflip: bool = False, pts_ms: tuple[int, ...] | None = None, audio: bool = False,
                  container_options: dict[str, str] | None = None, target: Any = None) -> None:
    with av.open(target if target is not None else str(path), "w", format=fmt,
                 container_options=container_options or {}) as out:
        stream = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", "crf": "18"}
        elif codec == "libvpx-vp9":
            stream.options = {"crf": "20", "b": "0", "deadline": "realtime", "cpu-used": "8"}
        if display_rotation is not None:
            stream.set_display_rotation(display_rotation, hflip=hflip)
        time_base = Fraction(1, 1000)
        if pts_ms is not None:
            stream.codec_context.time_base = time_base
            stream.time_base = time_base
        astream = out.add_stream("aac", rate=48000, layout="mono") if audio else None
        for i, arr in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
            if pts_ms is not None:
                vf.pts, vf.time_base = pts_ms[i], time_base
            for packet in stream.encode(vf):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if astream is not None:
            _encode_silence(out, astream, seconds=len(frames) / fps)


def _encode_silence(out: Any, stream: Any, seconds: float) -> None:
    size = 1024
    fmt = stream.codec_context.codec.audio_formats[0].name
    dtype = np.float32 if fmt.startswith("flt") else np.int16
    for i in range(max(1, int(seconds * 48000 / size))):
        af = av.AudioFrame.from_ndarray(np.zeros((1, size), dtype=dtype), format=fmt, layout="mono")
        af.sample_rate, af.pts = 48000, i * size
        for packet in stream.encode(af):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)


def _clip(n: int = 30, width: int = VIDEO_W, height: int = VIDEO_H) -> list[np.ndarray]:
    return [marker_frame(width, height, i) for i in range(n)]


def stored_for_display(upright: np.ndarray, rotation_cw: int, hflip: bool = False) -> np.ndarray:
    """The stored picture that a player shows as ``upright`` after turning it ``rotation_cw`` degrees
    clockwise (then mirroring, if ``hflip``), i.e. what a phone writes next to a display matrix."""
    shown = upright[:, ::-1] if hflip else upright
    return np.ascontiguousarray(np.rot90(shown, k=rotation_cw // 90))


def _image_bytes(img: Image.Image, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(width: int, height: int) -> bytes:
    """A ~70-byte PNG whose header claims ``width x height`` RGB pixels (and holds almost no data)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 16))
            + _png_chunk(b"IEND", b""))


class _NonSeekableSink:
    """A write-only target: muxers cannot seek back, as in a browser's MediaRecorder stream."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, chunk: bytes) -> int:
        self.data += chunk
        return len(chunk)


# --- videos that must decode ------------------------------------------------------------------------------
@_case("mp4_h264", "clip.mp4", "video", "ok", "H.264 in MP4, 30 frames at 30 fps", frames=30, fps=30.0)
def _mp4(path: Path, _: Path) -> None:
    _encode_video(path, _clip())


@_case("mov_h264", "clip.mov", "video", "ok", "H.264 in QuickTime MOV", frames=30)
def _mov(path: Path, _: Path) -> None:
    _encode_video(path, _clip(), fmt="mov")


@_case("webm_vp9", "clip.webm", "video", "ok", "VP9 in WebM", frames=30)
def _webm(path: Path, _: Path) -> None:
    _encode_video(path, _clip(), codec="libvpx-vp9")


@_case("avi_mjpeg", "clip_mjpeg.avi", "video", "ok", "Motion JPEG in AVI", frames=30)
def _avi_mjpeg(path: Path, _: Path) -> None:
    _encode_video(path, _clip(), codec="mjpeg", pix_fmt="yuvj420p")


@_case("avi_mpeg4", "clip_mpeg4.avi", "video", "ok", "MPEG-4 part 2 in AVI", frames=30)
def _avi_mpeg4(path: Path, _: Path) -> None:
    _encode_video(path, _clip(), codec="mpeg4")


@_case("mkv_h264_with_audio", "clip.mkv", "video", "ok", "H.264 + AAC in Matroska", frames=30)
def _mkv_audio(path: Path, _: Path) -> None:
    _encode_video(path, _clip(), audio=True)


@_case("one_frame", "one_frame.mp4", "video", "ok", "a single frame", frames=1)
def _one_frame(path: Path, _: Path) -> None:
    _encode_video(path, _clip(1))


@_case("tiny_1x1_video", "tiny.avi", "video", "ok", "1x1 pixel frames (callers decide what is too small)",
       frames=3)
def _tiny_video(path: Path, _: Path) -> None:
    _encode_video(path, [np.full((1, 1, 3), 200, np.uint8)] * 3, codec="mjpeg", pix_fmt="yuvj444p", fps=10)


@_case("rot0_reference", "rot0.mp4", "video", "ok", "upright reference for the rotated clips", rotation=0)
def _rot0(path: Path, _: Path) -> None:
    _encode_video(path, _clip(10))


def _rotated(rotation: int, hflip: bool = False) -> Callable[[Path, Path], None]:
    def build(path: Path, _: Path) -> None:
        frames = [stored_for_display(f, rotation, hflip) for f in _clip(10)]
        # PyAV's set_display_rotation takes counter-clockwise degrees (like VideoFrame.rotation).
        _encode_video(path, frames, display_rotation=-rotation, hflip=hflip)
    return build


for _deg in (90, 180, 270):
    _case(f"rot{_deg}", f"rot{_deg}.mp4", "video", "ok",
          f"stored sideways; display matrix says turn {_deg} degrees clockwise", rotation=_deg)(_rotated(_deg))
_case("rot90_mirrored", "rot90_mirror.mov", "video", "ok", "display matrix with rotation and mirror",
      rotation=90, mirrored=True)(_rotated(90, hflip=True))


@_case("vfr", "vfr.mp4", "video", "ok", "variable frame rate (irregular pts)", pts_ms=VFR_PTS_MS)
def _vfr(path: Path, _: Path) -> None:
    _encode_video(path, _clip(len(VFR_PTS_MS)), pts_ms=VFR_PTS_MS)


@_case("vfr_webm", "vfr.webm", "video", "ok", "variable frame rate in WebM", pts_ms=VFR_PTS_MS)
def _vfr_webm(path: Path, _: Path) -> None:
    _encode_video(path, _clip(len(VFR_PTS_MS)), codec="libvpx-vp9", pts_ms=VFR_PTS_MS)


@_case("webm_no_duration", "recorded.webm", "video", "ok",
       "streamed WebM like a browser MediaRecorder: no duration, no cues", frames=20)
def _webm_stream(path: Path, _: Path) -> None:
    sink = _NonSeekableSink()
    _encode_video(path, _clip(20), codec="libvpx-vp9", fmt="webm", target=sink)
    path.write_bytes(bytes(sink.data))
    with av.open(str(path)) as check:
        assert check.duration is None, "the streamed WebM unexpectedly has a duration"


@_case("long_70s", "long.mp4", "video", "ok", "70 s at 2 fps: over the 60 s limit, returned cut",
       truncated=True)
def _long(path: Path, _: Path) -> None:
    _encode_video(path, _clip(LONG_CLIP_S * LONG_CLIP_FPS, 64, 64), fps=LONG_CLIP_FPS)


@_case("long_header_says_1s", "long_lying.mp4", "video", "ok",
       "the 70 s clip with mvhd/tkhd/mdhd durations rewritten to claim 1 s: still cut at 60 s, not 1 s",
       truncated=True)
def _long_lying(path: Path, corpus: Path) -> None:
    _encode_video(path, _clip(LONG_CLIP_S * LONG_CLIP_FPS, 64, 64), fps=LONG_CLIP_FPS)
    data = bytearray(path.read_bytes())
    k = data.find(b"mvhd")
    movie_scale = struct.unpack(">I", data[k + 16: k + 20])[0]
    assert data[k + 4] == 0, "expected a version-0 mvhd"
    data[k + 20: k + 24] = struct.pack(">I", movie_scale)
    k = data.find(b"tkhd")
    data[k + 24: k + 28] = struct.pack(">I", movie_scale)
    k = data.find(b"mdhd")
    data[k + 20: k + 24] = data[k + 16: k + 20]  # duration = timescale, i.e. 1 s
    path.write_bytes(bytes(data))


@_case("mp4_tail_cut", "tail_cut.mp4", "video", "ok",
       "faststart MP4 missing its last bytes: the decodable part is returned, flagged", truncated=True)
def _tail_cut(path: Path, corpus: Path) -> None:
    full = corpus / "_faststart_full.mp4"
    _encode_video(full, _clip(60), container_options={"movflags": "+faststart"})
    data = full.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 4])


# --- videos that must be refused -------------------------------------------------------------------------
@_case("empty_video", "empty.mp4", "video", EmptyMediaError, "0 bytes")
def _empty_video(path: Path, _: Path) -> None:
    path.write_bytes(b"")


def _cut_mp4(offset: int | str) -> Callable[[Path, Path], None]:
    def build(path: Path, corpus: Path) -> None:
        full = corpus / "_plain_full.mp4"
        if not full.exists():
            _encode_video(full, _clip(30))       # moov at the end, as most cameras write
        data = full.read_bytes()
        path.write_bytes(data[: len(data) // 2 if offset == "half" else int(offset)])
    return build


for _off in (10, 200, 1000, "half"):
    _case(f"mp4_cut_{_off}", f"cut_{_off}.mp4", "video", TruncatedMediaError,
          f"MP4 cut at {_off if _off == 'half' else str(_off) + ' bytes'} (upload interrupted)")(_cut_mp4(_off))


@_case("text_as_mp4", "notes.mp4", "video", UnsupportedMediaError, "a text file renamed .mp4")
def _text_mp4(path: Path, _: Path) -> None:
    path.write_text("This is not a video.\n" * 20)


@_case("png_as_mp4", "picture.mp4", "video", UnsupportedMediaError,
       "a PNG renamed .mp4 (FFmpeg would open it as png_pipe)")
def _png_mp4(path: Path, _: Path) -> None:
    path.write_bytes(_image_bytes(Image.fromarray(marker_frame()), "PNG"))


@_case("hls_playlist", "playlist.m3u8", "video", UnsupportedMediaError,
       "an HLS playlist pointing at a real local MP4 (FFmpeg would decode that other file)")
def _playlist(path: Path, corpus: Path) -> None:
    target = corpus / "_playlist_target.mp4"
    _encode_video(target, _clip(10))
    path.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n{target.name}\n#EXT-X-ENDLIST\n")


@_case("ffconcat_list", "list.mp4", "video", UnsupportedMediaError, "an FFmpeg concat list renamed .mp4")
def _concat(path: Path, corpus: Path) -> None:
    target = corpus / "_concat_target.mp4"
    _encode_video(target, _clip(5))
    path.write_text(f"ffconcat version 1.0\nfile '{target}'\n")


@_case("audio_only_mp4", "audio.m4a.mp4", "video", NoVideoStreamError, "AAC sound only, in MP4")
def _audio_mp4(path: Path, _: Path) -> None:
    with av.open(str(path), "w", format="mp4") as out:
        _encode_silence(out, out.add_stream("aac", rate=48000, layout="mono"), seconds=1.0)


@_case("audio_only_webm", "audio.webm", "video", NoVideoStreamError, "Opus sound only, in WebM")
def _audio_webm(path: Path, _: Path) -> None:
    with av.open(str(path), "w", format="webm") as out:
        _encode_silence(out, out.add_stream("libopus", rate=48000, layout="mono"), seconds=1.0)


@_case("too_wide_video", "wide.avi", "video", MediaLimitError, "4200 x 16 pixels: over 4096 per side")
def _wide(path: Path, _: Path) -> None:
    _encode_video(path, [np.full((16, 4200, 3), 90, np.uint8)] * 2, codec="mjpeg", pix_fmt="yuvj420p", fps=5)


@_case("huge_dims_header_video", "huge_sof.avi", "video", TruncatedMediaError,
       "Motion JPEG whose AVI and JPEG headers claim 16000 x 16000 pixels; refused without allocating")
def _huge_video(path: Path, _: Path) -> None:
    small = path.with_name("_small_mjpeg.avi")
    _encode_video(small, _clip(3, 64, 64), codec="mjpeg", pix_fmt="yuvj420p", fps=5)
    data = bytearray(small.read_bytes())
    k = data.find(b"strf")
    data[k + 12: k + 20] = struct.pack("<ii", 16000, 16000)
    k = data.find(b"avih")
    data[k + 40: k + 48] = struct.pack("<II", 16000, 16000)
    k = data.find(b"\xff\xc0")
    while k >= 0:
        data[k + 5: k + 9] = struct.pack(">HH", 16000, 16000)
        k = data.find(b"\xff\xc0", k + 2)
    path.write_bytes(bytes(data))


# --- pictures --------------------------------------------------------------------------------------------
def _save(img: Image.Image, fmt: str, **kw: Any) -> Callable[[Path, Path], None]:
    def build(path: Path, _: Path) -> None:
        path.write_bytes(_image_bytes(img, fmt, **kw))
    return build


_PHOTO = marker_frame(60, 40)
_case("jpeg", "photo.jpg", "image", "ok", "baseline JPEG", size=(40, 60))(
    _save(Image.fromarray(_PHOTO), "JPEG", quality=95))
_case("png", "photo.png", "image", "ok", "RGB PNG", size=(40, 60))(_save(Image.fromarray(_PHOTO), "PNG"))
_case("webp", "photo.webp", "image", "ok", "lossless WebP", size=(40, 60))(
    _save(Image.fromarray(_PHOTO), "WEBP", lossless=True))
_case("bmp", "photo.bmp", "image", "ok", "BMP", size=(40, 60))(_save(Image.fromarray(_PHOTO), "BMP"))
_case("tiff", "photo.tif", "image", "ok", "TIFF", size=(40, 60))(_save(Image.fromarray(_PHOTO), "TIFF"))
_case("tiny_1x1_image", "tiny.png", "image", "ok", "1x1 pixel (callers decide what is too small)",
      size=(1, 1))(_save(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG"))


@_case("cmyk_jpeg", "cmyk.jpg", "image", "ok", "CMYK JPEG (pure cyan)", pixel=(0, 255, 255))
def _cmyk(path: Path, _: Path) -> None:
    path.write_bytes(_image_bytes(Image.new("CMYK", (16, 8), (255, 0, 0, 0)), "JPEG", quality=95))


@_case("png_16bit_grey", "grey16.png", "image", "ok", "I;16 horizontal gradient 0..65535")
def _i16(path: Path, _: Path) -> None:
    ramp = np.tile(np.linspace(0, 65535, 256).round().astype("<u2"), (4, 1))
    path.write_bytes(_image_bytes(Image.frombytes("I;16", (256, 4), ramp.tobytes()), "PNG"))


@_case("png_rgba", "rgba.png", "image", "ok", "RGBA: transparent / opaque red / half-transparent black")
def _rgba(path: Path, _: Path) -> None:
    arr = np.zeros((2, 3, 4), np.uint8)
    arr[:, 0] = (0, 0, 0, 0)
    arr[:, 1] = (255, 0, 0, 255)
    arr[:, 2] = (0, 0, 0, 128)
    path.write_bytes(_image_bytes(Image.fromarray(arr), "PNG"))


@_case("png_la", "la.png", "image", "ok", "grey + alpha", pixel=(255, 255, 255))
def _la(path: Path, _: Path) -> None:
    path.write_bytes(_image_bytes(Image.new("LA", (4, 4), (0, 0)), "PNG"))


@_case("png_palette", "palette.png", "image", "ok", "paletted PNG with a transparent index")
def _palette(path: Path, _: Path) -> None:
    img = Image.new("P", (4, 4), 1)
    img.putpalette([0, 0, 0, 0, 200, 0] + [0, 0, 0] * 254)
    img.putpixel((0, 0), 0)
    path.write_bytes(_image_bytes(img, "PNG", transparency=0))


@_case("png_1bit", "bw.png", "image", "ok", "1-bit black and white", pixel=(255, 255, 255))
def _onebit(path: Path, _: Path) -> None:
    path.write_bytes(_image_bytes(Image.new("1", (8, 8), 1), "PNG"))


@_case("gif_animated", "anim.gif", "image", "ok", "2-frame GIF: the first frame (red) is used",
       pixel=(255, 0, 0))
def _gif(path: Path, _: Path) -> None:
    frames = [Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    path.write_bytes(buf.getvalue())


# EXIF orientation n -> the PIL transpose that exif_transpose applies; we store its inverse.
_EXIF_INVERSE = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,     # exif_transpose applies ROTATE_270
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,    # exif_transpose applies ROTATE_90
}


def _exif(orientation: int) -> Callable[[Path, Path], None]:
    def build(path: Path, _: Path) -> None:
        img = Image.fromarray(marker_frame(48, 32))
        method = _EXIF_INVERSE[orientation]
        stored = img if method is None else img.transpose(method)
        exif = Image.Exif()
        exif[0x0112] = orientation
        path.write_bytes(_image_bytes(stored, "JPEG", quality=95, exif=exif.tobytes()))
    return build


for _o in range(1, 9):
    _case(f"exif_orientation_{_o}", f"exif{_o}.jpg", "image", "ok", f"JPEG with EXIF orientation {_o}",
          size=(32, 48))(_exif(_o))


@_case("png_huge_header", "huge.png", "image", MediaLimitError,
       "~70-byte PNG claiming 20000 x 20000 pixels (decompression bomb)")
def _huge_png(path: Path, _: Path) -> None:
    path.write_bytes(png_header_only(20000, 20000))


@_case("png_10k_header", "huge10k.png", "image", MediaLimitError, "PNG claiming 10000 x 10000 (R-13)")
def _png10k(path: Path, _: Path) -> None:
    path.write_bytes(png_header_only(10000, 10000))


@_case("png_over_limit", "big.png", "image", MediaLimitError, "PNG claiming 5000 x 5000 (25 MP > 16.8 MP)")
def _png5k(path: Path, _: Path) -> None:
    path.write_bytes(png_header_only(5000, 5000))


@_case("empty_image", "empty.jpg", "image", EmptyMediaError, "0 bytes")
def _empty_image(path: Path, _: Path) -> None:
    path.write_bytes(b"")


@_case("jpeg_truncated", "cut.jpg", "image", TruncatedMediaError, "JPEG cut in half")
def _jpeg_cut(path: Path, _: Path) -> None:
    data = _image_bytes(Image.fromarray(marker_frame(64, 64)), "JPEG", quality=90)
    path.write_bytes(data[: len(data) // 2])


@_case("svg_as_jpg", "drawing.jpg", "image", UnsupportedMediaError, "an SVG renamed .jpg")
def _svg(path: Path, _: Path) -> None:
    path.write_text('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
                    '<rect width="10" height="10" fill="red"/></svg>\n')


@_case("eps", "figure.eps", "image", UnsupportedMediaError, "Encapsulated PostScript (never handed to Ghostscript)")
def _eps(path: Path, _: Path) -> None:
    path.write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\n"
                    "showpage\n%%EOF\n")


@_case("text_as_jpg", "notes.jpg", "image", UnsupportedMediaError, "a text file renamed .jpg")
def _text_jpg(path: Path, _: Path) -> None:
    path.write_text("not a picture\n" * 10)


@_case("video_as_image", "clip_as_photo.jpg", "image", UnsupportedMediaError, "an MP4 given to the photo loader")
def _video_as_image(path: Path, _: Path) -> None:
    _encode_video(path.with_suffix(".mp4.tmp"), _clip(3), fmt="mp4")
    path.with_suffix(".mp4.tmp").replace(path)


# --- entry point -----------------------------------------------------------------------------------------
def generate_corpus(directory: str | Path) -> list[MediaCase]:
    """Write every case of :data:`CASES` into ``directory``; return them as :class:`MediaCase`."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    cases = []
    for spec in CASES:
        path = root / spec.filename
        spec.build(path, root)
        cases.append(MediaCase(spec.name, path, spec.kind, spec.expect, spec.note, dict(spec.meta)))
    return cases


def seed_files(directory: str | Path) -> dict[str, Path]:
    """Small valid files (one per format) used as fuzzing seeds."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    photo = Image.fromarray(marker_frame(24, 16))
    seeds: dict[str, Path] = {}
    for name, fmt, kw in (("seed.png", "PNG", {}), ("seed.jpg", "JPEG", {"quality": 80}),
                          ("seed.gif", "GIF", {}), ("seed.webp", "WEBP", {}), ("seed.bmp", "BMP", {}),
                          ("seed.tif", "TIFF", {})):
        seeds[name] = root / name
        seeds[name].write_bytes(_image_bytes(photo, fmt, **kw))
    small = _clip(6, 32, 24)
    for name, codec, pix in (("seed.mp4", "libx264", "yuv420p"), ("seed.webm", "libvpx-vp9", "yuv420p"),
                             ("seed.avi", "mjpeg", "yuvj420p")):
        seeds[name] = root / name
        _encode_video(seeds[name], small, codec=codec, pix_fmt=pix, fps=10,
                      container_options={"movflags": "+faststart"} if name.endswith(".mp4") else None)
    return seeds


if __name__ == "__main__":  # python tests/media_corpus.py /tmp/corpus  (handy for manual checks)
    import sys
    import time

    t0 = time.perf_counter()
    for case in generate_corpus(sys.argv[1] if len(sys.argv) > 1 else "media-corpus"):
        expect = case.expect if isinstance(case.expect, str) else case.expect.__name__
        print(f"{case.name:28s} {case.kind:5s} {expect:22s} {case.path.stat().st_size:8d} B  {case.note}")
    print(f"{len(CASES)} cases in {time.perf_counter() - t0:.2f} s")

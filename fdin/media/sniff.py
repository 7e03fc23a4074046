"""File types from their first bytes (never from names), the plain-language refusals that go with
them, and the regular-file check done before any parser sees a file."""

from __future__ import annotations

import codecs
import re
import stat
from pathlib import Path

from fdin.errors import EmptyMediaError, MediaError, MediaLimitError, UnsupportedMediaError

#: How many leading bytes :func:`sniff` looks at.
SNIFF_BYTES = 512
IMAGE_KINDS = frozenset({"png", "jpeg", "gif", "webp", "bmp", "tiff", "netpbm", "heif"})
VIDEO_KINDS = frozenset({"mp4", "matroska", "avi"})
ACCEPTED_VIDEO = "MP4, MOV, WebM or AVI"
ACCEPTED_IMAGE = "JPEG, PNG, WebP, BMP, TIFF, GIF or PPM"
#: A Netpbm header (PBM/PGM/PPM, plain P1-P3 or binary P4-P6): the magic, then width and height in
#: ASCII digits, with whitespace and ``#`` comments between (the plain kinds are all text, so this is
#: checked before the text test).
_NETPBM = re.compile(rb"P[1-6](?:\s|#[^\n]*\n)+[1-9][0-9]{0,8}(?:\s|#[^\n]*\n)+[1-9][0-9]{0,8}\s")
_MP4_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot", b"uuid"})
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1",
                          b"avif", b"avis"})


def sniff(head: bytes) -> str | None:
    """Name the file type from its first bytes (:data:`SNIFF_BYTES`); ``None`` if unknown."""
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
    if _NETPBM.match(head):
        return "netpbm"
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


def video_kind_message(kind: str | None) -> str:
    if kind in IMAGE_KINDS:
        return ("This file is a picture, not a video; upload an "
                f"{ACCEPTED_VIDEO} video, or use the photo input for pictures.")
    if kind in _NOT_A_VIDEO:
        return _NOT_A_VIDEO[kind].format(v=ACCEPTED_VIDEO)
    return f"This file type is not supported; upload an {ACCEPTED_VIDEO} video."


def image_kind_message(kind: str | None) -> str:
    if kind in VIDEO_KINDS:
        return (f"This file is a video, not a photo; upload a {ACCEPTED_IMAGE} photo, "
                "or use the video input for videos.")
    if kind in _NOT_AN_IMAGE:
        return _NOT_AN_IMAGE[kind].format(i=ACCEPTED_IMAGE)
    return f"This file type is not supported; upload a {ACCEPTED_IMAGE} photo."


def stat_regular_file(path: Path, max_bytes: int, what: str) -> int:
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
        raise MediaLimitError(f"The {what} file is {mib(st.st_size)}; the limit is {mib(max_bytes)}.")
    return st.st_size


def mib(n: int) -> str:
    return f"{n / (1 << 20):.0f} MB" if n >= (1 << 20) else f"{n} bytes"

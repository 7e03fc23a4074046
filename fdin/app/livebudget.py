"""Bounded effort and memory for the live webcam stream. No gradio here.

* **Frame policy before decoding** (:func:`check_frame`). Browsers send plain baseline JPEG (or PNG/
  WebP) frames; a frame is decoded only if its header says so: a JPEG must be baseline (``SOF0``,
  8-bit, 1 or 3 components) with at most :data:`MAX_JPEG_SCANS` scans and at most
  :data:`MAX_METADATA_BYTES` of metadata segments (APPn/COM); progressive, arithmetic-coded,
  lossless and hierarchical JPEGs are refused (a progressive JPEG can repeat a refinement scan tens of
  thousands of times in under 1 MB: 41.6 s of one core). PNG must be a single image (no APNG), WebP a
  still image. Sizes and pixel counts stay checked by :func:`fdin.app.live.decode_frame`.
* **Decode deadline** (:func:`decode_bounded`): a frame whose decode took more than
  :data:`DECODE_BUDGET_MS` is dropped (not tracked, not buffered), and a session that sends
  :data:`MAX_SLOW_FRAMES` such frames in a row is refused further frames. (With the header policy a
  frame's decode effort is linear in its at most 1.5 MB and 1920x1080 px: ~20 ms for a 1080p frame on
  a quiet core, ~40 ms on a loaded one; what the app asks the browser for, 640x480, ~5 ms.)
* **Frames in flight** (:class:`LiveGate`): at most one frame per session and
  :data:`~fdin.app.settings.LIVE_CONCURRENCY` frames in all are processed at once; a frame that
  arrives meanwhile is dropped, whatever Gradio's queue thinks (a cancelled stream frees its queue
  slot while its handler still runs).
* **Memory budget** (:class:`LiveBudget`): each buffered frame counts its encoded bytes plus its
  decoded size (what "analyse the buffer" will hold); a session keeps at most
  :data:`~fdin.app.settings.LIVE_SESSION_BUDGET_BYTES`, all sessions together at most
  :data:`~fdin.app.settings.LIVE_GLOBAL_BUDGET_BYTES`; past either, the oldest frames go first (of the
  session holding the most, for the global budget).
"""

from __future__ import annotations

import struct
import threading
import time
import weakref
from typing import Any

from fdin.app import settings
from fdin.errors import MediaError

MAX_JPEG_SCANS = 3                  # baseline: one scan per component at most (browsers send one)
MAX_METADATA_BYTES = 64 << 10       # APPn + COM segments of one frame (a browser's JFIF header is 18 bytes)
DECODE_BUDGET_MS = 80.0             # a frame that took longer to decode is dropped (a browser's 640x480 frame: ~5 ms)
MAX_SLOW_FRAMES = 3                 # ... and after this many in a row, the session's frames are refused
#: A webcam frame's JPEG at the size the app asks for (:data:`~fdin.app.settings.LIVE_FRAME_SIZE`) and a
#: browser's JPEG quality (0.92): the tests' real photos at 640x480 weigh 34-98 kB, faces ~50-70 kB.
TYPICAL_FRAME_JPEG_BYTES = 65_000

_SOF_BASELINE = 0xC0
_SOF_OTHER = {0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}


def check_jpeg(data: bytes) -> tuple[int, int]:
    """``(width, height)`` of a baseline JPEG, from its segments; :class:`MediaError` otherwise."""
    if not data.startswith(b"\xff\xd8"):
        raise MediaError("The webcam frame is not a JPEG image.")
    pos, n, metadata, size = 2, len(data), 0, None
    while pos < n:
        if data[pos] != 0xFF:
            raise MediaError("The webcam frame is a malformed JPEG.")
        while pos < n and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            break
        marker = data[pos]
        pos += 1
        if marker in _STANDALONE:
            continue
        if marker == 0xD9:  # EOI before any scan
            break
        if pos + 2 > n:
            raise MediaError("The webcam frame is a truncated JPEG.")
        length = struct.unpack(">H", data[pos:pos + 2])[0]
        if length < 2 or pos + length > n:
            raise MediaError("The webcam frame is a malformed JPEG.")
        segment = data[pos + 2:pos + length]
        if marker in _SOF_OTHER:
            raise MediaError("Only baseline JPEG webcam frames are accepted (this one is progressive, "
                             "lossless or arithmetic-coded).")
        if marker == _SOF_BASELINE:
            if len(segment) < 6 or segment[0] != 8 or segment[5] not in (1, 3):
                raise MediaError("Only 8-bit greyscale or colour baseline JPEG webcam frames are accepted.")
            height, width = struct.unpack(">HH", segment[1:5])
            size = (width, height)
        elif 0xE0 <= marker <= 0xEF or marker == 0xFE:
            metadata += length
            if metadata > MAX_METADATA_BYTES:
                raise MediaError("The webcam frame carries too much metadata.")
        elif marker == 0xDA:  # the first scan: the rest is entropy-coded data and later scans
            if size is None:
                raise MediaError("The webcam frame is a malformed JPEG.")
            # FF DA cannot occur inside entropy-coded data (0xFF is stuffed there), so this counts scans
            if data.count(b"\xff\xda", pos - 2) > MAX_JPEG_SCANS:
                raise MediaError("The webcam frame has too many scans.")
            return size
        pos += length
    raise MediaError("The webcam frame holds no image data.")


def check_png(data: bytes) -> tuple[int, int]:
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise MediaError("The webcam frame is a malformed PNG.")
    if b"acTL" in data[:4096]:
        raise MediaError("Animated webcam frames are not accepted.")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def check_webp(data: bytes) -> None:
    if len(data) < 30 or data[12:16] not in (b"VP8 ", b"VP8L", b"VP8X"):
        raise MediaError("The webcam frame is a malformed WebP.")
    if data[12:16] == b"VP8X" and data[20] & 0x02:  # the animation flag
        raise MediaError("Animated webcam frames are not accepted.")


def check_frame(data: bytes) -> str:
    """The frame's format ("JPEG", "PNG", "WEBP") if its header passes the policy of the module
    docstring; :class:`MediaError` otherwise. Reads headers only (microseconds)."""
    if data.startswith(b"\xff\xd8"):
        check_jpeg(data)
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        check_png(data)
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        check_webp(data)
        return "WEBP"
    raise MediaError("The webcam frame is not a JPEG, PNG or WebP image.")


class SlowFrameError(MediaError):
    """A frame took longer than :data:`DECODE_BUDGET_MS` to decode (dropped)."""


def decode_bounded(data: bytes, session: Any = None) -> Any:
    """:func:`fdin.app.live.decode_frame` after :func:`check_frame`, timed: a decode over
    :data:`DECODE_BUDGET_MS` raises :class:`SlowFrameError` (the frame is dropped) and counts against
    ``session`` (after :data:`MAX_SLOW_FRAMES` its frames are refused before decoding)."""
    from fdin.app.live import decode_frame

    if session is not None and getattr(session, "slow_frames", 0) >= MAX_SLOW_FRAMES:
        raise SlowFrameError("This stream's frames take too long to decode; restart the camera.")
    check_frame(data)
    t0 = time.thread_time()  # this thread's CPU time: the decoder's effort, not the machine's load
    frame = decode_frame(data)
    ms = (time.thread_time() - t0) * 1000
    if ms > DECODE_BUDGET_MS:
        if session is not None:
            session.slow_frames = getattr(session, "slow_frames", 0) + 1
        raise SlowFrameError(f"The webcam frame took {ms:.0f} ms of CPU to decode and was dropped.")
    if session is not None:
        session.slow_frames = 0
    return frame


# --- frames in flight --------------------------------------------------------------------------------
class LiveGate:
    """At most one frame per session and ``limit`` frames in all are processed at once."""

    def __init__(self, limit: int = settings.LIVE_CONCURRENCY) -> None:
        self._slots = threading.BoundedSemaphore(limit)
        self.limit = limit

    def enter(self, session: Any) -> bool:
        """True (and the caller must :meth:`leave`) when the frame may be processed now."""
        lock = session.__dict__.setdefault("_inflight", threading.Lock())
        if not lock.acquire(blocking=False):
            return False
        if not self._slots.acquire(blocking=False):
            lock.release()
            return False
        return True

    def leave(self, session: Any) -> None:
        self._slots.release()
        session.__dict__["_inflight"].release()


# --- memory ------------------------------------------------------------------------------------------
def session_bytes(session: Any) -> int:
    """What ``session``'s buffer holds: every frame's encoded bytes plus its decoded size."""
    with session.lock:
        encoded = sum(len(j) for j in session.jpegs)
        count = len(session.jpegs)
    return encoded + count * int(getattr(session, "frame_nbytes", 0))


def buffer_seconds(per_session: int = settings.LIVE_SESSION_BUDGET_BYTES,
                   fps: float = 1.0 / settings.LIVE_STREAM_EVERY_S) -> float:
    """Seconds of webcam stream one session's buffer holds at ``fps`` (default: the fastest the browser
    sends): the least of the buffer's time and frame limits (:data:`fdin.app.live.BUFFER_S`,
    :data:`~fdin.app.live.MAX_BUFFER_FRAMES`) and of ``per_session`` bytes over what one frame counts
    (decoded at :data:`~fdin.app.settings.LIVE_FRAME_SIZE` plus a typical JPEG). What the app's texts
    say the live buffer holds, so they follow the budget."""
    from fdin.app.live import BUFFER_S, MAX_BUFFER_FRAMES

    width, height = settings.LIVE_FRAME_SIZE
    frames = min(per_session // (width * height * 3 + TYPICAL_FRAME_JPEG_BYTES), MAX_BUFFER_FRAMES)
    return min(BUFFER_S, frames / fps)


class LiveBudget:
    """The live memory budget, per session and over all sessions (see the module docstring)."""

    def __init__(self, per_session: int = settings.LIVE_SESSION_BUDGET_BYTES,
                 total: int = settings.LIVE_GLOBAL_BUDGET_BYTES) -> None:
        self.per_session, self.total = int(per_session), int(total)
        # id -> session, held weakly: a session Gradio evicts (or lets expire) frees its share itself
        self._sessions: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()

    def used(self) -> int:
        with self._lock:
            sessions = list(self._sessions.values())
        return sum(session_bytes(s) for s in sessions)

    def admit(self, session: Any, frame: Any) -> int:
        """Account ``session``'s newest frame (decoded as ``frame``) and drop the oldest buffered frames
        until both budgets hold. Returns the number of frames dropped."""
        session.frame_nbytes = int(getattr(frame, "nbytes", 0))
        with self._lock:
            self._sessions[id(session)] = session
        dropped = 0
        while len(session.jpegs) > 1 and session_bytes(session) > self.per_session:
            session.drop_oldest()
            dropped += 1
        while True:
            with self._lock:
                sessions = list(self._sessions.values())
            sizes = [(session_bytes(s), s) for s in sessions]
            if sum(n for n, _ in sizes) <= self.total:
                return dropped
            biggest = max(sizes, key=lambda pair: pair[0])[1]
            if not biggest.jpegs:
                return dropped
            biggest.drop_oldest()
            dropped += 1

    def forget(self, session: Any) -> None:
        """Empty ``session``'s buffer (its stream ended or its state expired)."""
        while getattr(session, "jpegs", None):
            session.drop_oldest()
        with self._lock:
            self._sessions.pop(id(session), None)


__all__ = ["DECODE_BUDGET_MS", "LiveBudget", "LiveGate", "SlowFrameError", "buffer_seconds", "check_frame",
           "check_jpeg", "decode_bounded", "session_bytes"]

"""Live webcam mode without gradio: per-session face tracking on streamed frames, the overlay, a
rolling FDIN estimate over the last seconds, and the buffer that becomes a full analysis.

One :class:`LiveSession` per browser session (kept in a ``gr.State`` by :mod:`fdin.app.layout`):

* :class:`LiveTracker` follows one face frame by frame with the same method as
  :func:`fdin.perception.track_faces` (detector every :data:`DETECT_EVERY` frames, at half size while a
  face is followed; in between the 68 landmarks are re-fitted in a box carried by the landmarks and
  the fit must pass :func:`fdin.perception.fit.fit_ok` and the patch check), but incrementally, so the
  state lives in the session rather than in one call over a whole clip.
* Every accepted frame appends ``(time, landmarks)`` to a rolling buffer of :data:`BUFFER_S` seconds,
  and the frame's JPEG bytes as received (no re-encode, nothing written to disk) to the frame buffer the
  "analyse" button turns into a :class:`fdin.media.Video`.
* :meth:`LiveSession.rolling` runs FDIN (:meth:`fdin.analyze.DynamicsAnalyzer.predict_landmarks`) on
  the last :data:`ROLLING_WINDOW_S` seconds about once per :data:`ROLLING_EVERY_S`.

Bounds (streaming events are attack surface too): a frame is accepted only as an in-memory JPEG/PNG/
WebP of at most :data:`MAX_FRAME_BYTES` and :data:`MAX_FRAME_PIXELS` (checked from the header before
decoding), is downscaled to :data:`MAX_SIDE`, and frames closer together than :data:`MIN_INTERVAL_S`
in one session are dropped unprocessed (a per-session rate limit).
"""

from __future__ import annotations

import base64
import io
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from fdin.app import live_estimate
from fdin.app.live_estimate import SMOOTH_REFRESHES, Steady
from fdin.errors import MediaError, NoFaceError

MAX_FRAME_BYTES = 1_500_000          # one streamed frame (a 1280x720 JPEG at quality 0.92 is ~250 kB)
MAX_FRAME_PIXELS = 1920 * 1080       # declared size, checked before decoding
MAX_SIDE = 640                       # frames are tracked at most at 640 px on their longer side
MIN_INTERVAL_S = 1.0 / 30.0          # per-session rate limit: at most 30 processed frames per second
DETECT_EVERY = 10                    # detector every 10th frame while a face is followed
DETECT_DOWNSCALE = 0.5               # ... on a half-size copy (full size while searching)
BUFFER_S = 10.0                      # seconds of landmarks/frames kept per session
MAX_BUFFER_FRAMES = 300              # ... and at most this many frames (~10 s at 30/s)
ROLLING_WINDOW_S = 4.0               # the rolling FDIN estimate looks at the last 4 s
ROLLING_EVERY_S = 1.0                # ... and is refreshed about once a second
MIN_ROLLING_S = 1.5                  # no estimate before this much face time in the window
FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


# --- frames in and out ---------------------------------------------------------------------------
def frame_bytes(data_url: str | None) -> bytes | None:
    """The image bytes of a ``data:image/...;base64,`` URL (what Gradio's streaming webcam sends), or
    None. Raises :class:`MediaError` when it is too large or not an image data URL."""
    if not data_url:
        return None
    if len(data_url) > MAX_FRAME_BYTES * 4 // 3 + 64:
        raise MediaError("The webcam frame is too large.")
    head, sep, body = data_url.partition(",")
    if not sep or not head.startswith("data:image/") or not head.endswith(";base64"):
        raise MediaError("The webcam frame is not an image.")
    try:
        return base64.b64decode(body, validate=True)
    except ValueError:
        raise MediaError("The webcam frame is not an image.") from None


def decode_frame(data: bytes) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a JPEG/PNG/WebP frame, at most :data:`MAX_SIDE` on its longer side."""
    import cv2
    from PIL import Image

    if len(data) > MAX_FRAME_BYTES:
        raise MediaError("The webcam frame is too large.")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format not in FORMATS:
                raise MediaError("The webcam frame is not a JPEG, PNG or WebP image.")
            width, height = img.size  # from the header only: nothing decoded yet
            if width * height > MAX_FRAME_PIXELS or min(width, height) < 1:
                raise MediaError("The webcam frame is too large.")
            # libjpeg-turbo through OpenCV is ~2x faster than Pillow here; Pillow for the rest
            bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if img.format == "JPEG" else None
            frame = bgr[:, :, ::-1] if bgr is not None and bgr.shape[:2] == (height, width) else np.asarray(
                img.convert("RGB"))
    except MediaError:
        raise
    except Exception:  # Pillow raises many types on broken data
        raise MediaError("The webcam frame could not be decoded.") from None
    scale = MAX_SIDE / max(frame.shape[:2])
    if scale < 1.0:
        size = (max(1, round(frame.shape[1] * scale)), max(1, round(frame.shape[0] * scale)))
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(frame)


def jpeg_data_url(image: np.ndarray, quality: int = 70) -> str:
    """An RGB frame as an in-memory JPEG data URL (what the overlay output shows; no file)."""
    import cv2

    ok, buf = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - cv2 encodes any uint8 RGB frame
        raise MediaError("The overlay could not be encoded.")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


# --- tracking --------------------------------------------------------------------------------------
@dataclass
class LiveTracker:
    """One face followed across streamed frames (see the module docstring). :meth:`step` returns the
    frame's :class:`fdin.perception.Face` or None when the face is lost in it."""

    detect_every: int = DETECT_EVERY
    detect_downscale: float = DETECT_DOWNSCALE
    frames: int = 0
    landmarks: np.ndarray | None = None
    box_rel: np.ndarray | None = None
    template: np.ndarray | None = None
    score: float = 0.0
    spread: float = 0.0
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))
    since_detect: int = 0

    @property
    def following(self) -> bool:
        return self.landmarks is not None

    def _accept(self, face: Any, image: np.ndarray, *, detected: bool) -> Any:
        from fdin.perception.fit import box_relative, centre_spread, face_patch

        lm = face.landmarks.astype(np.float64)
        centre, spread = centre_spread(lm)
        self.velocity = centre - centre_spread(self.landmarks)[0] if self.landmarks is not None else np.zeros(2)
        if detected:
            self.box_rel, self.template, self.score = box_relative(face.bbox, lm), face_patch(image, lm), face.score
            self.since_detect = 0
        self.landmarks, self.spread = lm, spread
        return face

    def _lose(self) -> None:
        self.landmarks, self.velocity = None, np.zeros(2)

    def step(self, image: np.ndarray, backend: Any) -> Any:
        from fdin.geometry import iou
        from fdin.perception.fit import (
            MIN_INSIDE,
            MIN_PATCH_NCC,
            box_absolute,
            face_patch,
            fit_ok,
            inside_fraction,
        )
        from fdin.perception.tracking import detect_scaled

        height, width = image.shape[:2]
        self.frames += 1
        self.since_detect += 1
        if not self.following or self.since_detect >= self.detect_every:
            detections = detect_scaled(backend, image, self.detect_downscale if self.following else 1.0)
            if not detections:
                self._lose()
                return None
            if self.following:
                predicted = box_absolute(self.box_rel, self.landmarks, self.velocity)
                best = max(detections, key=lambda d: iou(predicted, d.bbox))
                if iou(predicted, best.bbox) < 0.3:  # the followed face is gone; start over on the largest
                    self._lose()
            if not self.following:
                best = max(detections, key=lambda d: float((d.bbox[2] - d.bbox[0]) * (d.bbox[3] - d.bbox[1])))
            hint = self.landmarks + self.velocity if self.following else best.keypoints
            face = backend.face_for_box(image, best.bbox, score=best.score, keypoints=hint)
            if not fit_ok(face, width, height, self.spread if self.following else None):
                self._lose()
                return None
            return self._accept(face, image, detected=True)
        box = box_absolute(self.box_rel, self.landmarks, self.velocity)
        if inside_fraction(box, width, height) < MIN_INSIDE:
            self._lose()
            return None
        face = backend.face_for_box(image, box, score=self.score,
                                    keypoints=self.landmarks + self.velocity)
        face = replace(face, bbox=box_absolute(self.box_rel, face.landmarks.astype(np.float64)).astype(np.float32))
        if (not fit_ok(face, width, height, self.spread)
                or float((face_patch(image, face.landmarks) * self.template).sum()) < MIN_PATCH_NCC):
            self._lose()
            return None
        return self._accept(face, image, detected=False)


# --- the session -----------------------------------------------------------------------------------
@dataclass
class Rolling:
    """The latest rolling FDIN estimate: :class:`fdin.analyze.DynamicsPrediction` over ``seconds``."""

    prediction: Any
    seconds: float
    frames: int
    top_relations: list[Any]  # the salient pairs of the gender estimate (fdin.results.PairEffect)
    at: float = 0.0  # receive time of the window's last frame


@dataclass
class LiveSession:
    """Everything one browser session's live mode keeps (see the module docstring)."""

    tracker: LiveTracker = field(default_factory=LiveTracker)
    times: deque = field(default_factory=deque)          # receive time (s, monotonic) of each frame
    faces: deque = field(default_factory=deque)          # (68, 2) landmarks, or None when lost
    jpegs: deque = field(default_factory=deque)          # the frame's bytes as received
    last_frame_t: float = -1e9
    last_rolling_t: float = -1e9
    rolling_result: Rolling | None = None
    steady: Steady = field(default_factory=Steady)            # the FDIN estimate the panel shows
    appearance: deque = field(default_factory=lambda: deque(maxlen=SMOOTH_REFRESHES))  # (p_female, years)
    processed: int = 0
    dropped: int = 0
    frame_ms: deque = field(default_factory=lambda: deque(maxlen=60))
    # the stream adds frames while the "analyse" button reads the buffer (two events, one session)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def accept_time(self, now: float) -> bool:
        """Per-session rate limit: False (drop the frame) when it follows the last one too closely."""
        if now - self.last_frame_t < MIN_INTERVAL_S:
            self.dropped += 1
            return False
        self.last_frame_t = now
        return True

    def add(self, now: float, data: bytes, frame: np.ndarray, backend: Any) -> Any:
        """Track the face in ``frame`` (decoded from ``data``), buffer it; the Face or None."""
        t0 = time.perf_counter()
        face = self.tracker.step(frame, backend)
        with self.lock:
            self.times.append(now)
            self.faces.append(None if face is None else np.asarray(face.landmarks, np.float32))
            self.jpegs.append(data)
            while self.times and (now - self.times[0] > BUFFER_S or len(self.times) > MAX_BUFFER_FRAMES):
                self._pop_oldest()
        self.processed += 1
        self.frame_ms.append((time.perf_counter() - t0) * 1000)
        return face

    def _pop_oldest(self) -> None:
        self.times.popleft()
        self.faces.popleft()
        self.jpegs.popleft()

    def drop_oldest(self) -> None:
        """Drop the oldest buffered frame (the memory budget of :mod:`fdin.app.livebudget`)."""
        with self.lock:
            if self.times:
                self._pop_oldest()

    def window(self, seconds: float) -> tuple[np.ndarray, np.ndarray]:
        """``(landmarks (N, 68, 2), timestamps (N,))`` of the frames with a face in the last ``seconds``."""
        with self.lock:
            times, faces = list(self.times), list(self.faces)
        if not times:
            return np.zeros((0, 68, 2), np.float32), np.zeros(0)
        end = times[-1]
        pairs = [(t, lm) for t, lm in zip(times, faces, strict=True) if lm is not None and end - t <= seconds]
        if not pairs:
            return np.zeros((0, 68, 2), np.float32), np.zeros(0)
        return np.stack([p[1] for p in pairs]), np.asarray([p[0] for p in pairs], np.float64)

    def rolling_due(self, now: float) -> bool:
        return now - self.last_rolling_t >= ROLLING_EVERY_S

    def rolling(self, now: float, analyzer: Any) -> Rolling | None:
        """Refresh the rolling FDIN estimate over the last :data:`ROLLING_WINDOW_S` seconds. None (and
        the previous estimate is kept, shown with its age) when the face was seen for less than
        :data:`MIN_ROLLING_S` in the window."""
        self.last_rolling_t = now
        landmarks, times = self.window(ROLLING_WINDOW_S)
        if len(times) < 4 or times[-1] - times[0] < MIN_ROLLING_S:
            return None
        prediction = analyzer.predict_landmarks(landmarks, times - times[0])
        attribution = prediction.attribution
        self.rolling_result = Rolling(prediction, float(times[-1] - times[0]), len(times),
                                      attribution.salient("gender", k=3) if attribution is not None else [],
                                      float(times[-1]))
        est = prediction.estimates
        if est.gender is not None and est.age is not None:
            self.steady.update(est.gender.p_female, est.age.years)
        return self.rolling_result

    def observe_appearance(self, image: np.ndarray, face: Any, backend: Any) -> None:
        """The appearance model (trained on real faces) on this frame's face, kept beside FDIN's
        rolling estimate (once per refresh: one model call a second)."""
        if face is None or not hasattr(backend, "appearance"):
            return
        found = backend.appearance(image, [face])
        if found and found[0] is not None:
            self.appearance.append((float(found[0].p_female), float(found[0].age_years)))

    def video(self) -> Any:
        """The buffered frames as a :class:`fdin.media.Video` (what an upload becomes after decoding)."""
        from fdin.media import Video

        with self.lock:
            jpegs, received = list(self.jpegs), list(self.times)
        if len(jpegs) < 2:
            raise NoFaceError("The live buffer is empty: start the camera and keep your face in view first.")
        frames = [decode_frame(d) for d in jpegs]
        shape = frames[-1].shape
        keep = [k for k, f in enumerate(frames) if f.shape == shape]  # a camera switch changes the size
        times = np.asarray([received[k] for k in keep], np.float64)
        times -= times[0]
        duration = float(times[-1]) if len(times) > 1 else 0.0
        fps = (len(times) - 1) / duration if duration > 0 else 1.0
        return Video(frames=np.stack([frames[k] for k in keep]), timestamps=times, fps=round(fps, 3),
                     source_fps=round(fps, 3), width=int(shape[1]), height=int(shape[0]),
                     decoded_frames=len(keep), codec="jpeg", container="live webcam",
                     notes=(f"Live webcam: the last {duration:.1f} s ({len(keep)} frames as received).",))

    def stats(self) -> dict[str, float]:
        """Frames processed/dropped and the median per-frame tracking time (ms)."""
        ms = sorted(self.frame_ms)
        return {"processed": self.processed, "dropped": self.dropped,
                "median_frame_ms": ms[len(ms) // 2] if ms else 0.0}


def overlay(frame: np.ndarray, face: Any, rolling: Rolling | None) -> np.ndarray:
    """The frame with the tracked face's box and 68 landmarks, the FDIN regions and (once a rolling
    estimate exists) the region pairs that moved its gender estimate."""
    from fdin import viz
    from fdin.labels import REGION_NAMES

    if face is None:
        return frame
    drawn = viz.draw_faces(frame, [face], labels=[""])
    relations = rolling.top_relations if rolling is not None else []
    return viz.draw_regions_and_relations(drawn, np.asarray(face.landmarks), REGION_NAMES, relations)


def rolling_markdown(session: LiveSession, demonstration: bool) -> str:
    """The live panel's words (:func:`fdin.app.live_estimate.rolling_markdown` with this module's windows)."""
    return live_estimate.rolling_markdown(session, demonstration, buffer_s=BUFFER_S, min_rolling_s=MIN_ROLLING_S,
                                          rolling_every_s=ROLLING_EVERY_S, window_s=ROLLING_WINDOW_S)


__all__ = ["LiveSession", "LiveTracker", "Rolling", "Steady", "decode_frame", "frame_bytes", "jpeg_data_url", "overlay",
           "rolling_markdown"]

"""The app's three request handlers (faces, trait estimation, relations) bound to injected predictors.

:class:`Handlers` takes a :class:`~fdin.app.predictors.Predictors` (real ones by default, fakes in
tests) and a :class:`~fdin.app.ratelimit.RateLimiter`. Every public handler is wrapped so that:

* the client's rate limit is checked first (a ``gr.Error`` "Too many requests" when exhausted);
* an :class:`~fdin.errors.FdinError` becomes a ``gr.Error`` with its HTML-escaped sentence, anything
  else the fixed :data:`~fdin.app.texts.GENERIC_ERROR` with the exception logged server-side (no
  traceback or file name reaches the user).

Gradio never decodes user media: uploads arrive as paths and are decoded in a child process with
limits (:mod:`fdin.isolation`). Returned files go to a private scratch folder swept after
:data:`~fdin.app.settings.SCRATCH_MAX_AGE_S`.
"""

from __future__ import annotations

import functools
import html
import inspect
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from fdin.app import face_table, rendering, settings, storage
from fdin.app.admission import Admission, current_event_id, event_stop_check
from fdin.app.deadline import clip_size, deadline_message
from fdin.app.livebudget import LiveBudget, LiveGate, decode_bounded
from fdin.app.predictors import LazyPredictors, Predictors
from fdin.app.ratelimit import RateLimiter, client_key
from fdin.app.texts import (
    CONSENT_FIRST,
    GENERIC_ERROR,
    PREVIEW_NOTE,
    RATE_LIMITED,
    UNKNOWN_TRAIT,
    trait_names,
)
from fdin.errors import FdinError, NoFaceError, ProcessingCancelledError, ProcessingTimeoutError
from fdin.results import any_synthetic

log = logging.getLogger(__name__)


# --- scratch files -------------------------------------------------------------------------------
def scratch_root() -> Path:
    """This instance's private scratch folder (:mod:`fdin.app.storage`; removed at a normal stop)."""
    return storage.current().scratch


def sweep_scratch(max_age_s: float = settings.SCRATCH_MAX_AGE_S) -> None:
    storage.sweep(scratch_root(), max_age_s)


def scratch_dir() -> Path:
    """A fresh private folder for one request's output files (purged after ``SCRATCH_MAX_AGE_S``)."""
    return storage.current().request_dir()


def write_json(payload: dict[str, Any], folder: Path, name: str) -> str:
    path = folder / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(payload, indent=2) + "\n")
    return str(path)


def encode_image(image: np.ndarray, folder: Path, name: str, *,
                 max_side: int = settings.OUTPUT_MAX_SIDE) -> str:
    """Write an annotated image as WebP (downscaled to ``max_side`` on its longer side) into
    ``folder``: inside the handler, so an encoding failure becomes the handler's clear message, and
    Gradio only copies the file (WebP cannot exceed 16,383 px; the bound keeps far below that)."""
    import cv2
    from PIL import Image

    height, width = image.shape[:2]
    scale = max_side / max(height, width, 1)
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    path = folder / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        Image.fromarray(np.ascontiguousarray(image)).save(handle, format="WEBP", quality=85, method=2)
    return str(path)


def need(value: Any, what: str) -> Any:
    if value in (None, ""):
        raise gr.Error(f"Please provide {what} first.", print_exception=False)
    return value


def load_image_isolated(path: str) -> np.ndarray:
    from fdin.isolation import load_image_isolated as load

    return load(path, timeout=settings.IMAGE_TIMEOUT_S, max_side=settings.IMAGE_MAX_SIDE,
                tmp_dir=scratch_root())  # the exchange folder is purged with the instance's files


def read_video_isolated(path: str) -> Any:
    from fdin.isolation import read_video_isolated as read

    return read(path, **settings.video_read_kwargs(), tmp_dir=scratch_root())


def _no_progress(*args: Any, **kwargs: Any) -> None:
    return None


class Handlers:
    """``detect_faces``, ``analyze_video``, ``relate_photos`` (and ``rerender_matrix``) as callables
    Gradio can bind, using ``predictors`` for every model call. ``load_image``/``read_video`` are the
    isolated decoders; tests may replace them on an instance."""

    def __init__(self, predictors: Predictors | None = None, *, rate_limiter: RateLimiter | None = None) -> None:
        self.predictors: Predictors = predictors if predictors is not None else LazyPredictors()
        self.rate_limiter = rate_limiter if rate_limiter is not None else RateLimiter.from_env()
        self.load_image: Callable[[str], np.ndarray] = load_image_isolated
        self.read_video: Callable[[str], Any] = read_video_isolated
        self.detect_faces = self._friendly(self._detect_faces, "detect_faces")
        self.analyze_video = self._friendly(self._analyze_video, "analyze_video")
        self.relate_photos = self._friendly(self._relate_photos, "relate_photos")
        self.analyze_live = self._friendly(self._analyze_live, "analyze_live")
        self.relate_photos_ui = self._friendly(self._relate_photos_ui, "relate_photos")
        self.redraw_limiter = RateLimiter(*settings.REDRAW_RATE)
        # live admission (installed on the queue by GuardedBlocks), frames in flight, memory
        self.admission = Admission()
        self.live_gate = LiveGate()
        self.live_budget = LiveBudget()
        self.traits: tuple[str, ...] = tuple(trait_names())

    # --- error mapping and rate limit ------------------------------------------------------------
    def _friendly(self, fn: Callable[..., Any], name: str) -> Callable[..., Any]:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:  # gradio passes gr.Request positionally, Python callers by keyword (or not at all)
                request = signature.bind_partial(*args, **kwargs).arguments.get("request")
            except TypeError:
                request = None
            key = client_key(request)
            if key is not None and not self.rate_limiter.allow(key):
                log.info("%s: rate limited", name)  # no client address in the logs
                raise gr.Error(RATE_LIMITED, title="Too many requests", print_exception=False)
            try:
                out = fn(*args, **kwargs)
            except gr.Error:
                raise
            except FdinError as error:
                log.info("%s: user error %s after %.2f s", name, type(error).__name__, time.perf_counter() - t0)
                raise gr.Error(html.escape(str(error)), print_exception=False) from None
            except Exception:
                log.exception("%s failed", name)
                raise gr.Error(GENERIC_ERROR, print_exception=False) from None
            finally:
                storage.trim_heap()  # hand freed pages back: RSS stays flat across bursts
            log.info("%s: ok in %.2f s", name, time.perf_counter() - t0)
            return out

        wrapper.__name__ = name
        wrapper.fdin_rate_limited = True  # type: ignore[attr-defined]  # checked by the event audit test
        return wrapper

    # --- faces -----------------------------------------------------------------------------------
    def _detect_faces(self, image_path: str | None,
                      request: gr.Request | None = None) -> tuple[dict[str, Any], str, str, Any]:
        """Photo -> (the JSON of ``fdin faces``, annotated image file, a sentence saying how many faces
        were found, or that none was and why that may be, the per-face table)."""
        from fdin import viz
        from fdin.faces import faces_in

        image = self.load_image(need(image_path, "a photo"))
        result = faces_in(image, self.predictors.backend(), self.predictors.expression())
        table = gr.Dataframe(value=face_table.faces_rows(result), headers=face_table.FACE_COLUMNS)
        status = rendering.faces_status(len(result.faces), image.shape[1], image.shape[0], result.faces)
        annotated = encode_image(viz.draw_faces(image, result.faces), scratch_dir(), "faces.webp")
        return result.to_json_dict(), annotated, status, table

    # --- trait estimation ------------------------------------------------------------------------
    def _analyze_video(self, video_path: str | None, progress: gr.Progress = gr.Progress(),  # noqa: B008
                       request: gr.Request | None = None) -> tuple[Any, ...]:
        """Video -> (analyze JSON, summary, annotated clip, keyframe, heatmap gender, heatmap age,
        dynamics, JSON file)."""
        path = need(video_path, "a video (upload a file or record with the webcam)")
        progress(0.0, desc="decoding")
        video = self.read_video(path)
        if len(video) == 0:
            raise NoFaceError("The video holds no decodable frame.")
        return self._analysis_outputs(video, progress)

    def _analysis_outputs(self, video: Any, progress: Any) -> tuple[Any, ...]:
        """A decoded :class:`fdin.media.Video` (an upload or the live buffer) -> the eight outputs."""
        progress(0.02, desc="loading the models (only the first request after a start waits for this)")
        analyzer = self.predictors.analyzer()
        spans = {"decode": (0.0, 0.05), "track": (0.05, 0.8), "dynamics": (0.8, 0.88)}

        should_stop = event_stop_check()  # a cancel or a closed connection stops the work
        seconds, faces = clip_size(video, self.predictors)
        budget = settings.analysis_deadline_s(seconds, faces)
        deadline = time.monotonic() + budget
        late = deadline_message(seconds, faces, budget)

        def report(stage: str, fraction: float) -> None:
            if should_stop():  # in-process analyzers stop at their next progress report
                raise ProcessingCancelledError("The request was cancelled and its work stopped.")
            if time.monotonic() > deadline:
                raise ProcessingTimeoutError(late)
            lo, hi = spans.get(stage, (0.8, 0.88))
            progress(lo + (hi - lo) * fraction,
                     desc={"track": "tracking", "decode": "preparing (the first request loads the face models)"}
                     .get(stage, stage))

        stop = {"should_stop": should_stop, "deadline": deadline, "deadline_message": late}
        accepts = inspect.signature(analyzer.analyze).parameters
        if not ("should_stop" in accepts or any(p.kind is p.VAR_KEYWORD for p in accepts.values())):
            stop = {}  # an analyzer in this process: stopped through ``report`` instead
        result = analyzer.analyze(video, progress=report, **stop)
        progress(0.9, desc="drawing")
        payload = result.to_json_dict()
        payload["video"] = video.to_json_dict()
        folder = scratch_dir()
        heat_gender, heat_age, dynamics = rendering.analysis_plots(result)
        key = encode_image(rendering.keyframe(video, result), folder, "keyframe.webp")
        progress(0.95, desc="encoding the annotated clip")
        clip = rendering.annotated_clip(video, result, folder)
        json_file = write_json(payload, folder, "fdin-analysis.json")
        summary = rendering.summary_markdown(result, list(getattr(video, "notes", []) or []))
        return payload, summary, clip, key, heat_gender, heat_age, dynamics, json_file

    def preview_note(self, video_path: str | None, browser_plays: Any = True) -> str:
        """After an upload: nothing when the browser plays the file; when it cannot, why, from the
        file's first bytes only (no decoder runs here, so this stays cheap and unqueued): a video
        the server can read gets the "only the preview" note, anything else the one sentence the
        analysis would give, so a text file renamed .mp4 is never told the upload "worked"."""
        from fdin.media.sniff import SNIFF_BYTES, VIDEO_KINDS, sniff, video_kind_message

        if browser_plays is not False or not isinstance(video_path, str) or not video_path:
            return ""
        try:
            with open(video_path, "rb") as handle:
                kind = sniff(handle.read(SNIFF_BYTES))
        except OSError:
            return ""
        if kind in VIDEO_KINDS:
            return PREVIEW_NOTE
        return f"**This file cannot be analysed.** {html.escape(video_kind_message(kind))}"

    # --- live webcam -----------------------------------------------------------------------------
    def live_frame(self, frame: str | None, session: Any = None, consent: bool = True) -> tuple[Any, Any, Any, Any]:
        """One streamed webcam frame (an in-memory image data URL) -> (overlay data URL, rolling
        summary, rolling importance heatmap, session). Outputs that do not change are ``gr.skip()``;
        a frame over the per-session rate, or a bad frame, changes nothing (no error: the stream goes
        on). Not rate limited per client like the model buttons: streams are admitted per client and
        in all (:mod:`fdin.app.admission`), and frames are bounded per session and in all — one in
        flight per session, header policy and decode deadline, memory budget
        (:mod:`fdin.app.livebudget`)."""

        event_id = current_event_id()
        self.admission.touch(event_id)
        try:
            return self._live_admitted(frame, session, consent)
        finally:  # idleness counts from the end of this frame's work (a first frame may wait for the models)
            self.admission.touch(event_id)

    def _live_admitted(self, frame: str | None, session: Any, consent: bool) -> tuple[Any, Any, Any, Any]:
        from fdin.app import live

        session = session if isinstance(session, live.LiveSession) else live.LiveSession()
        if not consent:
            return gr.skip(), CONSENT_FIRST, gr.skip(), session
        now = time.monotonic()
        if frame is None or not session.accept_time(now):
            return gr.skip(), gr.skip(), gr.skip(), session
        if not self.live_gate.enter(session):  # a frame of this session (or two in all) still in flight
            session.dropped += 1
            return gr.skip(), gr.skip(), gr.skip(), session
        try:
            return self._live_frame(frame, session, now)
        finally:
            self.live_gate.leave(session)

    def _live_frame(self, frame: str, session: Any, now: float) -> tuple[Any, Any, Any, Any]:
        from fdin import viz
        from fdin.app import live

        try:
            data = live.frame_bytes(frame)
            image = decode_bounded(data, session)
            face = session.add(now, data, image, self.predictors.backend())
            self.live_budget.admit(session, image)
            out = live.jpeg_data_url(live.overlay(image, face, session.rolling_result))
            if not session.rolling_due(now):
                return out, gr.skip(), gr.skip(), session
            analyzer = self.predictors.analyzer()
            rolled = session.rolling(now, analyzer)
            session.observe_appearance(image, face, self.predictors.backend())
            demo = any_synthetic(analyzer.provenance()) if hasattr(analyzer, "provenance") else True
            text = live.rolling_markdown(session, demo)
            if rolled is None:
                return out, text, gr.skip(), session
            heat = viz.importance_heatmap(list(rolled.prediction.importance.regions),
                                          np.asarray(rolled.prediction.importance.by_target["gender"]),
                                          title=f"Gender importance, last {rolled.seconds:.0f} s",
                                          height=420)
            return out, text, heat, session
        except FdinError as error:
            log.info("live frame dropped: %s", type(error).__name__)
            return gr.skip(), gr.skip(), gr.skip(), session
        except Exception:
            log.exception("live frame failed")
            return gr.skip(), gr.skip(), gr.skip(), session

    def forget_live(self, session: Any) -> None:
        """The session's live state expired: its buffer leaves the memory budget at once."""
        from fdin.app.live import LiveSession

        if isinstance(session, LiveSession):
            self.live_budget.forget(session)

    def _analyze_live(self, session: Any = None, progress: gr.Progress = gr.Progress(),  # noqa: B008
                      request: gr.Request | None = None) -> tuple[Any, ...]:
        """The live buffer (the last seconds of streamed frames) -> the same eight outputs as an upload."""
        from fdin.app.live import LiveSession

        if not isinstance(session, LiveSession):
            raise NoFaceError("The live buffer is empty: start the camera and keep your face in view first.")
        progress(0.0, desc="decoding the live buffer")
        return self._analysis_outputs(session.video(), progress)

    # --- relations -------------------------------------------------------------------------------
    def _relate_photos(self, image_a: str | None, image_b: str | None = None, trait: str = "warm",
                       progress: gr.Progress = gr.Progress(),  # noqa: B008
                       request: gr.Request | None = None) -> tuple[Any, ...]:
        """Group photo, or two photos -> (relate JSON, annotated canvas, face table, trait chart,
        relation matrix for ``trait`` (shown for 3+ faces))."""
        return self._relate(image_a, image_b, trait, progress)[:5]

    def _relate_photos_ui(self, image_a: str | None, image_b: str | None = None, trait: str = "warm",
                          progress: gr.Progress = gr.Progress(),  # noqa: B008
                          request: gr.Request | None = None) -> tuple[Any, ...]:
        """:meth:`_relate_photos` plus the matrix data kept server-side (a ``gr.State``) for redraws."""
        return self._relate(image_a, image_b, trait, progress)

    def _relate(self, image_a: str | None, image_b: str | None, trait: str, progress: Any) -> tuple[Any, ...]:
        from fdin import viz

        progress(0.0, desc="decoding")
        a = self.load_image(need(image_a, "a photo"))
        b = self.load_image(image_b) if image_b else None
        progress(0.05, desc="loading the models (only the first request after a start waits for this)")
        predictor = self.predictors.relation()
        result = predictor.relate(a, b, progress=lambda stage, fraction: progress(0.1 + 0.8 * fraction, desc=stage))
        payload = result.to_json_dict()
        boxes = [{"bbox": f.canvas_bbox} for f in result.faces]
        annotated = viz.draw_faces(rendering.canvas(a, b), boxes, landmarks=False,
                                   labels=[str(f.index + 1) for f in result.faces])  # numbered from 1
        image = encode_image(annotated, scratch_dir(), "relations.webp")
        del annotated
        demo = any_synthetic(result.models)
        chart = rendering.trait_chart(result.pairs, demonstration=demo)
        traits = result.pairs[0].traits if result.pairs else {}
        if trait not in traits and traits:
            trait = next(iter(traits))
        table = gr.Dataframe(value=face_table.relation_rows(result), headers=face_table.FACE_COLUMNS)
        kept = rendering.matrix_data(len(result.faces), result.pairs, demo)
        # None for fewer than 3 faces (the API's "else empty"); the page hides the empty plot
        # (layout: ``show_matrix`` after the event)
        return payload, image, table, chart, rendering.matrix_plot_of(kept, trait), kept

    def rerender_matrix(self, kept: Any, trait: Any, request: gr.Request | None = None) -> Any:
        """Redraw the relation matrix for another trait from the last result of this session, kept on
        the server (``kept``: what :func:`~fdin.app.rendering.matrix_data` stored in the session's
        ``gr.State``; the client cannot send it). Only a known trait name is accepted. Cheap: at most
        :data:`~fdin.app.settings.MATRIX_MAX_FACES` faces, and rate-limited per client."""
        key = client_key(request)
        if key is not None and not self.redraw_limiter.allow(key):
            log.info("rerender_matrix: rate limited")
            raise gr.Error(RATE_LIMITED, title="Too many requests", print_exception=False)
        if not isinstance(trait, str) or trait not in self.traits:
            log.info("rerender_matrix: unknown trait (%s of %d chars)", type(trait).__name__,
                     len(trait) if isinstance(trait, str) else 0)
            raise gr.Error(UNKNOWN_TRAIT, print_exception=False)
        return rendering.matrix_plot_of(kept, trait)


__all__ = ["Handlers", "encode_image", "scratch_dir", "sweep_scratch"]

"""Video → facial dynamics → FDIN gender and age with relational importance (the predictor).

:class:`DynamicsAnalyzer` loads the models once (via :func:`fdin.models.pretrained.load_pretrained`) and keeps
no per-request state, so one instance can serve concurrent requests. :meth:`DynamicsAnalyzer.analyze`
returns a :class:`TraitResult` whose :meth:`~TraitResult.to_json_dict` gives the documented JSON.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fdin.dynamics import CHANNEL_NAMES, compute_dynamics
from fdin.errors import NoFaceError
from fdin.labels import SYNTHETIC_WEIGHTS_NOTE
from fdin.media.prefetch import Prefetch as _Prefetch  # the decode thread lives beside the decoder
from fdin.progress import ProgressFn, no_progress, report_steps
from fdin.regions import REGION_NAMES, pairs_to_matrix, top_relations
from fdin.results import (
    AgeEstimate,
    Attribution,
    Estimates,
    GenderEstimate,
    Importance,
    ModelProvenance,
    TrackCount,
)

#: Frames of the analysed track on which the appearance model runs (spread evenly over the track).
APPEARANCE_FRAMES = 5
#: Default of :class:`DynamicsAnalyzer`'s ``redetect_after`` (frames at the 25/s model rate: 2 s).
DEFAULT_REDETECT_AFTER = 50

#: One line the CLI prints on stderr next to results of weights trained on generated data.
SYNTHETIC_NOTE = "note: " + SYNTHETIC_WEIGHTS_NOTE


@dataclass(frozen=True)
class DynamicsPrediction:
    """What :meth:`DynamicsAnalyzer.predict_landmarks` gives: the dynamics (:class:`fdin.dynamics`
    result), FDIN's gender and age estimates, their relational importance, the stage timings (ms) and
    the per-estimate attribution (None for weights without an attribution reference)."""

    dynamics: Any
    estimates: Estimates
    importance: Importance
    timings_ms: dict[str, float]
    attribution: Attribution | None = None


@dataclass
class TraitResult:
    """Result of analysing one video. JSON keys = :data:`JSON_KEYS` (see :meth:`to_json_dict`).

    ``dynamics``: FDIN's estimates from facial motion; ``appearance``: the appearance model's, averaged
    over the frames that carried one; ``importance``: FDIN's (R, R) relational importance per target
    (:class:`fdin.results.Importance`, the model's learned weighting); ``attribution``: what each pair
    did to *these* estimates (:class:`fdin.results.Attribution`, None for weights without an
    attribution reference); ``top_relations``: the top pairs of the learned importance. Not in JSON
    unless asked: ``time`` (T,) seconds at the dynamics
    rate, ``trajectories`` (T, R, C) per-region displacement channels (``channel_names``),
    ``landmarks`` (N, 68, 2) pixel xy of the primary track and its ``frame_indices`` (N,).
    """

    frames_analyzed: int
    fps: float
    face_track: TrackCount
    dynamics: Estimates
    appearance: Estimates
    importance: Importance
    top_relations: list[dict[str, Any]]
    models: list[ModelProvenance]
    timings_ms: dict[str, float]
    source: str = ""
    time: np.ndarray | None = field(default=None, repr=False)
    trajectories: np.ndarray | None = field(default=None, repr=False)
    landmarks: np.ndarray | None = field(default=None, repr=False)
    frame_indices: np.ndarray | None = field(default=None, repr=False)
    channel_names: tuple[str, ...] = CHANNEL_NAMES
    attribution: Attribution | None = None

    JSON_KEYS = ("frames_analyzed", "fps", "face_track", "dynamics", "appearance", "importance",
                 "attribution", "top_relations", "models", "timings_ms")

    @property
    def synthetic_weights(self) -> bool:
        """Whether the FDIN weights were trained on data fdin generated."""
        return any(bool(m.synthetic_training_data) for m in self.models)

    def to_json_dict(self, *, include_arrays: bool = False) -> dict[str, Any]:
        out = {
            "frames_analyzed": int(self.frames_analyzed),
            "fps": self.fps,
            "face_track": self.face_track.to_json_dict(),
            "dynamics": self.dynamics.to_json_dict(),
            "appearance": self.appearance.to_json_dict(),
            "importance": self.importance.to_json_dict(),
            "attribution": None if self.attribution is None else self.attribution.to_json_dict(),
            "top_relations": list(self.top_relations),
            "models": [m.to_json_dict() for m in self.models],
            "timings_ms": dict(self.timings_ms),
        }
        if include_arrays:
            out["arrays"] = {
                "time": None if self.time is None else np.round(self.time, 4).tolist(),
                "trajectories": None if self.trajectories is None else np.round(self.trajectories, 5).tolist(),
                "channel_names": list(self.channel_names),
                "landmarks": None if self.landmarks is None else np.round(self.landmarks, 2).tolist(),
                "frame_indices": None if self.frame_indices is None else self.frame_indices.tolist(),
            }
        return out


class DynamicsAnalyzer:
    """Loads the FDIN gender and age models (and a face backend) once; analyses many videos.

    Args:
        gender_weights / age_weights: a folder, a ``weights/`` name, or a Hub repo id (with
            ``revision``, or per model ``gender_revision``/``age_revision``); defaults are the shipped
            synthetic-data weights.
        backend: perception backend name for :func:`fdin.perception.get_backend` (None = default);
            created lazily on the first video, so landmark-only use needs no face models.
        detect_every: run the detector every N (decoded) frames while tracking; landmarks are
            fitted on every frame. Default 10 = 0.4 s at the 25/s model rate: between detections every
            fit is checked (geometry and an appearance patch refreshed at each detection, see
            :mod:`fdin.perception.tracking`). Sparser detection (20) lost 6 frames of the benchmark
            clip at a smile apex (the patch drifts from the template as the expression changes).
        detect_downscale: while the face is followed, the detector sees a copy scaled by this (0.5:
            a 640x360 frame is searched at 320x180, ~4x cheaper); with no face followed, the full frame.
        sample_to_model_rate: decode only the frames nearest to the FDIN dynamics rate
            (``DynamicsConfig.fps``, 25/s) instead of every frame: the dynamics are resampled to that
            rate anyway, so a 30 fps clip costs 5/6 of the tracking work (False: every frame).
        use_onnx: run FDIN in ONNX Runtime (:mod:`fdin.models.fdin_onnx`: a verified ``model.onnx``
            in the weights folder, else one exported once into the cache), so analysis does not
            import torch (~5 s and ~0.6 GB); False: PyTorch.
        stream_decode: decode a path in a producer thread (:func:`fdin.media.open_video_stream`)
            while tracking consumes its frames, instead of decoding it first. Off by default: on 2
            cores the two threads contend for the GIL (PyAV re-takes it several times per frame while
            tracking runs Python), so decoding stretches over the whole tracking time and the landmark
            fits slow down; the sequential path was faster on the benchmark clip.
        decode_worker: decode a path in a worker *process* (:mod:`fdin.isolation.decoder`: same
            checks, limits and frames as :func:`fdin.media.read_video`, delivered through shared
            memory) while tracking consumes the frames: no GIL in common, so decoding runs on the
            other core. One worker is started with the analyzer (its start-up overlaps model loading)
            and reused. The default; it wins over ``stream_decode``.
        redetect_after: detection on demand (:func:`fdin.perception.track_faces`): while the face is
            followed, the detector runs only when a fit degrades or after this many frames (50 = 2 s
            at 25/s); None: the fixed ``detect_every`` schedule. Landmarks are fitted on every frame
            either way; the accuracy against per-frame detection is tested (``tests/test_accuracy.py``).

    Speed choices are measured in ``docs/benchmarks/speed.md`` (``python -m benchmarks.speed``).
    """

    def __init__(self, *, gender_weights: str | Path = "fdin-gender", age_weights: str | Path = "fdin-age",
                 revision: str | None = None, gender_revision: str | None = None,
                 age_revision: str | None = None, backend: str | None = None, detect_every: int = 10,
                 detect_downscale: float = 0.5, sample_to_model_rate: bool = True, use_onnx: bool = True,
                 stream_decode: bool = False, decode_worker: bool = True,
                 redetect_after: int | None = DEFAULT_REDETECT_AFTER) -> None:
        from fdin.models.fdin_onnx import load_fdin

        self.decode_worker = decode_worker
        self._decoders = None
        if decode_worker:
            from fdin.isolation.decoder import DecoderPool

            self._decoders = DecoderPool()
            self._decoders.prestart()  # its interpreter starts while the models below load

        self.gender = load_fdin(gender_weights, revision=gender_revision or revision, use_onnx=use_onnx)
        self.age = load_fdin(age_weights, revision=age_revision or revision, use_onnx=use_onnx)
        for loaded, target in ((self.gender, "gender"), (self.age, "age")):
            if loaded.target != target:
                raise ValueError(f"{loaded.source} is not an FDIN {target} model")
        self.dyn_config = self.gender.dynamics_config
        self.detect_downscale = detect_downscale
        self.sample_to_model_rate = sample_to_model_rate
        self.stream_decode = stream_decode
        self.backend_name = backend
        self.detect_every = detect_every
        self.redetect_after = redetect_after
        self._backend = None

    @property
    def backend(self) -> Any:
        if self._backend is None:
            from fdin.perception import get_backend

            self._backend = get_backend(self.backend_name)
        return self._backend

    def _load_backend_in_background(self) -> Any:
        """First video only: build the face backend (hashing and loading ~120 MB of models, ~0.7 s)
        in a thread while the video decodes (both release the GIL). Returns the thread, or None.
        Errors are not lost: the :attr:`backend` access after ``join()`` raises them again."""
        if self._backend is not None:
            return None
        import contextlib
        import threading

        def load() -> None:
            with contextlib.suppress(Exception):  # re-raised by the synchronous access in analyze()
                _ = self.backend

        thread = threading.Thread(target=load, name="fdin-load-backend", daemon=True)
        thread.start()
        return thread

    def load_models(self) -> None:
        """Load the face models now (otherwise the first video does): preloading calls this."""
        _ = self.backend

    def provenance(self) -> list[ModelProvenance]:
        return [ModelProvenance.from_dict({**lm.provenance(), "target": lm.config.get("target")})
                for lm in (self.gender, self.age)]

    # --- the dynamics part, usable without video (datasets, tests) ------------------------------
    def predict_landmarks(self, landmarks: np.ndarray, timestamps: np.ndarray) -> DynamicsPrediction:
        """(N, 68, 2) pixel landmarks at ``timestamps`` (s) → dynamics, predictions and importance.

        ``timings_ms`` in the result: ``dynamics`` (alignment, resampling, trajectories) and ``fdin``
        (both models' forward passes).
        """
        t0 = time.perf_counter()
        dyn = compute_dynamics(landmarks, timestamps=timestamps, config=self.dyn_config)
        x = np.ascontiguousarray(dyn.model_input, dtype=np.float32)[None]
        t1 = time.perf_counter()
        g = self.gender(x)
        a = self.age(x)
        t2 = time.perf_counter()
        p_female = float(1.0 / (1.0 + np.exp(-float(g["output"][0, 0]))))
        # per target whose weights carry an attribution reference (older weights do not)
        carried = {t: (out, model) for t, out, model in (("gender", g, self.gender), ("age", a, self.age))
                   if "pair_effect" in out and model.attribution_noise is not None}
        attribution = Attribution(
            tuple(REGION_NAMES),
            {t: pairs_to_matrix(np.asarray(out["pair_effect"][0], dtype=np.float64)) for t, (out, _) in carried.items()},
            {t: float(model.attribution_noise) for t, (_, model) in carried.items()}) if carried else None
        return DynamicsPrediction(
            dynamics=dyn,
            estimates=Estimates(GenderEstimate(p_female),
                                AgeEstimate(float(a["age_years"][0]), float(a["age_std_years"][0]))),
            importance=Importance(tuple(REGION_NAMES),
                                  {"gender": np.asarray(g["importance"][0], dtype=np.float64),
                                   "age": np.asarray(a["importance"][0], dtype=np.float64)}),
            timings_ms={"dynamics": (t1 - t0) * 1000, "fdin": (t2 - t1) * 1000},
            attribution=attribution,
        )

    def analyze(self, video_or_path: Any, *, progress: ProgressFn | None = None) -> TraitResult:
        """Analyse one video (a path, bytes-free :class:`fdin.media.Video`, or anything with
        ``frames``/``timestamps``/``fps``).

        A path is decoded first (:func:`fdin.media.read_video`), then tracked. With
        ``stream_decode=True`` it is instead decoded in a producer thread (:func:`fdin.media.open_video_stream`, same checks and
        limits as :func:`fdin.media.read_video`) while tracking consumes the frames, so on two or
        more cores decoding and tracking overlap: ``timings_ms["decode"]`` is the producer's own
        decode time, ``track`` the tracking wall time (it includes any wait for frames), and the
        stages overlap, so they can add up to more than ``total`` (the wall time of the call). A
        :class:`~fdin.media.Video` (e.g. decoded in an isolated child by the app) is used as is and
        ``decode`` is 0. (Measured in ``docs/benchmarks/speed.md``: the overlap does not pay on two
        cores, because the decoder thread and tracking contend for the GIL and the CPU.)

        ``progress(stage, fraction)`` hears "decode", "track" and "dynamics" (:mod:`fdin.progress`).

        Raises:
            NoFaceError: no face track, or one shorter than :data:`fdin.dynamics.MIN_DURATION_S`.
            MediaError: the file cannot be used as a video.
        """
        from fdin.perception import primary_track, track_appearance, track_faces
        from fdin.perception.appearance import estimate_appearance

        timings: dict[str, float] = {}
        t_total = time.perf_counter()
        report = progress or no_progress

        report("decode", 0.0)
        prefetch: _Prefetch | None = None
        child: Any = None
        worker: Any = None
        loading = None
        if isinstance(video_or_path, (str, Path)) and self._decoders is not None:
            from fdin.media import DecodeLimits

            worker = self._decoders.acquire()
            try:
                # one decoder thread: the worker has one core, tracking the other (measured ~8 % faster
                # than two threads competing with the tracker, docs/benchmarks/speed.md)
                child = worker.decode(video_or_path, DecodeLimits.of(
                    None, target_fps=self.dyn_config.fps if self.sample_to_model_rate else None, threads=1))
            except BaseException:
                self._decoders.release(worker)
                raise
            source, frames_in, fps_hint = str(video_or_path), child, child.nominal_fps
        elif isinstance(video_or_path, (str, Path)) and not self.stream_decode:
            loading = self._load_backend_in_background()
            from fdin.media import read_video

            t0 = time.perf_counter()
            video = read_video(video_or_path,
                               target_fps=self.dyn_config.fps if self.sample_to_model_rate else None)
            timings["decode"] = (time.perf_counter() - t0) * 1000
            source, frames_in, fps_hint = str(video_or_path), video.frames, float(video.fps)
            report("decode", 1.0)
        elif isinstance(video_or_path, (str, Path)):
            from fdin.media import open_video_stream

            # Up-front checks (size, type, whitelist, declared size) raise here, before any thread.
            stream = open_video_stream(video_or_path,
                                       target_fps=self.dyn_config.fps if self.sample_to_model_rate else None)
            prefetch = _Prefetch(stream)
            source, frames_in, fps_hint = str(video_or_path), prefetch, stream.nominal_fps
            loading = self._load_backend_in_background()
        else:
            video, source = video_or_path, getattr(video_or_path, "path", "") or ""
            frames_in, fps_hint = video.frames, float(video.fps)
            timings["decode"] = 0.0
            report("decode", 1.0)
        try:
            if loading is not None:
                t0 = time.perf_counter()
                loading.join()
                timings["load_models"] = (time.perf_counter() - t0) * 1000
            elif child is not None and self._backend is None:  # first video: load while the worker decodes
                t0 = time.perf_counter()
                _ = self.backend
                timings["load_models"] = (time.perf_counter() - t0) * 1000

            t0 = time.perf_counter()
            tracks = track_faces(frames_in, self.backend, detect_every=self.detect_every, fps=fps_hint,
                                 detect_downscale=self.detect_downscale, redetect_after=self.redetect_after,
                                 appearance_frames=0, progress=report_steps(report, "track"))
            if prefetch is not None:
                len(prefetch)  # read to the end (a tracker may stop early); raises a decode error
            if child is not None:
                video = child.video()  # to the end; re-raises the worker's decode error
        finally:
            if prefetch is not None:
                prefetch.close()
            if worker is not None:
                if not child.complete:  # stopped mid-video: its remaining output must not reach the next one
                    worker.kill()
                self._decoders.release(worker)
        if child is not None:
            timings["decode"] = child.decode_s * 1000
            report("decode", 1.0)
        if prefetch is not None:
            video = prefetch.video()  # re-raises a decode error; same Video as read_video
            timings["decode"] = prefetch.decode_s * 1000
            report("decode", 1.0)
        frames, timestamps = video.frames, np.asarray(video.timestamps, dtype=np.float64)
        track = primary_track(tracks)
        timings["track"] = (time.perf_counter() - t0) * 1000
        if track is None or len(track) == 0:
            raise NoFaceError(f"No usable face was found in {Path(source).name or 'the video'} "
                              f"({len(frames)} frames); FDIN needs one clearly visible face.")
        idx = np.asarray(track.frame_indices)
        landmarks = track.landmarks_array()

        t0 = time.perf_counter()
        report("dynamics", 0.0)
        pred = self.predict_landmarks(landmarks, timestamps[idx])
        timings.update(pred.timings_ms)
        report("dynamics", 1.0)

        t0 = time.perf_counter()
        # apparent gender/age on the analysed track only (footage breaks into several tracks; the
        # others' estimates were never reported): per-track mean and spread
        estimate_appearance([track], frames, self.backend, APPEARANCE_FRAMES)
        summary = track_appearance(track)
        appearance = Estimates.from_track_summary(summary)
        timings["appearance"] = (time.perf_counter() - t0) * 1000
        timings["total"] = (time.perf_counter() - t_total) * 1000
        dyn = pred.dynamics
        return TraitResult(
            frames_analyzed=len(frames),
            fps=round(float(video.fps), 3),
            face_track=TrackCount(found=len(track), lost=len(track.lost_frames)),
            dynamics=pred.estimates,
            appearance=appearance,
            importance=pred.importance,
            attribution=pred.attribution,
            top_relations=top_relations(pred.importance.matrix, k=5),
            models=self.provenance(),
            timings_ms={k: round(v, 1) for k, v in timings.items()},
            source=source, time=dyn.time, trajectories=dyn.trajectories, landmarks=landmarks,
            frame_indices=idx,
        )


__all__ = ["SYNTHETIC_NOTE", "DynamicsAnalyzer", "TraitResult"]

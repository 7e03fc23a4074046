"""Speed benchmark: ``python -m benchmarks.speed [--quick] [--repeats N] [--out docs/benchmarks/speed.md]``.

One run, two clips, every figure against MediaPipe FaceMesh measured in the same run:

* **generated** clip: a real face photo (scikit-image's astronaut) animated by synthetic smiles with
  gentle head motion, 640x360 at 30 fps, 20 s;
* **footage**: the most realistic footage this machine can make (:mod:`benchmarks.footage`: a real
  person from insightface's t1 photo, 1/f head motion with fast 3D turns, zoom, lighting changes,
  blur, noise, H.264 at 900 kbit/s; 640x360 at 23.976 fps, 19.7 s). Both are generated at run time
  into the cache folder, never committed. Neither is real camera footage (none exists here).

Per clip: **decode** only; **FaceMesh** (decode + landmarks, video mode, model load excluded) in the
bench-only venv ``.venv-bench``, one pass interleaved before each **analyze** run (warm analyzer,
stage by stage; throughput = source frames / wall time); **cli** (``python -m fdin analyze`` start to
exit, peak RSS); **accuracy** (:func:`measure_accuracy`: landmarks against per-frame detect + fit,
old and new tracker, FDIN outputs). Then: **relate** latency, **app** cold start, **first_request**
(the app's preloading: first relation request and first video analysis after start),
**concurrency** (two simultaneous analyses / one), **grid** (FDIN cost against R and T).

Every timing is repeated and reported as the median (all samples are kept in the JSON next to the
report). Timings are wall-clock on a shared machine: look at the load average printed with them.
The targets (issue 15) are checked from ratios of the same run; unit tests never assert timings.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
BENCH_VENV = REPO / ".venv-bench"
BENCH_PYTHON = BENCH_VENV / "bin" / "python"
FACEMESH_SCRIPT = Path(__file__).resolve().parent / "facemesh_peer.py"
BENCH_VENV_HINT = ("make bench  (or: python3 -m venv .venv-bench && .venv-bench/bin/pip install "
                   "-r requirements-bench.txt)")
CLIP_VERSION = 2
TARGETS = {  # issue 15 (the earlier issue-6 limits were 1.0x, 0.25x and 2 GB)
    "footage_throughput_vs_facemesh": ("**footage**: warm analyze throughput / FaceMesh pass", ">=", 1.5),
    "throughput_vs_facemesh": ("generated clip: warm analyze throughput / FaceMesh pass", ">=", 1.5),
    "footage_cli_vs_duration": ("**footage**: `python -m fdin analyze` start to exit / clip duration", "<=", 0.12),
    "cli_vs_duration": ("generated clip: `python -m fdin analyze` start to exit / clip duration", "<=", 0.12),
    "first_relate_s": ("app: first relation request after start (s)", "<=", 1.5),
    "first_analysis_load_s": ("app: model loading paid by the first video analysis (s)", "<=", 0.05),
    "concurrency_ratio": ("two simultaneous analyses / one alone (wall)", "<=", 1.3),
    "footage_landmark_vs_old": ("**footage**: landmark error vs per-frame detect+fit, new - old (IOD)", "<=", 0.01),
    "landmark_vs_old": ("generated clip: landmark error vs per-frame detect+fit, new - old (IOD)", "<=", 0.01),
    "fdin_change": ("generated clip: FDIN p(female) change, new vs old pipeline", "<=", 0.02),
    "footage_fdin_change": ("**footage**: FDIN p(female) change, new vs old pipeline", "<=", 0.02),
    "peak_rss_gb": ("peak RSS of `python -m fdin analyze` (GB)", "<=", 1.0),
    "relate_s": ("photo-pair `relate` after warm-up (s)", "<=", 0.3),
    "app_cold_start_s": ("app cold start to HTTP 200 (s)", "<=", 10.0),
}
STAGES = ("decode", "detect", "landmarks", "dynamics", "fdin", "appearance", "other")
STAGE_LABELS = {"landmarks": "track/landmarks"}  # landmark fits + tracking checks + pose per frame
STAGE_COLOURS = {"decode": "#1f77b4", "detect": "#d62728", "landmarks": "#ff7f0e", "dynamics": "#2ca02c",
                 "fdin": "#9467bd", "appearance": "#8c564b", "other": "#7f7f7f",
                 "facemesh": "#17becf"}


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return env


# --- the clip ----------------------------------------------------------------------------------------
def bench_photo(width: int = 640, height: int = 360) -> np.ndarray:
    """(height, width, 3) uint8 RGB: scikit-image's astronaut photo (real, public domain), top 16:9
    band (face, shoulders, flag and rocket; one face), resized like a webcam frame."""
    import cv2
    from skimage.data import astronaut

    img = astronaut()  # 512 x 512
    band = img[: round(512 * 9 / 16)]
    if width / height < 16 / 9:  # narrower output: crop the sides around the face
        w = round(band.shape[0] * width / height)
        x0 = int(np.clip(260 - w // 2, 0, 512 - w))
        band = band[:, x0:x0 + w]
    interp = cv2.INTER_AREA if width < band.shape[1] else cv2.INTER_CUBIC
    return np.ascontiguousarray(cv2.resize(band, (width, height), interpolation=interp))


def photo_landmarks(image: np.ndarray) -> np.ndarray:
    """(68, 2) landmarks of the largest face: fdin's perception layer, else dlib directly (the clip
    only needs a plausible mesh to animate, so it does not depend on the backend being measured)."""
    try:
        from fdin.perception import detect_faces
    except ImportError:
        import dlib
        import face_recognition_models

        rects = dlib.get_frontal_face_detector()(image, 1)
        if not rects:
            raise RuntimeError("dlib found no face in the benchmark photo") from None
        rect = max(rects, key=lambda r: r.area())
        shape = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())(image, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
    faces = detect_faces(image)
    if not faces:
        raise RuntimeError("the face backend found no face in the benchmark photo")
    return np.asarray(max(faces, key=lambda f: f.area).landmarks, dtype=np.float64)


def long_smile_sequence(seconds: float, fps: float, seed: int = 0, *, head_motion: bool = True) -> np.ndarray:
    """(T, 68, 2) landmarks: consecutive synthetic smiles (:func:`fdin.synth.smile_sequence`) chained
    from one neutral face, plus (``head_motion``) slow continuous head motion (±0.15 IOD shift, ±4°
    roll, ±3 % scale)."""
    from fdin.geometry import interocular_distance
    from fdin.synth import smile_sequence

    n = round(seconds * fps)
    parts, total, k = [], 0, 0
    base = None
    while total < n:
        seq = smile_sequence(seed=seed + k, fps=fps, head_motion=False).astype(np.float64)
        if base is None:
            base = seq[0]
        parts.append(seq - seq[:1] + base[None])
        total += len(seq)
        k += 1
    seq = np.concatenate(parts)[:n]
    if not head_motion:
        return seq
    t = np.arange(n) / fps
    iod = float(interocular_distance(base))
    centre = base.mean(0)
    angle = np.deg2rad(4.0 * np.sin(2 * np.pi * t / 7.3) + 1.5 * np.sin(2 * np.pi * t / 2.9))
    scale = 1.0 + 0.03 * np.sin(2 * np.pi * t / 5.1)
    shift = 0.15 * iod * np.stack([np.sin(2 * np.pi * t / 4.3), 0.6 * np.sin(2 * np.pi * t / 3.7 + 1.0)], -1)
    cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
    rel = seq - centre
    out = np.stack([cos[:, None] * rel[..., 0] - sin[:, None] * rel[..., 1],
                    sin[:, None] * rel[..., 0] + cos[:, None] * rel[..., 1]], -1)
    return out + centre + shift[:, None]


def make_clip(path: str | Path, *, seconds: float = 20.0, fps: float = 30.0, width: int = 640,
              height: int = 360, seed: int = 0) -> Path:
    """Write the benchmark clip (H.264 MP4) to ``path``."""
    from fdin.media import write_video
    from fdin.synth import animate_photo

    photo = bench_photo(width, height)
    frames = animate_photo(photo, photo_landmarks(photo), long_smile_sequence(seconds, fps, seed))
    return Path(write_video(frames, fps, path))


def cached_media(name: str, make: Callable[[Path], Any]) -> Path:
    """``<cache>/bench/<name>`` (:func:`fdin.config.cache_dir`), made once by ``make(tmp_path)``."""
    from fdin.config import cache_dir

    cache = cache_dir("bench")
    path = cache / name
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}{path.suffix}")
        make(tmp)
        os.replace(tmp, path)
    return path


def cached_clip(*, seconds: float, fps: float, width: int, height: int, seed: int = 0) -> Path:
    return cached_media(f"clip-v{CLIP_VERSION}-{seconds:g}s-{fps:g}fps-{width}x{height}-s{seed}.mp4",
                        lambda tmp: make_clip(tmp, seconds=seconds, fps=fps, width=width, height=height, seed=seed))


# --- measurements ------------------------------------------------------------------------------------
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


def facemesh_available() -> bool:
    return BENCH_PYTHON.is_file()


def measure_facemesh(clip: Path, repeats: int) -> dict[str, Any]:
    """``repeats`` FaceMesh passes (after one warm-up pass) in one ``.venv-bench`` subprocess."""
    if not facemesh_available():
        return {"skipped": f"peer not measured: {BENCH_VENV.name} is missing; create it with {BENCH_VENV_HINT}"}
    proc = subprocess.run([str(BENCH_PYTHON), str(FACEMESH_SCRIPT), str(clip), "--repeats", str(repeats)],
                          capture_output=True, text=True, timeout=1800, env={**_env(), "PYTHONPATH": ""})
    if proc.returncode != 0:
        return {"error": f"FaceMesh subprocess failed ({proc.returncode}): {proc.stderr.strip()[-600:]}"}
    return summarise_facemesh(json.loads(proc.stdout.strip().splitlines()[-1]))


def summarise_facemesh(data: dict[str, Any]) -> dict[str, Any]:
    runs, frames = data["runs"], data["frames"]
    wall = [r["wall_s"] for r in runs]
    mesh = [r["facemesh_s"] for r in runs]
    dec = [r["decode_s"] for r in runs]
    cpu = [r["cpu_s"] for r in runs if "cpu_s" in r]
    return {**data, "median_wall_s": median(wall), "median_facemesh_s": median(mesh), "median_decode_s": median(dec),
            "median_cpu_s": median(cpu) if cpu else None,
            "pass_fps": frames / median(wall), "facemesh_only_fps": frames / median(mesh),
            "faces_found_fraction": runs[-1]["faces"] / max(frames, 1)}


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


def _vm_hwm(pid: int) -> int:
    """Peak resident bytes (``VmHWM``) of the process image now running as ``pid`` (0 if unknown)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _run_child(cmd: list[str], *, timeout: float, cwd: Path = REPO) -> tuple[float, int, int, str]:
    """Run ``cmd``; returns (wall s, exit code, peak RSS bytes, stderr tail).

    Peak RSS is the child's ``VmHWM`` polled from /proc until it exits: ``wait4``'s ``ru_maxrss``
    would also count the benchmark process's own pages, which the child shares between fork and
    exec (it reported this 1 GB process's size for every child). Falls back to ``ru_maxrss``."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=_env(), stdout=subprocess.DEVNULL, stderr=err)
        deadline = t0 + timeout
        hwm = 0
        while True:
            hwm = max(hwm, _vm_hwm(proc.pid))
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.005)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        tail = err.read().decode(errors="replace").strip()[-800:]
    return wall, proc.returncode, hwm or int(usage.ru_maxrss) * 1024, tail


def measure_cli(clip: Path, repeats: int, duration_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "fdin", "-q", "analyze", str(clip), "--json", str(Path(tmp) / "out.json")]
        first = _run_child(cmd, timeout=900)
        if first[1] != 0:
            return {"error": f"`python -m fdin analyze` exited {first[1]}: {first[3]}"}
        runs = [_run_child(cmd, timeout=900) for _ in range(repeats)]
        failed = [r for r in runs if r[1] != 0]
        if failed:
            return {"error": f"`python -m fdin analyze` exited {failed[0][1]}: {failed[0][3]}"}
        wall = [r[0] for r in runs]
        rss = [r[2] for r in (first, *runs)]
        out = json.loads((Path(tmp) / "out.json").read_text())
    return {"command": "python -m fdin -q analyze CLIP --json OUT", "first_run_s": first[0], "wall_s": wall,
            "median_s": median(wall), "ratio_to_duration": median(wall) / duration_s,
            "peak_rss_bytes": max(rss), "rss_bytes": rss, "timings_ms": out.get("timings_ms", {})}


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


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (``/proc/<pid>/stat``)."""
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def measure_concurrency(clip: Path, repeats: int) -> dict[str, Any]:
    """The app's path, one analysis alone against two started together (two threads, as the app's
    two model slots run them): each decodes the upload in the sandboxed child with the app's limits
    (:func:`fdin.app.settings.video_read_kwargs`) and analyses it with the app's analyzer
    (:class:`fdin.app.predictors.LazyPredictors`: analyses in worker processes). The same with the
    analyses on threads of one process (``FDIN_ANALYSIS_WORKERS=0``, before) for comparison, and the
    CPU one analysis keeps busy: two analyses on two cores cannot take less than
    max(1, CPU seconds / wall seconds of one) times one, so that is the floor of the ratio."""
    import resource
    import threading

    from fdin.analysis_pool import PooledAnalyzer
    from fdin.analyze import DynamicsAnalyzer
    from fdin.app.settings import analysis_workers, video_read_kwargs
    from fdin.isolation import read_video_isolated

    def run_path(analyzer: Any) -> None:
        analyzer.analyze(read_video_isolated(clip, **video_read_kwargs()))

    def pair(analyzer: Any) -> float:
        errors: list[BaseException] = []
        barrier = threading.Barrier(2)

        def run() -> None:
            barrier.wait()
            try:
                run_path(analyzer)
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=run) for _ in range(2)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return time.perf_counter() - t0

    def worker_pids(analyzer: Any) -> list[int]:
        return [w.proc.pid for w in getattr(getattr(analyzer, "pool", None), "_idle", [])]

    def one(analyzer: Any) -> tuple[float, float]:
        pids = worker_pids(analyzer)
        before = {pid: _proc_cpu_s(pid) for pid in pids}
        r0, c0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        run_path(analyzer)
        wall = time.perf_counter() - t0
        r1, c1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = sum((b.ru_utime - a.ru_utime) + (b.ru_stime - a.ru_stime) for a, b in ((r0, r1), (c0, c1)))
        cpu += sum(_proc_cpu_s(pid) - before[pid] for pid in pids)  # the worker that ran it (idle ones add ~0)
        return wall, cpu

    out: dict[str, Any] = {"path": "read_video_isolated (app limits) + the app's analyzer",
                           "workers": analysis_workers()}
    for name, analyzer in (("pool", PooledAnalyzer(workers=2, decode_worker=False)),
                           ("threads", DynamicsAnalyzer(decode_worker=False))):
        analyzer.load_models()
        run_path(analyzer)
        pair(analyzer)  # warm-up
        walls, cpus, twos = [], [], []
        for _ in range(repeats):
            wall, cpu = one(analyzer)
            walls.append(wall)
            cpus.append(cpu)
            twos.append(pair(analyzer))
        out[name] = {"one_s": walls, "two_s": twos, "one_cpu_s": cpus, "ratio": median(twos) / median(walls),
                     "cores_one": median(cpus) / median(walls)}
        if name == "pool":
            analyzer.close()
    pool = out["pool"]
    out.update(one_s=pool["one_s"], two_s=pool["two_s"], ratio=pool["ratio"],
               floor=max(1.0, pool["cores_one"]))
    return out


_FIRST_REQUEST = """
import json, sys, time
t0 = time.perf_counter()
from benchmarks.speed import bench_photo
from fdin.app.predictors import LazyPredictors, preload
from fdin.app.settings import video_read_kwargs
from fdin.isolation import read_video_isolated
import cv2, numpy as np
wait, clip = float(sys.argv[1]), sys.argv[2]
p = LazyPredictors()
thread = preload(p)
time.sleep(max(0.0, wait - (time.perf_counter() - t0)))
a = bench_photo(480, 360)
b = np.ascontiguousarray(cv2.resize(bench_photo(360, 360)[:, ::-1], (300, 300)))
t1 = time.perf_counter()
p.relation().relate(a, b)
first_relate = time.perf_counter() - t1
thread.join()
preload_done = time.perf_counter() - t0
t2 = time.perf_counter()
r = p.analyzer().analyze(read_video_isolated(clip, **video_read_kwargs()))  # the app's path
print(json.dumps({"first_relate_s": first_relate, "request_at_s": t1 - t0, "preload_done_s": preload_done,
                  "first_analysis_s": time.perf_counter() - t2,
                  "first_analysis_load_s": r.timings_ms.get("load_models", 0.0) / 1000.0,
                  "first_analysis_timings_ms": r.timings_ms}))
"""


def measure_first_request(clip: Path, app_ready_s: float) -> dict[str, Any]:
    """In a fresh process: start the app's predictors with :func:`fdin.app.predictors.preload`, send
    the first relation request when the app would answer HTTP (``app_ready_s``, measured by
    :func:`measure_app`), then the first video analysis; the load it still pays is reported."""
    proc = subprocess.run([sys.executable, "-c", _FIRST_REQUEST, f"{app_ready_s:.3f}", str(clip)],
                          capture_output=True, text=True, timeout=600, cwd=REPO, env=_env())
    if proc.returncode != 0:
        return {"error": f"first-request child failed ({proc.returncode}): {proc.stderr.strip()[-600:]}"}
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "app_ready_s": app_ready_s}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and its descendants (Linux /proc)."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{p}/task").iterdir():
                with contextlib.suppress(OSError, ValueError):
                    todo += [int(c) for c in (task / "children").read_text().split()]
    return total


def measure_app(repeats: int, timeout: float = 180.0) -> dict[str, Any]:
    app = REPO / "app.py"
    if not app.is_file():
        return {"skipped": "app.py not present"}
    samples, rss = [], []
    for _ in range(repeats):
        port = _free_port()
        with tempfile.TemporaryFile() as log:
            t0 = time.perf_counter()
            proc = subprocess.Popen([sys.executable, str(app), "--host", "127.0.0.1", "--port", str(port)],
                                    cwd=REPO, env=_env(), stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            ready = None
            try:
                while time.perf_counter() - t0 < timeout and proc.poll() is None:
                    try:
                        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
                            if resp.status == 200:
                                ready = time.perf_counter() - t0
                                break
                    except OSError:
                        time.sleep(0.05)
                if ready is not None:
                    rss.append(_tree_rss(proc.pid))
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=15)
            if ready is None:
                log.seek(0)
                tail = log.read().decode(errors="replace").strip()[-800:]
                return {"error": f"the app did not answer HTTP 200 within {timeout:g} s "
                                 f"(exit {proc.returncode}): {tail}"}
            samples.append(ready)
    return {"samples_s": samples, "median_s": median(samples), "rss_at_ready_bytes": rss}


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


# --- targets, report ---------------------------------------------------------------------------------
def evaluate(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    fm, an = results.get("facemesh", {}), results.get("analyze", {})
    cli, rel, app = results.get("cli", {}), results.get("relate", {}), results.get("app", {})
    ft = results.get("footage", {})
    ffm, fan, fcli = ft.get("facemesh", {}), ft.get("analyze", {}), ft.get("cli", {})
    first, conc, acc = results.get("first_request", {}), results.get("concurrency", {}), results.get("accuracy", {})

    def ratio(a: dict[str, Any], f: dict[str, Any]) -> float | None:
        return a["throughput_fps"] / f["pass_fps"] if "pass_fps" in f and "throughput_fps" in a else None

    def acc_value(name: str, key: str) -> float | None:
        part = acc.get(name, {})
        return part.get(key)

    rss = [c["peak_rss_bytes"] for c in (cli, fcli) if "peak_rss_bytes" in c]
    values = {
        "footage_throughput_vs_facemesh": ratio(fan, ffm),
        "throughput_vs_facemesh": ratio(an, fm),
        "footage_cli_vs_duration": fcli.get("ratio_to_duration"),
        "cli_vs_duration": cli.get("ratio_to_duration"),
        "first_relate_s": first.get("first_relate_s"),
        "first_analysis_load_s": first.get("first_analysis_load_s"),
        "concurrency_ratio": conc.get("ratio"),
        "footage_landmark_vs_old": acc_value("footage", "new_minus_old_iod"),
        "landmark_vs_old": acc_value("generated", "new_minus_old_iod"),
        "fdin_change": acc_value("generated", "p_female_change"),
        "footage_fdin_change": acc_value("footage", "p_female_change"),
        "relate_s": rel.get("median_s"),
        "app_cold_start_s": app.get("median_s"),
        "peak_rss_gb": max(rss) / 1e9 if rss else None,
    }
    for key, (label, op, limit) in TARGETS.items():
        v = values[key]
        met = None if v is None else (v >= limit if op == ">=" else v <= limit)
        out[key] = {"label": label, "value": v, "limit": limit, "op": op, "met": met}
    return out


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def _status(met: bool | None) -> str:
    return "not measured" if met is None else ("met" if met else "**not met**")


def stage_svg(results: dict[str, Any]) -> str:
    """Horizontal stacked bars (ms for the whole clip): fdin analyze by stage, FaceMesh pass, decode."""
    bars: list[tuple[str, list[tuple[str, float]]]] = []
    an, fm, dec = results.get("analyze", {}), results.get("facemesh", {}), results.get("decode", {})
    if "stages_ms" in an:
        bars.append(("fdin analyze", [(s, an["stages_ms"][s]) for s in STAGES]))
    if "median_wall_s" in fm:
        bars.append(("FaceMesh pass", [("decode", fm["median_decode_s"] * 1000),
                                       ("facemesh", fm["median_facemesh_s"] * 1000)]))
    for key, label in (("all_frames", "decode, all frames"), ("model_rate", "decode, sampled")):
        if key in dec:
            bars.append((label, [("decode", dec[key]["median_s"] * 1000)]))
    if not bars:
        return ""
    width, left, right, bar_h, gap, top = 820, 150, 90, 26, 14, 40
    total_max = max(sum(v for _, v in segs) for _, segs in bars) or 1.0
    scale = (width - left - right) / total_max
    height = top + len(bars) * (bar_h + gap) + 70
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="DejaVu Sans, Arial, sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{left}" y="22" font-size="14" font-weight="bold">Wall time for the whole clip '
             f'({results.get("clip", {}).get("frames", "?")} frames), median ms</text>']
    for i, (label, segs) in enumerate(bars):
        y = top + i * (bar_h + gap)
        parts.append(f'<text x="{left - 8}" y="{y + bar_h * 0.68:.1f}" text-anchor="end">{label}</text>')
        x = float(left)
        for stage, ms in segs:
            w = ms * scale
            if w <= 0:
                continue
            parts.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                         f'fill="{STAGE_COLOURS[stage]}"><title>{STAGE_LABELS.get(stage, stage)}: {ms:.0f} ms'
                         '</title></rect>')
            if w > 34:
                parts.append(f'<text x="{x + w / 2:.1f}" y="{y + bar_h * 0.68:.1f}" text-anchor="middle" '
                             f'fill="white" font-size="10">{ms:.0f}</text>')
            x += w
        parts.append(f'<text x="{x + 6:.1f}" y="{y + bar_h * 0.68:.1f}">{sum(v for _, v in segs):.0f} ms</text>')
    y = top + len(bars) * (bar_h + gap) + 16
    x = float(left)
    for stage in (*STAGES, "facemesh"):
        parts.append(f'<rect x="{x:.1f}" y="{y}" width="12" height="12" fill="{STAGE_COLOURS[stage]}"/>')
        label = STAGE_LABELS.get(stage, stage)
        parts.append(f'<text x="{x + 16:.1f}" y="{y + 10}">{label}</text>')
        x += 16 + 7 * len(label) + 14
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _bar(value: float, total: float, width: int = 30) -> str:
    n = round(width * value / total) if total > 0 else 0
    return "█" * n


def render_issue15(results: dict[str, Any]) -> list[str]:
    """The headline table: both clips side by side (warm, cold, stages, accuracy), then the app."""
    clips = {"generated": results, "footage": results.get("footage", {})}
    acc = results.get("accuracy", {})
    cols = [k for k, v in clips.items() if v.get("clip")]
    if not cols:
        return []

    def cell(name: str, fn: Callable[[dict[str, Any]], str]) -> str:
        try:
            return fn(clips[name])
        except (KeyError, TypeError, ZeroDivisionError, ValueError):
            return "—"

    def fm_s(c: dict[str, Any]) -> float:
        return c["facemesh"]["median_wall_s"]

    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("clip", lambda c: f"{c['clip']['frames']} frames, {c['clip']['width']}x{c['clip']['height']}, "
                           f"{c['clip']['fps']} fps, {c['clip']['duration_s']} s"),
        ("MediaPipe FaceMesh: decode + 468 landmarks, video mode, model load excluded",
         lambda c: f"{fm_s(c):.2f} s = 1.00x"),
        ("**fdin analyze, models warm** (in-process, median)",
         lambda c: f"**{c['analyze']['median_wall_s']:.2f} s = {fm_s(c) / c['analyze']['median_wall_s']:.2f}x**"),
        ("  of which: decode in the worker process (overlaps tracking)",
         lambda c: f"{c['analyze']['runs'][-1]['timings_ms']['decode'] / 1000:.2f} s"),
        ("  of which: tracking (waits for frames included) / ms per frame",
         lambda c: f"{c['analyze']['runs'][-1]['timings_ms']['track'] / 1000:.2f} s / "
                   f"{c['analyze']['runs'][-1]['timings_ms']['track'] / c['analyze']['frames_analyzed']:.2f} ms"),
        ("  of which: dynamics + FDIN + appearance summary",
         lambda c: "{:.3f} s".format(sum(c["analyze"]["runs"][-1]["timings_ms"].get(k, 0)
                                         for k in ("dynamics", "fdin", "appearance")) / 1000)),
        ("per-pair ratios (FaceMesh s / fdin s), interleaved runs",
         lambda c: ", ".join(f"{x:.2f}" for x in c["facemesh"]["paired_ratios"])),
        ("fdin analyze first call in-process (models load while the worker decodes)",
         lambda c: f"{c['analyze']['first_run_s']:.2f} s (+ {c['analyze']['load_s']:.2f} s FDIN load before)"),
        ("**`python -m fdin analyze` process, start to exit** (median)",
         lambda c: f"**{c['cli']['median_s']:.2f} s = {c['cli']['ratio_to_duration']:.3f}x the clip**; "
                   f"peak RSS {c['cli']['peak_rss_bytes'] / 1e9:.2f} GB"),
    ]
    lines = ["## Issue 15: both clips, one run", "",
             "**generated** = the astronaut photo animated by `fdin.synth` smiles with gentle sinusoidal head "
             "motion (`benchmarks.speed.make_clip`). **footage** = the most realistic footage this machine can "
             "make (`benchmarks/footage.py`): a real person cut from insightface's t1 photo, chained smiles, "
             "1/f head motion with fast 3D turns (planar head), zoom 0.7-1.4x, lighting gain/gamma/moving "
             "shading with a sudden light change, motion blur, sensor noise, H.264 at 900 kbit/s, 640x360 at "
             "23.976 fps, 19.7 s. Neither is real camera footage: none exists on this machine.", "",
             "| measurement | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for label, fn in rows:
        lines.append(f"| {label} | " + " | ".join(cell(n, fn) for n in cols) + " |")
    for name_key, label in (("old", "fixed schedule (before)"), ("new", "detection on demand (now)")):
        lines.append(f"| landmark error vs per-frame detect+fit, {label}: mean / p95 (IOD) | " + " | ".join(
            (lambda a: f"{a[name_key]['error']['mean_iod']:.4f} / {a[name_key]['error']['p95_iod']:.4f}"
             if name_key in a else "—")(acc.get(n, {})) for n in cols) + " |")
    lines.append("| FDIN p(female) / age: per-frame reference · before · now | " + " | ".join(
        (lambda a: " · ".join(f"{a[k]['p_female']:.3f} / {a[k]['age_years']:.1f}" for k in ("reference", "old", "new"))
         if "new" in a else "—")(acc.get(n, {})) for n in cols) + " |")
    first, conc = results.get("first_request", {}), results.get("concurrency", {})
    lines += [""]
    if "first_relate_s" in first:
        lines.append(f"App (models preloaded in a background thread at start): first relation request, sent when "
                     f"the app answers HTTP ({first['app_ready_s']:.1f} s after start), took "
                     f"**{first['first_relate_s']:.2f} s**; preloading finished {first['preload_done_s']:.1f} s after "
                     f"start; the first video analysis then paid {first['first_analysis_load_s']:.2f} s of model "
                     f"loading ({first['first_analysis_s']:.2f} s in all).")
    if "ratio" in conc and "pool" in conc:
        pool, threads = conc["pool"], conc["threads"]
        lines.append(f"Two simultaneous analyses of the footage on the app's path (upload decoded in the sandboxed "
                     f"child, then the app's analyzer; two threads, as the app's two model slots): "
                     f"{median(pool['two_s']):.2f} s against {median(pool['one_s']):.2f} s for one alone = "
                     f"**{pool['ratio']:.2f}x** with the analyses in worker processes (now); "
                     f"{median(threads['two_s']):.2f} s against {median(threads['one_s']):.2f} s = "
                     f"{threads['ratio']:.2f}x with both on threads of the app's process (before: the per-frame "
                     f"work holds the GIL). One analysis keeps {pool['cores_one']:.2f} cores busy "
                     f"({median(pool['one_cpu_s']):.2f} CPU s in {median(pool['one_s']):.2f} s, the sandboxed "
                     f"decode's threads included), so two on two cores cannot take less than "
                     f"{conc['floor']:.2f}x one.")
    return [*lines, ""]


def render_markdown(results: dict[str, Any], svg_name: str | None) -> str:
    clip, dec, fm = results.get("clip", {}), results.get("decode", {}), results.get("facemesh", {})
    an, rel, cli, app, grid = (results.get(k, {}) for k in ("analyze", "relate", "cli", "app", "grid"))
    targets = results["targets"]
    m = results["machine"]
    lines = [
        "# fdin speed benchmark", "",
        f"Generated by `{results['command']}` on {results['date']} (fdin {results['fdin_version']}). "
        "Medians of repeated runs; every sample is in the JSON next to this file. CPU only, "
        f"{m['cpus']} cores ({m['cpu']}); load average {m['load_before']} before, {m['load_after']} after "
        "(the machine is shared, so absolute numbers move; the ratios are from the same run).", "",
        f"**Clip**: {clip.get('frames')} frames, {clip.get('width')}x{clip.get('height')}, "
        f"{clip.get('fps')} fps, {clip.get('duration_s')} s, {clip.get('codec')} — a real face photo "
        "(scikit-image's astronaut) animated by fdin.synth smiles with head motion, generated at run time.", "",
        "## Targets (issue 15)", "", "| target | measured | limit | status |", "|---|---|---|---|",
    ]
    for t in targets.values():
        lines.append(f"| {t['label']} | {_fmt(t['value'])} | {t['op']} {t['limit']:g} | {_status(t['met'])} |")
    lines += ["", *render_issue15(results)]
    lines += ["", "## Throughput (source frames / wall time)", "", "| pass | wall s | frames/s | vs FaceMesh pass |",
              "|---|---|---|---|"]
    fm_fps = fm.get("pass_fps")

    def row(label: str, wall: float | None, fps: float | None) -> None:
        ratio = f"{fps / fm_fps:.2f}x" if fps and fm_fps else "—"
        lines.append(f"| {label} | {_fmt(wall)} | {_fmt(fps)} | {ratio} |")

    for key, label in (("all_frames", "decode only, all frames (PyAV, threaded)"),
                       ("model_rate", "decode only, sampled to the FDIN rate")):
        if key in dec:
            row(label, dec[key]["median_s"], dec[key]["fps"])
    if "pass_fps" in fm:
        row("MediaPipe FaceMesh pass (decode + landmarks, video mode)", fm["median_wall_s"], fm["pass_fps"])
        row("MediaPipe FaceMesh landmarks only (decode excluded)", fm["median_facemesh_s"], fm["facemesh_only_fps"])
    else:
        lines.append(f"| MediaPipe FaceMesh | {fm.get('skipped') or fm.get('error', 'not measured')} | | |")
    if "throughput_fps" in an:
        row("**fdin analyze, full pipeline** (in-process, models loaded)", an["median_wall_s"], an["throughput_fps"])
    elif an:
        lines.append(f"| fdin analyze | {an.get('error', an.get('skipped', 'not measured'))} | | |")
    lines += ["", "The target ratio compares like with like: both passes include decoding the same file. "
              "The stricter landmarks-only FaceMesh rate (decode excluded) is shown too."]
    if fm.get("median_cpu_s") and an.get("median_cpu_s"):
        lines += ["", f"CPU time (all threads) per pass: FaceMesh {fm['median_cpu_s']:.2f} s, fdin analyze "
                  f"{an['median_cpu_s']:.2f} s in its own process (the decode worker process's CPU is not "
                  "included, so this ratio flatters fdin; compare wall times)."]
    if fm.get("paired_ratios"):
        pr = fm["paired_ratios"]
        lines += ["", f"FaceMesh and fdin runs were interleaved (one FaceMesh pass before each analyze run); "
                  f"per-pair throughput ratios: {', '.join(f'{x:.2f}' for x in pr)} (median {median(pr):.2f})."]
    if "stages_ms" in an:
        total = sum(an["stages_ms"].values())
        lines += ["", "## fdin analyze by stage", ""]
        if svg_name:
            lines += [f"![stage breakdown]({svg_name})", ""]
        lines += ["| stage | ms (clip) | ms / source frame | share | |", "|---|---|---|---|---|"]
        frames = max(an.get("source_frames", 1), 1)
        for s in STAGES:
            v = an["stages_ms"][s]
            lines.append(f"| {STAGE_LABELS.get(s, s)} | {v:.0f} | {v / frames:.2f} | {100 * v / total:.0f} % "
                         f"| {_bar(v, total)} |")
        lines += ["", f"Face backend `{an.get('backend')}`; FDIN runs in `{an.get('fdin_backend')}`; "
                  f"{an.get('frames_analyzed')} frames analysed of {an.get('source_frames')} decoded, face found in "
                  f"{an.get('face_found')}; instrumented calls per run: {an.get('calls')}. "
                  f"Process CPU time per run {an.get('median_cpu_s', 0):.2f} s (all threads) for "
                  f"{an.get('median_wall_s', 0):.2f} s wall. Model loading {an.get('load_s', 0):.2f} s and the first (warm-up) run "
                  f"{an.get('first_run_s', 0):.2f} s are excluded from the medians."]
        if an.get("profile"):
            lines += ["", "<details><summary>cProfile of one analyze run (top functions by own time)</summary>", "",
                      "```", an["profile"], "```", "", "</details>"]
    lines += ["", "## Latency", "", "| measurement | median | samples | notes |", "|---|---|---|---|"]
    if "median_s" in cli:
        lines.append(f"| `python -m fdin analyze` end to end (process start included) | {cli['median_s']:.2f} s "
                     f"({cli['ratio_to_duration']:.3f}x the clip) | {len(cli['wall_s'])} | first run "
                     f"{cli['first_run_s']:.2f} s; peak RSS {cli['peak_rss_bytes'] / 1e9:.2f} GB |")
    else:
        lines.append(f"| `python -m fdin analyze` | — | | {cli.get('error', cli.get('skipped', 'not measured'))} |")
    if "median_s" in rel:
        lines.append(f"| photo-pair `relate` after warm-up | {rel['median_s'] * 1000:.0f} ms | {len(rel['samples_s'])} "
                     f"| ONNX branches: {rel['onnx']}; loading {rel['load_s']:.2f} s |")
    else:
        lines.append(f"| photo-pair `relate` | — | | {rel.get('error', rel.get('skipped', 'not measured'))} |")
    if "median_s" in app:
        rss = max(app.get("rss_at_ready_bytes") or [0]) / 1e9
        lines.append(f"| app cold start (`python app.py` → HTTP 200 on `/`) | {app['median_s']:.2f} s | "
                     f"{len(app['samples_s'])} | RSS when ready {rss:.2f} GB |")
    else:
        lines.append(f"| app cold start | — | | {app.get('error', app.get('skipped', 'not measured'))} |")
    if grid.get("rows"):
        rows = grid["rows"]
        regions = sorted({r["R"] for r in rows})
        lengths = sorted({r["T"] for r in rows})
        lines += ["", "## FDIN cost against regions R and frames T", "",
                  "One forward pass, batch 1, one thread, median ms (ONNX Runtime / PyTorch). P = R(R-1)/2 "
                  "region pairs: the relational part grows with P·T, the encoder with R·T.", "",
                  "| R (P) | " + " | ".join(f"T = {t}" for t in lengths) + " |",
                  "|---|" + "---|" * len(lengths)]
        for r in regions:
            cells = []
            for t in lengths:
                x = next(q for q in rows if q["R"] == r and q["T"] == t)
                cells.append(f"{_fmt(x['onnx_ms'], 2)} / {_fmt(x['torch_ms'], 2)}")
            lines.append(f"| {r} ({r * (r - 1) // 2}) | " + " | ".join(cells) + " |")
    lines += ["", "## Method", "",
              "* `python -m benchmarks.speed` (`--quick` for a short smoke run). FaceMesh runs under `.venv-bench` "
              "(`requirements-bench.txt`, `make bench`), never in the runtime venv.",
              "* Throughput = source video frames / wall time of the whole pass (decode included for both).",
              "* Stage times: the analyzer's own `timings_ms`, split further by timing the face backend's "
              "detect / landmark / appearance methods and the dynamics call in-process.",
              "* CLI: wall time of the subprocess from spawn to exit after one warm-up run (which may export "
              "ONNX to the cache); peak RSS = the child's `VmHWM`, polled from /proc until it exits.",
              "* What the pipeline does for speed (issue 15): the video is decoded in a reused worker "
              "*process* (`fdin.isolation.decoder`) that streams frames through shared memory while the "
              "parent tracks, so decoding runs on the other core (no GIL in common) and, on a first call, "
              "the face models load while it decodes; decode sampled to the FDIN rate (25/s; throughput "
              "still counts source frames); detection on demand on a half-size copy while the face is "
              "followed (when a fit degrades, else every 50 frames), 68 landmarks fitted on every frame; "
              "head pose computed only when read; appearance on 5 frames per track; FDIN in ONNX Runtime "
              "(no torch).",
              "* App: time from spawning `python app.py` to the first HTTP 200 on `/`; then terminated.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short clip, one repeat: checks the harness")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "speed.md")
    parser.add_argument("--repeats", type=int, help="repeats per measurement (default 5, quick 1)")
    parser.add_argument("--clip", type=Path, help="use this video instead of the generated clip")
    parser.add_argument("--skip", default="", help="comma list of: facemesh,analyze,relate,cli,app,grid")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile run")
    parser.add_argument("--render", type=Path, metavar="JSON",
                        help="only re-render the report (markdown + SVG at --out) from a saved results JSON")
    args = parser.parse_args(argv)
    if args.render:
        results = json.loads(args.render.read_text())
        results["targets"] = evaluate(results)
        write_report(results, args.out)
        print(_console_table(results))
        return 0
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    repeats = args.repeats or (1 if args.quick else 5)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from fdin import __version__
    from fdin.dynamics import DynamicsConfig

    model_fps = DynamicsConfig().fps
    results: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.speed", *(sys.argv[1:] if argv is None else argv)]),
        "date": time.strftime("%Y-%m-%d %H:%M"), "fdin_version": __version__,
        "machine": {"cpus": os.cpu_count(), "cpu": _cpu_name(), "python": platform.python_version(),
                    "load_before": _load()},
    }

    def log(msg: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    if args.clip:
        clip = args.clip
    elif args.quick:
        clip = cached_clip(seconds=3.0, fps=25.0, width=320, height=180)
    else:
        clip = cached_clip(seconds=20.0, fps=30.0, width=640, height=360)
    log(f"clip {clip}")

    def step_into(into: dict[str, Any], name: str, fn: Callable[[], dict[str, Any]], prefix: str = "") -> None:
        if name in skip:
            into[name] = {"skipped": "skipped with --skip"}
            return
        log(f"{prefix}{name} …")
        try:
            into[name] = fn()
        except Exception as error:  # one failing part must not hide the others
            into[name] = {"error": f"{type(error).__name__}: {error}"}
        log(f"{prefix}{name}: {_summary(into[name])}")

    def step(name: str, fn: Callable[[], dict[str, Any]]) -> None:
        step_into(results, name, fn)

    profile = not (args.quick or args.no_profile)

    def clip_pass(clip: Path, into: dict[str, Any], prefix: str, *, profile: bool) -> None:
        """decode, FaceMesh interleaved with warm analyze runs, and the CLI process, on one clip."""
        step_into(into, "decode", lambda: measure_decode(clip, repeats, model_fps), prefix)
        into["clip"] = into["decode"].get("clip", {})
        frames = int(into["clip"].get("frames") or 0)
        duration = float(into["clip"].get("duration_s") or 0.0)
        if facemesh_available() and not {"facemesh", "analyze"} & skip:
            # interleaved: one FaceMesh pass (own subprocess, own warm-up) before each timed analyze run
            peer_runs: list[dict[str, Any]] = []

            def peer_once() -> None:
                peer_runs.append(measure_facemesh(clip, 1))

            step_into(into, "analyze", lambda: measure_analyze(clip, repeats, frames, profile=profile,
                                                               before_each=peer_once), prefix)
            failed = [r for r in peer_runs if "runs" not in r]
            if failed or not peer_runs:
                into["facemesh"] = failed[0] if failed else {"error": "no FaceMesh run"}
            else:
                merged = {**peer_runs[0], "runs": [x for r in peer_runs for x in r["runs"]],
                          "init_s": [x for r in peer_runs for x in r["init_s"]]}
                into["facemesh"] = summarise_facemesh(merged)
                an = into["analyze"]
                if "runs" in an:
                    into["facemesh"]["paired_ratios"] = [
                        (frames / a["wall_s"]) / (frames / f["wall_s"])
                        for a, f in zip(an["runs"], into["facemesh"]["runs"], strict=False)]
            log(f"{prefix}facemesh: {_summary(into['facemesh'])}")
        else:
            step_into(into, "facemesh", lambda: measure_facemesh(clip, max(repeats, 1)), prefix)
            step_into(into, "analyze", lambda: measure_analyze(clip, repeats, frames, profile=profile), prefix)
        step_into(into, "cli", lambda: measure_cli(clip, repeats, duration), prefix)
        if not args.quick:
            step_into(into, "accuracy", lambda: measure_accuracy(clip, model_fps), prefix)

    clip_pass(clip, results, "", profile=profile)
    results["accuracy"] = {"generated": results.pop("accuracy", {"skipped": "--quick"})}
    busy_clip = clip  # the app measurements use the footage when there is one
    if not args.quick and "footage" not in skip:
        from benchmarks.footage import cached_footage

        footage = cached_footage()
        log(f"footage {footage}")
        results["footage"] = {}
        clip_pass(footage, results["footage"], "footage ", profile=False)
        results["accuracy"]["footage"] = results["footage"].pop("accuracy", {})
        busy_clip = footage
    step("relate", lambda: measure_relate(3 if args.quick else 10))
    step("app", lambda: measure_app(1 if args.quick else 3))
    step("first_request", lambda: measure_first_request(busy_clip, float(results["app"].get("median_s") or 5.0)))
    step("concurrency", lambda: measure_concurrency(busy_clip, 1 if args.quick else repeats))
    if args.quick:
        step("grid", lambda: measure_grid((6, 12), (25, 100), onnx=True))
    else:
        step("grid", lambda: measure_grid((6, 9, 12, 16), (25, 50, 100, 200), onnx=True))
    results["machine"]["load_after"] = _load()
    results["targets"] = evaluate(results)

    write_report(results, args.out)
    print(_console_table(results))
    return 0


def write_report(results: dict[str, Any], out: Path) -> None:
    """``out`` (markdown), ``<stem>-stages.svg`` and ``<stem>.json`` (all samples)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    svg = stage_svg(results)
    svg_name = None
    if svg:
        svg_name = out.with_name(out.stem + "-stages.svg").name
        (out.parent / svg_name).write_text(svg)
    out.write_text(render_markdown(results, svg_name))
    json_path = out.with_suffix(".json")
    if not json_path.exists() or json.loads(json_path.read_text()) != results:
        json_path.write_text(json.dumps(results, indent=1, default=float) + "\n")
    print(f"wrote {out}" + (f", {out.parent / svg_name}" if svg_name else "") + f", {json_path}")


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _summary(part: dict[str, Any]) -> str:
    if "error" in part or "skipped" in part:
        return part.get("error") or part.get("skipped")
    for key in ("throughput_fps", "pass_fps", "median_s"):
        if key in part:
            return f"{key}={part[key]:.3g}"
    if "all_frames" in part:
        return f"decode {part['all_frames']['fps']:.0f} frames/s"
    return "done"


def _console_table(results: dict[str, Any]) -> str:
    rows = ["", f"{'target':<58} {'measured':>10} {'limit':>8}  status"]
    for t in results["targets"].values():
        rows.append(f"{t['label']:<58} {_fmt(t['value']):>10} {t['op'] + format(t['limit'], 'g'):>8}  "
                    f"{_status(t['met']).replace('**', '')}")
    an, fm, dec = results.get("analyze", {}), results.get("facemesh", {}), results.get("decode", {})
    if "all_frames" in dec:
        rows.append(f"decode only: {dec['all_frames']['fps']:.0f} frames/s (sampled to the FDIN rate: "
                    f"{dec['model_rate']['fps']:.0f})")
    if "pass_fps" in fm:
        rows.append(f"FaceMesh pass: {fm['pass_fps']:.0f} frames/s (landmarks only {fm['facemesh_only_fps']:.0f})")
    else:
        rows.append(f"FaceMesh: {fm.get('skipped') or fm.get('error') or 'not measured'}")
    if "stages_ms" in an:
        rows.append(f"fdin analyze: {an['throughput_fps']:.0f} frames/s; stages (ms): "
                    + ", ".join(f"{k} {v:.0f}" for k, v in an["stages_ms"].items()))
    return "\n".join(rows)


if __name__ == "__main__":
    raise SystemExit(main())

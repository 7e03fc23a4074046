"""Speed on **real** footage: each real clip of :data:`benchmarks.clips.REAL_CLIPS`
against MediaPipe FaceMesh's landmark-only pass in the same run, interleaved, for one or more face
backends (e.g. the new default and the old dlib stack, so before and after share the machine's load);
the whole ``python -m fdin analyze`` process against the clip's duration; and peak RSS on a long real
clip (:func:`benchmarks.clips.long_real_clip`) against the clip it loops.

Every ratio is per pair (a FaceMesh pass, then each backend's warm analysis, repeated), and the
spread of the pairs is kept: the machine is shared and noisy, so one median hides how far runs move.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import median
from benchmarks.peer import facemesh_available, measure_facemesh
from benchmarks.processes import run_child


def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max of ``values`` (``nan`` when empty)."""
    if not values:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan")}
    return {"median": median(values), "min": float(min(values)), "max": float(max(values)),
            "stdev": float(statistics.pstdev(values))}


def measure_clip(clip: Path, backends: list[str], repeats: int) -> dict[str, Any]:
    """Warm analyses of ``clip`` per backend, each round after one FaceMesh pass (interleaved).

    ``ratio`` per round = FaceMesh pass wall / fdin analyze wall (both decode the same file; > 1: fdin
    is faster). The analyzers are built and warmed first (one analysis each, not timed)."""
    from fdin.analyze import DynamicsAnalyzer
    from fdin.media import probe_video

    info = probe_video(clip)
    analyzers = {}
    for name in backends:
        analyzer = DynamicsAnalyzer(backend=name)
        first = analyzer.analyze(clip)
        analyzers[name] = (analyzer, first)
    rounds: list[dict[str, Any]] = []
    for _ in range(repeats):
        row: dict[str, Any] = {}
        if facemesh_available():
            peer = measure_facemesh(clip, 1)
            row["facemesh_s"] = peer["runs"][0]["wall_s"] if "runs" in peer else None
            row["facemesh_faces"] = peer["runs"][0]["faces"] if "runs" in peer else None
            row["facemesh_frames"] = peer.get("frames")
        for name, (analyzer, _) in analyzers.items():
            t0 = time.perf_counter()
            result = analyzer.analyze(clip)
            row[name] = {"wall_s": time.perf_counter() - t0, "timings_ms": dict(result.timings_ms)}
        rounds.append(row)
    out: dict[str, Any] = {
        "clip": {"path": str(clip), "name": clip.name, "width": info.width, "height": info.height,
                 "duration_s": info.declared_duration, "codec": info.codec},
        "rounds": rounds, "backends": {}}
    for name, (_, first) in analyzers.items():
        walls = [r[name]["wall_s"] for r in rounds]
        ratios = [r["facemesh_s"] / r[name]["wall_s"] for r in rounds if r.get("facemesh_s")]
        out["backends"][name] = {
            "frames_analyzed": first.frames_analyzed, "face_found": first.face_track.found,
            "wall_s": spread(walls), "ratio_vs_facemesh": spread(ratios) if ratios else None,
            "ms_per_frame": median(walls) * 1000 / max(first.frames_analyzed, 1)}
    fm = [r["facemesh_s"] for r in rounds if r.get("facemesh_s")]
    out["facemesh"] = ({"wall_s": spread(fm), "frames": rounds[0].get("facemesh_frames"),
                        "faces": rounds[0].get("facemesh_faces")} if fm
                       else {"skipped": "FaceMesh peer not available (.venv-bench missing)"})
    return out


def cli_runs(clip: Path, backends: list[str], repeats: int, duration_s: float, *,
             warm_up: bool = True) -> dict[str, Any]:
    """``python -m fdin -q analyze CLIP --backend B`` start to exit, rounds interleaved over the
    backends (after one warm-up each): wall / clip duration, peak RSS (the process's ``VmHWM``)."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        samples: dict[str, list[tuple[float, int]]] = {b: [] for b in backends}
        frames: dict[str, int] = {}
        for r in range(repeats + int(warm_up)):
            for name in backends:
                json_out = Path(tmp) / f"{name}.json"
                cmd = [sys.executable, "-m", "fdin", "-q", "analyze", str(clip), "--json", str(json_out),
                       "--backend", name]
                wall, code, rss, tail = run_child(cmd, timeout=3600)
                if code != 0:
                    return {"error": f"`python -m fdin analyze --backend {name}` exited {code}: {tail}"}
                if r or not warm_up:  # a first warm-up round fills the caches (ONNX export, page cache)
                    samples[name].append((wall, rss))
                data = json.loads(json_out.read_text())
                frames[name] = data["frames_analyzed"]
                out.setdefault(name, {})["coverage"] = data.get("coverage")
        for name, runs in samples.items():
            walls = [w for w, _ in runs]
            out[name].update({"wall_s": spread(walls), "ratio_to_duration": spread([w / duration_s for w in walls]),
                              "peak_rss_bytes": max(m for _, m in runs), "frames_analyzed": frames[name]})
    return out


def measure_long(clip: Path, short: Path, backends: list[str]) -> dict[str, Any]:
    """One ``python -m fdin analyze`` per backend on the long clip and on the clip it loops: frames
    analysed (the whole clip?), wall / duration and peak RSS, side by side."""
    from fdin.media import probe_video

    out: dict[str, Any] = {}
    for label, path in (("short", short), ("long", clip)):
        info = probe_video(path)
        duration = float(info.declared_duration or 0.0)
        out[label] = {"path": str(path), "duration_s": duration, "frames": info.declared_frames,
                      "runs": cli_runs(path, backends, 1, duration, warm_up=False)}
    return out


__all__ = ["cli_runs", "measure_clip", "measure_long", "spread"]

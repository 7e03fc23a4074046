"""The peer: MediaPipe FaceMesh's landmark-only pass (:mod:`benchmarks.facemesh_peer`), run as a
subprocess under the bench-only venv ``.venv-bench`` (mediapipe never enters the runtime venv)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, bench_env, median

BENCH_VENV = REPO / ".venv-bench"

BENCH_PYTHON = BENCH_VENV / "bin" / "python"

FACEMESH_SCRIPT = Path(__file__).resolve().parent / "facemesh_peer.py"

BENCH_VENV_HINT = ("make bench  (or: python3 -m venv .venv-bench && .venv-bench/bin/pip install "
                   "-r requirements-bench.txt)")

def facemesh_available() -> bool:
    return BENCH_PYTHON.is_file()

def measure_facemesh(clip: Path, repeats: int) -> dict[str, Any]:
    """``repeats`` FaceMesh passes (after one warm-up pass) in one ``.venv-bench`` subprocess."""
    if not facemesh_available():
        return {"skipped": f"peer not measured: {BENCH_VENV.name} is missing; create it with {BENCH_VENV_HINT}"}
    proc = subprocess.run([str(BENCH_PYTHON), str(FACEMESH_SCRIPT), str(clip), "--repeats", str(repeats)],
                          capture_output=True, text=True, timeout=1800, env={**bench_env(), "PYTHONPATH": ""})
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

"""The speed benchmark harness runs end to end in quick mode (no timing assertions: the targets are
checked in docs/benchmarks/speed.md, not in unit tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_stage_svg_and_markdown_render_from_results():
    from benchmarks.common import STAGES
    from benchmarks.report import evaluate, render_markdown, stage_svg

    results = {
        "command": "python -m benchmarks.speed --quick", "date": "today", "fdin_version": "0",
        "machine": {"cpus": 2, "cpu": "cpu", "python": "3", "load_before": [1.0], "load_after": [1.0]},
        "clip": {"frames": 100, "width": 64, "height": 36, "fps": 25.0, "duration_s": 4.0, "codec": "h264"},
        "decode": {"all_frames": {"median_s": 0.1, "fps": 1000.0}, "model_rate": {"median_s": 0.1, "fps": 1000.0}},
        "facemesh": {"skipped": "peer not measured: .venv-bench is missing"},
        "analyze": {"stages_ms": dict.fromkeys(STAGES, 10.0), "throughput_fps": 500.0, "median_wall_s": 0.2,
                    "source_frames": 100},
        "relate": {"error": "RuntimeError: no weights"},
        "cli": {"median_s": 0.9, "ratio_to_duration": 0.1, "peak_rss_bytes": 5e8, "wall_s": [0.9], "first_run_s": 1.0},
        "app": {"skipped": "app.py not present"},
        "grid": {"rows": [{"R": 6, "P": 15, "T": 25, "torch_ms": 1.0, "onnx_ms": 0.2}]},
    }
    results["targets"] = evaluate(results)
    assert results["targets"]["throughput_vs_facemesh"]["met"] is None  # peer not measured
    assert results["targets"]["cli_vs_duration"]["met"] is True
    assert results["targets"]["peak_rss_gb"]["value"] == pytest.approx(0.5)
    svg = stage_svg(results)
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>") and "fdin analyze" in svg
    md = render_markdown(results, "speed-stages.svg")
    assert "peer not measured" in md and "| decode |" in md and "| track/landmarks |" in md and "T = 25" in md


def test_process_target_counts_real_clips_of_ten_seconds_and_names_the_short_ones():
    """The whole-process / clip target is held on the real clips of >= 10 s and the long one; a
    start-up-bound short clip is reported beside it, never silently dropped."""
    from benchmarks.report import _short_real_processes, evaluate

    def real(duration: float, ratio: float) -> dict:
        return {"clip": {"duration_s": duration}, "backends": {"offline": {}},
                "cli": {"offline": {"ratio_to_duration": {"median": ratio}}}}

    results = {
        "command": "c", "date": "d", "fdin_version": "0", "backends": ["offline"],
        "machine": {"cpus": 2, "cpu": "cpu", "python": "3", "load_before": [1.0], "load_after": [1.0]},
        "real": {"long.mp4": real(19.7, 0.09), "short.mp4": real(2.4, 0.26)},
        "long": {"long": {"frames": 10, "runs": {"offline": {"ratio_to_duration": {"median": 0.06},
                                                            "frames_analyzed": 10, "peak_rss_bytes": 2e8}}}},
    }
    targets = evaluate(results)
    assert targets["real_max_cli_vs_duration"]["value"] == pytest.approx(0.09)
    assert targets["real_max_cli_vs_duration"]["met"] is True
    results["long"]["long"]["runs"]["offline"]["ratio_to_duration"]["median"] = 0.13
    assert evaluate(results)["real_max_cli_vs_duration"]["met"] is False  # the long clip counts too
    assert _short_real_processes(results) == "0.62 s (0.260x) for short.mp4"


def test_long_smile_sequence_is_continuous():
    from benchmarks.clips import long_smile_sequence

    seq = long_smile_sequence(12.0, 30.0)
    assert seq.shape == (360, 68, 2) and np.isfinite(seq).all()
    steps = np.linalg.norm(np.diff(seq, axis=0), axis=-1).max(axis=1)
    iod = np.linalg.norm(seq[0, 42:48].mean(0) - seq[0, 36:42].mean(0))
    assert steps.max() < 0.25 * iod  # no jumps where the chained smiles meet


@pytest.mark.slow
def test_quick_bench_runs_end_to_end(tmp_path):
    out = tmp_path / "speed.md"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.speed", "--quick", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=850,
                          env={**__import__("os").environ, "FDIN_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["decode"]["all_frames"]["source_frames"] == data["clip"]["frames"] > 0
    assert "rows" in data["grid"] and data["grid"]["rows"]
    text = out.read_text()
    assert "## Targets" in text
    if not (ROOT / ".venv-bench" / "bin" / "python").is_file():
        assert "peer not measured" in text
    for part in ("facemesh", "analyze", "relate", "cli", "app", "first_request", "concurrency"):
        assert part in data  # measured, skipped (with a reason) or an error message: never missing
        assert set(data[part]) != {"error"} or data[part]["error"]


def test_no_import_circle_in_benchmarks():
    """Each benchmark module imports only modules below it: the graph of ``benchmarks.*`` imports
    (module level and inside functions, read from the source) has no cycle."""
    import ast

    folder = ROOT / "benchmarks"
    modules = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
    graph: dict[str, set[str]] = {}
    for name in modules:
        tree = ast.parse((folder / f"{name}.py").read_text())
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("benchmarks."):
                deps.add(node.module.split(".")[1])
            elif isinstance(node, ast.ImportFrom) and node.module == "benchmarks":
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name.split(".")[1] for a in node.names if a.name.startswith("benchmarks.")}
        graph[name] = deps & modules
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            assert state.get(dep) != 1, "import circle: " + " -> ".join([*path, node, dep])
            if dep not in state:
                visit(dep, [*path, node])
        state[node] = 2

    for name in sorted(modules):
        if name not in state:
            visit(name, [])
    assert graph["speed"] >= {"clips", "common", "report"}  # the split is real: speed only orchestrates
    assert len((folder / "speed.py").read_text().splitlines()) < 400

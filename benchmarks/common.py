"""What every benchmark module shares: the repository root, the stage names, medians, the load
average, the environment of child processes and the CPU's name. Imports nothing from ``benchmarks``."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

STAGES = ("decode", "detect", "landmarks", "dynamics", "fdin", "appearance", "other")

STAGE_LABELS = {"landmarks": "track/landmarks"}  # landmark fits + tracking checks + pose per frame

STAGE_COLOURS = {"decode": "#1f77b4", "detect": "#d62728", "landmarks": "#ff7f0e", "dynamics": "#2ca02c",
                 "fdin": "#9467bd", "appearance": "#8c564b", "other": "#7f7f7f",
                 "facemesh": "#17becf"}

def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")

def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []

def bench_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return env

def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"

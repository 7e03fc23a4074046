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
The targets are checked from ratios of the same run; unit tests never assert timings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.clips import LONG_SOURCE, REAL_CLIPS, cached_clip, long_real_clip, real_clip
from benchmarks.common import REPO, cpu_name, load_average
from benchmarks.inprocess import (
    measure_accuracy,
    measure_analyze,
    measure_decode,
    measure_grid,
    measure_relate,
)
from benchmarks.peer import facemesh_available, measure_facemesh, summarise_facemesh
from benchmarks.processes import measure_app, measure_cli, measure_concurrency, measure_first_request
from benchmarks.real import cli_runs, measure_clip, measure_long
from benchmarks.report import console_table, evaluate, summary, write_report


def default_backend_name() -> str:
    """The face backend ``fdin analyze`` uses when none is named."""
    from fdin.perception.registry import resolve_backend_name

    return resolve_backend_name(None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short clip, one repeat: checks the harness")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "speed.md")
    parser.add_argument("--repeats", type=int, help="repeats per measurement (default 5, quick 1)")
    parser.add_argument("--clip", type=Path, help="use this video instead of the generated clip")
    parser.add_argument("--skip", default="", help="comma list of: generated,footage,real,long,facemesh,analyze,"
                                                    "accuracy,relate,cli,app,first_request,concurrency,grid")
    parser.add_argument("--real-dir", type=Path, metavar="DIR",
                        help="folder holding the real clips (default: fetched by tests/real_media.py)")
    parser.add_argument("--backends", default="",
                        help="comma list of face backends measured on the real clips, interleaved (default: the "
                             "default backend); e.g. offline,offline-dlib for the new and the old stack")
    parser.add_argument("--long-seconds", type=float, default=200.0, help="length of the long real clip")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile run")
    parser.add_argument("--render", type=Path, metavar="JSON",
                        help="only re-render the report (markdown + SVG at --out) from a saved results JSON")
    args = parser.parse_args(argv)
    if args.render:
        results = json.loads(args.render.read_text())
        results["targets"] = evaluate(results)
        write_report(results, args.out)
        print(console_table(results))
        return 0
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    backends = [b.strip() for b in args.backends.split(",") if b.strip()] or [default_backend_name()]
    repeats = args.repeats or (1 if args.quick else 5)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from fdin import __version__
    from fdin.dynamics import DynamicsConfig

    model_fps = DynamicsConfig().fps
    results: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.speed", *(sys.argv[1:] if argv is None else argv)]),
        "date": time.strftime("%Y-%m-%d %H:%M"), "fdin_version": __version__,
        "machine": {"cpus": os.cpu_count(), "cpu": cpu_name(), "python": platform.python_version(),
                    "load_before": load_average()},
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
        log(f"{prefix}{name}: {summary(into[name])}")

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
            log(f"{prefix}facemesh: {summary(into['facemesh'])}")
        else:
            step_into(into, "facemesh", lambda: measure_facemesh(clip, max(repeats, 1)), prefix)
            step_into(into, "analyze", lambda: measure_analyze(clip, repeats, frames, profile=profile), prefix)
        step_into(into, "cli", lambda: measure_cli(clip, repeats, duration), prefix)
        if not args.quick and "accuracy" not in skip:
            step_into(into, "accuracy", lambda: measure_accuracy(clip, model_fps), prefix)

    if "generated" in skip:
        results["clip"] = {}
    else:
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
    if not args.quick and "real" not in skip:
        results["real"] = {}
        results["backends"] = backends
        for name, label in REAL_CLIPS.items():
            def real_pass(name: str = name, label: str = label) -> dict[str, Any]:
                path = real_clip(name, args.real_dir)
                part = measure_clip(path, backends, repeats)
                part["label"] = label
                part["cli"] = cli_runs(path, backends, repeats, float(part["clip"]["duration_s"] or 0.0))
                return part

            step_into(results["real"], name, real_pass, "real ")
    if not args.quick and "long" not in skip:
        step("long", lambda: measure_long(long_real_clip(args.long_seconds, args.real_dir),
                                          real_clip(LONG_SOURCE, args.real_dir), backends))
    step("relate", lambda: measure_relate(3 if args.quick else 10))
    step("app", lambda: measure_app(1 if args.quick else 3))
    step("first_request", lambda: measure_first_request(busy_clip, float(results["app"].get("median_s") or 5.0)))
    step("concurrency", lambda: measure_concurrency(busy_clip, 1 if args.quick else repeats))
    if args.quick:
        step("grid", lambda: measure_grid((6, 12), (25, 100), onnx=True))
    else:
        step("grid", lambda: measure_grid((6, 9, 12, 16), (25, 50, 100, 200), onnx=True))
    results["machine"]["load_after"] = load_average()
    results["targets"] = evaluate(results)

    write_report(results, args.out)
    print(console_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

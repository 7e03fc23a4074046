"""Measurements of whole processes: ``python -m fdin analyze`` start to exit with its peak RSS
(:func:`measure_cli`), two analyses at once on the app's path, the app's first requests and its cold
start."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, bench_env, median


def _vm_hwm(pid: int) -> int:
    """Peak resident bytes (``VmHWM``) of the process image now running as ``pid`` (0 if unknown)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0

def run_child(cmd: list[str], *, timeout: float, cwd: Path = REPO) -> tuple[float, int, int, str]:
    """Run ``cmd``; returns (wall s, exit code, peak RSS bytes, stderr tail).

    Peak RSS is the child's ``VmHWM`` polled from /proc until it exits: ``wait4``'s ``ru_maxrss``
    would also count the benchmark process's own pages, which the child shares between fork and
    exec (it reported this 1 GB process's size for every child). Falls back to ``ru_maxrss``."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=bench_env(), stdout=subprocess.DEVNULL, stderr=err)
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
        first = run_child(cmd, timeout=900)
        if first[1] != 0:
            return {"error": f"`python -m fdin analyze` exited {first[1]}: {first[3]}"}
        runs = [run_child(cmd, timeout=900) for _ in range(repeats)]
        failed = [r for r in runs if r[1] != 0]
        if failed:
            return {"error": f"`python -m fdin analyze` exited {failed[0][1]}: {failed[0][3]}"}
        wall = [r[0] for r in runs]
        rss = [r[2] for r in (first, *runs)]
        out = json.loads((Path(tmp) / "out.json").read_text())
    return {"command": "python -m fdin -q analyze CLIP --json OUT", "first_run_s": first[0], "wall_s": wall,
            "median_s": median(wall), "ratio_to_duration": median(wall) / duration_s,
            "peak_rss_bytes": max(rss), "rss_bytes": rss, "timings_ms": out.get("timings_ms", {})}

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
from benchmarks.clips import bench_photo
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
                          capture_output=True, text=True, timeout=600, cwd=REPO, env=bench_env())
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
                                    cwd=REPO, env=bench_env(), stdout=log, stderr=subprocess.STDOUT,
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

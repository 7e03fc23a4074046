"""Soak: normal traffic from a few clients against ``app.py`` as deployed; errors, latency and memory.

``python -m benchmarks.soak [--seconds 120] [--clients 3]`` starts ``app.py`` (real models, its own
private folders) on a loopback port, waits until it serves and has loaded its models, then runs
``--clients`` threads, each with its own ``gradio_client.Client`` and its own client address
(``X-Forwarded-For`` behind ``FDIN_TRUST_PROXY=1``, so each has its own rate limit), each cycling
through detect faces (a real photo), relate photos (a real group photo) and analyse video (a clip
generated from a real photo) with a think time, for ``--seconds``. Every 5 s it samples the server's
memory: the app process and its worker processes (``/proc`` RSS). It prints requests, errors,
p50/p95 per endpoint, and memory at the start, the end and its slope over the second half.

The 10-minute soak of the earlier probe (3 clients, 411 requests, 0 errors, p95
0.43-0.82 s, +28 MB and flat) repeated shorter (the machine is shared). Inputs are real photos shipped
in installed packages (insightface, scikit-image) and a clip generated from one (tests/clips.py).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _tree_rss_mb(pid: int) -> float:
    """RSS of ``pid`` and its descendants (MB): the app, its analysis workers and any decode child."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
        todo.extend(children.get(p, []))
    return total


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _slope_mb_per_min(samples: list[tuple[float, float]]) -> float:
    if len(samples) < 3:
        return float("nan")
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mm = sum(m for _, m in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples) or 1e-9
    return 60.0 * sum((t - mt) * (m - mm) for t, m in samples) / var


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--think", type=float, default=3.0, help="mean pause between one client's requests (s)")
    args = parser.parse_args(argv)

    import httpx
    from gradio_client import Client, handle_file

    sys.path.insert(0, str(ROOT))
    from tests.app_support import astronaut_photo, free_port, group_photo, smile_clip

    tmp = Path(tempfile.mkdtemp(prefix="fdin-soak-"))
    photo, group, clip = astronaut_photo(), group_photo(), smile_clip(tmp)
    port = free_port()
    env = {**os.environ, "FDIN_APP_DIR": str(tmp / "store"), "FDIN_EXAMPLES": "off", "FDIN_TRUST_PROXY": "1",
           "PYTHONPATH": str(ROOT), "GRADIO_ANALYTICS_ENABLED": "False"}
    log = open(tmp / "server.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port)], cwd=str(ROOT), env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "config", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        warm = Client(url, verbose=False, analytics_enabled=False, download_files=str(tmp / "dl"))
        warm.predict(handle_file(str(photo)), api_name="/detect_faces")
        warm.predict(handle_file(str(group)), None, "warm", api_name="/relate_photos")
        warm.predict(handle_file(str(clip)), api_name="/analyze_video")
        warm.close()

        calls = [("detect_faces", lambda c: c.predict(handle_file(str(photo)), api_name="/detect_faces")),
                 ("relate_photos", lambda c: c.predict(handle_file(str(group)), None, "warm",
                                                        api_name="/relate_photos")),
                 ("analyze_video", lambda c: c.predict(handle_file(str(clip)), api_name="/analyze_video"))]
        times: dict[str, list[float]] = {name: [] for name, _ in calls}
        errors: list[str] = []
        memory: list[tuple[float, float]] = []  # (s, app + workers)
        app_memory: list[tuple[float, float]] = []  # (s, the app process alone)
        stop = threading.Event()
        t_start = time.monotonic()

        def client(k: int) -> None:
            rng = random.Random(k)
            c = Client(url, verbose=False, analytics_enabled=False, download_files=str(tmp / f"dl{k}"),
                       headers={"X-Forwarded-For": f"198.51.100.{10 + k}"})
            i = k
            while not stop.is_set():
                name, call = calls[i % len(calls)]
                i += 1
                t0 = time.monotonic()
                try:
                    call(c)
                    times[name].append(time.monotonic() - t0)
                except Exception as error:  # the soak counts every failure
                    errors.append(f"{name}: {str(error)[:160]}")
                stop.wait(rng.uniform(0.5, 1.5) * args.think)
            c.close()

        def sample() -> None:
            while not stop.is_set():
                memory.append((time.monotonic() - t_start, _tree_rss_mb(proc.pid)))
                app_memory.append((time.monotonic() - t_start, _rss_mb(proc.pid)))
                stop.wait(5.0)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
        sampler = threading.Thread(target=sample)
        sampler.start()
        for t in threads:
            t.start()
        time.sleep(args.seconds)
        stop.set()
        for t in threads:
            t.join(300)
        sampler.join()
        time.sleep(5.0)  # the last requests' transient children are gone
        memory.append((time.monotonic() - t_start, _tree_rss_mb(proc.pid)))
        app_memory.append((time.monotonic() - t_start, _rss_mb(proc.pid)))

        total = sum(len(v) for v in times.values())
        print(f"soak: {args.clients} clients, {args.seconds:.0f} s, {total} requests ok, {len(errors)} errors")
        for name, values in times.items():
            print(f"  {name:14s} n={len(values):3d}  p50 {_percentile(values, 0.5):6.2f} s  "
                  f"p95 {_percentile(values, 0.95):6.2f} s  max {max(values, default=float('nan')):6.2f} s")
        for label, series in (("app process", app_memory), ("app + workers + decode children", memory)):
            half = [s for s in series if s[0] >= args.seconds / 2]
            print(f"  memory, {label}: start {series[0][1]:.0f} MB, end {series[-1][1]:.0f} MB, "
                  f"max {max(m for _, m in series):.0f} MB, slope over the second half "
                  f"{_slope_mb_per_min(half):+.1f} MB/min")
        for line in errors[:10]:
            print("  error:", line)
        return 0 if not errors else 1
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


if __name__ == "__main__":
    raise SystemExit(main())

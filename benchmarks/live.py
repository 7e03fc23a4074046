"""Live webcam mode: processed frames per second and per-frame latency on the server.

``python -m benchmarks.live [--frames 300] [--threads N]`` feeds 640x480 JPEG data URLs (what Gradio's
streaming webcam sends: a real photo, scikit-image's astronaut, animated by :mod:`fdin.synth` into a
smile) through :meth:`fdin.app.handlers.Handlers.live_frame` with the real face backend and FDIN
models, back to back, and prints:

* per-frame latency (decode the data URL, track, draw the overlay, encode it; median and p95), for
  all frames and for the frames that also refreshed the rolling FDIN estimate and heatmap (~1/s);
* processed frames per second = frames / wall time with no per-session rate limit (the app caps a
  session at 30/s, so this is the headroom);
* the first frame (loads the backend) and the first rolling refresh (loads FDIN) separately.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def frames_640x480(n: int) -> list[np.ndarray]:
    """``n`` 640x480 RGB frames of the astronaut photo smiling (looped forward and back)."""
    import cv2
    from skimage.data import astronaut

    from fdin.perception import detect_faces
    from fdin.synth import animate_photo, smile_sequence

    photo = np.ascontiguousarray(cv2.resize(astronaut()[0:300, 110:410], (400, 400), interpolation=cv2.INTER_CUBIC))
    landmarks = max(detect_faces(photo), key=lambda f: f.area).landmarks
    clip = animate_photo(photo, landmarks, smile_sequence(seed=0, fps=30.0))
    loop = np.concatenate([clip, clip[::-1]])
    out = []
    for k in range(n):
        canvas = np.full((480, 640, 3), 96, np.uint8)
        canvas[40:440, 120:520] = loop[k % len(loop)]
        out.append(canvas)
    return out


def data_url(frame: np.ndarray) -> str:
    import base64

    import cv2

    _ok, buf = cv2.imencode(".jpg", frame[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])  # the browser's default
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--threads", type=int, default=0, help="torch/ORT/OpenCV threads (0: library default)")
    parser.add_argument("--backend", help="face backend name (default: fdin.perception's default), e.g. offline-dlib")
    args = parser.parse_args(argv)
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        import cv2

        cv2.setNumThreads(args.threads)

    from fdin.app import live
    from fdin.app.handlers import Handlers
    from fdin.app.predictors import LazyPredictors
    from fdin.app.ratelimit import RateLimiter

    live.MIN_INTERVAL_S = 0.0  # measure the headroom: no per-session cap
    urls = [data_url(f) for f in frames_640x480(args.frames)]
    predictors = LazyPredictors()
    if args.backend:
        from fdin.perception import get_backend

        class _Predictors(LazyPredictors):
            def backend(self):  # the same lazily built, shared instance, of the named backend
                return get_backend(args.backend)

        predictors = _Predictors()
    h = Handlers(predictors, rate_limiter=RateLimiter(0, 60))
    session = None
    t0 = time.perf_counter()
    _, _, _, session = h.live_frame(urls[0], session)  # loads the face backend
    first_ms = (time.perf_counter() - t0) * 1000
    session.last_rolling_t = -1e9
    plain, rolling, first_rolling = [], [], None
    t_start = time.perf_counter()
    for url in urls[1:]:
        due = session.rolling_due(time.monotonic())
        t = time.perf_counter()
        _, _text, _heat, session = h.live_frame(url, session)
        ms = (time.perf_counter() - t) * 1000
        if due and first_rolling is None and session.rolling_result is not None:
            first_rolling = ms
        elif due:
            rolling.append(ms)
        else:
            plain.append(ms)
    wall = time.perf_counter() - t_start
    all_ms = np.asarray(plain + rolling)
    found = sum(f is not None for f in session.faces)

    def stat(xs: list[float] | np.ndarray) -> str:
        xs = np.asarray(xs)
        return f"median {np.median(xs):.1f} ms, p95 {np.percentile(xs, 95):.1f} ms (n={len(xs)})" if len(xs) else "n=0"

    print(f"live mode, 640x480 JPEG frames, {os.cpu_count()} CPUs, threads={args.threads or 'default'}")
    print(f"processed fps (back to back, no cap): {(len(urls) - 1) / wall:.1f}")
    print(f"per-frame latency, all frames: {stat(all_ms)}")
    print(f"per-frame latency, tracking + overlay only: {stat(plain)}")
    print(f"per-frame latency, frames that refreshed the rolling estimate + heatmap: {stat(rolling)}")
    print(f"first frame (loads the face backend): {first_ms:.0f} ms; first rolling refresh (loads FDIN): "
          f"{first_rolling or 0:.0f} ms")
    print(f"face found in {found} of the {len(session.faces)} buffered frames; tracker median "
          f"{session.stats()['median_frame_ms']:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

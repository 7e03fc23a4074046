"""Peer reference for ``benchmarks.speed``: MediaPipe FaceMesh landmark-only pass over a video, as JSON.

Self-contained on purpose: it imports only mediapipe, av and numpy (never fdin), because it runs
under the bench-only venv ``.venv-bench`` (``requirements-bench.txt``); mediapipe must never be
installed into the runtime venv. Run as a *script*::

    .venv-bench/bin/python fdin/facemesh_peer.py CLIP.mp4 --repeats 5

Each repeat decodes the clip with PyAV (threaded, ``thread_type="AUTO"``, RGB ndarrays like
``fdin.media.read_video``) and feeds every frame to a fresh
``FaceMesh(static_image_mode=False, max_num_faces=1, refine_landmarks=False)`` (video mode: it
tracks between frames). Model construction is timed separately and excluded from the pass, as
fdin's analyzer is also measured warm. Printed JSON (last stdout line)::

    {"frames": N, "runs": [{"wall_s", "cpu_s", "decode_s", "facemesh_s", "faces"}...], "init_s": [...],
     "width", "height", "versions": {...}}
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def one_pass(path: str, face_mesh_cls) -> dict:
    import av

    t_init = time.perf_counter()
    mesh = face_mesh_cls(static_image_mode=False, max_num_faces=1, refine_landmarks=False)
    init_s = time.perf_counter() - t_init
    decode_s = mesh_s = 0.0
    frames = faces = 0
    width = height = 0
    t_start, c_start = time.perf_counter(), time.process_time()
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = min(4, os.cpu_count() or 1)
        decoded = container.decode(stream)
        while True:
            t0 = time.perf_counter()
            frame = next(decoded, None)
            if frame is None:
                decode_s += time.perf_counter() - t0
                break
            rgb = frame.to_ndarray(format="rgb24")
            t1 = time.perf_counter()
            decode_s += t1 - t0
            rgb.flags.writeable = False
            result = mesh.process(rgb)
            mesh_s += time.perf_counter() - t1
            frames += 1
            faces += int(bool(result.multi_face_landmarks))
            height, width = rgb.shape[:2]
    wall_s, cpu_s = time.perf_counter() - t_start, time.process_time() - c_start
    mesh.close()
    return {"wall_s": wall_s, "cpu_s": cpu_s, "decode_s": decode_s, "facemesh_s": mesh_s, "faces": faces, "frames": frames,
            "init_s": init_s, "width": width, "height": height}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args(argv)
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import av
    import mediapipe as mp
    import numpy as np

    face_mesh_cls = mp.solutions.face_mesh.FaceMesh
    for _ in range(args.warmup):
        one_pass(args.clip, face_mesh_cls)
    runs = [one_pass(args.clip, face_mesh_cls) for _ in range(max(1, args.repeats))]
    out = {
        "frames": runs[0]["frames"], "width": runs[0]["width"], "height": runs[0]["height"],
        "runs": [{k: r[k] for k in ("wall_s", "cpu_s", "decode_s", "facemesh_s", "faces")} for r in runs],
        "init_s": [r["init_s"] for r in runs],
        "versions": {"mediapipe": mp.__version__, "av": av.__version__, "numpy": np.__version__,
                     "python": sys.version.split()[0]},
    }
    sys.stdout.write("\n" + json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Peer reference for ``benchmarks.landmarks``: MediaPipe FaceMesh's 468 points on still images, as JSON.

Self-contained on purpose (imports only mediapipe, numpy and Pillow, never fdin): it runs under the
bench-only venv ``.venv-bench`` (``requirements-bench.txt``). Run as a *script*::

    .venv-bench/bin/python benchmarks/facemesh_points.py IMAGE.npy [IMAGE.npy ...]

Each input is an ``(H, W, 3) uint8`` RGB array saved with ``numpy.save`` (so both venvs see the very
same pixels). Each image goes to a fresh ``FaceMesh(static_image_mode=True, max_num_faces=5,
refine_landmarks=False, min_detection_confidence=0.5)`` (MediaPipe's own face detector and crop).
Printed JSON (last stdout line): ``{"results": [[face, ...] per image], "mediapipe": version}``,
where ``face`` is a list of 468 ``[x, y]`` pixel points.
"""

from __future__ import annotations

import json
import os
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import mediapipe as mp
    import numpy as np

    results = []
    for path in argv:
        image = np.ascontiguousarray(np.load(path, allow_pickle=False))
        h, w = image.shape[:2]
        with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=5, refine_landmarks=False,
                                             min_detection_confidence=0.5) as mesh:
            out = mesh.process(image)
        faces = []
        for face in out.multi_face_landmarks or []:
            faces.append([[p.x * w, p.y * h] for p in face.landmark])
        results.append(faces)
    sys.stdout.write("\n" + json.dumps({"results": results, "mediapipe": mp.__version__}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

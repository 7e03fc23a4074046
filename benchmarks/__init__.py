"""Measurement harnesses that are not part of the runtime library (never shipped in the wheel).

* :mod:`benchmarks.speed` — ``make bench`` / ``python -m benchmarks.speed``: the speed report in
  ``docs/benchmarks/speed.md``;
* :mod:`benchmarks.facemesh_peer` — the MediaPipe FaceMesh peer, run under ``.venv-bench``;
* :mod:`benchmarks.perception` — ``python -m benchmarks.perception``: the measured tables of
  ``docs/perception.md`` and the generated clips the perception tests reuse.
"""

"""Measurement harnesses that are not part of the runtime library (never shipped in the wheel).

* :mod:`benchmarks.speed` — ``make bench`` / ``python -m benchmarks.speed``: the speed report in
  ``docs/benchmarks/speed.md``; it only orchestrates its parts, each with one job, importing only
  from below (no circle; ``tests/test_bench.py`` checks): :mod:`benchmarks.common` (shared helpers),
  :mod:`benchmarks.clips` (generated and real clips), :mod:`benchmarks.peer` (MediaPipe FaceMesh),
  :mod:`benchmarks.inprocess` (measurements in this process), :mod:`benchmarks.processes` (whole
  processes: CLI, app), :mod:`benchmarks.report` (targets, markdown, figure);
* :mod:`benchmarks.facemesh_peer` — the MediaPipe FaceMesh peer, run under ``.venv-bench``;
* :mod:`benchmarks.perception` — ``python -m benchmarks.perception``: the measured tables of
  ``docs/perception.md`` and the generated clips the perception tests reuse.
"""

"""The one progress-callback type of fdin: ``progress(stage, fraction)``.

``stage`` is a short human-readable word ("decode", "track", "expression", ...), ``fraction`` the
share of that call's work done so far, in [0, 1]. :class:`fdin.analyze.DynamicsAnalyzer`,
:class:`fdin.relate.RelationPredictor` and the app's handlers all take and give this type.
"""

from __future__ import annotations

from collections.abc import Callable

ProgressFn = Callable[[str, float], None]


def no_progress(stage: str, fraction: float) -> None:
    """A :data:`ProgressFn` that ignores every report."""


def report_steps(progress: ProgressFn | None, stage: str) -> Callable[[int, int], None]:
    """A ``(done, total)`` callback (as the tracker gives) that reports ``stage`` to ``progress``."""
    target = progress or no_progress
    return lambda done, total: target(stage, done / max(total, 1))


__all__ = ["ProgressFn", "no_progress", "report_steps"]

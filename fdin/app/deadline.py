"""How long one video analysis may take in the app, so that one long many-face clip cannot hold a
slot for minutes: the clip's length and the faces in it, and the sentence a visitor reads when the analysis passes its deadline
(:func:`fdin.app.settings.analysis_deadline_s` gives the budget)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def clip_size(video: Any, predictors: Any) -> tuple[float, int]:
    """``(seconds, faces)`` of a decoded clip for its analysis deadline: the length from its frame
    times, the faces as the most the detector finds on three frames (first, middle, last; a few tens of
    milliseconds). A detector failure counts one face (the deadline is then the shortest)."""
    frames = getattr(video, "frames", None)
    times = np.asarray(getattr(video, "timestamps", ()), np.float64)
    seconds = float(times[-1] - times[0]) if len(times) > 1 else 0.0
    faces = 1
    try:
        backend = predictors.backend()
        count = len(frames) if frames is not None else 0
        for k in sorted({0, count // 2, count - 1}) if count else ():
            faces = max(faces, len(backend.detect_boxes(np.ascontiguousarray(frames[k]))))
    except Exception:  # the analysis itself reports a broken backend clearly
        log.info("face count for the deadline failed; using one face")
    return seconds, faces


def deadline_message(seconds: float, faces: int, budget: float) -> str:
    """What the user reads when an analysis passes its deadline."""
    who = "one face" if faces <= 1 else f"{faces} faces"
    return (f"The analysis of this {seconds:.0f} s clip ({who}) did not finish within its time limit of "
            f"{budget:.0f} s and was stopped; nothing was kept. Try a shorter clip, or one with fewer faces.")


__all__ = ["clip_size", "deadline_message"]

"""How far a tracker's landmarks are from the reference: per-frame detection + fit.

:func:`reference_track` runs the detector on every frame at full scale and fits the 68 landmarks
in each detection box (``track_faces(detect_every=1, detect_downscale=1.0)``): the most expensive,
most literal way to get landmarks, and what every speed-up is measured against.
:func:`landmark_error` compares another track with it frame by frame, in units of the reference's
inter-ocular distance (:func:`fdin.geometry.interocular_distance`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fdin.geometry import interocular_distance


@dataclass(frozen=True)
class LandmarkError:
    """Mean point-to-point distance / inter-ocular distance over the frames both tracks found."""

    mean_iod: float
    p95_iod: float
    max_iod: float
    frames_compared: int
    frames_only_reference: int
    frames_only_tracker: int

    def to_json_dict(self) -> dict[str, Any]:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def reference_track(frames: Any, backend: Any) -> Any:
    """The primary track of per-frame detect + fit (no appearance)."""
    from fdin.perception import primary_track, track_faces

    return primary_track(track_faces(frames, backend, detect_every=1, detect_downscale=1.0, appearance_frames=0))


def landmark_error(reference: Any, track: Any) -> LandmarkError:
    """Compare ``track`` with ``reference`` (two :class:`fdin.perception.FaceTrack`) on common frames."""
    ref = dict(zip(reference.frame_indices, reference.faces, strict=True))
    got = dict(zip(track.frame_indices, track.faces, strict=True))
    common = sorted(set(ref) & set(got))
    if not common:
        return LandmarkError(float("nan"), float("nan"), float("nan"), 0, len(ref), len(got))
    a = np.stack([ref[i].landmarks for i in common]).astype(np.float64)
    b = np.stack([got[i].landmarks for i in common]).astype(np.float64)
    per_frame = np.linalg.norm(a - b, axis=-1).mean(-1) / np.asarray(interocular_distance(a))
    return LandmarkError(float(per_frame.mean()), float(np.percentile(per_frame, 95)), float(per_frame.max()),
                         len(common), len(set(ref) - set(got)), len(set(got) - set(ref)))

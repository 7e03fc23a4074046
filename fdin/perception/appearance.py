"""Apparent gender/age along a track: which frames are estimated (:func:`estimate_appearance`) and the
per-track summary (:class:`AppearanceSummary`, :func:`track_appearance`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from fdin.labels import gender_label
from fdin.perception.base import FaceBackend
from fdin.perception.types import FaceTrack


def spread_picks(n: int, k: int) -> list[int]:
    """Up to ``k`` positions evenly spread over ``0..n-1`` (first and last included), ascending."""
    return sorted(set(np.rint(np.linspace(0, n - 1, min(k, n))).astype(int).tolist())) if n > 0 and k > 0 else []


def picks_by_frame(tracks: list[FaceTrack], per_track: int) -> dict[int, list[tuple[FaceTrack, int]]]:
    """Frame index -> ``(track, position)`` of the up to ``per_track`` evenly spread faces of each track."""
    by_frame: dict[int, list[tuple[FaceTrack, int]]] = {}
    for t in tracks:
        for pos in spread_picks(len(t.faces), per_track):
            by_frame.setdefault(t.frame_indices[pos], []).append((t, pos))
    return by_frame


def set_appearance(be: FaceBackend, image: np.ndarray, items: list[tuple[FaceTrack, int]]) -> None:
    """Set ``appearance`` on the faces ``items`` (``(track, position)``) of one frame: one batched call."""
    set_appearances(be, [(image, items)])


def set_appearances(be: FaceBackend, frames: list[tuple[np.ndarray, list[tuple[FaceTrack, int]]]]) -> None:
    """:func:`set_appearance` for several ``(frame, items)`` at once: one call for all their faces
    (:meth:`~fdin.perception.base.FaceBackend.appearance_of_frames`)."""
    estimates = be.appearance_of_frames([(np.ascontiguousarray(image), [t.faces[pos] for t, pos in items])
                                         for image, items in frames])
    for (_, items), apps in zip(frames, estimates, strict=True):
        for (t, pos), app in zip(items, apps, strict=True):
            t.faces[pos] = replace(t.faces[pos], appearance=app)


def estimate_appearance(tracks: list[FaceTrack], frames: Any, be: FaceBackend, per_track: int) -> None:
    """Set ``appearance`` on up to ``per_track`` evenly spread faces of each track (one batched call
    for all those frames: :func:`set_appearances`)."""
    set_appearances(be, [(frames[index], items) for index, items in sorted(picks_by_frame(tracks, per_track).items())])



@dataclass(frozen=True)
class AppearanceSummary:
    """Apparent gender/age of one track: mean and spread (std) over the frames where it was estimated."""

    p_female_mean: float
    p_female_std: float
    age_mean: float
    age_std: float
    frames: int
    model: str

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "gender": {"label": gender_label(self.p_female_mean),
                       "p_female": round(self.p_female_mean, 4), "std": round(self.p_female_std, 4)},
            "age": {"years": round(self.age_mean, 1), "std": round(self.age_std, 1)},
            "frames": self.frames, "model": self.model,
        }


def track_appearance(track: FaceTrack) -> AppearanceSummary | None:
    """Mean/std of ``p_female`` and age over the track's faces that carry an appearance estimate."""
    apps = [f.appearance for f in track.faces if f.appearance is not None]
    if not apps:
        return None
    p = np.array([a.p_female for a in apps], np.float64)
    age = np.array([a.age_years for a in apps], np.float64)
    return AppearanceSummary(p_female_mean=float(p.mean()), p_female_std=float(p.std()),
                             age_mean=float(age.mean()), age_std=float(age.std()), frames=len(apps),
                             model=apps[0].model)

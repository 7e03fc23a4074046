"""Typed pieces of fdin's results, each with one ``to_json_dict`` giving its documented JSON.

Used by :class:`fdin.analyze.TraitResult`, :class:`fdin.relate.RelationResult`, :class:`FacesResult`
(the ``faces`` command and the app's Faces tab); viz, the app and the CLI read their fields by name.
Bottom layer: numpy and :mod:`fdin.labels` only (perception types are imported for typing only).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fdin.labels import gender_label

if TYPE_CHECKING:
    from fdin.expression_fer import ExpressionEstimate
    from fdin.perception.types import Face


def _r(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


@dataclass(frozen=True)
class GenderEstimate:
    """Apparent (binary) gender: ``p_female`` in [0, 1]; ``std`` its spread over frames when averaged."""

    p_female: float
    std: float | None = None

    @property
    def label(self) -> str:
        return gender_label(self.p_female)

    @property
    def confidence(self) -> float:
        return max(self.p_female, 1.0 - self.p_female)

    def to_json_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "p_female": _r(self.p_female, 4)}
        if self.std is not None:
            out["std"] = _r(self.std, 4)
        return out


@dataclass(frozen=True)
class AgeEstimate:
    """Apparent age in years; ``std`` the model's uncertainty or the spread over frames, when known."""

    years: float
    std: float | None = None

    def to_json_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"years": _r(self.years, 1)}
        if self.std is not None:
            out["std"] = _r(self.std, 1)
        return out


@dataclass(frozen=True)
class Estimates:
    """Gender and age from one source (FDIN on dynamics, or the appearance model). For the appearance
    model ``frames`` is how many frames carried an estimate and ``model`` its name; all ``None`` when no
    frame had one."""

    gender: GenderEstimate | None
    age: AgeEstimate | None
    frames: int | None = None
    model: str | None = None

    @classmethod
    def from_track_summary(cls, summary: Any) -> Estimates:
        """From :class:`fdin.perception.AppearanceSummary` (or ``None``: no appearance estimate)."""
        if summary is None:
            return cls(None, None)
        return cls(GenderEstimate(summary.p_female_mean, summary.p_female_std),
                   AgeEstimate(summary.age_mean, summary.age_std), frames=int(summary.frames), model=summary.model)

    def to_json_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"gender": self.gender.to_json_dict() if self.gender else None,
                               "age": self.age.to_json_dict() if self.age else None}
        if self.frames is not None:
            out["frames"] = self.frames
        if self.model is not None or self.gender is None:
            out["model"] = self.model
        return out


@dataclass(frozen=True)
class TrackCount:
    """Frames of the analysed video where the primary face was found / lost."""

    found: int
    lost: int

    def to_json_dict(self) -> dict[str, int]:
        return {"found": int(self.found), "lost": int(self.lost)}


@dataclass(frozen=True)
class Coverage:
    """Which seconds of the video were analysed: ``start_s``-``end_s`` (seconds from its first frame);
    ``whole``: the video was analysed to its end (no limit cut it, nothing damaged); ``notes``: why not,
    in plain words (which limit, and who set it)."""

    start_s: float
    end_s: float
    whole: bool
    notes: tuple[str, ...] = ()

    @classmethod
    def of_video(cls, video: Any) -> Coverage:
        """From a decoded :class:`fdin.media.Video` (its ``timestamps``, ``truncated`` and ``notes``)."""
        stamps = np.asarray(getattr(video, "timestamps", ()), dtype=np.float64)
        fps = float(getattr(video, "fps", 0) or 0)
        end = float(stamps[-1] - stamps[0]) + (1.0 / fps if fps > 0 else 0.0) if stamps.size else 0.0
        return cls(0.0, end, not bool(getattr(video, "truncated", False)), tuple(getattr(video, "notes", ()) or ()))

    def to_json_dict(self) -> dict[str, Any]:
        return {"start_s": round(float(self.start_s), 3), "end_s": round(float(self.end_s), 3),
                "whole_video": bool(self.whole), "notes": list(self.notes)}


@dataclass(frozen=True)
class Importance:
    """FDIN's relational importance: one (R, R) matrix per target over ``regions`` (symmetric, zero
    diagonal, upper triangle sums to 1). ``matrix`` is the primary target's (gender)."""

    regions: tuple[str, ...]
    by_target: Mapping[str, np.ndarray]
    primary: str = "gender"
    normalisation: str = "upper triangle sums to 1 (full matrix sums to 2)"

    @property
    def matrix(self) -> np.ndarray:
        return np.asarray(self.by_target[self.primary])

    def to_json_dict(self) -> dict[str, Any]:
        return {"regions": list(self.regions), "matrix": np.round(self.matrix, 5).tolist(),
                "by_target": {k: np.round(np.asarray(v), 5).tolist() for k, v in self.by_target.items()},
                "normalisation": self.normalisation}


#: direction words of a positive / negative effect per target (see :class:`PairEffect`)
EFFECT_DIRECTIONS = {"gender": ("female", "male"), "age": ("older", "younger")}
#: units of an effect per target
EFFECT_UNITS = {"gender": "p_female", "age": "years"}


@dataclass(frozen=True)
class PairEffect:
    """How much one region pair's relational feature moved one estimate.

    ``effect`` = the estimate with all pairs minus the estimate with this pair's relational feature
    removed (replaced by its mean over the training sequences; :meth:`fdin.models.fdin.FDIN.pair_effects`).
    Gender: in p(female) units, + = the pair pushed toward "female"; age: years, + = toward older.
    """

    regions: tuple[str, str]
    effect: float
    toward: str

    def to_json_dict(self) -> dict[str, Any]:
        return {"regions": list(self.regions), "effect": _r(self.effect, 4), "toward": self.toward}


@dataclass(frozen=True)
class Attribution:
    """FDIN's per-estimate attribution: for every region pair, the signed effect on *this* estimate
    of removing that pair's relational feature (exact leave-one-pair-out, one extra forward pass per
    pair). Unlike the learned :class:`Importance` (the model's own weighting of the pairs, which can
    be a gate that says nothing about a given estimate), this is what each pair *did* to the output.

    ``by_target[t]``: (R, R) signed effects (symmetric, zero diagonal) in ``EFFECT_UNITS[t]``;
    ``noise[t]``: effects with ``|effect| <= noise`` are not distinguished from noise (the level
    measured on inputs with no signal: frame-shuffled sequences, white noise, a still face).
    """

    regions: tuple[str, ...]
    by_target: Mapping[str, np.ndarray]
    noise: Mapping[str, float]
    method: str = ("leave-one-pair-out: estimate with all pairs minus estimate with the pair's relational "
                   "feature replaced by its mean over the training sequences")

    def effects(self, target: str = "gender") -> list[PairEffect]:
        """Every pair's effect on ``target``, largest magnitude first ([] when the weights for
        ``target`` carry no attribution: check ``target in by_target`` before saying none stands out)."""
        if target not in self.by_target:
            return []
        m = np.asarray(self.by_target[target], dtype=np.float64)
        r = len(self.regions)
        up, down = EFFECT_DIRECTIONS.get(target, ("higher", "lower"))
        items = [PairEffect((self.regions[i], self.regions[j]), float(m[i, j]), up if m[i, j] >= 0 else down)
                 for i in range(r) for j in range(i + 1, r)]
        return sorted(items, key=lambda e: -abs(e.effect))

    def salient(self, target: str = "gender", k: int = 3) -> list[PairEffect]:
        """The (at most ``k``) pairs whose effect on ``target`` exceeds the noise level, largest
        first; ``[]`` means that no relation stands out for this estimate."""
        noise = float(self.noise.get(target, 0.0))
        return [e for e in self.effects(target) if abs(e.effect) > noise][:k]

    def to_json_dict(self) -> dict[str, Any]:
        return {"regions": list(self.regions),
                "by_target": {k: np.round(np.asarray(v, dtype=np.float64), 5).tolist()
                              for k, v in self.by_target.items()},
                "units": {k: EFFECT_UNITS.get(k, "") for k in self.by_target},
                "noise": {k: _r(v, 5) for k, v in self.noise.items()},
                "salient": {k: [e.to_json_dict() for e in self.salient(k)] for k in self.by_target},
                "method": self.method}


@dataclass(frozen=True)
class ModelProvenance:
    """One ``models`` entry: what produced an output, from which weights, trained on what."""

    name: str | None
    weights: str | Mapping[str, str]
    trained_on: str
    licence: str
    synthetic_training_data: bool | None = None
    target: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelProvenance:
        return cls(name=d.get("name"), weights=d.get("weights", ""), trained_on=str(d.get("trained_on", "unknown")),
                   licence=str(d.get("licence", "unknown")), synthetic_training_data=d.get("synthetic_training_data"),
                   target=d.get("target"))

    def to_json_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name,
                               "weights": self.weights if isinstance(self.weights, str) else dict(self.weights),
                               "trained_on": self.trained_on}
        if self.synthetic_training_data is not None:
            out["synthetic_training_data"] = bool(self.synthetic_training_data)
        out["licence"] = self.licence
        if self.target is not None:
            out["target"] = self.target
        return out


def any_synthetic(models: Sequence[ModelProvenance]) -> bool:
    """Whether any of ``models`` was trained on data fdin generated."""
    return any(bool(m.synthetic_training_data) for m in models)


@dataclass(frozen=True)
class FacesResult:
    """Every face of one photo (``fdin faces`` on a photo; the app's Faces tab). ``expressions[i]`` is
    the FER2013 model's estimate for ``faces[i]`` (empty when no expression model was run; each face's
    JSON ``expression`` is then ``null``)."""

    faces: list[Face]
    backend: Mapping[str, Any]
    width: int
    height: int
    notes: list[str] = field(default_factory=list)
    expressions: list[ExpressionEstimate] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.expressions and len(self.expressions) != len(self.faces):
            raise ValueError(f"{len(self.expressions)} expressions for {len(self.faces)} faces")

    def expression_of(self, index: int) -> ExpressionEstimate | None:
        return self.expressions[index] if self.expressions else None

    def to_json_dict(self) -> dict[str, Any]:
        faces = []
        for i, f in enumerate(self.faces):
            estimate = self.expression_of(i)
            faces.append({**f.to_json_dict(), "expression": estimate.to_json_dict() if estimate else None})
        return {"faces": faces, "backend": dict(self.backend),
                "image": {"width": int(self.width), "height": int(self.height)}}


__all__ = ["EFFECT_DIRECTIONS", "EFFECT_UNITS", "AgeEstimate", "Attribution", "Coverage", "Estimates",
           "FacesResult", "GenderEstimate", "Importance", "ModelProvenance", "PairEffect", "TrackCount", "any_synthetic"]

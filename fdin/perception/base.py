"""The face backend contract (:class:`FaceBackend`, :class:`Detection`) and where insightface's
models are looked for. The registry of backends by name is :mod:`fdin.perception.registry`.

A backend is insightface's task-model pipeline made explicit and typed: a detector
(:meth:`FaceBackend.detect_boxes`), a 68-point landmark fit on any face box
(:meth:`FaceBackend.landmarks_for_box`, what tracking uses between detections), head pose, and an
appearance (apparent gender/age) head run on a batch of faces (:meth:`FaceBackend.appearance`).
:meth:`FaceBackend.detect` chains them into :class:`~fdin.perception.types.Face` records.

A backend holds only read-only models: no per-request state, so one instance serves concurrent
requests.

Nothing heavy is imported here: model libraries load inside the builders.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fdin.geometry import keypoints_from_landmarks68
from fdin.perception.types import Appearance, Face

#: Files that make a directory a usable insightface buffalo_l pack for fdin.
INSIGHTFACE_REQUIRED = ("det_10g.onnx",)
INSIGHTFACE_HINT = (
    "put the insightface buffalo_l pack (det_10g.onnx, 1k3d68.onnx, 2d106det.onnx, genderage.onnx) in "
    "weights/insightface/buffalo_l or ~/.insightface/models/buffalo_l, or point FDIN_INSIGHTFACE_DIR at it; "
    "its models are for non-commercial research only")


@dataclass(frozen=True)
class Detection:
    """One detector hit. ``bbox``: (4,) float32 xyxy pixels in the input image; ``score`` in [0, 1];
    ``keypoints``: the detector's own (5, 2) points (insightface order) or None."""

    bbox: np.ndarray
    score: float
    keypoints: np.ndarray | None = None


class FaceBackend(ABC):
    """Detector + 68-point landmarks + pose + appearance, on ``(H, W, 3) uint8`` RGB images.

    Subclasses implement :meth:`detect_boxes`, :meth:`landmarks_for_box` and :meth:`appearance`;
    :meth:`face_for_box` (landmarks, keypoints, pose for one box) and :meth:`detect` have defaults.
    """

    name: ClassVar[str]

    @property
    @abstractmethod
    def models(self) -> dict[str, str]:
        """Which model produces each :class:`Face` field (copied into ``Face.models``)."""

    def info(self) -> dict[str, Any]:
        """JSON-ready description: ``{"name", "models"}``."""
        return {"name": self.name, "models": dict(self.models)}

    @abstractmethod
    def detect_boxes(self, image: np.ndarray) -> list[Detection]:
        """Faces found by the detector alone, in detector order."""

    @abstractmethod
    def landmarks_for_box(self, image: np.ndarray, bbox: np.ndarray) -> np.ndarray:
        """(68, 2) float32 pixel landmarks (iBUG order) fitted inside a detector-style xyxy box."""

    def fit_for_box(self, image: np.ndarray, bbox: np.ndarray,
                    keypoints: np.ndarray | None = None) -> tuple[np.ndarray, float | None]:
        """``(landmarks (68, 2) float32, fit score in [0, 1] or None)`` for one box. ``keypoints``: what is
        known of the face, which a backend may use to place its crop: the detector's 5 points
        (insightface order), or the previous frame's 68 landmarks while tracking. Default:
        :meth:`landmarks_for_box`, no score."""
        return self.landmarks_for_box(image, bbox), None

    @abstractmethod
    def appearance(self, image: np.ndarray, faces: Sequence[Face]) -> list[Appearance | None]:
        """Apparent gender/age for each face of one image (one batched model call), in order."""

    def appearance_of_frames(self, items: Sequence[tuple[np.ndarray, Sequence[Face]]]) -> list[list[Appearance | None]]:
        """:meth:`appearance` of several ``(image, faces)`` at once, in order (a backend may batch
        the faces of all the images into one model call; by default, one call per image)."""
        return [self.appearance(image, faces) for image, faces in items]

    def face_for_box(self, image: np.ndarray, bbox: np.ndarray, *, score: float,
                     keypoints: np.ndarray | None = None) -> Face:
        """Landmarks, keypoints and head pose for one detector-style box (no appearance).

        ``keypoints`` (optional): the detector's (5, 2) points or the previous frame's (68, 2) landmarks
        (:meth:`fit_for_box`); the returned ``Face.keypoints`` are always re-derived from the fit.

        The head pose is computed when first read (:class:`fdin.perception.pose.LazyPose`).
        Keypoints are always derived from the 68 landmarks (eye centres, nose tip 30, mouth corners
        48/54; :func:`fdin.geometry.keypoints_from_landmarks68`), so they exist on tracked frames
        too and relation alignment sees the same points in training and inference.
        """
        from fdin.perception.pose import LazyPose

        landmarks, fit_score = self.fit_for_box(image, bbox, keypoints)
        return Face(bbox=np.asarray(bbox, dtype=np.float32), score=float(score), landmarks=landmarks,
                    keypoints=keypoints_from_landmarks68(landmarks).astype(np.float32),
                    pose=LazyPose(landmarks, (image.shape[1], image.shape[0])), models=dict(self.models),
                    fit_score=fit_score)

    def detect(self, image: np.ndarray, *, with_appearance: bool = True) -> list[Face]:
        """Full pipeline on one image, faces in detector order."""
        image = as_rgb(image)
        faces = [self.face_for_box(image, d.bbox, score=d.score, keypoints=d.keypoints)
                 for d in self.detect_boxes(image)]
        if with_appearance and faces:
            faces = with_appearances(faces, self.appearance(image, faces))
        return faces


def with_appearances(faces: Sequence[Face], appearances: Sequence[Appearance | None]) -> list[Face]:
    """Copies of ``faces`` with their ``appearance`` set (Face is frozen)."""
    from dataclasses import replace

    return [replace(f, appearance=a) for f, a in zip(faces, appearances, strict=True)]


def as_rgb(image: np.ndarray) -> np.ndarray:
    """C-contiguous ``(H, W, 3) uint8`` view/copy of an RGB image (grey/RGBA/float are normalised)."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    from fdin.media import ensure_rgb_uint8

    return np.ascontiguousarray(ensure_rgb_uint8(arr))


# --- insightface model directory ------------------------------------------------------------------
def insightface_candidates(models_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Where buffalo_l is looked for, in order: ``models_dir``, ``FDIN_INSIGHTFACE_DIR``,
    ``<weights>/insightface/buffalo_l`` (``FDIN_WEIGHTS_DIR`` or the repo's ``weights/``),
    ``~/.insightface/models/buffalo_l``."""
    from fdin.weights import weights_dir

    out = [Path(models_dir)] if models_dir else []
    if os.environ.get("FDIN_INSIGHTFACE_DIR"):
        out.append(Path(os.environ["FDIN_INSIGHTFACE_DIR"]))
    out += [weights_dir() / "insightface" / "buffalo_l", Path("~/.insightface/models/buffalo_l")]
    return [p.expanduser() for p in out]


def find_insightface_dir(models_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The first candidate directory holding :data:`INSIGHTFACE_REQUIRED`, else None. An explicit
    ``models_dir`` that is not usable returns None (it is not silently replaced by another one)."""
    candidates = insightface_candidates(models_dir)
    if models_dir:
        candidates = candidates[:1]
    for path in candidates:
        if path.is_dir() and all((path / f).is_file() for f in INSIGHTFACE_REQUIRED):
            return path.resolve()
    return None

"""Typed face records shared by every perception backend, the CLI and the app.

Coordinate conventions (used everywhere in fdin):

* Pixel coordinates are ``(x, y)`` in the original, upright image; x grows right, y grows down.
* Boxes are ``xyxy``: ``(x0, y0, x1, y1)`` in pixels.
* ``landmarks`` are the 68 points of the iBUG 300-W scheme, in its order: 0-16 jaw (from the
  image-left side of the face to the image-right side), 17-21 and 22-26 brows, 27-35 nose, 36-41 and
  42-47 eyes, 48-67 mouth. In iBUG order, points 36-41 are the eye on the *image-left*, which for a
  subject facing the camera is the subject's **right** eye. fdin names regions subject-centrically
  (``eye_right`` is the subject's own right eye, points 36-41); see :mod:`fdin.regions`.
* ``keypoints`` are 5 points in insightface/SCRFD order: image-left eye centre (subject's right
  eye), image-right eye centre (subject's left eye), nose tip, image-left mouth corner, image-right
  mouth corner.
* Head pose angles are degrees. ``yaw`` > 0: the subject turns their head towards their own left
  (their nose moves to the image right); ``pitch`` > 0: chin up (looking up); ``roll`` > 0: the head
  tilts so that the subject's left eye (image right) goes down, i.e. clockwise in the image.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fdin.labels import gender_label


@dataclass(frozen=True)
class Pose:
    yaw: float
    pitch: float
    roll: float

    def to_json_dict(self) -> dict[str, float]:
        return {"yaw": round(float(self.yaw), 2), "pitch": round(float(self.pitch), 2),
                "roll": round(float(self.roll), 2)}


@dataclass(frozen=True)
class Appearance:
    """Appearance (single-image) estimate of *apparent* gender and age.

    ``p_female`` is the model's probability for the label "female" (binary labels are a limitation
    of the training data, not a statement about gender identity). ``age_years`` is apparent age.
    """

    p_female: float
    age_years: float
    model: str

    @property
    def gender_label(self) -> str:
        return gender_label(self.p_female)

    def to_json_dict(self) -> dict:
        return {
            "gender": {"label": self.gender_label, "p_female": round(float(self.p_female), 4)},
            "age": {"years": round(float(self.age_years), 1)},
            "model": self.model,
        }


@dataclass(frozen=True)
class Face:
    """One detected face in one image or frame.

    Attributes:
        bbox: (4,) float32, xyxy in pixels.
        score: detector confidence in [0, 1].
        landmarks: (68, 2) float32 pixel xy in iBUG-68 order.
        keypoints: (5, 2) float32 pixel xy (see module docstring for the order).
        pose: head pose in degrees.
        appearance: apparent gender/age, or None when the backend has no such model.
        models: which model produced each field, e.g. ``{"bbox": "yuface/libfacedetection",
            "landmarks": "dlib shape_predictor_68", ...}``.
        fit_score: the landmark model's own quality of this fit in [0, 1] (the default backend's
            face-presence probability; below 0.5 the fit failed and tracking drops it), or None when
            the landmark model gives none (dlib, insightface).
    """

    bbox: np.ndarray
    score: float
    landmarks: np.ndarray
    keypoints: np.ndarray
    pose: Pose
    appearance: Appearance | None = None
    models: dict[str, str] = field(default_factory=dict)
    fit_score: float | None = None

    @property
    def width(self) -> float:
        return float(self.bbox[2] - self.bbox[0])

    @property
    def height(self) -> float:
        return float(self.bbox[3] - self.bbox[1])

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    def to_json_dict(self) -> dict:
        return {
            "bbox": [round(float(v), 1) for v in self.bbox],
            "score": round(float(self.score), 4),
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in self.landmarks],
            "keypoints": [[round(float(x), 1), round(float(y), 1)] for x, y in self.keypoints],
            "pose": self.pose.to_json_dict(),
            "appearance": self.appearance.to_json_dict() if self.appearance else None,
            "models": dict(self.models),
            "fit_score": None if self.fit_score is None else round(float(self.fit_score), 4),
        }


@dataclass
class FaceTrack:
    """One face followed through a video.

    ``faces[i]`` is the face in frame ``frame_indices[i]``; ``lost_frames`` are the frames after the
    track started in which the face was searched for but not found: gaps inside its span, and, after
    its last sighting, the frames until tracking gave up on it (see :mod:`fdin.perception.tracking`).
    Nothing is interpolated or invented.
    """

    track_id: int
    frame_indices: list[int] = field(default_factory=list)
    faces: list[Face] = field(default_factory=list)
    lost_frames: list[int] = field(default_factory=list)

    @property
    def first_frame(self) -> int:
        return self.frame_indices[0]

    @property
    def last_frame(self) -> int:
        return self.frame_indices[-1]

    def __len__(self) -> int:
        return len(self.faces)

    def landmarks_array(self) -> np.ndarray:
        """(len(track), 68, 2) float32 landmarks of the frames where the face was found."""
        return np.stack([f.landmarks for f in self.faces]).astype(np.float32)

    def to_json_dict(self) -> dict:
        return {
            "track_id": self.track_id,
            "first_frame": self.first_frame if self.faces else None,
            "last_frame": self.last_frame if self.faces else None,
            "frames_found": len(self.faces),
            "lost_frames": list(self.lost_frames),
            "frame_indices": list(self.frame_indices),
            "faces": [f.to_json_dict() for f in self.faces],
        }

"""Five-point similarity alignment of faces to a fixed template (training and inference share it).

The template is the widely used insightface/ArcFace 112x112 five-point template (eye centres, nose
tip, mouth corners; insightface order, see :mod:`fdin.perception.types`), shrunk towards the crop
centre by ``template_scale`` so the crop also holds the brows, forehead and chin that expressions
use. With the default ``size=112, template_scale=0.8`` the eyes sit at about y=53 and the mouth
corners at about y=85 of a 112x112 crop. This is **fdin's own choice**; the papers' alignment
(SDM landmarks, 48x48 grey crops per third-party notes) was not read.

A similarity transform (rotation, uniform scale, translation; least squares,
:func:`fdin.geometry.similarity_transform`) maps the
detected points onto the template. The rotation it removes is reported as ``roll_removed``
(degrees, fdin's sign convention: positive = clockwise in the image) so a pose head trained on
aligned crops can predict the *residual* roll and the caller can add it back.

Boxes without keypoints (datasets that ship only a face box, e.g. ExpW) use
:func:`box_to_keypoints`, which places the template's points inside the box: a coarse stand-in
documented as such, not a landmark estimate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from fdin.geometry import keypoints_from_landmarks68, similarity_transform

#: insightface/ArcFace 5-point template for a 112x112 crop, pixel xy, insightface order.
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64)

@dataclass(frozen=True)
class AlignmentSpec:
    """How a face is cut out: stored in every expression/relation model config."""

    size: int = 112
    template: str = "arcface5"
    template_scale: float = 0.8

    def template_points(self) -> np.ndarray:
        """(5, 2) float64 target pixel xy in the ``size`` x ``size`` crop."""
        if self.template != "arcface5":
            raise ValueError(f"unknown alignment template {self.template!r}")
        centre = np.array([56.0, 56.0])
        points = centre + (ARCFACE_TEMPLATE_112 - centre) * self.template_scale
        # shift down a little so brows fit as well as the chin
        points = points + np.array([0.0, -2.0])
        return points * (self.size / 112.0)

    def to_dict(self) -> dict:
        return asdict(self)


def box_to_keypoints(bbox_xyxy: np.ndarray | list[float]) -> np.ndarray:
    """Coarse (5, 2) keypoints for a face box when no landmarks exist (template placed in the box).

    The box is assumed to be a detector-style face box (brows to chin, ear to ear): the template's
    112x112 frame is mapped onto it with 10 % padding. fdin's own convention.
    """
    x0, y0, x1, y1 = (float(v) for v in bbox_xyxy)
    scale = np.array([(x1 - x0), (y1 - y0)]) / 112.0
    return np.array([x0, y0]) + ARCFACE_TEMPLATE_112 * scale


def rotation_degrees(matrix: np.ndarray) -> float:
    """Image-plane rotation that ``matrix`` *removes*, degrees, positive = clockwise in the image."""
    return float(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0])) * -1.0)


def align_face(image: np.ndarray, keypoints: np.ndarray, spec: AlignmentSpec = AlignmentSpec(),
               ) -> tuple[np.ndarray, float]:
    """Cut out one aligned face.

    Args:
        image: (H, W, 3) uint8 RGB.
        keypoints: (5, 2) pixel xy in insightface order.
        spec: crop size and template.

    Returns:
        ``(crop, roll_removed)``: (size, size, 3) uint8 RGB, and the image-plane rotation removed
        (degrees; add it to a residual roll predicted on the crop to get the head's roll).
    """
    import cv2

    matrix = similarity_transform(keypoints, spec.template_points())
    crop = cv2.warpAffine(np.ascontiguousarray(image), matrix, (spec.size, spec.size),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return crop, rotation_degrees(matrix)


def crop_to_tensor(crops: np.ndarray):
    """(B, S, S, 3) or (S, S, 3) uint8 RGB -> (B, 3, S, S) float32 torch tensor in [0, 1]."""
    import torch

    arr = np.asarray(crops)
    if arr.ndim == 3:
        arr = arr[None]
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2))).float().div_(255.0)


__all__ = ["ARCFACE_TEMPLATE_112", "AlignmentSpec", "align_face", "box_to_keypoints", "crop_to_tensor",
           "keypoints_from_landmarks68", "rotation_degrees", "similarity_transform"]

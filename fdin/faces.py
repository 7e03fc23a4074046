"""The faces predictor: every face of one photo as a typed :class:`~fdin.results.FacesResult`, with
each face's expression from the FER2013 model (:mod:`fdin.expression_fer`); and the expression of a
face track (:func:`track_expression`).

Shared by ``fdin faces`` and the app's Faces tab, so both give the same JSON.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from fdin.errors import ModelUnavailableError
from fdin.results import FacesResult

log = logging.getLogger(__name__)

#: Frames of a track whose expression is averaged (evenly spread over the track).
TRACK_EXPRESSION_FRAMES = 5


def faces_in(image: np.ndarray, backend: Any = None, expression: Any = None) -> FacesResult:
    """All faces in an (H, W, 3) uint8 RGB photo, left to right, with the backend's description and
    each face's expression. ``backend``: an instance, a registered name, or None for the default;
    ``expression``: a :class:`~fdin.expression_fer.FerExpressionModel`, or None for the shared default.
    When the default expression model's folder is not on disk the faces come without an expression
    (JSON ``null``) and ``notes`` says why; a folder that fails verification still raises."""
    from fdin.expression_fer import shared_model
    from fdin.perception import detect_faces, get_backend

    backend = get_backend(backend) if backend is None or isinstance(backend, str) else backend
    faces = detect_faces(image, backend)
    notes = []
    model = expression
    if model is None:
        try:
            model = shared_model()
        except ModelUnavailableError as error:
            log.warning("faces without expression: %s", error)
            notes.append(f"No expression: {error}")
    return FacesResult(faces=faces, backend=backend.info(), width=int(image.shape[1]), height=int(image.shape[0]),
                       notes=notes, expressions=model.predict(image, [f.bbox for f in faces]) if faces and model else [])


def track_expression(track: Any, frames: Any, expression: Any = None,
                     frames_per_track: int = TRACK_EXPRESSION_FRAMES) -> Any:
    """The expression of a :class:`~fdin.perception.FaceTrack`: the FER2013 probabilities averaged over
    up to ``frames_per_track`` evenly spread frames where the face was found (``frames[i]``: (H, W, 3)
    uint8 RGB frame i). Returns an :class:`~fdin.expression_fer.ExpressionEstimate`, or None for an
    empty track."""
    from fdin.expression_fer import ExpressionEstimate, shared_model

    if not track.faces:
        return None
    model = expression if expression is not None else shared_model()
    n = len(track.faces)
    picks = sorted(set(np.rint(np.linspace(0, n - 1, min(frames_per_track, n))).astype(int).tolist()))
    crops = [model.crop(np.asarray(frames[track.frame_indices[k]]), track.faces[k].bbox) for k in picks]
    mean = model.probabilities(crops).mean(axis=0)
    labels = model.labels
    return ExpressionEstimate(label=labels[int(mean.argmax())],
                              probs={k: float(v) for k, v in zip(labels, mean, strict=True)},
                              model={**model.provenance(), "frames": len(picks)})


__all__ = ["TRACK_EXPRESSION_FRAMES", "faces_in", "track_expression"]

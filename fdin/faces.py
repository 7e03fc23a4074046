"""The faces predictor: every face of one photo as a typed :class:`~fdin.results.FacesResult`, with
each face's expression from the FER2013 model (:mod:`fdin.expression_fer`); and the appearance and
expression of face tracks (:func:`track_expressions`).

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


def track_expressions(tracks: list[Any], frames: Any, backend: Any, expression: Any = None,
                      frames_per_track: int = TRACK_EXPRESSION_FRAMES) -> list[Any]:
    """Apparent gender/age and expression of each :class:`~fdin.perception.FaceTrack`, in one pass
    over ``frames`` (any iterable of the tracked video's (H, W, 3) uint8 RGB frames, in order, e.g. a
    second read of the video) that keeps no frame: up to ``frames_per_track`` evenly spread faces of
    each track get their ``appearance`` set, and the FER2013 probabilities of the same faces are
    averaged. So a video of any length needs the memory of one frame here.

    Returns one :class:`~fdin.expression_fer.ExpressionEstimate` per track (None for an empty one).
    """
    from fdin.expression_fer import ExpressionEstimate, shared_model
    from fdin.perception.appearance import picks_by_frame, set_appearance

    model = expression if expression is not None else shared_model()
    by_frame = picks_by_frame(tracks, frames_per_track)
    crops: dict[int, list[np.ndarray]] = {id(t): [] for t in tracks}
    last = max(by_frame, default=-1)
    for index, frame in enumerate(frames):
        if index > last:
            break
        items = by_frame.get(index)
        if items:
            image = np.ascontiguousarray(frame)
            set_appearance(backend, image, items)
            for t, pos in items:
                crops[id(t)].append(model.crop(image, t.faces[pos].bbox))
    out = []
    for t in tracks:
        if not crops[id(t)]:
            out.append(None)
            continue
        mean = model.probabilities(crops[id(t)]).mean(axis=0)
        out.append(ExpressionEstimate(label=model.labels[int(mean.argmax())],
                                      probs={k: float(v) for k, v in zip(model.labels, mean, strict=True)},
                                      model={**model.provenance(), "frames": len(crops[id(t)])}))
    return out


__all__ = ["TRACK_EXPRESSION_FRAMES", "faces_in", "track_expressions"]

"""The faces predictor: every face of one photo as a typed :class:`~fdin.results.FacesResult`.

Shared by ``fdin faces`` (a photo) and the app's Faces tab, so both give the same JSON.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fdin.results import FacesResult


def faces_in(image: np.ndarray, backend: Any = None) -> FacesResult:
    """All faces in an (H, W, 3) uint8 RGB photo, left to right, with the backend's description.
    ``backend``: an instance, a registered name, or None for the default."""
    from fdin.perception import detect_faces, get_backend

    backend = get_backend(backend) if backend is None or isinstance(backend, str) else backend
    return FacesResult(faces=detect_faces(image, backend), backend=backend.info(),
                       width=int(image.shape[1]), height=int(image.shape[0]))


__all__ = ["faces_in"]

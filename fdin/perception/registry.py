"""Face backends by name: :data:`BACKENDS` (no guessing from file shapes), :func:`register_backend`,
and :func:`get_backend`, which builds a backend lazily, once per process. :func:`detect_faces` is the
one-call entry point. The backends import :mod:`fdin.perception.base`; only this module imports them
(inside the builders, so importing it is cheap)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fdin.errors import ModelUnavailableError
from fdin.perception.base import INSIGHTFACE_HINT, FaceBackend, as_rgb, find_insightface_dir
from fdin.perception.types import Face

log = logging.getLogger(__name__)


def _build_offline(*, models_dir: str | os.PathLike[str] | None = None) -> FaceBackend:
    from fdin.perception.offline import OfflineBackend

    if models_dir:
        log.warning("--models-dir is ignored by the offline backend (its models ship in PyPI packages)")
    return OfflineBackend()


def _build_offline_dlib(*, models_dir: str | os.PathLike[str] | None = None) -> FaceBackend:
    from fdin.perception.offline import OfflineBackend

    if models_dir:
        log.warning("--models-dir is ignored by the offline-dlib backend (its models ship in PyPI packages)")
    return OfflineBackend(landmarks="dlib")


def _build_insightface(*, models_dir: str | os.PathLike[str] | None = None) -> FaceBackend:
    from fdin.perception.insightface_backend import InsightFaceBackend

    path = find_insightface_dir(models_dir)
    if path is None:
        where = f"{models_dir} does not hold det_10g.onnx" if models_dir else "buffalo_l was not found"
        raise ModelUnavailableError(f"The insightface backend is unavailable: {where}; {INSIGHTFACE_HINT}.")
    return InsightFaceBackend(path)


#: Backend builders by name. ``get_backend(None)`` / ``"auto"`` picks insightface when its models are
#: on disk, else offline. ``"offline"``: yuface + MediaPipe's face-landmark mesh (Apache-2.0);
#: ``"offline-dlib"``: yuface + dlib's 68-point predictor (fdin's earlier default, kept for research
#: continuity; its iBUG 300-W training data excludes commercial use).
BACKENDS: dict[str, Callable[..., FaceBackend]] = {
    "offline": _build_offline,
    "offline-dlib": _build_offline_dlib,
    "insightface": _build_insightface,
}

_CACHE: dict[tuple[str, str | None], FaceBackend] = {}
_LOCK = threading.Lock()
_AUTO_NOTED = False


def list_backends() -> list[str]:
    return sorted(BACKENDS)


def register_backend(name: str, builder: Callable[..., FaceBackend]) -> None:
    """Add a backend builder (``builder(*, models_dir=None) -> FaceBackend``) under ``name``."""
    if name in ("auto", ""):
        raise ValueError(f"{name!r} is reserved")
    BACKENDS[name] = builder


def resolve_backend_name(name: str | None = None, *, models_dir: str | os.PathLike[str] | None = None) -> str:
    """``None``/``"auto"`` → ``"insightface"`` when buffalo_l is on disk, else ``"offline"``."""
    global _AUTO_NOTED
    key = (name or "auto").strip().lower()
    if key != "auto":
        if key not in BACKENDS:
            raise ModelUnavailableError(
                f"Unknown face backend {name!r}; choose one of: auto, {', '.join(list_backends())}.")
        return key
    if find_insightface_dir(models_dir) is not None:
        return "insightface"
    if not _AUTO_NOTED:
        _AUTO_NOTED = True
        log.info("Using the offline face backend (yuface + MediaPipe face landmark + Cydral); for insightface, %s.", INSIGHTFACE_HINT)
    return "offline"


def get_backend(name: str | None = None, *, models_dir: str | os.PathLike[str] | None = None) -> FaceBackend:
    """The process-wide backend ``name`` (``None``/``"auto"``: see :func:`resolve_backend_name`).

    Built on first use and cached per (name, models_dir); thread-safe.

    Raises:
        ModelUnavailableError: unknown name, or the backend's models/packages are missing.
    """
    resolved = resolve_backend_name(name, models_dir=models_dir)
    key = (resolved, str(Path(models_dir).expanduser().resolve()) if models_dir else None)
    with _LOCK:
        backend = _CACHE.get(key)
        if backend is None:
            backend = BACKENDS[resolved](models_dir=models_dir)
            _CACHE[key] = backend
        return backend


def backend_of(backend: FaceBackend | str | None) -> FaceBackend:
    """``backend`` itself if it is an instance, else :func:`get_backend` of that name (None: default)."""
    return backend if isinstance(backend, FaceBackend) else get_backend(backend)


def detect_faces(image: np.ndarray, backend: FaceBackend | str | None = None, *,
                 with_appearance: bool = True) -> list[Face]:
    """All faces in one ``(H, W, 3) uint8`` RGB image, sorted left to right (by box centre x).

    ``backend``: an instance, a registered name, or None for the default (:func:`get_backend`).
    An image without faces gives ``[]`` (callers decide whether that is an error).
    """
    faces = backend_of(backend).detect(as_rgb(image), with_appearance=with_appearance)
    return sorted(faces, key=lambda f: float(f.bbox[0] + f.bbox[2]))

"""Process-wide locations fdin writes to (bottom layer: standard library only).

:func:`cache_dir` is the one lookup of the cache folder (``FDIN_CACHE_DIR``, default
``<temp>/fdin-cache``) used for ONNX exports, generated training images, benchmark clips, the record of
verified model files (:func:`fdin.weights.has_sha256`) and the app's
example media. Nothing in it is precious: deleting it only costs regeneration time.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def cache_root() -> Path:
    """``FDIN_CACHE_DIR`` or ``<system temp>/fdin-cache`` (not created)."""
    return Path(os.environ.get("FDIN_CACHE_DIR") or Path(tempfile.gettempdir()) / "fdin-cache")


def cache_dir(name: str) -> Path:
    """The sub-folder ``name`` of :func:`cache_root`, created if missing."""
    path = cache_root() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


__all__ = ["cache_dir", "cache_root"]

"""fdin: interpretable facial trait estimation from facial dynamics, and interpersonal relation
traits from face pairs.

The package is the importable library behind the CLI (``python -m fdin``), the training scripts in
``train/`` and the Gradio app. It never imports gradio except in :mod:`fdin.app`, and imports heavy
dependencies (torch, onnxruntime, dlib, av) lazily inside the functions that need them: the names
below are resolved on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from fdin.errors import FdinError

_LAZY = {
    "DynamicsAnalyzer": "fdin.analyze",
    "TraitResult": "fdin.analyze",
    "RelationPredictor": "fdin.relate",
    "RelationResult": "fdin.relate",
    "create_model": "fdin.models.registry",
    "list_models": "fdin.models.registry",
    "load_pretrained": "fdin.models.pretrained",
    "detect_faces": "fdin.perception",
    "track_faces": "fdin.perception",
    "get_backend": "fdin.perception",
    "load_image": "fdin.media",
    "read_video": "fdin.media",
}

__all__ = ["FdinError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fdin' has no attribute {name!r}")

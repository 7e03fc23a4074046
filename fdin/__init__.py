"""fdin: interpretable facial trait estimation from facial dynamics, and interpersonal relation
traits from face pairs.

The package is the importable library behind the CLI (``python -m fdin``), the training scripts in
``train/`` and the Gradio app. It never imports gradio except in :mod:`fdin.ui`, and imports heavy
dependencies (torch, onnxruntime, dlib, av) lazily inside the functions that need them.
"""

__version__ = "0.1.0"

from fdin.errors import FdinError

__all__ = ["FdinError", "__version__"]

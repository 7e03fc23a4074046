"""Rebuilding a trained model from a verified model folder: :func:`load_pretrained` and
:class:`LoadedModel`. Finding, verifying and saving folders is :mod:`fdin.weights` (a low-level
utility that knows nothing about architectures); building an architecture by name is
:mod:`fdin.models.registry`."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fdin.errors import WeightsIntegrityError
from fdin.models.registry import create_model
from fdin.weights import CONFIG_NAME, WEIGHTS_NAME, provenance_of, resolve_weights, verify_weights_dir


@dataclass
class LoadedModel:
    model: Any  # torch.nn.Module in eval mode
    config: dict[str, Any]
    path: Path
    source: str  # "weights/<name>", a directory, or "org/repo@revision"

    @property
    def trained_on(self) -> str:
        return str(self.config.get("trained_on", "unknown"))

    def provenance(self) -> dict[str, Any]:
        """The ``models`` entry the CLI/app report for this model."""
        return provenance_of(self.config, self.source)


def load_pretrained(source: str | os.PathLike[str], *, revision: str | None = None,
                    verify: bool = True) -> LoadedModel:
    """Rebuild a model from a model directory (see module docstring), verified, in eval mode."""
    from safetensors.torch import load_file

    path, described = resolve_weights(source, revision=revision)
    if verify:
        verify_weights_dir(path)
    try:
        config = json.loads((path / CONFIG_NAME).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise WeightsIntegrityError(f"{described}: {CONFIG_NAME} is missing or not valid JSON.") from error
    model = create_model(config["architecture"], **config.get("model_args", {}))
    try:
        state = load_file(str(path / WEIGHTS_NAME))
    except Exception as error:  # safetensors raises its own error types for malformed files
        raise WeightsIntegrityError(f"{described}: {WEIGHTS_NAME} is not a valid safetensors file.") from error
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise WeightsIntegrityError(
            f"{described}: the weights do not fit the {config['architecture']!r} architecture "
            f"(missing {len(missing)}, unexpected {len(unexpected)} tensors).")
    model.eval()
    return LoadedModel(model=model, config=config, path=path, source=described)


@dataclass
class OnnxBackedModel:
    """A verified model folder served by ONNX Runtime when possible, PyTorch otherwise (the predictors
    :class:`fdin.models.fdin_onnx.FdinPredictor` and :class:`fdin.expression_fer.FerExpressionModel`).

    ``config``/``path``/``source``/``provenance()`` mirror :class:`LoadedModel`; ``backend`` is
    ``"onnxruntime"`` or ``"torch"``; ``session`` the ONNX Runtime session (or None); ``model``, the
    PyTorch module, is loaded from the verified folder on first access only.
    """

    config: dict[str, Any]
    path: Path
    source: str
    backend: str
    onnx_path: Path | None = None
    session: Any = field(default=None, repr=False)
    _model: Any = field(default=None, repr=False)

    @property
    def model(self) -> Any:
        """The PyTorch module (loaded on first access)."""
        if self._model is None:
            self._model = load_pretrained(self.path, verify=True).model
        return self._model

    @property
    def trained_on(self) -> str:
        return str(self.config.get("trained_on", "unknown"))

    def provenance(self) -> dict[str, Any]:
        return provenance_of(self.config, self.source)


__all__ = ["LoadedModel", "OnnxBackedModel", "load_pretrained"]

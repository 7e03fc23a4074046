"""Relation-trait inference on photos: faces -> attributes, and every pair -> 8 relation traits.

:class:`RelationPredictor` loads the expression/attribute model and the Siamese relation model once
(no per-request state; safe to share between requests) and answers :meth:`RelationPredictor.relate`
with a typed :class:`RelationResult`.

* **One photo**: every detected face, every unordered pair ``[i, j]`` (i < j; faces numbered
  left-to-right by box centre). Fewer than two faces is a :class:`~fdin.errors.NoFaceError`.
* **Two photos**: the largest face of each. The spatial cue then comes from a virtual canvas with
  the first photo on the left and the second on its right, tops aligned, no rescaling (canvas
  ``(W1 + W2) x max(H1, H2)``); boxes of the second photo are shifted by ``W1``. This is fdin's
  convention: the cue is only as meaningful as that placement.

Traits (:data:`fdin.labels.TRAITS`): for the seven symmetric traits ``traits[t]`` is the
model's probability for the pair (identical for either order). ``dominant`` is directed (face a
over face b): ``directed.dominant`` gives both directions and ``traits.dominant`` their maximum,
i.e. "one of the two dominates the other".

The shared branch runs in ONNX Runtime when available (exported once per weights file into the
cache folder, see :func:`export_branch_onnx`), else in PyTorch; the small relation head always runs
in PyTorch.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fdin.errors import NoFaceError
from fdin.labels import SYNTHETIC_WEIGHTS_NOTE
from fdin.perception.types import Appearance, Pose
from fdin.progress import ProgressFn
from fdin.results import AgeEstimate, GenderEstimate, ModelProvenance

log = logging.getLogger(__name__)

_BRANCH_OUTPUTS = ("embedding", "expression", "gender", "age", "pose")


@dataclass(frozen=True)
class FaceAttributes:
    """One face. ``bbox``: (4,) xyxy pixels in its own photo (``image`` 0 or 1); ``canvas_bbox``: in the
    frame the spatial cue uses. ``expression``: label -> probability. ``gender``/``age``/``pose``: the
    expression model's heads (pose in degrees, fdin's conventions, :mod:`fdin.perception.types`).
    ``appearance`` and ``detector_pose``: the perception backend's own estimates."""

    index: int
    image: int
    bbox: np.ndarray
    canvas_bbox: np.ndarray
    score: float
    expression: dict[str, float]
    gender: GenderEstimate
    age: AgeEstimate
    pose: Pose
    appearance: Appearance | None = None
    detector_pose: Pose | None = None

    @property
    def top_expression(self) -> tuple[str, float]:
        return max(self.expression.items(), key=lambda kv: kv[1])

    def to_json_dict(self) -> dict[str, Any]:
        appearance = self.appearance.to_json_dict() if self.appearance is not None else {}
        if self.detector_pose is not None:
            appearance["pose"] = self.detector_pose.to_json_dict()
        return {
            "index": self.index,
            "image": self.image,
            "bbox": [round(float(v), 1) for v in self.bbox],
            "score": round(float(self.score), 4),
            "expression": {k: round(float(v), 4) for k, v in self.expression.items()},
            "gender": self.gender.to_json_dict(),
            "age": self.age.to_json_dict(),
            "pose": {k: round(float(getattr(self.pose, k)), 1) for k in ("yaw", "pitch", "roll")},
            "appearance": appearance,
        }


@dataclass(frozen=True)
class PairTraits:
    """Traits of the pair ``faces = (i, j)``: probabilities in [0, 1]; ``directed`` holds ordered traits
    as ``{trait: {"i_over_j": p, "j_over_i": p}}``."""

    faces: tuple[int, int]
    traits: dict[str, float]
    directed: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_json_dict(self) -> dict[str, Any]:
        return {"faces": list(self.faces), "traits": {k: round(float(v), 4) for k, v in self.traits.items()},
                "directed": {t: {k: round(float(v), 4) for k, v in d.items()} for t, d in self.directed.items()}}


@dataclass(frozen=True)
class RelationResult:
    faces: list[FaceAttributes]
    pairs: list[PairTraits]
    models: list[ModelProvenance]
    canvas_size: tuple[int, int]
    mode: str  # "group" (one photo) or "two_photos"
    notes: list[str] = field(default_factory=list)

    def to_json_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "canvas_size": list(self.canvas_size),
                "faces": [f.to_json_dict() for f in self.faces], "pairs": [p.to_json_dict() for p in self.pairs],
                "models": [m.to_json_dict() for m in self.models], "notes": list(self.notes)}


# --- ONNX ----------------------------------------------------------------------------------------
def export_branch_onnx(model: Any, path: str | os.PathLike[str], *, opset: int = 17) -> Path:
    """Export an :class:`~fdin.models.expression.ExpressionAttributeNet` to ONNX.

    Input ``image``: (B, 3, S, S) float32 RGB in [0, 1]. Outputs, in order: ``embedding`` (B, E),
    ``expression`` (B, 7) logits, ``gender`` (B,) logit, ``age`` (B,) years, ``pose`` (B, 3) degrees.
    """
    import torch

    class _Tuple(torch.nn.Module):
        def __init__(self, net: Any) -> None:
            super().__init__()
            self.net = net

        def forward(self, image: torch.Tensor):
            out = self.net(image)
            return tuple(out[k] for k in _BRANCH_OUTPUTS)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    size = int(model.preprocess["input_size"][-1]) if hasattr(model, "preprocess") else 112
    wrapper = _Tuple(model).eval()
    tmp = path.with_suffix(f".tmp{os.getpid()}.onnx")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # dynamo=False: the TorchScript exporter, on purpose
        torch.onnx.export(wrapper, (torch.rand(2, 3, size, size),), str(tmp), opset_version=opset,
                          input_names=["image"], output_names=list(_BRANCH_OUTPUTS),
                          dynamic_axes={"image": {0: "batch"}, **{k: {0: "batch"} for k in _BRANCH_OUTPUTS}},
                          dynamo=False)
    os.replace(tmp, path)
    return path


class OnnxBranch:
    """ONNX Runtime session for a branch; ``__call__((B,3,S,S) float32 ndarray) -> dict of ndarrays``."""

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None) -> None:
        from fdin.onnx_runtime import create_session

        self.path = Path(path)
        self.session = create_session(path, threads=threads, inter_op_threads=1 if threads else None)

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        values = self.session.run(list(_BRANCH_OUTPUTS), {"image": np.ascontiguousarray(images, np.float32)})
        return dict(zip(_BRANCH_OUTPUTS, values, strict=True))


def _branch_onnx_for(loaded: Any, branch: Any, tag: str) -> Path:
    from fdin.onnx_runtime import export_cache_dir
    from fdin.weights import read_checksums

    try:
        digest = read_checksums(loaded.path).get("model.safetensors", "")[:16]
    except Exception:  # unverifiable folders get a fresh export each time
        digest = ""
    path = export_cache_dir() / f"{tag}-{digest or 'unhashed'}.onnx"
    if not digest or not path.is_file():
        export_branch_onnx(branch, path)
    return path


def face_keypoints(face: Any) -> np.ndarray:
    """(5, 2) alignment points of a :class:`~fdin.perception.types.Face`: derived from its 68 landmarks
    (as for the generated training set and AffectNet, so training and inference align alike), or the
    detector's 5 keypoints when the landmarks are missing/degenerate."""
    from fdin.alignment import keypoints_from_landmarks68

    landmarks = np.asarray(face.landmarks, np.float64)
    if landmarks.shape == (68, 2) and np.isfinite(landmarks).all() and np.ptp(landmarks[:, 0]) > 1.0:
        return keypoints_from_landmarks68(landmarks)
    return np.asarray(face.keypoints, np.float64)


# --- the predictor -------------------------------------------------------------------------------
class RelationPredictor:
    """Holds the two models (and their ONNX sessions); no per-request state.

    Args:
        expression: :class:`fdin.models.pretrained.LoadedModel` of the expression/attribute network.
        relation: :class:`fdin.models.pretrained.LoadedModel` of the Siamese relation network.
        backend: perception backend name for :func:`fdin.perception.detect_faces` (None = default).
        use_onnx: run the branches in ONNX Runtime when it is installed.
        threads: torch / ONNX Runtime intra-op threads (None = library default).
    """

    def __init__(self, *, expression: Any, relation: Any, backend: str | None = None, use_onnx: bool = True,
                 threads: int | None = None) -> None:
        from fdin.alignment import AlignmentSpec
        from fdin.labels import EXPRESSION_LABELS

        self.expression, self.relation, self.backend = expression, relation, backend
        pre = expression.config.get("preprocess") or {}
        align = pre.get("alignment", {})
        self.spec = AlignmentSpec(size=int(align.get("size", 112)), template_scale=float(align.get("template_scale", 0.8)))
        rel_align = (relation.config.get("preprocess") or {}).get("alignment", align)
        self.relation_spec = AlignmentSpec(size=int(rel_align.get("size", self.spec.size)),
                                           template_scale=float(rel_align.get("template_scale", self.spec.template_scale)))
        self.labels = tuple(pre.get("expression_labels", EXPRESSION_LABELS))
        self.traits = tuple(relation.model.traits)
        self.threads = threads
        self._onnx: dict[str, OnnxBranch] = {}
        if use_onnx:
            try:
                self._onnx["expression"] = OnnxBranch(_branch_onnx_for(expression, expression.model, "expression"),
                                                      threads=threads)
                self._onnx["relation"] = OnnxBranch(_branch_onnx_for(relation, relation.model.branch, "relation-branch"),
                                                    threads=threads)
            except ImportError:
                log.info("onnxruntime/onnx is not installed; running the branches in PyTorch")
                self._onnx.clear()
            except (RuntimeError, OSError) as error:  # export or session creation failed: PyTorch still works
                log.warning("ONNX branch unavailable (%s); running the branches in PyTorch", error)
                self._onnx.clear()

    @classmethod
    def from_pretrained(cls, expression: str = "expression", relation: str = "relation", *,
                        expression_revision: str | None = None, relation_revision: str | None = None,
                        **kwargs: Any) -> RelationPredictor:
        from fdin.models.pretrained import load_pretrained

        return cls(expression=load_pretrained(expression, revision=expression_revision),
                   relation=load_pretrained(relation, revision=relation_revision), **kwargs)

    @property
    def uses_onnx(self) -> bool:
        return bool(self._onnx)

    @property
    def synthetic_weights(self) -> bool:
        return any(bool(m.config.get("synthetic_training_data")) for m in (self.expression, self.relation))

    def provenance(self) -> list[ModelProvenance]:
        return [ModelProvenance.from_dict(m.provenance()) for m in (self.expression, self.relation)]

    # -- building blocks (tensors / arrays in, arrays out) --
    def run_branch(self, which: str, crops: np.ndarray) -> dict[str, np.ndarray]:
        """(B, S, S, 3) uint8 aligned crops -> branch outputs for ``which`` in {"expression", "relation"}."""
        import torch

        from fdin.alignment import crop_to_tensor

        x = crop_to_tensor(crops)
        if which in self._onnx:
            return self._onnx[which](x.numpy())
        net = self.expression.model if which == "expression" else self.relation.model.branch
        with torch.inference_mode():
            return {k: v.numpy() for k, v in net(x).items()}

    def pair_probabilities(self, embeddings: np.ndarray, boxes: np.ndarray, canvas_wh: tuple[int, int],
                           pairs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        """Ordered probabilities ``(P(i, j), P(j, i))``, each (len(pairs), 8)."""
        import torch

        if not pairs:
            return np.zeros((0, len(self.traits))), np.zeros((0, len(self.traits)))
        e = torch.from_numpy(np.asarray(embeddings, np.float32))
        b = torch.from_numpy(np.asarray(boxes, np.float32))
        i = torch.tensor([p[0] for p in pairs])
        j = torch.tensor([p[1] for p in pairs])
        wh = torch.tensor([canvas_wh], dtype=torch.float32).expand(len(pairs), 2)
        head = self.relation.model
        with torch.inference_mode():
            ij = torch.sigmoid(head.forward_from_embeddings(e[i], e[j], b[i], b[j], wh)).numpy()
            ji = torch.sigmoid(head.forward_from_embeddings(e[j], e[i], b[j], b[i], wh)).numpy()
        return ij, ji

    # -- the public entry point --
    def relate(self, image_a: np.ndarray, image_b: np.ndarray | None = None, *,
               progress: ProgressFn | None = None) -> RelationResult:
        """Faces and relation traits for one group photo or two photos ((H, W, 3) uint8 RGB each).

        Raises:
            NoFaceError: one photo with fewer than two faces, or a second photo without a face.
        """
        from fdin.alignment import align_face
        from fdin.perception import detect_faces

        def step(fraction: float, stage: str) -> None:
            if progress is not None:
                progress(stage, fraction)

        step(0.0, "detecting faces")
        images = [image_a] if image_b is None else [image_a, image_b]
        found = []  # (image index, face, canvas offset x)
        if image_b is None:
            faces = detect_faces(image_a, backend=self.backend)
            if len(faces) < 2:
                raise NoFaceError(f"Found {len(faces)} face{'s' if len(faces) != 1 else ''} in the photo; relation "
                                  "traits need at least two (give a group photo, or two photos).")
            found = [(0, f, 0.0) for f in faces]
            canvas = (int(image_a.shape[1]), int(image_a.shape[0]))
            mode = "group"
        else:
            for k, image in enumerate(images):
                faces = detect_faces(image, backend=self.backend)
                if not faces:
                    raise NoFaceError(f"No face was found in the {'first' if k == 0 else 'second'} photo.")
                found.append((k, max(faces, key=lambda f: f.area), float(image_a.shape[1]) if k else 0.0))
            canvas = (int(image_a.shape[1] + image_b.shape[1]), int(max(image_a.shape[0], image_b.shape[0])))
            mode = "two_photos"
        found.sort(key=lambda t: (float(t[1].bbox[0] + t[1].bbox[2]) / 2 + t[2]))

        step(0.3, "aligning faces")
        crops, rolls, rel_crops = [], [], []
        for k, face, _ in found:
            points = face_keypoints(face)
            crop, roll = align_face(images[k], points, self.spec)
            crops.append(crop)
            rolls.append(roll)
            rel_crops.append(crop if self.relation_spec == self.spec
                             else align_face(images[k], points, self.relation_spec)[0])
        step(0.5, "expression and attributes")
        attr = self.run_branch("expression", np.stack(crops))
        emb = self.run_branch("relation", np.stack(rel_crops))["embedding"]
        logits = attr["expression"]
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        p_female = 1.0 / (1.0 + np.exp(-attr["gender"]))

        results = []
        boxes = []
        for n, (k, face, dx) in enumerate(found):
            box = np.asarray(face.bbox, np.float64)
            canvas_box = box + np.array([dx, 0.0, dx, 0.0])
            boxes.append(canvas_box)
            yaw, pitch, roll_res = (float(v) for v in attr["pose"][n])
            results.append(FaceAttributes(
                index=n, image=k, bbox=box, canvas_bbox=canvas_box, score=float(face.score),
                expression={label: float(p) for label, p in zip(self.labels, probs[n], strict=True)},
                gender=GenderEstimate(float(p_female[n])), age=AgeEstimate(float(attr["age"][n])),
                pose=Pose(yaw, pitch, roll_res + rolls[n]), appearance=face.appearance, detector_pose=face.pose))

        step(0.8, "relation traits")
        pairs = [(i, j) for i in range(len(found)) for j in range(i + 1, len(found))]
        ij, ji = self.pair_probabilities(emb, np.stack(boxes), canvas, pairs)
        symmetric = set(self.relation.model.symmetric_traits)
        pair_results = []
        for n, (i, j) in enumerate(pairs):
            traits, directed = {}, {}
            for t, trait in enumerate(self.traits):
                if trait in symmetric:
                    traits[trait] = float(ij[n, t])
                else:
                    directed[trait] = {"i_over_j": float(ij[n, t]), "j_over_i": float(ji[n, t])}
                    traits[trait] = max(float(ij[n, t]), float(ji[n, t]))
            pair_results.append(PairTraits(faces=(i, j), traits=traits, directed=directed))
        step(1.0, "done")
        notes = []
        if self.synthetic_weights:
            notes.append(SYNTHETIC_WEIGHTS_NOTE)
        if mode == "two_photos":
            notes.append("Two photos: the spatial cue places the second photo to the right of the first.")
        detector = found[0][1].models if found else {}
        models = [*self.provenance(), ModelProvenance(name="face detection and landmarks", weights=dict(detector),
                                                      trained_on="see fdin.perception", licence="see README")]
        return RelationResult(faces=results, pairs=pair_results, models=models, canvas_size=canvas, mode=mode,
                              notes=notes)


__all__ = ["FaceAttributes", "OnnxBranch", "PairTraits", "RelationPredictor", "RelationResult",
           "export_branch_onnx", "face_keypoints"]

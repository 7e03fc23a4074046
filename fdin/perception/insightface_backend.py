"""The ``"insightface"`` face backend: insightface's buffalo_l pack, from a directory on disk only.

buffalo_l (SCRFD-10G detector ``det_10g.onnx``, 3D 68-point landmarks + pose ``1k3d68.onnx``,
``2d106det.onnx``, gender/age ``genderage.onnx``) is **non-commercial research only** and no PyPI
package ships it: fdin never fetches it. ``FaceAnalysis`` is built with the *path* of an existing
directory (insightface then uses it as is; a bare pack name would make it download from GitHub).

Mapping into :class:`~fdin.perception.types.Face`:

* ``bbox``/``score``: SCRFD's box and score; ``landmarks``: ``landmark_3d_68[:, :2]`` (iBUG order);
  ``keypoints``: from those 68 points, like every backend (SCRFD's own 5 points are in
  :class:`~fdin.perception.base.Detection`);
* ``pose``: insightface's ``pose`` = (pitch, yaw, roll) from an affine fit of its 3D landmarks to
  its mean face. Its frame (x right, y down, z towards the camera) gives the same signs as fdin's
  (yaw > 0 nose to the image right, pitch > 0 chin up, roll > 0 clockwise), checked by
  ``tests/test_perception.py`` with a posed mean face fed through insightface's own code;
* ``appearance``: ``genderage`` returns 3 numbers per face: two gender scores (index 0 = female,
  1 = male, as insightface's ``Face.sex``) and age / 100. ``p_female`` is the softmax of the two
  scores, taken as logits unless they already are probabilities (insightface only takes their argmax).

``landmark_2d_106`` is loaded (``self.models_by_task``) for callers that want 106 points; fdin does
not run it per face.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fdin.errors import ModelUnavailableError
from fdin.geometry import keypoints_from_landmarks68
from fdin.perception.base import Detection, FaceBackend
from fdin.perception.types import Appearance, Face, Pose
from fdin.weights import LANDMARK_MODELS

log = logging.getLogger(__name__)

ALLOWED_MODULES = ["detection", "landmark_3d_68", "landmark_2d_106", "genderage"]


class InsightFaceBackend(FaceBackend):
    """buffalo_l through insightface's ``FaceAnalysis`` (CPU), from ``model_dir`` only.

    Args:
        model_dir: an existing directory holding ``det_10g.onnx`` (and the other buffalo_l files).
        det_size: SCRFD input size (w, h); det_thresh: SCRFD score threshold.
    """

    name = "insightface"

    def __init__(self, model_dir: str | Path, *, det_size: tuple[int, int] = (640, 640),
                 det_thresh: float = 0.5) -> None:
        path = Path(model_dir).expanduser()
        if not (path.is_dir() and (path / "det_10g.onnx").is_file()):
            raise ModelUnavailableError(f"{path} does not hold insightface's det_10g.onnx (buffalo_l).")
        try:
            from insightface.app import FaceAnalysis
        except ImportError:
            raise ModelUnavailableError("The insightface backend needs the insightface package "
                                        "(pip install -r requirements.txt).") from None
        from fdin.onnx_runtime import choose_providers

        # name=<existing directory>: insightface uses it directly and never downloads. insightface
        # creates its own sessions; fdin only chooses their providers (CUDA first on a GPU build).
        providers = choose_providers()
        self.app = FaceAnalysis(name=str(path.resolve()), providers=providers, allowed_modules=ALLOWED_MODULES)
        self.app.prepare(ctx_id=0 if providers[0] == "CUDAExecutionProvider" else -1, det_size=det_size, det_thresh=det_thresh)
        self.models_by_task: dict[str, Any] = dict(self.app.models)
        missing = [t for t in ("landmark_3d_68", "genderage") if t not in self.models_by_task]
        if missing:
            raise ModelUnavailableError(f"{path} lacks the insightface models for {', '.join(missing)} "
                                        "(buffalo_l: 1k3d68.onnx, genderage.onnx).")
        self.model_dir = path.resolve()
        files = {t: Path(m.model_file).name for t, m in self.models_by_task.items()}
        self._models = {
            "bbox": f"insightface buffalo_l {files['detection']} (SCRFD; non-commercial)",
            "landmarks": LANDMARK_MODELS[self.name]["label"],
            "keypoints": "from the 68 landmarks (eye centres, 30, 48, 54)",
            "pose": f"insightface buffalo_l {files['landmark_3d_68']} pose",
            "appearance": f"insightface buffalo_l {files['genderage']}",
        }

    @property
    def models(self) -> dict[str, str]:
        return self._models

    @staticmethod
    def _bgr(image: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(image[:, :, ::-1])

    def detect_boxes(self, image: np.ndarray) -> list[Detection]:
        bboxes, kpss = self.app.det_model.detect(self._bgr(image), max_num=0)
        return [Detection(bbox=np.asarray(b[:4], np.float32), score=float(b[4]),
                          keypoints=None if kpss is None else np.asarray(kpss[i], np.float32))
                for i, b in enumerate(bboxes)]

    def _landmarks_and_pose(self, bgr: np.ndarray, bbox: np.ndarray) -> tuple[np.ndarray, Pose]:
        from insightface.app.common import Face as IFace

        face = IFace(bbox=np.asarray(bbox, np.float32))
        pred = self.models_by_task["landmark_3d_68"].get(bgr, face)
        pitch, yaw, roll = (float(v) for v in face.pose)
        return np.asarray(pred[:, :2], np.float32), Pose(yaw=yaw, pitch=pitch, roll=roll)

    def landmarks_for_box(self, image: np.ndarray, bbox: np.ndarray) -> np.ndarray:
        return self._landmarks_and_pose(self._bgr(image), bbox)[0]

    def face_for_box(self, image: np.ndarray, bbox: np.ndarray, *, score: float,
                     keypoints: np.ndarray | None = None) -> Face:

        landmarks, pose = self._landmarks_and_pose(self._bgr(image), bbox)
        return Face(bbox=np.asarray(bbox, np.float32), score=float(score), landmarks=landmarks,
                    keypoints=keypoints_from_landmarks68(landmarks).astype(np.float32), pose=pose,
                    models=dict(self._models))

    def appearance(self, image: np.ndarray, faces: Sequence[Face]) -> list[Appearance | None]:
        if not faces:
            return []
        import cv2
        from insightface.utils import face_align

        model = self.models_by_task["genderage"]
        bgr = self._bgr(image)
        size = int(model.input_size[0])
        blobs = []
        for f in faces:  # the crop insightface's Attribute.get makes
            x0, y0, x1, y1 = (float(v) for v in f.bbox)
            scale = size / (max(x1 - x0, y1 - y0) * 1.5)
            crop, _ = face_align.transform(bgr, ((x0 + x1) / 2, (y0 + y1) / 2), size, scale, 0)
            blobs.append(cv2.dnn.blobFromImage(crop, 1.0 / model.input_std, (size, size),
                                               (model.input_mean,) * 3, swapRB=True))
        batch = np.concatenate(blobs)
        fixed_batch = isinstance(model.input_shape[0], int) and model.input_shape[0] > 0
        run = model.session.run
        if fixed_batch:  # one face per call
            preds = np.concatenate([run(model.output_names, {model.input_name: b[None]})[0] for b in batch])
        else:
            preds = run(model.output_names, {model.input_name: batch})[0]
        preds = np.asarray(preds, np.float64).reshape(len(faces), -1)
        scores = preds[:, :2]
        if (scores >= 0).all() and np.allclose(scores.sum(1), 1.0, atol=1e-3):
            p_female = scores[:, 0]  # already probabilities
        else:  # raw scores (logits): softmax
            p = np.exp(scores - scores.max(1, keepdims=True))
            p_female = p[:, 0] / p.sum(1)
        return [Appearance(p_female=float(pf), age_years=float(a) * 100.0, model="insightface genderage")
                for pf, a in zip(p_female, preds[:, 2], strict=True)]

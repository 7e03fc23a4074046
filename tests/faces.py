"""Real face photos shipped in installed packages, a generated moving-face clip, and a fake buffalo_l.

* :func:`t1` — insightface's ``t1.jpg`` (1280x886 group photo, 6 faces).
* :func:`tom_hanks` — insightface's ``Tom_Hanks_54745.png`` (112x112 aligned face).
* :func:`astronaut` — scikit-image's astronaut (Eileen Collins, NASA, public domain; 512x512; her
  mission patch is a classic false positive).
* :func:`moving_face_frames` — a real face crossing a 640x480 frame and leaving it (ground truth box).
* :func:`make_fake_buffalo_l` — tiny ONNX files with buffalo_l's names and I/O signatures, so the
  insightface adapter runs without the (non-commercial, never downloaded) real weights.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from benchmarks.perception import background, moving_face_clip, photo

__all__ = ["astronaut", "background", "make_fake_buffalo_l", "moving_face_frames", "t1", "tom_hanks"]


@functools.lru_cache(maxsize=1)
def t1() -> np.ndarray:
    return photo("t1")


@functools.lru_cache(maxsize=1)
def tom_hanks() -> np.ndarray:
    return photo("tom")


@functools.lru_cache(maxsize=1)
def astronaut() -> np.ndarray:
    return photo("astronaut")


def moving_face_frames(n: int = 60, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """See :func:`benchmarks.perception.moving_face_clip` (the clip the docs' speed table uses)."""
    return moving_face_clip(n, **kwargs)


# --- fake buffalo_l ---------------------------------------------------------------------------------
#: Where the fake detector puts its one face in a 640x480 image (xyxy), and the fake attributes.
FAKE_FACE_BOX = (260.0, 144.0, 380.0, 304.0)
FAKE_GENDER_LOGITS = (1.5, -0.5)   # female favoured: p_female = sigmoid(2) = 0.881
FAKE_AGE = 0.37                    # 37 years


def _save(graph, path: Path) -> None:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="fdin-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _const_model(path: Path, input_name: str, input_shape: list, outputs: dict[str, np.ndarray],
                 *, batch_follows_input: bool = False) -> None:
    """A graph returning constants (``batch_follows_input``: broadcast to the input's batch)."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, outs = [], []
    if batch_follows_input:  # zero = 0 * mean(input) with shape (N, 1)
        nodes += [helper.make_node("ReduceMean", [input_name], ["m"], axes=[1, 2, 3], keepdims=1),
                  helper.make_node("Flatten", ["m"], ["mf"], axis=1),
                  helper.make_node("Mul", ["mf", "zero_c"], ["zero"])]
    inits = [numpy_helper.from_array(np.zeros((1, 1), np.float32), "zero_c")] if batch_follows_input else []
    for name, value in outputs.items():
        value = np.asarray(value, np.float32)
        inits.append(numpy_helper.from_array(value, f"{name}_c"))
        if batch_follows_input:
            nodes.append(helper.make_node("Add", ["zero", f"{name}_c"], [name]))
            shape = ["N", *value.shape[1:]]
        else:
            nodes.append(helper.make_node("Identity", [f"{name}_c"], [name]))
            shape = list(value.shape)
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
    inp = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, input_shape)
    _save(helper.make_graph(nodes, path.stem, [inp], outs, initializer=inits), path)


def fake_landmarks_68(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """(68, 3) posed mean face in insightface's frame (x right, y down, z towards the camera),
    orthographic, unit jaw width ~1.25: what a perfect 3D landmark model would return, normalised."""
    from fdin.perception.pose import MEAN_SHAPE_68, rotation_matrix

    flip = np.array([1.0, 1.0, -1.0])
    cv_frame = (MEAN_SHAPE_68 * flip) @ rotation_matrix(yaw, pitch, roll).T
    return cv_frame * flip


def make_fake_buffalo_l(directory: Path, *, pose: tuple[float, float, float] = (20.0, 10.0, -5.0)) -> Path:
    """Write det_10g / 1k3d68 / 2d106det / genderage / w600k_r50 ONNX files with buffalo_l's names and
    I/O signatures. The detector finds one face at :data:`FAKE_FACE_BOX` in a 640x480 image; the 3D
    landmark model returns the mean face posed at ``pose`` = (yaw, pitch, roll) in fdin's convention."""
    directory.mkdir(parents=True, exist_ok=True)
    # SCRFD-10G: 9 outputs (scores, boxes, keypoints for strides 8, 16, 32; 2 anchors per cell).
    sizes = {8: 80 * 80 * 2, 16: 40 * 40 * 2, 32: 20 * 20 * 2}
    x0, y0, x1, y1 = FAKE_FACE_BOX
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    gx, gy = round(cx / 32), round(cy / 32)
    ax, ay = gx * 32.0, gy * 32.0
    hit = (gy * 20 + gx) * 2
    scores = {s: np.zeros((n, 1), np.float32) for s, n in sizes.items()}
    boxes = {s: np.ones((n, 4), np.float32) for s, n in sizes.items()}
    kps = {s: np.zeros((n, 10), np.float32) for s, n in sizes.items()}
    scores[32][hit] = 0.9
    boxes[32][hit] = np.array([ax - x0, ay - y0, x1 - ax, y1 - ay]) / 32.0
    five = np.array([[cx - 25, cy - 20], [cx + 25, cy - 20], [cx, cy + 5], [cx - 20, cy + 35], [cx + 20, cy + 35]])
    kps[32][hit] = ((five - (ax, ay)) / 32.0).ravel()
    ordered = {**{f"score_{s}": scores[s] for s in (8, 16, 32)}, **{f"bbox_{s}": boxes[s] for s in (8, 16, 32)},
               **{f"kps_{s}": kps[s] for s in (8, 16, 32)}}
    _const_model(directory / "det_10g.onnx", "input.1", [1, 3, 640, 640], ordered)
    # 1k3d68: 3309 outputs; insightface keeps the last 68 (x, y, z) triples, in [-1, 1] crop units.
    pred = np.zeros((1103, 3), np.float32)
    pred[-68:] = fake_landmarks_68(*pose) * 0.75
    _const_model(directory / "1k3d68.onnx", "data", [1, 3, 192, 192], {"fc1": pred.reshape(1, 3309)})
    ring = np.stack([np.cos(np.linspace(0, 2 * np.pi, 106)), np.sin(np.linspace(0, 2 * np.pi, 106))], 1) * 0.5
    _const_model(directory / "2d106det.onnx", "data", [1, 3, 192, 192], {"fc1": ring.reshape(1, 212)})
    _const_model(directory / "genderage.onnx", "data", ["N", 3, 96, 96],
                 {"fc1": np.array([[*FAKE_GENDER_LOGITS, FAKE_AGE]], np.float32)}, batch_follows_input=True)
    _const_model(directory / "w600k_r50.onnx", "input.1", [1, 3, 112, 112],
                 {"683": np.full((1, 512), 0.01, np.float32)})
    return directory

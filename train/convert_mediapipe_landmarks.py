"""Convert MediaPipe's face-landmark model (``face_landmark.tflite``) to ``weights/face-landmark-mediapipe``.

``python -m train.convert_mediapipe_landmarks --wheel mediapipe-0.10.14-...whl [--out weights/face-landmark-mediapipe]``

The model is MediaPipe Face Mesh's 468-point landmark network (Kartynnik et al., "Real-time Facial
Surface Geometry from Monocular Video on Mobile GPUs", CVPR-W 2019; Apache-2.0), shipped inside the
``mediapipe`` 0.10.14 wheel as ``mediapipe/modules/face_landmark/face_landmark.tflite`` (1.2 MB,
float16 weights). fdin never installs mediapipe (it pins its own OpenCV/protobuf builds); this
script reads the ``.tflite`` flatbuffer with the schema module of ``ai-edge-litert`` (dev venv,
conversion and test time only) and rebuilds the graph op by op as an ONNX graph that fdin's own
ONNX Runtime runs:

1. every operator must be one of the seven the model uses (CONV_2D, DEPTHWISE_CONV_2D, PRELU, ADD,
   MAX_POOL_2D, PAD, DEQUANTIZE) with the options this converter handles (fused activations NONE or
   RELU, dilation 1, SAME/VALID padding turned into explicit pads from the static shapes); anything
   else is refused;
2. float16 weights (behind DEQUANTIZE) are widened to float32 exactly, NHWC kernels become NCHW;
   PRELU becomes ``alpha * x + (1 - alpha) * relu(x)`` with each product a depthwise 1x1
   convolution (equal up to float rounding; see the PRELU branch for the speeds measured);
3. the ONNX model takes ``image``: (N, 192, 192, 3) **uint8** RGB (the model's NHWC layout; it casts
   the pixels itself, and the first convolution's weights are divided by 255, which is the model's
   own [0, 1] input range folded into them) and returns ``landmarks`` (N, 1404) = 468 x (x, y, z)
   in 192-pixel crop units and ``face_flag`` (N, 1), the face-presence logit (sigmoid = the fit's
   quality score).

Parity with the original (LiteRT running the ``.tflite`` itself, on real face crops) is checked by
``tests/test_mesh_landmarks.py``; the converter also checks it when ``ai_edge_litert`` is present.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("train.convert_mediapipe_landmarks")

MEDIAPIPE_VERSION = "0.10.14"
TFLITE_IN_WHEEL = "mediapipe/modules/face_landmark/face_landmark.tflite"
DEFAULT_OUT = "weights/face-landmark-mediapipe"
ONNX_NAME = "model.onnx"
#: SHA-256 of ``face_landmark.tflite`` in the mediapipe 0.10.14 wheels (the same file in every platform's wheel).
TFLITE_SHA256 = "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814"
SUPPORTED = {"CONV_2D", "DEPTHWISE_CONV_2D", "PRELU", "ADD", "MAX_POOL_2D", "PAD", "DEQUANTIZE"}
OPSET = 17


def tflite_from_wheel(wheel: Path, member: str = TFLITE_IN_WHEEL) -> bytes:
    with zipfile.ZipFile(wheel) as zf:
        return zf.read(member)


def _schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        raise SystemExit("The converter reads the .tflite with ai-edge-litert's schema module: "
                         "pip install ai-edge-litert (dev venv).") from None
    return schema


def convert_tflite(data: bytes) -> Any:
    """The ``onnx.ModelProto`` equivalent of the face-landmark ``.tflite`` ``data`` (see module docstring)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    s = _schema()
    model = s.ModelT.InitFromPackedBuf(data, 0)
    if len(model.subgraphs) != 1:
        raise ValueError("expected one subgraph")
    g = model.subgraphs[0]
    op_names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    codes = [op_names.get(max(c.builtinCode, c.deprecatedBuiltinCode), "?") for c in model.operatorCodes]
    tensors = g.tensors

    def tname(i: int) -> str:
        return f"t{i}_" + tensors[i].name.decode().replace("/", "_").replace(";", "_")[:60]

    def buffer(i: int) -> np.ndarray | None:
        t = tensors[i]
        buf = model.buffers[t.buffer].data if t.buffer < len(model.buffers) else None
        if buf is None or len(buf) == 0:
            return None
        dtype = {0: np.float32, 1: np.float16, 2: np.int32}[t.type]
        return np.frombuffer(np.asarray(buf, np.uint8).tobytes(), dtype=dtype).reshape(t.shape)

    consts: dict[int, np.ndarray] = {}  # float32 constants (weights) by tensor index, NHWC as stored
    nodes, inits = [], []
    shape = {i: tuple(int(d) for d in tensors[i].shape) for i in range(len(tensors))}  # NHWC shapes

    def init(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def activation(out: str, fused: int) -> tuple[str, list]:
        if fused == s.ActivationFunctionType.NONE:
            return out, []
        if fused == s.ActivationFunctionType.RELU:
            return out + "_pre", [helper.make_node("Relu", [out + "_pre"], [out])]
        raise ValueError(f"fused activation {fused} not supported")

    def same_pads(in_hw: tuple[int, int], out_hw: tuple[int, int], k: tuple[int, int], st: tuple[int, int],
                  padding: int) -> list[int]:
        if padding == s.Padding.VALID:
            return [0, 0, 0, 0]
        total = [max((o - 1) * sd + kk - i, 0) for i, o, kk, sd in zip(in_hw, out_hw, k, st, strict=True)]
        return [total[0] // 2, total[1] // 2, total[0] - total[0] // 2, total[1] - total[1] // 2]

    (inp,) = g.inputs
    if shape[inp] != (1, 192, 192, 3):
        raise ValueError(f"unexpected input shape {shape[inp]}")
    # uint8 pixels in: the cast is part of the graph (cheaper than a float copy made in numpy), and
    # the 1/255 of the model's [0, 1] range is folded into the first convolution's weights below
    nodes += [helper.make_node("Cast", ["image"], ["image_float"], to=TensorProto.FLOAT),
              helper.make_node("Transpose", ["image_float"], [tname(inp)], perm=[0, 3, 1, 2])]
    for op in g.operators:
        kind = codes[op.opcodeIndex]
        if kind not in SUPPORTED:
            raise ValueError(f"operator {kind} is not supported by this converter")
        ins, (out,) = list(op.inputs), list(op.outputs)
        if inp in ins and (kind not in ("CONV_2D", "DEPTHWISE_CONV_2D") or ins.index(inp) != 0):
            raise ValueError(f"the input feeds a {kind}: only a convolution can take the 0-255 pixels")
        o = op.builtinOptions
        if kind == "DEQUANTIZE":
            src = buffer(ins[0])
            if src is None or src.dtype != np.float16:
                raise ValueError("DEQUANTIZE of a non-constant or non-float16 tensor")
            consts[out] = src.astype(np.float32)
            continue
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            w = consts.get(ins[1], buffer(ins[1]))
            b = consts.get(ins[2], buffer(ins[2])) if len(ins) > 2 and ins[2] >= 0 else None
            if (o.dilationHFactor, o.dilationWFactor) != (1, 1):
                raise ValueError("dilated convolutions are not supported")
            _, kh, kw, _ = w.shape
            if kind == "CONV_2D":
                wk, group = w.transpose(0, 3, 1, 2), 1  # OHWI -> OIHW
            else:
                if o.depthMultiplier != 1:
                    raise ValueError("depth multiplier != 1")
                wk, group = w.transpose(3, 0, 1, 2), w.shape[3]  # 1HWC -> C1HW
            if ins[0] == inp:  # the input layer sees 0-255 pixels: conv(x / 255, w) = conv(x, w / 255)
                wk = wk.astype(np.float32) / np.float32(255.0)
            pads = same_pads(shape[ins[0]][1:3], shape[out][1:3], (kh, kw), (o.strideH, o.strideW), o.padding)
            target, extra = activation(tname(out), o.fusedActivationFunction)
            args = [tname(ins[0]), init(tname(out) + "_w", wk.astype(np.float32))]
            if b is not None:
                args.append(init(tname(out) + "_b", b.astype(np.float32)))
            nodes.append(helper.make_node("Conv", args, [target], kernel_shape=[kh, kw],
                                          strides=[o.strideH, o.strideW], pads=pads, group=group))
            nodes += extra
        elif kind == "PRELU":
            alpha = consts.get(ins[1], buffer(ins[1])).astype(np.float32)
            channels = shape[out][3]
            alpha = np.broadcast_to(alpha.reshape(-1), (channels,)).reshape(channels, 1, 1)
            # PReLU(x) = alpha * x + (1 - alpha) * relu(x) (equal up to float rounding, ~5e-5 crop px at
            # the output), each product a depthwise 1x1 convolution. ONNX Runtime's own PRelu kernel is
            # outside its blocked-layout (NCHWc) convolution path: each one forced two layout reorders,
            # and the graph took ~7x longer (21 vs 3 ms per crop on one thread). With the products as
            # Mul nodes (per-channel constants) the graph still left that layout at every PReLU; as
            # convolutions it stays in it and the Add is fused into the second one: 1.15-1.18 ms
            # against 1.32 ms per crop (one thread, medians of 10 interleaved rounds). Of the other
            # equivalent forms tried, relu(x) - alpha relu(-x) and relu(x) + alpha min(x, 0) were
            # slower with Mul nodes (2.8 vs 2.4 ms), x + (1 - alpha) relu(-x) with convolutions 1.25 ms.
            x, y = tname(ins[0]), tname(out)
            scale_a = alpha.astype(np.float32).reshape(channels, 1, 1, 1)  # depthwise 1x1 kernels
            scale_b = (1.0 - alpha).astype(np.float32).reshape(channels, 1, 1, 1)
            nodes += [helper.make_node("Conv", [x, init(y + "_alpha", scale_a)], [y + "_lin"],
                                       kernel_shape=[1, 1], group=channels),
                      helper.make_node("Relu", [x], [y + "_pos"]),
                      helper.make_node("Conv", [y + "_pos", init(y + "_one_minus_alpha", scale_b)],
                                       [y + "_scaled"], kernel_shape=[1, 1], group=channels),
                      helper.make_node("Add", [y + "_lin", y + "_scaled"], [y])]
        elif kind == "ADD":
            if any(i in consts or buffer(i) is not None for i in ins):
                raise ValueError("ADD of a constant is not supported")
            target, extra = activation(tname(out), o.fusedActivationFunction)
            nodes.append(helper.make_node("Add", [tname(ins[0]), tname(ins[1])], [target]))
            nodes += extra
        elif kind == "MAX_POOL_2D":
            k, st = (o.filterHeight, o.filterWidth), (o.strideH, o.strideW)
            pads = same_pads(shape[ins[0]][1:3], shape[out][1:3], k, st, o.padding)
            target, extra = activation(tname(out), o.fusedActivationFunction)
            nodes.append(helper.make_node("MaxPool", [tname(ins[0])], [target], kernel_shape=list(k),
                                          strides=list(st), pads=pads))
            nodes += extra
        elif kind == "PAD":
            p = buffer(ins[1])
            if p is None or p.shape != (4, 2) or p[0].any():
                raise ValueError("PAD needs constant (4, 2) paddings, none on the batch axis")
            nchw = p[[0, 3, 1, 2]]  # NHWC -> NCHW axes
            pads = np.concatenate([nchw[:, 0], nchw[:, 1]]).astype(np.int64)
            nodes.append(helper.make_node("Pad", [tname(ins[0]), init(tname(out) + "_p", pads)], [tname(out)],
                                          mode="constant"))
    outs = {tensors[i].name.decode(): i for i in g.outputs}
    if set(outs) != {"conv2d_21", "conv2d_31"}:
        raise ValueError(f"unexpected outputs {sorted(outs)}")
    for name, i, width in (("landmarks", outs["conv2d_21"], 1404), ("face_flag", outs["conv2d_31"], 1)):
        nodes.append(helper.make_node("Reshape", [tname(i), init(name + "_shape", np.array([-1, width], np.int64))],
                                      [name]))
    graph = helper.make_graph(
        nodes, "mediapipe_face_landmark",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", 192, 192, 3])],
        [helper.make_tensor_value_info("landmarks", TensorProto.FLOAT, ["N", 1404]),
         helper.make_tensor_value_info("face_flag", TensorProto.FLOAT, ["N", 1])],
        inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="fdin train.convert_mediapipe_landmarks")
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    return proto


def litert_outputs(data: bytes, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(landmarks (N, 1404), face_flag (N, 1)) of the original ``.tflite`` run by LiteRT, one image at a time."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=data, num_threads=1)
    interp.allocate_tensors()
    (inp,) = interp.get_input_details()
    outs = {d["name"]: d["index"] for d in interp.get_output_details()}
    lms, flags = [], []
    for image in batch:
        interp.set_tensor(inp["index"], image[None].astype(np.float32))
        interp.invoke()
        lms.append(interp.get_tensor(outs["conv2d_21"]).reshape(-1))
        flags.append(interp.get_tensor(outs["conv2d_31"]).reshape(-1))
    return np.stack(lms), np.stack(flags)


def model_card(tflite_sha: str, onnx_sha: str, parity: str) -> str:
    return f"""---
license: apache-2.0
library_name: onnxruntime
tags:
- face-landmarks
- mediapipe
- face-mesh
- onnx
---

# MediaPipe face landmark model (Face Mesh, 468 points), as ONNX

fdin's default facial landmark model. A face crop (192x192 RGB, uint8 pixels 0-255) goes in; 468 3D
surface points (x, y in crop pixels, z relative depth in the same unit) and a face-presence logit
come out. fdin maps the 468 points to the 68-point iBUG scheme its regions use
(`fdin/perception/mesh.py`, `MESH_TO_IBUG68`, documented in docs/perception.md) and uses the
presence score as the per-frame fit quality.

## Provenance

* Model: MediaPipe Face Mesh landmark network, `mediapipe/modules/face_landmark/face_landmark.tflite`
  from the PyPI wheel `mediapipe=={MEDIAPIPE_VERSION}` (Google; **Apache License 2.0**), SHA-256
  `{tflite_sha}`.
* Converted by `python -m train.convert_mediapipe_landmarks --wheel <mediapipe wheel>`: the flatbuffer
  is read with ai-edge-litert's schema and rebuilt op by op as ONNX (opset {OPSET}); the float16 weights
  are widened to float32 exactly. The model's [0, 1] input scaling is folded into its first
  convolution (those weights divided by 255, so the model takes uint8 pixels); PReLU is written as
  two per-channel 1x1 convolutions and a ReLU. No weight was retrained. `model.onnx` SHA-256 `{onnx_sha}`
  (recorded in `fdin/weights.py`, checked on every load).
* Parity with the original run by LiteRT: {parity}

## Training data

Trained by Google (not by fdin) on a globally sourced set of real face images, as described in the
model card "MediaPipe Face Mesh" (Google, 2020) and in Kartynnik et al., *Real-time Facial Surface
Geometry from Monocular Video on Mobile GPUs*, CVPR Workshops 2019 (arXiv 1907.06724). fdin has no
access to that data.

## Licence

Apache License 2.0, as MediaPipe releases it: the weights may be used commercially, with the licence
and this notice kept. (fdin's other landmark option, dlib's 68-point predictor, is trained on iBUG
300-W, whose terms exclude commercial use.)

## Intended use and limitations

Facial landmarks for research and demonstration of interpretable facial analysis; not for
identification or decisions about people. The model expects one roughly centred face per crop
(fdin crops around its detector's box, upscales small faces and rotates the crop by the eye line);
accuracy falls on strongly turned (beyond ~60 degrees yaw), occluded, blurred or very dark faces,
where the presence score drops and fdin rejects the fit. The 68-point mapping is a fixed choice of
mesh vertices: on near-profile faces its jaw points stay on the face surface rather than following
the silhouette as iBUG's annotators did.
"""


def convert(out: Path, *, wheel: Path | None = None, tflite: Path | None = None) -> Path:
    import onnx

    if tflite is not None:
        data = tflite.read_bytes()
    elif wheel is not None:
        data = tflite_from_wheel(wheel)
    else:
        raise SystemExit("give --wheel (the mediapipe 0.10.14 wheel) or --tflite (face_landmark.tflite)")
    sha = hashlib.sha256(data).hexdigest()
    if sha != TFLITE_SHA256:
        log.warning("face_landmark.tflite has SHA-256 %s, not the 0.10.14 file this converter was checked on", sha)
    proto = convert_tflite(data)
    onnx_bytes = proto.SerializeToString()
    parity = "not checked (ai-edge-litert's interpreter missing)"
    try:
        import onnxruntime as ort

        rng = np.random.default_rng(0)
        batch = rng.integers(0, 256, (4, 192, 192, 3), dtype=np.uint8)
        ref_lm, ref_flag = litert_outputs(data, batch.astype(np.float32) / 255.0)
        sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        lm, flag = sess.run(None, {"image": batch})
        parity = (f"max |difference| {float(np.abs(lm - ref_lm).max()):.2e} crop pixels (landmarks), "
                  f"{float(np.abs(flag - ref_flag).max()):.2e} (presence logit) on random inputs at conversion; "
                  "on real face crops see tests/test_mesh_landmarks.py.")
    except ImportError:
        pass
    out.mkdir(parents=True, exist_ok=True)
    (out / ONNX_NAME).write_bytes(onnx_bytes)
    onnx_sha = hashlib.sha256(onnx_bytes).hexdigest()
    config = {
        "name": "MediaPipe face landmark (Face Mesh 468) as ONNX",
        "task": "face-landmarks",
        "licence": "apache-2.0",
        "trained_on": "Google's face data (see the MediaPipe Face Mesh model card); not trained by fdin",
        "synthetic_training_data": False,
        "input": {"name": "image", "shape": ["N", 192, 192, 3], "layout": "NHWC", "dtype": "uint8",
                  "range": [0, 255], "colour": "RGB"},
        "outputs": {"landmarks": "(N, 1404): 468 x (x, y, z) in crop pixels",
                    "face_flag": "(N, 1): face-presence logit (sigmoid = probability)"},
        "source": {"package": f"mediapipe=={MEDIAPIPE_VERSION}", "file": TFLITE_IN_WHEEL, "sha256": sha,
                   "licence": "apache-2.0", "converted_by": "python -m train.convert_mediapipe_landmarks"},
        "parity": parity,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (out / "README.md").write_text(model_card(sha, onnx_sha, parity))
    from fdin.weights import write_checksums

    write_checksums(out)
    onnx.checker.check_model(str(out / ONNX_NAME))
    log.info("wrote %s (model.onnx sha256 %s; %s)", out, onnx_sha, parity)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.convert_mediapipe_landmarks",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--wheel", type=Path, help=f"a mediapipe {MEDIAPIPE_VERSION} wheel (pip download "
                        f"--no-deps mediapipe=={MEDIAPIPE_VERSION})")
    parser.add_argument("--tflite", type=Path, help="face_landmark.tflite itself (instead of --wheel)")
    parser.add_argument("--out", type=Path, default=Path(DEFAULT_OUT))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(convert(args.out, wheel=args.wheel, tflite=args.tflite))
    return 0


if __name__ == "__main__":
    sys.exit(main())

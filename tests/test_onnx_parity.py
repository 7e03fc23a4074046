"""ONNX exports vs PyTorch: FDIN (output, pair importance, importance matrix, age) and the expression
branch, within 1e-4; the FDIN ONNX lookup (shipped file checked against the weights, cache, fallback)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from fdin.models.fdin_onnx import ONNX_NAME, add_onnx_to_weights, export_fdin_onnx, load_fdin  # noqa: E402
from fdin.models.registry import create_model  # noqa: E402
from fdin.regions import NUM_REGIONS  # noqa: E402
from fdin.weights import ModelCard, read_checksums, save_pretrained, verify_weights_dir, weights_dir  # noqa: E402

TOL = 1e-4
KEYS = {"gender": ("output", "pair_importance", "importance"),
        "age": ("output", "pair_importance", "importance", "age_years", "age_std_years")}


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setenv("FDIN_CACHE_DIR", str(tmp_path / "cache"))


def _x(b: int, t: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.02 * rng.standard_normal((b, t, NUM_REGIONS, 4)).cumsum(1)).astype(np.float32)


def _torch_out(model, x: np.ndarray) -> dict[str, np.ndarray]:
    with torch.inference_mode():
        return {k: v.numpy() for k, v in model(torch.from_numpy(x)).items()}


def _assert_close(got: dict, ref: dict, keys) -> None:
    for key in keys:
        assert got[key].shape == ref[key].shape, key
        np.testing.assert_allclose(got[key], ref[key], rtol=0, atol=TOL, err_msg=key)


def _save(tmp_path, name: str, target: str, relation_model: str = "fdin"):
    torch.manual_seed(1)
    model = create_model(relation_model, target=target, dim=16, rel_dim=16).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics, so eval-mode BN is really exercised
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    args = {"target": target, "dim": 16, "rel_dim": 16, "dynamics": {"fps": 25.0, "length": 60, "neutral_frames": 3}}
    card = ModelCard(title=f"test {name}", summary="test", trained_on="noise", synthetic_training_data=True)
    arch = {"fdin": "fdin", "fdin_uniform": "fdin_uniform", "fdin_baseline": "fdin_baseline"}[relation_model]
    return model, save_pretrained(model, tmp_path / name, architecture=arch, model_args=args, card=card)


@pytest.mark.parametrize("target", ["gender", "age"])
@pytest.mark.parametrize("variant", ["fdin", "fdin_uniform", "fdin_baseline"])
def test_fdin_export_matches_pytorch(tmp_path, target, variant):
    model, folder = _save(tmp_path, f"{variant}-{target}", target, variant)
    predictor = load_fdin(folder)
    assert predictor.backend == "onnxruntime" and predictor.onnx_path.parent == tmp_path / "cache" / "onnx"
    for b, t in ((1, 60), (3, 60), (2, 37)):  # dynamic batch and time axes
        x = _x(b, t, seed=b * t)
        _assert_close(predictor(x), _torch_out(model, x), KEYS[target])
    if variant != "fdin_baseline":
        m = predictor(_x(1, 60))["importance"][0]
        assert np.allclose(m, m.T) and np.allclose(np.diag(m), 0) and abs(np.triu(m).sum() - 1) < 1e-5


def test_model_is_left_in_eval_mode_and_unchanged(tmp_path):
    model, _ = _save(tmp_path, "g", "gender")
    x = _x(2, 60)
    before = _torch_out(model, x)
    export_fdin_onnx(model, tmp_path / "g.onnx")
    assert not model.training and "transform_input" not in vars(model.encoder)
    _assert_close(_torch_out(model, x), before, KEYS["gender"])


def test_shipped_onnx_is_verified_and_tied_to_the_weights(tmp_path, caplog):
    model, folder = _save(tmp_path, "age", "age")
    add_onnx_to_weights(folder)
    assert ONNX_NAME in read_checksums(folder)
    verify_weights_dir(folder)
    predictor = load_fdin(folder)
    assert predictor.onnx_path == folder / ONNX_NAME
    assert not (tmp_path / "cache" / "onnx").exists()  # nothing exported: torch was never needed
    x = _x(2, 60)
    _assert_close(predictor(x), _torch_out(model, x), KEYS["age"])

    # retrain (new weights) but leave the old model.onnx behind, re-blessed by write_checksums:
    # the digest in its metadata no longer matches, so it is ignored and a fresh export is used
    torch.manual_seed(7)
    new = create_model("fdin", target="age", dim=16, rel_dim=16).eval()
    config = json.loads((folder / "config.json").read_text())
    card = ModelCard(title="retrained", summary="t", trained_on="noise", synthetic_training_data=True)
    save_pretrained(new, folder, architecture="fdin", model_args=config["model_args"], card=card)
    assert ONNX_NAME in read_checksums(folder)
    with caplog.at_level("WARNING"):
        predictor = load_fdin(folder)
    assert "other weights" in caplog.text and predictor.onnx_path.parent == tmp_path / "cache" / "onnx"
    _assert_close(predictor(x), _torch_out(new, x), KEYS["age"])


def test_torch_fallback_has_the_same_interface(tmp_path):
    model, folder = _save(tmp_path, "g", "gender")
    predictor = load_fdin(folder, use_onnx=False)
    assert predictor.backend == "torch"
    x = _x(1, 60)
    _assert_close(predictor(x), _torch_out(model, x), KEYS["gender"])
    assert predictor.dynamics_config.length == 60 and predictor.target == "gender"


@pytest.mark.parametrize("name", ["fdin-gender", "fdin-age"])
def test_shipped_fdin_weights(name):
    folder = weights_dir() / name
    if not (folder / "model.safetensors").is_file():
        pytest.skip(f"weights/{name} not present")
    from fdin.models.pretrained import load_pretrained

    loaded = load_pretrained(folder)
    predictor = load_fdin(folder)
    assert predictor.backend == "onnxruntime"
    if ONNX_NAME in read_checksums(folder):  # a shipped export must belong to the shipped weights
        assert predictor.onnx_path == folder / ONNX_NAME, (
            f"weights/{name}/{ONNX_NAME} is stale: python -m fdin.models.fdin_onnx weights/{name}")
    x = _x(2, int(predictor.dynamics_config.length))
    _assert_close(predictor(x), _torch_out(loaded.model, x), KEYS[predictor.target])


def test_expression_branch_export_matches_pytorch(tmp_path):
    pytest.importorskip("timm")
    from fdin.relate import OnnxBranch, export_branch_onnx

    folder = weights_dir() / "expression"
    if (folder / "model.safetensors").is_file():
        from fdin.models.pretrained import load_pretrained

        net = load_pretrained(folder).model.eval()
    else:
        torch.manual_seed(0)
        net = create_model("expression_mnv3s", input_size=112).eval()
    size = int(net.preprocess["input_size"][-1]) if hasattr(net, "preprocess") else 112
    session = OnnxBranch(export_branch_onnx(net, tmp_path / "expression.onnx"), threads=1)
    x = torch.rand(4, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref = {k: v.numpy() for k, v in net(x).items()}
    got = session(x.numpy())
    for key in ("embedding", "expression", "gender", "age", "pose"):
        scale = max(1.0, float(np.abs(ref[key]).max()))  # age/pose are in years/degrees
        np.testing.assert_allclose(got[key], ref[key], rtol=0, atol=TOL * scale, err_msg=key)

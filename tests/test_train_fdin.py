"""Training CLI: smoke run through ``main(argv)``, output formats, importance recovery."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fdin.models.pretrained import load_pretrained
from fdin.regions import REGION_NAMES
from train import fdin as train_fdin


def test_parse_args_config_defaults(tmp_path):
    cfg = tmp_path / "run.json"
    cfg.write_text(json.dumps({"epochs": 3, "target": "age"}))
    args = train_fdin.parse_args(["--synthetic", "10", "--out", str(tmp_path / "o"), "--config", str(cfg)])
    assert args.epochs == 3 and args.target == "age"
    args = train_fdin.parse_args(["--synthetic", "10", "--out", str(tmp_path / "o"), "--config", str(cfg),
                                  "--epochs", "5"])
    assert args.epochs == 5


@pytest.mark.parametrize("target,model", [("gender", "fdin"), ("age", "baseline"), ("gender", "concat"),
                                          ("age", "lstm"), ("gender", "pairwise-corr"), ("age", "fdin")])
def test_training_smoke(tmp_path, monkeypatch, target, model):
    monkeypatch.setattr(train_fdin, "INPUT_SEQUENCES", 4)  # the input-level attribution, at the smallest scale
    monkeypatch.setattr(train_fdin, "INPUT_NO_SIGNAL", 2)
    monkeypatch.setattr(train_fdin, "INPUT_REFERENCES", 2)
    out = tmp_path / "run"
    rc = train_fdin.main(["--synthetic", "24", "--target", target, "--model", model, "--out", str(out),
                          "--epochs", "1", "--min-epochs", "1", "--folds", "2", "--quiet", "--threads", "1",
                          "--dim", "8", "--rel-dim", "8"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    key = "accuracy" if target == "gender" else "mae"
    assert metrics["target"] == target and metrics["model"] == model and metrics["folds"] == 2
    assert len(metrics[key]["per_fold"]) == 2
    fold = metrics["per_fold_scores"][0]
    if target == "gender":
        assert 0 <= fold["ece"] <= 1 and fold["temperature"] > 0 and "ece_uncalibrated" in fold
    else:
        assert 0 <= fold["coverage_1sd"] <= 1 and fold["std_scale"] > 0 and fold["constant_predictor"] > 0
    assert ("faithfulness" in metrics) == (model == "fdin")
    # every model, with pairs or not, gets the input-level attribution (the same instrument); FDIN also its own
    assert [set(a) >= {"input"} for a in metrics["attribution"]] == [True, True]
    assert all(("by_group" in a) == (model == "fdin") for a in metrics["attribution"])
    imp = json.loads((out / "importance.json").read_text())
    assert imp["regions"] == list(REGION_NAMES)
    assert set(imp["region_landmarks"]) == set(REGION_NAMES)
    assert np.asarray(imp["mean"]).shape == (len(REGION_NAMES),) * 2
    groups = set(imp["by_group"])
    assert groups <= ({"female", "male"} if target == "gender" else {"8-19", "20-39", "40-59", "60-76+"})
    assert json.loads((out / "args.json").read_text())["epochs"] == 1
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 2 and f"train_{key}" in history[0]["epochs"][0]
    loaded = load_pretrained(out / "model")
    cal = "temperature" if target == "gender" else "std_scale"
    assert loaded.config["model_args"][cal] == pytest.approx(float(getattr(loaded.model, cal)))
    assert loaded.config["synthetic_training_data"] is True
    assert "fdin.synth" in loaded.config["trained_on"]
    assert "python -m train.fdin" in (out / "model" / "README.md").read_text()


def test_subject_folds_are_disjoint():
    subjects = [f"s{i // 3}" for i in range(60)]
    folds = train_fdin.subject_folds(subjects, 4, seed=0)
    flat = [s for f in folds for s in f]
    assert len(flat) == len(set(flat)) == 20


def test_linear_baseline_is_fitted_to_its_optimum(tmp_path):
    """``pairwise-corr`` is a logistic regression solved to convergence (L-BFGS), not an SGD run cut off
    by the neural models' epoch budget: it recovers a planted direction, a stronger L2 shrinks it, and
    the run tries every strength of the grid on the validation subjects."""
    import torch

    g = torch.Generator().manual_seed(0)
    z = torch.randn(400, 5, generator=g, dtype=torch.float64)
    y = (z[:, 2] - 0.5 * z[:, 4] + 0.3 * torch.randn(400, generator=g, dtype=torch.float64) > 0).double()
    w, b = train_fdin._logistic_fit(z, y, 1e-4)
    assert ((z @ w[0] + b > 0).double() == y).double().mean() > 0.9
    direction = w[0] / w[0].norm()
    assert direction[2] > 0.8 and direction[4] < -0.3
    assert train_fdin._logistic_fit(z, y, 1.0)[0].norm() < 0.5 * w.norm()
    out = tmp_path / "pc"
    assert train_fdin.main(["--synthetic", "60", "--model", "pairwise-corr", "--out", str(out), "--folds", "2",
                            "--quiet", "--threads", "1", "--no-final", "--no-faithfulness"]) == 0
    history = json.loads((out / "history.json").read_text())
    assert [h["l2"] for h in history[0]["epochs"]] == list(train_fdin.LINEAR_L2)

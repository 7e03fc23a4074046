"""Regression guard for the FDIN training recipe (``train.fdin.train_model``) at small scale.

**The case was never used to tune the recipe**: 300 ``fdin.synth`` sequences with data seed
:data:`DATA_SEED` (5151, kept out of every development run; the development seeds are listed beside
``train.report_fdin_attribution.REPORT_DATA_SEED``), fold 3 of 3 with split seed 0. Two seeds of the
current recipe must both learn it **on the first attempt** (``--restarts 0``: the plateau restarts
are a safety net, not the recipe) within 15 epochs (~165 steps), reaching held-out accuracy ≥ 0.85
with the planted pair ranked first; the same trained models check the importance's faithfulness
(deleting the top pair hurts far more than deleting a random or the bottom pair), the per-class
attribution and the validation-fitted temperature. With the learning rate before it was raised
(``FDIN_RECIPE_OVERRIDES="--lr 3e-3"``, the recipe on which first attempts stayed on the initial
plateau on the development seeds, docs/fdin.md) the guard fails: split seed 1 reaches 0.73 (measured
once on this case, after the recipe was chosen). Without the per-pair probe loss (``--pair-aux 0``)
split seed 0 learned this case too (0.97), so that override is not what the guard is for.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from fdin.regions import region_index, region_pairs
from fdin.synth import GENDER_PAIR, write_dataset
from train import fdin as train_fdin

SEEDS = (0, 1)
#: the generated data set's seed: never used while developing the recipe
DATA_SEED = 5151
#: extra train.fdin arguments, empty for the shipped recipe; run with FDIN_RECIPE_OVERRIDES="--lr 3e-3"
#: to watch the guard fail with the earlier learning rate
RECIPE_OVERRIDES: list[str] = [a for a in os.environ.get("FDIN_RECIPE_OVERRIDES", "").split() if a]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import torch
    from torch.utils.data import DataLoader

    from fdin.dynamics import DynamicsConfig

    torch.set_num_threads(1)
    data = write_dataset(tmp_path_factory.mktemp("recipe") / "data", n_sequences=300, seed=DATA_SEED)
    records = train_fdin.load_dataset(data, DynamicsConfig())
    subjects = np.array([r.subject for r in records])
    out = {}
    for seed in SEEDS:
        args = train_fdin.parse_args(["--data", str(data), "--out", str(data.parent / f"o{seed}"), "--quiet",
                                      "--threads", "1", "--seed", str(seed), "--no-eval-train", "--restarts", "0",
                                      "--epochs", "15", *RECIPE_OVERRIDES])
        args.dyn_config = DynamicsConfig()
        fold = 2
        test_subjects = train_fdin.subject_folds(list(subjects), args.folds, args.seed)[fold]
        test_mask = np.isin(subjects, test_subjects)
        tr_s, va_s = train_fdin.split_val(np.array(sorted(set(subjects[~test_mask]))), args.val_fraction,
                                          args.seed + fold)
        tr, va = (np.flatnonzero(np.isin(subjects, list(s))) for s in (tr_s, va_s))
        model, history, margs = train_fdin.train_model(args, records, tr, va, desc="guard", rank=0, world=1)
        test = train_fdin.make_dataset(records, np.flatnonzero(test_mask), "gender", 100, train=False,
                                       augment_on=False, seed=seed, age_center=margs["age_center"],
                                       age_scale=margs["age_scale"])
        loader = DataLoader(test, batch_size=256)
        pred = train_fdin.predict(model, loader)
        out[seed] = {"model": model, "history": history, "args": margs, "pred": pred,
                     "score": train_fdin.score(pred, "gender", margs["age_scale"]),
                     "faith": train_fdin.faithfulness(model, loader, "gender", margs["age_scale"], ks=(1, 3)),
                     "attr": train_fdin.attribution_report(model, records, np.flatnonzero(test_mask), "gender", 100,
                                                           margs["age_scale"], train_fdin.relevant_pairs(data, "gender"),
                                                           seed=seed)}
    return out


@pytest.mark.parametrize("seed", SEEDS)
def test_recipe_leaves_the_plateau(trained, seed):
    run = trained[seed]
    assert run["score"]["accuracy"] >= 0.85, (run["score"], [h["val_loss"] for h in run["history"]])
    a, b = sorted(region_index(n) for n in GENDER_PAIR)
    planted = int(np.flatnonzero((region_pairs() == (a, b)).all(1))[0])
    assert int(np.argmax(run["pred"]["pair_importance"].mean(0))) == planted


@pytest.mark.parametrize("seed", SEEDS)
def test_importance_is_faithful(trained, seed):
    f = trained[seed]["faith"]
    assert f["full"] >= 0.85
    # deleting the top pair costs far more than deleting a random or the least important one
    assert f["deletion"]["top"][0] < f["deletion"]["random"][0] - 0.2
    assert f["deletion"]["bottom"][0] >= f["full"] - 0.02
    # the top pair alone carries (nearly all of) the prediction; the bottom pair alone does not
    assert f["insertion"]["top"][0] >= f["full"] - 0.1 > f["insertion"]["bottom"][0] + 0.2


@pytest.mark.parametrize("seed", SEEDS)
def test_attribution_explains_both_classes_and_nothing_in_noise(trained, seed):
    """Female and male estimates are both attributed to the planted pair (toward female / toward male);
    on inputs without signal (shuffled frames, white noise, a still face) no pair stands out."""
    rep = trained[seed]["attr"]
    female, male = rep["by_group"]["female"], rep["by_group"]["male"]
    for row in (female, male):
        assert row["attr_top_planted"] >= 0.8, row
    assert female["planted_effect"] > rep["noise"] / 2 and male["planted_effect"] < -rep["noise"] / 2
    assert rep["no_signal"]["salient"] <= 0.05, rep["no_signal"]
    assert rep["recovery"]["rank_attribution"][0] == 1


@pytest.mark.parametrize("seed", SEEDS)
def test_both_classes_approach_the_noise_level(trained, seed):
    """Developed on data seed 7301, where most estimates of both classes had a pair beyond the noise
    level. On this untuned case, measured with the current noise level (which includes whole clips
    shuffled before crop/pad): split seed 1 stands out for 100 % of female and 97 % of male estimates;
    split seed 0 learns the task (0.93) but its planted-pair effect sits just *below* the noise level for
    both classes (+0.40 / -0.39 p_female against 0.48), so the app says "no relation stands out" for most
    estimates of such a model (conservative, not wrong). What must hold on every seed: the planted-pair
    effect points toward each class and reaches three quarters of the noise level (a collapsing or
    one-class attribution fails)."""
    rep = trained[seed]["attr"]
    female, male = rep["by_group"]["female"], rep["by_group"]["male"]
    assert female["planted_effect"] >= 0.75 * rep["noise"], (female, rep["noise"])
    assert -male["planted_effect"] >= 0.75 * rep["noise"], (male, rep["noise"])


def test_some_seed_stands_out_for_both_classes(trained):
    """At least one of the two seeds attributes most estimates of *each* class beyond the noise level."""
    best = max(min(r["attr"]["by_group"][g]["salient"] for g in ("female", "male")) for r in trained.values())
    assert best >= 0.8, {s: {g: r["attr"]["by_group"][g]["salient"] for g in ("female", "male")}
                         for s, r in trained.items()}


def test_temperature_is_fitted_and_calibration_is_reported(trained):
    for run in trained.values():
        t = run["args"]["temperature"]
        assert train_fdin.MIN_TEMPERATURE <= t <= 20 and float(run["model"].temperature) == pytest.approx(t)
        ece = train_fdin.calibration_metrics(run["pred"], "gender")["ece"]
        assert 0 <= ece < 0.2


def test_calibrate_recovers_a_known_temperature():
    """Labels drawn from sigmoid(z); the model reports 4·z → the fitted temperature is ≈ 4."""
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, 20000)
    y = (rng.random(z.size) < 1 / (1 + np.exp(-z))).astype(np.float32)
    pred = {"output": (4 * z)[:, None].astype(np.float32), "y": y}
    assert train_fdin.calibrate(pred, "gender")["temperature"] == pytest.approx(4.0, rel=0.08)
    ece_raw = train_fdin.calibration_metrics(pred, "gender")["ece"]
    ece_cal = train_fdin.calibration_metrics(pred, "gender", scale=4.0)["ece"]
    assert ece_cal < 0.02 < ece_raw
    # a perfectly separated validation set does not drive the temperature to 0
    sep = {"output": np.array([[5.0], [-5.0]] * 50, dtype=np.float32), "y": np.array([1.0, 0.0] * 50, dtype=np.float32)}
    assert train_fdin.calibrate(sep, "gender")["temperature"] == pytest.approx(train_fdin.MIN_TEMPERATURE)
    # age: the predicted std is twice too small → std_scale ≈ 2, coverage back to ~68 %
    mean = rng.normal(0, 1, 20000)
    y_age = mean + rng.normal(0, 1, mean.size)
    pred_age = {"output": np.stack([mean, np.full_like(mean, 2 * np.log(0.5))], 1), "y": y_age}
    s = train_fdin.calibrate(pred_age, "age")["std_scale"]
    assert s == pytest.approx(2.0, rel=0.05)
    assert train_fdin.calibration_metrics(pred_age, "age", scale=s)["coverage_1sd"] == pytest.approx(0.683, abs=0.02)


def test_rank_stability():
    v = np.arange(66, dtype=float)
    assert train_fdin.rank_stability([v, v + 1, 2 * v])["mean"] == pytest.approx(1.0)
    assert train_fdin.rank_stability([v, -v])["min"] == pytest.approx(-1.0)
    assert train_fdin.rank_stability([v, v, -v])["top1_agreement"] == pytest.approx(1 / 3)


def test_pair_probe_loss_moves_the_importance_toward_the_pair_that_predicts():
    """The importance-weighted probe loss: its gradient raises the importance of the pair whose own
    probe predicts the label better than the weighted average, and lowers the others'."""
    import torch

    y = torch.tensor([1.0, 0.0, 1.0, 0.0])
    logits = torch.zeros(4, 3, requires_grad=True)
    pair_output = torch.zeros(4, 3, 1)
    pair_output[:, 1, 0] = 4 * (2 * y - 1)  # pair 1's probe is right; pairs 0 and 2 say nothing
    out = {"output": torch.zeros(4, 1), "pair_output": pair_output,
           "pair_importance": torch.softmax(logits, dim=-1)}
    base = train_fdin.loss_fn(out, y, "gender")
    loss = train_fdin.loss_fn(out, y, "gender", pair_weight=1.0)
    loss.backward()
    assert float(loss.detach()) > float(base.detach()) == pytest.approx(np.log(2), abs=1e-6)
    grad = logits.grad.mean(0)
    assert grad[1] < 0 < grad[0] and grad[2] > 0  # gradient descent raises pair 1's importance
    # age: the same Gaussian loss per pair; pair_weight 0 leaves the trait loss alone
    age_out = {"output": torch.zeros(4, 2), "pair_output": torch.zeros(4, 3, 2),
               "pair_importance": torch.full((4, 3), 1 / 3)}
    assert float(train_fdin.loss_fn(age_out, y, "age", 0.0)) < float(train_fdin.loss_fn(age_out, y, "age", 1.0))


def test_probes_are_training_only():
    """The recipe's per-pair probes wrap the model; the model's saved state has no probe tensors."""
    import torch

    from fdin.models.registry import create_model

    model = create_model("fdin", target="gender", dim=16, rel_dim=16, fast_correlation=True)
    net = train_fdin._probes_class()(model)
    out = net(torch.randn(2, 100, 12, 4).cumsum(1) * 0.01, 1.0)
    assert out["pair_output"].shape == (2, 66, 1) and "pair_features" not in out
    assert "pair_output" not in net(torch.randn(2, 100, 12, 4), 0.0)
    assert not any("probe" in k or k in ("weight", "bias") for k in model.state_dict())
    assert set(net.state_dict()) == {f"model.{k}" for k in model.state_dict()} | {"weight", "bias"}

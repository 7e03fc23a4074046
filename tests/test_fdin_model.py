"""FDIN model: shapes, backward, importance normalisation, the baseline's additivity, save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fdin.models.pretrained import load_pretrained
from fdin.models.registry import create_model, list_models
from fdin.regions import NUM_REGIONS, region_pairs
from fdin.weights import ModelCard, save_pretrained, stage_for_hub

VARIANTS = ("fdin", "fdin_uniform", "fdin_baseline", "fdin_concat", "fdin_lstm", "fdin_pairwise_corr",
            "fdin_pair_timing")
B, T, C = 3, 40, 4


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def _x(b: int = B) -> torch.Tensor:
    return 0.05 * torch.randn(b, T, NUM_REGIONS, C).cumsum(1) / 5


def test_registered():
    assert {*VARIANTS, "fdin_appearance"} <= set(list_models())
    from fdin.models.fdin import VARIANT_ARCHITECTURE

    assert set(VARIANT_ARCHITECTURE.values()) == set(VARIANTS)


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("target", ["gender", "age"])
@pytest.mark.parametrize("fast", [False, True])
def test_shapes_and_backward(name, target, fast):
    model = create_model(name, target=target, dim=16, rel_dim=16, fast_correlation=fast)
    out = model(_x())
    assert out["output"].shape == (B, 1 if target == "gender" else 2)
    assert out["importance"].shape == (B, NUM_REGIONS, NUM_REGIONS)
    assert out["pair_importance"].shape == (B, NUM_REGIONS * (NUM_REGIONS - 1) // 2)
    if target == "age":
        assert out["age_years"].shape == (B,) and (out["age_std_years"] > 0).all()
    out["output"].sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and any(float(g.abs().sum()) > 0 for g in grads)


def test_appearance_variant_shapes_and_backward():
    model = create_model("fdin_appearance", target="gender", dim=16, rel_dim=16)
    patches = torch.randint(0, 256, (2, 6, NUM_REGIONS, 3, 32, 32), dtype=torch.uint8)
    out = model(patches)
    assert out["output"].shape == (2, 1) and out["importance"].shape == (2, NUM_REGIONS, NUM_REGIONS)
    out["output"].sum().backward()
    assert model.encoder.cnn[0].weight.grad is not None


@pytest.mark.parametrize("name", ["fdin", "fdin_uniform"])
def test_importance_is_a_distribution_over_unordered_pairs(name):
    model = create_model(name, dim=16, rel_dim=16).eval()
    m = model(_x())["importance"].detach().numpy()
    assert np.allclose(m, m.transpose(0, 2, 1)) and np.allclose(np.diagonal(m, axis1=1, axis2=2), 0)
    assert np.allclose(np.triu(m).sum(axis=(1, 2)), 1.0, atol=1e-5)
    assert np.allclose(m.sum(axis=(1, 2)), 2.0, atol=1e-5)
    assert (m >= 0).all()
    if name == "fdin_uniform":
        assert np.allclose(m[0][np.triu_indices(NUM_REGIONS, 1)], 1 / 66)


def test_baseline_is_a_sum_of_per_region_terms():
    """Changing region k moves the output by the same amount whatever the other regions do."""
    model = create_model("fdin_baseline", dim=16).eval()
    x1, x2 = _x(1), _x(1)
    k = 4
    x2[:, :, k] = x1[:, :, k]  # same region k, different other regions
    x1b, x2b = x1.clone(), x2.clone()
    new_k = 0.05 * torch.randn(1, T, C).cumsum(1) / 5
    x1b[:, :, k], x2b[:, :, k] = new_k, new_k
    with torch.no_grad():
        d1 = model(x1b)["output"] - model(x1)["output"]
        d2 = model(x2b)["output"] - model(x2)["output"]
    assert float(d1.abs()) > 1e-6
    assert torch.allclose(d1, d2, atol=1e-5)


def test_fdin_is_not_additive():
    model = create_model("fdin", dim=16, rel_dim=16).eval()
    x1, x2 = _x(1), _x(1)
    x2[:, :, 4] = x1[:, :, 4]
    x1b, x2b = x1.clone(), x2.clone()
    new_k = 0.05 * torch.randn(1, T, C).cumsum(1) / 5
    x1b[:, :, 4], x2b[:, :, 4] = new_k, new_k
    with torch.no_grad():
        d1 = model(x1b)["output"] - model(x1)["output"]
        d2 = model(x2b)["output"] - model(x2)["output"]
    assert float((d1 - d2).abs()) > 1e-3 * float(d1.abs())


def test_save_load_round_trip_and_hub_staging(tmp_path):
    args = {"target": "age", "dim": 16, "rel_dim": 16, "age_center": 40.0, "age_scale": 18.0,
            "fast_correlation": True}
    model = create_model("fdin", **args).eval()
    card = ModelCard(title="fdin-age-test", summary="t", trained_on="fdin.synth generated data",
                     synthetic_training_data=True, metrics={"mae": 9.9})
    out = save_pretrained(model, tmp_path / "m", architecture="fdin", model_args=args, card=card)
    staged = stage_for_hub(out, tmp_path / "upload")
    assert sorted(p.name for p in staged.iterdir()) == ["README.md", "SHA256SUMS", "config.json",
                                                        "model.safetensors"]
    for folder in (out, staged):
        loaded = load_pretrained(folder)
        x = _x()
        with torch.no_grad():
            a, b = model(x), loaded.model(x)
        assert torch.equal(a["output"], b["output"]) and torch.equal(a["importance"], b["importance"])
        assert float(loaded.model.age_center) == 40.0
        assert loaded.provenance()["synthetic_training_data"] is True


def test_calibration_rescales_outputs():
    x = _x()
    for target in ("gender", "age"):
        torch.manual_seed(0)
        model = create_model("fdin", target=target, dim=16, rel_dim=16).eval()
        torch.manual_seed(0)
        scaled = create_model("fdin", target=target, dim=16, rel_dim=16, temperature=2.0, std_scale=3.0).eval()
        with torch.no_grad():
            a, b = model(x), scaled(x)
        if target == "gender":
            assert torch.allclose(b["output"], a["output"] / 2.0, atol=1e-6)
        else:
            assert torch.allclose(b["output"][:, 0], a["output"][:, 0], atol=1e-6)
            assert torch.allclose(b["age_std_years"], 3.0 * a["age_std_years"], rtol=1e-5)


def test_pair_mask_deletes_and_inserts_pairs():
    model = create_model("fdin", dim=16, rel_dim=16).eval()
    x = _x()
    p = NUM_REGIONS * (NUM_REGIONS - 1) // 2
    keep = torch.zeros(B, p)
    keep[:, :5] = 1
    with torch.no_grad():
        full = model(x)
        only5 = model(x, pair_mask=keep)
        masked = model.masked_outputs(x, [torch.ones(B, p), keep])
    a = only5["pair_importance"]
    assert torch.allclose(a[:, 5:], torch.zeros_like(a[:, 5:])) and torch.allclose(a.sum(1), torch.ones(B))
    assert torch.allclose(masked[0], full["output"], atol=1e-6) and torch.allclose(masked[1], only5["output"], atol=1e-6)
    assert not torch.allclose(full["output"], only5["output"])


def test_pairwise_corr_features_find_a_lagged_copy():
    """The hand-crafted features see a lagged copy between two regions: peak correlation ≈ 1 at that lag."""
    model = create_model("fdin_pairwise_corr", dim=16).eval()
    v = torch.randn(1, NUM_REGIONS, 120, 4)
    v[:, 1, 3:] = v[:, 0, :-3]  # region 1 = region 0 delayed by 3 frames
    f = model.baseline.features(v)[0]  # (P, 3); pair (0, 1) is the first
    assert f[0, 1] > 0.9 and abs(float(f[0, 2]) * model.baseline.max_lag - 3) < 0.5
    assert f[1:, 1].max() < 0.6


def test_pair_timing_features_see_lags_per_channel_and_onset_differences():
    """The timing model: a lag of 10 frames (0.4 s, the generator's largest age lag) in one channel only,
    with the other channels unrelated, is found in that channel (|peak| ≈ 1, lag 0.4 s) even when it is
    anticorrelated; the onset difference of two regions is measured in seconds."""
    model = create_model("fdin_pair_timing").eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 150, NUM_REGIONS, 4, generator=g).cumsum(1) * 0.01
    x[:, 10:, 1, 1] = -x[:, :-10, 0, 1]  # region 1's dy = minus region 0's dy, 10 frames later
    x[:, :10, 1, 1] = -x[:, :1, 0, 1]  # (still before that, without a jump)
    ramp = torch.clamp((torch.arange(150.0) - 50) / 20, 0, 1)
    x[0, :, 2, 2], x[0, :, 3, 2] = ramp, torch.clamp((torch.arange(150.0) - 75) / 20, 0, 1)  # onsets 1 s apart
    f = model.baseline.features(x)[0]  # (P, 9): |peak| ×4, lag ×4, onset difference; pair (0, 1) first
    assert f[0, 1] > 0.75 and f[0, 5] == pytest.approx(0.4, abs=0.05)  # (|peak| ≤ 140/150: the overlap)
    assert max(float(f[0, 0]), float(f[0, 2]), float(f[0, 3])) < 0.45
    p23 = int(np.flatnonzero((region_pairs() == (2, 3)).all(1))[0])
    assert f[p23, 8] == pytest.approx(1.0, abs=0.1)


def test_full_rate_correlation_sees_synchrony_the_strided_layers_sample_away():
    """Two regions sharing a fast (2-frame) tremor correlate ~1 in the full-rate term, unrelated
    regions ~0; the term is part of every pair's relational feature (the pooled features change)."""
    model = create_model("fdin", target="gender", dim=16, rel_dim=16, fast_correlation=True).eval()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 100, NUM_REGIONS, C, generator=g).cumsum(1) * 0.01
    x[:, :, 1] = x[:, :, 0]  # regions 0 and 1 move identically, frame by frame
    with torch.no_grad():
        h, fast = model.encoder.encode(x)
        corr = model.interpreter.pair_correlation(fast)  # (B, P, D), pair 0 = (0, 1)
        assert fast.shape == (2, NUM_REGIONS, 16, 100) and h.shape[2] == 25
        assert torch.allclose(corr[:, 0], torch.ones_like(corr[:, 0]), atol=0.01)
        assert corr[:, 1:].abs().mean() < 0.3
        with_term = model.interpreter.relational_features(h, fast)
        other = fast.clone()
        other[:, 1] = other[:, 1].roll(1, dims=-1)  # break the frame-level synchrony only
        assert not torch.allclose(with_term[:, 0], model.interpreter.relational_features(h, other)[:, 0])
    with pytest.raises(ValueError, match="full-rate"):
        model.interpreter.relational_features(h)

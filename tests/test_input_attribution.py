"""The model-agnostic input-level deletion attribution (:mod:`fdin.models.region_deletion`): the batched
computation against one forward pass per deleted region set, and what it finds on hand-built models
whose estimate depends on one pair of regions (or on single regions) by construction."""

from __future__ import annotations

import numpy as np
import pytest

from fdin.regions import NUM_REGIONS, region_pairs

torch = pytest.importorskip("torch")
from fdin.models.region_deletion import region_deletion_effects  # noqa: E402

PAIRS = region_pairs()
T = 60


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _pair_index(i: int, j: int) -> int:
    i, j = sorted((i, j))
    return int(np.flatnonzero((PAIRS[:, 0] == i) & (PAIRS[:, 1] == j))[0])


def _synchrony_model(a: int, b: int):
    """p = sigmoid(8 · correlation over time of regions a's and b's velocities − 4): only the pair's
    synchrony matters, neither region alone (like the generated data's gender cue)."""

    def estimate(x: torch.Tensor) -> torch.Tensor:
        v = torch.diff(x, dim=1)  # (N, T-1, R, C)
        v = v - v.mean(1, keepdim=True)
        v = v / (v.pow(2).mean(1, keepdim=True).sqrt() + 1e-6)
        return torch.sigmoid(8 * (v[:, :, a] * v[:, :, b]).mean((1, 2)) - 4)

    return estimate


def _sequences(n: int, coupled: tuple[int, int] | None, seed: int) -> torch.Tensor:
    """(n, T, R, 4) random walks, independent per region; ``coupled`` (a, b): b repeats a's walk."""
    x = torch.randn(n, T, NUM_REGIONS, 4, generator=torch.Generator().manual_seed(seed)).cumsum(1)
    if coupled is not None:
        x[:, :, coupled[1]] = x[:, :, coupled[0]] + 0.1 * torch.randn(n, T, 4, generator=torch.Generator()
                                                                      .manual_seed(seed + 1))
    return x


def test_batched_effects_equal_one_forward_pass_per_deleted_set():
    f = _synchrony_model(2, 7)
    x, refs = _sequences(2, (2, 7), 0), torch.cat([_sequences(1, (2, 7), 5), _sequences(2, None, 6)])
    out = region_deletion_effects(f, x, refs, batch=17)  # a batch size that splits inputs and variants

    def deleted(s: list[int]) -> torch.Tensor:  # mean over references of f(x with regions s taken from them)
        ys = []
        for m in range(len(refs)):
            y = x.clone()
            y[:, :, s] = refs[m, :, s]
            ys.append(f(y))
        return torch.stack(ys).mean(0)

    full = f(x)
    for p in (0, _pair_index(2, 7), 40):
        i, j = (int(k) for k in PAIRS[p])
        torch.testing.assert_close(out["joint"][:, p], full - deleted([i, j]))
        torch.testing.assert_close(out["interaction"][:, p], full - deleted([i]) - deleted([j]) + deleted([i, j]))
    torch.testing.assert_close(out["region"][:, 7], full - deleted([7]))


@pytest.mark.parametrize(("a", "b"), [(2, 7), (0, 11)])
def test_interaction_finds_the_one_pair_a_model_reads_and_nothing_in_noise(a, b):
    """A model that reads only the synchrony of (a, b): on inputs with that synchrony the pair has the
    largest interaction, every other pair exactly none (so another model's pair is never found); the
    joint-removal score instead ties it with, or ranks below, pairs that share one region."""
    f = _synchrony_model(a, b)
    planted, other = _pair_index(a, b), _pair_index(*((0, 11) if (a, b) == (2, 7) else (2, 7)))
    refs = torch.cat([_sequences(3, (a, b), 10), _sequences(3, None, 11)])  # class-balanced references
    cue = region_deletion_effects(f, _sequences(8, (a, b), 20), refs)
    inter = cue["interaction"]
    assert (inter.abs().argmax(1) == planted).all() and (inter.abs().argmax(1) != other).all()
    rest = torch.ones(inter.shape[1], dtype=torch.bool)
    rest[planted] = False
    assert float(inter[:, rest].abs().max()) < 1e-5
    # joint removal: deleting (a, c) breaks the synchrony as well, and scores at least as high
    shares_a = _pair_index(a, (b + 1) % NUM_REGIONS if (b + 1) % NUM_REGIONS != a else (b + 2) % NUM_REGIONS)
    assert float(cue["joint"][:, shares_a].mean()) >= float(cue["joint"][:, planted].mean())

    # noise level from no-signal inputs (white noise: no region follows another; a still face), the
    # rule of train.fdin.fit_attribution: the largest |effect| of any pair on any of them
    still = torch.zeros(1, T, NUM_REGIONS, 4)
    noise = float(region_deletion_effects(f, torch.cat([_sequences(16, None, 30), still]), refs)
                  ["interaction"].abs().max())
    assert (inter[:, planted].abs() > 1.5 * noise).all()  # every cue input has a salient pair
    fresh = region_deletion_effects(f, _sequences(16, None, 40), refs)["interaction"]
    assert float((fresh.abs().amax(1) > noise).float().mean()) <= 1 / 8  # fresh no-signal inputs: ~none


def test_additive_regions_have_joint_effects_but_no_interaction():
    """A model that sums per-region terms has no pairwise relation: every interaction is 0 while
    deleting a region it reads moves the estimate (joint and region scores)."""

    def f(x: torch.Tensor) -> torch.Tensor:
        amp = x[..., 0].std(1)  # (N, R) each region's own spread
        return amp[:, 3] - 0.5 * amp[:, 9]

    x, refs = _sequences(4, None, 50), 0.3 * _sequences(4, None, 51)
    out = region_deletion_effects(f, x, refs)
    assert float(out["interaction"].abs().max()) < 1e-4
    assert float(out["region"][:, 3].abs().min()) > 0.1 and float(out["joint"][:, _pair_index(3, 9)].abs().min()) > 0
    untouched = [p for p, (i, j) in enumerate(PAIRS) if {int(i), int(j)}.isdisjoint({3, 9})]
    assert float(out["joint"][:, untouched].abs().max()) < 1e-5


@pytest.mark.parametrize(("target", "rel_norm"), [("gender", False), ("age", True)])
def test_fdin_fast_deletion_equals_splicing_the_input(target, rel_norm):
    """FDIN.deletion_estimates (encode once, recompute only the pairs touching a deleted region) gives
    the estimates of the spliced inputs themselves, so FDIN is measured with the same instrument."""
    from fdin.models.region_deletion import deletion_masks
    from fdin.models.registry import create_model

    torch.manual_seed(0)
    model = create_model("fdin", target=target, dim=8, rel_dim=8, fast_correlation=True, rel_norm=rel_norm).eval()
    with torch.no_grad():
        model.head.mlp[-1].weight.mul_(300)  # an untrained head is nearly constant: make the pairs matter
        model.interpreter.score[-1].weight.mul_(10)
    x, refs = 0.02 * _sequences(2, (2, 7), 60), 0.02 * _sequences(3, None, 61)
    with torch.no_grad():  # and centre its output (an unsaturated p_female)
        model.head.mlp[-1].bias.sub_(model(x, attribution=False)["output"].mean(0))
    estimate = lambda v: model.estimate(model(v, attribution=False)["output"])  # noqa: E731
    with torch.inference_mode():
        fast = region_deletion_effects(estimate, x, refs, deleted=model.deletion_estimates)
        slow = region_deletion_effects(estimate, x, refs)
        masks = deletion_masks()
        spliced = x[:, None] * (1 - masks[:, None, :, None]) + refs[1][None, None] * masks[:, None, :, None]
        direct = estimate(spliced.flatten(0, 1)).reshape(2, -1)
        torch.testing.assert_close(model.deletion_estimates(x, refs, masks)[..., 1], direct, rtol=1e-4, atol=1e-5)
    for k in fast:
        torch.testing.assert_close(fast[k], slow[k], rtol=1e-4, atol=1e-5)
    assert float(slow["joint"].abs().max()) > 1e-2  # the regions matter to this model


def test_attribution_report_scores_models_without_pairs(tmp_path, monkeypatch):
    """train.fdin.attribution_report gives a model without pairs (an untrained LSTM) the input-level
    report, per class, with its no-signal control and the planted pair's recovery, and no FDIN part."""
    from fdin.dynamics import DynamicsConfig
    from fdin.models.registry import create_model
    from fdin.synth import write_dataset
    from train import fdin as train_fdin

    monkeypatch.setattr(train_fdin, "INPUT_SEQUENCES", 6)
    monkeypatch.setattr(train_fdin, "INPUT_NO_SIGNAL", 3)
    data = write_dataset(tmp_path / "data", n_sequences=24, seed=5)
    records = train_fdin.load_dataset(data, DynamicsConfig())
    idx = np.arange(len(records))
    torch.manual_seed(0)
    model = create_model("fdin_lstm", target="gender").eval()
    relevant = train_fdin.relevant_pairs(data, "gender")
    rep = train_fdin.attribution_report(model, records, idx[16:], "gender", 100, 20.0, relevant, seed=0,
                                        train_idx=idx[:12], val_idx=idx[12:16])
    assert set(rep) == {"input"}
    inp = rep["input"]
    assert inp["references"] == train_fdin.INPUT_REFERENCES and inp["n"] == 6
    for measure in train_fdin.INPUT_MEASURES:
        row = inp[measure]
        assert row["noise"] >= 1e-3 and sum(g["n"] for g in row["by_group"].values()) == 6
        assert set(row["by_group"]) <= {"female", "male"} and row["no_signal"]["n"] == 2 * 3 + 1
        assert 0 <= row["recovery"]["auroc"] <= 1 and 1 <= row["recovery"]["ranks"][0] <= len(PAIRS)

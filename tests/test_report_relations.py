"""The relation report: identity-disjoint three-way split, bootstrap CIs, the reference predictors and
the command end to end on a tiny generated set."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from fdin.labels import EXPRESSION_LABELS, TRAITS
from train import common
from train import report_relations as report
from train.datasets import relation_split_of
from train.synth_faces import RELATION_TEST_IDENTITIES, VAL_IDENTITIES, trait_rules


def test_relation_split_of():
    v, t = VAL_IDENTITIES[0], RELATION_TEST_IDENTITIES[0]
    assert not set(VAL_IDENTITIES) & set(RELATION_TEST_IDENTITIES)
    assert relation_split_of(("tom", "t1_0")) == "train"
    assert relation_split_of((v, "tom")) == "val" and relation_split_of((v, VAL_IDENTITIES[1])) == "val"
    assert relation_split_of(("tom", t)) == "test" and relation_split_of(RELATION_TEST_IDENTITIES) == "test"
    assert relation_split_of((v, t)) is None


def test_generated_splits_are_identity_disjoint():
    from train.relation import synthetic_splits

    splits = synthetic_splits(n_train=16, n_val=8, n_test=8, n_faces=40, seed=7)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [16, 8, 8]
    ids = {s: [set(r.meta["identities"]) for r in recs] for s, recs in splits.items()}
    held = set(VAL_IDENTITIES) | set(RELATION_TEST_IDENTITIES)
    assert all(not pair & held for pair in ids["train"])
    assert all(pair & set(VAL_IDENTITIES) and not pair & set(RELATION_TEST_IDENTITIES) for pair in ids["val"])
    assert all(pair & set(RELATION_TEST_IDENTITIES) and not pair & set(VAL_IDENTITIES) for pair in ids["test"])
    assert all(len(r.meta["identities"]) == 2 and r.meta["identities"][0] != r.meta["identities"][1]
               for recs in splits.values() for r in recs)
    # each split has its own face pool: no pasted face image is shared between splits
    def crops(records):
        return {r.pixels[int(b[1]) + 8:int(b[1]) + 24, int(b[0]) + 8:int(b[0]) + 24].tobytes()
                for r in records for b in (np.clip(r.box_a, 0, None), np.clip(r.box_b, 0, None))}
    assert not crops(splits["train"]) & crops(splits["test"]) and not crops(splits["val"]) & crops(splits["test"])
    # the labels are fdin's rules on the generated expressions kept in meta
    r = splits["test"][0]
    expected = trait_rules(EXPRESSION_LABELS[r.meta["expression_a"]], EXPRESSION_LABELS[r.meta["expression_b"]],
                           r.box_a, r.box_b)
    assert np.array_equal(r.labels, expected)


def test_bootstrap_ci_brackets_the_estimate_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    widths = []
    for n in (40, 400, 4000):
        x = (rng.random(n) < 0.7).astype(float)
        point, low, high = common.bootstrap_ci(lambda idx, x=x: x[idx].mean(), n, n_boot=400, seed=1)
        assert low <= point <= high and point == pytest.approx(x.mean())
        widths.append(float(high - low))
    assert widths[0] > 2 * widths[1] > 4 * widths[2] > 0
    # stratified: every resample keeps each stratum's size
    strata = np.repeat([0, 1, 2], [5, 10, 20])
    point, low, high = common.bootstrap_ci(lambda idx: np.bincount(strata[idx], minlength=3), len(strata),
                                           strata=strata, n_boot=50)
    assert np.array_equal(point, [5, 10, 20]) and np.array_equal(low, point) and np.array_equal(high, point)


def test_balanced_accuracy_matrix_matches_the_scalar_one():
    rng = np.random.default_rng(3)
    labels = (rng.random((60, 8)) < 0.3).astype(float)
    labels[rng.random((60, 8)) < 0.1] = np.nan
    labels[:, 5] = 0.0  # one class only: the available rate alone
    predicted = (rng.random((2, 60, 8)) < 0.5).astype(float)
    got = report.balanced_accuracy_matrix(labels, predicted)
    for r in range(2):
        for t in range(8):
            m = np.isfinite(labels[:, t])
            assert got[r, t] == pytest.approx(common.balanced_accuracy(labels[m, t], predicted[r, m, t]))
    majority, random = report.chance_predictions(labels, 60, seed=0)
    assert np.allclose(report.balanced_accuracy_matrix(labels, majority[None])[0, :5], 0.5)
    assert set(np.unique(random)) <= {0.0, 1.0} and not random[:, 5].any()  # prevalence 0: never positive


def test_rules_on_predicted_expressions_follow_the_fer_argmax():
    probs = np.zeros((2, 2, 7), np.float32)
    probs[0, :, EXPRESSION_LABELS.index("happy")] = 1  # both happy, close together: warm
    probs[1, 0, EXPRESSION_LABELS.index("angry")] = 1
    probs[1, 1, EXPRESSION_LABELS.index("fear")] = 1
    boxes = np.array([[[0, 0, 50, 50], [40, 0, 90, 50]]] * 2, np.float32)[:, None].repeat(2, 1)
    out = report.rules_on_predicted_expressions({"expression": probs, "boxes": boxes})
    assert out.shape == (2, 8)
    assert out[0, TRAITS.index("warm")] == 1 and out[1, TRAITS.index("competitive")] == 1
    assert out[1, TRAITS.index("dominant")] == 1  # b afraid, a not


def test_the_command_writes_the_report_with_every_reference(tmp_path):
    out = tmp_path / "docs" / "relations.md"
    argv = ["--seeds", "0", "1", "--train-pairs", "16", "--val-pairs", "8", "--test-pairs", "10", "--faces", "40",
            "--epochs-grid", "1", "2", "--lr-grid", "1e-3", "--bootstrap", "50", "--cache", str(tmp_path / "cache"),
            "--out", str(out), "--quiet"]
    assert report.main(argv) == 0
    text = out.read_text()
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["command"].startswith("python -m train.report_relations --seeds 0 1")
    assert set(summary["table"]) == set(report.ROWS)
    for name, row in summary["table"].items():
        assert report.ROW_NAMES[name] in text
        mean = row["mean_balanced_accuracy"]
        assert mean["ci95"][0] <= mean["value"] + 1e-9 and mean["value"] <= mean["ci95"][1] + 1e-9
        assert set(row["balanced_accuracy"]) == set(TRAITS)
        assert len(summary["per_seed_mean_balanced_accuracy"][name]) == 2
    assert summary["pairs_per_seed"] == {"train": 16, "val": 8, "test": 10}
    assert summary["selection"]["siamese"]["chosen"]["epochs"] in (1, 2)
    assert len(summary["selection"]["cue_only"]["grid"]) == 2
    assert summary["rules_on_generated_expressions_reproduce_labels"] > 0.99
    assert "Validation grid" in text and "95 % CI" in text

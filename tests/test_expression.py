"""Expression/attribute network: shapes, backward, masked losses, propagation, alignment, training smoke."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from relation_helpers import ensure_synthetic_faces  # noqa: E402

from fdin.alignment import AlignmentSpec, align_face, keypoints_from_landmarks68, similarity_transform  # noqa: E402
from fdin.models.expression import EXPRESSION_LABELS, masked_multitask_loss  # noqa: E402
from fdin.models.registry import create_model, list_models  # noqa: E402
from train.propagation import knn_graph, propagate_categorical, propagate_numeric  # noqa: E402

torch.set_num_threads(1)
SIZE = 64  # small crops keep the tests fast; the shipped models use 112


@pytest.fixture(scope="module")
def synthetic_faces_cached() -> int:
    return ensure_synthetic_faces()


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return create_model("expression_attribute_net", backbone="mobilenetv3_small_050", input_size=SIZE, embed_dim=32)


def _batch(n=4):
    targets = {"expression": torch.eye(7)[torch.arange(n) % 7], "gender": torch.rand(n),
               "age": torch.rand(n) * 60 + 10, "pose": torch.randn(n, 3) * 10}
    return torch.rand(n, 3, SIZE, SIZE), targets


def test_registered():
    assert {"expression_attribute_net", "expression_mnv3s", "siamese_relation_net"} <= set(list_models())


def test_shapes_and_backward(net):
    x, targets = _batch()
    out = net(x)
    assert out["embedding"].shape == (4, 32)
    assert torch.allclose(out["embedding"].norm(dim=1), torch.ones(4), atol=1e-5)
    assert out["expression"].shape == (4, len(EXPRESSION_LABELS))
    assert out["gender"].shape == (4,) and out["age"].shape == (4,) and out["pose"].shape == (4, 3)
    weights = {k: torch.ones(4) for k in targets}
    loss, parts = masked_multitask_loss(out, targets, weights)
    loss.backward()
    assert set(parts) == {"expression", "gender", "age", "pose"}
    assert all(p.grad is not None for p in net.heads.parameters())
    net.zero_grad()


def test_unlabelled_head_gets_zero_gradient(net):
    x, targets = _batch()
    targets["age"][:] = float("nan")  # garbage where unlabelled must not leak into the loss
    weights = {"expression": torch.tensor([1.0, 0, 1, 0]), "gender": torch.zeros(4), "age": torch.zeros(4),
               "pose": torch.ones(4)}
    net.zero_grad()
    loss, parts = masked_multitask_loss(net(x), targets, weights)
    assert torch.isfinite(loss)
    loss.backward()
    assert parts["gender"] == 0.0 and parts["age"] == 0.0
    for head in ("gender", "age"):
        for p in net.heads[head].parameters():
            assert p.grad is None or torch.count_nonzero(p.grad) == 0
    assert torch.count_nonzero(net.heads["expression"].weight.grad) > 0
    net.zero_grad()


def test_masked_sample_does_not_change_loss(net):
    net.eval()
    x, targets = _batch()
    weights = {k: torch.tensor([1.0, 1, 0, 1]) for k in targets}
    with torch.no_grad():
        out = net(x)
        a, _ = masked_multitask_loss(out, targets, weights)
        targets["expression"][2] = torch.eye(7)[(targets["expression"][2].argmax() + 3) % 7]
        targets["gender"][2] = 1 - targets["gender"][2]
        b, _ = masked_multitask_loss(out, targets, weights)
    net.train()
    assert torch.equal(a, b)


def _two_clusters(rng, n=30):
    emb = np.concatenate([rng.normal([4, 0, 0], 0.3, (n, 3)), rng.normal([0, 4, 0], 0.3, (n, 3))])
    truth = np.r_[np.zeros(n, int), np.ones(n, int)]
    known = np.zeros(2 * n, bool)
    known[[0, 1, 2, n, n + 1]] = True
    return emb, truth, known


def test_propagation_fills_missing_categorical_labels():
    emb, truth, known = _two_clusters(np.random.default_rng(0))
    res = propagate_categorical(knn_graph(emb, k=5), truth, known, num_classes=2)
    assert res.values.shape == (60, 2)
    assert (res.values.argmax(1) == truth).all()
    assert (res.confidence[known] == 1).all()
    assert (res.confidence[~known] > 0).mean() > 0.8
    assert np.allclose(res.values.sum(1), 1.0)


def test_propagation_fills_missing_numbers():
    emb, truth, known = _two_clusters(np.random.default_rng(1))
    ages = np.where(truth == 0, 20.0, 60.0)
    res = propagate_numeric(knn_graph(emb, k=5), np.where(known, ages, np.nan), known)
    ok = res.confidence > 0
    assert ok.mean() > 0.8
    assert np.abs(res.values[ok] - ages[ok]).max() < 1.0


def test_similarity_alignment_round_trip():
    spec = AlignmentSpec(size=SIZE)
    dst = spec.template_points()
    angle = np.radians(20)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = dst @ rot.T * 1.7 + np.array([30.0, 12.0])
    matrix = similarity_transform(src, dst)
    assert np.allclose(src @ matrix[:, :2].T + matrix[:, 2], dst, atol=1e-6)
    image = np.zeros((200, 200, 3), np.uint8)
    crop, roll = align_face(image, src, spec)
    assert crop.shape == (SIZE, SIZE, 3)
    assert abs(roll - 20.0) < 1e-6  # the head was rotated clockwise by 20 degrees in the image


def test_keypoints_from_landmarks68_order():
    lm = np.zeros((68, 2))
    lm[36:42] = [10, 50]
    lm[42:48] = [40, 50]
    lm[30] = [25, 65]
    lm[48], lm[54] = [15, 80], [35, 80]
    kp = keypoints_from_landmarks68(lm)
    assert np.allclose(kp, [[10, 50], [40, 50], [25, 65], [15, 80], [35, 80]])


def test_training_smoke_with_propagation(tmp_path, synthetic_faces_cached):
    from fdin.models.pretrained import load_pretrained
    from train import expression

    out = tmp_path / "run"
    code = expression.main(["--synthetic", str(synthetic_faces_cached), "--epochs", "2", "--batch-size", "16",
                            "--backbone", "mobilenetv3_small_050", "--input-size", str(SIZE), "--embed-dim", "32",
                            "--propagate-every", "1", "--threads", "1", "--out", str(out), "--quiet"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"expression_accuracy", "gender_accuracy", "age_mae_years", "pose_mae_yaw_deg"} <= set(metrics["val"])
    assert metrics["propagation"] and metrics["propagation"][0]["expression"]["missing"] > 0
    loaded = load_pretrained(out / "model")
    assert loaded.config["synthetic_training_data"] is True
    assert loaded.config["preprocess"]["alignment"]["size"] == SIZE
    from fdin.labels import SYNTHETIC_WEIGHTS_NOTE

    assert SYNTHETIC_WEIGHTS_NOTE in (out / "model" / "README.md").read_text()


def _fake_source():
    from train.synth_faces import SourceFace

    rng = np.random.default_rng(0)
    lm = np.zeros((68, 2))
    lm[0:17] = np.c_[np.linspace(40, 104, 17), 60 + 40 * np.sin(np.linspace(0, np.pi, 17))]
    lm[17:27] = np.c_[np.linspace(45, 99, 10), np.full(10, 50.0)]
    lm[27:36] = np.c_[np.full(9, 72.0), np.linspace(55, 85, 9)]
    lm[36:42] = np.c_[np.linspace(50, 64, 6), np.full(6, 60.0)]
    lm[42:48] = np.c_[np.linspace(80, 94, 6), np.full(6, 60.0)]
    lm[48:68] = np.c_[np.linspace(58, 86, 20), np.full(20, 95.0)]
    lm += rng.normal(0, 0.3, lm.shape)
    image = rng.integers(0, 255, (144, 144, 3), dtype=np.uint8)
    return SourceFace(identity="fake", image=image, landmarks=lm, pose=(5.0, 0.0, 0.0), p_female=1.0, age=30.0)


def test_generated_expressions_move_the_right_landmarks():
    from train.synth_faces import EXPRESSION_PATTERNS, deform

    src = _fake_source()
    for name in EXPRESSION_PATTERNS:
        image, lm, yaw = deform(src, name, np.random.default_rng(1))
        assert image.shape == src.image.shape and lm.shape == (68, 2) and abs(yaw) <= 18.0 + 1e-6
    _, happy, _ = deform(src, "happy", np.random.default_rng(2))
    _, neutral, _ = deform(src, "neutral", np.random.default_rng(2))
    # mouth corners go up (smaller y) relative to the same shape jitter without the pattern
    assert (happy[[48, 54], 1] < neutral[[48, 54], 1]).all()
    _, surprise, _ = deform(src, "surprise", np.random.default_rng(2))
    assert surprise[8, 1] > neutral[8, 1] + 5  # jaw drop


def test_generated_records_hide_labels_per_pseudo_dataset():
    from train.datasets import synth_face_records
    from train.synth_faces import PSEUDO_DATASETS, VAL_IDENTITIES

    n = 60
    ids = np.array([VAL_IDENTITIES[0] if i % 6 == 0 else f"id{i % 5}" for i in range(n)])
    samples = {"images": np.zeros((n, 8, 8, 3), np.uint8), "landmarks": np.tile(_fake_source().landmarks, (n, 1, 1)),
               "expression": np.arange(n) % 7, "p_female": np.ones(n), "age": np.full(n, 30.0),
               "pose": np.zeros((n, 3)), "identity": ids}
    train, val = synth_face_records(samples)
    assert not {r.identity for r in train} & set(VAL_IDENTITIES)
    assert all(r.expression is not None and r.age is not None for r in val)
    for r in train:
        heads = PSEUDO_DATASETS[r.dataset]
        assert (r.expression is not None) == ("expression" in heads)
        assert (r.gender is not None) == ("gender" in heads)
        assert set(r.meta["hidden"]) == {"expression", "gender", "age"} - set(heads)

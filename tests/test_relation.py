"""Siamese relation model: shapes, backward, exact symmetry of symmetric traits, spatial cue, ONNX parity,
training smoke."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from relation_helpers import ensure_synthetic_faces  # noqa: E402

from fdin.models.registry import create_model  # noqa: E402
from fdin.models.relation import CUE_DIM, FACE_FEATURE_DIM, SYMMETRIC_TRAITS, TRAITS, spatial_cue  # noqa: E402

torch.set_num_threads(1)
SIZE = 64
BRANCH_ARGS = {"backbone": "mobilenetv3_small_050", "input_size": SIZE, "embed_dim": 32}


@pytest.fixture(scope="module")
def synthetic_faces_cached() -> int:
    return ensure_synthetic_faces()


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = create_model("siamese_relation_net", branch_architecture="expression_attribute_net",
                       branch_args=BRANCH_ARGS, hidden=64)
    return net.eval()


@pytest.fixture(scope="module")
def feature_model():
    torch.manual_seed(0)
    return create_model("siamese_relation_features", embed_dim=16, hidden=32).eval()


def _feature_inputs(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.rand(n, FACE_FEATURE_DIM, generator=g), torch.rand(n, FACE_FEATURE_DIM, generator=g)
    return (a, b, *_inputs(n, seed)[2:])


def _inputs(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.rand(n, 3, SIZE, SIZE, generator=g), torch.rand(n, 3, SIZE, SIZE, generator=g)
    xy_a, xy_b = torch.rand(n, 2, generator=g) * 200, torch.rand(n, 2, generator=g) * 200
    box_a = torch.cat([xy_a, xy_a + 40 + torch.rand(n, 2, generator=g) * 60], 1)
    box_b = torch.cat([xy_b, xy_b + 40 + torch.rand(n, 2, generator=g) * 60], 1)
    wh = torch.tensor([[320.0, 320.0]]).expand(n, 2)
    return a, b, box_a, box_b, wh


def test_trait_lists():
    assert TRAITS == ("dominant", "competitive", "trusting", "warm", "friendly", "attached", "demonstrative",
                      "assured")
    assert set(TRAITS) - set(SYMMETRIC_TRAITS) == {"dominant"}


def test_shapes_and_backward(model):
    model.train()
    logits = model(*_inputs())
    assert logits.shape == (3, len(TRAITS))
    logits.sum().backward()
    assert model.relation_head.classifier.weight.grad is not None
    assert any(p.grad is not None for p in model.branch.trunk.parameters())
    model.zero_grad()
    model.eval()


def test_symmetric_traits_are_exactly_swap_invariant(model):
    a, b, box_a, box_b, wh = _inputs(5, seed=3)
    with torch.no_grad():
        e = model.branch(torch.cat([a, b]))["embedding"]
        ea, eb = e[:5], e[5:]
        ab = model.forward_from_embeddings(ea, eb, box_a, box_b, wh)
        ba = model.forward_from_embeddings(eb, ea, box_b, box_a, wh)
        full_ab, full_ba = model(a, b, box_a, box_b, wh), model(b, a, box_b, box_a, wh)
    sym = torch.tensor([t in SYMMETRIC_TRAITS for t in TRAITS])
    assert torch.equal(ab[:, sym], ba[:, sym])  # bit-for-bit
    torch.testing.assert_close(full_ab[:, sym], full_ba[:, sym], rtol=0, atol=1e-6)
    # the directed trait is allowed to (and with random weights does) depend on the order
    assert not torch.allclose(ab[:, ~sym], ba[:, ~sym])


def test_feature_model_shapes_backward_and_symmetry(feature_model):
    """The shipped architecture: the same symmetry property on real-feature inputs."""
    feature_model.train()
    logits = feature_model(*_feature_inputs())
    assert logits.shape == (3, len(TRAITS))
    logits.sum().backward()
    assert all(p.grad is not None for p in feature_model.branch.parameters())
    feature_model.zero_grad()
    feature_model.eval()
    a, b, box_a, box_b, wh = _feature_inputs(6, seed=5)
    with torch.no_grad():
        ab, ba = feature_model(a, b, box_a, box_b, wh), feature_model(b, a, box_b, box_a, wh)
        emb = feature_model.branch(a)["embedding"]
    sym = torch.tensor([t in SYMMETRIC_TRAITS for t in TRAITS])
    torch.testing.assert_close(ab[:, sym], ba[:, sym], rtol=0, atol=1e-6)
    assert not torch.allclose(ab[:, ~sym], ba[:, ~sym])
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(6))
    # the expression embedding enters L2-normalised: its scale does not matter, the attributes' does
    scaled = a.clone()
    scaled[:, :128] *= 3.0
    with torch.no_grad():
        torch.testing.assert_close(feature_model.branch(scaled)["embedding"], emb)
        moved = a.clone()
        moved[:, 128] += 1.0  # p_female
        assert not torch.allclose(feature_model.branch(moved)["embedding"], emb)


def test_face_features_layout():
    from fdin.perception.types import Appearance, Face, Pose
    from fdin.relate import NEUTRAL_AGE, NEUTRAL_P_FEMALE, face_features

    def face(app):
        z = np.zeros((68, 2), np.float32)
        return Face(bbox=np.zeros(4, np.float32), score=1.0, landmarks=z, keypoints=z[:5],
                    pose=Pose(9.0, -4.5, 45.0), appearance=app)

    emb = np.arange(2 * 128, dtype=np.float32).reshape(2, 128)
    out = face_features(emb, [face(Appearance(0.9, 25.0, "m")), face(None)])
    assert out.shape == (2, FACE_FEATURE_DIM) and np.array_equal(out[:, :128], emb)
    np.testing.assert_allclose(out[0, 128:], [0.9, 0.5, 0.2, -0.1, 1.0])
    np.testing.assert_allclose(out[1, 128:130], [NEUTRAL_P_FEMALE, NEUTRAL_AGE / 50])


def test_spatial_cue_definition():
    box_a = torch.tensor([[0.0, 0.0, 100.0, 100.0]])
    box_b = torch.tensor([[50.0, 0.0, 100.0, 50.0]])
    cue = spatial_cue(box_a, box_b, torch.tensor([[200.0, 100.0]]))
    assert cue.shape == (1, CUE_DIM)
    x_a, y_a, w_a, h_a, x_b, y_b, w_b, h_b, dx, dy, logw, iou = cue[0].tolist()
    assert (x_a, y_a, w_a, h_a) == (0.0, 0.0, 0.5, 1.0)
    assert (x_b, y_b, w_b, h_b) == (0.25, 0.0, 0.25, 0.5)
    assert dx == pytest.approx((0.25 - 0.375) / 0.5)
    assert dy == pytest.approx((0.5 - 0.25) / 1.0)
    assert logw == pytest.approx(np.log(2.0))
    assert iou == pytest.approx(0.25)  # b lies inside a and covers a quarter of it
    mirrored = spatial_cue(box_b, box_a, torch.tensor([[200.0, 100.0]]))[0]
    assert mirrored[10] == pytest.approx(-logw) and mirrored[11] == pytest.approx(iou)


def test_onnx_branch_matches_pytorch(model, tmp_path):
    pytest.importorskip("onnxruntime")
    from fdin.relate import OnnxBranch, export_branch_onnx

    branch = model.branch.eval()
    path = export_branch_onnx(branch, tmp_path / "branch.onnx")
    session = OnnxBranch(path, threads=1)
    x = torch.rand(3, 3, SIZE, SIZE)
    with torch.no_grad():
        ref = branch(x)
    got = session(x.numpy())
    for key in ("embedding", "expression", "gender", "age", "pose"):
        np.testing.assert_allclose(got[key], ref[key].numpy(), rtol=1e-4, atol=1e-4, err_msg=key)
    one = session(x[:1].numpy())  # dynamic batch axis
    assert one["embedding"].shape == (1, ref["embedding"].shape[1])


def test_trait_rules_symmetric():
    from train.synth_faces import trait_rules

    rng = np.random.default_rng(0)
    labels = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    sym = np.array([t in SYMMETRIC_TRAITS for t in TRAITS])
    for _ in range(200):
        ea, eb = rng.choice(labels, 2)
        ba = np.r_[rng.uniform(0, 200, 2), 0, 0]
        ba[2:] = ba[:2] + rng.uniform(30, 90, 2)
        bb = np.r_[rng.uniform(0, 200, 2), 0, 0]
        bb[2:] = bb[:2] + rng.uniform(30, 90, 2)
        assert (trait_rules(ea, eb, ba, bb)[sym] == trait_rules(eb, ea, bb, ba)[sym]).all()


def test_training_smoke(tmp_path, synthetic_faces_cached):
    from fdin.models.pretrained import load_pretrained
    from train import relation

    out = tmp_path / "rel"
    code = relation.main(["--synthetic", "24", "--synthetic-faces", str(synthetic_faces_cached), "--epochs", "2",
                          "--batch-size", "8", "--threads", "1", "--out", str(out), "--quiet"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["val"]["balanced_accuracy"]) == set(TRAITS)
    assert metrics["expression_model"] == "weights/expression-fer2013" and metrics["backend"] == "offline"
    loaded = load_pretrained(out / "model")
    assert loaded.config["architecture"] == "siamese_relation_features"
    assert loaded.config["symmetric_traits"] == list(SYMMETRIC_TRAITS)
    assert loaded.config["synthetic_training_data"] is True
    assert "generated" in loaded.config["trained_on"] and "real pretrained models" in loaded.config["trained_on"]
    # the card shows no validation figure (it chose the settings) and names the held-out report instead
    assert loaded.config["metrics"] == {} and loaded.config["training"]["epochs"] == 2
    assert "python -m train.report_relations" in (out / "model" / "README.md").read_text()

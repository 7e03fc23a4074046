"""``python -m fdin relate`` and :class:`fdin.relate.RelationPredictor` on real package photos with the
shipped weights. Per-face expression, gender and age come from real models (their values are checked
against what a person sees); the relation head's trait labels were generated (only the pipeline and the
symmetry property are checked there)."""

from __future__ import annotations

import importlib.resources
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("torch")

from fdin.labels import EXPRESSION_LABELS, SYMMETRIC_TRAITS, TRAITS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
T1 = importlib.resources.files("insightface") / "data" / "images" / "t1.jpg"
TOM = importlib.resources.files("insightface") / "data" / "images" / "Tom_Hanks_54745.png"
#: t1.jpg's faces left to right, written down from the photo before looking at any output (as in
#: tests/test_fer2013.py): broad smiles happy, the others neutral; the two women on the left are women.
T1_EXPRESSIONS = ["neutral", "neutral", "happy", "happy", "neutral", "happy"]


@pytest.fixture(scope="module")
def predictor():
    from fdin.relate import RelationPredictor

    return RelationPredictor.from_pretrained(threads=1)


@pytest.fixture(scope="module")
def t1_rgb():
    return cv2.cvtColor(cv2.imread(str(T1)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def one_face_photo(tmp_path_factory) -> Path:
    tom = cv2.resize(cv2.imread(str(TOM)), (224, 224))
    path = tmp_path_factory.mktemp("one") / "one_face.png"
    cv2.imwrite(str(path), cv2.copyMakeBorder(tom, 112, 112, 112, 112, cv2.BORDER_REPLICATE))
    return path


def test_cli_group_photo_subprocess(tmp_path):
    out = tmp_path / "t1.json"
    proc = subprocess.run([sys.executable, "-m", "fdin", "relate", str(T1), "--json", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=240)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert len(result["faces"]) == 6
    assert len(result["pairs"]) == 15
    assert {tuple(p["faces"]) for p in result["pairs"]} == {(i, j) for i in range(6) for j in range(i + 1, 6)}
    face = result["faces"][0]
    assert list(face["expression"]["probs"]) == list(EXPRESSION_LABELS)
    assert abs(sum(face["expression"]["probs"].values()) - 1) < 1e-3
    assert face["expression"]["model"]["weights"] == "weights/expression-fer2013"
    assert [f["expression"]["label"] for f in result["faces"]] == T1_EXPRESSIONS
    assert set(face["gender"]) == {"label", "p_female"} and "years" in face["age"]
    assert set(face["pose"]) == {"yaw", "pitch", "roll"} and isinstance(face["appearance"], dict)
    for f in result["faces"]:  # gender and age shown are the appearance model's, nothing else
        assert f["gender"] == f["appearance"]["gender"] and f["age"] == f["appearance"]["age"]
    assert [f["gender"]["label"] for f in result["faces"][:2]] == ["female", "female"]
    assert set(result["pairs"][0]["traits"]) == set(TRAITS)
    assert all(0 <= p <= 1 for pair in result["pairs"] for p in pair["traits"].values())
    names = [m["name"] for m in result["models"]]
    assert any("FER2013" in n for n in names) and any("relation" in n for n in names)
    synthetic = {m["name"]: m.get("synthetic_training_data") for m in result["models"]}
    assert synthetic["FER2013 mini-Xception expression classifier"] is False
    assert synthetic["fdin Siamese relation-trait model"] is True
    assert all({"name", "weights", "trained_on", "licence"} <= set(m) for m in result["models"])
    notes = [line for line in proc.stderr.splitlines() if "generated" in line]
    assert len(notes) == 1


def test_cli_one_face_is_a_clear_error(one_face_photo, capsys):
    from fdin.cli import main

    code = main(["relate", str(one_face_photo)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: Found") and "at least two" in err[0]


def test_two_photos_use_largest_face_of_each(predictor, t1_rgb):
    h, w = t1_rgb.shape[:2]
    left, right = t1_rgb[:, : w // 2].copy(), t1_rgb[:, w // 2:].copy()
    result = predictor.relate(left, right)
    assert result.mode == "two_photos" and len(result.faces) == 2 and len(result.pairs) == 1
    assert set(result.timings_ms) == {"detect_landmarks_appearance", "expression", "relation"}
    assert result.canvas_size == (left.shape[1] + right.shape[1], h)
    assert [f.image for f in result.faces] == [0, 1]
    second = result.faces[1]
    assert np.allclose(second.canvas_bbox, second.bbox + np.array([left.shape[1], 0, left.shape[1], 0]))


def test_pairs_symmetric_in_predictor(predictor, t1_rgb):
    result = predictor.relate(t1_rgb)
    boxes = np.stack([f.canvas_bbox for f in result.faces])
    dim = predictor.relation.model.branch.embed_dim
    emb = np.random.default_rng(0).normal(size=(len(boxes), dim)).astype(np.float32)
    pairs = [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes))]
    ij, _ = predictor.pair_probabilities(emb, boxes, result.canvas_size, pairs)
    ji, _ = predictor.pair_probabilities(emb, boxes, result.canvas_size, [(j, i) for i, j in pairs])
    sym = np.array([t in SYMMETRIC_TRAITS for t in TRAITS])
    assert np.array_equal(ij[:, sym], ji[:, sym])
    json.dumps(result.to_json_dict())  # serialisable


def test_onnx_and_torch_predictors_agree(predictor, t1_rgb):
    from fdin.expression_fer import FerExpressionModel
    from fdin.relate import RelationPredictor

    assert predictor.uses_onnx
    torch_fer = FerExpressionModel.from_pretrained(use_onnx=False)
    torch_only = RelationPredictor(expression=torch_fer, relation=predictor.relation)
    assert not torch_only.uses_onnx
    a, b = predictor.relate(t1_rgb), torch_only.relate(t1_rgb)
    for fa, fb in zip(a.faces, b.faces, strict=True):
        assert max(abs(fa.expression.probs[k] - fb.expression.probs[k]) for k in fa.expression.probs) < 1e-3
    for pa, pb in zip(a.pairs, b.pairs, strict=True):
        assert max(abs(pa.traits[k] - pb.traits[k]) for k in pa.traits) < 1e-3


def test_the_relation_features_are_the_real_models_outputs(predictor, t1_rgb):
    """The branch input of each face is the FER2013 embedding + appearance + pose of that face."""
    from fdin.perception import detect_faces
    from fdin.relate import face_features

    faces = detect_faces(t1_rgb)
    estimates, embeddings = predictor.expression.predict_with_embeddings(t1_rgb, [f.bbox for f in faces])
    features = face_features(embeddings, faces)
    assert features.shape == (6, 133) and np.isfinite(features).all()
    assert [e.label for e in estimates] == T1_EXPRESSIONS
    np.testing.assert_allclose(features[:, 128], [f.appearance.p_female for f in faces], rtol=1e-6)


def test_an_image_branch_relation_model_is_refused():
    from types import SimpleNamespace

    from fdin.errors import WeightsIntegrityError
    from fdin.relate import RelationPredictor

    old = SimpleNamespace(config={"architecture": "siamese_relation_net"}, source="old-relation")
    with pytest.raises(WeightsIntegrityError, match="image crops"):
        RelationPredictor(expression=None, relation=old)

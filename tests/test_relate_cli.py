"""``python -m fdin relate`` and :class:`fdin.relate.RelationPredictor` on real package photos with the
shipped weights (trained on generated data: only the pipeline is checked, not the values)."""

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

from fdin.models.relation import SYMMETRIC_TRAITS, TRAITS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
T1 = importlib.resources.files("insightface") / "data" / "images" / "t1.jpg"
TOM = importlib.resources.files("insightface") / "data" / "images" / "Tom_Hanks_54745.png"


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
    assert set(face["expression"]) == {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
    assert abs(sum(face["expression"].values()) - 1) < 1e-3
    assert set(face["gender"]) == {"label", "p_female"} and "years" in face["age"]
    assert set(face["pose"]) == {"yaw", "pitch", "roll"} and isinstance(face["appearance"], dict)
    assert set(result["pairs"][0]["traits"]) == set(TRAITS)
    assert all(0 <= p <= 1 for pair in result["pairs"] for p in pair["traits"].values())
    names = [m["name"] for m in result["models"]]
    assert any("expression" in n for n in names) and any("relation" in n for n in names)
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
    assert result.canvas_size == (left.shape[1] + right.shape[1], h)
    assert [f.image for f in result.faces] == [0, 1]
    second = result.faces[1]
    assert np.allclose(second.canvas_bbox, second.bbox + np.array([left.shape[1], 0, left.shape[1], 0]))


def test_pairs_symmetric_in_predictor(predictor, t1_rgb):
    result = predictor.relate(t1_rgb)
    boxes = np.stack([f.canvas_bbox for f in result.faces])
    dim = predictor.relation.model.branch.heads["expression"].in_features
    emb = np.random.default_rng(0).normal(size=(len(boxes), dim)).astype(np.float32)
    pairs = [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes))]
    ij, _ = predictor.pair_probabilities(emb, boxes, result.canvas_size, pairs)
    ji, _ = predictor.pair_probabilities(emb, boxes, result.canvas_size, [(j, i) for i, j in pairs])
    sym = np.array([t in SYMMETRIC_TRAITS for t in TRAITS])
    assert np.array_equal(ij[:, sym], ji[:, sym])
    json.dumps(result.to_json_dict())  # serialisable


def test_onnx_and_torch_predictors_agree(predictor, t1_rgb):
    from fdin.relate import RelationPredictor

    assert predictor.uses_onnx
    torch_only = RelationPredictor(expression=predictor.expression, relation=predictor.relation, use_onnx=False)
    a, b = predictor.relate(t1_rgb), torch_only.relate(t1_rgb)
    for fa, fb in zip(a.faces, b.faces, strict=True):
        assert max(abs(fa.expression[k] - fb.expression[k]) for k in fa.expression) < 1e-3
    for pa, pb in zip(a.pairs, b.pairs, strict=True):
        assert max(abs(pa.traits[k] - pb.traits[k]) for k in pa.traits) < 1e-3

"""The JSON the CLI and the API return keeps its documented keys (README "Command line"). Results are
built from the typed classes (tests/fakes.py), so a renamed field or a dropped key fails here."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from fdin.analyze import TraitResult
from fdin.labels import EXPRESSION_LABELS, REGION_NAMES, SYMMETRIC_TRAITS, TRAITS, gender_label
from fdin.results import Estimates, FacesResult
from tests.fakes import FakeAnalyzer, FakeBackend, FakeRelator, fake_expression, fake_video

pytestmark = pytest.mark.fast

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
MODEL_KEYS = {"name", "weights", "trained_on", "licence"}
EXPRESSION_KEYS = {"label", "probs", "model"}


def _assert_expression(expression: dict) -> None:
    """The per-face ``expression`` of ``faces`` and ``relate``: the 7 classes in FER2013 order."""
    assert set(expression) == EXPRESSION_KEYS and list(expression["probs"]) == list(EXPRESSION_LABELS)
    assert expression["label"] == max(expression["probs"], key=expression["probs"].get)
    assert set(expression["model"]) >= MODEL_KEYS


def _documented(prefix: str) -> set[str]:
    """Backticked names in the README paragraph that starts with ``prefix``."""
    paragraph = README.split(prefix, 1)[1].split("\n\n", 1)[0].split("` JSON keys:", 1)[0]
    return set(re.findall(r"`([a-z_]+)`", paragraph))


def test_analyze_json_keys() -> None:
    data = json.loads(json.dumps(FakeAnalyzer().analyze(fake_video()).to_json_dict()))
    assert list(data) == ["frames_analyzed", "fps", "coverage", "face_track", "dynamics", "appearance",
                          "importance", "attribution", "top_relations", "models",
                          "timings_ms"] == list(TraitResult.JSON_KEYS)
    assert set(data["coverage"]) == {"start_s", "end_s", "whole_video", "notes"}
    assert set(data["attribution"]) == {"regions", "by_target", "units", "noise", "salient", "method"}
    assert data["attribution"]["units"] == {"gender": "p_female", "age": "years"}
    assert data["attribution"]["salient"]["gender"] == [
        {"regions": [REGION_NAMES[3], REGION_NAMES[7]], "effect": -0.4, "toward": "male"}]
    assert data["attribution"]["salient"]["age"] == []
    assert set(data["face_track"]) == {"found", "lost"}
    assert set(data["dynamics"]) == {"gender", "age"}
    assert set(data["dynamics"]["gender"]) == {"label", "p_female"} and set(data["dynamics"]["age"]) == {"years", "std"}
    assert set(data["appearance"]) == {"gender", "age", "frames", "model"}
    assert set(data["appearance"]["gender"]) == {"label", "p_female", "std"}
    assert set(data["importance"]) == {"regions", "matrix", "by_target", "normalisation"}
    assert set(data["importance"]["by_target"]) == {"gender", "age"} and data["importance"]["regions"] == list(REGION_NAMES)
    assert all(set(r) >= {"regions", "importance"} for r in data["top_relations"])
    assert all(set(m) >= MODEL_KEYS for m in data["models"])
    documented = _documented("`analyze` JSON keys:")
    nested = set(data) | set(data["coverage"]) | set(data["face_track"]) | set(data["dynamics"]["gender"]) \
        | set(data["dynamics"]["age"]) | set(data["appearance"]) | set(data["importance"]) | set(data["attribution"])
    assert documented <= nested, f"documented but missing: {documented - nested}"


def test_analyze_json_without_appearance_keeps_its_keys() -> None:
    assert Estimates.from_track_summary(None).to_json_dict() == {"gender": None, "age": None, "model": None}


def test_relate_json_keys() -> None:
    data = json.loads(json.dumps(FakeRelator().relate(np.zeros((80, 200, 3), np.uint8)).to_json_dict()))
    assert set(data) == {"mode", "canvas_size", "faces", "pairs", "models", "notes"}
    face = data["faces"][1]
    assert set(face) == {"index", "image", "bbox", "score", "expression", "gender", "age", "pose", "appearance"}
    assert set(face["gender"]) == {"label", "p_female"} and set(face["age"]) == {"years"}
    assert set(face["pose"]) == {"yaw", "pitch", "roll"}
    _assert_expression(face["expression"])
    assert set(face["appearance"]) == {"gender", "age", "model"}
    # gender/age come from the appearance model only: a face without one shows none
    without = data["faces"][0]
    assert without["appearance"] is None and without["gender"] is None and without["age"] is None
    assert set(data["pairs"][0]) == {"faces", "traits", "directed"} and set(data["pairs"][0]["traits"]) == set(TRAITS)
    assert set(data["pairs"][0]["directed"]) == set(TRAITS) - set(SYMMETRIC_TRAITS)
    assert all(set(m) >= MODEL_KEYS for m in data["models"])
    documented = _documented("`relate` JSON keys:")
    nested = set(data) | set(face) | set(data["pairs"][0])
    assert documented <= nested, f"documented but missing: {documented - nested}"


def test_faces_json_keys() -> None:
    backend = FakeBackend(faces=2)
    image = np.zeros((90, 160, 3), np.uint8)
    faces = backend.detect(image)
    data = json.loads(json.dumps(FacesResult(faces=faces, backend=backend.info(), width=160, height=90,
                                             expressions=[fake_expression(k) for k in range(len(faces))]
                                             ).to_json_dict()))
    assert set(data) == {"faces", "backend", "image"} and data["image"] == {"width": 160, "height": 90}
    assert set(data["faces"][0]) == {"bbox", "score", "landmarks", "keypoints", "pose", "appearance", "models",
                                     "fit_score", "expression"}
    assert set(data["faces"][0]["appearance"]) == {"gender", "age", "model"}
    _assert_expression(data["faces"][0]["expression"])
    documented = _documented("`faces` JSON keys:")
    assert documented <= set(data) | set(data["faces"][0]) | EXPRESSION_KEYS, documented
    without = FacesResult(faces=faces, backend=backend.info(), width=160, height=90).to_json_dict()
    assert [f["expression"] for f in without["faces"]] == [None, None]  # no expression model was run
    with pytest.raises(ValueError, match="expressions for"):
        FacesResult(faces=faces, backend={}, width=1, height=1, expressions=[fake_expression(0)])


@pytest.mark.parametrize(("p", "label"), [(0.0, "male"), (0.4999, "male"), (0.5, "female"), (1.0, "female")])
def test_one_gender_rule(p: float, label: str) -> None:
    assert gender_label(p) == label

"""FDIN's per-estimate attribution (exact leave-one-pair-out): the batched formula against a brute-force
forward pass per pair and reference, the ONNX export, the typed result and JSON, and every sentence and
drawing that names a pair (app summary, live panel, CLI) coming from it. Training-level checks (per-class
faithfulness, the no-signal control) run on trained models in ``tests/test_fdin_recipe.py``."""

from __future__ import annotations

import numpy as np
import pytest

from fdin.regions import NUM_REGIONS, REGION_NAMES, pairs_to_matrix
from fdin.results import Attribution

torch = pytest.importorskip("torch")


def _model(target: str, refs: int = 5, seed: int = 0):
    from fdin.models.registry import create_model

    torch.manual_seed(seed)
    model = create_model("fdin", target=target, dim=16, rel_dim=16, fast_correlation=True).eval()
    x_ref = 0.02 * torch.randn(refs, 60, NUM_REGIONS, 4).cumsum(1)
    with torch.no_grad():
        model.head.mlp[-1].weight.mul_(30)  # an untrained head is nearly constant: make the pairs matter
        model.interpreter.score[-1].weight.mul_(10)  # and the importance less uniform
        feats = model.interpreter.scores(*model._encode(x_ref))[0]
        model.set_attribution(feats + 0.5 * torch.randn_like(feats), 0.05)  # references unlike the inputs
    return model


def _x(b: int, seed: int = 1) -> torch.Tensor:
    return 0.02 * torch.randn(b, 60, NUM_REGIONS, 4, generator=torch.Generator().manual_seed(seed)).cumsum(1)


@pytest.mark.parametrize("target", ["gender", "age"])
def test_pair_effects_equal_one_forward_pass_per_removed_pair(target):
    """effect_p = estimate(x) − mean over references m of estimate(x with r_p := r_p(m)), the importance
    logit of pair p recomputed from the replaced feature, every other pair untouched."""
    model = _model(target)
    x = _x(3)
    with torch.inference_mode():
        out = model(x)
        r, logits = model.interpreter.scores(*model._encode(x))
        ref = model.pair_reference
        full = model.estimate(model.output_from_features(r, logits))
        np.testing.assert_allclose(full.numpy(), model.estimate(out["output"]).numpy(), atol=1e-6)
        brute = torch.zeros(3, r.shape[1])
        for p in range(r.shape[1]):
            removed = []
            for m in range(ref.shape[0]):
                r2, l2 = r.clone(), logits.clone()
                r2[:, p] = ref[m, p]
                l2[:, p] = model.interpreter.score(ref[m, p]).squeeze(-1)
                removed.append(model.estimate(model.output_from_features(r2, l2)))
            brute[:, p] = full - torch.stack(removed).mean(0)
    np.testing.assert_allclose(out["pair_effect"].numpy(), brute.numpy(), rtol=1e-4, atol=1e-5)
    assert float(out["pair_effect"].abs().max()) > 1e-2  # the pairs matter to this model
    # a pair whose feature already equals every reference has no effect
    with torch.inference_mode():
        model.set_attribution(r[:1].expand(4, -1, -1), 0.05)
        assert float(model.pair_effects(r[:1], logits[:1]).abs().max()) < 1e-5


def test_models_without_a_reference_have_no_attribution_and_old_weights_still_load(tmp_path):
    from fdin.models.pretrained import load_pretrained
    from fdin.models.registry import create_model
    from fdin.weights import ModelCard, save_pretrained

    plain = create_model("fdin", target="gender", dim=16, rel_dim=16).eval()
    assert not plain.has_attribution and "pair_effect" not in plain(_x(1))
    card = ModelCard(title="t", summary="t", trained_on="noise", synthetic_training_data=True)
    model = _model("gender", refs=4)
    args = {"target": "gender", "dim": 16, "rel_dim": 16, "fast_correlation": True, "attribution_noise": 0.05,
            "attribution_references": 4}
    loaded = load_pretrained(save_pretrained(model, tmp_path / "m", architecture="fdin", model_args=args,
                                             card=card)).model
    assert loaded.has_attribution and loaded.attribution_noise == 0.05
    with torch.inference_mode():
        np.testing.assert_allclose(loaded(_x(2))["pair_effect"].numpy(), model(_x(2))["pair_effect"].numpy(),
                                   atol=1e-6)


@pytest.mark.parametrize("target", ["gender", "age"])
def test_onnx_export_carries_the_attribution(tmp_path, monkeypatch, target):
    pytest.importorskip("onnxruntime")
    from fdin.models.fdin_onnx import load_fdin
    from fdin.weights import ModelCard, save_pretrained

    monkeypatch.setenv("FDIN_CACHE_DIR", str(tmp_path / "cache"))
    model = _model(target, refs=6)
    args = {"target": target, "dim": 16, "rel_dim": 16, "fast_correlation": True, "attribution_noise": 0.05,
            "attribution_references": 6, "dynamics": {"fps": 25.0, "length": 60, "neutral_frames": 3}}
    card = ModelCard(title="t", summary="t", trained_on="noise", synthetic_training_data=True)
    predictor = load_fdin(save_pretrained(model, tmp_path / "m", architecture="fdin", model_args=args, card=card))
    assert predictor.backend == "onnxruntime" and predictor.attribution_noise == 0.05
    x = _x(2).numpy()
    with torch.inference_mode():
        ref = model(torch.from_numpy(x))["pair_effect"].numpy()
    np.testing.assert_allclose(predictor(x)["pair_effect"], ref, atol=1e-4)


def _attribution(gender_effects: dict[int, float], noise: float = 0.1) -> Attribution:
    values = np.zeros(NUM_REGIONS * (NUM_REGIONS - 1) // 2)
    for p, v in gender_effects.items():
        values[p] = v
    return Attribution(tuple(REGION_NAMES), {"gender": pairs_to_matrix(values), "age": pairs_to_matrix(-30 * values)},
                       {"gender": noise, "age": 2.0}, method="test")


def test_salient_pairs_are_signed_sorted_and_empty_within_noise():
    a = _attribution({0: 0.3, 5: -0.5, 9: 0.05})
    top = a.salient("gender", k=3)
    assert [round(e.effect, 3) for e in top] == [-0.5, 0.3] and [e.toward for e in top] == ["male", "female"]
    assert a.salient("age", k=1)[0].toward == "older" and a.salient("age", k=1)[0].effect == pytest.approx(15.0)
    assert _attribution({0: 0.08}).salient("gender") == []
    data = a.to_json_dict()
    assert data["salient"]["gender"][0] == {"regions": list(top[0].regions), "effect": -0.5, "toward": "male"}
    assert np.allclose(np.asarray(data["by_target"]["gender"]), np.asarray(data["by_target"]["gender"]).T)


def test_app_and_cli_sentences_name_the_attributed_pair_or_none():
    from fdin.app.rendering import drawn_relations, relation_sentence
    from fdin.commands.analyze import relation_lines, top_pair
    from fdin.viz import pretty_name

    a = _attribution({5: -0.5})
    pair = a.salient("gender")[0].regions
    text = relation_sentence(a, "gender")
    assert " – ".join(pretty_name(r) for r in pair) in text and "50 points toward male" in text
    quiet = _attribution({5: 0.02})
    assert "No relation stands out" in relation_sentence(quiet, "gender")
    assert relation_sentence(None, "gender") is None

    class R:
        attribution = a

    class Q:
        attribution = quiet

    assert top_pair(R()) == " - ".join(pair) and top_pair(Q()) == "none stands out"
    assert drawn_relations(R())[0].regions == pair and drawn_relations(Q()) == []
    lines = relation_lines(Q())
    assert lines[0].startswith("gender: no relation stands out") and len(lines) == 2


def test_summary_and_keyframe_use_the_attribution_not_the_importance():
    from fdin import viz
    from fdin.app.rendering import summary_markdown
    from tests.fakes import FakeAnalyzer, fake_video

    result = FakeAnalyzer().analyze(fake_video())
    text = summary_markdown(result)
    top_importance = " – ".join(viz.pretty_name(r) for r in result.top_relations[0]["regions"])
    attributed = " – ".join(viz.pretty_name(r) for r in result.attribution.salient("gender")[0].regions)
    assert attributed in text and top_importance not in text and "toward male" in text
    # the face drawing: one line, between the attributed pair's regions (drawn lines are RELATION_COLOUR)
    image = np.full((200, 200, 3), 40, np.uint8)
    lms = result.landmarks[0] * 2
    with_pair = viz.draw_regions_and_relations(image, lms, REGION_NAMES, result.attribution.salient("gender"))
    without = viz.draw_regions_and_relations(image, lms, REGION_NAMES, [])
    assert (with_pair != without).any()


def test_shipped_weights_attribute_both_classes_and_nothing_without_signal():
    """The shipped weights carry the attribution through the analyzer (ONNX): generated smiles of both
    classes name the planted pair with opposite signs; a still face, white-noise landmarks and a smile
    with its frames shuffled name no pair (the no-signal control, on inputs not used to fit the noise)."""
    from fdin.analyze import DynamicsAnalyzer
    from fdin.regions import CANONICAL_FACE
    from fdin.synth import GENDER_PAIR, make_subject, smile_landmarks

    analyzer = DynamicsAnalyzer(decode_worker=False)
    fps = 25.0

    def attribution(landmarks):
        pred = analyzer.predict_landmarks(landmarks, np.arange(len(landmarks)) / fps)
        assert pred.attribution is not None
        return pred.attribution

    planted = tuple(sorted(GENDER_PAIR, key=REGION_NAMES.index))
    signs = {}
    for gender in ("female", "male"):
        hits = []
        for k in range(4):
            rng = np.random.default_rng([7, k])
            lm = smile_landmarks(rng, make_subject(rng, f"t{k}", gender=gender), fps=fps)
            top = attribution(lm).salient("gender", k=1)
            hits.append(bool(top) and tuple(top[0].regions) == planted)
            if top:
                signs.setdefault(gender, set()).add(top[0].toward)
        assert sum(hits) >= 3, (gender, hits)
    assert signs == {"female": {"female"}, "male": {"male"}}

    rng = np.random.default_rng(11)
    face = CANONICAL_FACE * 60 + 160
    still = np.repeat(face[None], 60, axis=0).astype(np.float32)
    white = (still + rng.normal(0, 0.5, still.shape)).astype(np.float32)
    smile = smile_landmarks(rng, make_subject(rng, "s", gender="female"), fps=fps)
    shuffled = smile[rng.permutation(len(smile))]
    for name, lm in (("still", still), ("white", white), ("shuffled", shuffled)):
        a = attribution(lm)
        assert a.salient("gender") == [] and a.salient("age") == [], name

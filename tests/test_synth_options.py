"""fdin.synth settings: the timing-offset age signal, the hard benchmark's options, dataset metadata."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fdin import synth
from fdin.dynamics import compute_dynamics
from fdin.regions import region_index


def _onset(landmarks: np.ndarray, region: str) -> float:
    """Seconds until a region's displacement magnitude first reaches 30 % of its peak."""
    traj = compute_dynamics(landmarks, fps=25.0).trajectories[:, region_index(region), 2]
    return float(np.argmax(traj >= 0.3 * traj.max()) / 25.0)


def _mean_lag(age: int, pair: tuple[str, str], options="easy", gender: str = "male", n: int = 12) -> float:
    rng = np.random.default_rng(age)
    lags = []
    for i in range(n):
        subject = synth.make_subject(rng, f"s{i}", gender=gender, age=age)
        lm = synth.smile_landmarks(rng, subject, fps=25.0, head_motion=False, noise_px=0.0, options=options)
        lags.append(_onset(lm, pair[1]) - _onset(lm, pair[0]))
    return float(np.mean(lags))


def test_age_is_a_timing_offset_of_the_planted_pair():
    young, old = _mean_lag(8, synth.AGE_PAIR), _mean_lag(76, synth.AGE_PAIR)
    assert old - young == pytest.approx(synth.AGE_LAG_S, abs=0.12)
    # the legacy setting plants no lag
    coupling = synth.SynthOptions(age_signal="coupling")
    assert abs(_mean_lag(76, synth.AGE_PAIR, coupling) - _mean_lag(8, synth.AGE_PAIR, coupling)) < 0.12


def test_hard_setting_plants_a_gender_timing_offset_on_the_second_pair():
    pair = synth.SECOND_PAIR["gender"]
    female = _mean_lag(40, pair, "hard", gender="female")
    male = _mean_lag(40, pair, "hard", gender="male")
    assert female - male == pytest.approx(0.25 * synth.HARD.second_pair_weight, abs=0.1)
    assert abs(_mean_lag(40, pair, "easy", gender="female") - _mean_lag(40, pair, "easy", gender="male")) < 0.1


def test_hard_subjects_have_persistent_idiosyncratic_timing():
    rng = np.random.default_rng(0)
    assert synth.make_subject(rng, "a").timing is None
    subject = synth.make_subject(rng, "b", timing_s=synth.HARD.subject_timing_s)
    assert subject.timing.shape == (len(synth.SMILE_PATTERN),) and subject.timing.std() > 0


def test_presets_and_metadata(tmp_path):
    assert synth.synth_options(None) == synth.EASY and synth.synth_options("hard") == synth.HARD
    with pytest.raises(ValueError, match="easy"):
        synth.synth_options("impossible")
    out = synth.write_dataset(tmp_path / "h", n_sequences=4, seed=1, options="hard")
    meta = json.loads((out / "synth.json").read_text())
    assert meta["options"] == synth.HARD.to_dict()
    assert meta["cue_region"] == synth.CUE_REGION and len(meta["distractor_pairs"]) == synth.HARD.distractors
    easy = json.loads((synth.write_dataset(tmp_path / "e", n_sequences=4, seed=1) / "synth.json").read_text())
    assert easy["options"] == synth.EASY.to_dict() and easy["second_pair"] is None

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


def _tremor_lag(landmarks: np.ndarray, leader: str, follower: str, max_lag: int = 10) -> tuple[int, float]:
    """(lag in frames at which ``follower``'s fast motion best matches ``leader``'s, that correlation):
    velocities of the displacement magnitude with the slow smile profile removed."""
    from scipy.ndimage import gaussian_filter1d

    traj = compute_dynamics(landmarks, fps=25.0).trajectories

    def fast(region: str) -> np.ndarray:
        x = traj[:, region_index(region), 2]
        v = np.diff(x - gaussian_filter1d(x, 3))
        return (v - v.mean()) / (v.std() + 1e-9)

    a, b = fast(leader), fast(follower)
    t = len(a)
    cc = [float(np.mean(a[max(0, -k):t - max(0, k)] * b[max(0, k):t + min(0, k)])) for k in range(-max_lag, max_lag + 1)]
    return int(np.argmax(cc)) - max_lag, max(cc)


def _hard_smiles(gender: str, n: int = 16) -> list[np.ndarray]:
    """The same subjects and draws in both classes (only the gender differs)."""
    out = []
    for i in range(n):
        rng = np.random.default_rng([3, i])
        out.append(synth.smile_landmarks(rng, synth.make_subject(rng, f"s{i}", gender=gender, age=40), fps=25.0,
                                         head_motion=False, noise_px=0.0, options="hard"))
    return out


def test_hard_setting_plants_a_pairwise_gender_timing_offset_on_the_second_pair():
    """The second gender pair is coupled in both classes and its follower lags only for "female"; a
    pair with any other region is not coupled, and neither region alone differs between the classes."""
    leader, follower = synth.SECOND_PAIR_GENDER_ORDER
    assert set(synth.SECOND_PAIR["gender"]) == {leader, follower}
    smiles = {g: _hard_smiles(g) for g in ("female", "male")}
    lags = {g: [_tremor_lag(lm, leader, follower) for lm in smiles[g]] for g in smiles}
    expected = synth.SECOND_GENDER_LAG_S * synth.HARD.second_pair_weight * 25.0  # frames
    shift = np.mean([x[0] for x in lags["female"]]) - np.mean([x[0] for x in lags["male"]])
    assert shift == pytest.approx(expected, abs=1.5)
    assert min(np.mean([x[1] for x in lags[g]]) for g in lags) > 0.7  # coupled in both classes
    for other in ("eye_left", "chin", "brow_right"):  # the cue lives in this pair only
        for a, b in ((leader, other), (other, follower)):
            assert max(np.mean([_tremor_lag(lm, a, b)[1] for lm in smiles[g]]) for g in smiles) < 0.6, (a, b)
    for region in (leader, follower):  # no onset is shifted: the same subjects start at the same times
        onsets = {g: np.mean([_onset(lm, region) for lm in smiles[g]]) for g in smiles}
        assert abs(onsets["female"] - onsets["male"]) < 0.06, (region, onsets)
    # the easy setting plants nothing there
    rng = np.random.default_rng(5)
    easy = [synth.smile_landmarks(rng, synth.make_subject(rng, f"e{i}", gender="female", age=40), fps=25.0,
                                  head_motion=False, noise_px=0.0) for i in range(8)]
    assert np.mean([_tremor_lag(lm, leader, follower)[1] for lm in easy]) < 0.6


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

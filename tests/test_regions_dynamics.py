"""Regions, dynamics normalisation, the synthetic generator and the piecewise-affine warp."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from fdin import dynamics, regions, synth
from fdin.errors import NoFaceError
from fdin.warp import warp_face


def test_regions_are_consistent_data():
    assert 9 <= regions.NUM_REGIONS <= 12
    seen: set[int] = set()
    for region in regions.REGIONS:
        assert region.colour.startswith("#") and len(region.colour) == 7
        assert all(0 <= i < 68 for i in region.landmarks)
        assert not seen & set(region.landmarks), f"{region.name} overlaps another region"
        seen |= set(region.landmarks)
    # subject-centric: the subject's right eye is iBUG 36-41 (image left)
    assert regions.REGION_LANDMARKS["eye_right"] == [36, 37, 38, 39, 40, 41]
    assert regions.CANONICAL_FACE[36:42, 0].mean() < regions.CANONICAL_FACE[42:48, 0].mean()


def test_pairs_matrix_and_top_relations():
    pairs = regions.region_pairs()
    assert pairs.shape == (66, 2) and (pairs[:, 0] < pairs[:, 1]).all()
    values = np.random.default_rng(0).random(66)
    values /= values.sum()
    m = regions.pairs_to_matrix(values)
    assert np.allclose(m, m.T) and np.allclose(np.diag(m), 0)
    assert np.isclose(np.triu(m).sum(), 1.0) and np.isclose(m.sum(), 2.0)
    top = regions.top_relations(m, k=3)
    best = int(np.argmax(values))
    assert top[0]["regions"] == [regions.REGION_NAMES[pairs[best, 0]], regions.REGION_NAMES[pairs[best, 1]]]


def _similarity(points, angle, scale, tx, ty):
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    return np.stack([c * points[..., 0] - s * points[..., 1] + tx, s * points[..., 0] + c * points[..., 1] + ty], -1)


def test_alignment_removes_head_motion():
    rng = np.random.default_rng(0)
    base = np.repeat(regions.CANONICAL_FACE[None].astype(np.float64), 20, axis=0)
    moved = np.stack([_similarity(base[t], rng.uniform(-0.3, 0.3), rng.uniform(40, 90), *rng.uniform(50, 300, 2))
                      for t in range(20)])
    aligned = dynamics.align_landmarks(moved)
    assert np.abs(aligned - regions.CANONICAL_FACE).max() < 1e-4


def test_resample_and_fit_length():
    ts = np.array([0.0, 0.1, 0.3, 0.4])  # a gap (lost frame) at 0.2
    vals = ts[:, None] * 10
    grid, out = dynamics.resample(vals, ts, fps=10)
    assert np.allclose(grid, [0, 0.1, 0.2, 0.3, 0.4]) and np.allclose(out[:, 0], [0, 1, 2, 3, 4], atol=1e-5)
    short, valid, _ = dynamics.fit_length(np.ones((30, 12, 4)), 100)
    assert short.shape == (100, 12, 4) and valid == 30
    long = np.zeros((300, 12, 4))
    long[200] = 1
    _cropped, valid, start = dynamics.fit_length(long, 100)
    assert valid == 100 and start <= 200 < start + 100


def test_compute_dynamics_on_synthetic_smile():
    lm = synth.smile_sequence(seed=1, fps=50, head_motion=True, noise_px=0.0)
    d = dynamics.compute_dynamics(lm, fps=50)
    assert d.model_input.shape == (100, regions.NUM_REGIONS, dynamics.NUM_CHANNELS)
    assert abs(d.time[1] - 0.04) < 1e-6
    assert np.abs(d.trajectories[:3]).max() < 0.02  # neutral start
    mouth = regions.region_index("mouth_corner_left")
    nose = regions.region_index("nose_base")
    assert d.trajectories[:, mouth, 2].max() > 5 * d.trajectories[:, nose, 2].max() > 0


def test_a_failed_fit_is_dropped_not_turned_into_motion():
    """Smiles (25-50 fps, head motion, landmark noise) have no outlier frame; one frame whose fit slid
    by a fifth of the inter-ocular distance is flagged and dropped, so the dynamics match the clean
    sequence's instead of carrying a velocity spike."""
    for seed in range(12):
        for fps in (25, 30, 50):
            lm = synth.smile_sequence(seed=seed, fps=fps)
            assert not dynamics.outlier_frames(dynamics.align_landmarks(lm)).any()
    lm = synth.smile_sequence(seed=3, fps=25)
    bad = lm.copy()
    iod = np.linalg.norm(lm[40, 42:48].mean(0) - lm[40, 36:42].mean(0))
    bad[40, 48:68] += np.float32([0.0, 0.8 * iod])  # the mouth fit slides down in one frame
    flagged = dynamics.outlier_frames(dynamics.align_landmarks(bad))
    assert flagged.sum() == 1 and flagged[40]
    clean, spiky = (dynamics.compute_dynamics(x, fps=25).model_input for x in (lm, bad))
    without_drop = dynamics.region_trajectories(dynamics.resample(
        dynamics.align_landmarks(bad), np.arange(len(bad)) / 25.0, 25.0)[1], 3)
    mouth = regions.region_index("lower_lip")
    assert np.abs(spiky - clean)[:, mouth].max() < 0.1 * np.abs(without_drop - dynamics.region_trajectories(
        dynamics.resample(dynamics.align_landmarks(lm), np.arange(len(lm)) / 25.0, 25.0)[1], 3))[:, mouth].max()


def test_short_track_is_refused():
    lm = synth.smile_sequence(seed=0)[:10]
    with pytest.raises(NoFaceError, match="at least"):
        dynamics.compute_dynamics(lm, fps=25)


def test_region_patches_shape():
    lm = synth.smile_sequence(seed=0)[:3]
    frames = np.full((3, 320, 320, 3), 128, np.uint8)
    patches = dynamics.region_patches(frames, lm, size=16)
    assert patches.shape == (3, regions.NUM_REGIONS, 16, 16, 3) and patches.dtype == np.uint8


def test_synthetic_relation_is_planted_only_in_the_pair():
    """Each region's own timing is identically distributed; only the pair's synchrony differs."""
    rng = np.random.default_rng(0)
    corr = {"female": [], "male": []}
    other = {"female": [], "male": []}
    a, b = (regions.region_index(n) for n in synth.GENDER_PAIR)
    for i in range(60):
        subject = synth.make_subject(rng, f"s{i}", gender="female" if i % 2 else "male")
        d = dynamics.compute_dynamics(synth.smile_landmarks(rng, subject, fps=25), fps=25)
        v = np.diff(d.trajectories[:, :, 2], axis=0)
        corr[subject.gender].append(np.corrcoef(v[:, a], v[:, b])[0, 1])
        other[subject.gender].append(v[:, a].std())
    assert np.mean(corr["female"]) > np.mean(corr["male"]) + 0.1
    assert abs(np.mean(other["female"]) - np.mean(other["male"])) < 0.3 * np.mean(other["male"])


def test_write_dataset_format(tmp_path):
    out = synth.write_dataset(tmp_path / "d", n_sequences=7, seed=3, sequences_per_subject=3)
    with open(out / "labels.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["id", "subject", "gender", "age"] and len(rows) == 7
    assert len({r["subject"] for r in rows}) == 3
    z = np.load(out / "sequences" / f"{rows[0]['id']}.npz", allow_pickle=False)
    assert z["landmarks"].dtype == np.float32 and z["landmarks"].shape[1:] == (68, 2) and float(z["fps"]) > 0


def test_warp_face_identity_and_motion():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    img[40:80, 60:100] = 255
    src = np.array([[60, 40], [100, 40], [100, 80], [60, 80], [80, 60]], np.float64)
    same = warp_face(img, src, src)
    assert same.shape == img.shape and same.dtype == np.uint8
    assert np.abs(same.astype(int) - img).mean() < 1.0
    moved = warp_face(img, src, src + np.array([5.0, 0.0]))
    assert (moved[45:75, 68:102] == 255).all(axis=-1).mean() > 0.9


def test_warp_face_is_pure_and_keeps_the_corners():
    """Behaviour, not speed (speed is in ``make bench``): the input is not modified, the same call gives
    the same output, and the image corners (fixed anchors) keep their values."""
    rng = np.random.default_rng(0)
    img = (rng.random((480, 640, 3)) * 255).astype(np.uint8)
    before = img.copy()
    lm = synth.smile_sequence(seed=0)
    src, dst = lm[0] + [160, 80], lm[40] + [160, 80]
    out = warp_face(img, src, dst)
    assert np.array_equal(img, before) and np.array_equal(out, warp_face(img, src, dst))
    assert out.shape == img.shape and out.dtype == np.uint8
    for y, x in ((0, 0), (0, 639), (479, 0), (479, 639)):
        assert np.array_equal(out[y, x], img[y, x]), (y, x)
    assert not np.array_equal(out, img), "the face moved"


def test_animate_photo_moves_the_mouth():
    from skimage.data import astronaut

    img = astronaut()[:256, 96:352].copy()
    lm = synth.smile_sequence(seed=0, fps=25)
    # place the template face over the photo's face region
    m = dynamics.similarity_transforms(lm[:1], reference=regions.CANONICAL_FACE * 70 + [128, 110])
    photo_lm = dynamics.apply_transforms(lm[:1], m)[0]
    frames = synth.animate_photo(img, photo_lm, lm[::5])
    assert frames.shape == (len(lm[::5]), 256, 256, 3) and frames.dtype == np.uint8
    assert np.abs(frames[0].astype(int) - img).mean() < 1.0
    assert np.abs(frames.astype(int) - img).reshape(len(frames), -1).mean(1).max() > 0.5

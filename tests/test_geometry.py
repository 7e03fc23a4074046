"""fdin.geometry: the one similarity transform (checked against Umeyama's SVD solution), IoU,
eye centres and inter-ocular distance."""

from __future__ import annotations

import numpy as np
import pytest

from fdin import geometry


def _umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(d0.T @ s0 / len(src))
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rot = u @ np.diag(d) @ vt
    scale = float((sig * d).sum() / ((s0 ** 2).sum() / len(src)))
    return np.concatenate([scale * rot, (mu_d - scale * rot @ mu_s)[:, None]], axis=1)


@pytest.mark.parametrize("seed", range(5))
def test_similarity_transform_matches_umeyama(seed: int) -> None:
    rng = np.random.default_rng(seed)
    src = rng.normal(size=(68, 2)) * 50 + 100
    dst = rng.normal(size=(68, 2))
    np.testing.assert_allclose(geometry.similarity_transform(src, dst), _umeyama(src, dst), atol=1e-9)


def test_similarity_transforms_recover_a_known_motion_per_frame() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(10, 2))
    angles, scales = np.array([0.1, -0.5, 2.0]), np.array([1.0, 2.5, 0.3])
    rot = np.stack([np.stack([np.cos(angles), -np.sin(angles)], -1), np.stack([np.sin(angles), np.cos(angles)], -1)], -2)
    frames = np.einsum("tij,kj->tki", rot * scales[:, None, None], ref) + np.array([[[3.0, -1.0]]])
    m = geometry.similarity_transforms(frames, ref)
    back = np.einsum("tij,tkj->tki", m[..., :2], frames) + m[:, None, :, 2]
    np.testing.assert_allclose(back, np.broadcast_to(ref, frames.shape), atol=1e-9)
    assert m.shape == (3, 2, 3)


def test_iou() -> None:
    a = np.array([0.0, 0.0, 10.0, 10.0])
    assert geometry.iou(a, a) == 1.0
    assert geometry.iou(a, np.array([5.0, 0.0, 15.0, 10.0])) == pytest.approx(50 / 150)
    assert geometry.iou(a, np.array([20.0, 20.0, 30.0, 30.0])) == 0.0
    assert geometry.iou(np.zeros(4), np.zeros(4)) == 0.0


def test_eyes_and_interocular_distance() -> None:
    lm = np.zeros((68, 2))
    lm[36:42] = [10.0, 5.0]
    lm[42:48] = [40.0, 9.0]
    assert geometry.interocular_distance(lm) == pytest.approx(np.hypot(30, 4))
    assert geometry.interocular_distance(np.stack([lm, lm * 2])).tolist() == pytest.approx([np.hypot(30, 4),
                                                                                           2 * np.hypot(30, 4)])
    kp = geometry.keypoints_from_landmarks68(lm)
    assert kp.shape == (5, 2) and kp[0].tolist() == [10.0, 5.0] and kp[1].tolist() == [40.0, 9.0]

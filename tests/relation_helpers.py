"""Helpers for the relation/expression tests: a small cached generated face set."""

from __future__ import annotations

N_FACES = 96


def ensure_synthetic_faces() -> int:
    """Generate (once; cached in FDIN_CACHE_DIR) N_FACES faces of fdin's generated set; returns N."""
    from train import synth_faces

    samples = synth_faces.face_samples(N_FACES, seed=0)
    assert len(samples["expression"]) == N_FACES
    return N_FACES

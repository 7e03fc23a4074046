"""Attribute propagation: fill missing attribute labels across datasets from a k-NN graph.

The IJCV paper (Zhang et al. 2018) says attribute propagation uses correspondences between
heterogeneous datasets to remove the need for complete labels; its equations were **not retrieved**.
What follows is **fdin's own reading**, a standard graph method:

1. Build a symmetric k-NN graph over the shared trunk embeddings of *all* training samples, pooled
   across datasets (cosine similarity of L2-normalised embeddings; weights
   ``w_ij = exp((cos_ij - 1) / sigma)``, kept if j is among i's k nearest or i among j's).
2. For a categorical attribute (expression, gender) run label spreading (Zhou, Bousquet, Lal,
   Weston & Schoelkopf, NIPS 2004): ``F <- alpha * S F + (1 - alpha) * Y`` with
   ``S = D^-1/2 W D^-1/2``, ``Y`` one-hot rows for labelled samples and zeros otherwise, iterated (alpha = 0.99,
   at most 300 steps). A missing label's pseudo-label is the normalised row of ``F``.
3. For a numeric attribute (age, each pose angle) spread both ``Y * value`` and the indicator ``Y``
   the same way; the pseudo-value is their ratio (a graph-smoothed neighbour average).
4. Confidence of a pseudo-label = ``reach * certainty``: ``reach`` is the spread indicator mass
   relative to the largest among unlabelled samples (how well connected the sample is to labelled
   ones); ``certainty`` is the top class probability (categorical) or 1 (numeric). Pseudo-labels
   below ``min_confidence`` are dropped.

Training alternates (see ``train/expression.py``): train a few epochs on the labels that exist,
embed every training sample, propagate, then keep training with confidence-weighted pseudo-label
losses for the missing heads. Labelled samples always keep their own labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Propagated:
    """Result for one attribute over N samples.

    ``values``: (N, C) class probabilities, or (N,) / (N, K) numbers; labelled rows hold their
    original label. ``confidence``: (N,) in [0, 1]; 1 for labelled rows, 0 where nothing reached.
    """

    values: np.ndarray
    confidence: np.ndarray


def knn_graph(embeddings: np.ndarray, *, k: int = 10, sigma: float = 0.1, chunk: int = 2048):
    """Symmetric sparse k-NN affinity (scipy CSR, N x N, zero diagonal) over cosine similarity."""
    from scipy import sparse

    x = np.asarray(embeddings, dtype=np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    n = len(x)
    k = int(min(k, n - 1))
    if k < 1:
        return sparse.csr_matrix((n, n), dtype=np.float64)
    rows, cols, vals = [], [], []
    for start in range(0, n, chunk):
        sim = x[start:start + chunk] @ x.T
        idx = np.arange(start, min(start + chunk, n))
        sim[np.arange(len(idx)), idx] = -np.inf
        nn_idx = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        nn_sim = np.take_along_axis(sim, nn_idx, axis=1)
        rows.append(np.repeat(idx, k))
        cols.append(nn_idx.ravel())
        vals.append(np.exp((nn_sim.ravel().astype(np.float64) - 1.0) / sigma))
    w = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    return w.maximum(w.T).tocsr()


def _spread(w, y: np.ndarray, *, alpha: float, iterations: int, tol: float = 1e-6) -> np.ndarray:
    deg = np.asarray(w.sum(axis=1)).ravel()
    inv = 1.0 / np.sqrt(np.maximum(deg, 1e-12))
    s = w.multiply(inv[:, None]).multiply(inv[None, :]).tocsr()
    f = y.copy()
    for _ in range(iterations):
        nxt = alpha * (s @ f) + (1.0 - alpha) * y
        if np.abs(nxt - f).max() < tol:
            return nxt
        f = nxt
    return f


def propagate_categorical(w, labels: np.ndarray, labelled: np.ndarray, *, num_classes: int,
                          alpha: float = 0.99, iterations: int = 300, min_confidence: float = 0.2) -> Propagated:
    """Label spreading of class labels.

    Args:
        w: (N, N) affinity from :func:`knn_graph`.
        labels: (N,) int class ids, or (N, C) distributions; ignored where ``labelled`` is False.
        labelled: (N,) bool.
    """
    labelled = np.asarray(labelled, dtype=bool)
    labels = np.asarray(labels)
    n = len(labelled)
    y = np.zeros((n, num_classes))
    if labels.ndim == 1:
        y[labelled, labels[labelled].astype(int)] = 1.0
    else:
        y[labelled] = labels[labelled]
    f = _spread(w, y, alpha=alpha, iterations=iterations)
    mass = f.sum(1)
    probs = np.where(mass[:, None] > 1e-12, f / np.maximum(mass[:, None], 1e-12), 1.0 / num_classes)
    confidence = _reach(mass, labelled) * probs.max(1)
    probs[labelled] = y[labelled]
    confidence[labelled] = 1.0
    confidence[confidence < min_confidence] = 0.0
    return Propagated(values=probs, confidence=confidence)


def propagate_numeric(w, values: np.ndarray, labelled: np.ndarray, *, alpha: float = 0.99,
                      iterations: int = 300, min_confidence: float = 0.2) -> Propagated:
    """Graph-smoothed neighbour average of numbers ((N,) or (N, K)) for unlabelled samples."""
    labelled = np.asarray(labelled, dtype=bool)
    v = np.asarray(values, dtype=np.float64)
    squeeze = v.ndim == 1
    v = v.reshape(len(v), -1)
    ind = labelled.astype(np.float64)[:, None]
    num = _spread(w, np.where(labelled[:, None], np.nan_to_num(v), 0.0), alpha=alpha, iterations=iterations)
    mass = _spread(w, ind, alpha=alpha, iterations=iterations)[:, 0]
    out = num / np.maximum(mass[:, None], 1e-12)
    out[labelled] = v[labelled]
    confidence = _reach(mass, labelled)
    confidence[labelled] = 1.0
    confidence[confidence < min_confidence] = 0.0
    out[confidence == 0] = np.nan
    return Propagated(values=out[:, 0] if squeeze else out, confidence=confidence)


def _reach(mass: np.ndarray, labelled: np.ndarray) -> np.ndarray:
    reach = np.zeros_like(mass)
    unl = ~labelled
    if unl.any():
        top = mass[unl].max()
        if top > 1e-12:
            reach[unl] = mass[unl] / top
    return np.clip(reach, 0.0, 1.0)


__all__ = ["Propagated", "knn_graph", "propagate_categorical", "propagate_numeric"]

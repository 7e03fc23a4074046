"""Named local facial regions over the iBUG-68 landmark scheme: the one place that defines them.

The model (which regions exist and in which order), the importance matrix (rows/columns follow
:data:`REGION_NAMES`), the plots (colours) and ``docs/fdin.md`` all read this module.

Left/right are **subject-centric**: ``eye_right`` is the subject's own right eye, which appears on
the image *left* for a subject facing the camera (iBUG points 36-41); see :mod:`fdin.perception.types`.

The layout (12 regions, 66 unordered pairs) is **fdin's own choice** [D]: the FDIN paper's region
count and boxes were not available to us (``docs/fdin.md``). The nose bridge (27-30) and the eye
corners are used to *align* faces (:data:`STABLE_LANDMARKS`), so the bridge is not a region of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fdin.geometry import interocular_distance


@dataclass(frozen=True)
class Region:
    """One named region: iBUG-68 landmark indices and a display colour (hex RGB)."""

    name: str
    landmarks: tuple[int, ...]
    colour: str
    label: str


REGIONS: tuple[Region, ...] = (
    Region("brow_right", (17, 18, 19, 20, 21), "#1f77b4", "right brow"),
    Region("brow_left", (22, 23, 24, 25, 26), "#aec7e8", "left brow"),
    Region("eye_right", (36, 37, 38, 39, 40, 41), "#ff7f0e", "right eye"),
    Region("eye_left", (42, 43, 44, 45, 46, 47), "#ffbb78", "left eye"),
    Region("nose_base", (31, 32, 33, 34, 35), "#2ca02c", "nose base"),
    Region("cheek_right", (1, 2, 3, 4, 5), "#d62728", "right cheek/jaw side"),
    Region("cheek_left", (11, 12, 13, 14, 15), "#ff9896", "left cheek/jaw side"),
    Region("mouth_corner_right", (48, 49, 59, 60), "#9467bd", "right mouth corner"),
    Region("mouth_corner_left", (53, 54, 55, 64), "#c5b0d5", "left mouth corner"),
    Region("upper_lip", (50, 51, 52, 61, 62, 63), "#8c564b", "upper lip"),
    Region("lower_lip", (56, 57, 58, 65, 66, 67), "#e377c2", "lower lip"),
    Region("chin", (6, 7, 8, 9, 10), "#7f7f7f", "chin"),
)
REGION_NAMES: tuple[str, ...] = tuple(r.name for r in REGIONS)
NUM_REGIONS = len(REGIONS)
REGION_LANDMARKS: dict[str, list[int]] = {r.name: list(r.landmarks) for r in REGIONS}
REGION_COLOURS: dict[str, str] = {r.name: r.colour for r in REGIONS}

#: Landmarks that an expression barely moves: nose bridge, nose tip, the four eye corners. Faces are
#: aligned (similarity transform) on these only, so a smile does not pull the alignment.
STABLE_LANDMARKS: tuple[int, ...] = (27, 28, 29, 30, 33, 36, 39, 42, 45)

#: 2-D projection of insightface's ``meanshape_68`` (MIT-licensed python package), iBUG-68 order,
#: y down, roughly unit face width. Rescaled below into :data:`CANONICAL_FACE`.
_MEAN_SHAPE_68 = np.array([
    (-0.627, -0.293), (-0.600, -0.123), (-0.571, 0.051), (-0.534, 0.213), (-0.480, 0.351), (-0.396, 0.447),
    (-0.299, 0.511), (-0.188, 0.554), (0.001, 0.584), (0.191, 0.552), (0.327, 0.490), (0.440, 0.402),
    (0.507, 0.312), (0.541, 0.205), (0.574, 0.046), (0.599, -0.146), (0.628, -0.308), (-0.475, -0.438),
    (-0.417, -0.472), (-0.348, -0.484), (-0.261, -0.476), (-0.167, -0.458), (0.123, -0.459), (0.206, -0.480),
    (0.287, -0.490), (0.362, -0.477), (0.426, -0.450), (-0.008, -0.323), (-0.008, -0.256), (-0.008, -0.199),
    (-0.007, -0.143), (-0.145, 0.033), (-0.084, 0.031), (-0.005, 0.040), (0.063, 0.046), (0.134, 0.022),
    (-0.387, -0.313), (-0.317, -0.350), (-0.234, -0.355), (-0.155, -0.315), (-0.231, -0.284), (-0.318, -0.285),
    (0.139, -0.310), (0.219, -0.353), (0.302, -0.350), (0.377, -0.314), (0.297, -0.287), (0.215, -0.291),
    (-0.201, 0.237), (-0.137, 0.186), (-0.076, 0.151), (-0.003, 0.169), (0.064, 0.151), (0.126, 0.179),
    (0.218, 0.239), (0.133, 0.284), (0.068, 0.297), (-0.000, 0.300), (-0.069, 0.297), (-0.143, 0.274),
    (-0.178, 0.231), (-0.074, 0.215), (-0.003, 0.214), (0.060, 0.211), (0.167, 0.231), (0.060, 0.224),
    (-0.001, 0.226), (-0.075, 0.231),
], dtype=np.float64)


def _canonical_face() -> np.ndarray:
    centre = _MEAN_SHAPE_68[list(STABLE_LANDMARKS)].mean(0)
    return ((_MEAN_SHAPE_68 - centre) / interocular_distance(_MEAN_SHAPE_68)).astype(np.float32)


#: (68, 2) float32 canonical face: origin at the centroid of :data:`STABLE_LANDMARKS`, unit
#: inter-ocular distance (between eye centres), x to the image right, y down. Displacements in
#: :mod:`fdin.dynamics` are in these units ("IOD").
CANONICAL_FACE: np.ndarray = _canonical_face()
CANONICAL_FACE.setflags(write=False)


def region_index(name: str) -> int:
    """Row/column of ``name`` in every importance matrix."""
    try:
        return REGION_NAMES.index(name)
    except ValueError:
        raise KeyError(f"unknown region {name!r}; known: {', '.join(REGION_NAMES)}") from None


def region_pairs(num_regions: int = NUM_REGIONS) -> np.ndarray:
    """(P, 2) int64 unordered pairs ``(i, j)`` with ``i < j`` in row-major order, P = R(R-1)/2.

    This is the order of the pair axis of the model's relational features and pair importances.
    """
    i, j = np.triu_indices(num_regions, k=1)
    return np.stack([i, j], axis=1).astype(np.int64)


def pairs_to_matrix(pair_values: np.ndarray, num_regions: int = NUM_REGIONS) -> np.ndarray:
    """Pair values (..., P) → symmetric (..., R, R) matrix with a zero diagonal.

    With pair importances that sum to 1 over the P unordered pairs, the upper triangle sums to 1
    and the **full matrix sums to 2** (each pair appears twice). fdin uses this convention in JSON,
    plots and ``importance.json``.
    """
    pair_values = np.asarray(pair_values)
    pairs = region_pairs(num_regions)
    out = np.zeros((*pair_values.shape[:-1], num_regions, num_regions), dtype=np.float64)
    out[..., pairs[:, 0], pairs[:, 1]] = pair_values
    out[..., pairs[:, 1], pairs[:, 0]] = pair_values
    return out


def top_relations(matrix: np.ndarray, k: int = 5, names: tuple[str, ...] = REGION_NAMES) -> list[dict]:
    """The ``k`` highest-importance unordered pairs of an (R, R) matrix, best first.

    Returns ``[{"regions": [a, b], "importance": float}, ...]`` (importance = the pair's share of 1).
    """
    pairs = region_pairs(len(names))
    values = np.asarray(matrix)[pairs[:, 0], pairs[:, 1]]
    order = np.argsort(-values, kind="stable")[:k]
    return [{"regions": [names[pairs[p, 0]], names[pairs[p, 1]]], "importance": round(float(values[p]), 4)}
            for p in order]


__all__ = [
    "CANONICAL_FACE", "NUM_REGIONS", "REGIONS", "REGION_COLOURS", "REGION_LANDMARKS", "REGION_NAMES",
    "STABLE_LANDMARKS", "Region", "pairs_to_matrix", "region_index", "region_pairs", "top_relations",
]

"""fdin's generated face-image set: real package photos, landmark-driven synthetic expressions.

**It only exercises the pipeline.** Everything here is fdin's own design [D]: no image, label or rule
comes from Zhang et al. or their datasets, and models trained on it say nothing meaningful about
real people's expressions or relations.

Sources: the real face photos that ship inside installed packages (insightface ``t1.jpg``: 6 faces;
insightface ``Tom_Hanks_54745.png``; scikit-image ``astronaut``); one identity per source face.
Their 68 landmarks, pose and (when the backend has one) apparent gender/age come from
:mod:`fdin.perception`.

Faces (:func:`face_samples`): each sample takes one source face, moves its landmarks along one of
seven hand-written expression patterns (:data:`EXPRESSION_PATTERNS`, in inter-ocular-distance units,
scaled by :data:`EXPRESSION_GAIN` times a random intensity in [0.8, 1.3]) plus random face-shape
variation (feature groups rescaled and shifted, :func:`_shape_jitter`) and a small random "yaw
nudge" (central landmarks shifted sideways), and warps the local image with
:func:`fdin.warp.warp_face`. Labels: expression = the pattern;
gender / age = the source face's appearance estimate; yaw / pitch = the source pose (yaw plus the
nudge); roll = the angle of the deformed landmarks' eye line (clockwise positive). To
exercise missing labels and attribute propagation, each training sample belongs to one of three
pseudo-datasets (:data:`PSEUDO_DATASETS`) that hide some heads; validation samples keep all labels.

Pairs (:func:`pair_samples`): two generated faces of different identities pasted on a small canvas
at random positions and sizes; the 8 trait labels follow the documented rules in
:func:`trait_rules` over the two expressions and the spatial relation.

Splits are identity-disjoint: :data:`VAL_IDENTITIES` are held out (records are built by
``train.datasets.synth_face_records``); relation pairs also hold out :data:`RELATION_TEST_IDENTITIES`
for a test split (``train.datasets.synth_relation_records``). Results are cached as ``.npz``
under ``FDIN_CACHE_DIR`` (default: the system temp dir), keyed by the parameters and a fingerprint
of the detected source landmarks (so a change in the perception layer regenerates them); nothing
generated is committed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fdin.alignment import keypoints_from_landmarks68
from fdin.labels import EXPRESSION_LABELS, TRAITS

log = logging.getLogger(__name__)

GENERATOR_VERSION = 4
#: global strength of the expression patterns (1.0 = the values in EXPRESSION_PATTERNS).
EXPRESSION_GAIN = 1.6
#: pseudo-dataset name -> heads it labels (training split only).
PSEUDO_DATASETS = {
    "synth_expression": ("expression", "pose"),   # like FER2013 / ExpW (+ pose)
    "synth_attributes": ("gender", "age", "pose"),  # like UTKFace / AFLW
    "synth_full": ("expression", "gender", "age", "pose"),
}
PSEUDO_DATASET_SHARES = (0.45, 0.45, 0.10)
#: identities held out for validation (identity-disjoint split).
VAL_IDENTITIES = ("t1_1", "t1_4")
#: identities the relation model never trains or chooses settings on: only the test split of
#: ``python -m train.report_relations`` contains them (one apparent man, one apparent woman; neither was
#: ever used to tune anything, unlike :data:`VAL_IDENTITIES`, on which the relation epochs were chosen).
RELATION_TEST_IDENTITIES = ("t1_3", "astronaut")
#: share of the *training* identities' samples held out as a second, seen-identity validation set.
SEEN_VAL_SHARE = 0.15

# iBUG-68 left/right mirror pairs (image-left index, image-right index).
_MIRROR = [(17, 26), (18, 25), (19, 24), (20, 23), (21, 22), (36, 45), (37, 44), (38, 43), (39, 42),
           (40, 47), (41, 46), (48, 54), (49, 53), (50, 52), (59, 55), (58, 56), (60, 64), (61, 63),
           (67, 65), (31, 35), (32, 34), *[(i, 16 - i) for i in range(8)]]


def _pattern(sym: dict[int, tuple[float, float]], centre: dict[int, tuple[float, float]] | None = None) -> np.ndarray:
    """Build a (68, 2) displacement from image-left-side entries ``{idx: (outward, down)}`` mirrored to the
    right side, plus midline entries ``{idx: (0, down)}``. Units: inter-ocular distance."""
    d = np.zeros((68, 2))
    mirror = dict(_MIRROR)
    for left, (out, down) in sym.items():
        d[left] = (-out, down)
        d[mirror[left]] = (out, down)
    for idx, (dx, dy) in (centre or {}).items():
        d[idx] = (dx, dy)
    return d


#: fdin's hand-written expression deformations (68, 2) in IOD units; x outward, y down.
EXPRESSION_PATTERNS = {
    "angry": _pattern({17: (0, .04), 18: (0, .06), 19: (-.02, .09), 20: (-.04, .11), 21: (-.05, .12),
                       37: (0, .03), 38: (0, .03), 48: (-.03, 0), 49: (-.01, .02), 50: (0, .04),
                       60: (-.02, .01), 61: (0, .04), 59: (0, -.04), 58: (0, -.05), 67: (0, -.04)},
                      {51: (0, .04), 62: (0, .04), 57: (0, -.05), 66: (0, -.04)}),
    "disgust": _pattern({21: (-.02, .05), 20: (0, .04), 31: (0, -.05), 32: (0, -.05), 49: (0, -.07),
                         50: (0, -.09), 61: (0, -.08), 48: (0, .03), 59: (0, -.02)},
                        {33: (0, -.05), 51: (0, -.1), 62: (0, -.09), 30: (0, -.03), 29: (0, -.02)}),
    "fear": _pattern({17: (0, -.08), 18: (0, -.1), 19: (-.01, -.12), 20: (-.03, -.13), 21: (-.04, -.13),
                      37: (0, -.05), 38: (0, -.05), 48: (.1, .04), 49: (.05, .02), 60: (.08, .03),
                      59: (.06, .08), 58: (.03, .1), 67: (.04, .08), 4: (0, .04), 5: (0, .05), 6: (0, .06),
                      7: (0, .07)},
                     {57: (0, .11), 66: (0, .09), 8: (0, .08)}),
    "happy": _pattern({48: (.08, -.1), 49: (.04, -.05), 60: (.06, -.07), 59: (.05, -.03), 40: (0, -.03),
                       41: (0, -.03), 67: (.02, -.01), 1: (.02, 0), 2: (.03, -.02), 3: (.03, -.02)},
                      {57: (0, .04), 66: (0, .04), 62: (0, -.01)}),
    "sad": _pattern({21: (0, -.1), 20: (0, -.05), 17: (0, .05), 18: (0, .03), 48: (.01, .09), 60: (.01, .07),
                     59: (0, .05), 49: (0, .02)},
                    {57: (0, -.03), 66: (0, -.01)}),
    "surprise": _pattern({17: (0, -.13), 18: (0, -.15), 19: (0, -.16), 20: (0, -.15), 21: (0, -.14),
                          37: (0, -.05), 38: (0, -.05), 48: (-.05, .1), 60: (-.04, .1), 49: (-.02, .02),
                          59: (-.02, .26), 58: (0, .28), 67: (0, .26), 4: (0, .1), 5: (0, .13), 6: (0, .2),
                          7: (0, .27)},
                         {57: (0, .3), 66: (0, .28), 8: (0, .3), 51: (0, -.02)}),
    "neutral": np.zeros((68, 2)),
}
_CENTRAL = [*range(27, 36), *range(48, 68), 6, 7, 8, 9, 10]


@dataclass(frozen=True)
class SourceFace:
    identity: str
    image: np.ndarray  # (H, W, 3) uint8 RGB local region around the face
    landmarks: np.ndarray  # (68, 2) in ``image``
    pose: tuple[float, float, float]
    p_female: float | None
    age: float | None


def cache_dir() -> Path:
    from fdin.config import cache_dir as shared_cache_dir

    return shared_cache_dir("synth_faces")


def source_photos() -> list[tuple[str, np.ndarray]]:
    """The package photos: ``[(name, (H, W, 3) uint8 RGB)]``."""
    import importlib.resources

    import cv2
    import skimage.data

    root = importlib.resources.files("insightface") / "data" / "images"
    photos = []
    for name in ("t1.jpg", "Tom_Hanks_54745.png"):
        bgr = cv2.imread(str(root / name), cv2.IMREAD_COLOR)
        if bgr is not None:
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            if name.startswith("Tom"):  # a tight 112x112 crop: pad so detectors see context
                rgb = cv2.copyMakeBorder(cv2.resize(rgb, (224, 224)), 112, 112, 112, 112, cv2.BORDER_REPLICATE)
            photos.append((name.split(".")[0].split("_")[0].lower(), rgb))
    photos.append(("astronaut", np.ascontiguousarray(skimage.data.astronaut()[:, :, :3])))
    return photos


def _local_region(image: np.ndarray, landmarks: np.ndarray, iod_px: float = 34.0,
                  size: int = 144) -> tuple[np.ndarray, np.ndarray]:
    """Resample the face so its inter-ocular distance is ``iod_px``, centred in a size x size region."""
    import cv2

    eyes = keypoints_from_landmarks68(landmarks)[:2]
    iod = float(np.linalg.norm(eyes[1] - eyes[0]))
    scale = iod_px / max(iod, 1e-6)
    centre = landmarks.mean(0)
    matrix = np.array([[scale, 0, size / 2 - scale * centre[0]], [0, scale, size / 2 - scale * centre[1] + 4]])
    region = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    return region, landmarks @ matrix[:, :2].T + matrix[:, 2]


def source_faces(*, backend: str | None = None) -> list[SourceFace]:
    """Detect every source face once (the perception layer) and keep a local region around each."""
    from fdin.perception import detect_faces

    faces_out = []
    for name, photo in source_photos():
        faces = detect_faces(photo, backend=backend)
        if name != "t1":
            faces = sorted(faces, key=lambda f: f.area, reverse=True)[:1]
        else:
            faces = sorted(faces, key=lambda f: float(f.bbox[0]))
        for i, face in enumerate(faces):
            region, lm = _local_region(photo, np.asarray(face.landmarks, np.float64))
            app = face.appearance
            faces_out.append(SourceFace(
                identity=f"{name}_{i}" if name == "t1" else name, image=region, landmarks=lm,
                pose=(float(face.pose.yaw), float(face.pose.pitch), float(face.pose.roll)),
                p_female=None if app is None else float(app.p_female > 0.5),
                age=None if app is None else float(app.age_years)))
    if len(faces_out) < 3:
        raise RuntimeError(f"only {len(faces_out)} source faces were found in the package photos")
    return faces_out


_GROUPS = {"brows": list(range(17, 27)), "eyes": list(range(36, 48)), "nose": list(range(27, 36)),
           "mouth": list(range(48, 68)), "jaw": list(range(0, 17))}


def _shape_jitter(lm: np.ndarray, rot: np.ndarray, iod: float, rng: np.random.Generator) -> np.ndarray:
    """Random per-sample face-shape variation (68, 2) in canonical IOD units: each feature group is
    scaled about its own centre (width and height independently, +-12 %) and the brows and mouth
    shift vertically (+-0.05 IOD), so identities do not fix the geometry an expression is read from."""
    canon = (lm - lm.mean(0)) @ rot / max(iod, 1e-6)  # upright, IOD units
    disp = np.zeros_like(canon)
    for name, idx in _GROUPS.items():
        centre = canon[idx].mean(0)
        scale = rng.uniform(0.88, 1.12, 2)
        disp[idx] += (canon[idx] - centre) * (scale - 1)
        if name in ("brows", "mouth"):
            disp[idx, 1] += rng.uniform(-0.05, 0.05)
    return disp


def deform(source: SourceFace, expression: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """One synthetic face: ``(image (144,144,3) uint8, landmarks (68,2), yaw_nudge_degrees)``."""
    from fdin.warp import warp_face

    lm = source.landmarks
    eyes = keypoints_from_landmarks68(lm)[:2]
    axis = eyes[1] - eyes[0]
    iod = float(np.linalg.norm(axis))
    c, s = axis / max(iod, 1e-6)
    rot = np.array([[c, -s], [s, c]])  # canonical (upright) -> image
    intensity = EXPRESSION_GAIN * rng.uniform(0.8, 1.3) if expression != "neutral" else 0.0
    disp = EXPRESSION_PATTERNS[expression] * intensity
    nudge = rng.uniform(-0.12, 0.12)
    disp = disp.copy() + _shape_jitter(lm, rot, iod, rng)
    disp[_CENTRAL, 0] += nudge
    dst = lm + (disp * iod) @ rot.T
    image = warp_face(source.image, lm, dst)
    return image, dst, float(nudge * 150.0)  # fdin's rough mapping: 0.1 IOD sideways ~ 15 degrees of yaw


def _cache_key(kind: str, **params) -> Path:
    text = json.dumps({"v": GENERATOR_VERSION, "kind": kind, **params}, sort_keys=True)
    return cache_dir() / f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:16]}.npz"


def face_samples(n: int, *, seed: int = 0, backend: str | None = None, sources: list[SourceFace] | None = None) -> dict:
    """Generate (or load from cache) ``n`` synthetic faces.

    Returns a dict of arrays: ``images`` (n, 144, 144, 3) uint8, ``landmarks`` (n, 68, 2),
    ``expression`` (n,) int, ``p_female`` (n,) (NaN unknown), ``age`` (n,), ``pose`` (n, 3),
    ``identity`` (n,) str.
    """
    sources = sources or source_faces(backend=backend)
    fingerprint = hashlib.sha256(b"".join(np.round(s.landmarks, 1).astype(np.float32).tobytes()
                                          + s.identity.encode() for s in sources)).hexdigest()[:16]
    path = _cache_key("faces", n=n, seed=seed, sources=fingerprint)
    if path.is_file():
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    rng = np.random.default_rng(seed)
    out: dict[str, list] = {k: [] for k in ("images", "landmarks", "expression", "p_female", "age", "pose", "identity")}
    for i in range(n):
        src = sources[i % len(sources)]
        expr = int(rng.integers(len(EXPRESSION_LABELS)))
        image, lm, yaw = deform(src, EXPRESSION_LABELS[expr], rng)
        out["images"].append(image)
        out["landmarks"].append(lm.astype(np.float32))
        out["expression"].append(expr)
        out["p_female"].append(np.nan if src.p_female is None else src.p_female)
        out["age"].append(np.nan if src.age is None else src.age)
        eyes = keypoints_from_landmarks68(lm)[:2]
        roll = float(np.degrees(np.arctan2(eyes[1, 1] - eyes[0, 1], eyes[1, 0] - eyes[0, 0])))
        out["pose"].append([src.pose[0] + yaw, src.pose[1], roll])
        out["identity"].append(src.identity)
    arrays = {k: np.asarray(v) for k, v in out.items()}
    arrays["pose"] = arrays["pose"].astype(np.float32)
    np.savez(path, **arrays)
    return arrays


# --- pairs ---------------------------------------------------------------------------------------
_VALENCE = {"happy": 1.0, "surprise": 0.3, "neutral": 0.0, "sad": -0.6, "fear": -0.6, "disgust": -0.8, "angry": -1.0}
_AROUSAL = {"happy": 0.6, "surprise": 1.0, "fear": 0.9, "angry": 0.9, "disgust": 0.5, "sad": 0.2, "neutral": 0.0}


def trait_rules(expr_a: str, expr_b: str, box_a: np.ndarray, box_b: np.ndarray) -> np.ndarray:
    """fdin's generated-data trait rules -> (8,) float 0/1 in :data:`TRAITS` order.

    ``close``: centre distance < 1.6 x the mean face width. ``v``/``ar``: fdin's valence/arousal per
    expression (:data:`_VALENCE`, :data:`_AROUSAL`). Symmetric rules for the symmetric traits:
    competitive: someone looks angry/disgusted; trusting: nobody is negative (v >= 0); warm: close
    and v_a + v_b >= 1; friendly: v_a + v_b >= 1; attached: close and nobody below v = -0.5;
    demonstrative: ar_a + ar_b >= 1.2; assured: nobody sad or afraid. Directed rule, "a dominates
    b": b looks afraid or sad while a does not, or a's face is >= 1.3x wider and a is not afraid/sad.
    """
    va, vb = _VALENCE[expr_a], _VALENCE[expr_b]
    wa, wb = box_a[2] - box_a[0], box_b[2] - box_b[0]
    dist = np.linalg.norm((box_a[:2] + box_a[2:]) / 2 - (box_b[:2] + box_b[2:]) / 2)
    close = dist < 1.6 * (wa + wb) / 2
    low = {"fear", "sad"}
    rules = {
        "dominant": (expr_b in low and expr_a not in low) or (wa >= 1.3 * wb and expr_a not in low),
        "competitive": bool({expr_a, expr_b} & {"angry", "disgust"}),
        "trusting": min(va, vb) >= 0,
        "warm": close and va + vb >= 1,
        "friendly": va + vb >= 1,
        "attached": close and min(va, vb) > -0.5,
        "demonstrative": _AROUSAL[expr_a] + _AROUSAL[expr_b] >= 1.2,
        "assured": not ({expr_a, expr_b} & low),
    }
    return np.array([float(rules[t]) for t in TRAITS])


def _paste(canvas: np.ndarray, face: np.ndarray, landmarks: np.ndarray, x: float, y: float,
           scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Paste a face region (feathered) with its top-left at (x, y), scaled; returns box + landmarks."""
    import cv2

    size = round(face.shape[0] * scale)
    patch = cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    alpha = np.clip(np.minimum.reduce([xx, 1 - xx, yy, 1 - yy]) * 6, 0, 1)[:, :, None]
    x0, y0 = int(x), int(y)
    h, w = canvas.shape[:2]
    x1, y1 = min(x0 + size, w), min(y0 + size, h)
    sub = canvas[y0:y1, x0:x1].astype(np.float32)
    a = alpha[: y1 - y0, : x1 - x0]
    canvas[y0:y1, x0:x1] = (a * patch[: y1 - y0, : x1 - x0] + (1 - a) * sub).astype(np.uint8)
    lm = landmarks * scale + np.array([x0, y0])
    lo, hi = lm.min(0), lm.max(0)
    pad = (hi - lo) * np.array([0.08, 0.12])
    box = np.array([lo[0] - pad[0], lo[1] - pad[1] * 2.0, hi[0] + pad[0], hi[1] + pad[1] * 0.5])
    return box, lm


def pair_samples(n: int, *, seed: int = 0, faces: dict | None = None, canvas_wh: tuple[int, int] = (320, 200)) -> dict:
    """``n`` generated pairs on ``canvas_wh`` canvases, built from :func:`face_samples` output.

    Returns arrays: ``images`` (n, H, W, 3), ``box_a``/``box_b`` (n, 4), ``landmarks_a``/``_b`` (n, 68, 2),
    ``labels`` (n, 8), ``identity_a``/``_b`` (n,) str, ``expression_a``/``_b`` (n,).
    """
    rng = np.random.default_rng(seed + 7)
    w, h = canvas_wh
    if faces is None:
        faces = face_samples(max(2 * n, 64), seed=seed)
    ident = faces["identity"]
    out: dict[str, list] = {k: [] for k in ("images", "box_a", "box_b", "landmarks_a", "landmarks_b", "labels",
                                            "identity_a", "identity_b", "expression_a", "expression_b")}
    for _ in range(n):
        ia = int(rng.integers(len(ident)))
        others = np.flatnonzero(ident != ident[ia])
        ib = int(rng.choice(others))
        base = rng.integers(70, 150, 3)
        canvas = np.clip(base[None, None, :] + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
        sa, sb = rng.uniform(0.7, 1.3), rng.uniform(0.7, 1.3)
        size_a, size_b = 144 * sa, 144 * sb
        gap = rng.uniform(-0.15, 0.9) * (size_a + size_b) / 2
        total = size_a + size_b + gap
        left = rng.uniform(0, max(w - total, 1))
        xa = left
        xb = min(left + size_a + gap, w - size_b)
        ya, yb = rng.uniform(0, max(h - size_a, 1)), rng.uniform(0, max(h - size_b, 1))
        box_a, lm_a = _paste(canvas, faces["images"][ia], faces["landmarks"][ia], xa, ya, sa)
        box_b, lm_b = _paste(canvas, faces["images"][ib], faces["landmarks"][ib], xb, yb, sb)
        ea, eb = (EXPRESSION_LABELS[int(faces["expression"][k])] for k in (ia, ib))
        if rng.random() < 0.5:  # random order: the model must not rely on a being the left face
            box_a, box_b, lm_a, lm_b, ea, eb, ia, ib = box_b, box_a, lm_b, lm_a, eb, ea, ib, ia
        out["images"].append(canvas)
        out["box_a"].append(box_a)
        out["box_b"].append(box_b)
        out["landmarks_a"].append(lm_a)
        out["landmarks_b"].append(lm_b)
        out["labels"].append(trait_rules(ea, eb, box_a, box_b))
        out["identity_a"].append(str(ident[ia]))
        out["identity_b"].append(str(ident[ib]))
        out["expression_a"].append(EXPRESSION_LABELS.index(ea))
        out["expression_b"].append(EXPRESSION_LABELS.index(eb))
    return {k: np.asarray(v) for k, v in out.items()}


__all__ = [
    "EXPRESSION_PATTERNS",
    "PSEUDO_DATASETS",
    "RELATION_TEST_IDENTITIES",
    "VAL_IDENTITIES",
    "SourceFace",
    "deform",
    "face_samples",
    "pair_samples",
    "source_faces",
    "source_photos",
    "trait_rules",
]

"""Dataset adapters (real datasets in their documented layouts) and torch datasets for training.

Every adapter returns a list of :class:`FaceRecord` (or :class:`PairRecord`) with labels mapped to
fdin's conventions: expression ids in ExpW/FER2013 order (0 angry, 1 disgust, 2 fear, 3 happy,
4 sad, 5 surprise, 6 neutral), gender as P(female) (1.0 female, 0.0 male), age in years, pose in
degrees; ``None`` where a dataset has no such label (the heads it does not label are masked).
The layouts are documented in ``docs/relations.md`` and in each adapter's docstring.

Crops: records with keypoints are aligned by similarity transform (:mod:`fdin.alignment`); records
with only a face box use template points placed in the box; records with neither (pre-cropped
datasets: FER2013, RAF-DB aligned, UTKFace aligned&cropped) use the whole image as the box.
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from fdin.alignment import AlignmentSpec, align_face, box_to_keypoints, keypoints_from_landmarks68
from fdin.labels import EXPRESSION_LABELS, TRAITS
from train import synth_faces as synth


@dataclass
class FaceRecord:
    """One face with whatever labels its dataset has.

    ``image``: path to an RGB/grey image file, or None when ``pixels`` holds the image.
    ``pixels``: (H, W, 3) uint8 RGB in memory (FER2013 rows, the generated set).
    ``bbox``: (4,) xyxy pixels or None (whole image). ``keypoints``: (5, 2) insightface order or None.
    ``identity``: who this is, for identity-disjoint splits (None: unknown, split per record).
    ``split``: the dataset's own split ("train", "val", "test") or None.
    ``meta``: extras; the generated set keeps labels it hides under ``meta["hidden"]`` (to measure
    attribute propagation), never used for training.
    """

    dataset: str
    image: str | None = None
    pixels: np.ndarray | None = None
    bbox: np.ndarray | None = None
    keypoints: np.ndarray | None = None
    expression: int | None = None
    gender: float | None = None
    age: float | None = None
    pose: np.ndarray | None = None
    identity: str | None = None
    split: str | None = None
    meta: dict = field(default_factory=dict)


@dataclass
class PairRecord:
    """Two faces in one image with up to 8 trait labels (NaN = not labelled)."""

    dataset: str
    image: str | None
    box_a: np.ndarray
    box_b: np.ndarray
    labels: np.ndarray  # (8,) float in TRAITS order: 1, 0 or NaN
    pixels: np.ndarray | None = None
    keypoints_a: np.ndarray | None = None
    keypoints_b: np.ndarray | None = None
    identity: str | None = None
    split: str | None = None
    meta: dict = field(default_factory=dict)


def load_rgb(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB from an image file (grey files are expanded)."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


# --- adapters ------------------------------------------------------------------------------------
_FER_SPLITS = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}


def read_fer2013(csv_path: str | Path) -> list[FaceRecord]:
    """FER2013 ``fer2013.csv``: header ``emotion,pixels,Usage``; ``pixels`` = 2304 space-separated grey
    values (48x48, row-major); ``emotion`` 0-6 already in fdin's order; ``Usage`` Training /
    PublicTest / PrivateTest -> train / val / test. No identities: splits are per image."""
    records = []
    with open(csv_path, newline="") as handle:
        for row in csv.DictReader(handle):
            grey = np.array(row["pixels"].split(), dtype=np.uint8).reshape(48, 48)
            records.append(FaceRecord(dataset="fer2013", pixels=np.repeat(grey[:, :, None], 3, axis=2),
                                      expression=int(row["emotion"]), split=_FER_SPLITS.get(row.get("Usage", ""))))
    return records


def read_expw(root: str | Path) -> list[FaceRecord]:
    """ExpW: ``<root>/label/label.lst`` lines ``image_name face_id top left right bottom confidence label``
    (label 0-6 in fdin's order) and images in ``<root>/image/origin/<image_name>``. Box = (left, top,
    right, bottom). No identities are given: faces of the same image are grouped (identity =
    image name) so one image never straddles train and validation."""
    root = Path(root)
    records = []
    for line in (root / "label" / "label.lst").read_text().splitlines():
        parts = line.split()
        if len(parts) != 8:
            continue
        name, _face_id, top, left, right, bottom, _conf, label = parts
        records.append(FaceRecord(
            dataset="expw", image=str(root / "image" / "origin" / name),
            bbox=np.array([float(left), float(top), float(right), float(bottom)]),
            expression=int(label), identity=f"expw:{name}"))
    return records


#: RAF-DB basic labels (1 surprise, 2 fear, 3 disgust, 4 happiness, 5 sadness, 6 anger, 7 neutral).
RAF_TO_FDIN = {1: 5, 2: 2, 3: 1, 4: 3, 5: 4, 6: 0, 7: 6}


def read_rafdb_basic(root: str | Path) -> list[FaceRecord]:
    """RAF-DB basic: ``<root>/EmoLabel/list_patition_label.txt`` (sic) lines ``train_00001.jpg 5`` and
    aligned 100x100 images ``<root>/Image/aligned/train_00001_aligned.jpg``. Labels 1-7 are mapped by
    :data:`RAF_TO_FDIN`; the name prefix gives the split (train / test). No identities."""
    root = Path(root)
    records = []
    for line in (root / "EmoLabel" / "list_patition_label.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) != 2:
            continue
        name, label = parts
        stem = Path(name).stem
        records.append(FaceRecord(
            dataset="rafdb", image=str(root / "Image" / "aligned" / f"{stem}_aligned.jpg"),
            expression=RAF_TO_FDIN[int(label)], split="train" if name.startswith("train") else "test"))
    return records


#: AffectNet expression ids (0 neutral, 1 happy, 2 sad, 3 surprise, 4 fear, 5 disgust, 6 anger,
#: 7 contempt, 8 none, 9 uncertain, 10 no-face); 7-10 have no fdin class and are skipped.
AFFECTNET_TO_FDIN = {0: 6, 1: 3, 2: 4, 3: 5, 4: 2, 5: 1, 6: 0}


def read_affectnet(csv_path: str | Path, image_root: str | Path, *, split: str | None = None) -> list[FaceRecord]:
    """AffectNet ``training.csv`` / ``validation.csv``: header ``subDirectory_filePath,face_x,face_y,
    face_width,face_height,facial_landmarks,expression,valence,arousal``; images under
    ``<image_root>/<subDirectory_filePath>``; ``facial_landmarks`` = 68 ``x;y`` pairs joined by ``;``.
    Expression mapped by :data:`AFFECTNET_TO_FDIN`. ``split`` defaults from the file name."""
    image_root = Path(image_root)
    if split is None:
        split = "val" if "valid" in Path(csv_path).name.lower() else "train"
    records = []
    with open(csv_path, newline="") as handle:
        for row in csv.DictReader(handle):
            label = int(float(row["expression"]))
            if label not in AFFECTNET_TO_FDIN:
                continue
            x, y = float(row["face_x"]), float(row["face_y"])
            w, h = float(row["face_width"]), float(row["face_height"])
            keypoints = None
            values = [v for v in row.get("facial_landmarks", "").split(";") if v.strip()]
            if len(values) == 136:
                keypoints = keypoints_from_landmarks68(np.array(values, dtype=np.float64).reshape(68, 2))
            records.append(FaceRecord(
                dataset="affectnet", image=str(image_root / row["subDirectory_filePath"]),
                bbox=np.array([x, y, x + w, y + h]), keypoints=keypoints,
                expression=AFFECTNET_TO_FDIN[label], split=split))
    return records


_UTK_RE = re.compile(r"^(\d+)_([01])_(\d+)_(\d+)")


def read_utkface(root: str | Path) -> list[FaceRecord]:
    """UTKFace (aligned & cropped, 200x200): files ``<age>_<gender>_<race>_<datetime>.jpg.chip.jpg`` or
    ``...jpg`` directly in ``root``; gender 0 male, 1 female; age in years. Names that do not match
    (a few in the public release) are skipped. No identities, no official split."""
    records = []
    for path in sorted(Path(root).iterdir()):
        match = _UTK_RE.match(path.name)
        if not match or path.suffix.lower() not in {".jpg", ".jpeg", ".png"}:
            continue
        records.append(FaceRecord(dataset="utkface", image=str(path), age=float(match.group(1)),
                                  gender=float(match.group(2) == "1")))
    return records


def read_relation_csv(csv_path: str | Path, image_root: str | Path | None = None) -> list[PairRecord]:
    """Interpersonal Relation Dataset in fdin's CSV layout (convert the original release to it):
    header ``image,ax0,ay0,ax1,ay1,bx0,by0,bx1,by1,<8 trait columns>[,split]``; boxes xyxy pixels; trait
    columns named as in :data:`fdin.models.relation.TRAITS` holding 1 / 0 (empty or -1: unlabelled);
    ``image`` relative to ``image_root`` (default: the CSV's folder). Identity = image name."""
    csv_path = Path(csv_path)
    image_root = Path(image_root) if image_root else csv_path.parent
    records = []
    with open(csv_path, newline="") as handle:
        for row in csv.DictReader(handle):
            labels = np.full(len(TRAITS), np.nan)
            for i, trait in enumerate(TRAITS):
                value = (row.get(trait) or "").strip()
                if value not in ("", "-1"):
                    labels[i] = float(value)
            records.append(PairRecord(
                dataset="relation", image=str(image_root / row["image"]),
                box_a=np.array([float(row[k]) for k in ("ax0", "ay0", "ax1", "ay1")]),
                box_b=np.array([float(row[k]) for k in ("bx0", "by0", "bx1", "by1")]),
                labels=labels, identity=f"relation:{row['image']}", split=(row.get("split") or None)))
    return records


ADAPTERS = {"fer2013": read_fer2013, "expw": read_expw, "rafdb": read_rafdb_basic,
            "affectnet": read_affectnet, "utkface": read_utkface}


# --- splits --------------------------------------------------------------------------------------
def identity_split(records: list, *, val_fraction: float = 0.2, seed: int = 0) -> tuple[list, list]:
    """Identity-disjoint train/val split: a record's group is its ``identity`` (or itself when None);
    a group goes to validation when a salted hash of its name falls below ``val_fraction``. Records
    with a dataset split keep it (``test``/``val`` -> validation)."""
    train, val = [], []
    for i, record in enumerate(records):
        if record.split in ("val", "test"):
            val.append(record)
            continue
        if record.split == "train":
            train.append(record)
            continue
        key = record.identity or f"{record.dataset}:{i}"
        digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
        (val if int.from_bytes(digest[:4], "big") / 2**32 < val_fraction else train).append(record)
    return train, val


# --- crops ---------------------------------------------------------------------------------------
def record_image(record: FaceRecord | PairRecord) -> np.ndarray:
    return record.pixels if record.pixels is not None else load_rgb(record.image)


def face_crop(image: np.ndarray, keypoints: np.ndarray | None, bbox: np.ndarray | None,
              spec: AlignmentSpec) -> tuple[np.ndarray, float]:
    """Aligned crop + rotation removed, from keypoints, else a box, else the whole image."""
    if keypoints is None:
        if bbox is None:
            bbox = np.array([0.0, 0.0, image.shape[1], image.shape[0]])
        keypoints = box_to_keypoints(bbox)
    return align_face(image, keypoints, spec)


def jitter_keypoints(keypoints: np.ndarray, rng: np.random.Generator, *, rotate: float = 8.0,
                     scale: float = 0.06, shift: float = 0.04) -> np.ndarray:
    """Random similarity perturbation of keypoints (training augmentation of the crop)."""
    centre = keypoints.mean(0)
    size = np.linalg.norm(keypoints[1] - keypoints[0]) + 1e-6
    angle = np.radians(rng.uniform(-rotate, rotate))
    s = 1.0 + rng.uniform(-scale, scale)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) * s
    return (keypoints - centre) @ rot.T + centre + rng.uniform(-shift, shift, 2) * size * 2.5


def flip_crop(crop: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(crop[:, ::-1])


def colour_jitter(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = crop.astype(np.float32) * rng.uniform(0.75, 1.25) + rng.uniform(-20, 20)
    out = out * rng.uniform(0.9, 1.1, 3)[None, None, :]
    if rng.random() < 0.15:
        out = out.mean(2, keepdims=True).repeat(3, 2)
    return np.clip(out, 0, 255).astype(np.uint8)


class FaceAttributeDataset:
    """Torch-style dataset: ``(crop (3,S,S) float [0,1], targets dict, weights dict)`` per item.

    ``pseudo`` (optional, set by propagation): per head, ``(values, confidence)`` arrays over the
    records; used only where the record has no label of its own, weighted by confidence times
    ``pseudo_weight``.
    """

    def __init__(self, records: list[FaceRecord], spec: AlignmentSpec, *, augment: bool = False,
                 seed: int = 0, pseudo_weight: float = 0.5) -> None:
        self.records, self.spec, self.augment = records, spec, augment
        self.seed, self.pseudo_weight = seed, pseudo_weight
        self.pseudo: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.records)

    def crop(self, index: int, rng: np.random.Generator | None = None) -> tuple[np.ndarray, float, bool]:
        record = self.records[index]
        image = record_image(record)
        keypoints = record.keypoints
        if keypoints is None:
            bbox = record.bbox if record.bbox is not None else np.array([0.0, 0.0, image.shape[1], image.shape[0]])
            keypoints = box_to_keypoints(bbox)
        flipped = False
        if rng is not None:
            keypoints = jitter_keypoints(keypoints, rng)
        crop, roll_removed = align_face(image, keypoints, self.spec)
        if rng is not None:
            crop = colour_jitter(crop, rng)
            if rng.random() < 0.5:
                crop, flipped = flip_crop(crop), True
        return crop, roll_removed, flipped

    def __getitem__(self, index: int):
        import torch

        rng = np.random.default_rng((self.seed, self.epoch, index)) if self.augment else None
        record = self.records[index]
        crop, roll_removed, flipped = self.crop(index, rng)
        n_cls = len(EXPRESSION_LABELS)
        targets = {"expression": np.zeros(n_cls, np.float32), "gender": np.float32(0), "age": np.float32(0),
                   "pose": np.full(3, np.nan, np.float32)}
        weights = {k: np.float32(0) for k in targets}
        if record.expression is not None:
            targets["expression"][record.expression] = 1.0
            weights["expression"] = np.float32(1)
        if record.gender is not None:
            targets["gender"], weights["gender"] = np.float32(record.gender), np.float32(1)
        if record.age is not None:
            targets["age"], weights["age"] = np.float32(record.age), np.float32(1)
        if record.pose is not None:
            pose = np.asarray(record.pose, np.float32).copy()
            pose[2] = pose[2] - roll_removed  # residual roll in the aligned crop
            targets["pose"], weights["pose"] = pose, np.float32(1)
        for head, (values, confidence) in self.pseudo.items():
            if weights[head] == 0 and confidence[index] > 0:
                value = values[index]
                if head in ("expression", "pose"):
                    targets[head] = np.asarray(value, np.float32)
                else:
                    targets[head] = np.float32(value)
                weights[head] = np.float32(confidence[index] * self.pseudo_weight)
        if flipped:
            targets["pose"] = targets["pose"] * np.array([-1, 1, -1], np.float32)
        image = torch.from_numpy(crop.transpose(2, 0, 1).copy()).float().div_(255.0)
        return (image, {k: torch.as_tensor(v) for k, v in targets.items()},
                {k: torch.as_tensor(v) for k, v in weights.items()})


class PairDataset:
    """``(crop_a, crop_b, box_a, box_b, image_wh, labels (8,), label_mask (8,))`` per pair.

    Augmentation: keypoint jitter and colour per face; with probability 0.5 the whole scene is
    mirrored (boxes mirrored, faces flipped; face a stays face a).
    """

    def __init__(self, records: list[PairRecord], spec: AlignmentSpec, *, augment: bool = False,
                 seed: int = 0) -> None:
        self.records, self.spec, self.augment, self.seed = records, spec, augment, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int):
        import torch

        rng = np.random.default_rng((self.seed, self.epoch, index)) if self.augment else None
        record = self.records[index]
        image = record_image(record)
        h, w = image.shape[:2]
        crops, boxes = [], []
        for box, kp in ((record.box_a, record.keypoints_a), (record.box_b, record.keypoints_b)):
            keypoints = kp if kp is not None else box_to_keypoints(box)
            if rng is not None:
                keypoints = jitter_keypoints(keypoints, rng)
            crop, _ = align_face(image, keypoints, self.spec)
            if rng is not None:
                crop = colour_jitter(crop, rng)
            crops.append(crop)
            boxes.append(np.asarray(box, np.float32))
        labels = record.labels.astype(np.float32)
        # mirroring the scene keeps who is who (a stays a), so every label, "dominant" included, holds
        if rng is not None and rng.random() < 0.5:
            crops = [flip_crop(c) for c in crops]
            boxes = [np.array([w - b[2], b[1], w - b[0], b[3]], np.float32) for b in boxes]
        mask = np.isfinite(labels)
        tensor = [torch.from_numpy(c.transpose(2, 0, 1).copy()).float().div_(255.0) for c in crops]
        return (tensor[0], tensor[1], torch.from_numpy(boxes[0]), torch.from_numpy(boxes[1]),
                torch.tensor([w, h], dtype=torch.float32), torch.from_numpy(np.nan_to_num(labels)),
                torch.from_numpy(mask.astype(np.float32)))


# --- the generated set (train.synth_faces) -------------------------------------------------------
def synth_face_records(samples: dict, *, seed: int = 0) -> tuple[list, list]:
    """``(train, val)`` :class:`FaceRecord` lists. Validation = every sample of the held-out identities
    (identity-disjoint, the headline numbers) plus :data:`train.synth_faces.SEEN_VAL_SHARE` of the
    other identities' samples (``meta["seen_identity"]``, reported separately). Training samples are
    spread over :data:`train.synth_faces.PSEUDO_DATASETS`, each hiding the heads it does not label."""
    rng = np.random.default_rng(seed + 1)
    names = list(synth.PSEUDO_DATASETS)
    train, val = [], []
    for i in range(len(samples["expression"])):
        identity = str(samples["identity"][i])
        unseen = identity in synth.VAL_IDENTITIES
        seen_val = not unseen and rng.random() < synth.SEEN_VAL_SHARE
        is_val = unseen or seen_val
        dataset = "synth_full" if is_val else names[int(rng.choice(3, p=synth.PSEUDO_DATASET_SHARES))]
        heads = synth.PSEUDO_DATASETS[dataset]
        p_female, age = float(samples["p_female"][i]), float(samples["age"][i])
        record = FaceRecord(
            dataset=dataset, pixels=samples["images"][i],
            keypoints=keypoints_from_landmarks68(samples["landmarks"][i]),
            expression=int(samples["expression"][i]) if "expression" in heads else None,
            gender=p_female if "gender" in heads and np.isfinite(p_female) else None,
            age=age if "age" in heads and np.isfinite(age) else None,
            pose=samples["pose"][i] if "pose" in heads else None,
            identity=identity, split="val" if is_val else "train",
            meta={"seen_identity": seen_val, "hidden": {h: v for h, v in (("expression", int(samples["expression"][i])),
                                                ("gender", p_female), ("age", age))
                                if h not in heads and np.isfinite(v)}})
        (val if is_val else train).append(record)
    return train, val



#: The relation splits of fdin's generated pairs, in order.
RELATION_SPLITS = ("train", "val", "test")


def relation_split_of(identities: tuple[str, ...] | list[str] | set[str]) -> str | None:
    """The split of a generated pair from its faces' identities: ``"test"`` when a face is one of
    :data:`train.synth_faces.RELATION_TEST_IDENTITIES`, ``"val"`` when one is in
    :data:`train.synth_faces.VAL_IDENTITIES`, ``"train"`` when neither; None when it mixes a
    validation and a test identity (such a pair belongs to no split)."""
    ids = set(identities)
    val, test = ids & set(synth.VAL_IDENTITIES), ids & set(synth.RELATION_TEST_IDENTITIES)
    if val and test:
        return None
    return "test" if test else "val" if val else "train"


def synth_relation_records(n_pairs: int, *, split: str, seed: int, n_faces: int,
                           sources: list | None = None) -> list[PairRecord]:
    """``n_pairs`` generated pairs of one identity-disjoint relation split.

    Each split draws from its own face pool (:func:`train.synth_faces.face_samples` with ``seed``, so a
    generated face never appears in two splits): ``train`` pairs two training identities (neither
    held out); ``val`` / ``test`` pairs have at least one face of a validation / test identity, the
    other face being of that set or a training identity (:func:`relation_split_of`). ``meta`` keeps
    the generated expressions (``expression_a``/``_b``, indices into :data:`EXPRESSION_LABELS`)."""
    if split not in RELATION_SPLITS:
        raise ValueError(f"split must be one of {RELATION_SPLITS}, got {split!r}")
    sources = sources if sources is not None else synth.source_faces()
    held = {"train": set(), "val": set(synth.VAL_IDENTITIES), "test": set(synth.RELATION_TEST_IDENTITIES)}
    others = set(synth.VAL_IDENTITIES) | set(synth.RELATION_TEST_IDENTITIES)
    pool = [s for s in sources if s.identity in held[split] or s.identity not in others]
    if len({s.identity for s in pool}) < 2 or (split != "train" and not {s.identity for s in pool} & held[split]):
        raise RuntimeError(f"too few source identities for the relation {split} split: "
                           f"{sorted(s.identity for s in pool)}")
    faces = synth.face_samples(n_faces, seed=seed, sources=pool)
    records: list[PairRecord] = []
    attempt = 0
    while len(records) < n_pairs:
        pairs = synth.pair_samples(2 * (n_pairs - len(records)) + 8, seed=seed * 7919 + attempt, faces=faces)
        for i in range(len(pairs["labels"])):
            ids = (str(pairs["identity_a"][i]), str(pairs["identity_b"][i]))
            if len(records) == n_pairs or relation_split_of(ids) != split:
                continue
            records.append(PairRecord(
                dataset="synth_pairs", image=None, pixels=pairs["images"][i], box_a=pairs["box_a"][i],
                box_b=pairs["box_b"][i], labels=pairs["labels"][i].astype(np.float64),
                keypoints_a=keypoints_from_landmarks68(pairs["landmarks_a"][i]),
                keypoints_b=keypoints_from_landmarks68(pairs["landmarks_b"][i]),
                identity="+".join(sorted(set(ids))), split=split,
                meta={"identities": ids, "expression_a": int(pairs["expression_a"][i]),
                      "expression_b": int(pairs["expression_b"][i])}))
        attempt += 1
    return records


def with_split(records: list, split: str) -> list:
    return [replace(r, split=split) for r in records]


__all__ = ["ADAPTERS", "RELATION_SPLITS", "FaceAttributeDataset", "FaceRecord", "PairDataset", "PairRecord", "face_crop",
           "identity_split", "load_rgb", "read_affectnet", "read_expw", "read_fer2013", "read_rafdb_basic",
           "read_relation_csv", "read_utkface", "relation_split_of", "synth_face_records",
           "synth_relation_records"]

"""Every dataset adapter on a tiny generated fixture written in its documented layout."""

from __future__ import annotations

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from fdin.alignment import AlignmentSpec  # noqa: E402
from fdin.models.relation import TRAITS  # noqa: E402
from train import datasets as ds  # noqa: E402

SPEC = AlignmentSpec(size=48)


def _write_image(path, h=80, w=80, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), img)
    return path


def _check_face_dataset(records, heads):
    data = ds.FaceAttributeDataset(records, SPEC, augment=True)
    image, targets, weights = data[0]
    assert tuple(image.shape) == (3, 48, 48) and 0.0 <= float(image.min()) <= float(image.max()) <= 1.0
    for head in ("expression", "gender", "age", "pose"):
        assert (float(weights[head]) > 0) == (head in heads), head
    return targets


def test_fer2013(tmp_path):
    rows = ["emotion,pixels,Usage"]
    for label, usage in ((3, "Training"), (0, "PublicTest"), (6, "PrivateTest")):
        rows.append(f"{label},{' '.join(str(v % 256) for v in range(2304))},{usage}")
    (tmp_path / "fer2013.csv").write_text("\n".join(rows) + "\n")
    records = ds.read_fer2013(tmp_path / "fer2013.csv")
    assert [r.expression for r in records] == [3, 0, 6]
    assert [r.split for r in records] == ["train", "val", "test"]
    assert records[0].pixels.shape == (48, 48, 3)
    targets = _check_face_dataset(records, {"expression"})
    assert int(targets["expression"].argmax()) == 3


def test_expw(tmp_path):
    _write_image(tmp_path / "image" / "origin" / "angry_actor_1.jpg", 120, 160)
    (tmp_path / "label").mkdir()
    (tmp_path / "label" / "label.lst").write_text(
        "angry_actor_1.jpg 0 20 30 90 80 56.1 0\nangry_actor_1.jpg 1 10 100 150 60 40.2 3\n")
    records = ds.read_expw(tmp_path)
    assert [r.expression for r in records] == [0, 3]
    assert np.allclose(records[0].bbox, [30, 20, 90, 80])  # (left, top, right, bottom)
    assert records[0].identity == records[1].identity  # one image never straddles splits
    _check_face_dataset(records, {"expression"})


def test_rafdb_basic(tmp_path):
    for name in ("train_00001", "test_0001"):
        _write_image(tmp_path / "Image" / "aligned" / f"{name}_aligned.jpg", 100, 100)
    (tmp_path / "EmoLabel").mkdir()
    (tmp_path / "EmoLabel" / "list_patition_label.txt").write_text("train_00001.jpg 4\ntest_0001.jpg 1\n")
    records = ds.read_rafdb_basic(tmp_path)
    assert [(r.expression, r.split) for r in records] == [(3, "train"), (5, "test")]  # happiness, surprise
    _check_face_dataset(records, {"expression"})


def test_affectnet(tmp_path):
    _write_image(tmp_path / "images" / "1" / "a.jpg", 200, 200)
    lm = np.zeros((68, 2))
    lm[36:42], lm[42:48], lm[30], lm[48], lm[54] = [70, 90], [130, 90], [100, 120], [80, 150], [120, 150]
    lm_text = ";".join(f"{v:.1f}" for v in lm.ravel())
    (tmp_path / "validation.csv").write_text(
        "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal\n"
        f"1/a.jpg,40,40,120,130,{lm_text},1,0.5,0.2\n"
        f"1/a.jpg,40,40,120,130,{lm_text},7,0.1,0.1\n")  # contempt: no fdin class, skipped
    records = ds.read_affectnet(tmp_path / "validation.csv", tmp_path / "images")
    assert len(records) == 1 and records[0].expression == 3 and records[0].split == "val"
    assert np.allclose(records[0].keypoints, [[70, 90], [130, 90], [100, 120], [80, 150], [120, 150]])
    assert np.allclose(records[0].bbox, [40, 40, 160, 170])
    _check_face_dataset(records, {"expression"})


def test_utkface(tmp_path):
    _write_image(tmp_path / "25_1_0_20170116174525125.jpg.chip.jpg")
    _write_image(tmp_path / "61_0_3_20170109150557335.jpg")
    _write_image(tmp_path / "39_1_20170116174525125.jpg.chip.jpg")  # malformed (no race): skipped
    records = ds.read_utkface(tmp_path)
    assert [(r.age, r.gender) for r in records] == [(25.0, 1.0), (61.0, 0.0)]
    targets = _check_face_dataset(records, {"gender", "age"})
    assert float(targets["age"]) == 25.0 and float(targets["gender"]) == 1.0


def test_relation_csv(tmp_path):
    _write_image(tmp_path / "imgs" / "p1.jpg", 120, 200)
    header = "image,ax0,ay0,ax1,ay1,bx0,by0,bx1,by1," + ",".join(TRAITS) + ",split"
    (tmp_path / "pairs.csv").write_text(
        header + "\n" + "imgs/p1.jpg,10,20,70,90,110,25,170,95,1,0,1,1,,-1,0,1,\n")
    records = ds.read_relation_csv(tmp_path / "pairs.csv")
    assert len(records) == 1
    labels = records[0].labels
    assert labels[:4].tolist() == [1, 0, 1, 1] and np.isnan(labels[4]) and np.isnan(labels[5])
    data = ds.PairDataset(records, SPEC, augment=True)
    face_a, face_b, box_a, _, wh, y, mask = data[0]
    assert tuple(face_a.shape) == tuple(face_b.shape) == (3, 48, 48)
    assert wh.tolist() == [200, 120] and box_a.tolist() in ([10, 20, 70, 90], [130, 20, 190, 90])
    assert mask.tolist() == [1, 1, 1, 1, 0, 0, 1, 1] and y[4] == 0


def test_identity_split_keeps_identities_together():
    records = [ds.FaceRecord(dataset="x", identity=f"id{i % 10}") for i in range(200)]
    train, val = ds.identity_split(records, val_fraction=0.3, seed=1)
    assert train and val
    assert not {r.identity for r in train} & {r.identity for r in val}

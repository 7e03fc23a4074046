"""``train.prepare_uvanemo`` on a tiny fake UvA-NEMO layout made of generated clips."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from train import prepare_uvanemo


def test_read_and_match_labels(tmp_path):
    videos = [tmp_path / "001_spontaneous_smile_1.mp4", tmp_path / "001_deliberate_smile_2.mp4",
              tmp_path / "002_deliberate_smile_1.mp4"]
    tsv = tmp_path / "details.txt"
    tsv.write_text("Filename\tAge\tGender\n001_spontaneous_smile_1\t23\tf\n002_deliberate_smile_1.mp4\t61\tM\n")
    items = prepare_uvanemo.match_labels(videos, prepare_uvanemo.read_labels(tsv))
    assert [(v.name, s, g, a) for v, s, g, a in items] == [
        ("001_spontaneous_smile_1.mp4", "001", "female", 23.0), ("002_deliberate_smile_1.mp4", "002", "male", 61.0)]
    per_subject = tmp_path / "subjects.csv"
    per_subject.write_text("subject,age,gender\n1,23,female\n")
    items = prepare_uvanemo.match_labels(videos, prepare_uvanemo.read_labels(per_subject))
    assert sorted(v.name for v, *_ in items) == ["001_deliberate_smile_2.mp4", "001_spontaneous_smile_1.mp4"]


def test_prepare_on_fake_layout(tmp_path):
    perception = pytest.importorskip("fdin.perception")
    if not hasattr(perception, "track_faces"):
        pytest.skip("fdin.perception (face tracking) is not available")
    from tests.clips import no_face_clip, smile_clip

    root = tmp_path / "UvA-NEMO" / "videos"
    root.mkdir(parents=True)
    smile_clip(root / "001_spontaneous_smile_1.mp4", fps=12.0, seed=0)
    smile_clip(root / "002_deliberate_smile_1.mp4", fps=12.0, seed=1)
    no_face_clip(root / "003_deliberate_smile_1.mp4")
    labels = tmp_path / "UvA-NEMO" / "metadata.csv"
    labels.write_text("filename,age,gender\n001_spontaneous_smile_1,23,f\n002_deliberate_smile_1,61,m\n"
                      "003_deliberate_smile_1,40,m\n")
    out = tmp_path / "seq"
    assert prepare_uvanemo.main(["--videos", str(root), "--labels", str(labels), "--out", str(out),
                                 "--quiet"]) == 0
    with open(out / "labels.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["id"], r["subject"], r["gender"], r["age"]) for r in rows] == [
        ("001_spontaneous_smile_1", "001", "female", "23"), ("002_deliberate_smile_1", "002", "male", "61")]
    z = np.load(out / "sequences" / "001_spontaneous_smile_1.npz", allow_pickle=False)
    assert z["landmarks"].dtype == np.float32 and z["landmarks"].shape[1:] == (68, 2)
    assert float(z["fps"]) == pytest.approx(12.0, rel=0.05)
    with open(out / "skipped.csv") as handle:
        assert "003_deliberate_smile_1" in handle.read()

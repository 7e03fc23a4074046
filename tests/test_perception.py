"""Face perception on real photos (offline backend), head pose, and the insightface adapter on fake
buffalo_l files (the real pack is non-commercial and never downloaded)."""

from __future__ import annotations

import itertools
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from faces import FAKE_AGE, FAKE_FACE_BOX, astronaut, make_fake_buffalo_l, t1, tom_hanks

import fdin.perception.registry as registry
from fdin.errors import ModelUnavailableError, WeightsIntegrityError
from fdin.perception import Face, detect_faces, get_backend
from fdin.perception.pose import head_pose, synthetic_landmarks

ROOT = Path(__file__).resolve().parent.parent
#: t1.jpg, faces left to right: the three women and three men of the group photo.
T1_GENDERS = ["female", "female", "male", "male", "male", "female"]


@pytest.fixture(scope="session")
def backend():
    return get_backend("offline")


@pytest.fixture(scope="session")
def t1_faces(backend) -> list[Face]:
    return detect_faces(t1(), backend)


@pytest.fixture(scope="session")
def astronaut_faces(backend) -> list[Face]:
    return detect_faces(astronaut(), backend)


def _check_face(face: Face, width: int, height: int) -> None:
    assert face.bbox.shape == (4,) and face.landmarks.shape == (68, 2) and face.keypoints.shape == (5, 2)
    assert 0.0 <= face.score <= 1.0
    x0, y0, x1, y1 = face.bbox
    mx, my = 0.25 * (x1 - x0), 0.25 * (y1 - y0)  # the jaw contour may leave a tight detector box a little
    lm = face.landmarks
    assert (lm[:, 0] >= x0 - mx).all() and (lm[:, 0] <= x1 + mx).all()
    assert (lm[:, 1] >= y0 - my).all() and (lm[:, 1] <= y1 + my).all()
    # brows and eyes above the nose tip, above the mouth, above the chin
    assert lm[17:27, 1].mean() < lm[36:48, 1].mean() < lm[30, 1] < lm[48:68, 1].mean() < lm[8, 1]
    # iBUG 36-41 is the eye on the image left (the subject's right eye), 0 the image-left jaw end
    assert lm[36:42, 0].mean() < lm[42:48, 0].mean() and lm[0, 0] < lm[16, 0]
    assert np.allclose(face.keypoints[0], lm[36:42].mean(0), atol=0.01)
    assert set(face.models) >= {"bbox", "landmarks", "keypoints", "pose", "appearance"}


def test_t1_has_exactly_six_faces_left_to_right(t1_faces):
    assert len(t1_faces) == 6
    centres = [float(f.bbox[0] + f.bbox[2]) / 2 for f in t1_faces]
    assert centres == sorted(centres)
    for face in t1_faces:
        _check_face(face, 1280, 886)
        assert 80 <= face.height <= 180  # the faces of t1 are ~100-150 px tall


def test_astronaut_one_face_and_not_the_patch(astronaut_faces):
    assert len(astronaut_faces) == 1
    face = astronaut_faces[0]
    _check_face(face, 512, 512)
    assert face.bbox[3] < 250  # her face is in the top half; the mission patch is at y ~ 335-425


def test_tom_hanks_aligned_crop(backend):
    faces = detect_faces(tom_hanks(), backend)
    assert len(faces) == 1
    _check_face(faces[0], 112, 112)


def test_appearance_matches_what_the_photos_show(t1_faces, astronaut_faces, backend):
    # Eileen Collins (~35-40 in this portrait): the model says p_female ~0.83, age ~33.
    app = astronaut_faces[0].appearance
    assert app is not None and app.p_female > 0.6 and 25 <= app.age_years <= 50
    assert app.gender_label == "female"
    # Tom Hanks: male (p_female ~0.03), age ~41
    tom = detect_faces(tom_hanks(), backend)[0].appearance
    assert tom.p_female < 0.3 and 28 <= tom.age_years <= 60
    # t1: the model gets 5 of the 6 right (the turned man, 5th from the left, reads 0.70 female)
    labels = [f.appearance.gender_label for f in t1_faces]
    assert sum(a == b for a, b in zip(labels, T1_GENDERS, strict=True)) >= 5
    assert all(18 <= f.appearance.age_years <= 55 for f in t1_faces)


def test_appearance_is_one_batch_and_order_preserving(t1_faces, backend):
    image = t1()
    together = backend.appearance(image, t1_faces)
    alone = [backend.appearance(image, [f])[0] for f in t1_faces]
    for a, b in zip(together, alone, strict=True):
        assert a.p_female == pytest.approx(b.p_female, abs=1e-5)
        assert a.age_years == pytest.approx(b.age_years, abs=1e-3)
    assert backend.appearance(image, []) == []


def test_pose_near_frontal_faces(t1_faces, astronaut_faces, backend):
    for face in [*astronaut_faces, *detect_faces(tom_hanks(), backend)]:
        assert abs(face.pose.yaw) <= 25 and abs(face.pose.pitch) <= 25 and abs(face.pose.roll) <= 25
    for face in t1_faces:  # people chatting, heads turned/tilted, still far from profile
        # yaw up to 55: the standing man (5th from the left) looks well to the image left; the mesh
        # landmarks follow his profile (yaw -43), where dlib's 68-point fit spread a frontal shape over
        # his cheek (yaw -11; checked by eye on an overlay of both fits)
        assert abs(face.pose.yaw) <= 55 and abs(face.pose.pitch) <= 30 and abs(face.pose.roll) <= 35
        # yaw > 0 means the nose moved to the image right: check against the picture itself
        lm = face.landmarks
        if abs(face.pose.yaw) > 10 and abs(face.pose.roll) < 10:
            nose_offset = lm[30, 0] - (lm[0, 0] + lm[16, 0]) / 2
            assert np.sign(nose_offset) == np.sign(face.pose.yaw)


def test_pose_signs_flip_with_the_image(t1_faces, backend):
    mirrored = detect_faces(np.ascontiguousarray(t1()[:, ::-1]), backend)
    assert len(mirrored) == 6
    width = 1280
    flipped_yaw = 0
    for face in t1_faces:
        cx = float(face.bbox[0] + face.bbox[2]) / 2
        twin = min(mirrored, key=lambda g: abs(width - 1 - float(g.bbox[0] + g.bbox[2]) / 2 - cx))
        if abs(face.pose.yaw) > 8:
            assert np.sign(twin.pose.yaw) == -np.sign(face.pose.yaw)
            flipped_yaw += 1
        if abs(face.pose.roll) > 8:
            assert np.sign(twin.pose.roll) == -np.sign(face.pose.roll)
        assert abs(twin.pose.pitch - face.pose.pitch) < 8  # pitch does not care about left/right
        # the mirrored face's iBUG 36-41 is again on the image left
        assert twin.landmarks[36:42, 0].mean() < twin.landmarks[42:48, 0].mean()
    assert flipped_yaw >= 3


def test_pose_round_trip_on_a_posed_mean_face():
    for yaw, pitch, roll in itertools.product([-45, -20, 0, 15, 40], [-25, 0, 20], [-20, 0, 15]):
        for centre in (None, (110, 90), (540, 400)):
            landmarks = synthetic_landmarks(yaw, pitch, roll, centre=centre)
            pose = head_pose(landmarks, (640, 480))
            assert pose.yaw == pytest.approx(yaw, abs=3)
            assert pose.pitch == pytest.approx(pitch, abs=3)
            assert pose.roll == pytest.approx(roll, abs=3)


def test_pose_sign_conventions_in_pixels():
    front = synthetic_landmarks(0, 0, 0)
    eyes_mid = front[[36, 45]].mean(0)
    # yaw > 0: the nose tip moves to the image right of the eyes' midpoint
    lm = synthetic_landmarks(25, 0, 0)
    assert lm[30, 0] - lm[[36, 45], 0].mean() > front[30, 0] - eyes_mid[0] + 10
    # pitch > 0 (chin up): the nose tip comes closer to the eye line
    lm = synthetic_landmarks(0, 25, 0)
    assert lm[30, 1] - lm[[36, 45], 1].mean() < front[30, 1] - eyes_mid[1] - 10
    # roll > 0: clockwise, the image-right eye goes down
    lm = synthetic_landmarks(0, 0, 20)
    assert lm[45, 1] > lm[36, 1] + 10
    assert head_pose(np.full((68, 2), 5.0), (640, 480)).yaw == 0.0  # degenerate input: no crash


def test_large_image_is_detected_on_a_downscaled_copy(astronaut_faces, backend):
    import cv2

    big = cv2.resize(astronaut(), (1536, 1536), interpolation=cv2.INTER_CUBIC)
    faces = detect_faces(big, backend, with_appearance=False)
    assert len(faces) == 1
    assert np.allclose(faces[0].bbox / 3, astronaut_faces[0].bbox, atol=6)


def test_no_face_and_tiny_images(backend):
    from faces import background

    assert detect_faces(background(), backend) == []
    assert detect_faces(np.zeros((8, 8, 3), np.uint8), backend) == []
    assert detect_faces(np.zeros((40, 30), np.uint8), backend) == []  # grey input is accepted


def test_backend_is_built_once_and_shared_across_threads(backend):
    assert get_backend("offline") is backend
    image = astronaut()
    expected = detect_faces(image, backend)[0]
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(detect_faces(image, "offline")[0])) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(results) == 3
    for face in results:
        assert np.array_equal(face.landmarks, expected.landmarks)
        assert face.appearance.p_female == pytest.approx(expected.appearance.p_female)


def test_unknown_backend_is_a_user_error():
    with pytest.raises(ModelUnavailableError, match="Unknown face backend"):
        get_backend("mediapipe")


def test_tampered_model_file_is_refused(tmp_path):
    from fdin.perception.offline import verified

    path = tmp_path / "model.onnx"
    path.write_bytes(b"not the model")
    with pytest.raises(WeightsIntegrityError):
        verified(path, "0" * 64)
    with pytest.raises(ModelUnavailableError):
        verified(tmp_path / "missing.onnx", "0" * 64)


def test_importing_perception_loads_no_model_library():
    code = ("import sys, fdin.perception; "
            "heavy = [m for m in ('dlib', 'yuface', 'onnxruntime', 'insightface', 'torch', 'av', 'cv2') "
            "if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == ""


# --- insightface adapter (fake buffalo_l) ------------------------------------------------------------
@pytest.fixture(scope="module")
def fake_buffalo(tmp_path_factory) -> Path:
    return make_fake_buffalo_l(tmp_path_factory.mktemp("models") / "buffalo_l", pose=(20.0, 10.0, -5.0))


@pytest.fixture
def no_network(monkeypatch):
    attempts: list = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access attempted during a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


@pytest.fixture
def isolated_model_paths(monkeypatch, tmp_path):
    """No real buffalo_l anywhere: empty weights dir and home; a fresh backend cache."""
    monkeypatch.setenv("FDIN_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FDIN_INSIGHTFACE_DIR", raising=False)
    monkeypatch.setattr(registry, "_CACHE", {})


def test_insightface_adapter_on_fake_buffalo_l(fake_buffalo, no_network, isolated_model_paths):
    from faces import background

    be = get_backend("insightface", models_dir=fake_buffalo)
    assert be.name == "insightface"
    faces = be.detect(background())
    assert no_network == []
    assert not (Path(str(Path.home())) / ".insightface").exists()  # nothing created, nothing fetched
    assert len(faces) == 1
    face = faces[0]
    assert np.allclose(face.bbox, FAKE_FACE_BOX, atol=0.5)
    assert face.score == pytest.approx(0.9, abs=1e-5)
    assert face.landmarks.shape == (68, 2) and face.keypoints.shape == (5, 2)
    assert face.landmarks[36:42, 0].mean() < face.landmarks[42:48, 0].mean()
    # insightface's own pose code on a mean face posed at yaw 20, pitch 10, roll -5 (fdin's signs)
    assert face.pose.yaw == pytest.approx(20, abs=1) and face.pose.pitch == pytest.approx(10, abs=1)
    assert face.pose.roll == pytest.approx(-5, abs=1)
    assert face.appearance.p_female == pytest.approx(1 / (1 + np.exp(-2.0)), abs=1e-4)
    assert face.appearance.age_years == pytest.approx(FAKE_AGE * 100, abs=1e-3)
    assert set(face.models) == {"bbox", "landmarks", "keypoints", "pose", "appearance"}
    assert "det_10g.onnx" in face.models["bbox"]
    json_dict = face.to_json_dict()
    assert json_dict["appearance"]["gender"]["label"] == "female"
    # appearance of several faces is one batched call on a dynamic-batch genderage
    apps = be.appearance(background(), [face, face, face])
    assert len(apps) == 3 and all(a.p_female == pytest.approx(face.appearance.p_female) for a in apps)


def test_auto_prefers_insightface_when_its_models_are_present(fake_buffalo, no_network, isolated_model_paths,
                                                             monkeypatch):
    assert get_backend(None).name == "offline"
    monkeypatch.setenv("FDIN_INSIGHTFACE_DIR", str(fake_buffalo))
    assert get_backend(None).name == "insightface"
    assert get_backend("auto").name == "insightface"
    assert no_network == []


def test_insightface_without_models_is_a_clear_error(no_network, isolated_model_paths, tmp_path):
    with pytest.raises(ModelUnavailableError, match="non-commercial"):
        get_backend("insightface")
    with pytest.raises(ModelUnavailableError, match=r"det_10g\.onnx"):
        get_backend("insightface", models_dir=tmp_path)  # an explicit directory is never replaced
    assert no_network == []

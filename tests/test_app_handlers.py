"""The app's handlers called directly, with the real models on real inputs, and their error paths."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import numpy as np
import pytest

from fdin.app import Handlers, LazyPredictors, handlers, settings, texts
from fdin.errors import MediaError
from fdin.labels import SYNTHETIC_WEIGHTS_NOTE
from tests.app_support import (
    HAVE_FDIN_WEIGHTS,
    NO_FDIN_WEIGHTS,
    astronaut_photo,
    face_crop,
    group_photo,
    no_face_photo,
    smile_clip,
    text_as,
)

pytestmark = pytest.mark.slow

ui = Handlers(LazyPredictors())  # the real models, loaded on first use and shared by these tests


@pytest.fixture(scope="module", autouse=True)
def _ui_workers_end_with_the_module():
    """``ui``'s analysis workers stop after this module (the module object outlives it)."""
    yield
    ui.predictors.close()


def _no_progress(*args, **kwargs) -> None:
    return None


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("app-media")


def _error_text(excinfo: pytest.ExceptionInfo) -> str:
    error = excinfo.value
    assert isinstance(error, gr.Error)
    return str(error.message)


def _assert_friendly(text: str) -> None:
    assert text and "Traceback" not in text and "File \"" not in text and "/tmp/" not in text
    assert "<" not in text.replace("&lt;", ""), "error text must be HTML-escaped"


def _pixels(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


# --- Faces -----------------------------------------------------------------------------------------
def test_detect_faces_group_photo() -> None:
    payload, annotated, _status, table = ui.detect_faces(str(group_photo()))
    assert len(payload["faces"]) == 6 and len(table.value["data"]) == 6
    first = payload["faces"][0]
    assert len(first["landmarks"]) == 68 and len(first["bbox"]) == 4 and set(first["pose"]) == {"yaw", "pitch", "roll"}
    xs = [(f["bbox"][0] + f["bbox"][2]) / 2 for f in payload["faces"]]
    assert xs == sorted(xs), "faces are numbered left to right"
    assert _pixels(annotated).shape == (payload["image"]["height"], payload["image"]["width"], 3)
    json.dumps(payload)  # JSON-serialisable as the API returns it


def test_detect_faces_astronaut() -> None:
    payload, _, _status, table = ui.detect_faces(str(astronaut_photo()))
    assert len(payload["faces"]) == 1
    assert payload["faces"][0]["appearance"] is not None
    assert payload["faces"][0]["expression"]["label"] == "happy"  # she smiles (tests/test_fer2013.py table)
    assert table.value["data"][0][1].startswith("happy (")


def test_detect_faces_no_face_is_an_empty_list(media) -> None:
    payload, _image, status, _table = ui.detect_faces(str(no_face_photo(media)))
    assert payload["faces"] == [] and "No face found" in status


# --- Relations -------------------------------------------------------------------------------------
def test_relate_group_photo() -> None:
    payload, annotated, table, chart, matrix = ui.relate_photos(str(group_photo()), None, "warm",
                                                                progress=_no_progress)
    assert payload["mode"] == "group" and len(payload["faces"]) == 6 and len(payload["pairs"]) == 15
    traits = payload["pairs"][0]["traits"]
    assert len(traits) == 8 and all(0.0 <= v <= 1.0 for v in traits.values())
    assert _pixels(annotated).ndim == 3
    assert len(table.value["data"]) == 6
    assert len(chart.data[0].y) == 15 and len(chart.data[0].x) == 8  # every pair x every trait
    assert len(matrix.data[0].z) == 6  # 3+ faces: the 6x6 relation matrix


def test_relate_two_photos(media) -> None:
    payload, annotated, _table, chart, matrix = ui.relate_photos(str(astronaut_photo()), str(face_crop(media)),
                                                                progress=_no_progress)
    assert payload["mode"] == "two_photos" and len(payload["faces"]) == 2 and len(payload["pairs"]) == 1
    assert len(chart.data) == 1 and matrix is None
    assert _pixels(annotated).shape[1] > _pixels(annotated).shape[0]  # side-by-side canvas
    assert "directed" in payload["pairs"][0]


def test_relation_matrix_rerenders_for_another_trait() -> None:
    kept = ui.relate_photos_ui(str(group_photo()), progress=_no_progress)[-1]
    plot = ui.rerender_matrix(kept, "dominant")
    assert plot.layout.title.text.startswith("Dominant across all pairs")


# --- Trait estimation ------------------------------------------------------------------------------
@pytest.mark.skipif(not HAVE_FDIN_WEIGHTS, reason=NO_FDIN_WEIGHTS)
def test_analyze_generated_clip(media) -> None:
    out = ui.analyze_video(str(smile_clip(media)), progress=_no_progress)
    payload, summary, clip, keyframe, heat_gender, heat_age, dynamics, json_file = out
    assert set(payload) >= {"frames_analyzed", "dynamics", "appearance", "importance", "top_relations", "models"}
    assert payload["face_track"]["found"] >= 0.9 * payload["frames_analyzed"]
    regions = payload["importance"]["regions"]
    assert list(heat_gender.data[0].x) == [ui_label for ui_label in heat_gender.data[0].y]
    assert len(heat_gender.data[0].z) == len(regions) and heat_gender.layout.height > 0
    assert heat_age.layout.height > 0 and len(dynamics.data) == len(regions)
    assert "from facial dynamics" in summary and SYNTHETIC_WEIGHTS_NOTE in summary
    assert json.loads(Path(json_file).read_text())["dynamics"] == payload["dynamics"]
    import av

    with av.open(clip) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
    assert _pixels(keyframe).ndim == 3 and min(_pixels(keyframe).shape[:2]) >= 320


# --- error paths -----------------------------------------------------------------------------------
@pytest.mark.parametrize("handler", ["detect_faces", "relate_photos", "analyze_video"])
def test_missing_input_asks_for_it(handler) -> None:
    fn = getattr(ui, handler)
    with pytest.raises(gr.Error) as excinfo:
        fn(None) if handler == "detect_faces" else fn(None, progress=_no_progress)
    assert "Please provide" in _error_text(excinfo)


def test_text_renamed_jpg_is_a_friendly_error(media) -> None:
    with pytest.raises(gr.Error) as excinfo:
        ui.detect_faces(str(text_as(media, "notes.jpg")))
    _assert_friendly(_error_text(excinfo))
    assert "photo" in _error_text(excinfo).lower()
    payload, *_ = ui.detect_faces(str(astronaut_photo()))  # the next request works
    assert len(payload["faces"]) == 1


def test_text_renamed_mp4_is_a_friendly_error(media) -> None:
    with pytest.raises(gr.Error) as excinfo:
        ui.analyze_video(str(text_as(media, "<img src=x onerror=alert(1)>.mp4")), progress=_no_progress)
    _assert_friendly(_error_text(excinfo))
    assert "onerror" not in _error_text(excinfo)  # file names never reach the message


def test_one_face_group_photo_says_two_are_needed() -> None:
    with pytest.raises(gr.Error) as excinfo:
        ui.relate_photos(str(astronaut_photo()), None, progress=_no_progress)
    text = _error_text(excinfo)
    _assert_friendly(text)
    assert "two" in text


def test_no_face_in_second_photo(media) -> None:
    with pytest.raises(gr.Error) as excinfo:
        ui.relate_photos(str(astronaut_photo()), str(no_face_photo(media)), progress=_no_progress)
    assert "second photo" in _error_text(excinfo)


def test_error_messages_are_escaped(monkeypatch, media) -> None:
    def hostile(*args, **kwargs):
        raise MediaError("bad <script>alert(1)</script> & co")

    monkeypatch.setattr(ui, "load_image", hostile)
    with pytest.raises(gr.Error) as excinfo:
        ui.detect_faces(str(astronaut_photo()))
    assert _error_text(excinfo) == "bad &lt;script&gt;alert(1)&lt;/script&gt; &amp; co"


def test_unexpected_errors_give_the_generic_text_and_are_logged(monkeypatch, caplog) -> None:
    class Broken:
        def relation(self):
            raise RuntimeError("secret internal detail /srv/weights")

    with pytest.raises(gr.Error) as excinfo:
        Handlers(Broken()).relate_photos(str(group_photo()), progress=_no_progress)
    assert _error_text(excinfo) == texts.GENERIC_ERROR
    assert "secret internal detail" in caplog.text  # logged server-side only


def test_models_markdown_lists_every_role_and_generated_data() -> None:
    text = texts.models_markdown()
    for role in ("expression", "relation", "gender"):
        assert f"| {role} |" in text
    assert "generated" in text.lower() and "licence" in text
    expression_row = next(line for line in text.splitlines() if line.startswith("| expression |"))
    assert "expression-fer2013" in expression_row and "FER2013" in expression_row and "terms" in expression_row
    assert expression_row.rstrip(" |").endswith("| no | mit")  # real data, MIT weights
    landmarks_row = next(line for line in text.splitlines() if line.startswith("| landmarks |"))
    assert "face-landmark-mediapipe" in landmarks_row and landmarks_row.rstrip(" |").endswith("| no | apache-2.0")
    assert "Model card: landmarks" in text and "Apache License 2.0" in text


def test_model_sources_follow_environment(monkeypatch) -> None:
    assert settings.model_source("relation") == ("relation", None)
    monkeypatch.setenv("FDIN_RELATION_REPO", "org/fdin-relation")
    monkeypatch.setenv("FDIN_RELATION_REVISION", "a" * 40)
    assert settings.model_source("relation") == ("org/fdin-relation", "a" * 40)


def test_scratch_files_are_swept(monkeypatch) -> None:
    folder = handlers.scratch_dir()
    (folder / "x.json").write_text("{}")
    handlers.sweep_scratch(max_age_s=-1)
    assert not folder.exists()

"""The app against fake predictors (tests/fakes.py): layout, handlers, error mapping, rate limit and the
launch address, in seconds. The same handlers with the real models are in test_app_handlers.py."""

from __future__ import annotations

import json
import time
from pathlib import Path

import gradio as gr
import numpy as np
import pytest

from fdin.app import Handlers, RateLimiter, build_demo, server_address
from fdin.app import examples as ex
from fdin.app.face_table import FACE_COLUMNS
from fdin.app.texts import GENERIC_ERROR, RATE_LIMITED
from fdin.errors import MediaError
from fdin.labels import SYNTHETIC_WEIGHTS_NOTE
from tests.fakes import FakePredictors, fake_video

pytestmark = pytest.mark.fast

ENDPOINTS = {"analyze_video", "relate_photos", "detect_faces"}


def _no_progress(*args, **kwargs) -> None:
    return None


@pytest.fixture
def fakes() -> FakePredictors:
    return FakePredictors()


@pytest.fixture
def handlers(fakes: FakePredictors) -> Handlers:
    h = Handlers(fakes, rate_limiter=RateLimiter(0, 60))
    h.load_image = lambda path: np.full((120, 240, 3), 128, np.uint8)  # no child process in the fast tier
    h.read_video = lambda path: fake_video()
    return h


def _pixels(path: str) -> np.ndarray:
    """The annotated images come back as WebP files encoded inside the handler."""
    from PIL import Image

    with Image.open(path) as img:
        assert img.format == "WEBP"
        return np.asarray(img.convert("RGB"))


def _request(host: str):
    from types import SimpleNamespace

    return SimpleNamespace(client=SimpleNamespace(host=host), headers={})


# --- building ------------------------------------------------------------------------------------
def test_building_loads_no_model_and_generates_no_media(fakes, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FDIN_CACHE_DIR", str(tmp_path))
    t0 = time.process_time()
    demo = build_demo(fakes, examples="lazy")
    assert fakes.requests == [], "building the app asks for no predictor"
    assert not any(ex.examples_dir().iterdir()), "no example media is generated while building"
    names = {fn.api_name for fn in demo.fns.values() if fn.api_name and fn.api_visibility != "private"}
    assert names == ENDPOINTS
    assert time.process_time() - t0 < 30, "CPU time, not wall clock: building stays cheap"


def test_examples_are_shown_once_their_files_are_in_the_cache(fakes, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FDIN_CACHE_DIR", str(tmp_path))
    photos = ex.example_photos()  # copies/generates the photos (cheap); the clip stays absent
    assert photos and all(Path(p).parent == ex.examples_dir() for p in photos.values())
    demo = build_demo(fakes, examples="lazy")
    datasets = [b for b in demo.blocks.values() if isinstance(b, gr.Dataset)]
    shown = {Path(s[0]["path"] if isinstance(s[0], dict) else s[0]).name for d in datasets for s in d.raw_samples}
    assert shown == {Path(p).name for p in photos.values()}
    assert build_demo(fakes, examples="off") and fakes.requests == []


def test_consent_gates_the_three_buttons(fakes) -> None:
    demo = build_demo(fakes, examples="off")
    buttons = [b for b in demo.blocks.values() if isinstance(b, gr.Button) and b.elem_id]
    assert {b.elem_id for b in buttons} == {"analyze-btn", "live-btn", "relate-btn", "faces-btn"}
    assert all(b.interactive is False for b in buttons)


# --- handlers ------------------------------------------------------------------------------------
def test_detect_faces_gives_the_cli_json_an_image_a_status_and_the_face_table(handlers, fakes) -> None:
    payload, annotated, status, table = handlers.detect_faces("photo.jpg")
    assert status == "Found 2 faces (numbered 1, 2, … from left to right)."
    assert set(payload) == {"faces", "backend", "image"} and len(payload["faces"]) == 2
    assert payload["image"] == {"width": 240, "height": 120} and payload["backend"]["name"] == "fake"
    assert _pixels(annotated).shape == (120, 240, 3) and fakes.requests == ["backend", "expression"]
    assert [f["expression"]["label"] for f in payload["faces"]] == ["happy", "neutral"]
    assert table.headers == FACE_COLUMNS
    assert [row[:4] for row in table.value["data"]] == [[1, "happy (70%)", "female (80% female)", "31"],
                                                        [2, "neutral (70%)", "female (80% female)", "31"]]
    assert table.value["data"][0][4] == "5 / -2 / 1"  # yaw / pitch / roll of the backend's pose
    json.dumps(payload)


def test_analyze_video_renders_every_output(handlers) -> None:
    out = handlers.analyze_video("clip.mp4", progress=_no_progress)
    payload, summary, clip, keyframe, heat_gender, heat_age, dynamics, json_file = out
    assert list(payload)[:11] == ["frames_analyzed", "fps", "coverage", "face_track", "dynamics", "appearance",
                                  "importance", "attribution", "top_relations", "models", "timings_ms"]
    assert "video" in payload
    # the appearance model (real faces) first, FDIN's synthetic-data weights labelled a demonstration
    assert "| from appearance (5 frames) | female (90% female, varies ±5 points over frames) |" in summary
    assert "| from facial dynamics (FDIN, demonstration) | uncertain (70% male) |" in summary
    assert "p_female" not in summary and "How sure" in summary and "subject's own" in summary
    assert "confidence" not in summary.lower()
    assert "disagree" not in summary  # FDIN is itself uncertain here: no disagreement is claimed
    # every analysed frame accounted for: 19 followed + 1 lost = 20 (the fake track spans the clip)
    assert "the face was followed in 19, lost in 1 while" in summary and "outside its track" not in summary
    assert "averages the appearance model over 5 of the 19 frames" in summary
    assert "Only the first 2 s" in summary
    assert SYNTHETIC_WEIGHTS_NOTE in summary
    assert json.loads(Path(json_file).read_text())["dynamics"] == payload["dynamics"]
    assert Path(clip).stat().st_size > 0 and min(_pixels(keyframe).shape[:2]) >= 640
    regions = payload["importance"]["regions"]
    assert len(heat_gender.data[0].z) == len(regions) and "age" in heat_age.layout.title.text
    assert len(dynamics.data) == len(regions)


def test_relate_photos_group_and_trait_fallback(handlers) -> None:
    payload, _annotated, table, chart, matrix, kept = handlers.relate_photos_ui("group.jpg", None, "no-such-trait",
                                                                               progress=_no_progress)
    assert payload["mode"] == "group" and len(payload["faces"]) == 3 and len(payload["pairs"]) == 3
    assert table.headers == FACE_COLUMNS and len(table.value["data"]) == 3
    # expression from the expression model, gender/age from the appearance model ("–" where it gave none)
    assert table.value["data"][0][1:4] == ["happy (70%)", "–", "–"]
    # 0.70 lies inside the uncertain band: no label is shown for it
    assert table.value["data"][1][1:4] == ["neutral (70%)", "uncertain (70% female)", "31"]
    assert len(chart.data[0].y) == 3 and len(chart.data[0].x) == 8  # pairs x traits: every pair drawn
    assert set(chart.data[0].y) == {"1 – 2", "1 – 3", "2 – 3"}  # faces numbered from 1, as drawn
    assert "demonstration" in chart.layout.title.text and "3 pairs" in chart.layout.title.text
    assert len(matrix.data[0].z) == 3
    first = handlers.rerender_matrix(kept, "dominant")  # an unknown trait fell back to the first
    assert len(first.data[0].z) == 3 and first.layout.title.text.startswith("Dominant across all pairs")
    assert list(first.data[0].x) == ["face 1", "face 2", "face 3"]
    warm = handlers.rerender_matrix(kept, "warm").layout.title.text
    assert warm == "Warm across all pairs<br><sup>demonstration model</sup>"
    assert handlers.rerender_matrix(None, "warm") is None


def test_relate_two_photos_side_by_side(handlers) -> None:
    payload, annotated, _table, chart, matrix = handlers.relate_photos("a.jpg", "b.jpg", progress=_no_progress)
    assert payload["mode"] == "two_photos" and matrix is None  # the page hides the empty plot (show_matrix)
    # one pair: one bar per trait with its score written, titled with the faces and as a demonstration
    assert chart.data[0].orientation == "h" and len(chart.data[0].y) == 8 and chart.data[0].text[0]
    assert chart.layout.title.text == "Relation traits of faces 1 and 2<br><sup>demonstration model</sup>"
    assert _pixels(annotated).shape == (120, 480, 3)


def test_trait_dropdown_only_with_a_matrix_and_the_api_unchanged(handlers) -> None:
    """The trait dropdown picks the trait of the 3+-face matrix: hidden until a result has one (two
    faces: hidden), while ``/relate_photos`` keeps its three parameters and the trait's default."""
    from fdin.app.layout import show_matrix

    demo = build_demo(handlers=handlers, examples="off")
    (dropdown,) = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "trait-in"]
    assert dropdown.visible is False
    relate = next(fn for fn in demo.fns.values() if fn.api_name == "relate_photos")
    assert relate.inputs[2] is dropdown
    params = demo.get_api_info()["named_endpoints"]["/relate_photos"]["parameters"]
    assert [(p["parameter_name"], p["parameter_has_default"], p.get("parameter_default")) for p in params] == [
        ("image_a", False, None), ("image_b", True, None), ("trait", True, "warm")]
    shows = [fn for fn in demo.fns.values() if fn.name == "show_matrix"]
    assert len(shows) == 3 and all([o._id for o in fn.outputs][1] == dropdown._id for fn in shows)
    *_, two = handlers.relate_photos_ui("a.jpg", "b.jpg", "warm", progress=_no_progress)
    *_, group = handlers.relate_photos_ui("group.jpg", None, "warm", progress=_no_progress)
    assert [u.visible for u in show_matrix(two)] == [False, False]
    assert [u.visible for u in show_matrix(group)] == [True, True]


@pytest.mark.parametrize("name", sorted(ENDPOINTS))
def test_missing_input_asks_for_it(handlers, name) -> None:
    fn = getattr(handlers, name)
    with pytest.raises(gr.Error, match="Please provide"):
        fn(None) if name == "detect_faces" else fn(None, progress=_no_progress)


def test_user_errors_are_escaped_and_other_errors_generic(fakes, handlers, caplog) -> None:
    def hostile(path):
        raise MediaError("bad <script>alert(1)</script> & co")

    handlers.load_image = hostile
    with pytest.raises(gr.Error) as excinfo:
        handlers.detect_faces("x.jpg")
    assert excinfo.value.message == "bad &lt;script&gt;alert(1)&lt;/script&gt; &amp; co"

    class Broken(FakePredictors):
        def relation(self):
            raise RuntimeError("secret internal detail /srv/weights")

    broken = Handlers(Broken(), rate_limiter=RateLimiter(0, 60))
    broken.load_image = lambda path: np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(gr.Error) as excinfo:
        broken.relate_photos("x.jpg", progress=_no_progress)
    assert excinfo.value.message == GENERIC_ERROR and "secret internal detail" in caplog.text


def test_one_face_is_a_user_error(fakes) -> None:
    h = Handlers(FakePredictors(relation_faces=1), rate_limiter=RateLimiter(0, 60))
    h.load_image = lambda path: np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(gr.Error, match="at least two"):
        h.relate_photos("x.jpg", progress=_no_progress)


def test_rate_limit_per_client(fakes) -> None:
    h = Handlers(fakes, rate_limiter=RateLimiter(2, 600))
    h.load_image = lambda path: np.zeros((60, 60, 3), np.uint8)
    for _ in range(2):
        h.detect_faces("x.jpg", request=_request("198.51.100.7"))
    with pytest.raises(gr.Error) as excinfo:
        h.analyze_video("x.mp4", request=_request("198.51.100.7"))
    assert excinfo.value.message == RATE_LIMITED
    assert len(h.detect_faces("x.jpg", request=_request("198.51.100.8"))[0]["faces"]) == 2
    assert fakes.requests.count("backend") == 3


# --- where it listens -------------------------------------------------------------------
@pytest.mark.parametrize(("env", "cli", "expected"), [
    ({}, (None, None), ("127.0.0.1", 7860)),
    ({"SPACE_ID": "org/fdin"}, (None, None), ("0.0.0.0", 7860)),
    ({"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "7861"}, (None, None), ("0.0.0.0", 7861)),
    ({"SPACE_ID": "org/fdin", "GRADIO_SERVER_PORT": "9000"}, (None, None), ("0.0.0.0", 9000)),
    ({"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "7861"}, ("127.0.0.1", 8000), ("127.0.0.1", 8000)),
    ({"GRADIO_SERVER_NAME": " "}, (None, 8001), ("127.0.0.1", 8001)),
])
def test_server_address_flags_over_env_over_defaults(env, cli, expected) -> None:
    assert server_address(*cli, env=env) == expected


# --- the friction a first visitor hits ----------------------------------------------------
def test_every_pair_of_six_faces_is_drawn(fakes) -> None:
    h = Handlers(FakePredictors(relation_faces=6), rate_limiter=RateLimiter(0, 60))
    h.load_image = lambda path: np.zeros((120, 400, 3), np.uint8)
    payload, _image, _table, chart, _matrix = h.relate_photos("g.jpg", progress=_no_progress)
    rows = list(chart.data[0].y)
    assert len(payload["pairs"]) == 15 and len(rows) == 15 and len(set(rows)) == 15
    assert {"2 – 4", "2 – 5", "3 – 4", "3 – 5", "4 – 5"} <= set(rows)  # the pairs the bar chart dropped
    assert np.asarray(chart.data[0].z).shape == (15, 8) and "15 pairs" in chart.layout.title.text


@pytest.mark.parametrize(("shape", "expected"), [((600, 900), "No face found** in this 900×600 photo."),
                                                 ((1, 1), "The photo is very small.")])
def test_no_face_says_so(shape, expected) -> None:
    h = Handlers(FakePredictors(faces=0), rate_limiter=RateLimiter(0, 60))
    h.load_image = lambda path: np.zeros((*shape, 3), np.uint8)
    payload, _image, status, _table = h.detect_faces("landscape.jpg")
    assert payload["faces"] == [] and expected in status


def test_frame_accounting_names_every_frame() -> None:
    from fdin.app.rendering import frame_accounting

    text = frame_accounting(97, 36, 30)
    assert "followed in 36, lost in 30" in text and "31 lie outside its track" in text


def test_agreeing_estimates_say_nothing_and_real_weights_are_not_demonstrations() -> None:
    from fdin.app.rendering import disagreement
    from fdin.results import GenderEstimate

    assert disagreement(GenderEstimate(0.8), GenderEstimate(0.9), demonstration=True) is None
    text = disagreement(GenderEstimate(0.2), GenderEstimate(0.9), demonstration=False)
    assert "FDIN (facial dynamics) say male" in text and "demonstrat" not in text


def test_consent_hint_on_buttons_examples_only_fill_and_api_help(fakes, tmp_path, monkeypatch) -> None:
    from fdin.app import texts

    monkeypatch.setenv("FDIN_CACHE_DIR", str(tmp_path))
    ex.example_photos()
    demo = build_demo(fakes, examples="lazy")
    buttons = [b for b in demo.blocks.values() if isinstance(b, gr.Button) and b.elem_id]
    assert all(b.value == texts.CONSENT_HINT for b in buttons)
    consent = next(fn for fn in demo.fns.values() if fn.name == "<lambda>" and len(fn.outputs) == len(buttons))
    enabled = consent.fn(True)
    assert [u.value for u in enabled] == ["Analyse video", texts.LIVE_BUTTON, "Relate faces", "Detect faces"]
    assert all(u.interactive is True for u in enabled)
    assert all(u.interactive is False and u.value == texts.CONSENT_HINT for u in consent.fn(False))
    # examples fill the input only: nothing but the (gated) buttons runs a model
    from fdin.app.layout import RawImage, RawVideo

    datasets = {b._id for b in demo.blocks.values() if isinstance(b, gr.Dataset)}
    example_fns = [fn for fn in demo.fns.values() if {i._id for i in fn.inputs} & datasets]
    assert datasets and example_fns
    assert all(isinstance(o, (RawImage, RawVideo, gr.Dataset)) for fn in example_fns for o in fn.outputs)
    assert "take no consent argument" in texts.API_MARKDOWN


def test_api_help_matches_the_endpoints(fakes) -> None:
    import re

    from fdin.app import texts

    info = build_demo(fakes, examples="off").get_api_info()["named_endpoints"]
    for name, count in re.findall(r"`(/\w+)` returns (\d+) values", texts.API_MARKDOWN):
        assert len(info[name]["returns"]) == int(count), name
    assert len(re.findall(r"returns (\d+) values", texts.API_MARKDOWN)) == 3
    assert "7860" not in texts.API_MARKDOWN  # no hard-coded port: the app may listen elsewhere
    labels = [r["label"] for ep in info.values() for r in ep["returns"]]
    assert not any(re.fullmatch(r"value_\d+", str(label)) for label in labels), labels


# --- how sure, nothing stale -----------------------------------------------------------
def test_uncertain_band_and_sentences_never_recommend_an_uncertain_estimate() -> None:
    from fdin.app.rendering import age_text, disagreement, gender_text
    from fdin.labels import gender_call
    from fdin.results import AgeEstimate, GenderEstimate

    assert [gender_call(p) for p in (0.0, 0.25, 0.26, 0.5, 0.74, 0.75, 1.0)] == [
        "male", "male", "uncertain", "uncertain", "uncertain", "female", "female"]
    assert gender_call(0.9, 0.25) == "uncertain"  # frames that disagree: an average is not a label
    # the astronaut example: appearance 0.48 +- 0.34 beside FDIN 1.00
    shown = gender_text(GenderEstimate(0.48, 0.34))
    assert shown == "uncertain (52% male, varies ±34 points over frames)"
    text = disagreement(GenderEstimate(1.0), GenderEstimate(0.48, 0.34), demonstration=True)
    assert "Apparent gender: uncertain" in text and "No gender label should be read" in text
    assert "Go by" not in text and "Trust" not in text
    # a sure appearance estimate against demonstration weights: go by the appearance model
    text = disagreement(GenderEstimate(0.02), GenderEstimate(0.98, 0.02), demonstration=True)
    assert "disagree" in text and "Go by the appearance model" in text
    # ages: 27 +- 2 against 46 +- 5 disagree; an uncertain age is never recommended
    text = disagreement(None, None, demonstration=True, appearance_age=AgeEstimate(27, 2),
                        dynamics_age=AgeEstimate(46, 5))
    assert "two age estimates disagree" in text and "Go by the appearance model's age" in text
    text = disagreement(None, None, demonstration=True, appearance_age=AgeEstimate(27, 12),
                        dynamics_age=AgeEstimate(60, 5))
    assert "Go by" not in text and "Treat the apparent age as uncertain" in text
    assert disagreement(None, None, demonstration=True, appearance_age=AgeEstimate(30, 3),
                        dynamics_age=AgeEstimate(36, 4)) is None
    assert age_text(AgeEstimate(33, 12)) == "uncertain: about 33 years (± 12)"


def test_a_new_input_clears_every_output_of_its_tab(fakes) -> None:
    demo = build_demo(fakes, examples="off")
    clears = [fn for fn in demo.fns.values() if getattr(fn.fn, "__name__", "") == "clear_outputs"]
    by_input = {fn.targets[0][0]: fn for fn in clears if fn.targets[0][1] == "change"}
    ids = {b.elem_id: k for k, b in demo.blocks.items() if getattr(b, "elem_id", None)}
    named = {fn.api_name: fn for fn in demo.fns.values()}
    for elem_id, api in (("video-in", "analyze_video"), ("photo-a", "relate_photos"), ("photo-b", "relate_photos"),
                         ("faces-in", "detect_faces")):
        cleared = {b._id for b in by_input[ids[elem_id]].outputs}
        assert {b._id for b in named[api].outputs} <= cleared, elem_id
        assert by_input[ids[elem_id]].fn() is not None


def test_the_preview_note_is_only_for_videos_the_server_can_read(handlers, tmp_path) -> None:
    from fdin.app.texts import PREVIEW_NOTE

    text = tmp_path / "holiday.mp4"
    text.write_text("not a video at all\n" * 20)
    video = tmp_path / "phone.mov"
    video.write_bytes(b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  " + b"\x00" * 64)
    assert handlers.preview_note(str(video), True) == ""  # the browser plays it: nothing to say
    assert handlers.preview_note(str(video), False) == PREVIEW_NOTE
    note = handlers.preview_note(str(text), False)
    assert "cannot be analysed" in note and "can read it" not in note

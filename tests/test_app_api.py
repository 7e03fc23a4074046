"""The launched app on loopback, called like a user of the API would (gradio_client), plus the
hardening checks of reliability R-02, R-03, R-06, R-07 and R-30."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file

from fdin.app import build_demo, settings
from fdin.app.guard import PathAlias
from tests.app_support import (
    HAVE_FDIN_WEIGHTS,
    NO_FDIN_WEIGHTS,
    astronaut_photo,
    face_crop,
    group_photo,
    launched,
    smile_clip,
    text_as,
)

pytestmark = pytest.mark.slow

ENDPOINTS = {"/analyze_video", "/relate_photos", "/detect_faces"}


@pytest.fixture(scope="module")
def app():
    with launched() as demo:
        yield demo


@pytest.fixture(scope="module")
def client(app, tmp_path_factory) -> Client:
    return Client(app.local_url, verbose=False, analytics_enabled=False,
                  download_files=str(tmp_path_factory.mktemp("client-downloads")))


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("api-media")


# --- the endpoints ---------------------------------------------------------------------------------
def test_detect_faces_endpoint(client) -> None:
    payload, image, _status, table = client.predict(handle_file(str(group_photo())), api_name="/detect_faces")
    assert len(payload["faces"]) == 6 and len(payload["faces"][0]["landmarks"]) == 68
    assert Path(image).is_file() and table["headers"][0] == "face" and len(table["value"]["data"]) == 6
    assert {f["expression"]["label"] for f in payload["faces"]} <= {"happy", "neutral"}


def test_relate_photos_endpoint_two_photos(client, media) -> None:
    payload, image, table, chart, matrix = client.predict(
        handle_file(str(astronaut_photo())), handle_file(str(face_crop(media))), api_name="/relate_photos")
    assert payload["mode"] == "two_photos" and len(payload["pairs"]) == 1
    assert len(payload["pairs"][0]["traits"]) == 8
    assert Path(image).is_file() and table["headers"][0] == "face" and matrix is None
    figure = json.loads(chart["plot"])
    assert figure["layout"]["height"] > 0 and len(figure["data"]) == 1


def test_relate_photos_endpoint_group_defaults(client) -> None:
    """Only the first argument is required: image B defaults to none and the trait to "warm"."""
    payload, *_, matrix = client.predict(handle_file(str(group_photo())), api_name="/relate_photos")
    assert payload["mode"] == "group" and len(payload["faces"]) == 6
    assert "Warm across all pairs" in matrix["plot"]


@pytest.mark.skipif(not HAVE_FDIN_WEIGHTS, reason=NO_FDIN_WEIGHTS)
def test_analyze_video_endpoint(client, media) -> None:
    out = client.predict(handle_file(str(smile_clip(media))), api_name="/analyze_video")
    payload, summary, clip, _keyframe, heat_gender, heat_age, dynamics, json_file = out
    assert payload["importance"]["regions"] and payload["dynamics"]["gender"]["label"] in ("female", "male")
    assert json.loads(Path(json_file).read_text())["top_relations"] == payload["top_relations"]
    clip = clip["video"] if isinstance(clip, dict) else clip
    assert Path(clip).suffix == ".mp4" and Path(clip).stat().st_size > 1000
    for fig in (heat_gender, heat_age, dynamics):
        assert fig["type"] == "plotly" and json.loads(fig["plot"])["layout"]["height"] > 0
    assert "from facial dynamics" in summary


def test_bad_file_gives_a_friendly_error_and_the_next_call_works(client, media) -> None:
    with pytest.raises(Exception) as excinfo:
        client.predict(handle_file(str(text_as(media, "not-a-photo.jpg"))), api_name="/detect_faces")
    text = str(excinfo.value)
    assert "not a photo" in text and "Traceback" not in text
    payload, *_ = client.predict(handle_file(str(astronaut_photo())), api_name="/detect_faces")
    assert len(payload["faces"]) == 1


# --- hardening -------------------------------------------------------------------------------------
def test_only_the_intended_endpoints_are_listed(app) -> None:
    info = httpx.get(app.local_url + "gradio_api/info").json()
    assert set(info["named_endpoints"]) == ENDPOINTS
    assert info["unnamed_endpoints"] == {}


def test_monitoring_is_off(app) -> None:
    for path in ("monitoring", "monitoring/summary"):
        assert httpx.get(app.local_url + path).status_code in (403, 404)


@pytest.mark.parametrize("target", ["/etc/passwd", "weights", "app.py", "../../etc/passwd"])
def test_server_files_are_not_served(app, target) -> None:
    if target == "weights":
        from fdin.weights import weights_dir

        target = str(next(p for p in sorted(weights_dir().rglob("*.safetensors"))))
    response = httpx.get(app.local_url + "gradio_api/file=" + target)
    assert response.status_code in (403, 404), target
    assert b"root:" not in response.content


def test_no_flagging_and_no_share_and_no_ssr(app) -> None:
    config = httpx.get(app.local_url + "config").json()
    labels = json.dumps([c.get("props", {}).get("value") for c in config["components"]])
    assert "Flag" not in labels
    assert config.get("is_space") is not True and not app.share
    assert app.ssr_mode is False
    assert config.get("enable_monitoring") in (None, False)


def test_model_events_share_one_slot_and_the_queue_is_bounded(app) -> None:
    named = [fn for fn in app.fns.values() if fn.api_name in {e.strip("/") for e in ENDPOINTS}]
    assert len(named) == 3
    assert {fn.concurrency_id for fn in named} == {settings.MODEL_CONCURRENCY_ID}
    assert all(fn.concurrency_limit == settings.MODEL_CONCURRENCY for fn in named)
    # 16 places for the model events, 4 more that only live streams can take
    assert app._queue.max_size == settings.QUEUE_MAX_SIZE + settings.LIVE_MAX_STREAMS
    assert app._queue.fdin_admission.model_places == settings.QUEUE_MAX_SIZE


def test_consent_gates_the_buttons_in_the_ui(app) -> None:
    config = httpx.get(app.local_url + "config").json()
    buttons = [c for c in config["components"] if c.get("props", {}).get("elem_id") in
               {"analyze-btn", "relate-btn", "faces-btn"}]
    assert len(buttons) == 3 and all(b["props"]["interactive"] is False for b in buttons)


def test_upload_over_the_size_limit_is_refused(tmp_path) -> None:
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff\xd8" + b"\0" * 4096)
    with launched(max_file_size="1kb") as demo:
        response = httpx.post(demo.local_url + "gradio_api/upload", files={"files": ("big.jpg", big.read_bytes())})
        assert response.status_code == 413
        small = httpx.post(demo.local_url + "gradio_api/upload", files={"files": ("s.jpg", b"\xff\xd8" + b"\0" * 100)})
        assert small.status_code == 200


def test_uploads_are_deleted_by_delete_cache(monkeypatch) -> None:
    monkeypatch.setattr(settings, "DELETE_CACHE", (1, 1))
    with launched(build_demo(examples="off")) as demo:
        response = httpx.post(demo.local_url + "gradio_api/upload", files={"files": ("x.jpg", b"\xff\xd8" + b"1" * 64)})
        assert response.status_code == 200
        name = response.json()[0]  # the cache folder is named fdin-cache: in answers
        path = Path(name.replace(PathAlias.TOKEN, os.environ["GRADIO_TEMP_DIR"]))
        assert path.is_file()
        url = demo.local_url + "gradio_api/file=" + name
        assert httpx.get(url).status_code == 200
        deadline = time.monotonic() + 10
        while path.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not path.exists()
        assert httpx.get(url).status_code in (403, 404)


def test_production_delete_cache_removes_uploads_within_15_minutes() -> None:
    frequency, age = settings.DELETE_CACHE
    assert frequency + age <= 15 * 60


def test_example_events_are_private_and_load_only_the_servers_examples(tmp_path, monkeypatch) -> None:
    """With examples shown, even ``?all_endpoints=true`` lists only the three endpoints, and
    the example loaders take an index into the server's own list (an index past it, or a path, loads
    nothing)."""
    from fdin.app import examples as ex

    monkeypatch.setenv("FDIN_CACHE_DIR", str(tmp_path))
    ex.example_photos()
    with launched(build_demo(examples="lazy")) as demo:
        for query in ("", "?all_endpoints=true"):
            info = httpx.get(demo.local_url + "gradio_api/info" + query).json()
            assert set(info["named_endpoints"]) == ENDPOINTS and info["unnamed_endpoints"] == {}, query
        loaders = [fn for fn in demo.fns.values() if getattr(fn.fn, "__name__", "") == "load_example"]
        assert loaders and all(fn.api_visibility == "private" for fn in loaders)
        for fn in loaders:
            for data in ([99], ["/etc/passwd"], [{"path": "/etc/passwd"}]):
                response = httpx.post(demo.local_url + "gradio_api/run/predict",
                                      json={"data": data, "fn_index": fn._id, "session_hash": "s"}, timeout=30)
                assert response.status_code != 200 or "passwd" not in response.text, (data, response.text[:200])
                assert "root:" not in response.text


def test_json_payloads_hold_no_absolute_server_paths(client, media) -> None:
    """The JSON results name models and backends, never a file on the server (file outputs
    travel as Gradio file references into the instance's private folder, checked separately)."""
    import re

    absolute = re.compile(r"(^|[\s\"'=:(])/(tmp|home|work|root|usr|srv|opt|var|etc)/")
    faces, *_ = client.predict(handle_file(str(group_photo())), api_name="/detect_faces")
    relate, *_ = client.predict(handle_file(str(group_photo())), api_name="/relate_photos")
    for payload in (faces, relate):
        text = json.dumps(payload)
        assert not absolute.search(text), absolute.search(text)

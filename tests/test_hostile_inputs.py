"""Every hostile or edge-case input through the CLI and the app (R-17, R-18, R-36).

* The 62-case generated corpus (:mod:`media_corpus`) plus face clips built here (:data:`FACE_CASES`:
  a real face that smiles, no face, a face that leaves the frame, one frame of a face, a face clip
  longer than the app's 20 s limit) go through
  (a) the CLI in-process (``fdin.cli.main``: ``faces`` for photos, ``analyze`` for videos, one
  shared set of loaded models) and once as a subprocess (no traceback on stderr), and
  (b) the app's handlers (``fdin.app.Handlers.detect_faces``/``analyze_video``, which decode in the isolated
  child exactly as in production) for every case, and the launched app through ``gradio_client``
  for a representative subset (:data:`APP_SUBSET`), each followed by a valid request.
* Each call must give the expected result, or a one-line :class:`~fdin.errors.FdinError` sentence
  (CLI: exit code 2) / a ``gr.Error`` with the same sentence HTML-escaped (app), never a traceback,
  within :data:`DEADLINE_S`.
* Isolation through the app: the decoder of the app's decode path is replaced by one that SIGSEGVs,
  aborts or hangs (it runs in the child, like a real decoder); the handler answers with a friendly
  error within its timeout + 2 s and the next request succeeds.

Marker clips of the corpus have no face, so every *decodable* corpus video ends in "no usable face"
through ``analyze``: the expensive path (tracking + FDIN) runs on the face clips; the corpus checks
decoding, limits and error mapping end to end.
"""

from __future__ import annotations

import contextlib
import html
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gradio as gr
import media_corpus as mc
import numpy as np
import pytest

import fdin.analyze
import fdin.media
from fdin.app import Handlers, settings
from fdin.cli import main as cli_main
from fdin.commands.faces import is_image_file
from fdin.errors import MediaError
from tests import hostile_helpers
from tests.app_support import HAVE_FDIN_WEIGHTS, NO_FDIN_WEIGHTS, astronaut_photo, launched

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not HAVE_FDIN_WEIGHTS, reason=NO_FDIN_WEIGHTS)]

ui = Handlers()  # the app's handlers with the real (lazily loaded) predictors


@pytest.fixture(scope="module", autouse=True)
def _ui_workers_end_with_the_module():
    """``ui``'s analysis workers stop after this module (the module object outlives it)."""
    yield
    ui.predictors.close()

ROOT = Path(__file__).resolve().parent.parent
DEADLINE_S = 60.0          # per call; generous for a loaded 2-core machine (typical: well under 5 s)
NO_FACE = "No usable face was found"
CASES = {spec.name: spec for spec in mc.CASES}
# name -> (expected outcome of analyze: "ok" or a substring of the error, note)
FACE_CASES = {
    "face_smile": ("ok", "a real face (astronaut photo) performing a generated smile, 25 fps"),
    "face_none": (NO_FACE, "moving colour gradients: no face at all"),
    "face_leaves_frame": ("ok", "the smiling face slides out of the frame for its last second"),
    "face_one_frame": ("The face was tracked in only 1 frames", "a single frame of a face: too short"),
    "face_long_24s": ("ok", "24 s of a face at 4 fps: over the app's 20 s limit, analysed cut with a note"),
}
APP_SUBSET = ["mp4_cut_200", "mp4_cut_half", "hls_playlist", "png_as_mp4", "audio_only_mp4",
              "too_wide_video", "png_huge_header", "face_long_24s", "hostile_filename"]


def _no_progress(*args: Any, **kwargs: Any) -> None:
    return None


# --- inputs ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, mc.MediaCase]:
    return {case.name: case for case in mc.generate_corpus(tmp_path_factory.mktemp("hostile-corpus"))}


def _face_leaves(frames: np.ndarray, out_frames: int = 25) -> np.ndarray:
    """The last ``out_frames`` frames slide right until the picture (and the face) has left."""
    frames = frames.copy()
    n, _, w, _ = frames.shape
    for k in range(out_frames):
        shift = round(w * (k + 1) / out_frames * 1.05)
        i = n - out_frames + k
        moved = np.full_like(frames[i], 128)
        if shift < w:
            moved[:, shift:] = frames[i][:, : w - shift]
        frames[i] = moved
    return frames


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from fdin.media import write_video
    from tests.clips import no_face_clip, smile_frames

    folder = tmp_path_factory.mktemp("face-clips")
    smile = smile_frames(fps=25.0)
    loop = np.concatenate([smile, smile[::-1]])
    long_frames = np.concatenate([loop[::6]] * 8)[: 24 * 4]  # 24 s at 4 fps
    return {
        "face_smile": write_video(smile, 25.0, folder / "smile.mp4"),
        "face_none": no_face_clip(folder / "no_face.mp4"),
        "face_leaves_frame": write_video(_face_leaves(smile), 25.0, folder / "leaves.mp4"),
        "face_one_frame": write_video(smile[:1], 25.0, folder / "one_face_frame.mp4"),
        "face_long_24s": write_video(long_frames, 4.0, folder / "long_face.mp4"),
    }


@pytest.fixture(scope="module")
def shared_analyzer():
    """One set of loaded FDIN models for every in-process CLI ``analyze`` call (as the app does)."""
    with fdin.analyze.DynamicsAnalyzer() as analyzer:
        yield analyzer


@pytest.fixture()
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, shared_analyzer):
    """Run ``python -m fdin ...`` in-process: returns (exit code, stdout, stderr, seconds)."""
    monkeypatch.setattr(fdin.analyze, "DynamicsAnalyzer", lambda **kwargs: contextlib.nullcontext(shared_analyzer))

    def run(*argv: str) -> tuple[int, str, str, float]:
        capsys.readouterr()
        t0 = time.monotonic()
        code = cli_main(["-q", *argv])
        seconds = time.monotonic() - t0
        out, err = capsys.readouterr()
        return code, out, err, seconds

    return run


def _expected_error(case: mc.MediaCase, **read_kwargs: Any) -> MediaError | None:
    """The error fdin.media gives for ``case`` in-process (None if it decodes)."""
    try:
        if case.kind == "image":
            fdin.media.load_image(case.path)
        else:
            fdin.media.read_video(case.path, **read_kwargs)
    except MediaError as error:
        assert type(error) is case.expect, f"{case.name}: {type(error).__name__}, expected {case.expect}"
        return error
    assert case.expect == "ok", f"{case.name} decoded but {case.expect} was expected"
    return None


def _assert_friendly(message: str, *, path: Path | None = None) -> None:
    assert message and "Traceback" not in message and 'File "' not in message, message
    assert "\n" not in message.strip(), f"one line expected: {message!r}"
    if path is not None:
        assert str(path.parent) not in message, "messages never echo server paths"


def _cli_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), f"one 'error:' line expected, got {err!r}"
    return lines[0][len("error: "):]


# --- (a) the CLI -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(CASES))
def test_cli_corpus_case(name: str, corpus: dict[str, mc.MediaCase], cli, tmp_path: Path) -> None:
    case = corpus[name]
    out_json = tmp_path / "out.json"
    if case.kind == "image":
        code, _out, err, seconds = cli("faces", str(case.path), "--json", str(out_json))
        if not is_image_file(case.path):
            # `faces` decides photo vs video from the bytes: a non-image goes to the video loader (the
            # same error class, worded for videos); an MP4 named .jpg is tracked as the video it is.
            try:
                fdin.media.read_video(case.path)
            except MediaError as error:
                assert code == 2 and type(error) is case.expect
                assert _cli_error(err) == str(error)
            else:
                assert code == 0 and name == "video_as_image", err
                assert "tracks" in json.loads(out_json.read_text())
        elif (expected := _expected_error(case)) is None:
            assert code == 0, err
            payload = json.loads(out_json.read_text())
            assert isinstance(payload["faces"], list)
            if "size" in case.meta:
                assert (payload["image"]["height"], payload["image"]["width"]) == tuple(case.meta["size"])
        else:
            assert code == 2
            assert _cli_error(err) == str(expected)
    else:
        expected = _expected_error(case, target_fps=25.0)
        code, _out, err, seconds = cli("analyze", str(case.path), "--json", str(out_json))
        assert code == 2, f"{name}: the corpus clips have no face or cannot be decoded ({err!r})"
        message = _cli_error(err)
        if expected is None:
            assert message.startswith(NO_FACE), message
        else:
            assert message == str(expected)
    assert seconds < DEADLINE_S, f"{name} took {seconds:.1f} s"


@pytest.mark.parametrize("name", list(FACE_CASES))
def test_cli_face_case(name: str, faces: dict[str, Path], cli, tmp_path: Path) -> None:
    expect, _note = FACE_CASES[name]
    out_json = tmp_path / "out.json"
    code, _out, err, seconds = cli("analyze", str(faces[name]), "--json", str(out_json))
    if expect == "ok":
        assert code == 0, err
        payload = json.loads(out_json.read_text())
        assert payload["dynamics"]["gender"]["label"] in ("female", "male")
        if name == "face_leaves_frame":
            assert payload["face_track"]["found"] < payload["frames_analyzed"], payload["face_track"]
    else:
        assert code == 2
        message = _cli_error(err)
        assert expect in message, message
        if name == "face_one_frame":
            assert "at least 1 s" in message  # says what is needed, not just "failed"
    assert seconds < DEADLINE_S


def test_cli_subprocess_prints_one_line_and_no_traceback(corpus: dict[str, mc.MediaCase]) -> None:
    """The real entry point, as a user runs it: a crash-prone truncated MP4 → exit 2, one line."""
    case = corpus["mp4_cut_200"]
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "fdin", "-q", "analyze", str(case.path)], capture_output=True,
                          text=True, cwd=ROOT, timeout=DEADLINE_S * 2)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert _cli_error(done.stderr) == str(_expected_error(case, target_fps=25.0))
    assert time.monotonic() - t0 < DEADLINE_S * 2


# --- (b) the app's handlers, called directly -------------------------------------------------------
def _app_video_error(case: mc.MediaCase) -> MediaError | None:
    return _expected_error(case, max_duration=settings.VIDEO_MAX_DURATION_S, target_fps=settings.VIDEO_TARGET_FPS,
                           max_side=settings.VIDEO_MAX_SIDE)


@pytest.mark.parametrize("name", list(CASES))
def test_app_handler_corpus_case(name: str, corpus: dict[str, mc.MediaCase]) -> None:
    case = corpus[name]
    t0 = time.monotonic()
    if case.kind == "image":
        expected = _expected_error(case)
        if expected is None:
            payload, annotated, *_ = ui.detect_faces(str(case.path))
            assert isinstance(payload["faces"], list) and Path(annotated).read_bytes()[8:12] == b"WEBP"
            if "size" in case.meta:
                height, width = case.meta["size"]
                scale = min(1.0, settings.IMAGE_MAX_SIDE / max(height, width))  # decoded bounded
                assert (payload["image"]["height"], payload["image"]["width"]) == (round(height * scale),
                                                                                    round(width * scale))
        else:
            with pytest.raises(gr.Error) as excinfo:
                ui.detect_faces(str(case.path))
            assert excinfo.value.message == html.escape(str(expected))
    else:
        expected = _app_video_error(case)
        with pytest.raises(gr.Error) as excinfo:
            ui.analyze_video(str(case.path), progress=_no_progress)
        message = excinfo.value.message
        if expected is None:
            assert message.startswith(NO_FACE), message  # decoded fine; the marker clips hold no face
        else:
            assert message == html.escape(str(expected))
    if case.expect != "ok":
        _assert_friendly(excinfo.value.message, path=case.path)
    assert time.monotonic() - t0 < DEADLINE_S


@pytest.mark.parametrize("name", list(FACE_CASES))
def test_app_handler_face_case(name: str, faces: dict[str, Path]) -> None:
    expect, _note = FACE_CASES[name]
    t0 = time.monotonic()
    if expect == "ok":
        payload, summary, clip, *_ = ui.analyze_video(str(faces[name]), progress=_no_progress)
        assert payload["dynamics"]["gender"]["label"] in ("female", "male") and Path(clip).is_file()
        if name == "face_long_24s":
            assert payload["video"]["truncated"] is True and "Note:" in summary
            assert payload["video"]["timestamps_s"][-1] <= settings.VIDEO_MAX_DURATION_S if "timestamps_s" in \
                payload["video"] else True
        if name == "face_leaves_frame":
            assert payload["face_track"]["found"] < payload["frames_analyzed"]
    else:
        with pytest.raises(gr.Error) as excinfo:
            ui.analyze_video(str(faces[name]), progress=_no_progress)
        assert expect in excinfo.value.message
        _assert_friendly(excinfo.value.message, path=faces[name])
    assert time.monotonic() - t0 < DEADLINE_S


def test_app_handlers_still_serve_after_the_corpus(faces: dict[str, Path]) -> None:
    payload, *_ = ui.detect_faces(str(astronaut_photo()))
    assert len(payload["faces"]) == 1
    assert ui.analyze_video(str(faces["face_smile"]), progress=_no_progress)[0]["frames_analyzed"] > 0


# --- isolation through the app's decode path (item 2, R-18) ----------------------------------------
@pytest.mark.parametrize("fault", ["segfault", "abort"])
@pytest.mark.parametrize("handler", ["analyze_video", "detect_faces"])
def test_native_crash_in_the_app_decode_path(handler: str, fault: str, faces: dict[str, Path],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    decoder = getattr(hostile_helpers, f"{fault}_decoder")
    target, source = (("read_video", faces["face_smile"]) if handler == "analyze_video"
                      else ("load_image", astronaut_photo()))
    with monkeypatch.context() as patch:
        patch.setattr(fdin.media, target, decoder)  # what the isolated child runs for this request
        with pytest.raises(gr.Error) as excinfo:
            getattr(ui, handler)(str(source), **({"progress": _no_progress} if handler == "analyze_video" else {}))
    message = excinfo.value.message
    # the crash is reported as a crash, not waited out until the decode timeout
    assert "crashed" in message and "Try another file" in message and "longer than" not in message, message
    _assert_friendly(message, path=source)
    # the server process survived and the next request succeeds
    payload, *_ = ui.detect_faces(str(astronaut_photo()))
    assert len(payload["faces"]) == 1


@pytest.mark.parametrize("handler", ["analyze_video", "detect_faces"])
def test_decode_timeout_in_the_app_decode_path(handler: str, faces: dict[str, Path],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    short = 3.0
    target, source = (("read_video", faces["face_smile"]) if handler == "analyze_video"
                      else ("load_image", astronaut_photo()))
    with monkeypatch.context() as patch:
        patch.setattr(fdin.media, target, hostile_helpers.hanging_decoder)
        patch.setattr(settings, "VIDEO_TIMEOUT_S" if handler == "analyze_video" else "IMAGE_TIMEOUT_S", short)
        t0 = time.monotonic()
        with pytest.raises(gr.Error) as excinfo:
            getattr(ui, handler)(str(source), **({"progress": _no_progress} if handler == "analyze_video" else {}))
        elapsed = time.monotonic() - t0
    assert excinfo.value.message == f"Processing took longer than {short:g} s and was stopped."
    # it waited for the timeout (a lower bound holds under any load) and then stopped the child, which
    # would otherwise hang forever
    assert elapsed >= short - 0.5, f"answered after {elapsed:.1f} s"
    if handler == "analyze_video":
        assert ui.analyze_video(str(faces["face_smile"]), progress=_no_progress)[0]["frames_analyzed"] > 0
    else:
        assert len(ui.detect_faces(str(astronaut_photo()))[0]["faces"]) == 1


# --- (b') the launched app, through gradio_client ---------------------------------------------------
@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):
    from gradio_client import Client

    with launched() as demo:
        yield Client(demo.local_url, verbose=False, analytics_enabled=False,
                     download_files=str(tmp_path_factory.mktemp("hostile-downloads")))


def _subset_input(name: str, corpus: dict[str, mc.MediaCase], faces: dict[str, Path],
                  tmp_path: Path) -> tuple[Path, str, str | None]:
    """(file, api name, expected error text or None for success)."""
    if name in faces:
        return faces[name], "/analyze_video", None
    if name == "hostile_filename":  # a file name that is HTML, failing to decode
        path = tmp_path / "<img src=x onerror=alert(1)>.mp4"
        path.write_bytes(corpus["text_as_mp4"].path.read_bytes())
        return path, "/analyze_video", str(_expected_error(corpus["text_as_mp4"]))
    case = corpus[name]
    if case.kind == "image":
        return case.path, "/detect_faces", str(_expected_error(case))
    return case.path, "/analyze_video", str(_app_video_error(case))


@pytest.mark.parametrize("name", APP_SUBSET)
def test_launched_app_hostile_then_valid(name: str, client, corpus: dict[str, mc.MediaCase],
                                         faces: dict[str, Path], tmp_path: Path) -> None:
    from gradio_client import handle_file

    path, api_name, expected = _subset_input(name, corpus, faces, tmp_path)
    t0 = time.monotonic()
    if expected is None:
        payload, summary, *_ = client.predict(handle_file(str(path)), api_name=api_name)
        assert payload["video"]["truncated"] is True and "Note:" in summary
    else:
        with pytest.raises(Exception) as excinfo:
            client.predict(handle_file(str(path)), api_name=api_name)
        text = str(excinfo.value)
        assert html.escape(expected) in text, text
        assert "Traceback" not in text and "onerror" not in text and "<img" not in text
    assert time.monotonic() - t0 < DEADLINE_S
    payload, *_ = client.predict(handle_file(str(astronaut_photo())), api_name="/detect_faces")
    assert len(payload["faces"]) == 1, "the server answers the next (valid) request"


def test_launched_app_survives_a_decoder_crash(client, faces: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from gradio_client import handle_file

    with monkeypatch.context() as patch:
        patch.setattr(fdin.media, "read_video", hostile_helpers.segfault_decoder)
        with pytest.raises(Exception) as excinfo:
            client.predict(handle_file(str(faces["face_smile"])), api_name="/analyze_video")
    # reported as a crash at once, not waited out until the decode timeout
    assert "crashed" in str(excinfo.value) and "longer than" not in str(excinfo.value)
    assert "Traceback" not in str(excinfo.value)
    payload, *_ = client.predict(handle_file(str(faces["face_smile"])), api_name="/analyze_video")
    assert payload["frames_analyzed"] > 0

"""fdin.isolation: native crashes, timeouts, memory limits and errors in the child never take the
parent down, and results come back intact (reliability R-18)."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import isolation_helpers as helpers
import media_corpus as mc
import numpy as np
import pytest

from fdin.errors import (
    FdinError,
    MediaLimitError,
    ProcessingTimeoutError,
    UnsupportedMediaError,
    WorkerCrashedError,
)
from fdin.isolation import IsolatedCallError, load_image_isolated, read_video_isolated, run_isolated
from fdin.media import Video, load_image, read_video


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, mc.MediaCase]:
    return {case.name: case for case in mc.generate_corpus(tmp_path_factory.mktemp("corpus"))}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("crasher", [helpers.segfault, helpers.abort], ids=["SIGSEGV", "SIGABRT"])
def test_native_crash_becomes_friendly_error(crasher, tmp_path: Path) -> None:
    with pytest.raises(WorkerCrashedError, match="crashed") as info:  # reported as a crash, not a timeout
        run_isolated(crasher, timeout=10.0, tmp_dir=tmp_path)
    assert "Signals" not in str(info.value) and str(info.value).endswith(".")
    assert run_isolated(helpers.sleep, 0.0, timeout=10.0) == 0.0      # the next request succeeds
    assert list(tmp_path.iterdir()) == []                             # exchange directory removed


def test_timeout_kills_the_child(tmp_path: Path) -> None:
    pid_file, marker = tmp_path / "pid", tmp_path / "marker"
    with pytest.raises(ProcessingTimeoutError, match=r"longer than 1\.5 s"):  # the child would sleep 30 s
        run_isolated(helpers.record_pid_then_sleep, pid_file, 30.0, timeout=1.5)
    assert not _alive(int(pid_file.read_text()))                             # killed and reaped
    assert run_isolated(helpers.write_marker, marker, timeout=10.0) == "ok"   # next call succeeds
    assert marker.read_text() == "ran"


def test_child_is_a_different_process_and_gone_afterwards() -> None:
    child = run_isolated(helpers.pid)
    assert child != os.getpid()
    deadline = time.monotonic() + 2.0
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(child)


def test_fdin_errors_keep_type_and_message() -> None:
    with pytest.raises(MediaLimitError) as info:
        run_isolated(helpers.raise_media_limit, "The video is too long.")
    assert type(info.value) is MediaLimitError and str(info.value) == "The video is too long."


def test_other_exceptions_are_wrapped() -> None:
    with pytest.raises(IsolatedCallError) as info:
        run_isolated(helpers.raise_value_error)
    assert info.value.type_name == "ValueError" and "a bug" in str(info.value)
    assert "raise_value_error" in info.value.remote_traceback
    assert not isinstance(info.value, FdinError)      # programming errors are not user errors


def test_memory_limit_fails_cleanly() -> None:
    with pytest.raises(WorkerCrashedError, match="more memory than allowed") as info:
        run_isolated(helpers.allocate, 3 << 30, memory_limit_bytes=768 << 20)
    assert "(0.8 GB)" in str(info.value)  # 768 MiB, stated once, with one decimal
    assert run_isolated(helpers.allocate, 16 << 20, memory_limit_bytes=768 << 20) == 16


def test_limits_are_set_in_the_child() -> None:
    got = run_isolated(helpers.limits, memory_limit_bytes=1 << 30)
    assert got == {"as": 1 << 30, "core": 0}


def test_round_trip_of_values() -> None:
    arrays = {"u8": np.arange(24, dtype=np.uint8).reshape(2, 3, 4), "f64": np.array([0.5, -1.25]),
              "bool": np.array([True, False]), "empty": np.zeros((0, 3), np.float32)}
    args = (1, 2.5, "text", None, True, b"\x00\xffbytes", Path("/tmp/x"), (1, (2, 3)), [4, 5], math.inf,
            np.float32(1.5))
    result = run_isolated(helpers.echo, *args, arrays=arrays, nested={"a": [1, {"b": np.int64(7)}]})
    back = result["args"]
    assert back[:10] == (1, 2.5, "text", None, True, b"\x00\xffbytes", Path("/tmp/x"), (1, (2, 3)), [4, 5],
                         math.inf)
    assert back[10] == 1.5
    for key, value in arrays.items():
        got = result["kwargs"]["arrays"][key]
        assert got.dtype == value.dtype and got.shape == value.shape
        np.testing.assert_array_equal(got, value)
    assert result["kwargs"]["nested"] == {"a": [1, {"b": 7}]}
    pair = run_isolated(helpers.make_pair)
    assert isinstance(pair, helpers.Pair) and pair.right == (1, 2)
    np.testing.assert_array_equal(pair.left, np.arange(6, dtype=np.float32).reshape(2, 3))


def test_large_arrays_come_back_writable_and_equal() -> None:
    expected = helpers.frames(30, 90, 160)
    got = run_isolated(helpers.frames, 30, 90, 160)
    np.testing.assert_array_equal(got, expected)
    got[0, 0, 0] = 1                                   # copy-on-write mapping: writable, private
    assert type(got) is np.ndarray


def test_bad_calls_are_programming_errors() -> None:
    with pytest.raises(TypeError):
        run_isolated(lambda: 1)
    with pytest.raises(TypeError):
        run_isolated(helpers.echo, object())
    with pytest.raises(ValueError):
        run_isolated(helpers.sleep, 0, timeout=0)


def test_read_video_isolated_matches_in_process(corpus: dict[str, mc.MediaCase]) -> None:
    path = corpus["rot90"].path
    isolated = read_video_isolated(path, timeout=30.0)
    local = read_video(path)
    assert isinstance(isolated, Video)
    np.testing.assert_array_equal(isolated.frames, local.frames)
    np.testing.assert_array_equal(isolated.timestamps, local.timestamps)
    assert isolated.to_json_dict() == local.to_json_dict()
    with pytest.raises(UnsupportedMediaError, match="playlist"):
        read_video_isolated(corpus["hls_playlist"].path, timeout=30.0)


def test_load_image_isolated_bytes_and_path(corpus: dict[str, mc.MediaCase]) -> None:
    path = corpus["exif_orientation_6"].path
    np.testing.assert_array_equal(load_image_isolated(path.read_bytes()), load_image(path))
    np.testing.assert_array_equal(load_image_isolated(path), load_image(path))
    with pytest.raises(MediaLimitError):
        load_image_isolated(corpus["png_huge_header"].path)


def test_whole_video_corpus_through_the_child(corpus: dict[str, mc.MediaCase]) -> None:
    """Every video case gives the same outcome isolated as in-process (and nothing crashes)."""
    for case in corpus.values():
        if case.kind != "video":
            continue
        if case.expect == "ok":
            video = read_video_isolated(case.path, timeout=30.0)
            assert len(video) == len(read_video(case.path)), case.name
        else:
            with pytest.raises(case.expect):  # type: ignore[arg-type]
                read_video_isolated(case.path, timeout=30.0)

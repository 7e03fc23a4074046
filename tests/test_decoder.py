"""fdin.isolation.decoder: the decode worker process gives exactly read_video's Video, reports errors
as the same FdinError, survives a consumer that stops early, and is reused."""

from __future__ import annotations

import numpy as np
import pytest

from fdin.errors import UnsupportedMediaError, WorkerCrashedError
from fdin.isolation.decoder import DecoderPool
from fdin.media import DecodeLimits, read_video, write_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (40, 72, 96, 3), dtype=np.uint8)
    return write_video(frames, 30.0, tmp_path_factory.mktemp("dec") / "c.mp4")


@pytest.fixture(scope="module")
def pool():
    p = DecoderPool()
    yield p
    p.close()


@pytest.mark.parametrize("kwargs", [{}, {"target_fps": 25}, {"max_frames": 10}, {"max_side": 48}])
def test_worker_gives_read_videos_video(pool, clip, kwargs):
    worker = pool.acquire()
    try:
        stream = worker.decode(clip, DecodeLimits.of(None, **kwargs))
        frames = [f.copy() for f in stream]
        video = stream.video()
    finally:
        pool.release(worker)
    ref = read_video(clip, **kwargs)
    assert np.array_equal(video.frames, ref.frames) and np.array_equal(np.stack(frames), ref.frames)
    assert np.array_equal(video.timestamps, ref.timestamps)
    assert (video.fps, video.source_fps, video.truncated, video.notes, video.decoded_frames, video.codec) == (
        ref.fps, ref.source_fps, ref.truncated, ref.notes, ref.decoded_frames, ref.codec)


def test_errors_come_back_as_themselves_and_the_worker_is_reused(pool, clip, tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n" * 20)
    worker = pool.acquire()
    pid = worker.proc.pid
    with pytest.raises(UnsupportedMediaError):
        worker.decode(text, DecodeLimits()).video()
    assert worker.alive()
    assert len(worker.decode(clip, DecodeLimits()).video()) == 40  # the same process, next request
    pool.release(worker)
    again = pool.acquire()
    assert again.proc.pid == pid
    pool.release(again)


def test_a_crashed_worker_is_an_fdin_error_and_not_reused(pool, clip):
    worker = pool.acquire()
    worker.proc.kill()
    worker.proc.wait()
    with pytest.raises(WorkerCrashedError):
        worker.decode(clip, DecodeLimits()).video()
    pool.release(worker)
    fresh = pool.acquire()
    assert fresh is not worker and len(fresh.decode(clip, DecodeLimits()).video()) == 40
    pool.release(fresh)


def test_analyzer_kills_a_worker_left_mid_video(clip, monkeypatch, request):
    """A tracker that fails after one frame must not leave the rest of that video for the next call."""
    import fdin.perception as perception
    from fdin.analyze import DynamicsAnalyzer

    def failing_track(frames, backend, **kwargs):
        next(iter(frames))
        raise RuntimeError("tracker failed")

    monkeypatch.setattr(perception, "get_backend", lambda name=None: object(), raising=False)
    monkeypatch.setattr(perception, "track_faces", failing_track, raising=False)
    analyzer = DynamicsAnalyzer()
    request.addfinalizer(analyzer.close)
    with pytest.raises(RuntimeError, match="tracker failed"):
        analyzer.analyze(clip)
    counted: list[int] = []
    monkeypatch.setattr(perception, "track_faces", lambda frames, backend, **k: counted.append(len(list(frames))) or [],
                        raising=False)
    with pytest.raises(Exception, match="No usable face"):
        analyzer.analyze(clip)
    assert counted == [len(read_video(clip, target_fps=25))]


def test_a_worker_started_by_a_thread_that_ended_keeps_working(clip):
    """Workers are started from short-lived threads (app requests, preloading): they must outlive them."""
    import threading
    import time

    pool = DecoderPool()
    try:
        thread = threading.Thread(target=pool.prestart)
        thread.start()
        thread.join()
        time.sleep(0.5)
        worker = pool.acquire()
        assert worker.alive() and len(worker.decode(clip, DecodeLimits()).video()) == 40
        pool.release(worker)
    finally:
        pool.close()


def test_a_worker_ends_when_its_owner_is_forgotten():
    """An owner collected without close() (a fixture that forgot it, a CLI run in-process) takes its
    worker with it: the child's stdin closes and it exits, instead of waiting for the session's end."""
    import gc
    import time

    from tests.isolation_helpers import worker_pids

    before = set(worker_pids())
    pool = DecoderPool()
    pool.prestart()
    (pid,) = set(worker_pids()) - before
    del pool
    gc.collect()
    deadline = time.monotonic() + 10
    while pid in worker_pids() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pid not in worker_pids()

"""fdin.analysis_pool: analyses in worker processes give exactly the in-process result, two run side
by side, errors come back as themselves, a dead or abandoned worker is replaced, and nothing of the
video is left in the exchange folder."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from clips import no_face_clip, smile_clip

from fdin.analysis_pool import PooledAnalyzer
from fdin.errors import NoFaceError, WorkerCrashedError
from fdin.isolation import workers as worker_module
from fdin.media import read_video


@pytest.fixture(scope="module")
def pooled():
    analyzer = PooledAnalyzer(workers=2, decode_worker=False)
    yield analyzer
    analyzer.close()


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    # a real photo (scikit-image's astronaut) smiling with head motion
    return read_video(smile_clip(tmp_path_factory.mktemp("pool") / "smile.mp4", head_motion=True, seed=1))


@pytest.fixture
def exchange(tmp_path, monkeypatch):
    """Exchange folders go under ``tmp_path`` (so the test sees exactly what a request leaves behind)."""
    made: list[Path] = []

    def exchange_dir(prefix: str, needed_bytes: int) -> Path:
        folder = tmp_path / f"{prefix}{len(made)}"
        folder.mkdir(mode=0o700)
        made.append(folder)
        return folder

    monkeypatch.setattr("fdin.analysis_pool.exchange_dir", exchange_dir)
    return made


def test_a_worker_gives_the_in_process_result(pooled, video, exchange):
    seen: list[tuple[str, float]] = []
    result = pooled.analyze(video, progress=lambda stage, fraction: seen.append((stage, fraction)))
    local = pooled.local.analyze(video)
    assert np.array_equal(result.landmarks, local.landmarks)
    assert np.array_equal(result.frame_indices, local.frame_indices)
    assert np.allclose(result.trajectories, local.trajectories)
    for target in ("gender", "age"):
        assert np.allclose(result.importance.by_target[target], local.importance.by_target[target], atol=1e-6)
    ours, theirs = result.to_json_dict(), local.to_json_dict()
    assert ours.keys() == theirs.keys()
    assert ours["dynamics"]["gender"]["p_female"] == pytest.approx(theirs["dynamics"]["gender"]["p_female"], abs=1e-6)
    assert ours["dynamics"]["age"] == pytest.approx(theirs["dynamics"]["age"], abs=1e-4)
    assert ours["appearance"] == theirs["appearance"]
    assert ours["face_track"] == theirs["face_track"] and ours["models"] == theirs["models"]
    assert [r["regions"] for r in ours["top_relations"]] == [r["regions"] for r in theirs["top_relations"]]
    assert ("track", 1.0) in seen and seen[-1] == ("dynamics", 1.0)
    assert exchange and all(not folder.exists() for folder in exchange)


def test_two_analyses_run_in_two_processes(pooled, video):
    pids: list[int] = []
    original = type(pooled.pool).acquire

    def acquire(self, **kwargs):
        worker = original(self, **kwargs)
        pids.append(worker.proc.pid)
        return worker

    results: list[object] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        try:
            results.append(pooled.analyze(video))
        except BaseException as error:
            errors.append(error)

    type(pooled.pool).acquire = acquire
    try:
        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        type(pooled.pool).acquire = original
    assert not errors, errors
    assert len(set(pids)) == 2
    assert np.array_equal(results[0].landmarks, results[1].landmarks)


def test_errors_come_back_as_themselves_and_the_worker_is_kept(pooled, tmp_path, exchange):
    empty = read_video(no_face_clip(tmp_path / "none.mp4"))
    worker = pooled.pool.acquire()
    try:
        with pytest.raises(NoFaceError, match="No usable face"):
            worker.analyze(empty)
        assert worker.alive()
    finally:
        pooled.pool.release(worker)
    assert all(not folder.exists() for folder in exchange)


def test_a_dead_worker_is_an_fdin_error_and_is_replaced(pooled, video):
    worker = pooled.pool.acquire()
    worker.wait_ready()
    worker.proc.kill()
    worker.proc.wait()
    with pytest.raises(WorkerCrashedError):
        worker.analyze(video)
    pooled.pool.release(worker)
    assert pooled.analyze(video).face_track.found > 0


def test_a_worker_that_dies_during_a_request_is_replaced_at_once(pooled, video):
    pooled.pool.prestart(2)
    pooled.pool.wait_ready()
    first = pooled.pool._idle[0]

    def die(stage: str, fraction: float) -> None:
        if stage == "track" and first.alive():
            first.proc.kill()

    with pytest.raises(WorkerCrashedError):
        pooled.analyze(video, progress=die)
    assert first not in pooled.pool._idle and len(pooled.pool._idle) == 2  # a fresh one is starting
    assert all(w.alive() for w in pooled.pool._idle)


def test_an_abandoned_analysis_does_not_reach_the_next_one(pooled, video, exchange):
    """A caller that stops mid-analysis (its progress callback raises, as a cancelled request does)
    leaves no answer behind for the next request: that worker is stopped, the folder removed."""
    worker = pooled.pool.acquire()

    def cancel(stage: str, fraction: float) -> None:
        if stage == "track" and fraction > 0:
            raise KeyboardInterrupt

    try:
        with pytest.raises(KeyboardInterrupt):
            worker.analyze(video, progress=cancel)
        assert not worker.alive()
    finally:
        pooled.pool.release(worker)
    assert all(not folder.exists() for folder in exchange)
    assert pooled.analyze(video).face_track.found > 0


def test_the_frames_leave_the_exchange_folder_once_mapped(pooled, video, monkeypatch, tmp_path):
    """The worker unlinks the frames as soon as it has mapped them: while it tracks, the folder holds
    no copy of the video (checked from the first progress line)."""
    folder = tmp_path / "x"
    monkeypatch.setattr("fdin.analysis_pool.exchange_dir", lambda prefix, n: folder.mkdir(mode=0o700) or folder)
    during: list[list[str]] = []
    pooled.analyze(video, progress=lambda stage, f: during.append(sorted(p.name for p in folder.iterdir())))
    assert during and during[0] == [] and not folder.exists()


def test_exchange_uses_ram_only_when_it_has_room(monkeypatch, tmp_path):
    class Stat:
        f_frsize = 4096
        f_bavail = (10 << 20) // 4096  # 10 MB free, as in a small container /dev/shm

    monkeypatch.setattr(worker_module.os, "statvfs", lambda path: Stat())
    monkeypatch.setattr(worker_module.tempfile, "tempdir", str(tmp_path))
    small = worker_module.exchange_dir("t-", 1 << 20)
    try:
        assert small.parent == tmp_path  # 1 MB + the margin does not fit in 10 MB
        assert (small.stat().st_mode & 0o777) == 0o700
    finally:
        worker_module.remove_dir(small)
    Stat.f_bavail = (1 << 30) // 4096
    if Path("/dev/shm").is_dir():
        roomy = worker_module.exchange_dir("t-", 1 << 20)
        try:
            assert roomy.parent == Path("/dev/shm")
        finally:
            worker_module.remove_dir(roomy)


def test_a_purge_racing_fresh_exchange_folders_never_takes_a_live_one(monkeypatch, tmp_path):
    """A start's purge that runs while another process makes exchange folders must never read a
    half-written owner marker as a dead run's: each folder appears with its whole marker (written
    aside and renamed in), and no staging file is left."""
    import threading

    monkeypatch.setattr(worker_module.tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(worker_module.os, "statvfs", lambda path: (_ for _ in ()).throw(OSError("no shm")))
    made: list[Path] = []
    stop = threading.Event()

    def make() -> None:
        while not stop.is_set() and len(made) < 400:
            made.append(worker_module.exchange_dir("fdin-ana-", 1))

    maker = threading.Thread(target=make)
    maker.start()
    removed = 0
    try:
        while maker.is_alive():
            removed += worker_module.purge_exchange_leftovers((str(tmp_path),))
    finally:
        stop.set()
        maker.join()
    assert removed == 0 and all(folder.is_dir() for folder in made)
    for folder in made:
        pid, started = (folder / worker_module.OWNER_MARKER).read_text().split()
        assert int(pid) == os.getpid() and started
        assert sorted(p.name for p in folder.iterdir()) == [worker_module.OWNER_MARKER]


def test_no_exchange_folder_is_left_anywhere(pooled, video, tmp_path):
    """With the real exchange folders (``/dev/shm`` or the temp dir): none is left after a result,
    an error or an abandoned analysis."""
    import tempfile

    roots = [Path("/dev/shm"), Path(tempfile.gettempdir())]

    def folders() -> set[Path]:
        return {p for root in roots if root.is_dir() for p in root.glob("fdin-ana-*")}

    before = folders()
    pooled.analyze(video)
    with pytest.raises(NoFaceError):
        pooled.analyze(read_video(no_face_clip(tmp_path / "none.mp4")))
    with pytest.raises(KeyboardInterrupt):
        pooled.analyze(video, progress=lambda stage, f: (_ for _ in ()).throw(KeyboardInterrupt) if stage == "track" else None)
    assert folders() <= before


def test_max_duration_reaches_the_worker_and_coverage_says_so(pooled, video):
    reason = "the test asks for 2 s"
    result = pooled.analyze(video, max_duration=2.0, duration_reason=reason)
    local = pooled.local.analyze(video, max_duration=2.0, duration_reason=reason)
    assert result.frames_analyzed == local.frames_analyzed < len(video)
    assert not result.coverage.whole and result.coverage.end_s <= 2.0 + 1e-6
    assert any(reason in note and "0-2" in note for note in result.coverage.notes)
    assert result.coverage == local.coverage
    assert pooled.analyze(video).coverage.whole  # the limit was this request's only


class _SlowWorker:
    """Stands in for a worker process whose start takes a while (what opens the race window)."""

    started = 0

    def __init__(self) -> None:
        time.sleep(0.2)
        _SlowWorker.started += 1
        self.dead = False

    def alive(self) -> bool:
        return not self.dead

    def close(self) -> None:
        self.dead = True


def test_jobs_whose_workers_died_at_once_never_start_more_workers_than_the_pool_keeps():
    """Two jobs of a pool of two are cancelled together (their workers killed) while two more wait
    for a slot: each cancelled job starts its replacement before it gives its slot back, and the
    replacements being started count, so the waiting jobs take them: never more than two workers
    (CI once saw three when a waiting job started its own beside a replacement)."""
    from fdin.isolation.workers import WorkerPool

    _SlowWorker.started = 0
    pool = WorkerPool(_SlowWorker, keep=2, max_workers=2)
    first = [pool.acquire(), pool.acquire()]
    assert _SlowWorker.started == 2
    taken: list[_SlowWorker] = []

    def waiting_job() -> None:
        taken.append(pool.acquire())

    def cancelled_job(worker: _SlowWorker) -> None:
        worker.close()  # killed on cancel
        pool.release(worker, replace_dead=True)

    threads = [threading.Thread(target=waiting_job) for _ in range(2)]
    threads += [threading.Thread(target=cancelled_job, args=(w,)) for w in first]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(taken) == 2 and all(w.alive() for w in taken)
    assert _SlowWorker.started == 4, "two replacements, nothing more"
    assert pool.size() == 2

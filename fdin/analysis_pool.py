"""Video analysis in worker *processes*, so two analyses run on two cores (threads of one process share the GIL).

Why: the per-frame work of an analysis (yuface detection, dlib's 68-point fit) holds the GIL, so two
analyses on threads of one process (the app's two model slots) run one after the other: two took
2x the time of one. In an :class:`AnalysisWorker` each analysis has an interpreter of its own.
:class:`PooledAnalyzer` is the analyzer the app uses: decoded videos go to its workers, everything
else (paths, landmarks, provenance) to an ordinary :class:`~fdin.analyze.DynamicsAnalyzer`.

How: each worker is a long-lived ``python -I`` child (:class:`~fdin.isolation.workers.LineWorker`)
that builds a :class:`~fdin.analyze.DynamicsAnalyzer` with the parent's model sources once, at
start, and says ``ready``. Per analysis the parent writes the decoded :class:`~fdin.media.Video`
into a private ``0700`` exchange folder with the pickle-free codec (frames as one ``.npy``; the child
maps it copy-on-write and unlinks it at once) and sends one JSON line; the child streams ``p <stage> <fraction>`` progress
lines and ends with ``end`` and the :class:`~fdin.analyze.TraitResult` (codec JSON + ``.npy``), or
``err`` and the error, which the parent re-raises as the same :class:`~fdin.errors.FdinError`. The
parent deletes the folder when the answer is in (or the worker died): nothing of the video is left.

Only already-decoded pixels reach a worker: untrusted files are decoded in the sandboxed child of
:func:`fdin.isolation.read_video_isolated` first. A worker sets no core dumps, ends when its stdin
closes, and a crash becomes :class:`~fdin.errors.WorkerCrashedError` (the pool starts a new one).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fdin.errors import WorkerCrashedError
from fdin.isolation.codec import Encoder, decode, inside, register_result_type
from fdin.isolation.workers import (
    OWNER_MARKER,
    STALL_TIMEOUT_S,
    LineWorker,
    WorkerPool,
    exchange_dir,
    remove_dir,
)
from fdin.progress import ProgressFn, no_progress

#: How long a worker may take to load its models before the first analysis gives up on it.
READY_TIMEOUT_S = 120.0


def _register_results() -> None:
    """The dataclasses of a :class:`~fdin.analyze.TraitResult`, allowed back from a worker."""
    from fdin.analyze import TraitResult
    from fdin.results import (
        AgeEstimate,
        Attribution,
        Coverage,
        Estimates,
        GenderEstimate,
        Importance,
        ModelProvenance,
        PairEffect,
        TrackCount,
    )

    for cls in (TraitResult, Estimates, GenderEstimate, AgeEstimate, Importance, ModelProvenance, TrackCount,
                Coverage, Attribution, PairEffect):
        register_result_type(cls)


# --- the child ----------------------------------------------------------------------------------------
def worker_main() -> int:
    """Child loop: load the analyzer from ``argv[1]`` (JSON keyword arguments), say ``ready``, then
    one analysis per stdin line."""
    import gc
    import resource

    from fdin.analyze import DynamicsAnalyzer
    from fdin.isolation.child import MAX_MESSAGE_CHARS

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a core dump would hold the user's frames
    out = sys.stdout.buffer
    try:
        analyzer = DynamicsAnalyzer(**json.loads(sys.argv[1]), decode_worker=False)
        _ = analyzer.backend  # the face models load now, not on the first video
    except Exception as exc:
        out.write(b"err " + json.dumps(_error_info(exc, MAX_MESSAGE_CHARS)).encode() + b"\n")
        out.flush()
        return 1
    _register_results()
    out.write(b"ready\n")
    out.flush()

    def progress(stage: str, fraction: float) -> None:
        out.write(b"p %s %.4f\n" % (stage.encode()[:32], float(fraction)))
        out.flush()

    for raw in sys.stdin.buffer:
        request = json.loads(raw)
        folder = Path(request["dir"])
        try:
            video = decode(request["video"], folder, mmap=True)
            for name in request.get("unlink", []):  # mapped: the frames need no name on disk any more
                inside(folder, name).unlink(missing_ok=True)
            result = analyzer.analyze(video, progress=progress, max_duration=request.get("max_duration"),
                                      duration_reason=str(request.get("duration_reason", "")))
            encoded = Encoder(folder, "out").encode(result)
            del video, result
            out.write(b"end " + json.dumps(encoded).encode() + b"\n")
        except Exception as exc:  # reported to the parent, which re-raises FdinErrors as themselves
            out.write(b"err " + json.dumps(_error_info(exc, MAX_MESSAGE_CHARS)).encode() + b"\n")
        out.flush()
        gc.collect()  # drop the mapping of this video's frames before waiting for the next
    return 0


def _error_info(exc: BaseException, limit: int) -> dict[str, Any]:
    return {"type": type(exc).__name__, "module": type(exc).__module__, "message": str(exc)[:limit],
            "memory_error": isinstance(exc, MemoryError)}


# --- the parent ---------------------------------------------------------------------------------------
class AnalysisWorker(LineWorker):
    """One analysis child with its models loaded; :meth:`analyze` one video at a time."""

    timeout_message = "The analysis took too long and was stopped."
    crash_message = "The analysis stopped unexpectedly; nothing was kept. Try again."

    def __init__(self, analyzer_kwargs: dict[str, Any]) -> None:
        super().__init__("fdin.analysis_pool", "worker_main", args=(json.dumps(analyzer_kwargs),))
        self.ready = False
        self._ready_lock = threading.Lock()

    def wait_ready(self, should_stop: Callable[[], bool] | None = None) -> float:
        """Block until the child has loaded its models (raises its load error, e.g. a missing model);
        returns the seconds waited."""
        from fdin.isolation import rebuild_error

        t0 = time.perf_counter()
        with self._ready_lock:
            if self.ready:
                return 0.0
            kind, _, rest = self.read_line(READY_TIMEOUT_S, should_stop=should_stop).partition(b" ")
            if kind == b"err":
                self.broken = True
                raise rebuild_error(json.loads(rest), None)
            if kind != b"ready":
                self.kill()
                raise WorkerCrashedError(self.crash_message)
            self.ready = True
        return time.perf_counter() - t0

    def analyze(self, video: Any, *, progress: ProgressFn | None = None, should_stop: Callable[[], bool] | None = None,
                deadline: float | None = None, deadline_message: str | None = None,
                max_duration: float | None = None, duration_reason: str = "") -> Any:
        """:meth:`fdin.analyze.DynamicsAnalyzer.analyze` of a decoded :class:`~fdin.media.Video`, in the
        child (``max_duration``/``duration_reason``: its first seconds only, said in ``coverage``,
        as in-process). ``should_stop`` (asked every 0.2 s) and ``deadline`` (``time.monotonic()``) kill the child
        when the request is cancelled or runs out of time."""
        from fdin.analyze import TraitResult
        from fdin.isolation import rebuild_error

        report = progress or no_progress
        waited = self.wait_ready(should_stop)
        wait = {"should_stop": should_stop, "deadline": deadline, "deadline_message": deadline_message}
        frames = getattr(video, "frames", None)
        folder = exchange_dir("fdin-ana-", int(getattr(frames, "nbytes", 0)))
        answered = False
        try:
            encoded = Encoder(folder, "in").encode(video)
            self.send({"dir": str(folder), "video": encoded, "max_duration": max_duration,
                       "duration_reason": duration_reason,
                       "unlink": sorted(p.name for p in folder.iterdir() if p.name != OWNER_MARKER)})
            while True:
                kind, _, rest = self.read_line(STALL_TIMEOUT_S, **wait).partition(b" ")
                if kind == b"p":
                    stage, _, fraction = rest.partition(b" ")
                    report(stage.decode("ascii", "replace"), float(fraction))
                elif kind == b"end":
                    answered = True
                    try:
                        result = decode(json.loads(rest), folder, mmap=False)
                    except WorkerCrashedError:
                        raise
                    except Exception:  # malformed: fail closed
                        self.kill()
                        raise WorkerCrashedError(self.crash_message) from None
                    if not isinstance(result, TraitResult):
                        self.kill()
                        raise WorkerCrashedError(self.crash_message)
                    if waited > 0.001:  # the worker was still loading its models
                        result.timings_ms["load_models"] = round(waited * 1000, 1)
                    return result
                elif kind == b"err":
                    answered = True
                    raise rebuild_error(json.loads(rest), None)
                else:
                    self.kill()
                    raise WorkerCrashedError(self.crash_message)
        finally:
            if not answered and self.alive():  # stopped mid-analysis: its rest must not reach the next one
                self.kill()
            remove_dir(folder)


class AnalysisPool(WorkerPool[AnalysisWorker]):
    """:class:`AnalysisWorker` processes, one per concurrent analysis: at most ``keep`` in all (a
    further analysis waits for one to come back; a cancelled one is killed, then replaced)."""

    def __init__(self, analyzer_kwargs: dict[str, Any], keep: int = 2) -> None:
        _register_results()
        kwargs = {k: (str(v) if isinstance(v, Path) else v) for k, v in analyzer_kwargs.items()}
        super().__init__(lambda: AnalysisWorker(kwargs), keep, max_workers=keep)

    def wait_ready(self) -> None:
        """Block until the idle workers have loaded their models."""
        with self._lock:
            idle = list(self._idle)
        for worker in idle:
            worker.wait_ready()

    def analyze(self, video: Any, *, progress: ProgressFn | None = None, **stop: Any) -> Any:
        """One analysis on a pooled worker; ``stop``: :meth:`AnalysisWorker.analyze`'s ``should_stop``,
        ``deadline``, ``deadline_message``, ``max_duration`` and ``duration_reason``."""
        worker = self.acquire(should_stop=stop.get("should_stop"), deadline=stop.get("deadline"))
        try:
            return worker.analyze(video, progress=progress, **stop)
        finally:
            # crashed, stalled or abandoned: its replacement starts before the next job can take the slot
            self.release(worker, replace_dead=True)


class PooledAnalyzer:
    """A :class:`~fdin.analyze.DynamicsAnalyzer` whose analyses of decoded videos run in ``workers``
    worker processes (started now; they load their models while this process loads its own).

    Keyword arguments are :class:`~fdin.analyze.DynamicsAnalyzer`'s (weights, revisions, backend,
    tracking settings); the workers get the same. ``analyze`` of a :class:`~fdin.media.Video` goes to
    a free worker (a new one if all are busy); a path, ``predict_landmarks``, ``provenance`` and
    ``backend`` are this process's analyzer's.
    """

    def __init__(self, *, workers: int = 2, **analyzer_kwargs: Any) -> None:
        from fdin.analyze import DynamicsAnalyzer

        self.pool = AnalysisPool({k: v for k, v in analyzer_kwargs.items() if k != "decode_worker"}, keep=workers)
        self.pool.prestart(workers)
        try:
            self.local = DynamicsAnalyzer(**analyzer_kwargs)
        except BaseException:
            self.pool.close()  # the workers would fail the same way: none is left behind
            raise

    def analyze(self, video_or_path: Any, *, progress: ProgressFn | None = None, max_duration: float | None = None,
                duration_reason: str = "", **stop: Any) -> Any:
        """Like :meth:`fdin.analyze.DynamicsAnalyzer.analyze` (``max_duration``: only the first seconds,
        for ``duration_reason``, said in the result's ``coverage``). ``stop`` (decoded videos only):
        ``should_stop``, ``deadline``, ``deadline_message`` of :meth:`AnalysisWorker.analyze`: a cancel
        or the deadline kills the worker."""
        if isinstance(video_or_path, (str, Path)):
            return self.local.analyze(video_or_path, progress=progress, max_duration=max_duration,
                                      duration_reason=duration_reason)
        return self.pool.analyze(video_or_path, progress=progress, max_duration=max_duration,
                                 duration_reason=duration_reason, **stop)

    def load_models(self) -> None:
        """Load the local face models and wait until the workers have loaded theirs (preloading)."""
        self.local.load_models()
        self.pool.wait_ready()

    def predict_landmarks(self, landmarks: Any, timestamps: Any) -> Any:
        return self.local.predict_landmarks(landmarks, timestamps)

    def provenance(self) -> Any:
        return self.local.provenance()

    @property
    def backend(self) -> Any:
        return self.local.backend

    def close(self) -> None:
        """Stop the worker processes (and the local analyzer's decode worker)."""
        self.pool.close()
        self.local.close()

    def __enter__(self) -> PooledAnalyzer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["AnalysisPool", "AnalysisWorker", "PooledAnalyzer", "worker_main"]

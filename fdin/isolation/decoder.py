"""Decoding in a worker *process* that streams frames into shared memory (issue 15).

Why a process: on two cores, a decoder thread and face tracking contend for the GIL (PyAV re-takes it
several times per frame), so a thread stretched decoding over the whole tracking time; and on a
first call the model loading competed with decoding the same way. A separate process decodes on
the other core with no GIL in common, so ``fdin analyze`` pays max(decode, track) rather than the
sum, and a cold process loads its models while the worker decodes.

How: :class:`DecodeWorker` is one long-lived ``python -I`` child (started once, reused for every
video; only numpy, PyAV and :mod:`fdin.media` are imported there, never a model). For each video the
parent sends one JSON line (the path and the :class:`~fdin.media.DecodeLimits`); the child runs
:func:`fdin.media.open_video_stream` -- the same checks, limits, resampling and frames as
:func:`fdin.media.read_video` -- and writes each kept frame into a file in a private ``0700``
directory on ``/dev/shm`` (RAM; sized sparsely for the largest output the limits allow), then one
line ``f <timestamp>`` on its stdout. The parent maps that file copy-on-write (no copy: it reads the
child's pages) and yields each frame as its line arrives; the file is unlinked as soon as it is
mapped. The last line carries the :class:`~fdin.media.Video` fields, or the error, which the parent
re-raises as the same :class:`~fdin.errors.FdinError` class (a crash becomes
:class:`~fdin.errors.WorkerCrashedError`, as in :func:`fdin.isolation.run_isolated`). The child sets
no core dumps, ends when the parent closes its stdin (or dies), and gets no pickle from anyone.

:class:`DecoderPool` hands out idle workers (a busy one is never shared: a second concurrent video
gets a second worker) and :meth:`DecoderPool.prestart` starts one ahead of need.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np

from fdin.errors import ProcessingTimeoutError, WorkerCrashedError

log = logging.getLogger(__name__)

_BOOTSTRAP = ("import sys; sys.path.insert(0, {root!r}); "
              "from fdin.isolation.decoder import worker_main; sys.exit(worker_main())")
#: Seconds the parent waits for the next line from a worker before it gives up on it (a stuck
#: decoder; the limits' own deadline usually stops it first).
STALL_TIMEOUT_S = 120.0


def _shm_dir() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


# --- the child ----------------------------------------------------------------------------------------
def worker_main() -> int:
    """Child loop: one JSON request per stdin line, frames into its file, one status line per frame."""
    import resource

    from fdin.isolation.child import MAX_MESSAGE_CHARS
    from fdin.media import DecodeLimits, open_video_stream
    from fdin.media.decode import frame_capacity

    # No core dumps (they would hold the user's frames). Not the parent-death signal of
    # fdin.isolation.child.apply_limits: Linux sends it when the *thread* that started the child
    # ends, and workers are started from short-lived threads (app requests, preloading). The worker
    # ends when its stdin closes (the parent exited or closed it) or its stdout breaks.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    out = sys.stdout.buffer
    for raw in sys.stdin.buffer:
        request = json.loads(raw)
        try:
            limits = DecodeLimits(**request["limits"])
            buf = None
            with open_video_stream(request["path"], limits) as stream:
                for i, frame in enumerate(stream):
                    if buf is None:
                        h, w = frame.shape[:2]
                        capacity = frame_capacity(limits, w, h)
                        fd = os.open(request["file"], os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
                        try:
                            os.ftruncate(fd, capacity * h * w * 3)
                        finally:
                            os.close(fd)
                        buf = np.memmap(request["file"], dtype=np.uint8, mode="r+", shape=(capacity, h, w, 3))
                        out.write(b"shape %d %d %d %d %.6f\n" % (capacity, h, w, stream.__length_hint__(),
                                                                   stream.nominal_fps))
                    buf[i] = frame
                    out.write(b"f %r\n" % stream.timestamps[-1])
                    out.flush()
            video = stream.video
            meta = {f.name: getattr(video, f.name) for f in fields(video) if f.name not in ("frames", "timestamps")}
            meta["notes"] = list(meta["notes"])
            out.write(b"end " + json.dumps(meta).encode() + b"\n")
        except Exception as exc:  # reported to the parent, which re-raises FdinErrors as themselves
            info = {"type": type(exc).__name__, "module": type(exc).__module__,
                    "message": str(exc)[:MAX_MESSAGE_CHARS], "memory_error": isinstance(exc, MemoryError)}
            out.write(b"err " + json.dumps(info).encode() + b"\n")
        out.flush()
        del buf
    return 0


# --- the parent ---------------------------------------------------------------------------------------
class DecodeWorker:
    """One decode child process; :meth:`decode` one video at a time."""

    def __init__(self) -> None:
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env.update({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2",
                    "PYTHONDONTWRITEBYTECODE": "1"})
        self.started = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-I", "-c", _BOOTSTRAP.format(root=root)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env=env, start_new_session=True, close_fds=True)
        self.broken = False
        self.pending = bytearray()  # bytes read from the child's stdout past the last full line

    def alive(self) -> bool:
        return not self.broken and self.proc.poll() is None

    def decode(self, path: str | os.PathLike[str], limits: Any) -> ChildVideoStream:
        """Start decoding ``path``; iterate the result for its frames (see :class:`ChildVideoStream`)."""
        return ChildVideoStream(self, Path(path), limits)

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()  # type: ignore[union-attr]
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError, AttributeError):
                stream.close()  # type: ignore[union-attr]

    def kill(self) -> None:
        self.broken = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, 9)
        self.proc.wait()
        self.close()


class ChildVideoStream:
    """Frames of one video decoded by a :class:`DecodeWorker`, in order, as they arrive.

    Like :class:`fdin.media.VideoStream`: iterate once for the ``(H, W, 3) uint8`` frames;
    ``__length_hint__`` is the header's frame estimate; after the iteration :meth:`video` is the
    :class:`~fdin.media.Video` :func:`fdin.media.read_video` would return (its frames are the shared
    mapping). ``decode_s`` is the wall time from the request to the last frame.
    """

    def __init__(self, worker: DecodeWorker, path: Path, limits: Any) -> None:
        self._worker = worker
        self._dir = Path(tempfile.mkdtemp(prefix="fdin-dec-", dir=_shm_dir()))
        self._file = self._dir / "frames.u8"
        self._t0 = time.perf_counter()
        self.decode_s = 0.0
        self.nominal_fps = float(getattr(limits, "target_fps", None) or 30.0)
        self._expected = 0
        self._frames: np.ndarray | None = None
        self._timestamps: list[float] = []
        self._video: Any = None
        self.complete = False  # the worker's last line for this video was read (it is free again)
        request = {"path": str(path.resolve()), "file": str(self._file), "limits": asdict(limits)}
        try:
            worker.proc.stdin.write(json.dumps(request).encode() + b"\n")  # type: ignore[union-attr]
            worker.proc.stdin.flush()  # type: ignore[union-attr]
        except OSError:
            self._cleanup()
            self.complete = True
            worker.broken = True
            raise WorkerCrashedError("The video decoder stopped unexpectedly; nothing was processed. "
                                     "Try again or try another file.") from None

    def _line(self) -> bytes:
        worker = self._worker
        while b"\n" not in worker.pending:
            fd = worker.proc.stdout.fileno()  # type: ignore[union-attr]
            ready, _, _ = select.select([fd], [], [], STALL_TIMEOUT_S)
            if not ready:
                worker.kill()
                raise ProcessingTimeoutError("Reading the video took too long and was stopped.")
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                worker.broken = True
                self.complete = True
                raise WorkerCrashedError("The video decoder crashed while reading this file (the file may be "
                                         "damaged or malformed); nothing was processed. Try another file.")
            worker.pending += chunk
        line, _, rest = bytes(worker.pending).partition(b"\n")
        worker.pending[:] = rest
        return line

    def __length_hint__(self) -> int:
        return max(self._expected, len(self._timestamps))

    def __iter__(self) -> Iterator[np.ndarray]:
        from fdin.isolation import rebuild_error
        from fdin.media import Video

        try:
            while True:
                kind, _, rest = self._line().partition(b" ")
                if kind == b"f":
                    self._timestamps.append(float(rest))
                    assert self._frames is not None
                    yield self._frames[len(self._timestamps) - 1]
                elif kind == b"shape":
                    cap, h, w, expected, fps = rest.split()
                    self._frames = np.memmap(self._file, dtype=np.uint8, mode="c", shape=(int(cap), int(h), int(w), 3))
                    self._file.unlink()  # the mapping stays valid; nothing is left on disk
                    self._expected, self.nominal_fps = int(expected), float(fps)
                elif kind == b"end":
                    self.complete = True
                    meta = json.loads(rest)
                    meta["notes"] = tuple(meta["notes"])
                    n = len(self._timestamps)
                    frames = self._frames[:n] if self._frames is not None else np.zeros((0, 1, 1, 3), np.uint8)
                    self._video = Video(frames=frames, timestamps=np.asarray(self._timestamps, np.float64), **meta)
                    break
                elif kind == b"err":
                    self.complete = True
                    raise rebuild_error(json.loads(rest), None)
                else:
                    self._worker.kill()
                    raise WorkerCrashedError("The video decoder returned an unreadable result.")
        finally:
            self.decode_s = time.perf_counter() - self._t0
            self._cleanup()

    def video(self) -> Any:
        """The decoded :class:`~fdin.media.Video` (iterates to the end first if needed)."""
        if self._video is None:
            for _ in self:
                pass
        return self._video

    def _cleanup(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


class DecoderPool:
    """Idle :class:`DecodeWorker` processes, handed out one per video; at most ``keep`` kept idle."""

    def __init__(self, keep: int = 2) -> None:
        self._idle: list[DecodeWorker] = []
        self._lock = threading.Lock()
        self.keep = keep

    def prestart(self) -> None:
        """Start a worker now (its interpreter start-up overlaps whatever the caller does next)."""
        with self._lock:
            if not any(w.alive() for w in self._idle):
                self._idle.append(DecodeWorker())

    def acquire(self) -> DecodeWorker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive():
                    return worker
                worker.close()
        return DecodeWorker()

    def release(self, worker: DecodeWorker) -> None:
        if not worker.alive():
            worker.close()
            return
        with self._lock:
            if len(self._idle) < self.keep:
                self._idle.append(worker)
                return
        worker.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.close()


__all__ = ["ChildVideoStream", "DecodeWorker", "DecoderPool", "worker_main"]

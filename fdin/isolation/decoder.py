"""Decoding in a worker *process* that streams frames into shared memory (no GIL shared with tracking).

Why a process: on two cores, a decoder thread and face tracking contend for the GIL (PyAV re-takes it
several times per frame), so a thread stretched decoding over the whole tracking time; and on a
first call the model loading competed with decoding the same way. A separate process decodes on
the other core with no GIL in common, so ``fdin analyze`` pays max(decode, track) rather than the
sum, and a cold process loads its models while the worker decodes.

How: :class:`DecodeWorker` is one long-lived ``python -I`` child (a
:class:`~fdin.isolation.workers.LineWorker`, started once, reused for every
video; only numpy, PyAV and :mod:`fdin.media` are imported there, never a model). For each video the
parent sends one JSON line (the path and the :class:`~fdin.media.DecodeLimits`); the child runs
:func:`fdin.media.open_video_stream` -- the same checks, limits, resampling and frames as
:func:`fdin.media.read_video` -- and writes each kept frame into a file in a private ``0700``
directory (:func:`fdin.isolation.workers.exchange_dir`: on ``/dev/shm``, RAM, when it has room for the
largest output the limits allow, else the temporary folder; the file is sized sparsely), then one
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

import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np

from fdin.errors import WorkerCrashedError
from fdin.isolation.workers import LineWorker, WorkerPool, exchange_dir, remove_dir

log = logging.getLogger(__name__)


# --- the child ----------------------------------------------------------------------------------------
def worker_main() -> int:
    """Child loop: one JSON request per stdin line, frames into its file, one status line per frame."""
    import resource

    from fdin.isolation.child import MAX_MESSAGE_CHARS

    # No core dumps (they would hold the user's frames). Not the parent-death signal of
    # fdin.isolation.child.apply_limits: Linux sends it when the *thread* that started the child
    # ends, and workers are started from short-lived threads (app requests, preloading). The worker
    # ends when its stdin closes (the parent exited or closed it) or its stdout breaks.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    out, inp = sys.stdout.buffer, sys.stdin.buffer
    for raw in inp:
        request = json.loads(raw)
        if "ack" in request:  # a late acknowledgement of the previous video's frames
            continue
        try:
            _decode_into_file(request, out, inp)
        except Exception as exc:  # reported to the parent, which re-raises FdinErrors as themselves
            info = {"type": type(exc).__name__, "module": type(exc).__module__,
                    "message": str(exc)[:MAX_MESSAGE_CHARS], "memory_error": isinstance(exc, MemoryError)}
            out.write(b"err " + json.dumps(info).encode() + b"\n")
        out.flush()
    return 0


def _decode_into_file(request: dict[str, Any], out: Any, inp: Any) -> None:
    """One video: frames decoded straight into the shared file (no second copy), a line per frame,
    then the ``end`` line. The worker's own mapping is gone when this returns.

    With ``ring`` limits the file has that many frame slots and frame ``n`` goes to slot ``n % ring``:
    before decoding frame ``n`` into the slot of frame ``n - ring``, the worker waits until the parent
    has acknowledged (``{"ack": count}`` lines on stdin) that it is done with that frame."""
    from fdin.media import DecodeLimits, open_video_stream

    file = request["file"]

    def shared_buffer(shape: tuple[int, int, int, int]) -> np.ndarray:
        fd = os.open(file, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, int(np.prod(shape)))
        finally:
            os.close(fd)
        out.write(b"shape %d %d %d %d %.6f\n" % (*shape[:3], stream.__length_hint__(), stream.nominal_fps))
        return np.memmap(file, dtype=np.uint8, mode="r+", shape=shape)

    limits = DecodeLimits(**request["limits"])
    stream = open_video_stream(request["path"], limits, allocate=shared_buffer)
    acked = 0
    with stream:
        for _ in stream:
            out.write(b"f %r\n" % stream.timestamps[-1])
            out.flush()
            written = len(stream.timestamps)
            while limits.ring and acked < written + 1 - limits.ring:  # the next frame reuses a slot
                line = inp.readline()
                if not line:
                    raise SystemExit(0)  # the parent is gone
                acked = max(acked, int(json.loads(line).get("ack", 0)))
    video = stream.video
    meta = {f.name: getattr(video, f.name) for f in fields(video) if f.name not in ("frames", "timestamps")}
    meta["notes"] = list(meta["notes"])
    out.write(b"end " + json.dumps(meta).encode() + b"\n")


# --- the parent ---------------------------------------------------------------------------------------
class DecodeWorker(LineWorker):
    """One decode child process; :meth:`decode` one video at a time."""

    timeout_message = "Reading the video took too long and was stopped."
    crash_message = ("The video decoder crashed while reading this file (the file may be damaged or malformed); "
                     "nothing was processed. Try another file.")
    stopped_message = "The video decoder stopped unexpectedly; nothing was processed. Try again or try another file."

    def __init__(self) -> None:
        super().__init__("fdin.isolation.decoder", "worker_main")

    def decode(self, path: str | os.PathLike[str], limits: Any) -> ChildVideoStream:
        """Start decoding ``path``; iterate the result for its frames (see :class:`ChildVideoStream`)."""
        return ChildVideoStream(self, Path(path), limits)


class ChildVideoStream:
    """Frames of one video decoded by a :class:`DecodeWorker`, in order, as they arrive.

    Like :class:`fdin.media.VideoStream`: iterate once for the ``(H, W, 3) uint8`` frames;
    ``__length_hint__`` is the header's frame estimate; after the iteration :meth:`video` is the
    :class:`~fdin.media.Video` :func:`fdin.media.read_video` would return (its frames are the shared
    mapping). ``decode_s`` is the wall time from the request to the last frame.
    """

    def __init__(self, worker: DecodeWorker, path: Path, limits: Any) -> None:
        self._worker = worker
        self._ring = int(getattr(limits, "ring", 0))
        largest = int(getattr(limits, "max_output_bytes", 0))
        if self._ring:  # the ring's slots at the largest frame size the limits allow
            largest = min(largest, self._ring * int(limits.max_side) ** 2 * 3)
        self._dir = exchange_dir("fdin-dec-", largest)
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
            worker.send(request)
        except WorkerCrashedError:
            self._cleanup()
            self.complete = True
            raise

    def _line(self) -> bytes:
        try:
            return self._worker.read_line()
        except WorkerCrashedError:
            self.complete = True
            raise

    def __length_hint__(self) -> int:
        return max(self._expected, len(self._timestamps))

    def __iter__(self) -> Iterator[np.ndarray]:
        from fdin.isolation import rebuild_error
        from fdin.media import Video

        acked, step = 0, max(1, self._ring // 2)
        try:
            while True:
                kind, _, rest = self._line().partition(b" ")
                if kind == b"f":
                    self._timestamps.append(float(rest))
                    assert self._frames is not None
                    n = len(self._timestamps)
                    yield self._frames[(n - 1) % len(self._frames) if self._ring else n - 1]
                    if self._ring and n - acked >= step:  # the consumer is done with frames < n
                        self._worker.send({"ack": n})
                        acked = n
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
                    frames = (self._frames[:0 if self._ring else n] if self._frames is not None
                              else np.zeros((0, 1, 1, 3), np.uint8))
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
        remove_dir(self._dir)


class DecoderPool(WorkerPool[DecodeWorker]):
    """Idle :class:`DecodeWorker` processes, handed out one per video; at most ``keep`` kept idle."""

    def __init__(self, keep: int = 2) -> None:
        super().__init__(DecodeWorker, keep)


__all__ = ["ChildVideoStream", "DecodeWorker", "DecoderPool", "worker_main"]

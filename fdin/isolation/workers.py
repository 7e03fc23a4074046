"""Long-lived worker processes that talk in lines, and a pool of them (issue 15).

:class:`LineWorker` is one ``python -I`` child started once and reused: the parent writes one JSON
request per line on its stdin, the child answers with status lines on its stdout (the first word
says what the line is). It ends when its stdin closes (the parent exited or closed it) or its
stdout breaks. No pickle crosses: requests and answers are JSON, arrays go through files of the
pickle-free codec (:mod:`fdin.isolation.codec`). Used by the decode worker
(:mod:`fdin.isolation.decoder`) and the analysis worker (:mod:`fdin.analysis_pool`).

:class:`WorkerPool` hands out idle workers (a busy one is never shared: a second concurrent job gets
a second worker) and keeps at most ``keep`` of them idle.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from fdin.errors import ProcessingTimeoutError, WorkerCrashedError

_BOOTSTRAP = "import sys; sys.path.insert(0, {root!r}); from {module} import {function} as main; sys.exit(main())"
#: Seconds the parent waits for the next line from a worker before it gives up on it.
STALL_TIMEOUT_S = 120.0
#: Room left on ``/dev/shm`` beyond what an exchange needs before it is used (a container's default
#: ``/dev/shm`` is 64 MB: writing past it would kill the writer with SIGBUS).
SHM_MARGIN_BYTES = 64 << 20


def exchange_dir(prefix: str, needed_bytes: int) -> Path:
    """A new private (``0700``) directory for files shared with a worker: on ``/dev/shm`` (RAM) when
    it has room for ``needed_bytes``, else in the system temporary folder. The caller removes it."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        try:
            stat = os.statvfs(shm)
            if stat.f_bavail * stat.f_frsize >= needed_bytes + SHM_MARGIN_BYTES:
                return Path(tempfile.mkdtemp(prefix=prefix, dir=shm))
        except OSError:
            pass
    return Path(tempfile.mkdtemp(prefix=prefix))


def remove_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


class LineWorker:
    """One child process running ``module.function()``; :meth:`send` a request, :meth:`read_line` the answers.

    Subclasses set the messages users see when the child stalls, dies while working, or was gone
    before a request (``timeout_message``, ``crash_message``, ``stopped_message``).
    """

    timeout_message = "The background worker took too long and was stopped."
    crash_message = "The background worker stopped unexpectedly; nothing was processed. Try again."
    stopped_message = crash_message  # a request could not even be sent (the worker was gone)

    def __init__(self, module: str, function: str, *, args: tuple[str, ...] = ()) -> None:
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env.update({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2",
                    "PYTHONDONTWRITEBYTECODE": "1"})
        self.started = time.perf_counter()
        code = _BOOTSTRAP.format(root=root, module=module, function=function)
        self.proc = subprocess.Popen([sys.executable, "-I", "-c", code, *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env=env, start_new_session=True, close_fds=True)
        self.broken = False
        self.pending = bytearray()  # bytes read from the child's stdout past the last full line

    def alive(self) -> bool:
        return not self.broken and self.proc.poll() is None

    def send(self, request: dict[str, Any]) -> None:
        """One JSON request line; a child that is gone raises :class:`~fdin.errors.WorkerCrashedError`."""
        try:
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
        except OSError:
            self.broken = True
            raise WorkerCrashedError(self.stopped_message) from None

    def read_line(self, timeout: float = STALL_TIMEOUT_S) -> bytes:
        """The child's next line (without the newline). A child silent for ``timeout`` s is killed
        (:class:`~fdin.errors.ProcessingTimeoutError`); one that closed its stdout (it died) raises
        :class:`~fdin.errors.WorkerCrashedError`."""
        while b"\n" not in self.pending:
            fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                self.kill()
                raise ProcessingTimeoutError(self.timeout_message)
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                self.broken = True
                raise WorkerCrashedError(self.crash_message)
            self.pending += chunk
        line, _, rest = bytes(self.pending).partition(b"\n")
        self.pending[:] = rest
        return line

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


W = TypeVar("W", bound=LineWorker)


class WorkerPool(Generic[W]):
    """Idle workers made by ``factory``, handed out one per job; at most ``keep`` kept idle."""

    def __init__(self, factory: Callable[[], W], keep: int = 2) -> None:
        self._factory = factory
        self._idle: list[W] = []
        self._busy = 0  # handed out and not yet released
        self._lock = threading.Lock()
        self.keep = keep

    def prestart(self, count: int = 1) -> None:
        """Have ``count`` idle workers now (their start-up overlaps whatever the caller does next)."""
        self._start_missing(lambda idle, busy: min(count, self.keep) - idle)

    def refill(self) -> None:
        """Start workers until ``keep`` are alive, idle or busy (after one died, say)."""
        self._start_missing(lambda idle, busy: self.keep - idle - busy)

    def _start_missing(self, missing: Callable[[int, int], int]) -> None:
        """Drop dead idle workers, then start ``missing(idle, busy)`` new ones (outside the lock)."""
        with self._lock:
            self._idle = [w for w in self._idle if w.alive()]
            count = max(0, missing(len(self._idle), self._busy))
        for _ in range(count):
            worker = self._factory()
            with self._lock:
                self._idle.append(worker)

    def acquire(self) -> W:
        with self._lock:
            self._busy += 1
            while self._idle:
                worker = self._idle.pop(0)
                if worker.alive():
                    return worker
                worker.close()
        try:
            return self._factory()
        except BaseException:
            with self._lock:
                self._busy -= 1
            raise

    def release(self, worker: W) -> None:
        with self._lock:
            self._busy -= 1
            if worker.alive() and len(self._idle) < self.keep:
                self._idle.append(worker)
                return
        worker.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.close()


__all__ = ["STALL_TIMEOUT_S", "LineWorker", "WorkerPool", "exchange_dir", "remove_dir"]

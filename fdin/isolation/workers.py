"""Long-lived worker processes that talk in lines, and a pool of them (one model load per worker, reused).

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
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from fdin.errors import ProcessingCancelledError, ProcessingTimeoutError, WorkerCrashedError

_BOOTSTRAP = "import sys; sys.path.insert(0, {root!r}); from {module} import {function} as main; sys.exit(main())"
#: Seconds the parent waits for the next line from a worker before it gives up on it.
STALL_TIMEOUT_S = 120.0
#: Room left on ``/dev/shm`` beyond what an exchange needs before it is used (a container's default
#: ``/dev/shm`` is 64 MB: writing past it would kill the writer with SIGBUS).
SHM_MARGIN_BYTES = 64 << 20
#: How often a waiting parent asks its ``should_stop`` callable (a cancel stops the worker within this).
STOP_POLL_S = 0.2
#: The file that marks an exchange folder as this project's, with the owning process's id in it: a
#: later start removes the folders whose owner is gone (:func:`purge_exchange_leftovers`).
OWNER_MARKER = ".fdin-owner"


def exchange_dir(prefix: str, needed_bytes: int) -> Path:
    """A new private (``0700``) directory for files shared with a worker: on ``/dev/shm`` (RAM) when
    it has room for ``needed_bytes``, else in the system temporary folder. The caller removes it."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        try:
            stat = os.statvfs(shm)
            if stat.f_bavail * stat.f_frsize >= needed_bytes + SHM_MARGIN_BYTES:
                return _marked(Path(tempfile.mkdtemp(prefix=prefix, dir=shm)))
        except OSError:
            pass
    return _marked(Path(tempfile.mkdtemp(prefix=prefix)))


def _marked(folder: Path) -> Path:
    """Write the owner marker (``<pid> <process start time>``) into a fresh exchange folder.

    The marker is written under another name and renamed into place, so nobody (another start's
    :func:`purge_exchange_leftovers`) can read it half-written and take the folder for a dead run's."""
    staging = folder / (OWNER_MARKER + ".part")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{os.getpid()} {_start_time(os.getpid())}\n")
    os.rename(staging, folder / OWNER_MARKER)
    return folder


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22), or "":
    with the pid it names one process, so a recycled pid is not mistaken for the owner."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _owner_alive(marker: Path) -> bool:
    try:
        pid_text, _, started = marker.read_text().strip().partition(" ")
        pid = int(pid_text)
    except (OSError, ValueError):
        return False
    if pid == os.getpid():
        return True
    return pid_alive(pid) and (not started or _start_time(pid) == started)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def purge_exchange_leftovers(roots: tuple[str, ...] | None = None) -> int:
    """Remove exchange folders of earlier runs: every folder directly under ``/dev/shm`` and the
    temporary folder that holds this project's :data:`OWNER_MARKER`, is owned by this user, and whose
    marked owner process is gone (a SIGKILL or an out-of-memory kill leaves them). Folders without the
    marker are never touched, whatever their name. Returns how many were removed."""
    roots = roots if roots is not None else ("/dev/shm", tempfile.gettempdir())
    removed = 0
    for root in dict.fromkeys(roots):
        try:
            entries = list(os.scandir(root))
        except OSError:
            continue
        for entry in entries:
            try:
                if not entry.is_dir(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_uid != os.getuid():
                    continue
                marker = Path(entry.path) / OWNER_MARKER
                if not marker.is_file() or marker.is_symlink() or _owner_alive(marker):
                    continue
            except OSError:
                continue
            shutil.rmtree(entry.path, ignore_errors=True)
            removed += 1
    return removed


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
        # An owner that forgets close(): when this object is collected, the child's stdin closes and
        # the child ends (it stops at end of input). Popen alone would not: a collected Popen whose
        # child still runs is kept alive by the subprocess module, pipes open, child waiting forever.
        weakref.finalize(self, _close_quietly, self.proc.stdin)

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

    def read_line(self, timeout: float = STALL_TIMEOUT_S, *, should_stop: Callable[[], bool] | None = None,
                  deadline: float | None = None, deadline_message: str | None = None) -> bytes:
        """The child's next line (without the newline). A child silent for ``timeout`` s is killed
        (:class:`~fdin.errors.ProcessingTimeoutError`); one that closed its stdout (it died) raises
        :class:`~fdin.errors.WorkerCrashedError`. While waiting, ``should_stop()`` is asked every
        :data:`STOP_POLL_S`: once true the child is killed (:class:`~fdin.errors.ProcessingCancelledError`);
        past ``deadline`` (``time.monotonic()``) it is killed with ``deadline_message``."""
        while b"\n" not in self.pending:
            fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
            silent_until = time.monotonic() + timeout
            while True:
                now = time.monotonic()
                if should_stop is not None and should_stop():
                    self.kill()
                    raise ProcessingCancelledError("The request was cancelled and its work stopped.")
                if deadline is not None and now >= deadline:
                    self.kill()
                    raise ProcessingTimeoutError(deadline_message or self.timeout_message)
                if now >= silent_until:
                    self.kill()
                    raise ProcessingTimeoutError(self.timeout_message)
                wait = silent_until - now
                if should_stop is not None:
                    wait = min(wait, STOP_POLL_S)
                if deadline is not None:
                    wait = min(wait, max(0.0, deadline - now))
                ready, _, _ = select.select([fd], [], [], wait)
                if ready:
                    break
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


def _close_quietly(stream: Any) -> None:
    with contextlib.suppress(OSError, AttributeError):
        stream.close()


W = TypeVar("W", bound=LineWorker)


class WorkerPool(Generic[W]):
    """Idle workers made by ``factory``, handed out one per job; at most ``keep`` kept idle. With
    ``max_workers``, at most that many are handed out at once: :meth:`acquire` waits for one to come
    back (the pool never grows past its size, however many jobs are cancelled and retried)."""

    def __init__(self, factory: Callable[[], W], keep: int = 2, *, max_workers: int | None = None) -> None:
        self._factory = factory
        self._idle: list[W] = []
        self._busy = 0  # handed out and not yet released
        self._starting = 0  # being started by _start_missing (counted as idle, so two refills do not both start one)
        self._lock = threading.Lock()
        self.keep = keep
        self.max_workers = max_workers
        self._slots = threading.BoundedSemaphore(max_workers) if max_workers else None

    def prestart(self, count: int = 1) -> None:
        """Have ``count`` idle workers now (their start-up overlaps whatever the caller does next)."""
        self._start_missing(lambda idle, busy: min(count, self.keep) - idle)

    def refill(self) -> None:
        """Start workers until ``keep`` are alive, idle or busy (after one died, say)."""
        self._start_missing(lambda idle, busy: self.keep - idle - busy)

    def _start_missing(self, missing: Callable[[int, int], int]) -> None:
        """Drop dead idle workers, then start ``missing(idle, busy)`` new ones (outside the lock; the
        ones other threads are starting count as idle)."""
        with self._lock:
            self._idle = [w for w in self._idle if w.alive()]
            count = max(0, missing(len(self._idle) + self._starting, self._busy))
            self._starting += count
        started = 0
        try:
            for _ in range(count):
                worker = self._factory()
                with self._lock:
                    self._starting -= 1
                    self._idle.append(worker)
                started += 1
        finally:
            with self._lock:
                self._starting -= count - started  # the ones a failed start left unstarted

    def acquire(self, *, should_stop: Callable[[], bool] | None = None, deadline: float | None = None) -> W:
        """An idle (or new) worker. With ``max_workers``, waits while that many are out; ``should_stop``
        and ``deadline`` end the wait (:class:`~fdin.errors.ProcessingCancelledError`,
        :class:`~fdin.errors.ProcessingTimeoutError`)."""
        if self._slots is not None:
            while not self._slots.acquire(timeout=STOP_POLL_S):
                if should_stop is not None and should_stop():
                    raise ProcessingCancelledError("The request was cancelled before it started.")
                if deadline is not None and time.monotonic() >= deadline:
                    raise ProcessingTimeoutError("The server was too busy to start this request in time. "
                                                 "Please try again.")
        try:
            return self._take()
        except BaseException:
            if self._slots is not None:
                self._slots.release()
            raise

    def _take(self) -> W:
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

    def release(self, worker: W, *, replace_dead: bool = False) -> None:
        """Take back a handed-out worker. ``replace_dead``: if it died (crashed, or was killed when its
        job was cancelled), start its replacement before the slot is given back, so a job waiting for
        the slot takes the replacement instead of starting one more worker beside it."""
        try:
            with self._lock:
                self._busy -= 1
                if worker.alive() and len(self._idle) < self.keep:
                    self._idle.append(worker)
                    return
            worker.close()
            if replace_dead:
                self.refill()
        finally:
            if self._slots is not None:
                self._slots.release()

    def size(self) -> int:
        """Worker processes alive now (idle or handed out)."""
        with self._lock:
            return sum(1 for w in self._idle if w.alive()) + self._busy

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.close()


__all__ = ["OWNER_MARKER", "STALL_TIMEOUT_S", "LineWorker", "WorkerPool", "exchange_dir", "pid_alive", "purge_exchange_leftovers",
           "remove_dir"]

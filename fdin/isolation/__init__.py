"""Run untrusted decoding in a short-lived child process (reliability R-18).

A native crash in FFmpeg or Pillow (a segfault, an abort) cannot be caught with ``try``: in-process
it takes the whole server down with every user's session. :func:`run_isolated` runs one call in a
fresh Python interpreter and turns every way the input can make it fail into an
:class:`~fdin.errors.FdinError`:

==========================================  ======================================================
child outcome                               parent raises
==========================================  ======================================================
returns                                     nothing; the value comes back
raises an ``FdinError`` subclass            the same class with the same message
raises ``MemoryError`` (``RLIMIT_AS`` hit)  :class:`~fdin.errors.WorkerCrashedError`
raises anything else (a bug)                :class:`IsolatedCallError` (not a user error)
passes the wall-clock ``timeout``           :class:`~fdin.errors.ProcessingTimeoutError` (child killed)
killed by a signal (SIGSEGV, SIGABRT, ...)  :class:`~fdin.errors.WorkerCrashedError`
==========================================  ======================================================

Design choices:

Where things live: this module is the parent side (:func:`run_isolated`, the media wrappers);
:mod:`fdin.isolation.child` the child side; :mod:`fdin.isolation.codec` the pickle-free codec.

* **A fresh interpreter** (``sys.executable -I -c ...``), not ``multiprocessing``: its "spawn" and
  "forkserver" contexts re-import the parent's ``__main__`` (e.g. ``app.py``, which loads models) in
  the child, and ``fork`` would copy a multi-threaded server. The child imports only ``fdin.isolation``
  and the target function's module (numpy/av/Pillow for media; never torch).
* **Limits set by the child on itself** before it reads any input: ``RLIMIT_AS`` (address space),
  ``RLIMIT_CPU`` (a backstop if the parent dies), ``RLIMIT_FSIZE``, ``RLIMIT_CORE=0`` (no core dumps
  holding user faces), parent-death signal, one BLAS/OpenMP thread and two malloc arenas (threads
  otherwise reserve address space). Setting them in the child avoids ``preexec_fn``, which is unsafe
  in a threaded parent such as a Gradio server.
* **No pickle across the boundary.** A compromised child must not be able to run code in the parent,
  so arguments and results travel as JSON plus ``.npy`` files read with ``allow_pickle=False``.
  Supported values: ``None``, bool, int, float, str, bytes, ``Path``, list, tuple, dict with str keys,
  numeric numpy arrays and scalars, and dataclasses registered with :func:`register_result_type`
  (:class:`fdin.media.Video` and :class:`fdin.media.VideoInfo` are pre-registered).
* **Large arrays** go through a private ``0700`` temporary directory: the child writes ``.npy`` files,
  the parent maps them copy-on-write (``mmap_mode="c"``, so no extra copy and the arrays stay
  writable) and deletes the directory; mappings outlive the unlinked files.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from fdin import errors as _errors
from fdin.errors import FdinError, ProcessingTimeoutError, WorkerCrashedError
from fdin.isolation.child import LOG, MAX_MESSAGE_CHARS, REQUEST, RESULT
from fdin.isolation.codec import Encoder, decode, register_result_type

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MEMORY_LIMIT",
    "DEFAULT_TIMEOUT_S",
    "IsolatedCallError",
    "load_image_isolated",
    "read_video_isolated",
    "rebuild_error",
    "register_result_type",
    "run_isolated",
]

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 120.0
DEFAULT_MEMORY_LIMIT = 4 << 30

_BOOTSTRAP = (
    "import sys; sys.path.insert(0, {root!r}); "
    "from fdin.isolation.child import child_main; sys.exit(child_main(sys.argv[1]))"
)

class IsolatedCallError(RuntimeError):
    """The isolated function raised an exception that is not an ``FdinError`` (a bug, not bad input).

    ``type_name`` and ``remote_traceback`` describe the child's exception (for logs, not for users).
    """

    def __init__(self, type_name: str, message: str, remote_traceback: str = "") -> None:
        super().__init__(f"isolated call raised {type_name}: {message}")
        self.type_name = type_name
        self.remote_traceback = remote_traceback


# --- parent side ---------------------------------------------------------------------------------------
def run_isolated(
    fn: Callable[..., T],
    /,
    *args: Any,
    timeout: float = DEFAULT_TIMEOUT_S,
    memory_limit_bytes: int | None = DEFAULT_MEMORY_LIMIT,
    cpu_limit_s: float | None = None,
    tmp_dir: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> T:
    """Call ``fn(*args, **kwargs)`` in a fresh child process and return its result.

    ``fn`` must be a top-level function importable by its module and name. ``args``, ``kwargs`` and the
    result must be codec values (see the module docstring). ``timeout`` is wall-clock seconds for the
    whole call, child start-up included; ``memory_limit_bytes`` is the child's ``RLIMIT_AS`` (``None``:
    unlimited); ``cpu_limit_s`` is its ``RLIMIT_CPU`` (default: ``timeout`` x CPUs + 10 s, a backstop
    only). ``tmp_dir`` is where the private exchange directory is created (default: the system temp
    dir). Thread-safe: every call has its own child and directory.
    """
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not module or not qualname or "<" in qualname or module == "__main__":
        raise TypeError("run_isolated needs a top-level function defined in an importable module")
    if not timeout > 0:
        raise ValueError("timeout must be positive")
    if cpu_limit_s is None:
        cpu_limit_s = timeout * (os.cpu_count() or 1) + 10.0
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="fdin-iso-", dir=tmp_dir))
    proc: subprocess.Popen[bytes] | None = None
    try:
        encoder = Encoder(workdir, "arg")
        request = {
            "module": module, "qualname": qualname,
            "args": encoder.encode(list(args)), "kwargs": encoder.encode(dict(kwargs)),
            "sys_path": [os.path.abspath(p) for p in sys.path if isinstance(p, str)],
            "memory_limit": memory_limit_bytes, "cpu_limit": math.ceil(cpu_limit_s),
            "parent_pid": os.getpid(),
        }
        (workdir / REQUEST).write_text(json.dumps(request))
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env.update({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                    "MALLOC_ARENA_MAX": "2", "PYTHONDONTWRITEBYTECODE": "1"})
        with open(workdir / LOG, "wb") as child_log:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-c", _BOOTSTRAP.format(root=root), str(workdir)],
                stdin=subprocess.DEVNULL, stdout=child_log, stderr=child_log, env=env, cwd=str(workdir),
                start_new_session=True, close_fds=True)
        remaining = timeout - (time.monotonic() - started)
        try:
            returncode = proc.wait(timeout=max(remaining, 0.0))
        except subprocess.TimeoutExpired:
            _kill(proc)
            raise ProcessingTimeoutError(
                f"Processing took longer than {timeout:g} s and was stopped.") from None
        return _collect(proc, returncode, workdir, memory_limit_bytes, timeout)
    finally:
        if proc is not None and proc.poll() is None:
            _kill(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's own session (it may have started threads or helpers), then reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()


def _collect(proc: subprocess.Popen[bytes], returncode: int, workdir: Path,
             memory_limit: int | None, timeout: float) -> Any:
    result_path = workdir / RESULT
    if returncode < 0:
        sig = -returncode
        _log_child_tail(workdir, f"child killed by signal {sig}")
        if sig == signal.SIGXCPU:
            raise ProcessingTimeoutError(f"Processing used more than its CPU time budget and was stopped "
                                         f"(wall-clock limit {timeout:g} s).")
        if sig == signal.SIGKILL:
            raise WorkerCrashedError("The background worker was stopped by the system (most likely it "
                                     "ran out of memory); nothing was processed. Try a smaller file.")
        raise WorkerCrashedError("The background worker crashed while reading this file (the file may be "
                                 "damaged or malformed); nothing was processed. Try another file.")
    if returncode != 0 or not result_path.exists():
        _log_child_tail(workdir, f"child exited with status {returncode} and no result")
        raise WorkerCrashedError("The background worker stopped unexpectedly; nothing was processed. "
                                 "Try again or try another file.")
    try:
        payload = json.loads(result_path.read_text())
    except (OSError, ValueError):
        raise WorkerCrashedError("The background worker returned an unreadable result.") from None
    if not isinstance(payload, dict):
        raise WorkerCrashedError("The background worker returned an unreadable result.")
    if payload.get("ok") is True:
        try:
            return decode(payload.get("value"), workdir, mmap=True)
        except FdinError:
            raise
        except Exception as exc:  # malformed result files: fail closed, never trust them
            log.debug("rejecting isolated result: %s", type(exc).__name__)
            raise WorkerCrashedError("The background worker returned an unreadable result.") from None
    raise rebuild_error(payload.get("error") or {}, memory_limit)


def rebuild_error(info: dict[str, Any], memory_limit: int | None) -> BaseException:
    """The parent-side exception for a child's error report (``type``, ``module``, ``message``): the
    same :class:`~fdin.errors.FdinError` class if the parent knows it, else a safe stand-in."""
    type_name = str(info.get("type", "Exception"))
    module = str(info.get("module", ""))
    message = str(info.get("message", ""))[:MAX_MESSAGE_CHARS]
    if module == "fdin" or module.startswith("fdin."):
        # Only classes the parent has already imported: the child's text never triggers an import.
        home = _errors if module == "fdin.errors" else sys.modules.get(module)
        cls = getattr(home, type_name, None) if home is not None and type_name.isidentifier() else None
        if isinstance(cls, type) and issubclass(cls, FdinError):
            try:
                return cls(message)
            except TypeError:  # a subclass with a different constructor: keep the family, lose the type
                return FdinError(message)
    if info.get("memory_error") is True:
        limit = f" ({memory_limit / (1 << 30):.1f} GB)" if memory_limit else ""
        return WorkerCrashedError(f"Processing needed more memory than allowed{limit} and was stopped. "
                                  "Try a smaller or shorter file.")
    return IsolatedCallError(type_name, message, str(info.get("traceback", "")))


def _log_child_tail(workdir: Path, what: str) -> None:
    try:
        tail = (workdir / LOG).read_bytes()[-2000:].decode("utf-8", "replace")
    except OSError:
        tail = ""
    # Debug level only: FFmpeg messages can contain upload paths (R-31: no filenames in logs).
    log.warning("isolated worker failed: %s", what)
    log.debug("isolated worker output tail:\n%s", tail)


# --- convenience wrappers ------------------------------------------------------------------------------
def read_video_isolated(
    path: str | os.PathLike[str],
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    memory_limit_bytes: int | None = DEFAULT_MEMORY_LIMIT,
    **read_video_kwargs: Any,
) -> Any:
    """:func:`fdin.media.read_video` in a child process; returns a :class:`fdin.media.Video`.

    If no ``deadline_s`` is given, decoding inside the child gets ``timeout - 5 s`` (at least half the
    timeout), so a long file comes back cut with a note rather than as a timeout. If no
    ``max_output_bytes`` is given, it is at most half of ``memory_limit_bytes``.
    """
    from fdin.media import DEFAULT_MAX_OUTPUT_BYTES, read_video

    read_video_kwargs.setdefault("deadline_s", max(timeout * 0.5, timeout - 5.0))
    if memory_limit_bytes:  # the frame buffer is reserved up front: keep it well inside RLIMIT_AS
        read_video_kwargs.setdefault("max_output_bytes", min(DEFAULT_MAX_OUTPUT_BYTES, memory_limit_bytes // 2))
    return run_isolated(read_video, Path(path), timeout=timeout, memory_limit_bytes=memory_limit_bytes,
                        **read_video_kwargs)


def load_image_isolated(
    source: str | os.PathLike[str] | bytes,
    *,
    timeout: float = 60.0,
    memory_limit_bytes: int | None = 2 << 30,
    **load_image_kwargs: Any,
) -> Any:
    """:func:`fdin.media.load_image` in a child process; returns the ``(H, W, 3) uint8`` array."""
    from fdin.media import load_image

    if isinstance(source, (str, os.PathLike)):
        source = Path(source)
    return run_isolated(load_image, source, timeout=timeout, memory_limit_bytes=memory_limit_bytes,
                        **load_image_kwargs)

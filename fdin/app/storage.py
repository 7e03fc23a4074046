"""Where the running app keeps files, and the purge that keeps the notice's promise (nothing kept past 15 minutes).

Every file the app writes for a request — Gradio's copies of uploads and of returned files (its
``GRADIO_TEMP_DIR``) and fdin's scratch files (annotated clips, JSON downloads, encoded images) — lives
in one private folder per running instance::

    <root>/run-<pid>-<random>/            0700, removed at a normal stop
        gradio/                           GRADIO_TEMP_DIR of this instance
        scratch/                          fdin's per-request folders

``<root>`` is ``$FDIN_APP_DIR``, else ``<tmp>/fdin-app-<uid>`` (0700, owned by this user, not a symlink).

The purge:

* **while running** — a background thread deletes every file older than ``max_age`` seconds, every
  ``frequency`` seconds (:data:`~fdin.app.settings.DELETE_CACHE` = every 5 min, older than 10 min: a
  file is gone at most 15 min after it was written), and empty folders with it; the example files the
  Examples show (Gradio's ``keep_in_cache``) are kept, they are shipped photos, not user media;
* **at start** — folders of earlier instances whose process is gone are removed (a crash or SIGKILL
  leaves them behind), and so are the worker exchange folders (``/dev/shm`` or the temporary folder)
  that carry fdin's owner marker naming a process that is gone
  (:func:`fdin.isolation.workers.purge_exchange_leftovers`; never chosen by name);
* **at a normal stop** — SIGTERM, SIGINT or interpreter exit remove the instance folder.

Files are owner-only: folders are made 0700, and each sweep resets anything group/other-readable to
0600/0700 (the launcher also sets ``umask 077`` so Gradio's own files are born private). No gradio here.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import secrets
import shutil
import signal
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RUN_PREFIX = "run-"


def storage_root(env: dict[str, str] | None = None) -> Path:
    """The private root of every instance's folder (created 0700; refused if not owned by us)."""
    env = dict(os.environ) if env is None else env
    root = Path(env.get("FDIN_APP_DIR", "").strip() or Path(tempfile.gettempdir()) / f"fdin-app-{os.getuid()}")
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = root.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise RuntimeError("the app's storage folder is not a private directory owned by this user")
    os.chmod(root, 0o700)
    return root


def _pid_of(folder: Path) -> int | None:
    try:
        return int(folder.name[len(RUN_PREFIX):].split("-", 1)[0])
    except ValueError:
        return None


def purge_leftovers(root: Path | None = None) -> int:
    """Remove the folders of instances whose process is gone; returns how many were removed."""
    from fdin.isolation.workers import pid_alive

    root = storage_root() if root is None else root
    removed = 0
    for folder in root.glob(RUN_PREFIX + "*"):
        pid = _pid_of(folder)
        if pid is None or (pid != os.getpid() and not pid_alive(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    if removed:
        log.info("removed %d folder(s) left by earlier runs", removed)
    return removed


def sweep(folder: Path, max_age_s: float, *, keep: Iterable[str] = (), now: float | None = None) -> int:
    """Delete files under ``folder`` older than ``max_age_s`` (by the later of mtime and ctime) and
    then-empty folders; make what stays owner-only. Returns the number of files deleted."""
    now = time.time() if now is None else now
    keep_set = {os.path.realpath(k) for k in keep}
    deleted = 0
    emptied: set[str] = set()  # folders this sweep deleted something from
    if not folder.is_dir():
        return 0
    for dirpath, dirnames, filenames in os.walk(folder, topdown=False):
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                info = os.lstat(path)
                if os.path.realpath(path) in keep_set:
                    continue
                if now - max(info.st_mtime, info.st_ctime) > max_age_s:
                    os.unlink(path)
                    deleted += 1
                    emptied.add(dirpath)
                elif info.st_mode & 0o077 and not stat.S_ISLNK(info.st_mode):
                    os.chmod(path, stat.S_IMODE(info.st_mode) & 0o700)
            except FileNotFoundError:
                continue
        for name in dirnames:
            path = os.path.join(dirpath, name)
            try:
                info = os.lstat(path)
                if not os.listdir(path) and (path in emptied or now - max(info.st_mtime, info.st_ctime) > max_age_s):
                    os.rmdir(path)
                    emptied.add(dirpath)
                elif info.st_mode & 0o077:
                    os.chmod(path, 0o700)
            except (FileNotFoundError, OSError):
                continue
    return deleted


class Storage:
    """One instance's private folder, its sweeper thread and its removal at stop."""

    def __init__(self, root: Path | None = None) -> None:
        from fdin.isolation.workers import purge_exchange_leftovers

        self.root = storage_root() if root is None else root
        purge_leftovers(self.root)
        gone = purge_exchange_leftovers()  # /dev/shm and temp exchange folders of runs that were killed
        if gone:
            log.info("removed %d exchange folder(s) left by earlier runs", gone)
        self.path = self.root / f"{RUN_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        self.path.mkdir(mode=0o700)
        self.gradio = self.path / "gradio"
        self.scratch = self.path / "scratch"
        self.gradio.mkdir(mode=0o700)
        self.scratch.mkdir(mode=0o700)
        self.keep: Callable[[], Iterable[str]] = lambda: ()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # --- while running -------------------------------------------------------------------------
    def sweep(self, max_age_s: float) -> int:
        with self._lock:
            try:
                keep = list(self.keep())
            except Exception:  # the keep-list comes from Gradio's components: never let it stop a sweep
                log.exception("could not list the files to keep; sweeping without them")
                keep = []
            n = sweep(self.gradio, max_age_s, keep=keep) + sweep(self.scratch, max_age_s)
        trim_heap()
        return n

    def start_sweeper(self, frequency_s: float, max_age_s: float) -> None:
        if self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(frequency_s):
                try:
                    deleted = self.sweep(max_age_s)
                    if deleted:
                        log.info("purged %d file(s) older than %g s", deleted, max_age_s)
                except Exception:
                    log.exception("purge failed")

        self._thread = threading.Thread(target=loop, name="fdin-purge", daemon=True)
        self._thread.start()

    def request_dir(self) -> Path:
        """A fresh 0700 folder for one request's output files."""
        return Path(tempfile.mkdtemp(prefix="req-", dir=self.scratch))

    # --- at stop ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the sweeper and remove the whole instance folder (idempotent)."""
        self._stop.set()
        with self._lock:
            shutil.rmtree(self.path, ignore_errors=True)

    def remove_at_exit(self) -> None:
        """Remove the folder at interpreter exit, and turn SIGTERM and SIGINT into the same prompt exit:
        the folder is removed in the handler, then ``SystemExit(128 + signal)``. (SIGINT's default
        KeyboardInterrupt made Gradio close the server gracefully first, which under load could outlast
        a supervisor's patience.) Only from the main thread (signal handlers)."""
        atexit.register(self.close)
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)

            def on_signal(signum: int, frame: Any, previous: Any = previous) -> None:
                self.close()
                if callable(previous) and previous not in (signal.SIG_DFL, signal.SIG_IGN,
                                                           signal.default_int_handler):
                    previous(signum, frame)
                raise SystemExit(128 + signum)

            signal.signal(sig, on_signal)


_current: Storage | None = None
_current_lock = threading.Lock()


def current() -> Storage:
    """The process's :class:`Storage` (made on first use; :func:`install` sets it explicitly)."""
    global _current
    with _current_lock:
        if _current is None or not _current.path.is_dir():
            _current = Storage()
        return _current


def install(storage: Storage | None = None) -> Storage:
    """Make ``storage`` (default: a new one) the process's, and point Gradio's cache at its folder:
    must run before the Blocks are built (components read ``GRADIO_TEMP_DIR`` when created)."""
    global _current
    with _current_lock:
        _current = storage if storage is not None else Storage()
        os.environ["GRADIO_TEMP_DIR"] = str(_current.gradio)
        return _current


def trim_heap() -> None:
    """Give freed heap pages back to the system (glibc ``malloc_trim``); a no-op elsewhere."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)


def limit_malloc_arenas(count: int = 2) -> None:
    """Cap glibc's malloc arenas for threads created from now on (``M_ARENA_MAX``): with one arena per
    worker thread, freed memory stays scattered and RSS creeps across bursts."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-8, int(count))  # M_ARENA_MAX


__all__ = ["Storage", "current", "install", "limit_malloc_arenas", "purge_leftovers", "storage_root", "sweep", "trim_heap"]

"""Top-level functions that tests run in a child with :func:`fdin.isolation.run_isolated`.

Kept in a plain module (no pytest import) so the child starts fast.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fdin.errors import MediaLimitError
from fdin.isolation import register_result_type


def worker_pids(module: bytes = b"") -> list[int]:
    """Live (not zombie) worker processes of :class:`fdin.isolation.workers.LineWorker` started by this
    process (``module``: only those running that module, e.g. ``b"fdin.analysis_pool"``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            cmd = (entry / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if int(ppid) == os.getpid() and state != "Z" and b"-I\0-c\0import sys; sys.path.insert" in cmd \
                and b"from fdin." in cmd and module in cmd:
            pids.append(int(entry.name))
    return pids


def segfault() -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def abort() -> None:
    os.abort()


def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def record_pid_then_sleep(path: Path, seconds: float) -> None:
    Path(path).write_text(str(os.getpid()))
    time.sleep(seconds)


def raise_media_limit(message: str) -> None:
    raise MediaLimitError(message)


def raise_value_error() -> None:
    raise ValueError("a bug, not bad input")


def allocate(n_bytes: int) -> int:
    block = np.ones(n_bytes, dtype=np.uint8)
    return int(block[:: 1 << 20].sum())


def echo(*args: object, **kwargs: object) -> dict[str, object]:
    return {"args": args, "kwargs": kwargs}


def frames(n: int, height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(n)
    return rng.integers(0, 256, size=(n, height, width, 3), dtype=np.uint8)


def pid() -> int:
    return os.getpid()


def limits() -> dict[str, int]:
    import resource

    return {"as": resource.getrlimit(resource.RLIMIT_AS)[0], "core": resource.getrlimit(resource.RLIMIT_CORE)[0]}


@register_result_type
@dataclass(frozen=True)
class Pair:
    left: np.ndarray
    right: tuple[int, ...]


def make_pair() -> Pair:
    return Pair(np.arange(6, dtype=np.float32).reshape(2, 3), (1, 2))


def write_marker(path: Path) -> str:
    Path(path).write_text("ran")
    return "ok"

"""The child side of :func:`fdin.isolation.run_isolated`: set the process limits on itself, run the
requested function, and write its result (or its error) for the parent."""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from fdin.isolation.codec import Encoder, decode

#: File names inside the private exchange directory, and the longest error message passed back.
REQUEST = "request.json"
RESULT = "result.json"
LOG = "child.log"
MAX_MESSAGE_CHARS = 600


def apply_limits(memory_limit: int | None, cpu_limit: int | None, parent_pid: int | None) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory_limit:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
        resource.setrlimit(resource.RLIMIT_FSIZE, (memory_limit * 2, memory_limit * 2))
    if cpu_limit:
        soft = max(1, int(cpu_limit))
        resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 5))
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the parent
        except (OSError, AttributeError):
            pass
    if parent_pid and os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(70)


def child_main(workdir_arg: str) -> int:
    workdir = Path(workdir_arg)
    request = json.loads((workdir / REQUEST).read_text())
    apply_limits(request.get("memory_limit"), request.get("cpu_limit"), request.get("parent_pid"))
    sys.path[:] = [p for p in request.get("sys_path", []) if isinstance(p, str)] or sys.path
    try:
        fn: Any = importlib.import_module(request["module"])
        for part in request["qualname"].split("."):
            fn = getattr(fn, part)
        args = decode(request["args"], workdir, mmap=False)
        kwargs = decode(request["kwargs"], workdir, mmap=False)
        value = fn(*args, **kwargs)
        payload: dict[str, Any] = {"ok": True, "value": Encoder(workdir, "res").encode(value)}
    except BaseException as exc:  # everything is reported to the parent, which decides
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            exc = RuntimeError("the isolated function called sys.exit()")
        payload = {"ok": False, "error": {
            "type": type(exc).__name__, "module": type(exc).__module__,
            "message": str(exc)[:MAX_MESSAGE_CHARS], "memory_error": isinstance(exc, MemoryError),
            "traceback": "".join(traceback.format_exception(exc))[-4000:],
        }}
    tmp = workdir / (RESULT + ".part")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, workdir / RESULT)
    return 0



"""Stand-ins for fdin's decoders that misbehave like a hostile file would, for the isolation tests of
the app's decode path (reliability R-18). They run in the isolated child (``fdin.isolation``), which
imports them by module and name, so this module stays tiny: no pytest, no numpy, no fdin imports.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any


def segfault_decoder(source: Any, **kwargs: Any) -> None:
    """What a memory-safety bug in FFmpeg/Pillow does to the process: SIGSEGV."""
    os.kill(os.getpid(), signal.SIGSEGV)


def abort_decoder(source: Any, **kwargs: Any) -> None:
    """A native ``abort()`` (an assertion in a C library)."""
    os.abort()


def hanging_decoder(source: Any, **kwargs: Any) -> None:
    """A decoder stuck in a loop that never checks its deadline."""
    time.sleep(3600)

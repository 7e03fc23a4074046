"""The Gradio web app: the only package of fdin that imports gradio (``import fdin`` does not load it).

* :mod:`~fdin.app.settings` — limits, model sources, where to listen, launch/queue options;
* :mod:`~fdin.app.texts` — notice, disclaimers, API help, the models table;
* :mod:`~fdin.app.ratelimit` — the per-client token bucket;
* :mod:`~fdin.app.predictors` — the :class:`Predictors` protocol and the lazily loading real ones;
* :mod:`~fdin.app.handlers` — the three handlers with error mapping, rate limit and scratch files;
* :mod:`~fdin.app.storage` — the instance's private folder and its purge (running, start, stop);
* :mod:`~fdin.app.guard` — body limits, upload quota, refused routes, header hygiene (ASGI middleware);
* :mod:`~fdin.app.blocks` — ``GuardedBlocks`` (argument checks, one message for any failure);
* :mod:`~fdin.app.rendering` — summary text, tables, plots, annotated clip and keyframe;
* :mod:`~fdin.app.examples` — example photos and the generated clip, made once in the cache folder;
* :mod:`~fdin.app.layout` — :func:`build_demo` (``build_demo(predictors)`` with injected predictors).

``app.py`` at the repository root parses ``--host/--port``, prepares the examples and launches.
Importing this package (or its gradio-free modules: settings, texts, ratelimit, predictors, examples,
rendering) does not import gradio; the names below are resolved on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Handlers": "fdin.app.handlers",
    "build_demo": "fdin.app.layout",
    "LazyPredictors": "fdin.app.predictors",
    "Predictors": "fdin.app.predictors",
    "RateLimiter": "fdin.app.ratelimit",
    "launch_kwargs": "fdin.app.settings",
    "queue_kwargs": "fdin.app.settings",
    "server_address": "fdin.app.settings",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fdin.app' has no attribute {name!r}")

"""A plain registry of model builders: ``create_model(name, **kwargs)``.

Model modules register their builders with :func:`register_model`; the registry imports them lazily
the first time a name is looked up, so importing :mod:`fdin` never imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

_BUILDERS: dict[str, Callable[..., Any]] = {}
_MODEL_MODULES = ("fdin.models.fdin", "fdin.models.expression", "fdin.models.relation")
_loaded = False


def register_model(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register ``builder(**kwargs) -> nn.Module`` under ``name``."""

    def decorator(builder: Callable[..., Any]) -> Callable[..., Any]:
        if name in _BUILDERS and _BUILDERS[name] is not builder:
            raise ValueError(f"model {name!r} is registered twice")
        _BUILDERS[name] = builder
        return builder

    return decorator


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    for module in _MODEL_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:  # a model family not present in this checkout
            if error.name != module:
                raise
    _loaded = True


def list_models() -> list[str]:
    _load_all()
    return sorted(_BUILDERS)


def create_model(name: str, **kwargs: Any) -> Any:
    """Build an (untrained) model by registered name; ``kwargs`` go to its builder."""
    _load_all()
    try:
        builder = _BUILDERS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(_BUILDERS))}") from None
    return builder(**kwargs)

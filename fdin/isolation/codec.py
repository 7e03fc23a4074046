"""The pickle-free codec between parent and child: JSON for structure, ``.npy`` files read with
``allow_pickle=False`` for arrays, and the registry of dataclasses allowed to cross
(:func:`register_result_type`)."""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
from pathlib import Path
from typing import Any, TypeVar

from fdin.errors import WorkerCrashedError

T = TypeVar("T")

#: Dataclasses the parent may rebuild from a child's result, by "module.QualName".
RESULT_TYPES: dict[str, type] = {}
#: Registered on first use (importing them up front would import the media package in every child).
LAZY_RESULT_TYPES = frozenset({"fdin.media.container.Video", "fdin.media.container.VideoInfo"})


def register_result_type(cls: type[T]) -> type[T]:
    """Allow instances of dataclass ``cls`` to cross the process boundary (usable as a decorator)."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    RESULT_TYPES[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return cls


def result_type(name: str) -> type:
    if name not in RESULT_TYPES and name in LAZY_RESULT_TYPES:
        module, _, qual = name.rpartition(".")
        register_result_type(getattr(importlib.import_module(module), qual))
    if name not in RESULT_TYPES:
        raise WorkerCrashedError("The background worker returned an unexpected result and was stopped.")
    return RESULT_TYPES[name]


class Encoder:
    def __init__(self, directory: Path, prefix: str) -> None:
        self.directory, self.prefix, self.count = directory, prefix, 0

    def _file(self, suffix: str) -> tuple[str, Path]:
        name = f"{self.prefix}{self.count}{suffix}"
        self.count += 1
        return name, self.directory / name

    def encode(self, value: Any) -> Any:
        import numpy as np

        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else {"__float__": repr(value)}
        if isinstance(value, np.ndarray):
            if value.dtype.hasobject or value.dtype.fields is not None:
                raise TypeError("only plain numeric numpy arrays can cross the process boundary")
            name, path = self._file(".npy")
            np.save(path, value, allow_pickle=False)
            return {"__ndarray__": name}
        if isinstance(value, np.generic):
            return self.encode(value.item())
        if isinstance(value, (bytes, bytearray, memoryview)):
            name, path = self._file(".bin")
            path.write_bytes(bytes(value))
            return {"__bytes__": name}
        if isinstance(value, os.PathLike):
            return {"__path__": os.fspath(value)}
        if isinstance(value, tuple):
            return {"__tuple__": [self.encode(v) for v in value]}
        if isinstance(value, list):
            return [self.encode(v) for v in value]
        if isinstance(value, dict):
            if not all(isinstance(k, str) for k in value):
                raise TypeError("only dicts with str keys can cross the process boundary")
            if any(k.startswith("__") and k.endswith("__") for k in value):
                raise TypeError("dict keys like '__x__' are reserved by the isolation codec")
            return {k: self.encode(v) for k, v in value.items()}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            cls = type(value)
            name = f"{cls.__module__}.{cls.__qualname__}"
            if name not in RESULT_TYPES and name not in LAZY_RESULT_TYPES:
                raise TypeError(f"dataclass {name} is not registered with register_result_type()")
            fields = {f.name: self.encode(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
            return {"__dataclass__": name, "fields": fields}
        raise TypeError(f"values of type {type(value).__name__} cannot cross the process boundary")


def decode(value: Any, directory: Path, *, mmap: bool) -> Any:
    import numpy as np

    if isinstance(value, list):
        return [decode(v, directory, mmap=mmap) for v in value]
    if not isinstance(value, dict):
        return value
    if "__ndarray__" in value:
        path = inside(directory, value["__ndarray__"])
        if mmap:
            try:
                # A plain ndarray view of a copy-on-write mapping (not an np.memmap subclass).
                return np.asarray(np.load(path, mmap_mode="c", allow_pickle=False))
            except ValueError:  # empty arrays cannot be mapped
                pass
        return np.load(path, allow_pickle=False)
    if "__bytes__" in value:
        return inside(directory, value["__bytes__"]).read_bytes()
    if "__path__" in value:
        return Path(value["__path__"])
    if "__float__" in value:
        return float(value["__float__"])
    if "__tuple__" in value:
        return tuple(decode(v, directory, mmap=mmap) for v in value["__tuple__"])
    if "__dataclass__" in value:
        cls = result_type(value["__dataclass__"])
        fields = {k: decode(v, directory, mmap=mmap) for k, v in value["fields"].items()}
        allowed = {f.name for f in dataclasses.fields(cls) if f.init}
        if not set(fields) <= allowed:
            raise WorkerCrashedError("The background worker returned an unexpected result and was stopped.")
        return cls(**fields)
    return {k: decode(v, directory, mmap=mmap) for k, v in value.items()}


def inside(directory: Path, name: Any) -> Path:
    """A file named by the child must be a plain name inside the private directory."""
    if not isinstance(name, str) or os.sep in name or name.startswith(".") or "/" in name:
        raise WorkerCrashedError("The background worker returned an unexpected result and was stopped.")
    return directory / name



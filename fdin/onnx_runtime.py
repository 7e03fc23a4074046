"""The one place fdin creates ONNX Runtime sessions (reliability R-24): execution-provider choice,
thread settings, and the cache folder that exported ONNX files go to.

Providers: ``CUDAExecutionProvider`` first when the installed onnxruntime build offers it (the
``onnxruntime-gpu`` wheel), then ``CPUExecutionProvider``; the plain ``onnxruntime`` wheel gives CPU
only. ``FDIN_ONNX_PROVIDERS=cpu`` forces CPU on a GPU build. Callers pass only files from fdin's own
model folders or its export cache, or bytes checked against a recorded SHA-256. ``onnxruntime`` is
imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fdin.config import cache_root

#: Providers fdin uses when the installed build offers them, in order of preference.
PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


def choose_providers(available: Sequence[str] | None = None) -> list[str]:
    """The providers for a new session: :data:`PREFERRED_PROVIDERS` that ``available`` (default:
    ``onnxruntime.get_available_providers()``) offers, CUDA first; CPU when nothing else fits."""
    if os.environ.get("FDIN_ONNX_PROVIDERS", "").strip().lower() == "cpu":
        return ["CPUExecutionProvider"]
    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
    chosen = [p for p in PREFERRED_PROVIDERS if p in available]
    return chosen if "CPUExecutionProvider" in chosen else [*chosen, "CPUExecutionProvider"]


def create_session(model: str | os.PathLike[str] | bytes, *, threads: int | None = None,
                   inter_op_threads: int | None = 1, spinning: bool = True, optimize: bool = True,
                   providers: Sequence[str] | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` for a model file path or the model's bytes.

    Args:
        threads: intra-op threads (``None``: onnxruntime's default, one per core).
        inter_op_threads: inter-op threads (``None``: onnxruntime's default).
        spinning: let idle intra-op workers spin; ``False`` for sub-millisecond graphs that run
            beside other models, where spinning threads only steal CPU.
        optimize: graph optimisation (``False``: ``ORT_DISABLE_ALL``, for models whose published
            parity was measured without it).
        providers: execution providers (default: :func:`choose_providers`).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    if inter_op_threads:
        options.inter_op_num_threads = int(inter_op_threads)
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=options, providers=list(providers or choose_providers()))


def export_cache_dir() -> Path:
    """Where ONNX files exported from verified weights are kept: ``<cache>/onnx`` (not created here:
    the exporter creates it when it writes, so looking up a cached file leaves no trace)."""
    return cache_root() / "onnx"


def export_onnx(graph: Any, inputs: tuple[Any, ...], path: str | os.PathLike[str], *, input_names: Sequence[str],
                output_names: Sequence[str], dynamic_axes: dict[str, dict[int, str]],
                metadata: dict[str, str] | None = None, opset: int = 17) -> Path:
    """Export the eval-mode ``graph`` (a ``torch.nn.Module`` returning a tuple, in ``output_names``
    order) to ``path`` atomically (a temporary file, then a rename), with ``metadata`` written into
    the model's ``metadata_props`` (e.g. the SHA-256 of the weights it came from).

    The TorchScript exporter (``dynamo=False``) is used on purpose: its graphs need only ``onnx``.
    Callers put their models in eval mode first and restore the mode after.
    """
    import contextlib
    import warnings

    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}.onnx")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, inputs, str(tmp), opset_version=opset, input_names=list(input_names),
                              output_names=list(output_names), dynamic_axes=dynamic_axes, dynamo=False)
        if metadata:
            import onnx

            proto = onnx.load(str(tmp))
            for key, value in metadata.items():
                entry = proto.metadata_props.add()
                entry.key, entry.value = key, value
            onnx.save(proto, str(tmp))
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return path


__all__ = ["PREFERRED_PROVIDERS", "choose_providers", "create_session", "export_cache_dir", "export_onnx"]

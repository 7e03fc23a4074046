"""FDIN in ONNX Runtime: export, verified lookup, and a torch-free predictor.

Why: importing torch costs ~5 s and ~650 MB RSS on the 2-core CPU machines, more than the whole
analysis of a 20 s clip; the FDIN forward itself is ~0.5 ms in ONNX Runtime (1.2 ms in PyTorch).
:func:`load_fdin` therefore returns an :class:`FdinPredictor` that runs the exported graph and
imports torch only when no verified ONNX file exists (then it exports one into the cache once).

Where the ONNX file comes from (first match wins):

1. ``<model folder>/model.onnx`` **if** ``SHA256SUMS`` covers it (checked with the rest of the
   folder by :func:`fdin.weights.verify_weights_dir`) **and** its metadata ``fdin_weights_sha256``
   equals the folder's recorded ``model.safetensors`` digest (so a stale export left behind by a
   retrain is ignored, with a warning). Write it with :func:`add_onnx_to_weights` /
   ``python -m fdin.models.fdin_onnx weights/fdin-gender weights/fdin-age``.
2. ``<cache>/onnx/fdin-<digest16>.onnx`` (:func:`fdin.onnx_runtime.export_cache_dir`, ``FDIN_CACHE_DIR``),
   exported at first use from the verified safetensors (needs torch once).
3. Otherwise (no onnxruntime, appearance variant, unverifiable folder): PyTorch.

Graph: input ``x`` (B, T, R, C) float32 displacements (dynamic B and T); outputs ``output``,
``pair_importance`` (B, P), ``importance`` (B, R, R) and for age ``age_years``/``age_std_years``
(B,), and ``pair_effect`` (B, P) for weights with an attribution reference, with the same meaning
as :meth:`fdin.models.fdin.FDIN.forward`. ``tests/test_onnx_parity.py``
checks them against PyTorch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fdin.models.pretrained import OnnxBackedModel

log = logging.getLogger(__name__)

ONNX_NAME = "model.onnx"
SHA_KEY = "fdin_weights_sha256"
GEOMETRY_ARCHITECTURES = ("fdin", "fdin_uniform", "fdin_baseline")
FDIN_ARCHITECTURES = (*GEOMETRY_ARCHITECTURES, "fdin_appearance")


def output_names(target: str, attribution: bool = False) -> tuple[str, ...]:
    """The graph's outputs: for age also the years and their std; with ``attribution`` also
    ``pair_effect`` (:meth:`fdin.models.fdin.FDIN.pair_effects`)."""
    base = ("output", "pair_importance", "importance")
    names = (*base, "age_years", "age_std_years") if target == "age" else base
    return (*names, "pair_effect") if attribution else names


# --- export ----------------------------------------------------------------------------------------
@contextlib.contextmanager
def _onnx_friendly_input_transform(encoder: Any):
    """``torch.diff`` has no ONNX symbolic: trace an arithmetically identical slice-and-subtract.

    ``diff(x, prepend=x[:, :1])[t] = x[t] - x[t-1]`` (0 at t = 0) = ``x - cat([x[:, :1], x[:, :-1]])``.
    """
    import torch

    original = type(encoder).transform_input

    def transform(x: torch.Tensor) -> torch.Tensor:
        if encoder.input_mode != "velocity":
            return original(encoder, x)
        v = x - torch.cat([x[:, :1], x[:, :-1]], dim=1)
        return v / (v.pow(2).mean(dim=1, keepdim=True).sqrt() + encoder.eps)

    encoder.transform_input = transform
    try:
        yield
    finally:
        del encoder.transform_input


def export_fdin_onnx(model: Any, path: str | os.PathLike[str], *, weights_sha256: str = "",
                     opset: int = 17) -> Path:
    """Export a geometry :class:`~fdin.models.fdin.FDIN` (eval mode) to ONNX at ``path`` (atomic).

    The importance matrix is built in-graph as ``pair_importance @ S`` with a constant 0/1 scatter
    matrix ``S`` (P, R*R), which is exact and needs no ScatterND.
    """
    import torch

    if getattr(model, "encoder_kind", "geometry") != "geometry":
        raise ValueError("only the geometry FDIN variants are exported to ONNX")
    target = model.target
    names = output_names(target, attribution=bool(getattr(model, "has_attribution", False)))

    class _Graph(torch.nn.Module):
        def __init__(self, net: Any) -> None:
            super().__init__()
            self.net = net
            r, pairs = int(net.num_regions), net.pairs.cpu()
            scatter = torch.zeros(len(pairs), r * r)
            rows = torch.arange(len(pairs))
            scatter[rows, pairs[:, 0] * r + pairs[:, 1]] = 1.0
            scatter[rows, pairs[:, 1] * r + pairs[:, 0]] = 1.0
            self.register_buffer("scatter", scatter, persistent=False)
            self.r = r

        def forward(self, x: torch.Tensor):
            out = dict(self.net(x))
            out["importance"] = (out["pair_importance"] @ self.scatter).reshape(-1, self.r, self.r)
            return tuple(out[k] for k in names)

    # NB: the wrapper must be in eval mode too: the exporter restores the *wrapper's* mode on the
    # whole module tree afterwards, and a fresh Module is in training mode (dropout would turn on).
    from fdin.onnx_runtime import export_onnx

    was_training = model.training
    model.eval()
    graph = _Graph(model).eval()
    length = int(getattr(getattr(model, "dynamics_config", None), "length", 100) or 100)
    dummy = 0.05 * torch.randn(1, length, int(model.num_regions), int(model.encoder.input_proj.in_channels))
    meta = {SHA_KEY: weights_sha256, "fdin_target": target, "fdin_num_regions": str(model.num_regions)}
    try:
        with _onnx_friendly_input_transform(model.encoder):
            export_onnx(graph, (dummy,), path, input_names=["x"], output_names=names, metadata=meta, opset=opset,
                        dynamic_axes={"x": {0: "batch", 1: "time"}, **{k: {0: "batch"} for k in names}})
    finally:
        model.train(was_training)
    return Path(path)


def add_onnx_to_weights(model_dir: str | os.PathLike[str]) -> Path:
    """Export the (verified) model in ``model_dir`` to ``model_dir/model.onnx`` and rewrite SHA256SUMS."""
    from fdin.models.pretrained import load_pretrained
    from fdin.weights import read_checksums, write_checksums

    model_dir = Path(model_dir)
    onnx_path = model_dir / ONNX_NAME
    if onnx_path.exists():  # never let a stale export be re-blessed while verifying the rest
        onnx_path.unlink()
        sums = read_checksums(model_dir)
        sums.pop(ONNX_NAME, None)
        (model_dir / "SHA256SUMS").write_text("".join(f"{d}  {n}\n" for n, d in sorted(sums.items())))
    loaded = load_pretrained(model_dir)
    export_fdin_onnx(loaded.model, onnx_path, weights_sha256=read_checksums(model_dir)["model.safetensors"])
    write_checksums(model_dir)
    return onnx_path


# --- inference -------------------------------------------------------------------------------------
def onnx_session(path: Path, threads: int) -> Any:
    """A session for an FDIN ONNX file: ``threads`` intra-op threads, no spinning (a sub-millisecond
    graph: spinning worker threads would only steal CPU from the face models)."""
    from fdin.onnx_runtime import create_session

    return create_session(path, threads=threads, inter_op_threads=1, spinning=False)


def _onnx_sha(session: Any) -> str:
    return session.get_modelmeta().custom_metadata_map.get(SHA_KEY, "")


@dataclass
class FdinPredictor(OnnxBackedModel):
    """One FDIN model, numpy in and out: ``predictor(x (B, T, R, C)) -> {name: ndarray}`` (fields and
    ``model``/``provenance()``: :class:`fdin.models.pretrained.OnnxBackedModel`)."""

    @property
    def target(self) -> str | None:
        """"gender" or "age" for an FDIN model (the builders' default is gender), else None."""
        if self.config.get("architecture") not in FDIN_ARCHITECTURES:
            return None
        return str(self.config.get("model_args", {}).get("target", "gender"))

    @property
    def dynamics_config(self) -> Any:
        from fdin.dynamics import DynamicsConfig

        return DynamicsConfig(**(self.config.get("model_args", {}).get("dynamics") or {}))

    @property
    def attribution_noise(self) -> float | None:
        """The noise level of ``pair_effect`` (None: these weights carry no attribution reference)."""
        value = self.config.get("model_args", {}).get("attribution_noise")
        return None if value is None else float(value)

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        wanted = output_names(self.target, attribution=self.attribution_noise is not None)
        if self.session is not None:
            names = [o.name for o in self.session.get_outputs() if o.name in wanted]
            return dict(zip(names, self.session.run(names, {"x": x}), strict=True))
        import torch

        with torch.inference_mode():
            out = self.model(torch.from_numpy(x))
        return {k: v.numpy() for k, v in out.items() if k in wanted}


def _cache_path(digest: str) -> Path:
    from fdin.onnx_runtime import export_cache_dir

    return export_cache_dir() / f"fdin-{digest[:16]}.onnx"


def load_fdin(source: str | os.PathLike[str], *, revision: str | None = None, use_onnx: bool = True,
              threads: int = 1) -> FdinPredictor:
    """Resolve and verify a FDIN model folder (as :func:`fdin.models.pretrained.load_pretrained` does) and
    return a predictor that runs in ONNX Runtime when possible (see the module docstring)."""
    from fdin.errors import WeightsIntegrityError
    from fdin.weights import CONFIG_NAME, WEIGHTS_NAME, read_checksums, resolve_weights, verify_weights_dir

    path, described = resolve_weights(source, revision=revision)
    verify_weights_dir(path)
    try:
        config = json.loads((path / CONFIG_NAME).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise WeightsIntegrityError(f"{described}: {CONFIG_NAME} is missing or not valid JSON.") from error
    predictor = FdinPredictor(config=config, path=path, source=described, backend="torch")
    geometry = (config.get("architecture") in GEOMETRY_ARCHITECTURES
                and config.get("model_args", {}).get("encoder", "geometry") == "geometry")
    if not (use_onnx and geometry):
        return predictor
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        log.info("onnxruntime is not installed; FDIN runs in PyTorch")
        return predictor
    sums = read_checksums(path)
    digest = sums[WEIGHTS_NAME]
    candidates = []
    if ONNX_NAME in sums:  # verified above together with the rest of the folder
        candidates.append(path / ONNX_NAME)
    cached = _cache_path(digest)
    candidates.append(cached)
    for candidate in candidates:
        if not candidate.is_file():
            continue
        try:
            session = onnx_session(candidate, threads)
        except Exception as error:  # a corrupt cache entry: re-export below
            log.warning("ignoring unreadable ONNX file %s: %s", candidate, error)
            continue
        if _onnx_sha(session) != digest:
            log.warning("%s was exported from other weights than %s/%s; ignoring it (re-export with "
                        "python -m fdin.models.fdin_onnx %s)", candidate, described, WEIGHTS_NAME, path)
            continue
        predictor.session, predictor.onnx_path, predictor.backend = session, candidate, "onnxruntime"
        return predictor
    try:
        export_fdin_onnx(predictor.model, cached, weights_sha256=digest)
        predictor.session, predictor.onnx_path, predictor.backend = onnx_session(cached, threads), cached, "onnxruntime"
    except Exception as error:  # export problems must never break analysis: stay on PyTorch
        log.warning("FDIN ONNX export failed (%s); running in PyTorch", error)
    return predictor


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m fdin.models.fdin_onnx",
                                     description="Export FDIN model folders to model.onnx (+ SHA256SUMS).")
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for folder in args.folders:
        print(add_onnx_to_weights(folder))
    return 0


__all__ = ["ONNX_NAME", "FdinPredictor", "add_onnx_to_weights", "export_fdin_onnx", "load_fdin", "output_names"]

if __name__ == "__main__":
    raise SystemExit(main())

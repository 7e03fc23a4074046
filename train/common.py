"""Small generic training utilities shared by the training scripts (no model code here).

* :func:`setup_distributed` / :func:`cleanup_distributed`: DDP on CPU with the ``gloo`` backend when
  launched by ``torchrun`` (``WORLD_SIZE`` > 1); a no-op otherwise.
* :func:`start_run`: logging, DDP, torch threads and seeds for a script's ``main``.
* :func:`make_loader`: a DataLoader with a ``DistributedSampler`` under DDP.
* :func:`train_one_epoch`: the optimisation loop shared by the image-model scripts.
* :func:`progress`: a tqdm bar on rank 0 only (disabled with ``quiet``).
* :func:`write_json`: resolved configs and ``metrics.json``.
* :func:`balanced_accuracy`: mean of true-positive and true-negative rates of a binary label.
"""

from __future__ import annotations

import json
import os
import random
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> DistInfo:
    """Initialise ``torch.distributed`` (gloo) when launched by torchrun with several processes."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size())


def cleanup_distributed(info: DistInfo) -> None:
    if info.enabled:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_loader(dataset: Any, *, batch_size: int, shuffle: bool, info: DistInfo, num_workers: int = 0,
                seed: int = 0):
    """DataLoader (DistributedSampler under DDP; call ``loader.sampler.set_epoch(e)`` each epoch)."""
    import torch
    from torch.utils.data import DataLoader, DistributedSampler

    sampler = None
    if info.enabled:
        sampler = DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=shuffle,
                                     seed=seed)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                      num_workers=num_workers, generator=generator, drop_last=False)


def set_epoch(loader: Any, dataset: Any, epoch: int) -> None:
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    if hasattr(dataset, "epoch"):
        dataset.epoch = epoch


def start_run(*, threads: int, seed: int) -> DistInfo:
    """Common start of a training ``main``: INFO logging, DDP when under torchrun, ``threads`` torch
    intra-op threads, and seeds (``seed + rank``: each rank draws its own augmentations)."""
    import logging

    import torch

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    info = setup_distributed()
    torch.set_num_threads(max(1, threads))
    seed_everything(seed + info.rank)
    return info


def train_one_epoch(net: Any, loader: Any, optimizer: Any, scheduler: Any, loss_of_batch: Any, *,
                    info: DistInfo, quiet: bool, desc: str) -> float:
    """One pass over ``loader``: ``loss_of_batch(batch) -> (loss, batch_size)``, backward, optimizer and
    per-step scheduler; returns the mean training loss (shown live on the progress bar)."""
    running, seen = 0.0, 0
    bar = progress(loader, info=info, quiet=quiet, desc=desc)
    for batch in bar:
        loss, size = loss_of_batch(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        running += loss.item() * size
        seen += size
        bar.set_postfix(loss=f"{running / max(seen, 1):.3f}")
    return running / max(seen, 1)


def progress(iterable: Iterable, *, info: DistInfo, quiet: bool, **kwargs: Any):
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=quiet or not info.is_main, dynamic_ncols=True, **kwargs)


def write_json(path: str | Path, data: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float | None:
    """(TPR + TNR) / 2 for binary 0/1 arrays; the available rate alone when one class is absent;
    None when there are no samples."""
    y_true, y_pred = np.asarray(y_true).astype(bool), np.asarray(y_pred).astype(bool)
    if len(y_true) == 0:
        return None
    rates = [float((y_pred[y_true] == 1).mean())] if y_true.any() else []
    if (~y_true).any():
        rates.append(float((y_pred[~y_true] == 0).mean()))
    return float(np.mean(rates))


def bootstrap_ci(statistic: Any, n: int, *, strata: np.ndarray | None = None, n_boot: int = 2000,
                 level: float = 0.95, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentile bootstrap: ``statistic(indices)`` -> array (any shape) over ``n`` samples.

    Resamples the samples with replacement (within each stratum when ``strata`` (n,) is given, so
    every resample keeps each stratum's size, e.g. one test set per seed) ``n_boot`` times and returns
    ``(point, low, high)``: the statistic on all samples and the ``level`` percentile interval of the
    resampled statistics (NaN where a resample's statistic is NaN is ignored)."""
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if strata is None else [np.flatnonzero(strata == s) for s in np.unique(strata)]
    point = np.asarray(statistic(np.arange(n)), np.float64)
    draws = np.empty((n_boot, *point.shape))
    for b in range(n_boot):
        draws[b] = statistic(np.concatenate([g[rng.integers(0, len(g), len(g))] for g in groups]))
    alpha = (1 - level) / 2
    with warnings.catch_warnings():  # an all-NaN cell stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanquantile(draws, alpha, axis=0), np.nanquantile(draws, 1 - alpha, axis=0)
    return point, low, high


def unwrap(model: Any) -> Any:
    """The module inside a DistributedDataParallel wrapper (or the model itself)."""
    return getattr(model, "module", model)


__all__ = ["DistInfo", "balanced_accuracy", "bootstrap_ci", "cleanup_distributed", "make_loader", "progress", "seed_everything",
           "set_epoch", "setup_distributed", "unwrap", "write_json"]

"""Why FDIN runs sit on the initial plateau: ``python -m train.diagnose_fdin_plateau --data-seeds 4242 2718``.

At initialisation (no training), per generated data set (300 easy-gender sequences) and initialisation
seed: held-out accuracy of a logistic probe on the planted pair's relational feature ``r_ij`` alone,
of one on the importance-weighted sum ``z = Σ a_ij r_ij`` the trait head reads, and the planted pair's
mean importance × the number of pairs (1 = uniform). Probes are fitted on two thirds of the subjects
and scored on the rest. Used for ``docs/fdin.md`` ("Why runs sat on the initial plateau").
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np


def probe_accuracy(features: np.ndarray, y: np.ndarray, train: np.ndarray) -> float:
    """Held-out accuracy of an L2-regularised logistic regression on standardised ``features``."""
    import torch

    from train.fdin import _logistic_fit

    f = torch.from_numpy(features).double()
    f = (f - f[train].mean(0)) / (f[train].std(0) + 1e-9)
    w, b = _logistic_fit(f[train], torch.from_numpy(y[train]).double(), 1e-3)
    return float((((f[~train] @ w[0] + b) > 0).numpy() == y[~train]).mean())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.diagnose_fdin_plateau", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-seeds", type=int, nargs="+", default=[4242, 2718])
    p.add_argument("--inits", type=int, default=3)
    p.add_argument("--n", type=int, default=300)
    args = p.parse_args(argv)
    import torch

    from fdin.dynamics import DynamicsConfig, fit_length
    from fdin.models.fdin import VARIANT_ARCHITECTURE
    from fdin.models.registry import create_model
    from fdin.synth import write_dataset
    from train import fdin as train_fdin

    torch.set_num_threads(1)
    print("data seed | init | planted pair r_ij | z = Σ a r | planted a × P")
    with tempfile.TemporaryDirectory() as tmp:
        for dseed in args.data_seeds:
            data = write_dataset(Path(tmp) / f"d{dseed}", n_sequences=args.n, seed=dseed)
            records = train_fdin.load_dataset(data, DynamicsConfig())
            x = torch.from_numpy(np.stack([fit_length(r.traj, 100)[0] for r in records]).astype(np.float32))
            y = np.array([r.gender == "female" for r in records])
            subjects = np.array([r.subject for r in records])
            uniq = sorted(set(subjects))
            train = np.isin(subjects, uniq[: len(uniq) * 2 // 3])
            planted = train_fdin.relevant_pairs(data, "gender")[0]
            for init in range(args.inits):
                torch.manual_seed(init)
                model = create_model(VARIANT_ARCHITECTURE["fdin"], target="gender", dim=16, rel_dim=16,
                                     fast_correlation=True).eval()
                with torch.no_grad():
                    r, logits = model.interpreter.scores(*model._encode(x))
                    z, a = model.interpreter.combine(r, logits)
                print(f"{dseed} | {init} | {probe_accuracy(r[:, planted].numpy(), y, train):.3f} | "
                      f"{probe_accuracy(z.numpy(), y, train):.3f} | {float(a[:, planted].mean()) * a.shape[1]:.2f}",
                      flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

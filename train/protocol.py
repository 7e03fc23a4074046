"""The paper's evaluation protocol in one command: ``python -m train.fdin --data DIR --protocol uvanemo``.

``uvanemo``: 10-fold subject-disjoint cross-validation (the protocol of the Dibeklioglu et al. UvA-NEMO
papers; Kim & Ro's exact folds are not known to fdin, see ``docs/fdin.md``) for **gender** (accuracy)
and **age** (MAE, years), for every model ``train.fdin --model`` offers (read from its parser at run
time, so new baselines join automatically). Every (target, model) pair is one ordinary
:func:`train.fdin.main` run with the same seed, hence the same subject folds, so the models are compared
on identical splits. ``--target`` / ``--model`` / ``--folds`` given explicitly restrict or change the
grid; every other ``train.fdin`` option (recipe, ``--epochs``, ``--seed``, ``--no-final`` ...) is passed
through unchanged. ``--authenticity spontaneous|deliberate`` keeps only those videos (``labels.csv``
needs the ``authenticity`` column that ``train.prepare_uvanemo`` writes).

Outputs in ``--out``::

    OUT/results.md, OUT/results.json      the table: per fold, mean ± std (population std over folds)
    OUT/<target>-<model>/                 that run's train.fdin outputs (metrics.json, history.json, ...)
    OUT/<target>-<model>/model/           its final model (or MODEL_DIR/<target>-<model> with --model-dir)

``--push-to-hub ORG/NAME`` publishes each final model to ``ORG/NAME-<target>-<model>``. Under
``torchrun --nproc_per_node N`` (DDP, gloo) every rank runs the same grid; rank 0 writes.

Resumable: a run whose folder already holds ``metrics.json`` (and its final model) from the identical
``train.fdin`` command is not repeated. So the grid can also be split into separate jobs
(``--target age --model uniform`` ...) writing to the same OUT, and one last call without them
collects everything into the table.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("train.protocol")

PROTOCOLS = ("uvanemo",)
AUTHENTICITY = ("all", "spontaneous", "deliberate")
PAPER_FOLDS = 10
TARGETS = ("gender", "age")
METRIC = {"gender": "accuracy", "age": "mae"}
METRIC_LABEL = {"gender": "gender accuracy", "age": "age MAE (years)"}
#: train.fdin options the protocol sets per run (never passed through from the command line).
_PER_RUN = {"protocol", "authenticity", "config", "data", "synthetic", "synthetic_seed", "target", "model", "out",
            "folds", "model_dir", "push_to_hub", "help"}


def _parser() -> argparse.ArgumentParser:
    from train import fdin as train_fdin

    return train_fdin.build_parser()


def model_names() -> tuple[str, ...]:
    """The choices of ``train.fdin --model``, read from its parser now (new models join automatically)."""
    for action in _parser()._actions:
        if action.dest == "model" and action.choices:
            return tuple(action.choices)
    raise RuntimeError("train.fdin has no --model option with choices")


def explicit_options(argv: list[str], config: Path | None = None) -> set[str]:
    """Destinations the user set on the command line or in ``--config`` (not parser defaults)."""
    parser = _parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
        action.required = False
    given, _ = parser.parse_known_args(argv)
    names = set(vars(given))
    if config is not None:
        text = config.read_text()
        if config.suffix in (".yaml", ".yml"):
            import yaml  # optional; only for YAML configs

            names |= set(yaml.safe_load(text) or {})
        else:
            names |= set(json.loads(text))
    return names


def to_argv(args: argparse.Namespace, overrides: dict[str, Any]) -> list[str]:
    """A ``train.fdin`` command line reproducing ``args`` (resolved values) with ``overrides`` applied."""
    values = {**vars(args), **overrides}
    out: list[str] = []
    for action in _parser()._actions:
        dest = action.dest
        if dest in _PER_RUN - set(overrides) or dest not in values or not action.option_strings:
            continue
        value, flag = values[dest], action.option_strings[-1]
        if isinstance(action, argparse._StoreTrueAction):
            out += [flag] if value else []
        elif isinstance(action, argparse._StoreFalseAction):
            out += [] if value else [flag]
        elif isinstance(action, argparse.BooleanOptionalAction):
            if value is not None:  # --x / --no-x: the positive spelling is listed first
                out += [action.option_strings[0] if value else action.option_strings[-1]]
        elif isinstance(action, argparse._StoreAction):
            if value is None:
                continue
            out += [flag, *(str(v) for v in value)] if isinstance(value, list | tuple) else [flag, str(value)]
        else:
            raise RuntimeError(f"train.protocol cannot pass train.fdin's {flag} ({type(action).__name__}) on; "
                               "extend train.protocol.to_argv")
    return out


def restrict_authenticity(data: Path | None, authenticity: str, out: Path) -> Path | None:
    """A view of ``data`` with only ``authenticity`` videos (``OUT/data-<authenticity>``); ``data`` for "all".

    The view has its own ``labels.csv`` and links to ``data/sequences``. Safe to call from every DDP
    rank at once (atomic renames; identical content).
    """
    if authenticity == "all":
        return data
    if data is None:
        raise SystemExit("--authenticity needs --data DIR whose labels.csv has an authenticity column "
                         "(train.prepare_uvanemo writes it)")
    with open(data / "labels.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        fields, rows = list(reader.fieldnames or []), list(reader)
    if "authenticity" not in fields:
        raise SystemExit(f"{data}/labels.csv has no authenticity column; re-run train.prepare_uvanemo, "
                         "or use --authenticity all")
    kept = [r for r in rows if r["authenticity"].strip().lower() == authenticity]
    if not kept:
        raise SystemExit(f"no {authenticity} videos in {data}/labels.csv")
    view = out / f"data-{authenticity}"
    view.mkdir(parents=True, exist_ok=True)
    tmp = view / f".labels.{os.getpid()}.csv"
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(kept)
    os.replace(tmp, view / "labels.csv")
    link = view / "sequences"
    if not link.exists():
        tmp_link = view / f".sequences.{os.getpid()}"
        tmp_link.symlink_to((data / "sequences").resolve(), target_is_directory=True)
        os.replace(tmp_link, link)
    if (data / "synth.json").exists():  # keep "trained on generated data" visible to train.fdin
        (view / "synth.json").write_text((data / "synth.json").read_text())
    log.info("%s videos only: %d of %d sequences", authenticity, len(kept), len(rows))
    return view


def finished(run_dir: Path, sub_argv: list[str], *, final: bool) -> bool:
    """True if ``run_dir`` holds a completed run of exactly ``sub_argv`` (so the protocol can resume)."""
    try:
        args_json = json.loads((run_dir / "args.json").read_text())
        json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return False
    same = args_json.get("command") == "python -m train.fdin " + " ".join(shlex.quote(a) for a in sub_argv)
    model_dir = Path(args_json.get("model_dir") or run_dir / "model")
    return same and (not final or (model_dir / "config.json").exists())


def _dist():
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    return world, rank


def run_protocol(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    """Run the protocol named by ``args.protocol`` (parsed ``train.fdin`` arguments); see the module doc."""
    from train import fdin as train_fdin

    if args.protocol not in PROTOCOLS:
        raise SystemExit(f"unknown protocol {args.protocol!r}; choose from {', '.join(PROTOCOLS)}")
    argv = list(sys.argv[1:] if argv is None else argv)
    explicit = explicit_options(argv, args.config)
    targets = (args.target,) if "target" in explicit else TARGETS
    models = (args.model,) if "model" in explicit else model_names()
    folds = args.folds if "folds" in explicit else PAPER_FOLDS
    world, rank = _dist()
    own_group = False
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo")
            own_group = True
    t0 = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.data
    if data is None:  # --synthetic N: generate once, shared by every run
        data = args.out / "data"
        if rank == 0 and not (data / "labels.csv").exists():
            from fdin.synth import write_dataset

            write_dataset(data, n_sequences=args.synthetic, seed=args.synthetic_seed)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    data = restrict_authenticity(data, args.authenticity, args.out)
    runs = []
    for target in targets:
        for model in models:
            name = f"{target}-{model}"
            run_dir = args.out / name
            overrides: dict[str, Any] = {"data": data, "target": target, "model": model, "out": run_dir,
                                         "folds": folds}
            if args.model_dir is not None:
                overrides["model_dir"] = args.model_dir / name
            if args.push_to_hub and not args.no_final:
                overrides["push_to_hub"] = f"{args.push_to_hub}-{name}"
            sub_argv = to_argv(args, overrides)
            if finished(run_dir, sub_argv, final=not args.no_final):
                log.info("=== %s: already finished with the same command in %s; not re-run", name, run_dir)
            else:
                if rank == 0:
                    log.info("=== %s: python -m train.fdin %s", name, " ".join(shlex.quote(a) for a in sub_argv))
                train_fdin.main(sub_argv)
            runs.append((target, model, run_dir, overrides))
    results = None
    if rank == 0:
        results = collect_results(args, runs, data, folds, seconds=time.time() - t0,
                                  command="python -m train.fdin " + " ".join(shlex.quote(a) for a in argv))
        write_results(args.out, results)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        if own_group:
            dist.destroy_process_group()
    return 0


def collect_results(args: argparse.Namespace, runs: list, data: Path, folds: int, *, seconds: float,
                    command: str) -> dict[str, Any]:
    """Read each run's ``metrics.json`` into one results document."""
    entries = []
    n_seq = n_subj = None
    for target, model, run_dir, overrides in runs:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        key = METRIC[target]
        per_fold = [float(v) for v in metrics[key]["per_fold"]]
        n_seq, n_subj = metrics.get("n_sequences"), metrics.get("n_subjects")
        model_dir = overrides.get("model_dir", run_dir / "model")
        entries.append({
            "target": target, "model": model, "metric": key,
            "mean": float(np.mean(per_fold)), "std": float(np.std(per_fold)), "per_fold": per_fold,
            "run_dir": str(run_dir), "model_dir": None if args.no_final else str(model_dir),
            "hub_repo": overrides.get("push_to_hub"), "seconds": metrics.get("seconds"),
        })
    return {
        "protocol": args.protocol,
        "description": (f"{folds}-fold subject-disjoint cross-validation (no subject in both training and test "
                        "data; early stopping on held-out training subjects); the same folds for every model"),
        "folds": folds, "authenticity": args.authenticity, "data": str(data),
        "synthetic_data": (data / "synth.json").exists(), "n_sequences": n_seq, "n_subjects": n_subj,
        "seed": args.seed, "results": entries, "seconds": round(seconds, 1), "command": command,
    }


def _fmt(target: str, value: float) -> str:
    return f"{value:.3f}" if target == "gender" else f"{value:.2f}"


def results_markdown(results: dict[str, Any]) -> str:
    """The results table (mean ± std per model and target, then every fold)."""
    entries = results["results"]
    targets = [t for t in TARGETS if any(e["target"] == t for e in entries)]
    models = list(dict.fromkeys(e["model"] for e in entries))
    by = {(e["target"], e["model"]): e for e in entries}
    lines = [f"# FDIN on {results['data']}: {results['protocol']} protocol", ""]
    if results["synthetic_data"]:
        lines += ["**Trained and evaluated on fdin.synth generated data, not real people.**", ""]
    lines += [f"{results['description']}. Authenticity: {results['authenticity']}; "
              f"{results['n_sequences']} sequences of {results['n_subjects']} subjects; seed {results['seed']}; "
              f"{results['seconds']:.0f} s in total.", "",
              "| model | " + " | ".join(f"{METRIC_LABEL[t]}, mean ± std" for t in targets) + " |",
              "|---|" + "---|" * len(targets)]
    for m in models:
        cells = [f"{_fmt(t, by[(t, m)]['mean'])} ± {_fmt(t, by[(t, m)]['std'])}" if (t, m) in by else "n/a"
                 for t in targets]
        lines.append(f"| `{m}` | " + " | ".join(cells) + " |")
    k = results["folds"]
    lines += ["", "Per fold:", "", "| target | model | " + " | ".join(f"fold {i + 1}" for i in range(k)) + " |",
              "|---|---|" + "---|" * k]
    for e in entries:
        lines.append(f"| {e['target']} | `{e['model']}` | " + " | ".join(_fmt(e["target"], v) for v in e["per_fold"])
                     + " |")
    lines += ["", f"Command: `{results['command']}`", ""]
    return "\n".join(lines)


def write_results(out: Path, results: dict[str, Any]) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(results_markdown(results))
    for e in results["results"]:
        log.info("%-6s %-14s %s = %s ± %s", e["target"], e["model"], e["metric"], _fmt(e["target"], e["mean"]),
                 _fmt(e["target"], e["std"]))
    log.info("results: %s, %s", out / "results.md", out / "results.json")


__all__ = ["AUTHENTICITY", "PAPER_FOLDS", "PROTOCOLS", "model_names", "restrict_authenticity", "run_protocol"]

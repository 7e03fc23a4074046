"""``train.fdin --protocol uvanemo`` (``train/protocol.py``): the model grid, argument pass-through,
authenticity views, and the same outputs single-process and under ``torchrun`` (2 processes, gloo, CPU)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fdin.synth import write_dataset
from train import fdin as train_fdin
from train import protocol

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--folds", "2", "--epochs", "1", "--min-epochs", "1", "--quiet", "--threads", "1", "--dim", "8",
        "--rel-dim", "8", "--seed", "3"]


def test_model_names_come_from_the_model_option(monkeypatch):
    assert protocol.model_names() == tuple(next(a.choices for a in train_fdin.build_parser()._actions
                                                if a.dest == "model"))
    original = train_fdin.build_parser

    def with_new_baseline():
        parser = original()
        action = next(a for a in parser._actions if a.dest == "model")
        action.choices = (*action.choices, "lstm")
        return parser

    monkeypatch.setattr(train_fdin, "build_parser", with_new_baseline)
    assert protocol.model_names()[-1] == "lstm"


def test_explicit_options_and_pass_through(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"epochs": 3}))
    argv = ["--data", "d", "--protocol", "uvanemo", "--out", "o", "--model", "fdin", "--no-augment",
            "--lr", "0.01", "--config", str(cfg)]
    assert protocol.explicit_options(argv, cfg) >= {"data", "protocol", "out", "model", "no_augment", "lr", "epochs"}
    assert "target" not in protocol.explicit_options(argv, cfg) and "folds" not in protocol.explicit_options(argv)
    args = train_fdin.parse_args(argv)
    sub = protocol.to_argv(args, {"data": Path("d"), "target": "age", "model": "uniform", "out": Path("o/x"),
                                  "folds": 10})
    again = train_fdin.parse_args(sub)
    assert "--protocol" not in sub and "--config" not in sub and again.protocol is None
    assert (again.target, again.model, again.folds, again.epochs, again.lr, again.no_augment) == (
        "age", "uniform", 10, 3, 0.01, True)
    keep = set(vars(args)) - protocol._PER_RUN
    assert {k: getattr(again, k) for k in keep} == {k: getattr(args, k) for k in keep}


def test_authenticity_view(tmp_path):
    data = write_dataset(tmp_path / "data", n_sequences=6, seed=0)
    rows = list(csv.DictReader((data / "labels.csv").read_text().splitlines()))
    with pytest.raises(SystemExit, match="no authenticity column"):
        protocol.restrict_authenticity(data, "spontaneous", tmp_path / "out")
    with open(data / "labels.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*rows[0], "authenticity"])
        writer.writeheader()
        writer.writerows({**r, "authenticity": ("spontaneous", "deliberate")[i % 2]} for i, r in enumerate(rows))
    view = protocol.restrict_authenticity(data, "deliberate", tmp_path / "out")
    kept = list(csv.DictReader((view / "labels.csv").read_text().splitlines()))
    assert [r["id"] for r in kept] == [r["id"] for r in rows[1::2]]
    assert (view / "sequences" / f"{kept[0]['id']}.npz").exists() and (view / "synth.json").exists()
    assert protocol.restrict_authenticity(data, "all", tmp_path / "out") == data


def _outputs(run: Path) -> dict:
    results = json.loads((run / "results.json").read_text())
    files = {e["target"] + "-" + e["model"]: sorted(p.name for p in (run / f"{e['target']}-{e['model']}").iterdir())
             for e in results["results"]}
    return {"results": results, "files": files}


def _check_sensible(results: dict) -> None:
    assert results["folds"] == 2 and results["synthetic_data"] and results["n_sequences"] == 36
    assert [(e["target"], e["model"]) for e in results["results"]] == [("gender", "fdin"), ("age", "fdin")]
    for e in results["results"]:
        assert len(e["per_fold"]) == 2 and e["mean"] == pytest.approx(np.mean(e["per_fold"]))
        assert e["std"] == pytest.approx(np.std(e["per_fold"]))
        if e["target"] == "gender":
            assert all(0.0 <= v <= 1.0 for v in e["per_fold"])
        else:
            assert all(0.5 < v < 60.0 for v in e["per_fold"])  # years; ages are 8-76


def test_protocol_single_process_and_ddp_give_the_same_outputs(tmp_path):
    """2-process DDP (gloo, CPU, torchrun) writes exactly what one process writes, with sensible values."""
    data = write_dataset(tmp_path / "data", n_sequences=36, seed=1)
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    common = ["--data", str(data), "--protocol", "uvanemo", "--model", "fdin", *TINY]
    assert train_fdin.main([*common, "--out", str(single)]) == 0
    stamp = (single / "age-fdin" / "metrics.json").stat().st_mtime_ns
    assert train_fdin.main([*common, "--out", str(single)]) == 0  # resumes: nothing is re-trained
    assert (single / "age-fdin" / "metrics.json").stat().st_mtime_ns == stamp
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "train.fdin", *common, "--out", str(ddp)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = _outputs(single), _outputs(ddp)
    assert a["files"] == b["files"] and "model" in a["files"]["gender-fdin"] and "metrics.json" in a["files"]["age-fdin"]
    strip = lambda r: {k: v for k, v in r.items() if k not in ("seconds", "command", "results")}  # noqa: E731
    assert strip(a["results"]) == strip(b["results"])
    assert [sorted(e) for e in a["results"]["results"]] == [sorted(e) for e in b["results"]["results"]]
    _check_sensible(a["results"])
    _check_sensible(b["results"])
    assert (single / "results.md").read_text().count("\n") == (ddp / "results.md").read_text().count("\n")
    # both ranks ran every run, only rank 0 wrote: one metrics.json per run, a loadable final model
    from fdin import load_pretrained

    assert load_pretrained(ddp / "gender-fdin" / "model").config["synthetic_training_data"] is True

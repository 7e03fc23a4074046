"""The synthetic benchmark report: a tiny real grid end to end, resumability, and its statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fdin.regions import region_pairs
from train import report_fdin_synth as report


def test_ci95_and_planted_rank():
    mean, half = report.ci95([0.9, 1.0, 0.95, 0.92, 0.98])
    assert mean == pytest.approx(0.95) and half == pytest.approx(2.776 * np.std([0.9, 1.0, 0.95, 0.92, 0.98],
                                                                                 ddof=1) / np.sqrt(5), rel=1e-3)
    assert np.isnan(report.ci95([0.5])[1])
    v = np.zeros(len(region_pairs()))
    v[0], v[5] = 0.5, 0.9  # pair 0 = (brow_right, brow_left)
    assert report.planted_rank(v, ("brow_left", "brow_right")) == 2


def test_tiny_grid_end_to_end(tmp_path):
    work, out = tmp_path / "work", tmp_path / "docs" / "fdin-synth.md"
    argv = ["--settings", "easy", "--targets", "gender", "--models", "fdin", "--sizes", "24", "--recipe-sizes",
            "--seeds", "0", "1", "--folds", "2", "--epochs", "1", "--jobs", "1", "--work", str(work), "--out", str(out),
            "--train-args", "--min-epochs 1 --restarts 0 --dim 8 --rel-dim 8"]
    assert report.main(argv) == 0
    text = out.read_text()
    assert "## easy · gender · 24 sequences" in text and "| `fdin` | 2 |" in text
    assert text.count("| `fdin` | 0 |") == 1 and "Importance faithfulness" in text and "Spearman" in text
    summary = json.loads(out.with_suffix(".json").read_text())
    row = summary["tables"]["easy/gender/24"]["fdin"]
    assert row["seeds"] == [0, 1] and len(row["per_fold"]) == 4 and len(row["ece"]) == 4
    assert (out.parent / "fdin-synth-faithfulness-easy-gender-24.svg").read_text().startswith("<svg")
    # resumable: a second call trains nothing and reports the same runs
    mtime = (work / "easy-gender-24-fdin-s0" / "metrics.json").stat().st_mtime
    assert report.main([*argv, "--report-only"]) == 0
    assert (work / "easy-gender-24-fdin-s0" / "metrics.json").stat().st_mtime == mtime


def test_the_recipe_sizes_run_fdin_on_easy_gender_only():
    args = report.parse_args(["--seeds", "0", "1"])
    jobs = report.recipe_jobs(args)
    assert args.sizes == [600] and args.recipe_sizes == [1200] and args.restarts == 0
    assert len(jobs) == 2 * 2 * 6 * 2 + 2
    assert {j for j in jobs if j[3] == 1200} == {("easy", "gender", "fdin", 1200, 0), ("easy", "gender", "fdin", 1200, 1)}
    assert jobs[0][3] == 1200  # the longest runs start first
    assert not [j for j in report.recipe_jobs(report.parse_args(["--settings", "hard"])) if j[3] == 1200]

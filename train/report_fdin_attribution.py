"""Attribution, recipe and baseline benchmark → ``docs/benchmarks/fdin-attribution.md``:
``python -m train.report_fdin_attribution``.

On :mod:`fdin.synth` data sets **never used while developing the recipe** (data seed
``REPORT_DATA_SEED + 100 · setting + report seed``: a new data set for every report seed), it
cross-validates (subject-disjoint K-fold, ``train.fdin --no-final``):

* ``fdin`` with ``--pair-aux 1`` and ``--pair-aux 0`` (same epochs, same restarts), each scored for
  accuracy / MAE and, per class (gender) or age tercile, the faithfulness of the per-estimate
  attribution and of the learned importance (:func:`train.fdin.attribution_report`): share of
  estimates with a pair beyond noise, share whose top pair is the planted one, the change of the
  estimate and the label flips when the top pair is deleted, importance entropy, deletion curves; the
  no-signal control; and the recovery of the planted pairs (AUROC, ranks; the hard setting's second
  pair);
* the comparison models ``concat``, ``lstm``, ``pairwise-corr`` and ``timing`` (hand-crafted
  per-channel |cross-correlation| peak/lag and onset differences, linear) on the same folds, with
  paired per-fold differences;
* for every model, FDIN included, the same model-agnostic instrument: the input-level deletion
  attribution (:mod:`fdin.models.region_deletion`, :func:`train.fdin.input_attribution_report`), per
  class / tercile, its no-signal control and its recovery of the planted pairs.

Runs are resumable (a run whose ``metrics.json`` exists is read). Everything is generated data: the
figures say whether the method and code find planted structure, not how FDIN does on real faces.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
#: report data seeds start here; every seed used while developing the recipe is below 10,000
#: (0, 1, 3, 1000, 1300, 1600, 2200, 2718, 3141, 4242, 7301: tests, the shipped weights,
#: train.report_fdin_synth, the attribution's and the learning rate's development runs; 5151: the
#: recipe's regression test, a case never used to tune, tests/test_fdin_recipe.py)
REPORT_DATA_SEED = 90_000
SETTINGS = ("easy-gender", "hard-gender", "easy-age")
FDIN_VARIANTS = {"fdin-aux1": ["--model", "fdin", "--pair-aux", "1"], "fdin-aux0": ["--model", "fdin", "--pair-aux", "0"]}
BASELINES = {"concat": ["--model", "concat"], "lstm": ["--model", "lstm"],
             "pairwise-corr": ["--model", "pairwise-corr"], "timing": ["--model", "timing"]}
METRIC = {"gender": "accuracy", "age": "mae"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m train.report_fdin_attribution", description=__doc__.split("\n\n")[0])
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS)
    p.add_argument("--baseline-settings", nargs="*", default=["easy-gender", "easy-age"], choices=SETTINGS,
                   help="settings on which the comparison models are run too")
    p.add_argument("--baselines", nargs="*", default=list(BASELINES), choices=list(BASELINES))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="report seeds (data set, split, init)")
    p.add_argument("--n", type=int, default=450, help="sequences per data set")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--restarts", type=int, default=1, help="plateau restarts, the same for every neural model")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--work", type=Path, default=REPO / "runs" / "report-fdin-attribution")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "fdin-attribution.md")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--note", default="", help="markdown paragraph added under the title (how the runs were made)")
    return p.parse_args(argv)


def data_seed(setting: str, seed: int) -> int:
    return REPORT_DATA_SEED + 100 * SETTINGS.index(setting) + seed


def jobs(args) -> list[tuple[str, str, int]]:
    out = [(s, v, seed) for s in args.settings for v in FDIN_VARIANTS for seed in args.seeds]
    out += [(s, b, seed) for s in args.baseline_settings for b in args.baselines for seed in args.seeds]
    # report seed first: a run stopped part-way has every model on the first seed(s)
    return sorted(out, key=lambda job: args.seeds.index(job[2]))


def run_dir(args, setting: str, model: str, seed: int) -> Path:
    return args.work / f"{setting}-{model}-s{seed}"


def run_one(args, setting: str, model: str, seed: int) -> Path:
    import torch

    from fdin.synth import write_dataset
    from train import fdin as train_fdin

    torch.set_num_threads(1)
    options, target = setting.split("-")
    data = args.work / f"data-{setting}-{data_seed(setting, seed)}"
    if not (data / "labels.csv").exists():
        write_dataset(data, n_sequences=args.n, seed=data_seed(setting, seed), options=options)
    out = run_dir(args, setting, model, seed)
    if not (out / "metrics.json").exists():
        extra = FDIN_VARIANTS.get(model) or BASELINES[model]
        train_fdin.main(["--data", str(data), "--target", target, "--out", str(out), "--epochs", str(args.epochs),
                         "--folds", str(args.folds), "--seed", str(seed), "--threads", "1", "--no-final", "--quiet",
                         "--no-eval-train", "--restarts", str(args.restarts), *extra])
    return out


def load(args, setting: str, model: str, seed: int) -> dict | None:
    path = run_dir(args, setting, model, seed) / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else None


def ci95(values) -> tuple[float, float]:
    from scipy.stats import t

    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if len(v) < 2:
        return (float(v.mean()) if len(v) else float("nan")), float("nan")
    return float(v.mean()), float(t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))


def fmt(values, digits: int = 3) -> str:
    mean, half = ci95(values)
    if not np.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f} ± {half:.{digits}f}" if np.isfinite(half) else f"{mean:.{digits}f}"


def folds_of(args, setting: str, model: str) -> list[float]:
    target = setting.split("-")[1]
    out = []
    for seed in args.seeds:
        m = load(args, setting, model, seed)
        out += m[METRIC[target]]["per_fold"] if m else []
    return out


def attribution_folds(args, setting: str, model: str) -> list[dict]:
    out = []
    for seed in args.seeds:
        m = load(args, setting, model, seed)
        out += (m or {}).get("attribution", [])
    return out


def _command_line() -> str:
    """This invocation's arguments, without the ``--note`` text (shown under the title anyway)."""
    argv, out, skip = sys.argv[1:], [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--note":
            out.append("--note NOTE")
            skip = True
        elif not a.startswith("--note="):
            out.append(shlex.quote(a))
    return " ".join(out)


def report(args) -> str:
    lines = ["# FDIN: per-estimate attribution, `--pair-aux` 0 vs 1, and fair baselines (generated data)", "",
             "Regenerate: `python -m train.report_fdin_attribution` "
             f"(this run: `{_command_line() or 'defaults'}`; "
             f"{args.n} sequences per data set, {args.folds}-fold subject-disjoint CV, {args.epochs} epochs, "
             f"{args.restarts} plateau restart(s) for every neural model, report seeds {args.seeds}).", "",
             "**Data kept apart.** Every data set here has data seed "
             f"{REPORT_DATA_SEED} + 100 × setting + report seed (new data for every report seed: "
             + ", ".join(f"{s}: {', '.join(str(data_seed(s, k)) for k in args.seeds)}" for s in args.settings)
             + "). The seeds used while developing the recipe and the attribution were 0, 1, 3, 1000, 1300, "
             "1600, 2200, 2718, 3141, 4242 and 7301, and 5151 is the recipe's regression test (never used to "
             "tune); none of them is used here. Everything is generated by `fdin.synth`: these "
             "figures say whether the method and the code find planted structure, not how FDIN does on real "
             "faces.", "",
             "± is the 95 % t-interval over the folds of all report seeds.", ""]
    if args.note:
        lines += [args.note, ""]
    # --- accuracy
    lines += ["## Held-out accuracy / MAE", "", "| setting | " + " | ".join(list(FDIN_VARIANTS) + args.baselines) + " |",
              "|---|" + "---|" * (len(FDIN_VARIANTS) + len(args.baselines))]
    for s in args.settings:
        row = [fmt(folds_of(args, s, m), 3 if s.endswith("gender") else 1) for m in list(FDIN_VARIANTS) + args.baselines]
        lines.append(f"| {s} | " + " | ".join(row) + " |")
    lines += ["", "Gender: accuracy (higher is better); age: MAE in years (lower is better). `timing` is the "
              "hand-crafted timing model (per pair and channel the |cross-correlation| peak and its lag over "
              "±0.6 s, which covers the generator's 0.4 s age lag, plus onset differences; standardised; "
              "logistic / ridge regression fitted to convergence with an L2 strength chosen on validation "
              "subjects); `pairwise-corr` the older one (signed correlations averaged over channels, ±0.32 s).", ""]
    # --- paired comparisons
    lines += ["### Paired per-fold differences (same folds, same data)", "",
              "| setting | model | − fdin-aux1 (mean ± 95 % CI) | folds where fdin-aux1 is better |", "|---|---|---|---|"]
    for s in args.settings:
        ref = folds_of(args, s, "fdin-aux1")
        sign = 1 if s.endswith("gender") else -1
        for m in ["fdin-aux0"] + (args.baselines if s in args.baseline_settings else []):
            other = folds_of(args, s, m)
            if len(other) != len(ref) or not ref:
                continue
            diff = np.asarray(other) - np.asarray(ref)
            better = int((sign * diff < 0).sum())
            lines.append(f"| {s} | {m} | {fmt(diff, 3)} | {better}/{len(diff)} |")
    lines.append("")
    # --- attribution per class
    lines += ["## Faithfulness per class / age tercile", "",
              "Per held-out group: **salient** share of estimates with a pair beyond the attribution's noise "
              "level; **attr→planted** / **imp→planted** share whose top pair by |effect| / by importance is "
              "the planted pair; **Δ del attr** / **Δ del imp** mean |change of the estimate| (p_female or "
              "years) when that top pair is deleted with the importance renormalised over the others (a "
              "removal independent of the attribution's reference); **flips** the share of gender labels "
              "that change; **effect** the planted pair's mean signed effect; **entropy** the importance's "
              "entropy / ln 66 (1 = uniform).", "",
              "| setting | model | group | n | salient | attr→planted | imp→planted | Δ del attr | flips attr | "
              "Δ del imp | flips imp | effect | entropy |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    controls, recovery, curves = [], [], []
    for s in args.settings:
        for v in FDIN_VARIANTS:
            folds = attribution_folds(args, s, v)
            if not folds:
                continue
            for g in sorted(folds[0]["by_group"]):
                rows = [f["by_group"][g] for f in folds if g in f["by_group"]]
                get = lambda k, rows=rows: [r.get(k, float("nan")) for r in rows]  # noqa: E731
                d = 3 if s.endswith("gender") else 1
                lines.append(f"| {s} | {v} | {g} | {sum(get('n'))} | {fmt(get('salient'), 2)} | "
                             f"{fmt(get('attr_top_planted'), 2)} | {fmt(get('imp_top_planted'), 2)} | "
                             f"{fmt(get('delete_top_attr'), d)} | {fmt(get('flip_top_attr'), 2)} | "
                             f"{fmt(get('delete_top_imp'), d)} | {fmt(get('flip_top_imp'), 2)} | "
                             f"{fmt(get('planted_effect'), d)} | {fmt(get('entropy'), 2)} |")
                metric = rows[0]["curves"]["metric"]
                for order in ("top", "random", "bottom"):
                    dele = np.mean([r["curves"]["deletion"][order] for r in rows], 0)
                    ins = np.mean([r["curves"]["insertion"][order] for r in rows], 0)
                    curves.append(f"| {s} | {v} | {g} | {order} | {np.mean([r['curves']['full'] for r in rows]):.3f} | "
                                  + " / ".join(f"{x:.3f}" for x in dele) + " | " + " / ".join(f"{x:.3f}" for x in ins)
                                  + f" | {metric} |")
            ns = [f["no_signal"] for f in folds]
            controls.append(f"| {s} | {v} | {sum(n['n'] for n in ns)} | {fmt([f['noise'] for f in folds], 3)} | "
                            f"{fmt([n['salient'] for n in ns], 3)} | {fmt([n['top_importance'] for n in ns], 2)} | "
                            f"{fmt([n['imp_top_planted'] for n in ns], 2)} | {fmt([n['entropy'] for n in ns], 2)} |")
            rec = [f["recovery"] for f in folds if "recovery" in f]
            if rec:
                ranks_a = [r["rank_attribution"] for r in rec]
                ranks_i = [r["rank_importance"] for r in rec]
                recovery.append(f"| {s} | {v} | {fmt([r['auroc_attribution'] for r in rec], 2)} | "
                                f"{fmt([r['auroc_importance'] for r in rec], 2)} | "
                                + " / ".join(f"{np.median([r[k] for r in ranks_a]):.0f}" for k in range(len(ranks_a[0])))
                                + " | " + " / ".join(f"{np.median([r[k] for r in ranks_i]):.0f}"
                                                     for k in range(len(ranks_i[0]))) + " |")
    lines += ["", "### No-signal control", "",
              "Held-out sequences with their frames shuffled, white noise with their channels' spread, and a "
              "still face. **noise** the attribution's noise level (fitted on the validation subjects' "
              "no-signal inputs, not these); **salient** the share of these inputs with a pair beyond it "
              "(should be ~0); **top imp.** the mean largest importance (1/66 = 0.015 would be uniform); "
              "**imp→planted** share whose top-importance pair is the planted one.", "",
              "| setting | model | inputs | noise | salient | top imp. | imp→planted | entropy |",
              "|---|---|---|---|---|---|---|---|", *controls, "",
              "### Recovery of the planted pairs", "",
              "AUROC of the mean |effect| (attribution) and of the mean importance at ranking the relevant "
              "pairs (the planted pair; in the hard setting also the second pair) above the other 64-65; the "
              "median rank (1 = top) of each relevant pair (planted / second).", "",
              "| setting | model | AUROC attribution | AUROC importance | ranks attribution | ranks importance |",
              "|---|---|---|---|---|---|", *recovery, "",
              "### Deletion / insertion curves per group", "",
              "Pairs ranked by the learned importance (top / random / bottom), k = 1 / 2 / 4 / 8 deleted "
              "(importance renormalised over the rest) or inserted alone; accuracy (gender) or MAE (age).", "",
              "| setting | model | group | order | full | deletion | insertion | metric |",
              "|---|---|---|---|---|---|---|---|", *curves, ""]
    lines += input_section(args)
    lines += [f"Machine: {platform.machine()}, {platform.system()}; written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", ""]
    return "\n".join(lines)


def input_section(args) -> list[str]:
    """The input-level deletion attribution of every model (:func:`train.fdin.input_attribution_report`):
    the same instrument for FDIN and the models without pairs."""
    from train.fdin import INPUT_NO_SIGNAL, INPUT_SEQUENCES

    groups, controls = [], []
    for s in [s for s in SETTINGS if s in args.settings or s in args.baseline_settings]:
        models = (list(FDIN_VARIANTS) if s in args.settings else []) + \
            (args.baselines if s in args.baseline_settings else [])
        d = 3 if s.endswith("gender") else 1
        for model in models:
            folds = [f["input"] for f in attribution_folds(args, s, model) if "input" in f]
            if not folds:
                continue
            for g in sorted(folds[0]["interaction"]["by_group"]):
                cells = [f"{sum(f['interaction']['by_group'][g]['n'] for f in folds)}"]
                for measure in ("interaction", "joint"):
                    rows = [f[measure]["by_group"][g] for f in folds]
                    cells += [fmt([r["salient"] for r in rows], 2), fmt([r["top_planted"] for r in rows], 2),
                              fmt([r["planted_effect"] for r in rows], d)]
                groups.append(f"| {s} | {model} | {g} | " + " | ".join(cells) + " |")
            cells = [f"{folds[0]['references']}"]
            for measure in ("interaction", "joint"):
                rows = [f[measure] for f in folds]
                rec = [r["recovery"] for r in rows if "recovery" in r]
                ranks = " / ".join(f"{np.median([r['ranks'][k] for r in rec]):.0f}" for k in range(len(rec[0]["ranks"]))) \
                    if rec else "–"
                cells += [fmt([r["noise"] for r in rows], d), fmt([r["no_signal"]["salient"] for r in rows], 2),
                          fmt([r["recovery"]["auroc"] for r in rows if "recovery" in r], 2), ranks]
            cells.append(f"{np.mean([f['seconds'] for f in folds]):.0f}")
            controls.append(f"| {s} | {model} | " + " | ".join(cells) + " |")
    if not groups:
        return []
    return ["## The same instrument for every model: deleting regions from the input", "",
            "FDIN's own attribution replaces a pair's *relational feature*, which the concat, LSTM and "
            "linear models do not have. Here every model is treated as a black box "
            "(`fdin.models.region_deletion`): a region is *deleted* by replacing its whole trajectory with the "
            "same region's trajectory in a reference training sequence (class / tercile balanced, like FDIN's "
            "references), and the estimate (p_female or years) is read again, averaged over the references. "
            "**interaction** is the pair's second-order difference f(x) − f(x₋i) − f(x₋j) + f(x₋ij): what "
            "the two regions do *together* beyond each alone (0 for anything a sum of per-region terms "
            "carries; its sign says complements + / substitutes −, not a direction). **joint** is "
            "f(x) − f(x₋ij), deleting both: it also moves for every pair sharing one region with the cue "
            "pair, so it cannot single out a pairwise cue. The same forward passes give both.", "",
            f"Per fold {INPUT_SEQUENCES} held-out sequences (a seeded sample) are scored; **salient** the share "
            "with a pair beyond the noise level (the largest |score| of any pair on no-signal inputs made from "
            f"{INPUT_NO_SIGNAL} validation sequences per kind: shuffled frames, white noise, a still face); "
            "**top→planted** the share whose top pair by |score| is the planted one; **planted** the planted "
            "pair's mean score.", "",
            "| setting | model | group | n | salient (inter.) | top→planted (inter.) | planted (inter.) | "
            "salient (joint) | top→planted (joint) | planted (joint) |", "|---|---|---|---|---|---|---|---|---|---|",
            *groups, "",
            "No-signal control (held-out sequences' shuffled frames and white noise, a still face; salient "
            "should be ~0) and recovery of the relevant pairs: AUROC of the mean |score| at ranking them above "
            "the other pairs, the median rank of each (planted / second; 1 = top). **refs** references, "
            "**s/fold** the wall time of the instrument per fold (one thread).", "",
            "| setting | model | refs | noise (inter.) | no-signal salient (inter.) | AUROC (inter.) | ranks (inter.) | "
            "noise (joint) | no-signal salient (joint) | AUROC (joint) | ranks (joint) | s/fold |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|", *controls, ""]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        todo = jobs(args)
        with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futures = {pool.submit(run_one, args, *job): job for job in todo}
            for k, future in enumerate(as_completed(futures), 1):
                future.result()
                print(f"[{k}/{len(todo)}] {futures[future]}", file=sys.stderr, flush=True)
    text = report(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    summary = {f"{s}/{m}/s{seed}": load(args, s, m, seed) for s, m, seed in jobs(args)}
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

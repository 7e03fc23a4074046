"""Synthetic FDIN benchmark → ``docs/benchmarks/fdin-synth.md``: ``python -m train.report_fdin_synth``.

Trains fdin / uniform / baseline with :mod:`train.fdin` (subject-disjoint K-fold CV) on
:mod:`fdin.synth` datasets of several sizes, then writes a markdown report with held-out accuracy,
train vs held-out curves (markdown tables and a hand-written SVG), and whether the planted pair is
recovered by the importance. Everything is synthetic: these numbers say whether the *method and
code* can find a planted relation, not how FDIN does on real faces or in the paper.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
VARIANTS = ("fdin", "uniform", "baseline")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m train.report_fdin_synth", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[300, 600, 1200])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--target", choices=("gender", "age"), default="gender")
    p.add_argument("--age-size", type=int, default=0,
                   help="also run fdin vs baseline on age at this size (0 = skip; the shipped age model's "
                        "cross-validation is reported instead)")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads per training process")
    p.add_argument("--jobs", type=int, default=2, help="training processes in parallel")
    p.add_argument("--work", type=Path, default=REPO / "runs" / "report-fdin-synth")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "fdin-synth.md")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def run_one(args, data: Path, target: str, variant: str, out: Path) -> dict:
    from train import fdin as train_fdin

    if not (out / "metrics.json").exists():
        train_fdin.main(["--data", str(data), "--target", target, "--model", variant, "--out", str(out),
                         "--epochs", str(args.epochs), "--folds", str(args.folds), "--seed", str(args.seed),
                         "--threads", str(args.threads), "--no-final", *(["--quiet"] if args.quiet else [])])
    return {"metrics": json.loads((out / "metrics.json").read_text()),
            "importance": json.loads((out / "importance.json").read_text()),
            "history": json.loads((out / "history.json").read_text())}


def planted_rank(importance: dict, pair: tuple[str, str]) -> tuple[int, float, float]:
    """(rank of the planted pair among all pairs (1 = top), its mean importance, uniform share 1/P)."""
    names = importance["regions"]
    m = np.asarray(importance["mean"])
    iu = np.triu_indices(len(names), 1)
    values = m[iu]
    a, b = sorted((names.index(pair[0]), names.index(pair[1])))
    mine = m[a, b]
    return int((values > mine + 1e-12).sum()) + 1, float(mine), 1.0 / len(values)


def svg_curves(series: dict[str, list[tuple[list[float], list[float]]]], title: str, ylabel: str,
               width: int = 640, height: int = 300) -> str:
    """A minimal line chart: ``series[label] = [(train_values, heldout_values)]`` per epoch."""
    colours = {"fdin": "#d62728", "uniform": "#1f77b4", "baseline": "#7f7f7f"}
    pad_l, pad_r, pad_t, pad_b = 50, 130, 30, 40
    max_ep = max(len(tr) for runs in series.values() for tr, _ in runs)
    xs = lambda e: pad_l + (width - pad_l - pad_r) * (e - 1) / max(max_ep - 1, 1)  # noqa: E731
    ys = lambda v: pad_t + (height - pad_t - pad_b) * (1 - (v - 0.4) / 0.6)  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="11">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{pad_l}" y="18" font-size="13">{title}</text>']
    for v in (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0):
        parts.append(f'<line x1="{pad_l}" x2="{width - pad_r}" y1="{ys(v):.1f}" y2="{ys(v):.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{pad_l - 6}" y="{ys(v) + 4:.1f}" text-anchor="end">{v:.1f}</text>')
    parts.append(f'<text x="{(width - pad_r + pad_l) / 2:.0f}" y="{height - 8}" text-anchor="middle">epoch</text>')
    parts.append(f'<text x="12" y="{height / 2:.0f}" transform="rotate(-90 12 {height / 2:.0f})" '
                 f'text-anchor="middle">{ylabel}</text>')
    legend_y = pad_t
    for label, runs in series.items():
        colour = colours.get(label, "#2ca02c")
        for tr, ho in runs:
            for values, dash in ((tr, "4 3"), (ho, "")):
                pts = " ".join(f"{xs(e + 1):.1f},{ys(v):.1f}" for e, v in enumerate(values))
                parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
                             f'stroke-dasharray="{dash}" points="{pts}"/>')
        parts.append(f'<line x1="{width - pad_r + 10}" x2="{width - pad_r + 30}" y1="{legend_y}" y2="{legend_y}" '
                     f'stroke="{colour}" stroke-width="2"/><text x="{width - pad_r + 34}" y="{legend_y + 4}">'
                     f'{label}</text>')
        legend_y += 16
    parts.append(f'<text x="{width - pad_r + 10}" y="{legend_y + 8}">dashed: train</text>')
    parts.append(f'<text x="{width - pad_r + 10}" y="{legend_y + 22}">solid: held-out</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from fdin.synth import AGE_PAIR, GENDER_PAIR, write_dataset

    t0 = time.time()
    args.work.mkdir(parents=True, exist_ok=True)
    results: dict[tuple[int, str, str], dict] = {}
    jobs = [(n, args.target, v) for n in args.sizes for v in args.variants]
    if args.age_size:
        jobs += [(args.age_size, "age", v) for v in ("fdin", "baseline")]
    for n in sorted({job[0] for job in jobs}):
        if not (args.work / f"data-{n}" / "labels.csv").exists():
            write_dataset(args.work / f"data-{n}", n_sequences=n, seed=1000 + n)
    # largest first, so the parallel processes finish at about the same time
    jobs.sort(key=lambda job: -job[0])
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {pool.submit(run_one, args, args.work / f"data-{n}", target, variant,
                               args.work / f"{target}-{n}-{variant}"): (n, target, variant)
                   for n, target, variant in jobs}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            print(f"{futures[future]}: done at {time.time() - t0:.0f} s", file=sys.stderr)
    elapsed = time.time() - t0

    metric_of = {"gender": "accuracy", "age": "mae"}
    lines = [
        "# FDIN on synthetic smiles (fdin.synth)", "",
        "Generated by `python -m train.report_fdin_synth` "
        f"(`--sizes {' '.join(map(str, args.sizes))} --folds {args.folds} --epochs {args.epochs} "
        f"--seed {args.seed}`). Training time summed over the {len(results)} runs: "
        f"{sum(r['metrics']['seconds'] for r in results.values()) / 60:.0f} min, with {args.jobs} runs in "
        f"parallel ({args.threads} torch thread each) on a 2-core {platform.machine()} CPU shared with other "
        "jobs, so wall times are inflated.",
        "",
        "**Everything here is synthetic** (`fdin.synth`, fdin's own generator): the trait is planted in the "
        f"*synchrony* of one region pair (gender: `{GENDER_PAIR[0]}`–`{GENDER_PAIR[1]}`; age: "
        f"`{AGE_PAIR[0]}`–`{AGE_PAIR[1]}`, coupling falling linearly with age) while every region's own "
        "timing distribution is the same for all classes. These numbers test whether the model and the "
        "training recipe can find such a relation on unseen subjects; they are not the paper's numbers "
        "(none are known to fdin) and say nothing about real faces.", "",
        f"Protocol: {args.folds}-fold cross-validation over subjects (3 sequences per subject, no subject in "
        "two folds); inside each fold 15 % of the training subjects are held out for early stopping; "
        "the reported metric is on the test fold (held-out subjects).", "",
        f"## Held-out {args.target} {metric_of[args.target]} by dataset size", "",
        "| sequences (subjects) | " + " | ".join(args.variants) + " |",
        "|---|" + "---|" * len(args.variants),
    ]
    for n in args.sizes:
        cells = []
        for v in args.variants:
            m = results[(n, args.target, v)]["metrics"]
            k = metric_of[args.target]
            cells.append(f"{m[k]['mean']:.3f} ± {m[k]['std']:.3f}")
        subj = results[(n, args.target, args.variants[0])]["metrics"]["n_subjects"]
        lines.append(f"| {n} ({subj}) | " + " | ".join(cells) + " |")
    lines += ["", "Mean ± std over folds. Chance is 0.5 (balanced classes). Per fold:", ""]
    for n in args.sizes:
        per = "; ".join(f"{v} " + ", ".join(f"{x:.3f}" for x in
                                           results[(n, args.target, v)]["metrics"][metric_of[args.target]]["per_fold"])
                        for v in args.variants)
        lines.append(f"* {n}: {per}")
    lines += ["", "A fold at or below 0.5 for `fdin` is a run that never left the initial plateau (train accuracy "
              "≈ 0.5–0.6) within the epoch budget rather than one that memorised; the learning of the "
              "synchrony starts abruptly after a few epochs (see the curves below), and later on small sets. "
              "One seed per configuration: no seed sweep was run.", ""]

    if args.age_size:
        lines += [f"## Age ({args.age_size} sequences)", "", "| model | held-out MAE (years) | per fold |",
                  "|---|---|---|"]
        for v in ("fdin", "baseline"):
            m = results[(args.age_size, "age", v)]["metrics"]["mae"]
            lines.append(f"| {v} | {m['mean']:.2f} ± {m['std']:.2f} | "
                         + ", ".join(f"{x:.2f}" for x in m["per_fold"]) + " |")
        lines += ["", "Predicting the training mean gives an MAE of about 17 years on ages uniform in 8–76.", ""]

    shipped_age = REPO / "weights" / "fdin-age" / "config.json"
    if not args.age_size and shipped_age.exists():
        cv = json.loads(shipped_age.read_text()).get("cv_metrics", {})
        if "mae" in cv:
            lines += ["## Age (the shipped `weights/fdin-age`)", "",
                      f"Held-out-subject MAE of the full model over {cv['folds']} subject-disjoint folds of "
                      f"{cv['n_sequences']} sequences ({cv['n_subjects']} subjects): **{cv['mae']['mean']:.2f} ± "
                      f"{cv['mae']['std']:.2f} years** (per fold "
                      + ", ".join(f"{x:.2f}" for x in cv["mae"]["per_fold"])
                      + "). Predicting the training mean gives about 15–17 years on ages uniform in 8–76. "
                      "Top pair of its mean importance over the test predictions: "
                      f"`{json.loads(shipped_age.read_text())['metrics'].get('top relation (mean importance)', '?')}`"
                      f" (planted: `{AGE_PAIR[0]} – {AGE_PAIR[1]}`). Command: see `weights/fdin-age/README.md`.", ""]
    lines += ["## Is the planted pair recovered?", "",
              "Rank of the planted pair in the mean importance over all test predictions (66 pairs; "
              "1 = top; uniform share = 1/66 = 0.015).", "",
              "| target | sequences | rank | planted pair's mean importance | top pair |", "|---|---|---|---|---|"]
    for (n, target, v), res in results.items():
        if v != "fdin":
            continue
        pair = GENDER_PAIR if target == "gender" else AGE_PAIR
        rank, value, _ = planted_rank(res["importance"], pair)
        top = res["importance"]["top_relations"][0]
        lines.append(f"| {target} | {n} | {rank} | {value:.3f} | {top['regions'][0]}–{top['regions'][1]} "
                     f"({top['importance']:.3f}) |")
    lines.append("")

    n_curve = max(args.sizes)
    lines += [f"## Train vs held-out curves ({args.target}, {n_curve} sequences, fold 1)", "",
              "Per epoch: accuracy on the (un-augmented) training sequences and on the early-stopping "
              "subjects, which no training step sees. The model kept is the epoch with the best held-out "
              "loss.", "", "![curves](fdin-synth-curves.svg)", ""]
    series = {}
    header = "| epoch | " + " | ".join(f"{v} train | {v} held-out" for v in args.variants) + " |"
    lines += [header, "|---|" + "---|---|" * len(args.variants)]
    k = metric_of[args.target]
    hist = {v: results[(n_curve, args.target, v)]["history"][0]["epochs"] for v in args.variants}
    for v in args.variants:
        series[v] = [([e[f"train_{k}"] for e in hist[v]], [e[f"val_{k}"] for e in hist[v]])]
    for e in range(max(len(h) for h in hist.values())):
        cells = []
        for v in args.variants:
            h = hist[v]
            cells += ([f"{h[e][f'train_{k}']:.3f}", f"{h[e][f'val_{k}']:.3f}"] if e < len(h) else ["", ""])
        lines.append(f"| {e + 1} | " + " | ".join(cells) + " |")
    lines += ["", "## Reading the results", "",
              "* `baseline` sums per-region terms, so it cannot represent a relation between regions: it "
              "should stay near chance on held-out subjects whatever it does on the training set.",
              "* `uniform` sees every pair but averages all 66 relational features with equal weight, so the "
              "one informative pair is diluted; `fdin` learns to put its weight on that pair.",
              "* See `docs/fdin.md` for the architecture and which choices are fdin's own.", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    (args.out.parent / "fdin-synth-curves.svg").write_text(
        svg_curves(series, f"{args.target}: train (dashed) vs held-out subjects (solid), {n_curve} sequences",
                   metric_of[args.target]) + "\n")
    print(f"wrote {args.out} in {elapsed / 60:.1f} min", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

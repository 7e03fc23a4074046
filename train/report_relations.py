"""Relation traits with reference points → ``docs/benchmarks/relations.md``: ``python -m train.report_relations``.

For each seed, fdin's generated pairs (:func:`train.relation.synthetic_splits`, data seed
``1000 + seed``: never the seeds ``python -m train.relation`` trains the shipped weights on) are split
three ways by identity: **train** (pairs of the 4 training identities), **validation** (a pair has a
face of :data:`train.synth_faces.VAL_IDENTITIES`) and **test** (a face of
:data:`train.synth_faces.RELATION_TEST_IDENTITIES`, identities nothing was ever tuned on). Each split
draws from its own generated face pool, so no face image is shared between splits.

Settings (epochs × learning rate) are chosen on the validation split only (the mean over seeds of the
validation mean balanced accuracy), separately and with the same grid for the Siamese model and the
spatial-cue-only model. The test split is used once, for the table:

* ``majority``: each trait's majority class in the training pairs (balanced accuracy 0.5 by definition);
* ``random``: each trait drawn positive with its training prevalence;
* ``cue only``: the same Siamese network and training, with every face feature zeroed (it sees only
  the 12-d spatial cue of the two boxes);
* ``FER2013 + rules``: fdin's label rules (:func:`train.synth_faces.trait_rules`, the rules that made the
  labels) applied to the FER2013 model's *predicted* expression of each face instead of the generated one;
* ``Siamese``: the shipped architecture and recipe, retrained per seed with the chosen setting;
* ``shipped weights``: ``weights/relation`` as shipped, on the same test pairs.

Figures: per-trait and mean balanced accuracy on the test pairs, averaged over seeds (each seed's
models on that seed's test pairs), with percentile bootstrap 95 % CIs (resampling test pairs within
each seed), the per-seed means, and paired bootstrap differences against the Siamese model. Writes the markdown and a ``.json`` with every figure.

Everything is generated data: the figures say whether the pipeline learns fdin's rules from real
per-face features, not how any model does on real people.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
ROWS = ("majority", "random", "cue_only", "fer_rules", "siamese", "shipped")
ROW_NAMES = {"majority": "chance: majority class", "random": "chance: random at the training prevalence",
             "cue_only": "spatial cue only (same network, face features zeroed)",
             "fer_rules": "FER2013 prediction + fdin's label rules",
             "siamese": "Siamese (shipped recipe, retrained per seed)", "shipped": "shipped weights (`weights/relation`)"}
DATA_SEED_OFFSET = 1000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m train.report_relations", description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--train-pairs", type=int, default=800)
    p.add_argument("--val-pairs", type=int, default=300)
    p.add_argument("--test-pairs", type=int, default=400)
    p.add_argument("--faces", type=int, default=1200, help="generated faces of the training pool (val/test: half)")
    p.add_argument("--epochs-grid", type=int, nargs="+", default=[5, 10, 20, 40, 80])
    p.add_argument("--lr-grid", type=float, nargs="+", default=[1e-3, 3e-3])
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--shipped", default="relation",
                   help="the shipped relation weights to score on the test pairs (name, folder or Hub id; "
                        "'none' to skip)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache", type=Path, default=None,
                   help="folder for the per-split face features (default: FDIN_CACHE_DIR/relation_report)")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "relations.md")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


# --- statistics ----------------------------------------------------------------------------------
def balanced_accuracy_matrix(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Per-trait balanced accuracy of several predictors at once: ``labels`` (N, T) 1/0/NaN,
    ``predicted`` (R, N, T) 0/1 -> (R, T); the available rate alone where a trait has one class in
    ``labels`` and NaN where it has none (as :func:`train.common.balanced_accuracy`)."""
    known = np.isfinite(labels)
    pos, neg = known & (labels == 1), known & (labels == 0)
    hit = np.asarray(predicted, bool)
    n_pos, n_neg = pos.sum(0), neg.sum(0)
    with np.errstate(all="ignore"), warnings.catch_warnings():  # a trait with no labels stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        tpr = np.where(n_pos > 0, (hit & pos).sum(1) / n_pos, np.nan)
        tnr = np.where(n_neg > 0, (~hit & neg).sum(1) / n_neg, np.nan)
        return np.nanmean(np.stack([tpr, tnr]), axis=0)


def scores_with_ci(labels: np.ndarray, predicted: dict[str, np.ndarray], strata: np.ndarray, *, n_boot: int,
                   seed: int = 0, versus: str = "siamese") -> dict[str, Any]:
    """Per-trait and mean balanced accuracy of every predictor with bootstrap 95 % CIs, and the paired
    difference ``versus`` minus each other predictor. Each figure is the mean over strata (seeds) of
    the stratum's own balanced accuracy (each seed's models scored on that seed's test pairs); the
    bootstrap resamples test pairs within each stratum."""
    from fdin.labels import TRAITS
    from train.common import bootstrap_ci

    names = list(predicted)
    stacked = np.stack([predicted[k] for k in names])

    def statistic(idx: np.ndarray) -> np.ndarray:
        groups = strata[idx]
        ba = np.nanmean(np.stack([balanced_accuracy_matrix(labels[idx[groups == g]], stacked[:, idx[groups == g]])
                                  for g in np.unique(groups)]), axis=0)
        mean = np.nanmean(ba, axis=1)
        diff = mean[names.index(versus)] - mean if versus in names else np.full(len(names), np.nan)
        return np.concatenate([ba, mean[:, None], diff[:, None]], axis=1)

    with warnings.catch_warnings():  # a resample without a trait's labels gives NaN for it, ignored
        warnings.simplefilter("ignore", RuntimeWarning)
        point, low, high = bootstrap_ci(statistic, len(labels), strata=strata, n_boot=n_boot, seed=seed)
    out: dict[str, Any] = {}
    for r, name in enumerate(names):
        cell = {trait: _ci(point[r, t], low[r, t], high[r, t]) for t, trait in enumerate(TRAITS)}
        out[name] = {"balanced_accuracy": cell, "mean_balanced_accuracy": _ci(point[r, -2], low[r, -2], high[r, -2]),
                     f"{versus}_minus_this": (None if name == versus or versus not in names
                                              else _ci(point[r, -1], low[r, -1], high[r, -1]))}
    return out


def _ci(point: float, low: float, high: float) -> dict[str, float | None]:
    def r(v: float) -> float | None:
        return None if not np.isfinite(v) else round(float(v), 4)

    return {"value": r(point), "ci95": [r(low), r(high)]}


# --- the reference predictors ---------------------------------------------------------------------
def cue_only(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same pairs with every face feature zeroed: a model trained on it sees only the spatial cue."""
    return {**data, "feat": np.zeros_like(data["feat"])}


def rules_on_predicted_expressions(data: dict[str, np.ndarray]) -> np.ndarray:
    """(N, 8) 0/1: :func:`train.synth_faces.trait_rules` on the FER2013 model's top expression of each
    face (unmirrored view) and the pair's boxes."""
    from fdin.labels import EXPRESSION_LABELS
    from train.synth_faces import trait_rules

    top = data["expression"].argmax(-1)
    return np.stack([trait_rules(EXPRESSION_LABELS[a], EXPRESSION_LABELS[b], box[0], box[1])
                     for (a, b), box in zip(top, data["boxes"][:, 0], strict=True)]).reshape(len(top), -1)


def rules_on_generated_expressions(data: dict[str, np.ndarray]) -> np.ndarray:
    """The same rules on the generated expressions: reproduces the labels (a check of the data)."""
    from fdin.labels import EXPRESSION_LABELS
    from train.synth_faces import trait_rules

    return np.stack([trait_rules(EXPRESSION_LABELS[a], EXPRESSION_LABELS[b], box[0], box[1])
                     for (a, b), box in zip(data["true_expression"], data["boxes"][:, 0], strict=True)]
                    ).reshape(len(data["labels"]), -1)


def chance_predictions(train_labels: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(majority, random)`` (n, 8) 0/1 from the training labels' per-trait prevalence."""
    prevalence = np.nan_to_num(np.nanmean(train_labels, axis=0), nan=0.0)
    majority = np.broadcast_to(prevalence >= 0.5, (n, len(prevalence))).astype(float)
    random = (np.random.default_rng(seed).random((n, len(prevalence))) < prevalence).astype(float)
    return majority, random


# --- the runs ------------------------------------------------------------------------------------
def seed_data(args: argparse.Namespace, seed: int, *, expression: Any, backend: Any,
              sources: list) -> dict[str, dict[str, np.ndarray]]:
    """The three splits' features for one seed (cached in ``--cache``)."""
    from fdin.config import cache_dir
    from train.relation import cached_pair_features, synthetic_splits

    data_seed = DATA_SEED_OFFSET + seed
    records = synthetic_splits(n_train=args.train_pairs, n_val=args.val_pairs, n_test=args.test_pairs,
                               n_faces=args.faces, seed=data_seed, sources=sources)
    folder = args.cache or cache_dir("relation_report")
    key = {"train": args.train_pairs, "val": args.val_pairs, "test": args.test_pairs, "faces": args.faces,
           "data_seed": data_seed}
    return {split: cached_pair_features(recs, key=key | {"split": split},
                                        path=Path(folder) / f"seed{data_seed}-{split}-{args.train_pairs}-"
                                                            f"{args.val_pairs}-{args.test_pairs}-{args.faces}.npz",
                                        expression=expression, backend=backend, quiet=args.quiet)
            for split, recs in records.items()}


def choose(args: argparse.Namespace, data: dict[int, dict[str, dict]], kind: str) -> dict[str, Any]:
    """Train every grid setting for every seed on the training pairs; score on validation only. Returns
    the grid (mean over seeds of the validation mean balanced accuracy), the chosen setting (highest
    mean; ties: fewer epochs, then the lower rate) and the chosen setting's models per seed."""
    from train.relation import fit, predict, trait_scores

    view = cue_only if kind == "cue_only" else (lambda d: d)
    grid, models = [], {}
    for epochs in args.epochs_grid:
        for lr in args.lr_grid:
            per_seed = []
            for seed, splits in data.items():
                model, _ = fit(view(splits["train"]), epochs=epochs, lr=lr, seed=seed)
                val = splits["val"]
                per_seed.append(trait_scores(val["labels"], predict(model, view(val)) >= 0.5)["mean_balanced_accuracy"])
                models[(epochs, lr, seed)] = model
            grid.append({"epochs": epochs, "lr": lr, "val_mean_balanced_accuracy": round(float(np.mean(per_seed)), 4),
                         "per_seed": [round(float(v), 4) for v in per_seed]})
            if not args.quiet:
                print(f"{kind}: epochs {epochs} lr {lr:g}: val {np.mean(per_seed):.4f}", file=sys.stderr, flush=True)
    best = max(grid, key=lambda g: (g["val_mean_balanced_accuracy"], -g["epochs"], -g["lr"]))
    return {"grid": grid, "chosen": {"epochs": best["epochs"], "lr": best["lr"]},
            "models": {seed: models[(best["epochs"], best["lr"], seed)] for seed in data}}


def shipped_model(name: str) -> tuple[Any, dict[str, Any]] | None:
    if name.lower() == "none":
        return None
    from fdin.models.pretrained import load_pretrained

    loaded = load_pretrained(name)
    return loaded.model.eval(), loaded.config


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Everything the report shows, as one JSON-ready dict."""
    from fdin.expression_fer import FerExpressionModel
    from fdin.labels import EXPRESSION_LABELS, TRAITS
    from fdin.perception import get_backend
    from train import common, synth_faces
    from train.relation import predict

    common.start_run(threads=args.threads, seed=0)
    expression = FerExpressionModel.from_pretrained("expression-fer2013", threads=args.threads)
    backend = get_backend("offline")
    sources = synth_faces.source_faces()
    data = {seed: seed_data(args, seed, expression=expression, backend=backend, sources=sources) for seed in args.seeds}
    # the labels are fdin's rules on the generated expressions (boxes stored as float32: a rare tie may flip)
    reproduced = np.concatenate([(rules_on_generated_expressions(split) == split["labels"]).ravel()
                                 for splits in data.values() for split in splits.values()])
    selection = {kind: choose(args, data, kind) for kind in ("siamese", "cue_only")}
    shipped = shipped_model(args.shipped)

    labels, strata, predicted = [], [], {name: [] for name in ROWS if name != "shipped" or shipped}
    fer_agreement = []
    for seed, splits in data.items():
        test, n = splits["test"], len(splits["test"]["labels"])
        labels.append(test["labels"])
        strata.append(np.full(n, seed))
        majority, random = chance_predictions(splits["train"]["labels"], n, seed)
        predicted["majority"].append(majority)
        predicted["random"].append(random)
        predicted["cue_only"].append(predict(selection["cue_only"]["models"][seed], cue_only(test)) >= 0.5)
        predicted["fer_rules"].append(rules_on_predicted_expressions(test))
        predicted["siamese"].append(predict(selection["siamese"]["models"][seed], test) >= 0.5)
        if shipped:
            predicted["shipped"].append(predict(shipped[0], test) >= 0.5)
        fer_agreement.append(test["expression"].argmax(-1) == test["true_expression"])
    y, s = np.concatenate(labels), np.concatenate(strata)
    preds = {k: np.concatenate(v).astype(float) for k, v in predicted.items()}
    table = scores_with_ci(y, preds, s, n_boot=args.bootstrap)
    per_seed = {k: [round(float(np.nanmean(balanced_accuracy_matrix(y[s == seed], v[None, s == seed])[0])), 4)
                    for seed in args.seeds] for k, v in preds.items()}
    agreement = np.concatenate(fer_agreement)
    first = data[args.seeds[0]]
    config = shipped[1] if shipped else {}
    training = config.get("training")
    chosen = selection["siamese"]["chosen"]
    return {
        "command": "", "seeds": list(args.seeds), "data_seeds": [DATA_SEED_OFFSET + s for s in args.seeds],
        "pairs_per_seed": {split: len(first[split]["labels"]) for split in ("train", "val", "test")},
        "identities": {"val": list(synth_faces.VAL_IDENTITIES), "test": list(synth_faces.RELATION_TEST_IDENTITIES),
                       "train": sorted({s.identity for s in sources} - set(synth_faces.VAL_IDENTITIES)
                                       - set(synth_faces.RELATION_TEST_IDENTITIES))},
        "grid": {"epochs": list(args.epochs_grid), "lr": list(args.lr_grid)},
        "selection": {k: {"grid": v["grid"], "chosen": v["chosen"]} for k, v in selection.items()},
        "test_positive_rate": {t: round(float(np.nanmean(y[:, i])), 4) for i, t in enumerate(TRAITS)},
        "fer_agreement_with_generated_expression": round(float(agreement.mean()), 4),
        "rules_on_generated_expressions_reproduce_labels": round(float(reproduced.mean()), 4),
        "fer_predicted_expression_share": {label: round(float((np.concatenate(
            [d["test"]["expression"].argmax(-1) for d in data.values()]) == i).mean()), 4)
            for i, label in enumerate(EXPRESSION_LABELS)},
        "bootstrap": {"resamples": args.bootstrap, "level": 0.95, "unit": "test pair, resampled within each seed"},
        "n_test_pairs": len(y), "table": table, "per_seed_mean_balanced_accuracy": per_seed,
        "shipped": None if not shipped else {
            "weights": args.shipped, "training": training,
            "matches_chosen_recipe": bool(training and training.get("epochs") == chosen["epochs"]
                                          and np.isclose(training.get("lr", -1), chosen["lr"])),
            "predates_test_split": training is None},
    }


# --- the report ----------------------------------------------------------------------------------
def _cell(c: dict[str, Any] | None) -> str:
    if c is None or c["value"] is None:
        return "–"
    lo, hi = c["ci95"]
    return f"{c['value']:.3f} [{lo:.3f}, {hi:.3f}]"


def markdown(summary: dict[str, Any]) -> str:
    from fdin.labels import TRAITS

    table, ids = summary["table"], summary["identities"]
    pairs = summary["pairs_per_seed"]
    sel = summary["selection"]
    chosen_val = next(g["val_mean_balanced_accuracy"] for g in sel["siamese"]["grid"]
                      if (g["epochs"], g["lr"]) == (sel["siamese"]["chosen"]["epochs"], sel["siamese"]["chosen"]["lr"]))
    lines = [
        "# Relation traits on generated pairs: held-out test with reference points",
        "",
        f"Regenerate: `{summary['command']}` ({summary['minutes']:.0f} min on {summary['machine']}).",
        "",
        "**Generated data.** Pairs of real package photos warped to an expression (`train.synth_faces`), "
        "trait labels made by fdin's rules from the generated expressions and the boxes. The face features "
        "are real (FER2013 embedding, appearance gender/age, head pose), the labels are not: these figures "
        "say whether the pipeline learns fdin's rules, not how any model does on real people.",
        "",
        "## Splits and selection",
        "",
        f"- Seeds {', '.join(map(str, summary['seeds']))} (data seeds {', '.join(map(str, summary['data_seeds']))}; "
        "`python -m train.relation` generates its training data from other seeds). Per seed: "
        f"{pairs['train']} training, {pairs['val']} validation, {pairs['test']} test pairs, each split from its "
        "own generated face pool (no face image is in two splits).",
        f"- Identity-disjoint: training pairs only show {', '.join(ids['train'])}; every validation pair has a "
        f"face of {', '.join(ids['val'])}; every test pair a face of {', '.join(ids['test'])} (the other face, "
        "if not of the same held-out set, a training identity) and no validation identity. Nothing was ever "
        "tuned on the test identities.",
        f"- Settings chosen on validation only: epochs {summary['grid']['epochs']} × learning rate "
        f"{summary['grid']['lr']}, the highest mean over seeds of the validation mean balanced accuracy, "
        "the same grid for the Siamese and the cue-only model. Chosen: Siamese "
        f"{sel['siamese']['chosen']['epochs']} epochs at {sel['siamese']['chosen']['lr']:g}, cue only "
        f"{sel['cue_only']['chosen']['epochs']} epochs at {sel['cue_only']['chosen']['lr']:g}. The test split "
        "is scored once, after the choice." + "".join(
            f" The {name} choice is at the grid's largest epoch count: it might gain from more epochs."
            for name, kind in (("Siamese", "siamese"), ("cue-only", "cue_only"))
            if sel[kind]["chosen"]["epochs"] == max(summary["grid"]["epochs"])),
        "- Every figure is the mean over seeds of that seed's balanced accuracy (each seed's models on its own "
        f"test pairs). 95 % CIs: percentile bootstrap, {summary['bootstrap']['resamples']} resamples of the "
        f"{summary['n_test_pairs']} test pairs (resampled within each seed). They cover "
        f"the sampling of pairs only: with {len(ids['test'])} test identities, how the figures would vary "
        "with other identities is not measured.",
        "",
        "## Test split: mean balanced accuracy",
        "",
        "| predictor | mean balanced accuracy [95 % CI] | per seed | Siamese − this [95 % CI] |",
        "|---|---|---|---|",
    ]
    for name, row in ((k, table[k]) for k in ROWS if k in table):
        seeds = " / ".join(f"{v:.3f}" for v in summary["per_seed_mean_balanced_accuracy"][name])
        lines.append(f"| {ROW_NAMES[name]} | {_cell(row['mean_balanced_accuracy'])} | {seeds} | "
                     f"{_cell(row.get('siamese_minus_this'))} |")
    lines += ["", "## Test split: balanced accuracy per trait [95 % CI]", "",
              "| predictor | " + " | ".join(TRAITS) + " |", "|---|" + "---|" * len(TRAITS)]
    for name, row in ((k, table[k]) for k in ROWS if k in table):
        lines.append(f"| {ROW_NAMES[name]} | " + " | ".join(_cell(row["balanced_accuracy"][t]) for t in TRAITS) + " |")
    lines += ["", "Test positive rate per trait: " + ", ".join(
        f"{t} {summary['test_positive_rate'][t]:.2f}" for t in TRAITS) + ".", ""]
    shares = ", ".join(f"{k} {v:.2f}" for k, v in sorted(summary["fer_predicted_expression_share"].items(),
                                                          key=lambda kv: -kv[1]))
    lines += [
        "## Reading",
        "",
        "- The rules applied to the **generated** expressions reproduce "
        f"{summary['rules_on_generated_expressions_reproduce_labels']:.2%} of the labels (all splits): "
        "the labels are a function of the two expressions and the boxes, so a perfect expression reader "
        "would score 1.000. The FER2013 model agrees with the generated expression for "
        f"{summary['fer_agreement_with_generated_expression']:.0%} of the test faces (its predictions: {shares}); "
        "the `FER2013 + rules` row is what that reader gives through the exact rules.",
        "- `Siamese − this` is a paired difference (same resampled pairs); an interval above 0 means the "
        "Siamese model beats that reference on these pairs.",
        f"- The chosen Siamese setting scored {chosen_val:.3f} on validation and "
        f"{table['siamese']['mean_balanced_accuracy']['value']:.3f} on test: the held-out identities differ in how "
        "hard they are. With two identities per held-out split this identity effect is of the size shown, and "
        "the CIs above (pairs only) do not include it.",
    ]
    shipped = summary.get("shipped")
    if shipped:
        training = shipped["training"]
        if shipped["predates_test_split"]:
            lines.append("- **The shipped weights predate this split** (their config records no training "
                         "settings): they may have been trained on the test identities, so their row is not a "
                         "held-out figure.")
        else:
            lines.append(f"- Shipped weights: trained by `python -m train.relation` ({training['epochs']} epochs, "
                         f"lr {training['lr']:g}, {training['train_pairs']} training pairs, data seed "
                         f"{training['seed']}); " + ("the chosen recipe." if shipped["matches_chosen_recipe"] else
                                                    "**not** the recipe chosen here: retrain them."))
    lines += ["", "## Validation grid (mean over seeds of the validation mean balanced accuracy)", "",
              "| epochs | lr | Siamese | cue only |", "|---|---|---|---|"]
    for a, b in zip(sel["siamese"]["grid"], sel["cue_only"]["grid"], strict=True):
        lines.append(f"| {a['epochs']} | {a['lr']:g} | {a['val_mean_balanced_accuracy']:.3f} | "
                     f"{b['val_mean_balanced_accuracy']:.3f} |")
    lines += ["", "Every figure is also in `relations.json` beside this file.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    shown = list(argv if argv is not None else sys.argv[1:])
    t0, load = time.time(), os.getloadavg()
    summary = run(args)
    summary["command"] = " ".join(["python -m train.report_relations", *shown])
    summary["minutes"] = (time.time() - t0) / 60
    summary["machine"] = (f"{os.cpu_count()} CPU cores ({platform.machine()}), {args.threads} torch thread, "
                          f"load average {load[0]:.1f} at the start")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(summary))
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out} in {summary['minutes']:.1f} min", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

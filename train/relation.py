"""Train the Siamese relation-trait model on real per-face features: ``python -m train.relation [options]``.

Each face of a pair is described by real pretrained models, exactly as :class:`fdin.relate.RelationPredictor`
describes it at inference (:func:`fdin.relate.face_features`): the FER2013 mini-Xception's 128-d
pooled embedding (``--expression-weights``, default ``weights/expression-fer2013``, frozen) and the
perception backend's apparent gender probability, age and head pose (``--backend``; landmarks are
fitted to the given boxes, :func:`fdin.relate.faces_for_boxes`). The features are computed once (and
once more for the mirrored scene, the augmentation); only the shared feature branch and the relation
head are trained (model ``siamese_relation_features``).

Data: the Interpersonal Relation Dataset in fdin's CSV layout (``--relation-csv``, see
:func:`train.datasets.read_relation_csv`) or, by default, fdin's generated pairs
(:func:`train.datasets.synth_relation_records`: real-photo faces warped to an expression, trait labels
from fdin's rules; only exercises the pipeline). Splits are identity-disjoint for generated pairs: the
training pairs never contain a validation or test identity, the validation pairs contain one of
:data:`train.synth_faces.VAL_IDENTITIES`, and the test identities
(:data:`train.synth_faces.RELATION_TEST_IDENTITIES`) are never generated here at all: only
``python -m train.report_relations`` scores them. The CSV is split image-disjoint (unless it has a
``split`` column). Metric: per-trait balanced accuracy on the validation split, the split the
epochs were chosen on, so it is **not** a held-out estimate (the card does not show it; the held-out
figures with reference points and CIs are in ``docs/benchmarks/relations.md``).

The defaults (``--epochs``, ``--lr``) are the recipe ``python -m train.report_relations`` chose on the
validation split (mean over its seeds).

Outputs in ``--out``: ``args.json``, ``metrics.json``, ``model/`` (:func:`fdin.weights.save_pretrained`).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from fdin.labels import EXPRESSION_LABELS
from train import common

log = logging.getLogger("train.relation")
#: The recipe ``python -m train.report_relations`` chose on the validation split (see its report).
DEFAULT_EPOCHS = 20
DEFAULT_LR = 3e-3
#: Bumped when :func:`pair_features` changes what it stores (invalidates ``--features-cache`` files).
FEATURES_VERSION = 3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m train.relation", description=__doc__.split("\n")[0])
    data = parser.add_argument_group("data")
    data.add_argument("--relation-csv", help="relation pairs in fdin's CSV layout")
    data.add_argument("--relation-images", help="image root for --relation-csv (default: its folder)")
    data.add_argument("--synthetic", type=int, default=0, metavar="N",
                      help="N generated training pairs (default 800 when no CSV is given)")
    data.add_argument("--synthetic-val", type=int, default=0, metavar="N",
                      help="N generated validation pairs (default a quarter of --synthetic, at least 8)")
    data.add_argument("--synthetic-faces", type=int, default=1200,
                      help="generated faces the training pairs draw from (validation: half as many)")
    data.add_argument("--val-fraction", type=float, default=0.2)
    model = parser.add_argument_group("model")
    model.add_argument("--expression-weights", default="expression-fer2013",
                       help="the FER2013 expression model (folder / weights name / Hub id) giving the face embedding")
    model.add_argument("--backend", default="offline",
                       help="perception backend for landmarks, head pose and apparent gender/age (default offline)")
    model.add_argument("--features-cache", metavar="FILE.npz",
                       help="reuse the per-face features saved here by an earlier run with the same data options "
                            "(written when missing)")
    model.add_argument("--embed-dim", type=int, default=64)
    model.add_argument("--hidden", type=int, default=256)
    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    optim.add_argument("--batch-size", type=int, default=64)
    optim.add_argument("--lr", type=float, default=DEFAULT_LR)
    optim.add_argument("--weight-decay", type=float, default=0.02)
    optim.add_argument("--no-balance", dest="balance", action="store_false",
                       help="do not weight positives by the negative/positive ratio per trait")
    optim.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    optim.add_argument("--seed", type=int, default=0)
    out = parser.add_argument_group("output")
    out.add_argument("--out", default="runs/relation")
    out.add_argument("--weights-out", help="where to write the model folder (default OUT/model)")
    out.add_argument("--push-to-hub", metavar="REPO", help="upload the model folder to this Hub repo")
    out.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


def synthetic_splits(*, n_train: int, n_val: int = 0, n_test: int = 0, n_faces: int = 1200,
                     seed: int = 0, sources: list | None = None) -> dict[str, list]:
    """fdin's generated pairs, identity-disjoint (:func:`train.datasets.synth_relation_records`): each
    split from its own face pool, generated with data seed ``3 * seed + k`` (k = 0 train, 1 val,
    2 test), so no face image is shared between splits. Splits asked for 0 pairs are empty. ``sources``:
    :func:`train.synth_faces.source_faces` output (detected when None)."""
    from train import datasets as ds
    from train import synth_faces

    sources = sources if sources is not None else synth_faces.source_faces()
    sizes = {"train": (n_train, n_faces), "val": (n_val, max(n_faces // 2, 32)), "test": (n_test, max(n_faces // 2, 32))}
    return {split: ds.synth_relation_records(n, split=split, seed=3 * seed + k, n_faces=faces, sources=sources)
            if n > 0 else [] for k, (split, (n, faces)) in enumerate(sizes.items())}


def load_records(args: argparse.Namespace) -> tuple[list, list, str]:
    from train import datasets as ds

    if args.relation_csv:
        records = ds.read_relation_csv(args.relation_csv, args.relation_images)
        train, val = ds.identity_split(records, val_fraction=args.val_fraction, seed=args.seed)
        return train, val, f"Interpersonal Relation Dataset ({Path(args.relation_csv).name})"
    n_train = args.synthetic or 800
    splits = synthetic_splits(n_train=n_train, n_val=args.synthetic_val or max(n_train // 4, 8),
                              n_faces=args.synthetic_faces, seed=args.seed)
    return splits["train"], splits["val"], "fdin generated face pairs (train.synth_faces; only exercises the pipeline)"


def pair_features(records: list, *, expression: Any, backend: Any, quiet: bool = True) -> dict[str, np.ndarray]:
    """Real per-face features of every pair, as is and mirrored: ``feat`` (N, 2, 2, D) [mirrored?, face],
    ``boxes`` (N, 2, 2, 4), ``wh`` (N, 2), ``labels`` (N, 8) with NaN = not labelled, ``expression``
    (N, 2, 7) the FER2013 model's class probabilities of faces a and b (unmirrored view), and
    ``true_expression`` (N, 2) the generated expression index of each face (-1 when unknown: real data)."""
    from tqdm import tqdm

    from fdin.relate import face_features, faces_for_boxes
    from train.datasets import record_image

    feats, boxes, whs, probs = [], [], [], []
    for record in tqdm(records, desc="face features", disable=quiet, leave=False):
        image = record_image(record)
        h, w = image.shape[:2]
        per_view_f, per_view_b = [], []
        for mirrored in (False, True):
            view = np.ascontiguousarray(image[:, ::-1]) if mirrored else image
            bx = [np.asarray(b, np.float32) for b in (record.box_a, record.box_b)]
            if mirrored:  # face a stays face a
                bx = [np.array([w - b[2], b[1], w - b[0], b[3]], np.float32) for b in bx]
            faces = faces_for_boxes(view, bx, backend)
            estimates, embeddings = expression.predict_with_embeddings(view, bx)
            if not mirrored:
                probs.append([[e.probs[k] for k in EXPRESSION_LABELS] for e in estimates])
            per_view_f.append(face_features(embeddings, faces))
            per_view_b.append(np.stack(bx))
        feats.append(np.stack(per_view_f))
        boxes.append(np.stack(per_view_b))
        whs.append((w, h))
    labels = np.stack([np.asarray(r.labels, np.float64) for r in records]) if records else np.zeros((0, 8))
    true = [[r.meta.get("expression_a", -1), r.meta.get("expression_b", -1)] for r in records]
    return {"feat": np.asarray(feats, np.float32).reshape(len(records), 2, 2, -1),
            "boxes": np.asarray(boxes, np.float32).reshape(len(records), 2, 2, 4),
            "wh": np.asarray(whs, np.float32).reshape(len(records), 2), "labels": labels,
            "expression": np.asarray(probs, np.float32).reshape(len(records), 2, len(EXPRESSION_LABELS)),
            "true_expression": np.asarray(true, np.int64).reshape(len(records), 2)}


def cached_pair_features(records: list, *, key: dict[str, Any], path: Path | None, expression: Any, backend: Any,
                         quiet: bool = True) -> dict[str, np.ndarray]:
    """:func:`pair_features`, read from / written to the ``.npz`` at ``path`` when given. ``key`` (the
    data options) is stored with the expression model, backend, pair count and
    :data:`FEATURES_VERSION`; a mismatch recomputes."""
    import json

    text = json.dumps(key | {"expression": expression.source, "backend": backend.name,
                             "landmarks": getattr(backend, "landmark_model", None), "pairs": len(records),
                             "version": FEATURES_VERSION}, sort_keys=True)
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as cached:
            if str(cached["key"]) == text:
                log.info("face features from %s", path)
                return {k: cached[k] for k in cached.files if k != "key"}
    data = pair_features(records, expression=expression, backend=backend, quiet=quiet)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, key=np.array(text), **data)
        tmp.replace(path)
    return data


def cached_features(args: argparse.Namespace, train_records: list, val_records: list, *, expression: Any,
                    backend: Any) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """:func:`pair_features` of both splits, cached next to ``--features-cache`` when given
    (``<stem>-train.npz``, ``<stem>-val.npz``)."""
    key = {k: getattr(args, k) for k in ("relation_csv", "relation_images", "synthetic", "synthetic_val",
                                         "synthetic_faces", "val_fraction", "seed")}
    base = Path(args.features_cache) if args.features_cache else None
    out = []
    for split, records in (("train", train_records), ("val", val_records)):
        path = None if base is None else base.with_name(f"{base.stem}-{split}.npz")
        out.append(cached_pair_features(records, key=key | {"split": split}, path=path, expression=expression,
                                        backend=backend, quiet=args.quiet))
    return out[0], out[1]


def predict(model: Any, data: dict[str, np.ndarray], *, mirrored: bool = False) -> np.ndarray:
    """(N, 8) probabilities for the pairs of :func:`pair_features` (no augmentation)."""
    import torch

    model.eval()
    v = int(mirrored)
    with torch.inference_mode():
        t = {k: torch.from_numpy(np.ascontiguousarray(data[k])) for k in ("feat", "boxes", "wh")}
        if len(t["wh"]) == 0:
            return np.zeros((0, 8))
        logits = model(t["feat"][:, v, 0], t["feat"][:, v, 1], t["boxes"][:, v, 0], t["boxes"][:, v, 1], t["wh"])
    return torch.sigmoid(logits).numpy()


def trait_scores(labels: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """Per-trait balanced accuracy of 0/1 ``predicted`` (N, 8) against ``labels`` (N, 8; NaN = not
    labelled) and its mean over the traits with labels."""
    from fdin.labels import TRAITS

    masks = np.isfinite(labels)
    per_trait = {trait: common.balanced_accuracy(labels[masks[:, t], t], predicted[masks[:, t], t])
                 for t, trait in enumerate(TRAITS)}
    values = [v for v in per_trait.values() if v is not None]
    return {"balanced_accuracy": per_trait, "mean_balanced_accuracy": float(np.mean(values)) if values else None}


def evaluate(model: Any, data: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per-trait balanced accuracy (threshold 0.5) and its mean over traits with labels."""
    from fdin.labels import TRAITS

    labels = data["labels"]
    masks = np.isfinite(labels)
    return {"n_pairs": len(labels), **trait_scores(labels, predict(model, data) >= 0.5),
            "positive_rate": {trait: float(labels[masks[:, t], t].mean()) if masks[:, t].any() else None
                              for t, trait in enumerate(TRAITS)}}


def fit(data: dict[str, np.ndarray], *, epochs: int = DEFAULT_EPOCHS, lr: float = DEFAULT_LR,
        weight_decay: float = 0.02, batch_size: int = 64, embed_dim: int = 64, hidden: int = 256,
        balance: bool = True, seed: int = 0) -> tuple[Any, list[dict[str, Any]]]:
    """Train a ``siamese_relation_features`` model on :func:`pair_features` output: AdamW, one-cycle
    schedule over ``epochs``, BCE over the labelled traits with positives weighted by the per-trait
    negative/positive ratio (``balance``), the mirrored scene drawn with probability 0.5 per pair and
    epoch. Returns ``(model, history)``; the model is in eval mode."""
    import torch
    import torch.nn.functional as F

    from fdin.labels import TRAITS
    from fdin.models.registry import create_model

    torch.manual_seed(seed)
    model = create_model("siamese_relation_features", in_dim=int(data["feat"].shape[-1]), embed_dim=embed_dim,
                         hidden=hidden)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    n = len(data["labels"])
    steps_per_epoch = max(1, -(-n // batch_size))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch,
                                                    pct_start=0.15)
    labels_all = data["labels"]
    pos = np.nansum(labels_all, 0)
    neg = np.sum(np.isfinite(labels_all), 0) - pos
    # per-trait positive weight = negatives / positives (clipped): balanced accuracy is the metric
    pos_weight = torch.tensor(np.clip(neg / np.maximum(pos, 1), 0.2, 5.0) if balance else np.ones(len(TRAITS)),
                              dtype=torch.float32)
    feat, boxes = torch.from_numpy(data["feat"]), torch.from_numpy(data["boxes"])
    wh = torch.from_numpy(data["wh"])
    labels = torch.from_numpy(np.nan_to_num(labels_all).astype(np.float32))
    mask = torch.from_numpy(np.isfinite(labels_all).astype(np.float32))
    rng = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(n, generator=rng)
        view = torch.randint(0, 2, (n,), generator=rng)  # mirrored scene with probability 0.5
        total, seen = 0.0, 0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            v = view[idx]
            logits = model(feat[idx, v, 0], feat[idx, v, 1], boxes[idx, v, 0], boxes[idx, v, 1], wh[idx])
            per = F.binary_cross_entropy_with_logits(logits, labels[idx], reduction="none",
                                                     pos_weight=pos_weight) * mask[idx]
            loss = per.sum() / mask[idx].sum().clamp_min(1.0)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total, seen = total + float(loss.detach()) * len(idx), seen + len(idx)
        history.append({"epoch": epoch + 1, "train_loss": round(total / max(seen, 1), 5)})
    return model.eval(), history


def main(argv: list[str] | None = None) -> int:
    from fdin.expression_fer import FerExpressionModel
    from fdin.labels import SYMMETRIC_TRAITS, TRAITS
    from fdin.models.relation import ATTRIBUTE_NAMES, CUE_NAMES
    from fdin.perception import get_backend
    from fdin.weights import ModelCard, push_to_hub, save_pretrained

    args = parse_args(argv)
    common.start_run(threads=args.threads, seed=args.seed)
    out_dir = Path(args.out)
    started = time.perf_counter()

    train_records, val_records, data_description = load_records(args)
    common.write_json(out_dir / "args.json", vars(args))
    log.info("data: %s; %d train / %d val pairs", data_description, len(train_records), len(val_records))
    expression = FerExpressionModel.from_pretrained(args.expression_weights, threads=args.threads)
    backend = get_backend(args.backend)
    t0 = time.perf_counter()
    train_data, val_data = cached_features(args, train_records, val_records, expression=expression, backend=backend)
    feature_seconds = time.perf_counter() - t0
    log.info("face features in %.1f s", feature_seconds)

    model_args = {"in_dim": int(train_data["feat"].shape[-1]), "embed_dim": args.embed_dim, "hidden": args.hidden}
    model, history = fit(train_data, epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay,
                         batch_size=args.batch_size, embed_dim=args.embed_dim, hidden=args.hidden,
                         balance=args.balance, seed=args.seed)

    train_seconds = time.perf_counter() - started
    metrics = evaluate(model, val_data)
    common.write_json(out_dir / "metrics.json", {
        "val": metrics, "history": history, "train_pairs": len(train_records), "val_pairs": len(val_records),
        "train_seconds": round(train_seconds, 1), "feature_seconds": round(feature_seconds, 1),
        "data": data_description, "expression_model": expression.source, "backend": backend.name})
    synthetic = data_description.startswith("fdin generated")
    card = ModelCard(
        title="fdin Siamese relation-trait model",
        summary=("Siamese model on real per-face features: the FER2013 mini-Xception expression embedding "
                 "(weights/expression-fer2013, frozen) plus apparent gender and age from the perception "
                 "backend's appearance model and its head pose, through a shared feature branch, with fdin's "
                 "12-d spatial cue -> 8 relation traits (dominant, competitive, trusting, warm, friendly, "
                 "attached, demonstrative, assured). After Zhang, Luo, Loy & Tang (ICCV 2015, IJCV 2018); "
                 "features, fusion, cue, symmetry handling and training are fdin's own choices. Symmetric traits "
                 "are exactly invariant to swapping the two faces; 'dominant' is directed (face a over face b)."),
        trained_on=data_description + (
            f": {len(train_records)} training pairs of "
            f"{len({i for r in train_records for i in r.meta.get('identities', ())})} source identities, "
            f"{args.epochs} epochs at "
            f"learning rate {args.lr:g}"
            + (" (the setting `python -m train.report_relations` chose on its validation splits)"
               if (args.epochs, args.lr) == (DEFAULT_EPOCHS, DEFAULT_LR) else "")
            + f", identity-disjoint validation ({len(val_records)} pairs with a held-out "
            "validation identity); the test identities are never seen here. The face features come from real "
            "pretrained models; the trait labels are generated by fdin's rules from the generated expressions."
            if synthetic else ""),
        synthetic_training_data=synthetic,
        evaluation=(
            "Held-out figures (identity-disjoint test split never used to choose anything, several seeds, "
            "bootstrap 95 % CIs) beside chance, a spatial-cue-only model and fdin's label rules applied to the "
            "FER2013 model's predicted expressions are in `docs/benchmarks/relations.md`, regenerated by "
            "`python -m train.report_relations`. All of it is on generated pairs: it says whether the pipeline "
            "learns fdin's rules, not how the model does on real people. The validation figures of this run "
            "(`metrics.json`) are not shown: settings are chosen on validation splits, so those figures are not "
            "held-out estimates." if synthetic else
            "Validation figures of this run: `metrics.json` (the split the epochs were chosen on)."),
        training_command="python -m train.relation " + " ".join(argv if argv is not None else sys.argv[1:]),
        paper=("Zhang, Luo, Loy, Tang. Learning Social Relation Traits from Face Images. ICCV 2015 "
               "(arXiv 1509.03936); From Facial Expression Recognition to Interpersonal Relation Prediction. "
               "IJCV 2018 (arXiv 1609.06426)."),
        tags=("interpersonal-relation", "siamese", "fer2013"))
    weights_out = Path(args.weights_out) if args.weights_out else out_dir / "model"
    save_pretrained(model, weights_out, architecture="siamese_relation_features", model_args=model_args, card=card,
                    extra_config={"training": {"epochs": args.epochs, "lr": args.lr, "weight_decay": args.weight_decay,
                                               "batch_size": args.batch_size, "seed": args.seed,
                                               "train_pairs": len(train_records)},
                                  "traits": list(TRAITS), "symmetric_traits": list(SYMMETRIC_TRAITS),
                                  "directed_traits": ["dominant"], "spatial_cue": list(CUE_NAMES),
                                  "task": "relation_traits",
                                  "face_features": {"expression_embedding": {"model": expression.source, "dim": 128},
                                                    "attributes": list(ATTRIBUTE_NAMES),
                                                    "attributes_from": f"fdin.perception backend '{backend.name}'"}})
    log.info("val mean balanced accuracy: %s", metrics["mean_balanced_accuracy"])
    log.info("wrote %s and %s (%.0f s)", out_dir / "metrics.json", weights_out, train_seconds)
    if args.push_to_hub:
        commit = push_to_hub(weights_out, args.push_to_hub)
        log.info("pushed to %s at revision %s (pin this revision)", args.push_to_hub, commit)
    return 0


if __name__ == "__main__":
    sys.exit(main())

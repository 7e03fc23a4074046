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
(:func:`train.synth_faces.pair_samples`: real-photo faces warped to an expression, trait labels from
fdin's rules; only exercises the pipeline). Splits are identity-disjoint for generated pairs (held-out
source identities) and image-disjoint for the CSV (unless it has a ``split`` column). Metric: per-trait
balanced accuracy on the validation split.

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

from train import common

log = logging.getLogger("train.relation")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m train.relation", description=__doc__.split("\n")[0])
    data = parser.add_argument_group("data")
    data.add_argument("--relation-csv", help="relation pairs in fdin's CSV layout")
    data.add_argument("--relation-images", help="image root for --relation-csv (default: its folder)")
    data.add_argument("--synthetic", type=int, default=0, metavar="N",
                      help="N generated pairs (default 800 when no CSV is given)")
    data.add_argument("--synthetic-faces", type=int, default=1200, help="generated faces the pairs draw from")
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
    optim.add_argument("--epochs", type=int, default=20)
    optim.add_argument("--batch-size", type=int, default=64)
    optim.add_argument("--lr", type=float, default=2e-3)
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


def load_records(args: argparse.Namespace) -> tuple[list, list, str]:
    from train import datasets as ds

    if args.relation_csv:
        records = ds.read_relation_csv(args.relation_csv, args.relation_images)
        train, val = ds.identity_split(records, val_fraction=args.val_fraction, seed=args.seed)
        return train, val, f"Interpersonal Relation Dataset ({Path(args.relation_csv).name})"
    from train import synth_faces

    faces = synth_faces.face_samples(args.synthetic_faces, seed=args.seed)
    pairs = synth_faces.pair_samples(args.synthetic or 800, seed=args.seed, faces=faces)
    train, val = ds.synth_pair_records(pairs)
    return train, val, "fdin generated face pairs (train.synth_faces; only exercises the pipeline)"


def pair_features(records: list, *, expression: Any, backend: Any, quiet: bool = True) -> dict[str, np.ndarray]:
    """Real per-face features of every pair, as is and mirrored: ``feat`` (N, 2, 2, D) [mirrored?, face],
    ``boxes`` (N, 2, 2, 4), ``wh`` (N, 2), ``labels`` (N, 8) with NaN = not labelled."""
    from tqdm import tqdm

    from fdin.relate import face_features, faces_for_boxes
    from train.datasets import record_image

    feats, boxes, whs = [], [], []
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
            _, embeddings = expression.predict_with_embeddings(view, bx)
            per_view_f.append(face_features(embeddings, faces))
            per_view_b.append(np.stack(bx))
        feats.append(np.stack(per_view_f))
        boxes.append(np.stack(per_view_b))
        whs.append((w, h))
    labels = np.stack([np.asarray(r.labels, np.float64) for r in records]) if records else np.zeros((0, 8))
    return {"feat": np.asarray(feats, np.float32), "boxes": np.asarray(boxes, np.float32),
            "wh": np.asarray(whs, np.float32), "labels": labels}


def cached_features(args: argparse.Namespace, train_records: list, val_records: list, *, expression: Any,
                    backend: Any) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """:func:`pair_features` of both splits, read from / written to ``--features-cache`` when given. The
    cache records its data options, expression model and backend; a mismatch recomputes."""
    import json

    key = json.dumps({k: getattr(args, k) for k in ("relation_csv", "relation_images", "synthetic", "synthetic_faces",
                                                    "val_fraction", "seed")}
                     | {"expression": expression.source, "backend": backend.name,
                        "pairs": [len(train_records), len(val_records)]}, sort_keys=True)
    path = Path(args.features_cache) if args.features_cache else None
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as cached:
            if str(cached["key"]) == key:
                log.info("face features from %s", path)
                return ({k[6:]: cached[k] for k in cached.files if k.startswith("train_")},
                        {k[4:]: cached[k] for k in cached.files if k.startswith("val_")})
    train = pair_features(train_records, expression=expression, backend=backend, quiet=args.quiet)
    val = pair_features(val_records, expression=expression, backend=backend, quiet=args.quiet)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, key=np.array(key), **{f"train_{k}": v for k, v in train.items()},
                 **{f"val_{k}": v for k, v in val.items()})
    return train, val


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


def evaluate(model: Any, data: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per-trait balanced accuracy (threshold 0.5) and its mean over traits with labels."""
    from fdin.labels import TRAITS

    probs, labels = predict(model, data), data["labels"]
    masks = np.isfinite(labels)
    per_trait: dict[str, Any] = {}
    for t, trait in enumerate(TRAITS):
        m = masks[:, t]
        per_trait[trait] = common.balanced_accuracy(labels[m, t], probs[m, t] >= 0.5)
    values = [v for v in per_trait.values() if v is not None]
    return {"n_pairs": len(labels), "balanced_accuracy": per_trait,
            "mean_balanced_accuracy": float(np.mean(values)) if values else None,
            "positive_rate": {trait: float(labels[masks[:, t], t].mean()) if masks[:, t].any() else None
                              for t, trait in enumerate(TRAITS)}}


def main(argv: list[str] | None = None) -> int:
    import torch
    import torch.nn.functional as F

    from fdin.expression_fer import FerExpressionModel
    from fdin.labels import SYMMETRIC_TRAITS, TRAITS
    from fdin.models.registry import create_model
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

    torch.manual_seed(args.seed)
    model_args = {"in_dim": int(train_data["feat"].shape[-1]), "embed_dim": args.embed_dim, "hidden": args.hidden}
    model = create_model("siamese_relation_features", **model_args)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    n = len(train_records)
    steps_per_epoch = max(1, -(-n // args.batch_size))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch,
                                                    pct_start=0.15)
    labels_all = train_data["labels"]
    pos = np.nansum(labels_all, 0)
    neg = np.sum(np.isfinite(labels_all), 0) - pos
    # per-trait positive weight = negatives / positives (clipped): balanced accuracy is the metric
    pos_weight = torch.tensor(np.clip(neg / np.maximum(pos, 1), 0.2, 5.0) if args.balance else np.ones(len(TRAITS)),
                              dtype=torch.float32)
    feat, boxes = torch.from_numpy(train_data["feat"]), torch.from_numpy(train_data["boxes"])
    wh = torch.from_numpy(train_data["wh"])
    labels = torch.from_numpy(np.nan_to_num(labels_all).astype(np.float32))
    mask = torch.from_numpy(np.isfinite(labels_all).astype(np.float32))
    rng = torch.Generator().manual_seed(args.seed)
    history = []
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(n, generator=rng)
        view = torch.randint(0, 2, (n,), generator=rng)  # mirrored scene with probability 0.5
        total, seen = 0.0, 0
        for start in range(0, n, args.batch_size):
            idx = order[start:start + args.batch_size]
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

    train_seconds = time.perf_counter() - started
    metrics = evaluate(model, val_data)
    common.write_json(out_dir / "metrics.json", {
        "val": metrics, "history": history, "train_pairs": len(train_records), "val_pairs": len(val_records),
        "train_seconds": round(train_seconds, 1), "feature_seconds": round(feature_seconds, 1),
        "data": data_description, "expression_model": expression.source, "backend": backend.name})
    synthetic = data_description.startswith("fdin generated")
    card_metrics = {f"balanced_accuracy/{k}": round(v, 4) for k, v in metrics["balanced_accuracy"].items()
                    if v is not None}
    if metrics["mean_balanced_accuracy"] is not None:
        card_metrics["mean_balanced_accuracy"] = round(metrics["mean_balanced_accuracy"], 4)
    card = ModelCard(
        title="fdin Siamese relation-trait model",
        summary=("Siamese model on real per-face features: the FER2013 mini-Xception expression embedding "
                 "(weights/expression-fer2013, frozen) plus apparent gender and age from the perception "
                 "backend's appearance model and its head pose, through a shared feature branch, with fdin's "
                 "12-d spatial cue -> 8 relation traits (dominant, competitive, trusting, warm, friendly, "
                 "attached, demonstrative, assured). After Zhang, Luo, Loy & Tang (ICCV 2015, IJCV 2018); "
                 "features, fusion, cue, symmetry handling and training are fdin's own choices. Symmetric traits "
                 "are exactly invariant to swapping the two faces; 'dominant' is directed (face a over face b)."),
        trained_on=data_description + (" Identity-disjoint validation (held-out source identities). The face "
                                       "features come from real pretrained models; the trait labels are "
                                       "generated by fdin's rules." if synthetic else ""),
        synthetic_training_data=synthetic,
        metrics=card_metrics,
        training_command="python -m train.relation " + " ".join(argv if argv is not None else sys.argv[1:]),
        paper=("Zhang, Luo, Loy, Tang. Learning Social Relation Traits from Face Images. ICCV 2015 "
               "(arXiv 1509.03936); From Facial Expression Recognition to Interpersonal Relation Prediction. "
               "IJCV 2018 (arXiv 1609.06426)."),
        tags=("interpersonal-relation", "siamese", "fer2013"))
    weights_out = Path(args.weights_out) if args.weights_out else out_dir / "model"
    save_pretrained(model, weights_out, architecture="siamese_relation_features", model_args=model_args, card=card,
                    extra_config={"traits": list(TRAITS), "symmetric_traits": list(SYMMETRIC_TRAITS),
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

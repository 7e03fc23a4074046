"""Train the Siamese relation-trait model: ``python -m train.relation [options]``.

The shared branch starts from a trained expression/attribute model (``--branch-weights``, default
the shipped ``weights/expression``) and is fine-tuned at ``--branch-lr-scale`` times the head's
learning rate (0 freezes it). Data: the Interpersonal Relation Dataset in fdin's CSV layout
(``--relation-csv``, see :func:`train.datasets.read_relation_csv`) or, by default, fdin's generated
pairs (:func:`train.synth_faces.pair_samples`; only exercises the pipeline). Splits are
identity-disjoint for generated pairs (held-out source identities) and image-disjoint for the CSV
(unless it has a ``split`` column). Metric: per-trait balanced accuracy on the validation split.

Outputs in ``--out``: ``args.json``, ``metrics.json``, ``model/`` (:func:`fdin.weights.save_pretrained`).
DDP: ``torchrun --nproc_per_node N -m train.relation ...`` (gloo, DistributedSampler).
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
    model.add_argument("--branch-weights", default="expression",
                       help="expression model folder / weights name / Hub id for the shared branch ('' = random)")
    model.add_argument("--branch-revision", help="pinned revision when --branch-weights is a Hub id")
    model.add_argument("--hidden", type=int, default=256)
    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--epochs", type=int, default=10)
    optim.add_argument("--batch-size", type=int, default=32)
    optim.add_argument("--lr", type=float, default=2e-3)
    optim.add_argument("--branch-lr-scale", type=float, default=0.1, help="0 freezes the branch")
    optim.add_argument("--weight-decay", type=float, default=0.02)
    optim.add_argument("--no-balance", dest="balance", action="store_false",
                       help="do not weight positives by the negative/positive ratio per trait")
    optim.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    optim.add_argument("--workers", type=int, default=0)
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


def build_model(args: argparse.Namespace) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """``(model, model_args, branch_config)``: the relation model with its branch initialised."""
    from fdin.models.registry import create_model

    branch_config: dict[str, Any] = {"architecture": "expression_mnv3s", "model_args": {}}
    branch_state = None
    if args.branch_weights:
        from fdin.models.pretrained import load_pretrained

        loaded = load_pretrained(args.branch_weights, revision=args.branch_revision)
        branch_config = loaded.config
        branch_state = loaded.model.state_dict()
        branch_config = {**branch_config, "source": loaded.source}
    model_args = {"branch_architecture": branch_config["architecture"],
                  "branch_args": branch_config.get("model_args", {}), "hidden": args.hidden}
    model = create_model("siamese_relation_net", **model_args)
    if branch_state is not None:
        model.branch.load_state_dict(branch_state)
    return model, model_args, branch_config


def predict(model: Any, dataset: Any, *, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(probabilities (N, 8), labels (N, 8), mask (N, 8))`` without augmentation."""
    import torch

    model.eval()
    probs, labels, masks = [], [], []
    with torch.inference_mode():
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            cols = [torch.stack(c) for c in zip(*items, strict=True)]
            probs.append(torch.sigmoid(model(*cols[:5])).numpy())
            labels.append(cols[5].numpy())
            masks.append(cols[6].numpy())
    if not probs:
        return np.zeros((0, 8)), np.zeros((0, 8)), np.zeros((0, 8))
    return np.concatenate(probs), np.concatenate(labels), np.concatenate(masks)


def evaluate(model: Any, dataset: Any) -> dict[str, Any]:
    """Per-trait balanced accuracy (threshold 0.5) and its mean over traits with labels."""
    from fdin.models.relation import TRAITS

    probs, labels, masks = predict(model, dataset)
    per_trait: dict[str, Any] = {}
    for t, trait in enumerate(TRAITS):
        m = masks[:, t] > 0
        per_trait[trait] = common.balanced_accuracy(labels[m, t], probs[m, t] >= 0.5)
    values = [v for v in per_trait.values() if v is not None]
    return {"n_pairs": len(labels), "balanced_accuracy": per_trait,
            "mean_balanced_accuracy": float(np.mean(values)) if values else None,
            "positive_rate": {trait: float(labels[masks[:, t] > 0, t].mean()) if (masks[:, t] > 0).any() else None
                              for t, trait in enumerate(TRAITS)}}


def main(argv: list[str] | None = None) -> int:
    import torch
    import torch.nn.functional as F

    from fdin.alignment import AlignmentSpec
    from fdin.models.expression import preprocess_config
    from fdin.models.relation import CUE_NAMES, SYMMETRIC_TRAITS, TRAITS
    from fdin.weights import ModelCard, push_to_hub, save_pretrained
    from train.datasets import PairDataset

    args = parse_args(argv)
    info = common.start_run(threads=args.threads, seed=args.seed)
    out_dir = Path(args.out)
    started = time.perf_counter()

    train_records, val_records, data_description = load_records(args)
    torch.manual_seed(args.seed)
    model, model_args, branch_config = build_model(args)
    branch_args = model_args["branch_args"]
    spec = AlignmentSpec(size=branch_args.get("input_size", 112), template_scale=branch_args.get("template_scale", 0.8))
    if info.is_main:
        common.write_json(out_dir / "args.json", vars(args))
        log.info("data: %s; %d train / %d val pairs", data_description, len(train_records), len(val_records))
    train_set = PairDataset(train_records, spec, augment=True, seed=args.seed)
    val_set = PairDataset(val_records, spec, augment=False)
    loader = common.make_loader(train_set, batch_size=args.batch_size, shuffle=True, info=info,
                                num_workers=args.workers, seed=args.seed)
    groups = [{"params": list(model.relation_head.parameters()), "lr": args.lr}]
    if args.branch_lr_scale > 0:
        groups.append({"params": list(model.branch.parameters()), "lr": args.lr * args.branch_lr_scale})
    else:
        model.branch.requires_grad_(False)
    net = torch.nn.parallel.DistributedDataParallel(model) if info.enabled else model
    optimizer = torch.optim.AdamW(groups, weight_decay=args.weight_decay)
    total_steps = max(1, args.epochs * len(loader))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in groups],
                                                    total_steps=total_steps, pct_start=0.15)
    labels_all = np.stack([r.labels for r in train_records]) if train_records else np.zeros((0, len(TRAITS)))
    pos = np.nansum(labels_all, 0)
    neg = np.sum(np.isfinite(labels_all), 0) - pos
    # per-trait positive weight = negatives / positives (clipped): balanced accuracy is the metric
    pos_weight = torch.tensor(np.clip(neg / np.maximum(pos, 1), 0.2, 5.0) if args.balance else np.ones(len(TRAITS)),
                              dtype=torch.float32)
    history = []
    for epoch in range(args.epochs):
        net.train()
        if args.branch_lr_scale <= 0:
            model.branch.eval()  # frozen: keep BatchNorm statistics too
        common.set_epoch(loader, train_set, epoch)

        def loss_of_batch(batch):
            face_a, face_b, box_a, box_b, wh, labels, mask = batch
            logits = net(face_a, face_b, box_a, box_b, wh)
            per = F.binary_cross_entropy_with_logits(logits, labels, reduction="none", pos_weight=pos_weight) * mask
            return per.sum() / mask.sum().clamp_min(1.0), len(face_a)

        train_loss = common.train_one_epoch(net, loader, optimizer, scheduler, loss_of_batch, info=info,
                                            quiet=args.quiet, desc=f"epoch {epoch + 1}/{args.epochs}")
        history.append({"epoch": epoch + 1, "train_loss": train_loss})

    train_seconds = time.perf_counter() - started
    if info.is_main:
        metrics = evaluate(model, val_set)
        common.write_json(out_dir / "metrics.json", {
            "val": metrics, "history": history, "train_pairs": len(train_records), "val_pairs": len(val_records),
            "train_seconds": round(train_seconds, 1), "world_size": info.world_size, "data": data_description,
            "branch_init": branch_config.get("source")})
        synthetic = data_description.startswith("fdin generated")
        card_metrics = {f"balanced_accuracy/{k}": round(v, 4) for k, v in metrics["balanced_accuracy"].items()
                        if v is not None}
        if metrics["mean_balanced_accuracy"] is not None:
            card_metrics["mean_balanced_accuracy"] = round(metrics["mean_balanced_accuracy"], 4)
        card = ModelCard(
            title="fdin Siamese relation-trait model",
            summary=("Siamese model: a shared expression/attribute branch on both aligned faces plus fdin's 12-d "
                     "spatial cue -> 8 relation traits (dominant, competitive, trusting, warm, friendly, attached, "
                     "demonstrative, assured). After Zhang, Luo, Loy & Tang (ICCV 2015, IJCV 2018); fusion, cue, "
                     "symmetry handling and training are fdin's own choices. Symmetric traits are exactly invariant "
                     "to swapping the two faces; 'dominant' is directed (face a over face b)."),
            trained_on=data_description + (" Identity-disjoint validation (held-out source identities)."
                                           if synthetic else ""),
            synthetic_training_data=synthetic or bool(branch_config.get("synthetic_training_data")),
            metrics=card_metrics,
            training_command="python -m train.relation " + " ".join(argv if argv is not None else sys.argv[1:]),
            paper=("Zhang, Luo, Loy, Tang. Learning Social Relation Traits from Face Images. ICCV 2015 "
                   "(arXiv 1509.03936); From Facial Expression Recognition to Interpersonal Relation Prediction. "
                   "IJCV 2018 (arXiv 1609.06426)."),
            tags=("interpersonal-relation", "siamese", "timm"))
        weights_out = Path(args.weights_out) if args.weights_out else out_dir / "model"
        preprocess = branch_config.get("preprocess") or preprocess_config(
            backbone=model.branch.preprocess["timm_backbone"], input_size=spec.size,
            template_scale=spec.template_scale, mean=model.branch.pixel_mean.flatten().tolist(),
            std=model.branch.pixel_std.flatten().tolist())
        save_pretrained(model, weights_out, architecture="siamese_relation_net", model_args=model_args, card=card,
                        extra_config={"preprocess": preprocess, "traits": list(TRAITS),
                                      "symmetric_traits": list(SYMMETRIC_TRAITS), "directed_traits": ["dominant"],
                                      "spatial_cue": list(CUE_NAMES), "task": "relation_traits",
                                      "branch_init": branch_config.get("source")})
        log.info("val mean balanced accuracy: %s", metrics["mean_balanced_accuracy"])
        log.info("wrote %s and %s (%.0f s)", out_dir / "metrics.json", weights_out, train_seconds)
        if args.push_to_hub:
            commit = push_to_hub(weights_out, args.push_to_hub)
            log.info("pushed to %s at revision %s (pin this revision)", args.push_to_hub, commit)
    common.cleanup_distributed(info)
    return 0


if __name__ == "__main__":
    sys.exit(main())

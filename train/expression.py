"""Train the expression/attribute network: ``python -m train.expression [options]``.

Data: any mix of the real datasets (adapters in :mod:`train.datasets`, layouts in docs/relations.md)
or, with none given, fdin's generated face set (:mod:`train.synth_faces`; it only exercises the
pipeline). Each sample trains only the heads it is labelled for (masked losses). With
``--propagate-every E`` the script alternates training with attribute propagation
(:mod:`train.propagation`, fdin's own reading of the IJCV paper): every E epochs it embeds the
training set, spreads each attribute's labels over a cross-dataset k-NN graph and trains the missing
heads on confidence-weighted pseudo-labels.

Outputs in ``--out``: ``args.json`` (resolved options), ``metrics.json``, and ``model/`` written by
:func:`fdin.weights.save_pretrained`. DDP: launch with ``torchrun --nproc_per_node N -m
train.expression ...`` (gloo backend, DistributedSampler).

Example (real data)::

    python -m train.expression --expw /data/ExpW --utkface /data/UTKFace --fer2013 /data/fer2013.csv \
        --epochs 30 --batch-size 128 --propagate-every 5 --out runs/expr

``--backbone`` is any timm model name, including fdin's ``mini_xception``; ``--init FOLDER`` starts
the trunk from a model folder's weights (e.g. ``--init weights/expression-fer2013``, the FER2013
mini-Xception; its classifier is dropped), resolved and verified by :mod:`fdin.weights`. With
``--init`` the backbone and input size default to that model's.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from train import common

log = logging.getLogger("train.expression")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m train.expression", description=__doc__.split("\n")[0])
    data = parser.add_argument_group("data")
    data.add_argument("--synthetic", type=int, default=0, metavar="N",
                      help="N generated faces (default 1200 when no real dataset is given)")
    data.add_argument("--fer2013", help="fer2013.csv")
    data.add_argument("--expw", help="ExpW root (label/label.lst, image/origin/)")
    data.add_argument("--rafdb", help="RAF-DB basic root (EmoLabel/, Image/aligned/)")
    data.add_argument("--affectnet", help="AffectNet training.csv or validation.csv")
    data.add_argument("--affectnet-images", help="AffectNet image root")
    data.add_argument("--utkface", help="UTKFace folder (aligned & cropped)")
    data.add_argument("--val-fraction", type=float, default=0.2)
    data.add_argument("--limit", type=int, default=0, help="use at most this many records (debugging)")
    model = parser.add_argument_group("model")
    model.add_argument("--architecture", default="expression_attribute_net")
    model.add_argument("--backbone", help="any timm model name, e.g. mini_xception (default: the --init "
                       "model's, else mobilenetv3_small_100)")
    model.add_argument("--input-size", type=int, help="crop size (default: the --init model's, else 112)")
    model.add_argument("--init", metavar="FOLDER", help="initialise the trunk from this model folder or Hub id "
                       "(e.g. weights/expression-fer2013)")
    model.add_argument("--init-revision", help="40-hex commit when --init is a Hub id")
    model.add_argument("--embed-dim", type=int, default=128)
    model.add_argument("--pretrained-file", help="local ImageNet weights for the timm trunk (never downloaded)")
    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--epochs", type=int, default=12)
    optim.add_argument("--batch-size", type=int, default=32)
    optim.add_argument("--lr", type=float, default=2e-3)
    optim.add_argument("--weight-decay", type=float, default=0.02)
    optim.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    optim.add_argument("--workers", type=int, default=0)
    optim.add_argument("--seed", type=int, default=0)
    prop = parser.add_argument_group("attribute propagation")
    prop.add_argument("--propagate-every", type=int, default=3, help="epochs between propagations (0: off)")
    prop.add_argument("--knn", type=int, default=10)
    prop.add_argument("--pseudo-weight", type=float, default=0.5)
    out = parser.add_argument_group("output")
    out.add_argument("--out", default="runs/expression")
    out.add_argument("--weights-out", help="where to write the model folder (default OUT/model)")
    out.add_argument("--push-to-hub", metavar="REPO", help="upload the model folder to this Hub repo")
    out.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    init = _init_config(args.init, args.init_revision) if args.init else {}
    if args.backbone is None:
        args.backbone = init.get("timm_model", "mobilenetv3_small_100")
    if args.input_size is None:
        args.input_size = int(init.get("preprocess", {}).get("input_size", [3, 112, 112])[-1])
    return args


def _init_config(source: str, revision: str | None) -> dict[str, Any]:
    from fdin.weights import CONFIG_NAME, resolve_weights

    path, _ = resolve_weights(source, revision=revision)
    return json.loads((path / CONFIG_NAME).read_text())


def init_trunk(model: Any, source: str, revision: str | None = None) -> str:
    """Load a verified model folder's weights into ``model.trunk`` (its classifier is left out).

    Every trunk tensor must come from the folder with its shape; returns the folder's provenance line.
    """
    from safetensors.torch import load_file

    from fdin.weights import CONFIG_NAME, WEIGHTS_NAME, resolve_weights, verify_weights_dir

    path, described = resolve_weights(source, revision=revision)
    verify_weights_dir(path)
    config = json.loads((path / CONFIG_NAME).read_text())
    state = load_file(str(path / WEIGHTS_NAME))
    own = model.trunk.state_dict()
    missing = sorted(k for k in own if k not in state or state[k].shape != own[k].shape)
    if missing:
        raise SystemExit(f"--init {source}: its weights do not fit the {config.get('architecture')!r} trunk "
                         f"(e.g. {missing[:3]}); pass the matching --backbone.")
    model.trunk.load_state_dict({k: state[k] for k in own}, strict=True)
    dropped = sorted(set(state) - set(own))
    log.info("trunk initialised from %s (%d tensors; not used: %s)", described, len(own), dropped)
    return f"trunk initialised from {described} ({config.get('name')}; trained on {config.get('trained_on')})"


def load_records(args: argparse.Namespace) -> tuple[list, list, str]:
    """``(train, val, description)`` from the real datasets given, else the generated set."""
    from train import datasets as ds

    records: list = []
    names = []
    if args.fer2013:
        records += ds.read_fer2013(args.fer2013)
        names.append("FER2013")
    if args.expw:
        records += ds.read_expw(args.expw)
        names.append("ExpW")
    if args.rafdb:
        records += ds.read_rafdb_basic(args.rafdb)
        names.append("RAF-DB basic")
    if args.affectnet:
        records += ds.read_affectnet(args.affectnet, args.affectnet_images or Path(args.affectnet).parent)
        names.append("AffectNet")
    if args.utkface:
        records += ds.read_utkface(args.utkface)
        names.append("UTKFace")
    if records:
        if args.limit:
            rng = np.random.default_rng(args.seed)
            records = [records[i] for i in sorted(rng.permutation(len(records))[: args.limit])]
        train, val = ds.identity_split(records, val_fraction=args.val_fraction, seed=args.seed)
        return train, val, ", ".join(names)
    from train import synth_faces

    samples = synth_faces.face_samples(args.synthetic or 1200, seed=args.seed)
    train, val = ds.synth_face_records(samples, seed=args.seed)
    return train, val, "fdin generated face set (train.synth_faces; only exercises the pipeline)"


def embed_all(model: Any, dataset: Any, *, batch_size: int = 64):
    """(N, E) embeddings + dict of head outputs for every record (no augmentation)."""
    import torch

    model.eval()
    outs: dict[str, list] = {}
    with torch.inference_mode():
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            out = model(torch.stack([it[0] for it in items]))
            for k, v in out.items():
                outs.setdefault(k, []).append(v.numpy())
    return {k: np.concatenate(v) for k, v in outs.items()}


def propagate(model: Any, dataset: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Fill missing labels of ``dataset.records`` by attribute propagation; returns statistics."""
    from fdin.models.expression import EXPRESSION_LABELS
    from train.propagation import knn_graph, propagate_categorical, propagate_numeric

    plain = type(dataset)(dataset.records, dataset.spec, augment=False)
    emb = embed_all(model, plain)["embedding"]
    w = knn_graph(emb, k=args.knn)
    recs = dataset.records
    stats: dict[str, Any] = {}
    has = {h: np.array([getattr(r, h) is not None for r in recs]) for h in ("expression", "gender", "age", "pose")}
    pseudo = {}
    if has["expression"].any():
        labels = np.array([r.expression if r.expression is not None else 0 for r in recs])
        pseudo["expression"] = propagate_categorical(w, labels, has["expression"], num_classes=len(EXPRESSION_LABELS))
    if has["gender"].any():
        labels = np.array([int(r.gender >= 0.5) if r.gender is not None else 0 for r in recs])
        res = propagate_categorical(w, labels, has["gender"], num_classes=2)
        res.values = res.values[:, 1]  # P(female)
        pseudo["gender"] = res
    if has["age"].any():
        values = np.array([r.age if r.age is not None else np.nan for r in recs])
        pseudo["age"] = propagate_numeric(w, values, has["age"])
    if has["pose"].any():
        values = np.stack([r.pose if r.pose is not None else np.full(3, np.nan) for r in recs])
        res = propagate_numeric(w, values, has["pose"])
        pseudo["pose"] = res
    dataset.pseudo = {h: (p.values, p.confidence) for h, p in pseudo.items()}
    for head, res in pseudo.items():
        filled = (~has[head]) & (res.confidence > 0)
        entry: dict[str, Any] = {"missing": int((~has[head]).sum()), "filled": int(filled.sum()),
                                 "mean_confidence": float(res.confidence[filled].mean()) if filled.any() else 0.0}
        truth = [r.meta.get("hidden", {}).get(head) if hasattr(r, "meta") else None for r in recs]
        idx = [i for i in np.flatnonzero(filled) if truth[i] is not None]
        if idx:  # generated data keeps the hidden truth: report how good the pseudo-labels are
            if head == "expression":
                entry["pseudo_accuracy_vs_hidden"] = float(np.mean([res.values[i].argmax() == truth[i] for i in idx]))
            elif head == "gender":
                entry["pseudo_accuracy_vs_hidden"] = float(np.mean([(res.values[i] >= 0.5) == (truth[i] >= 0.5)
                                                                    for i in idx]))
            elif head == "age":
                entry["pseudo_mae_vs_hidden"] = float(np.mean([abs(res.values[i] - truth[i]) for i in idx]))
        stats[head] = entry
    return stats


def evaluate(model: Any, dataset: Any) -> dict[str, Any]:
    """Per-head metrics on labelled samples: expression accuracy, gender accuracy, age MAE, pose MAE."""
    from fdin.models.expression import EXPRESSION_LABELS

    if len(dataset) == 0:
        return {}
    out = embed_all(model, dataset)
    recs = dataset.records
    metrics: dict[str, Any] = {"n": len(recs)}
    idx = [i for i, r in enumerate(recs) if r.expression is not None]
    if idx:
        pred = out["expression"][idx].argmax(1)
        true = np.array([recs[i].expression for i in idx])
        metrics["expression_accuracy"] = float((pred == true).mean())
        per_class = {EXPRESSION_LABELS[c]: float((pred[true == c] == c).mean()) for c in np.unique(true)}
        metrics["expression_mean_class_accuracy"] = float(np.mean(list(per_class.values())))
        metrics["expression_per_class_accuracy"] = per_class
        metrics["expression_n"] = len(idx)
    idx = [i for i, r in enumerate(recs) if r.gender is not None]
    if idx:
        true = np.array([recs[i].gender for i in idx]) >= 0.5
        metrics["gender_accuracy"] = float(((out["gender"][idx] > 0) == true).mean())
        metrics["gender_n"] = len(idx)
    idx = [i for i, r in enumerate(recs) if r.age is not None]
    if idx:
        metrics["age_mae_years"] = float(np.abs(out["age"][idx] - np.array([recs[i].age for i in idx])).mean())
        metrics["age_n"] = len(idx)
    idx = [i for i, r in enumerate(recs) if r.pose is not None]
    if idx:
        rolls = np.array([dataset.crop(i)[1] for i in idx])
        pred = out["pose"][idx].copy()
        pred[:, 2] += rolls
        true = np.stack([recs[i].pose for i in idx])
        err = np.abs(pred - true).mean(0)
        metrics.update({"pose_mae_yaw_deg": float(err[0]), "pose_mae_pitch_deg": float(err[1]),
                        "pose_mae_roll_deg": float(err[2]), "pose_n": len(idx)})
    return metrics


def main(argv: list[str] | None = None) -> int:
    import torch

    from fdin.alignment import AlignmentSpec
    from fdin.models.expression import masked_multitask_loss, preprocess_config
    from fdin.models.registry import create_model
    from fdin.weights import ModelCard, push_to_hub, save_pretrained
    from train.datasets import FaceAttributeDataset

    args = parse_args(argv)
    info = common.start_run(threads=args.threads, seed=args.seed)
    out_dir = Path(args.out)
    started = time.perf_counter()

    train_records, val_records, data_description = load_records(args)
    if info.is_main:
        common.write_json(out_dir / "args.json", vars(args))
        log.info("data: %s; %d train / %d val records", data_description, len(train_records), len(val_records))
    model_args = {"backbone": args.backbone, "embed_dim": args.embed_dim, "input_size": args.input_size,
                  "template_scale": 0.8}
    torch.manual_seed(args.seed)  # identical initial weights on every rank
    model = create_model(args.architecture, **model_args, pretrained_file=args.pretrained_file)
    init_note = init_trunk(model, args.init, args.init_revision) if args.init else ""
    spec = AlignmentSpec(size=args.input_size, template_scale=model_args["template_scale"])
    train_set = FaceAttributeDataset(train_records, spec, augment=True, seed=args.seed,
                                     pseudo_weight=args.pseudo_weight)
    seen = [r for r in val_records if r.meta.get("seen_identity")]
    val_records = [r for r in val_records if not r.meta.get("seen_identity")]
    val_set = FaceAttributeDataset(val_records, spec, augment=False)
    seen_set = FaceAttributeDataset(seen, spec, augment=False)
    loader = common.make_loader(train_set, batch_size=args.batch_size, shuffle=True, info=info,
                                num_workers=args.workers, seed=args.seed)
    net = torch.nn.parallel.DistributedDataParallel(model) if info.enabled else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    total_steps = max(1, args.epochs * len(loader))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=total_steps,
                                                    pct_start=0.15)
    history, propagation_stats = [], []
    for epoch in range(args.epochs):
        if args.propagate_every and epoch > 0 and epoch % args.propagate_every == 0:
            stats = propagate(model, train_set, args)
            propagation_stats.append({"epoch": epoch, **stats})
            if info.is_main:
                log.info("epoch %d propagation: %s", epoch, stats)
        net.train()
        common.set_epoch(loader, train_set, epoch)

        def loss_of_batch(batch):
            images, targets, weights = batch
            return masked_multitask_loss(net(images), targets, weights)[0], len(images)

        train_loss = common.train_one_epoch(net, loader, optimizer, scheduler, loss_of_batch, info=info,
                                            quiet=args.quiet, desc=f"epoch {epoch + 1}/{args.epochs}")
        history.append({"epoch": epoch + 1, "train_loss": train_loss})

    train_seconds = time.perf_counter() - started
    if info.is_main:
        metrics = evaluate(model, val_set)
        metrics_all = {"val": metrics, "val_seen_identities": evaluate(model, seen_set), "history": history, "propagation": propagation_stats,
                       "train_records": len(train_records), "val_records": len(val_records),
                       "train_seconds": round(train_seconds, 1), "world_size": info.world_size,
                       "data": data_description}
        common.write_json(out_dir / "metrics.json", metrics_all)
        synthetic = data_description.startswith("fdin generated")
        card_metrics = {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)}
        card_metrics.update({f"seen_identities/{k}": round(v, 4) for k, v in metrics_all["val_seen_identities"].items()
                             if isinstance(v, float) and k.startswith(("expression_accuracy", "expression_mean"))})
        card = ModelCard(
            title="fdin expression/attribute network",
            summary=("Multi-task expression (7 classes), apparent gender, apparent age and head-pose network on "
                     f"aligned {args.input_size}x{args.input_size} face crops; timm `{args.backbone}` trunk. "
                     "After Zhang, Luo, Loy & Tang (IJCV 2018); architecture, losses and the attribute "
                     "propagation method are fdin's own reading (the paper's equations were not retrieved)."),
            trained_on=(data_description + (" Identity-disjoint validation (held-out source identities)."
                                             if synthetic else "") + (f" {init_note[0].upper()}{init_note[1:]}."
                                                                      if init_note else "")),
            synthetic_training_data=synthetic, metrics=card_metrics,
            training_command="python -m train.expression " + " ".join(argv if argv is not None else sys.argv[1:]),
            paper="Zhang, Luo, Loy, Tang. From Facial Expression Recognition to Interpersonal Relation Prediction. "
                  "IJCV 126, 2018 (arXiv 1609.06426).",
            tags=("facial-expression-recognition", "timm"))
        weights_out = Path(args.weights_out) if args.weights_out else out_dir / "model"
        save_pretrained(model, weights_out, architecture=args.architecture, model_args=model_args, card=card,
                        extra_config={"preprocess": preprocess_config(
                            backbone=args.backbone, input_size=args.input_size,
                            template_scale=model_args["template_scale"], mean=model.pixel_mean.flatten().tolist(),
                            std=model.pixel_std.flatten().tolist()),
                            "task": "expression_attributes"})
        log.info("val metrics: %s", {k: v for k, v in metrics.items() if not isinstance(v, dict)})
        log.info("wrote %s and %s (%.0f s)", out_dir / "metrics.json", weights_out, train_seconds)
        if args.push_to_hub:
            commit = push_to_hub(weights_out, args.push_to_hub)
            log.info("pushed to %s at revision %s (pin this revision)", args.push_to_hub, commit)
    common.cleanup_distributed(info)
    return 0


if __name__ == "__main__":
    sys.exit(main())

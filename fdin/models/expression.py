"""Multi-task expression/attribute network on aligned face crops (a timm trunk + fdin's heads).

After Zhang, Luo, Loy & Tang (IJCV 2018, arXiv 1609.06426): an expression network that also learns
gender, age and head pose from heterogeneous, partly labelled datasets. Only the papers' abstracts
and introductions were read; the trunk (any timm model), the 128-d shared embedding, the head
shapes and the losses below are **fdin's own choices**.

Tensors:
    input ``x``: (B, 3, S, S) float32 RGB in [0, 1], an aligned crop (:mod:`fdin.alignment`);
    mean/std normalisation happens inside the model (buffers), so callers cannot drift. A grayscale
    trunk (timm ``pretrained_cfg`` input with one channel, e.g. ``mini_xception``) gets BT.601 luma
    computed inside the model and its own ``pretrained_cfg`` mean/std.
    outputs (dict): ``embedding`` (B, E) L2-normalised; ``expression`` (B, 7) logits in
    :data:`EXPRESSION_LABELS` order; ``gender`` (B,) logit of P(female); ``age`` (B,) years;
    ``pose`` (B, 3) degrees (yaw, pitch, residual roll after alignment; fdin sign conventions in
    :mod:`fdin.perception.types`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fdin.alignment import AlignmentSpec
from fdin.labels import EXPRESSION_LABELS  # ExpW / FER2013 order (0 angry ... 6 neutral)
from fdin.models.registry import register_model

HEAD_NAMES = ("expression", "gender", "age", "pose")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: RGB -> gray weights (ITU-R BT.601, as OpenCV's RGB2GRAY) for one-channel trunks.
LUMA = (0.299, 0.587, 0.114)
#: Regression targets are scaled by these before the loss (years, degrees).
AGE_SCALE = 50.0
POSE_SCALE = 45.0


class ExpressionAttributeNet(nn.Module):
    """``trunk`` (timm, no classifier) -> ``neck`` (shared embedding) -> one head per attribute.

    Args:
        trunk: module mapping (B, 3, S, S) normalised images to (B, F) pooled features.
        neck: module mapping (B, F) -> (B, E); its output (L2-normalised) is the Siamese branch
            feature and the space attribute propagation builds its k-NN graph in.
        heads: ``nn.ModuleDict`` with ``expression`` (E->7), ``gender`` (E->1), ``age`` (E->1),
            ``pose`` (E->3).
        mean, std: per-channel normalisation applied to [0, 1] inputs (one value each when ``gray``).
        gray: the trunk takes one channel: RGB inputs are turned into BT.601 luma first.
    """

    def __init__(self, *, trunk: nn.Module, neck: nn.Module, heads: nn.ModuleDict,
                 mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD,
                 gray: bool = False) -> None:
        super().__init__()
        self.trunk = trunk
        self.neck = neck
        self.heads = heads
        self.gray = gray
        chans = 1 if gray else 3
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, chans, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, chans, 1, 1), persistent=False)
        self.register_buffer("luma", torch.tensor(LUMA).view(1, 3, 1, 1), persistent=False)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [0, 1] -> (B, E) unnormalised embedding (pre-L2)."""
        if self.gray:
            x = (x * self.luma).sum(1, keepdim=True)
        return self.neck(self.trunk((x - self.pixel_mean) / self.pixel_std))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.embed(x)
        out = {"embedding": F.normalize(z, dim=1)}
        out["expression"] = self.heads["expression"](z)
        out["gender"] = self.heads["gender"](z).squeeze(1)
        out["age"] = self.heads["age"](z).squeeze(1) * AGE_SCALE + AGE_SCALE * 0.7
        out["pose"] = self.heads["pose"](z) * POSE_SCALE
        return out


def masked_multitask_loss(outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                          weights: dict[str, torch.Tensor],
                          head_weights: dict[str, float] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum over heads of per-sample losses weighted by ``weights[head]`` (B,) (0 = unlabelled).

    Targets: ``expression`` (B, 7) class distribution (one-hot or a soft pseudo-label);
    ``gender`` (B,) P(female) in [0, 1]; ``age`` (B,) years; ``pose`` (B, 3) degrees (NaN allowed
    where pose is partly missing). Missing entries may hold anything (NaN included): they are
    replaced before the loss so an unlabelled head gets exactly zero gradient. Each head's loss is
    normalised by the sum of its weights in the batch (0 when nobody is labelled).
    """
    head_weights = head_weights or {}
    total = outputs["expression"].new_zeros(())
    parts: dict[str, float] = {}
    for head in HEAD_NAMES:
        if head not in targets:
            continue
        w = weights[head].to(outputs[head].dtype)
        pred, tgt = outputs[head], targets[head]
        if head == "expression":
            tgt = torch.where(w[:, None] > 0, torch.nan_to_num(tgt), torch.zeros_like(tgt))
            per = -(tgt * F.log_softmax(pred, dim=1)).sum(1)
        elif head == "gender":
            tgt = torch.where(w > 0, torch.nan_to_num(tgt), torch.zeros_like(tgt))
            per = F.binary_cross_entropy_with_logits(pred, tgt, reduction="none")
        elif head == "age":
            tgt = torch.where(w > 0, torch.nan_to_num(tgt), pred.detach())
            per = F.smooth_l1_loss(pred / AGE_SCALE, tgt / AGE_SCALE, reduction="none", beta=0.1)
        else:  # pose: per-angle validity
            valid = torch.isfinite(tgt) & (w[:, None] > 0)
            tgt = torch.where(valid, torch.nan_to_num(tgt), pred.detach())
            per = (F.smooth_l1_loss(pred / POSE_SCALE, tgt / POSE_SCALE, reduction="none", beta=0.1)
                   * valid).sum(1) / valid.sum(1).clamp_min(1)
        per = torch.where(w > 0, per, torch.zeros_like(per))
        loss = (per * w).sum() / w.sum().clamp_min(1e-6)
        parts[head] = float(loss.detach())
        total = total + head_weights.get(head, 1.0) * loss
    return total, parts


def _timm_trunk(backbone: str, pretrained_file: str | None) -> nn.Module:
    import timm

    import fdin.models.mini_xception  # noqa: F401  (registers mini_xception with timm)

    if pretrained_file:  # local ImageNet weights only; never the Hub
        return timm.create_model(backbone, pretrained=True, num_classes=0,
                                 pretrained_cfg_overlay={"file": pretrained_file})
    return timm.create_model(backbone, pretrained=False, num_classes=0)


def _create_expression_net(*, backbone: str, embed_dim: int = 128, input_size: int = 112,
                           template_scale: float = 0.8, mean: tuple[float, ...] | None = None,
                           std: tuple[float, ...] | None = None, drop_rate: float = 0.1,
                           pretrained_file: str | None = None, **_ignored: Any) -> ExpressionAttributeNet:
    trunk = _timm_trunk(backbone, pretrained_file)
    cfg = getattr(trunk, "pretrained_cfg", None) or {}
    gray = int(cfg.get("input_size", (3,))[0]) == 1
    # RGB trunks keep the ImageNet default (what every saved model was built with); gray trunks
    # (e.g. mini_xception: (x - 0.5) / 0.5) use their own pretrained_cfg statistics.
    mean = tuple(mean or (cfg.get("mean", (0.5,)) if gray else IMAGENET_MEAN))
    std = tuple(std or (cfg.get("std", (0.5,)) if gray else IMAGENET_STD))
    trunk.eval()
    with torch.no_grad():
        features = trunk(torch.zeros(1, 1 if gray else 3, input_size, input_size)).shape[1]
    trunk.train()
    neck = nn.Sequential(nn.Dropout(drop_rate), nn.Linear(features, embed_dim), nn.LayerNorm(embed_dim),
                         nn.GELU())
    heads = nn.ModuleDict({
        "expression": nn.Linear(embed_dim, len(EXPRESSION_LABELS)),
        "gender": nn.Linear(embed_dim, 1),
        "age": nn.Linear(embed_dim, 1),
        "pose": nn.Linear(embed_dim, 3),
    })
    model = ExpressionAttributeNet(trunk=trunk, neck=neck, heads=heads, mean=mean, std=std, gray=gray)
    model.preprocess = preprocess_config(backbone=backbone, input_size=input_size,
                                         template_scale=template_scale, mean=mean, std=std)
    return model


def preprocess_config(*, backbone: str, input_size: int, template_scale: float,
                      mean: tuple[float, ...], std: tuple[float, ...]) -> dict[str, Any]:
    """The preprocessing contract saved in ``config.json`` (``extra_config['preprocess']``)."""
    return {
        "timm_backbone": backbone,
        "input_size": [3, input_size, input_size],
        "channel_order": "RGB",
        "value_range": [0.0, 1.0],
        "mean": list(mean),
        "std": list(std),
        "normalisation": "inside the model (buffers)" + ("; RGB -> BT.601 gray first" if len(mean) == 1 else ""),
        "alignment": AlignmentSpec(size=input_size, template_scale=template_scale).to_dict(),
        "expression_labels": list(EXPRESSION_LABELS),
        "outputs": {"gender": "logit of P(female)", "age": "years", "pose": "yaw, pitch, residual roll (deg)"},
    }


@register_model("expression_attribute_net")
def expression_attribute_net(**kwargs: Any) -> ExpressionAttributeNet:
    """Generic builder; ``backbone`` is any timm model name."""
    return _create_expression_net(**kwargs)


@register_model("mini_xception")
def mini_xception(**kwargs: Any) -> nn.Module:
    """The FER2013 mini-Xception (:mod:`fdin.models.mini_xception`, a timm model), so that
    :func:`fdin.weights.load_pretrained` rebuilds ``weights/expression-fer2013``. Registered here, in a
    module the registry already imports, and built lazily: timm is imported only when it is used."""
    from fdin.models.mini_xception import mini_xception as build

    return build(**kwargs)


@register_model("expression_mnv3s")
def expression_mnv3s(**kwargs: Any) -> ExpressionAttributeNet:
    """Default: timm ``mobilenetv3_small_100`` at 112 px (~2 ms per face on one CPU core)."""
    kwargs.setdefault("backbone", "mobilenetv3_small_100")
    return _create_expression_net(**kwargs)


__all__ = [
    "AGE_SCALE",
    "EXPRESSION_LABELS",
    "HEAD_NAMES",
    "POSE_SCALE",
    "ExpressionAttributeNet",
    "masked_multitask_loss",
    "preprocess_config",
]

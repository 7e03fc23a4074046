"""Siamese interpersonal-relation model: a shared face branch + spatial cue -> 8 relation traits.

After Zhang, Luo, Loy & Tang (ICCV 2015 arXiv 1509.03936; IJCV 2018 arXiv 1609.06426): both faces
pass through the same expression network; their features and a spatial cue from the two face boxes
feed binary classifiers for 8 traits. From the papers' text [P]: the Siamese use of the expression
network. From third-party notes [S]: concatenated features -> one FC (256-d) -> 8 binary outputs,
and an 11-d spatial cue ``[x_l, y_l, w_l, h_l, x_r, y_r, w_r, h_r, (x_l-x_r)/w_l, (y_l-y_r)/h_l,
w_l/w_r]``. **fdin's own choices** (not the paper's):

* the cue (:func:`spatial_cue`) is normalised by image size, uses ``log(w_a/w_b)`` instead of the raw
  ratio, and appends the boxes' IoU (overlap): 12 numbers;
* symmetry: traits in :data:`SYMMETRIC_TRAITS` describe the pair as a whole, so their logits are
  ``(h(a, b, cue_ab) + h(b, a, cue_ba)) / 2``: exactly invariant to swapping the two faces.
  ``dominant`` ("one leads, directs or controls the other") is the one trait whose definition names
  a direction; fdin reads it as "face a dominates face b" and keeps it ordered, ``h(a, b, cue_ab)``.
  Pairs are ordered left-to-right by box centre unless the caller chooses otherwise.

Tensors: ``face_a``/``face_b`` (B, 3, S, S) float RGB in [0, 1] aligned crops; ``box_a``/``box_b``
(B, 4) xyxy pixels; ``image_wh`` (B, 2) pixels. Output: (B, 8) logits in :data:`TRAITS` order.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fdin.models.registry import register_model

TRAITS = ("dominant", "competitive", "trusting", "warm", "friendly", "attached", "demonstrative", "assured")
#: Traits that are properties of the unordered pair (fdin's reading; see module docstring).
SYMMETRIC_TRAITS = ("competitive", "trusting", "warm", "friendly", "attached", "demonstrative", "assured")
CUE_DIM = 12
CUE_NAMES = ("x_a", "y_a", "w_a", "h_a", "x_b", "y_b", "w_b", "h_b", "dx_over_w_a", "dy_over_h_a",
             "log_w_a_over_w_b", "iou")


def spatial_cue(box_a: torch.Tensor, box_b: torch.Tensor, image_wh: torch.Tensor) -> torch.Tensor:
    """fdin's 12-d spatial cue for ordered pairs (a, b); see :data:`CUE_NAMES`.

    Args:
        box_a, box_b: (B, 4) xyxy pixels.
        image_wh: (B, 2) image width and height in pixels (for two photos placed side by side, the
            canvas size).

    Returns:
        (B, 12) float32: top-left x, y and w, h of each box divided by image width/height; the
        centre offset of a from b in units of a's width/height; log width ratio; IoU of the boxes.
    """
    wh = image_wh.to(box_a.dtype)
    scale = torch.cat([wh, wh], dim=1)
    a, b = box_a / scale, box_b / scale
    wa, ha = (a[:, 2] - a[:, 0]).clamp_min(1e-6), (a[:, 3] - a[:, 1]).clamp_min(1e-6)
    wb, hb = (b[:, 2] - b[:, 0]).clamp_min(1e-6), (b[:, 3] - b[:, 1]).clamp_min(1e-6)
    dx = ((a[:, 0] + a[:, 2]) - (b[:, 0] + b[:, 2])) / 2 / wa
    dy = ((a[:, 1] + a[:, 3]) - (b[:, 1] + b[:, 3])) / 2 / ha
    iw = (torch.minimum(a[:, 2], b[:, 2]) - torch.maximum(a[:, 0], b[:, 0])).clamp_min(0)
    ih = (torch.minimum(a[:, 3], b[:, 3]) - torch.maximum(a[:, 1], b[:, 1])).clamp_min(0)
    inter = iw * ih
    iou = inter / (wa * ha + wb * hb - inter).clamp_min(1e-12)
    return torch.stack([a[:, 0], a[:, 1], wa, ha, b[:, 0], b[:, 1], wb, hb, dx, dy,
                        torch.log(wa / wb), iou], dim=1)


class RelationHead(nn.Module):
    """h(e_a, e_b, cue_ab) -> 8 logits: concat -> 256-d joint feature -> 8 binary classifiers."""

    def __init__(self, *, embed_dim: int, cue_dim: int = CUE_DIM, hidden: int = 256,
                 num_traits: int = len(TRAITS), drop_rate: float = 0.2) -> None:
        super().__init__()
        self.cue_norm = nn.Linear(cue_dim, 32)
        self.joint = nn.Sequential(nn.Linear(2 * embed_dim + 32, hidden), nn.GELU(), nn.Dropout(drop_rate))
        self.classifier = nn.Linear(hidden, num_traits)

    def forward(self, e_a: torch.Tensor, e_b: torch.Tensor, cue: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.joint(torch.cat([e_a, e_b, torch.relu(self.cue_norm(cue))], dim=1)))


class SiameseRelationNet(nn.Module):
    """Shared ``branch`` (an :class:`~fdin.models.expression.ExpressionAttributeNet`) + ``relation_head``.

    Args:
        branch: module with ``forward(x)['embedding']`` (B, E).
        relation_head: :class:`RelationHead`.
        symmetric: (8,) bool per trait; symmetric traits average both orders (exact swap invariance).
    """

    def __init__(self, *, branch: nn.Module, relation_head: nn.Module,
                 traits: tuple[str, ...] = TRAITS, symmetric_traits: tuple[str, ...] = SYMMETRIC_TRAITS) -> None:
        super().__init__()
        self.branch = branch
        self.relation_head = relation_head
        self.traits = tuple(traits)
        self.symmetric_traits = tuple(t for t in self.traits if t in symmetric_traits)
        mask = torch.tensor([t in symmetric_traits for t in self.traits])
        self.register_buffer("symmetric_mask", mask, persistent=False)

    def forward_from_embeddings(self, e_a: torch.Tensor, e_b: torch.Tensor, box_a: torch.Tensor,
                                box_b: torch.Tensor, image_wh: torch.Tensor) -> torch.Tensor:
        """(B, E) embeddings of both faces + boxes -> (B, 8) trait logits."""
        ab = self.relation_head(e_a, e_b, spatial_cue(box_a, box_b, image_wh))
        ba = self.relation_head(e_b, e_a, spatial_cue(box_b, box_a, image_wh))
        return torch.where(self.symmetric_mask, (ab + ba) / 2, ab)

    def forward(self, face_a: torch.Tensor, face_b: torch.Tensor, box_a: torch.Tensor, box_b: torch.Tensor,
                image_wh: torch.Tensor) -> torch.Tensor:
        emb = self.branch(torch.cat([face_a, face_b]))["embedding"]
        e_a, e_b = emb[: len(face_a)], emb[len(face_a):]
        return self.forward_from_embeddings(e_a, e_b, box_a, box_b, image_wh)


@register_model("siamese_relation_net")
def siamese_relation_net(*, branch_architecture: str = "expression_mnv3s",
                         branch_args: dict[str, Any] | None = None, hidden: int = 256,
                         drop_rate: float = 0.2) -> SiameseRelationNet:
    """Branch built by name from the registry (weights come from the relation checkpoint)."""
    from fdin.models.registry import create_model

    branch = create_model(branch_architecture, **(branch_args or {}))
    embed_dim = branch.heads["expression"].in_features
    head = RelationHead(embed_dim=embed_dim, hidden=hidden, drop_rate=drop_rate)
    return SiameseRelationNet(branch=branch, relation_head=head)


__all__ = [
    "CUE_DIM",
    "CUE_NAMES",
    "SYMMETRIC_TRAITS",
    "TRAITS",
    "RelationHead",
    "SiameseRelationNet",
    "spatial_cue",
]

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

Two branches share :class:`SiameseRelationNet`:

* ``siamese_relation_features`` (the shipped model, ``weights/relation``): the branch is
  :class:`FaceFeatureBranch` on each face's **real** features, computed outside the network by
  :func:`fdin.relate.face_features`: the FER2013 mini-Xception's 128-d pooled embedding
  (``weights/expression-fer2013``, frozen) and the appearance model's apparent gender probability and
  age plus the detector's head pose (:data:`ATTRIBUTE_NAMES`). Inputs ``face_a``/``face_b``: (B, 133).
* ``siamese_relation_net`` (the papers' end-to-end form, for training on real relation data): the
  branch is the image expression/attribute network; ``face_a``/``face_b`` (B, 3, S, S) float RGB in
  [0, 1] aligned crops.

``box_a``/``box_b`` (B, 4) xyxy pixels; ``image_wh`` (B, 2) pixels. Output: (B, 8) logits in
:data:`TRAITS` order.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fdin.labels import SYMMETRIC_TRAITS, TRAITS
from fdin.models.registry import register_model

#: The per-face attributes appended to the expression embedding, and how each is scaled.
ATTRIBUTE_NAMES = ("p_female", "age_years/50", "yaw_deg/45", "pitch_deg/45", "roll_deg/45")
EXPRESSION_EMBEDDING_DIM = 128
FACE_FEATURE_DIM = EXPRESSION_EMBEDDING_DIM + len(ATTRIBUTE_NAMES)
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


class FaceFeatureBranch(nn.Module):
    """The shared branch on real per-face features: (B, D) -> ``{"embedding": (B, E)}`` L2-normalised.

    The expression embedding is L2-normalised first (its scale varies with the crop), the attributes
    are used as given (already scaled, :data:`ATTRIBUTE_NAMES`); then Linear -> GELU -> Linear."""

    def __init__(self, *, in_dim: int = FACE_FEATURE_DIM, expression_dim: int = EXPRESSION_EMBEDDING_DIM,
                 embed_dim: int = 64, drop_rate: float = 0.1) -> None:
        super().__init__()
        self.in_dim, self.expression_dim, self.embed_dim = in_dim, expression_dim, embed_dim
        self.mlp = nn.Sequential(nn.Linear(in_dim, 2 * embed_dim), nn.GELU(), nn.Dropout(drop_rate),
                                 nn.Linear(2 * embed_dim, embed_dim))

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        expression = F.normalize(features[:, : self.expression_dim], dim=1)
        x = torch.cat([expression, features[:, self.expression_dim:]], dim=1)
        return {"embedding": F.normalize(self.mlp(x), dim=1)}


class SiameseRelationNet(nn.Module):
    """Shared ``branch`` (:class:`FaceFeatureBranch` or an image
    :class:`~fdin.models.expression.ExpressionAttributeNet`) + ``relation_head``.

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


@register_model("siamese_relation_features")
def siamese_relation_features(*, in_dim: int = FACE_FEATURE_DIM, expression_dim: int = EXPRESSION_EMBEDDING_DIM,
                              embed_dim: int = 64, hidden: int = 256, drop_rate: float = 0.2) -> SiameseRelationNet:
    """The shipped relation model: :class:`FaceFeatureBranch` on real per-face features + the head."""
    branch = FaceFeatureBranch(in_dim=in_dim, expression_dim=expression_dim, embed_dim=embed_dim)
    head = RelationHead(embed_dim=embed_dim, hidden=hidden, drop_rate=drop_rate)
    return SiameseRelationNet(branch=branch, relation_head=head)


__all__ = [
    "ATTRIBUTE_NAMES",
    "CUE_DIM",
    "CUE_NAMES",
    "FACE_FEATURE_DIM",
    "SYMMETRIC_TRAITS",
    "TRAITS",
    "FaceFeatureBranch",
    "RelationHead",
    "SiameseRelationNet",
    "spatial_cue",
]

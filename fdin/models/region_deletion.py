"""Model-agnostic pair attribution by deleting regions from the input (any (B, T, R, C) model).

FDIN's own attribution (:meth:`fdin.models.fdin.FDIN.pair_effects`) replaces a pair's *relational
feature*, which only a model with pair features has. To compare FDIN with models that have none
(the concat and LSTM baselines, the hand-crafted linear models) the same question is asked of the
input instead: *delete* a region by replacing its whole (T, C) trajectory with the same region's
trajectory in a reference training sequence, and read the change of the estimate (p_female or
years). Every model is then measured with the same instrument, as a black box.

Two pair scores come out of the same forward passes (``f`` the estimate, ``x₋S`` the input with the
regions in ``S`` taken from reference ``m``, averaged over the M references):

* ``joint`` ``f(x) − f(x₋ij)``: what deleting both regions costs. It mixes the pair's relation with
  each region's own contribution and with every *other* relation of i or j: if the trait is carried by
  the synchrony of regions a and b, deleting (a, c) breaks that synchrony just as well, so every pair
  touching a or b scores about as high as (a, b) — and for the class whose cue is present, deleting
  (a, c) (synchrony gone: the other class's estimate) even scores *higher* than deleting (a, b) (the
  references' pair: half of them of that class).
* ``interaction`` ``f(x) − f(x₋i) − f(x₋j) + f(x₋ij)`` (the second-order difference, the Harsanyi
  dividend of the pair with the reference as the absent value): what the pair contributes *beyond*
  its two regions alone. It is exactly 0 for a pair whose regions enter the estimate additively
  (a sum of per-region terms), and for (a, c) when the estimate depends on a only through its
  relation with b; it is large for (a, b). A pairwise cue such as a timing offset between two regions
  (the hard setting's second gender pair, :mod:`fdin.synth`) is what separates the two scores, so
  ``interaction`` is the pair attribution the reports rank by; ``joint`` is kept beside it, and
  ``region`` (``f(x) − f(x₋i)``) is what a region alone carries.

Using the *same* reference m for ``x₋i``, ``x₋j`` and ``x₋ij`` makes every term a difference of
four estimates of one reference. Signs: ``joint`` and ``region`` say where the deleted part pushed
the estimate (+ = toward "female" / older); the ``interaction``'s sign says how the two regions
combine (+ = they act together, as complements, − = as substitutes), not a direction: a pair whose
synchrony carries "female" has a positive interaction on inputs of both classes, larger where the
synchrony is present. Like FDIN's own attribution, both scores are relative to the references
(training sequences of every class): on a still face the synchrony cue is *absent* where half the
references have it, so its pair has an effect there too — which is why the noise level is measured
on such no-signal inputs.

Cost: ``1 + M·(R + P)`` forward passes per input (R = 12 regions, P = 66 pairs), batched; measured
with M = 6 on one thread: concat 0.8 s, LSTM 0.06 s, the timing model 0.8 s per input. FDIN run that
way takes 7 s, so it passes :meth:`fdin.models.fdin.FDIN.deletion_estimates` (the same estimates
from its per-region encoding, 0.12 s).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from fdin.regions import NUM_REGIONS, region_pairs


def deletion_masks(num_regions: int = NUM_REGIONS) -> torch.Tensor:
    """(R + P, R) 0/1 rows: each region alone, then each pair of :func:`fdin.regions.region_pairs`."""
    pairs = torch.from_numpy(region_pairs(num_regions))
    single = torch.eye(num_regions)
    pair = torch.zeros(len(pairs), num_regions)
    pair[torch.arange(len(pairs)), pairs[:, 0]] = 1.0
    pair[torch.arange(len(pairs)), pairs[:, 1]] = 1.0
    return torch.cat([single, pair])


def region_deletion_effects(estimate: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                            references: torch.Tensor, *, batch: int = 256,
                            deleted: Callable[..., torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Deletion effects of every region and pair of ``x`` (B, T, R, C) against ``references`` (M, T, R, C).

    ``estimate``: (N, T, R, C) → (N,) the estimate users read (call it in eval mode, without gradients).
    Returns ``region`` (B, R), ``joint`` (B, P) and ``interaction`` (B, P) in the estimate's units,
    each averaged over the M references (module docstring); + = the region / pair pushed the estimate
    up (toward "female" / older). ``batch``: sequences per forward pass. ``deleted``: optionally a
    faster exact equivalent of splicing and calling ``estimate`` — ``deleted(x, references, masks)``
    → (B, V, M) for the (V, R) masks of :func:`deletion_masks`
    (:meth:`fdin.models.fdin.FDIN.deletion_estimates`).
    """
    b, _, r, _ = x.shape
    masks = deletion_masks(r).to(x.dtype)  # (V, R), V = R + P
    v, m = masks.shape[0], references.shape[0]
    sel = masks[None, :, None, None, :, None]  # (1, V, 1, 1, R, 1) over (B, V, M, T, R, C)
    full = torch.cat([estimate(x[k:k + batch]) for k in range(0, b, batch)])  # (B,)
    removed = torch.empty(b, v, m, dtype=full.dtype)
    step = max(1, batch // (v * m))
    for k in range(0, b, step):
        xs = x[k:k + step, None, None]  # (b', 1, 1, T, R, C)
        if deleted is not None:
            removed[k:k + step] = deleted(x[k:k + step], references, masks)
            continue
        variants = (xs * (1 - sel) + references[None, None] * sel).flatten(0, 2)  # (b'·V·M, T, R, C)
        out = torch.cat([estimate(variants[i:i + batch]) for i in range(0, len(variants), batch)])
        removed[k:k + step] = out.reshape(-1, v, m)
    removed = removed.mean(-1)  # (B, V): mean over references of f(x₋S)
    single, pair = removed[:, :r], removed[:, r:]
    pairs = torch.from_numpy(region_pairs(r))
    return {"region": full[:, None] - single, "joint": full[:, None] - pair,
            "interaction": full[:, None] - single[:, pairs[:, 0]] - single[:, pairs[:, 1]] + pair}


__all__ = ["deletion_masks", "region_deletion_effects"]

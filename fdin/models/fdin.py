"""Facial Dynamics Interpreter Network (after Kim & Ro, ECCV 2018), as reimplemented by fdin.

The paper's *concepts* [P]: a local dynamic encoder per facial region; relational features for
pairs of local dynamics; a learned relational importance per pair; the trait estimated from the
importance-weighted combination of relational features. **All layer choices below are fdin's own**
[D] (the paper's method section was not available; see ``docs/fdin.md``):

* :class:`LocalDynamicsEncoder` (geometry): one temporal CNN shared by all regions over each
  region's (T, C) displacement trajectory plus a learned region embedding. It keeps time
  (features ``h_i(t)``), no pooling inside the encoder.
* :class:`AppearanceEncoder`: a small CNN per region patch per frame, then an LSTM over time
  (the paper's CNN+LSTM idea), emitting per-time-step features.
* :class:`RelationalInterpreter`: ``g`` applied per time step to the symmetric pair feature
  ``[h_i(t) + h_j(t), h_i(t) * h_j(t), |h_i(t) - h_j(t)|]`` of every unordered pair ``i < j``, pooled
  over time (mean and max), with the time-averaged product ``h_i h_j`` and (``fast_correlation=True``,
  what :mod:`train.fdin` trains) the per-channel correlation of the encoder's full-rate first layer
  → ``r_ij``; importance ``e_ij = MLP(r_ij)``, ``a = softmax`` over the
  P = R(R-1)/2 pairs (``relation="importance"``) or ``a_ij = 1/P`` (``relation="uniform"``);
  ``z = Σ a_ij r_ij``.
* :class:`RegionwiseBaseline` (``relation="none"``): each region's pooled features give its own
  prediction and the predictions are averaged, so the output is a sum of per-region terms.
* :class:`TraitHead`: gender → one logit (for "female"); age → mean and log-variance of a Gaussian
  in normalised years (``(age - age_center) / age_scale``), trained with the Gaussian NLL.

Non-relational and hand-crafted comparison models behind the same interface (``importance`` is all
zeros for them; benchmark: ``docs/benchmarks/fdin-synth.md``):

* :class:`ConcatBaseline` (``fdin_concat``): the same encoder; at every time step all regions' features
  are concatenated and passed through one MLP, then pooled over time. Nothing in it is pairwise by
  design, but the MLP can represent interactions between regions (e.g. products of two regions'
  velocities at the same time).
* :class:`SequenceBaseline` (``fdin_lstm``): one LSTM over all regions' normalised velocity channels.
* :class:`PairTimingBaseline` (``fdin_pair_timing``, ``--model timing``): per pair and channel the
  |cross-correlation| peak and its lag over ±0.6 s, and onset differences → a linear model.
* :class:`PairwiseCorrBaseline` (``fdin_pairwise_corr``): fixed, hand-crafted features per pair
  (velocity correlation at lag 0, the largest cross-correlation over lags ±``max_lag`` frames and
  that lag) → standardisation → one linear layer: a logistic regression (gender) or a linear
  regression with a log-variance (age).

**Calibration.** ``temperature`` (gender: the logit is divided by it) and ``std_scale`` (age: the
predicted standard deviation is multiplied by it) are fitted on validation subjects after training
(:mod:`train.fdin`) and stored in the model's ``model_args``, so every consumer (PyTorch, the ONNX
export, :mod:`fdin.analyze`) reads calibrated probabilities and spreads.

Modules take and return batched tensors; :mod:`fdin.analyze` is the numpy-level predictor.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fdin.dynamics import NUM_CHANNELS, DynamicsConfig
from fdin.models.registry import register_model
from fdin.regions import NUM_REGIONS, region_pairs

TARGETS = ("gender", "age")
RELATIONS = ("importance", "uniform", "none", "concat", "lstm", "pairwise_corr", "pair_timing")


class LocalDynamicsEncoder(nn.Module):
    """(B, T, R, C) region trajectories → (B, R, T', D) per-time-step local dynamic features.

    Input transform (``input_mode``), part of the model so training and inference cannot drift:

    * ``"velocity"`` (default): first differences over time, each (sample, region, channel) series
      divided by its own RMS over time (+ ``eps``). The encoder then sees the *shape* of each
      region's motion in time, not its amplitude. Measured on fdin.synth (600 sequences, 3 folds):
      with raw displacements every variant stayed at chance for 10+ epochs; with normalised
      velocities the full model reached ~0.97 held-out accuracy in 8 epochs.
    * ``"displacement"``: raw displacements times ``input_scale``.
    """

    def __init__(self, *, in_channels: int = NUM_CHANNELS, num_regions: int = NUM_REGIONS, dim: int = 32,
                 kernel_size: int = 5, num_layers: int = 3, stride: int = 2, num_strided: int = 2,
                 drop_rate: float = 0.1, input_mode: str = "velocity", input_scale: float = 30.0,
                 eps: float = 1e-3) -> None:
        super().__init__()
        if input_mode not in ("velocity", "displacement"):
            raise ValueError(f"input_mode must be 'velocity' or 'displacement', got {input_mode!r}")
        self.num_regions, self.dim, self.input_scale = num_regions, dim, input_scale
        self.input_mode, self.eps = input_mode, eps
        self.input_proj = nn.Conv1d(in_channels, dim, kernel_size, padding=kernel_size // 2)
        self.region_embed = nn.Parameter(torch.zeros(num_regions, dim))
        nn.init.normal_(self.region_embed, std=0.1)
        layers: list[nn.Module] = []
        for k in range(num_layers - 1):
            layers += [nn.BatchNorm1d(dim), nn.GELU(), nn.Dropout(drop_rate),
                       nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2,
                                 stride=stride if k < num_strided else 1)]
        self.body = nn.Sequential(*layers)
        self.norm = nn.BatchNorm1d(dim)

    def transform_input(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, R, C) displacements → the encoder's input series, same shape."""
        if self.input_mode == "displacement":
            return x * self.input_scale
        v = torch.diff(x, dim=1, prepend=x[:, :1])
        return v / (v.pow(2).mean(dim=1, keepdim=True).sqrt() + self.eps)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, R, C) → ``(h (B, R, T', D), fast (B, R, D, T))``: the local dynamic features and the
        first layer's full-rate output (before the strided layers), for :class:`RelationalInterpreter`'s
        full-rate pair correlation."""
        b, t, r, c = x.shape
        x = self.transform_input(x).permute(0, 2, 3, 1).reshape(b * r, c, t)  # (B*R, C, T)
        fast = self.input_proj(x).reshape(b, r, self.dim, t)
        h = self.norm(self.body((fast + self.region_embed[None, :, :, None]).reshape(b * r, self.dim, t)))
        return h.reshape(b, r, self.dim, -1).transpose(2, 3), fast  # (B, R, T', D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)[0]


class AppearanceEncoder(nn.Module):
    """(B, T, R, 3, S, S) uint8/float region patches → (B, R, T, D) via CNN per patch + LSTM."""

    def __init__(self, *, num_regions: int = NUM_REGIONS, dim: int = 32, patch_size: int = 32,
                 width: int = 16, drop_rate: float = 0.1) -> None:
        super().__init__()
        self.num_regions, self.dim, self.patch_size = num_regions, dim, patch_size
        self.register_buffer("pixel_mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor([0.25, 0.25, 0.25]).view(1, 3, 1, 1), persistent=False)
        self.cnn = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(2 * width, dim, 3, stride=2, padding=1), nn.GELU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(drop_rate),
        )
        self.region_embed = nn.Parameter(torch.zeros(num_regions, dim))
        nn.init.normal_(self.region_embed, std=0.1)
        self.lstm = nn.LSTM(dim, dim, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        b, t, r = patches.shape[:3]
        x = patches.reshape(b * t * r, *patches.shape[3:]).float()
        if patches.dtype == torch.uint8:
            x = x / 255.0
        x = (x - self.pixel_mean) / self.pixel_std
        f = self.cnn(x).reshape(b, t, r, self.dim).permute(0, 2, 1, 3) + self.region_embed[None, :, None]
        h, _ = self.lstm(f.reshape(b * r, t, self.dim))
        return self.norm(h.reshape(b, r, t, self.dim))


class RelationalInterpreter(nn.Module):
    """(B, R, T, D) local features → ``(z (B, E), pair_importance (B, P))``.

    ``relation="importance"``: softmax over pairs of a learned score; ``"uniform"``: 1/P each.
    Pair order is :func:`fdin.regions.region_pairs` (``i < j``, row-major).
    """

    def __init__(self, *, dim: int = 32, rel_dim: int = 32, num_regions: int = NUM_REGIONS,
                 relation: str = "importance", drop_rate: float = 0.1, rel_norm: bool = False,
                 fast_dim: int = 0) -> None:
        super().__init__()
        self.fast_dim = fast_dim
        if relation not in ("importance", "uniform"):
            raise ValueError(f"relation must be 'importance' or 'uniform', got {relation!r}")
        self.relation = relation
        self.register_buffer("pairs", torch.from_numpy(region_pairs(num_regions)), persistent=False)
        self.g = nn.Sequential(nn.Linear(3 * dim, rel_dim), nn.GELU(), nn.Linear(rel_dim, rel_dim), nn.GELU())
        self.pool_proj = nn.Sequential(nn.Dropout(drop_rate), nn.Linear(2 * rel_dim + dim + fast_dim, rel_dim),
                                       nn.GELU())
        self.rel_norm = nn.BatchNorm1d(rel_dim) if rel_norm else None
        self.score = (nn.Sequential(nn.Linear(rel_dim, rel_dim), nn.Tanh(), nn.Linear(rel_dim, 1))
                      if relation == "importance" else None)
        self.out_dim = rel_dim

    def relational_features(self, h: torch.Tensor, fast: torch.Tensor | None = None) -> torch.Tensor:
        """(B, R, T, D) local features (+ the encoder's full-rate (B, R, D, T_full) features when it
        has them) → (B, P, E) pooled relational features ``r_ij``."""
        i, j = self.pairs[:, 0], self.pairs[:, 1]
        if self.fast_dim and fast is None:
            raise ValueError("this interpreter needs the encoder's full-rate features")
        return self.features_of(h[:, i], h[:, j], *((fast[:, i], fast[:, j]) if self.fast_dim else ()))

    def features_of(self, hi: torch.Tensor, hj: torch.Tensor, fi: torch.Tensor | None = None,
                    fj: torch.Tensor | None = None) -> torch.Tensor:
        """The pooled relational feature (..., E) of region features ``hi``, ``hj`` (..., T, D) (and full-rate
        features ``fi``, ``fj`` (..., D, T_full)) with any leading shape: every pair is computed alone."""
        rel = self.g(torch.cat([hi + hj, hi * hj, (hi - hj).abs()], dim=-1))  # (..., T, E)
        # + direct second-order terms: the time-average of h_i(t) * h_j(t) (a covariance of the two
        # regions' local dynamics) and, at the full frame rate, the per-channel correlation over time
        # of the encoder's first layer. The strided layers sample at a quarter of the frame rate, which
        # at some initialisations hides fast synchrony (tremor) from the pooled features and left
        # training at chance; the full-rate correlation separates it from the first step (measured
        # on fdin.synth, docs/benchmarks/fdin-synth.md)
        terms = [rel.mean(dim=-2), rel.amax(dim=-2), (hi * hj).mean(dim=-2)]
        if self.fast_dim:
            terms.append((self._standardise(fi) * self._standardise(fj)).mean(dim=-1))
        pooled = self.pool_proj(torch.cat(terms, dim=-1))  # (..., E)
        if self.rel_norm is not None:  # statistics per channel over all pairs of the batch
            pooled = self.rel_norm(pooled.reshape(-1, pooled.shape[-1])).reshape(pooled.shape)
        return pooled

    @staticmethod
    def _standardise(f: torch.Tensor) -> torch.Tensor:
        """Full-rate features (..., D, T) centred and scaled over time, for their correlation."""
        fc = f - f.mean(dim=-1, keepdim=True)
        # (+ 1e-6 inside the root: a still face gives constant features, and sqrt'(0) is infinite)
        return fc / ((fc.pow(2).mean(dim=-1, keepdim=True) + 1e-6).sqrt() + 1e-3)

    def pair_correlation(self, fast: torch.Tensor) -> torch.Tensor:
        """(B, R, D, T) full-rate features → (B, P, D): per-channel correlation over time of every pair."""
        fc = self._standardise(fast)
        return (fc[:, self.pairs[:, 0]] * fc[:, self.pairs[:, 1]]).mean(dim=-1)

    def scores(self, h: torch.Tensor, fast: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, R, T, D) → ``(r (B, P, E), importance logits (B, P))`` (zeros for ``"uniform"``)."""
        r = self.relational_features(h, fast)
        logits = self.score(r).squeeze(-1) if self.score is not None else r.new_zeros(r.shape[:2])
        return r, logits

    @staticmethod
    def combine(r: torch.Tensor, logits: torch.Tensor,
                pair_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``z = Σ a_ij r_ij`` with ``a = softmax(logits)`` over the pairs kept by ``pair_mask``.

        ``pair_mask`` (B, P) or (P,) of 0/1 keeps only the pairs marked 1 (the importance is
        renormalised over them): the deletion/insertion tests of importance faithfulness.
        """
        if pair_mask is not None:
            logits = logits.masked_fill(pair_mask.expand_as(logits) <= 0, float("-inf"))
        a = torch.softmax(logits, dim=-1)
        return (a.unsqueeze(-1) * r).sum(1), a

    def forward(self, h: torch.Tensor, pair_mask: torch.Tensor | None = None,
                fast: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.combine(*self.scores(h, fast), pair_mask)


class TraitHead(nn.Module):
    """(B, E) → (B, 1) gender logit, or (B, 2) age ``[mean, log_variance]`` in normalised units."""

    def __init__(self, *, in_dim: int, target: str, hidden: int = 32, drop_rate: float = 0.1) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Dropout(drop_rate), nn.Linear(in_dim, hidden), nn.GELU(),
                                 nn.Linear(hidden, 1 if target == "gender" else 2))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.mlp(z)


class RegionwiseBaseline(nn.Module):
    """Non-relational control: per-region pooled features → per-region outputs → mean over regions."""

    def __init__(self, *, dim: int, head: TraitHead) -> None:
        super().__init__()
        self.pool_proj = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU())
        self.head = head

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, R, T, D) → (mean output (B, K), per-region outputs (B, R, K))."""
        pooled = self.pool_proj(torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=-1))  # (B, R, D)
        per_region = self.head(pooled)
        return per_region.mean(dim=1), per_region


class VelocityInput(nn.Module):
    """(B, T, R, C) displacements → (B, R, T, C) RMS-normalised velocities (no parameters).

    The same input transform as :class:`LocalDynamicsEncoder` (``input_mode="velocity"``), for the
    models that do not use the temporal CNN.
    """

    def __init__(self, *, in_channels: int = NUM_CHANNELS, eps: float = 1e-3) -> None:
        super().__init__()
        self.in_channels, self.eps = in_channels, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = torch.cat([torch.zeros_like(x[:, :1]), x[:, 1:] - x[:, :-1]], dim=1)
        v = v / (v.pow(2).mean(dim=1, keepdim=True).sqrt() + self.eps)
        return v.permute(0, 2, 1, 3)


class ConcatBaseline(nn.Module):
    """(B, R, T, D) encoder features → all regions concatenated per time step → MLP → pooled → head."""

    def __init__(self, *, dim: int, num_regions: int = NUM_REGIONS, hidden: int = 64, head: TraitHead,
                 drop_rate: float = 0.1) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Dropout(drop_rate), nn.Linear(num_regions * dim, hidden), nn.GELU(),
                                 nn.Linear(hidden, hidden), nn.GELU())
        self.pool_proj = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.GELU())
        self.head = head

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, None]:
        b, r, t, d = h.shape
        u = self.mlp(h.permute(0, 2, 1, 3).reshape(b, t, r * d))  # (B, T, H)
        return self.head(self.pool_proj(torch.cat([u.mean(1), u.amax(1)], dim=-1))), None


class SequenceBaseline(nn.Module):
    """(B, R, T, C) normalised velocities → one LSTM over the R·C channels → [last, mean] → head."""

    def __init__(self, *, in_channels: int = NUM_CHANNELS, num_regions: int = NUM_REGIONS, hidden: int = 48,
                 head: TraitHead) -> None:
        super().__init__()
        self.lstm = nn.LSTM(num_regions * in_channels, hidden, batch_first=True)
        self.pool_proj = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.GELU())
        self.head = head

    def forward(self, v: torch.Tensor) -> tuple[torch.Tensor, None]:
        b, r, t, c = v.shape
        u, _ = self.lstm(v.permute(0, 2, 1, 3).reshape(b, t, r * c))
        return self.head(self.pool_proj(torch.cat([u[:, -1], u.mean(1)], dim=-1))), None


class PairwiseCorrBaseline(nn.Module):
    """Hand-crafted pairwise features + a linear model (logistic regression for gender).

    Per unordered pair (i, j) and channel c of the (B, R, T, C) normalised velocities: the correlation
    at lag 0, the largest correlation over lags −L..L and that lag (frames / L);
    averaged over channels → (B, P, 3), flattened, standardised (batch statistics in training, running
    statistics at inference), one linear layer.
    """

    def __init__(self, *, num_regions: int = NUM_REGIONS, max_lag: int = 8, target: str = "gender") -> None:
        super().__init__()
        self.max_lag = max_lag
        self.register_buffer("pairs", torch.from_numpy(region_pairs(num_regions)), persistent=False)
        n_feat = 3 * len(region_pairs(num_regions))
        self.standardise = nn.BatchNorm1d(n_feat, affine=False)
        self.linear = nn.Linear(n_feat, 1 if target == "gender" else 2)

    def features(self, v: torch.Tensor) -> torch.Tensor:
        """(B, R, T, C) → (B, P, 3): [corr at lag 0, max corr over lags, its lag / max_lag (> 0 when
        region j follows region i)]."""
        v = v - v.mean(dim=2, keepdim=True)
        v = v / (v.pow(2).mean(dim=2, keepdim=True).sqrt() + 1e-6)
        vi, vj = v[:, self.pairs[:, 0]], v[:, self.pairs[:, 1]]  # (B, P, T, C)
        t, lags = v.shape[2], range(-self.max_lag, self.max_lag + 1)
        cc = torch.stack([(vi[:, :, max(0, k):t + min(0, k)] * vj[:, :, max(0, -k):t - max(0, k)]).sum(2) / t
                          for k in lags], dim=-1).mean(dim=2)  # (B, P, L)
        best, arg = cc.max(dim=-1)
        # lag > 0: region j follows region i
        return torch.stack([cc[..., self.max_lag], best, (self.max_lag - arg.to(cc.dtype)) / self.max_lag], -1)

    def forward(self, v: torch.Tensor) -> tuple[torch.Tensor, None]:
        f = self.features(v).flatten(1)
        return self.linear(self.standardise(f)), None


class PairTimingBaseline(nn.Module):
    """The hand-crafted timing model a reviewer would write, + a linear model (logistic for gender).

    From the (B, T, R, C) displacements at the model rate (25/s): per region and channel the velocity,
    normalised by its RMS; per unordered pair (i, j) and **per channel** (no averaging of signed
    correlations across channels, which can cancel) the peak of the *absolute* cross-correlation over
    lags −L..L frames (``max_lag`` = 15 = 0.6 s, beyond the generator's 0.4 s age lag) and that lag
    (s, > 0 when j follows i); and the difference of the two regions' onsets (first frame at which
    the displacement magnitude reaches 30 % of its peak, s). ``P · (2C + 1)`` features, standardised,
    one linear layer, fitted to convergence by :func:`train.fdin.fit_linear` (an L2 grid chosen on
    validation subjects).
    """

    def __init__(self, *, num_regions: int = NUM_REGIONS, in_channels: int = NUM_CHANNELS, max_lag: int = 15,
                 fps: float = 25.0, target: str = "gender", eps: float = 1e-3) -> None:
        super().__init__()
        self.max_lag, self.fps, self.eps = max_lag, fps, eps
        self.register_buffer("pairs", torch.from_numpy(region_pairs(num_regions)), persistent=False)
        n_feat = len(region_pairs(num_regions)) * (2 * in_channels + 1)
        self.standardise = nn.BatchNorm1d(n_feat, affine=False)
        self.linear = nn.Linear(n_feat, 1 if target == "gender" else 2)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, R, C) displacements → (B, P, 2C + 1): per channel |xcorr| peak, its lag (s); onset difference (s)."""
        v = torch.cat([torch.zeros_like(x[:, :1]), x[:, 1:] - x[:, :-1]], dim=1).permute(0, 2, 1, 3)  # (B, R, T, C)
        v = v - v.mean(dim=2, keepdim=True)
        v = v / (v.pow(2).mean(dim=2, keepdim=True).sqrt() + self.eps)
        vi, vj = v[:, self.pairs[:, 0]], v[:, self.pairs[:, 1]]  # (B, P, T, C)
        t = v.shape[2]
        cc = torch.stack([(vi[:, :, max(0, -k):t - max(0, k)] * vj[:, :, max(0, k):t + min(0, k)]).sum(2) / t
                          for k in range(-self.max_lag, self.max_lag + 1)], dim=-1)  # (B, P, C, L)
        best, arg = cc.abs().max(dim=-1)
        lag = (arg.to(cc.dtype) - self.max_lag) / self.fps  # > 0: j follows i
        mag = x[..., 2]  # (B, T, R) displacement magnitude
        reached = mag >= 0.3 * mag.amax(dim=1, keepdim=True)
        onset = reached.float().argmax(dim=1).to(x.dtype) / self.fps  # (B, R)
        d_onset = onset[:, self.pairs[:, 1]] - onset[:, self.pairs[:, 0]]
        return torch.cat([best, lag, d_onset.unsqueeze(-1)], dim=-1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.linear(self.standardise(self.features(x).flatten(1))), None


class FDIN(nn.Module):
    """Encoder + interpreter (or the region-wise baseline) + trait head.

    ``forward(x)`` with x (B, T, R, C) trajectories (or (B, T, R, 3, S, S) patches for the appearance
    encoder) returns a dict:

    * ``output``: (B, 1) gender logit, or (B, 2) age ``[mean, log_var]`` in normalised units;
    * ``importance``: (B, R, R) symmetric, zero diagonal, upper triangle sums to 1 (full matrix to 2);
      all zeros for the baseline, which has no relations;
    * ``pair_importance``: (B, P) over :func:`fdin.regions.region_pairs`;
    * for age also ``age_years`` and ``age_std_years`` (B,);
    * with an attribution reference (:meth:`set_attribution`, ``attribution_noise`` in the model
      args) also ``pair_effect`` (B, P): :meth:`pair_effects`, the faithful per-estimate attribution.
    """

    def __init__(self, *, encoder: nn.Module, head: TraitHead | None, target: str,
                 interpreter: RelationalInterpreter | None = None, baseline: nn.Module | None = None,
                 num_regions: int = NUM_REGIONS, age_center: float = 42.0, age_scale: float = 20.0,
                 temperature: float = 1.0, std_scale: float = 1.0,
                 attribution_noise: float | None = None, attribution_references: int = 32) -> None:
        super().__init__()
        if (interpreter is None) == (baseline is None) or (interpreter is not None and head is None):
            raise ValueError("give an interpreter and a head, or a baseline (which owns its head)")
        self.encoder, self.interpreter, self.baseline, self.head = encoder, interpreter, baseline, head
        self.target, self.num_regions = target, num_regions
        self.register_buffer("age_center", torch.tensor(float(age_center)))
        self.register_buffer("age_scale", torch.tensor(float(age_scale)))
        self.register_buffer("pairs", torch.from_numpy(region_pairs(num_regions)), persistent=False)
        # calibration constants (from model_args, not the state dict, so older weights still load)
        self.register_buffer("temperature", torch.tensor(float(temperature)), persistent=False)
        self.register_buffer("std_scale", torch.tensor(float(std_scale)), persistent=False)
        self.attribution_noise: float | None = None
        if attribution_noise is not None and interpreter is not None:
            # filled from the weights file (train.fdin computes it with set_attribution)
            self.register_buffer("pair_reference", torch.zeros(int(attribution_references), self.pairs.shape[0],
                                                                interpreter.out_dim))
            self.attribution_noise = float(attribution_noise)

    @property
    def has_attribution(self) -> bool:
        """Whether :meth:`pair_effects` can run (a reference relational feature per pair is known)."""
        return self.attribution_noise is not None and hasattr(self, "pair_reference")

    def set_attribution(self, reference: torch.Tensor, noise: float) -> None:
        """Store the reference relational features (M, P, E) (M training sequences' features of every
        pair) and the noise level of the effects (output units, see :meth:`pair_effects`)."""
        if self.interpreter is None:
            raise ValueError("only relational models have pair relational features")
        reference = reference.detach().to(self.pairs.device, torch.float32).reshape(-1, self.pairs.shape[0],
                                                                                     self.interpreter.out_dim)
        if hasattr(self, "pair_reference") and self.pair_reference.shape == reference.shape:
            self.pair_reference.copy_(reference)
        else:
            if hasattr(self, "pair_reference"):
                del self._buffers["pair_reference"]
            self.register_buffer("pair_reference", reference.clone())
        self.attribution_noise = float(noise)

    def estimate(self, calibrated: torch.Tensor) -> torch.Tensor:
        """Calibrated output (..., K) → the estimate users read (...): p(female), or age in years."""
        if self.target == "gender":
            return torch.sigmoid(calibrated[..., 0])
        return calibrated[..., 0] * self.age_scale + self.age_center

    def output_from_features(self, r: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """(B, P, E) relational features and (B, P) importance logits → (B, K) calibrated output."""
        return self.calibrated(self.head(self.interpreter.combine(r, logits)[0]))

    def pair_effects(self, r: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Exact leave-one-pair-out attribution: (B, P, E) relational features and (B, P) importance
        logits → (B, P) ``estimate(all pairs) − estimate(pair p removed)``.

        *Removing* pair p replaces its relational feature ``r_p`` by the same pair's feature in each
        of the M reference sequences (``pair_reference`` (M, P, E): training sequences) everywhere the
        model reads it — in ``z`` and in its own importance logit (renormalised by the softmax) — and
        averages the M estimates: the estimate the model would give if this pair were like a typical
        training sequence's, every other pair untouched (the interventional expectation of
        KernelSHAP-style attribution; a single mean feature instead reads as one class to a
        gate-like importance, so it attributed only that class's estimates, docs/fdin.md). M extra
        head passes per pair, batched. Units: gender p(female) (+ = this pair pushed the estimate
        toward "female"); age years (+ = toward older).
        """
        ref = self.pair_reference.to(r.dtype)  # (M, P, E)
        if ref.dim() == 2:
            ref = ref[None]
        ref_logits = self.interpreter.score(ref).squeeze(-1) if self.interpreter.score is not None \
            else ref.new_zeros(ref.shape[:2])  # (M, P)
        shift = torch.maximum(logits.amax(dim=1, keepdim=True), ref_logits.amax().reshape(1, 1))  # (B, 1)
        w = torch.exp(logits - shift)  # (B, P)
        w_ref = torch.exp(ref_logits.T[None] - shift[:, :, None])  # (B, P, M)
        num = (w.unsqueeze(-1) * r).sum(1)  # (B, E)
        den = w.sum(1, keepdim=True)  # (B, 1)
        keep = num[:, None] - w.unsqueeze(-1) * r  # (B, P, E): every pair but p
        num_removed = keep[:, :, None] + w_ref.unsqueeze(-1) * ref.transpose(0, 1)[None]  # (B, P, M, E)
        den_removed = (den - w).unsqueeze(-1) + w_ref  # (B, P, M)
        z_removed = num_removed / den_removed.unsqueeze(-1)
        b, p, m, e = z_removed.shape
        full = self.estimate(self.calibrated(self.head(num / den)))  # (B,)
        removed = self.estimate(self.calibrated(self.head(z_removed.reshape(b * p * m, e)))).reshape(b, p, m)
        return full[:, None] - removed.mean(-1)

    @property
    def can_delete_regions(self) -> bool:
        """Whether :meth:`deletion_estimates` applies: a relational model on the geometry encoder, which
        encodes every region alone."""
        return self.interpreter is not None and isinstance(self.encoder, LocalDynamicsEncoder)

    def deletion_estimates(self, x: torch.Tensor, references: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """(B, T, R, C) inputs, (M, T, R, C) references, (V, R) 0/1 region masks → (B, V, M): the estimate
        of every input with the masked regions' trajectories taken from every reference.

        The same numbers as ``estimate(forward(spliced input))`` (the input-level deletion attribution,
        :mod:`fdin.models.region_deletion`, ~500 spliced inputs per input) at a small fraction of the
        cost: the geometry encoder encodes each region alone (eval mode), and a pair's relational
        feature depends only on its two regions, so under any deletion a pair's feature is one of four —
        the input's, the reference's, or one region from each (in either order). Those are computed once
        per input and reference and gathered per deleted set. Eval mode only.
        """
        if not self.can_delete_regions or self.training:
            raise ValueError("deletion_estimates needs a relational geometry model in eval mode")
        (hx, fx), (hr, fr) = self._encode(x), self._encode(references)
        r_x, l_x = self.interpreter.scores(hx, fx)  # (B, P, E), (B, P)
        r_r, l_r = self.interpreter.scores(hr, fr)  # (M, P, E), (M, P)
        i, j = self.pairs[:, 0], self.pairs[:, 1]
        masks = masks.to(torch.long)
        source = masks[:, i] + 2 * masks[:, j]  # (V, P): 0 the input's pair, 1 region i deleted, 2 j, 3 both
        columns = torch.arange(len(i))[None]
        m, v = references.shape[0], masks.shape[0]
        out = x.new_empty(x.shape[0], v, m)
        logit = lambda r: self.interpreter.score(r).squeeze(-1) if self.interpreter.score is not None \
            else r.new_zeros(r.shape[:-1])  # noqa: E731
        fast = self.interpreter.fast_dim
        for n in range(x.shape[0]):
            own = lambda t, k, n=n: t[n, k].expand(m, *t[n, k].shape)  # noqa: E731  (M copies of the input's)
            r_i = self.interpreter.features_of(hr[:, i], own(hx, j), *((fr[:, i], own(fx, j)) if fast else ()))
            r_j = self.interpreter.features_of(own(hx, i), hr[:, j], *((own(fx, i), fr[:, j]) if fast else ()))
            r_all = torch.stack([r_x[n].expand_as(r_r), r_i, r_j, r_r])  # (4, M, P, E)
            l_all = torch.stack([l_x[n].expand_as(l_r), logit(r_i), logit(r_j), l_r])  # (4, M, P)
            r = r_all[source, :, columns].permute(2, 0, 1, 3)  # (M, V, P, E)
            logits = l_all[source, :, columns].permute(2, 0, 1)  # (M, V, P)
            z = self.interpreter.combine(r.flatten(0, 1), logits.flatten(0, 1))[0]
            out[n] = self.estimate(self.calibrated(self.head(z))).reshape(m, v).T
        return out

    def set_calibration(self, *, temperature: float | None = None, std_scale: float | None = None) -> None:
        if temperature is not None:
            self.temperature.fill_(float(temperature))
        if std_scale is not None:
            self.std_scale.fill_(float(std_scale))

    @property
    def has_importance(self) -> bool:
        return self.interpreter is not None

    def calibrated(self, raw: torch.Tensor) -> torch.Tensor:
        """Head output → calibrated output (gender: logit / temperature; age: log-variance + 2 log s)."""
        if self.target == "gender":
            return raw / self.temperature
        return torch.stack([raw[:, 0], raw[:, 1] + 2 * torch.log(self.std_scale)], dim=1)

    def masked_outputs(self, x: torch.Tensor, masks: list[torch.Tensor]) -> list[torch.Tensor]:
        """Calibrated outputs of ``x`` under each pair mask (B, P) in ``masks``, sharing one encoder
        and relational pass (importance models only)."""
        if self.interpreter is None:
            raise ValueError("this model has no relational importance to mask")
        r, logits = self.interpreter.scores(*self._encode(x))
        return [self.calibrated(self.head(self.interpreter.combine(r, logits, m)[0])) for m in masks]

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The encoder's ``(h, full-rate features or None)``."""
        encode = getattr(self.encoder, "encode", None)
        return encode(x) if encode is not None else (self.encoder(x), None)

    def pairs_to_matrix(self, pair_values: torch.Tensor) -> torch.Tensor:
        """(B, P) → (B, R, R) symmetric with zero diagonal."""
        m = pair_values.new_zeros(pair_values.shape[0], self.num_regions, self.num_regions)
        m[:, self.pairs[:, 0], self.pairs[:, 1]] = pair_values
        m[:, self.pairs[:, 1], self.pairs[:, 0]] = pair_values
        return m

    def forward(self, x: torch.Tensor, pair_mask: torch.Tensor | None = None,
                pair_features: bool = False, attribution: bool = True) -> dict[str, torch.Tensor]:
        """``pair_mask``: see :meth:`RelationalInterpreter.forward` (importance models only).

        ``pair_features``: also return ``pair_features`` (B, P, E), every pair's relational feature
        ``r_ij`` (relational models only), for the training recipe's per-pair probes
        (:mod:`train.fdin`). ``attribution=False`` skips ``pair_effect`` (M head passes per pair), for
        callers that only read the output, e.g. the input-level deletion attribution
        (:mod:`fdin.models.region_deletion`), which calls the model ~500 times per input.
        """
        h, fast = self._encode(x)
        out: dict[str, torch.Tensor] = {}
        if self.interpreter is not None:
            r, logits = self.interpreter.scores(h, fast)
            z, a = self.interpreter.combine(r, logits, pair_mask)
            raw = self.head(z)
            if pair_features:
                out["pair_features"] = r
            if pair_mask is None and attribution and self.has_attribution:
                out["pair_effect"] = self.pair_effects(r, logits)
        else:
            raw, per_region = self.baseline(h)
            if per_region is not None:
                out["per_region"] = per_region
            a = h.new_zeros(h.shape[0], self.pairs.shape[0])
        out["output"] = self.calibrated(raw)
        out["pair_importance"] = a
        out["importance"] = self.pairs_to_matrix(a)
        if self.target == "age":
            out["age_years"] = out["output"][:, 0] * self.age_scale + self.age_center
            out["age_std_years"] = torch.exp(0.5 * out["output"][:, 1]) * self.age_scale
        return out


def _create_fdin(*, target: str = "gender", relation: str = "importance", encoder: str = "geometry",
                 in_channels: int = NUM_CHANNELS, dim: int = 32, rel_dim: int = 32, num_layers: int = 3,
                 kernel_size: int = 5, drop_rate: float = 0.1, input_mode: str = "velocity",
                 input_scale: float = 30.0, patch_size: int = 32, rel_norm: bool = False,
                 age_center: float = 42.0, age_scale: float = 20.0, temperature: float = 1.0,
                 std_scale: float = 1.0, fast_correlation: bool = False,
                 attribution_noise: float | None = None, attribution_references: int = 32,
                 dynamics: dict[str, Any] | None = None) -> FDIN:
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    if relation not in RELATIONS:
        raise ValueError(f"relation must be one of {RELATIONS}, got {relation!r}")
    if relation in ("lstm", "pairwise_corr"):
        enc: nn.Module = VelocityInput(in_channels=in_channels)
    elif relation == "pair_timing":
        enc = nn.Identity()  # the timing features need the displacements themselves (onsets)
    elif encoder == "geometry":
        enc = LocalDynamicsEncoder(in_channels=in_channels, dim=dim, kernel_size=kernel_size,
                                   num_layers=num_layers, drop_rate=drop_rate, input_mode=input_mode,
                                   input_scale=input_scale)
    elif encoder == "appearance":
        enc = AppearanceEncoder(dim=dim, patch_size=patch_size, drop_rate=drop_rate)
    else:
        raise ValueError(f"encoder must be 'geometry' or 'appearance', got {encoder!r}")
    common = {"target": target, "age_center": age_center, "age_scale": age_scale, "temperature": temperature,
              "std_scale": std_scale}
    if relation in ("importance", "uniform"):
        interp = RelationalInterpreter(dim=dim, rel_dim=rel_dim, relation=relation, drop_rate=drop_rate,
                                       rel_norm=rel_norm,
                                       fast_dim=dim if fast_correlation and encoder == "geometry" else 0)
        model = FDIN(encoder=enc, head=TraitHead(in_dim=rel_dim, target=target, drop_rate=drop_rate),
                     interpreter=interp, attribution_noise=attribution_noise,
                     attribution_references=attribution_references, **common)
    else:
        if relation == "none":
            baseline: nn.Module = RegionwiseBaseline(
                dim=dim, head=TraitHead(in_dim=dim, target=target, drop_rate=drop_rate))
        elif relation == "concat":
            baseline = ConcatBaseline(dim=dim, head=TraitHead(in_dim=64, target=target, drop_rate=drop_rate),
                                      drop_rate=drop_rate)
        elif relation == "lstm":
            baseline = SequenceBaseline(in_channels=in_channels,
                                        head=TraitHead(in_dim=48, target=target, drop_rate=drop_rate))
        elif relation == "pair_timing":
            baseline = PairTimingBaseline(in_channels=in_channels, target=target,
                                          fps=float((dynamics or {}).get("fps", 25.0)))
        else:
            baseline = PairwiseCorrBaseline(target=target)
        model = FDIN(encoder=enc, head=None, baseline=baseline, **common)
    model.dynamics_config = DynamicsConfig(**(dynamics or {}))
    model.encoder_kind = encoder
    return model


@register_model("fdin")
def fdin(**kwargs: Any) -> FDIN:
    """Full FDIN: relational features with learned importance (geometry encoder by default)."""
    return _create_fdin(**{"relation": "importance", **kwargs})


@register_model("fdin_uniform")
def fdin_uniform(**kwargs: Any) -> FDIN:
    """Ablation: relational features with a fixed uniform importance 1/P."""
    return _create_fdin(**{**kwargs, "relation": "uniform"})


@register_model("fdin_baseline")
def fdin_baseline(**kwargs: Any) -> FDIN:
    """Ablation: no relations; per-region predictions averaged."""
    return _create_fdin(**{**kwargs, "relation": "none"})


@register_model("fdin_appearance")
def fdin_appearance(**kwargs: Any) -> FDIN:
    """Appearance variant: CNN per region patch + LSTM, then the same interpreter."""
    return _create_fdin(**{"relation": "importance", **kwargs, "encoder": "appearance"})


@register_model("fdin_concat")
def fdin_concat(**kwargs: Any) -> FDIN:
    """Comparison: all regions' encodings concatenated per time step into one MLP (no pairs)."""
    return _create_fdin(**{**kwargs, "relation": "concat"})


@register_model("fdin_lstm")
def fdin_lstm(**kwargs: Any) -> FDIN:
    """Comparison: one LSTM over all regions' normalised velocity channels."""
    return _create_fdin(**{**kwargs, "relation": "lstm"})


@register_model("fdin_pairwise_corr")
def fdin_pairwise_corr(**kwargs: Any) -> FDIN:
    """Comparison: hand-crafted pairwise correlation/lag features + a linear (logistic) model."""
    return _create_fdin(**{**kwargs, "relation": "pairwise_corr"})


@register_model("fdin_pair_timing")
def fdin_pair_timing(**kwargs: Any) -> FDIN:
    """Comparison: hand-crafted per-channel |cross-correlation| peak/lag and onset differences per pair
    + a linear (logistic) model."""
    return _create_fdin(**{**kwargs, "relation": "pair_timing"})


#: ``--model`` name of :mod:`train.fdin` → registered architecture (the one list of model choices).
VARIANT_ARCHITECTURE = {"fdin": "fdin", "uniform": "fdin_uniform", "baseline": "fdin_baseline",
                        "concat": "fdin_concat", "lstm": "fdin_lstm", "pairwise-corr": "fdin_pairwise_corr",
                        "timing": "fdin_pair_timing"}

__all__ = [
    "FDIN", "VARIANT_ARCHITECTURE", "AppearanceEncoder", "ConcatBaseline", "LocalDynamicsEncoder",
    "PairTimingBaseline", "PairwiseCorrBaseline", "RegionwiseBaseline", "RelationalInterpreter", "SequenceBaseline",
    "TraitHead", "VelocityInput", "fdin", "fdin_appearance", "fdin_baseline", "fdin_concat", "fdin_lstm",
    "fdin_pair_timing", "fdin_pairwise_corr", "fdin_uniform",
]

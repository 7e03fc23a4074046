"""Synthetic smile sequences with *planted relational structure*, and photo animation.

Everything here is **fdin's own design** [D] for tests, the benchmark (``docs/benchmarks/fdin-synth.md``)
and the shipped demo weights; it is not data from the FDIN paper or from real people.

Generative model of one sequence (canonical units, IOD = 1; see :mod:`fdin.regions`):

* A smile with an onset–apex–offset profile ``s(t)`` (smoothstep rise, hold, smoothstep fall). Each
  region ``r`` follows ``A_r · s(t − δ_r) · (1 + κ·w_r(t))`` along its own displacement pattern
  (:data:`SMILE_PATTERN`): ``δ_r`` is a fine onset offset (σ = :data:`TIMING_SIGMA_S`) and ``w_r`` a
  smooth unit-variance "tremor" process.
* **Planted relation.** For the planted pair ``(a, b)``, ``δ_b = ρ δ_a + √(1−ρ²) ε`` and likewise for
  ``w_b``. Gender: ρ = :data:`COUPLING` for "female", 0 for "male" on :data:`GENDER_PAIR`; each
  region's *own* distribution is the same whatever ρ, so only the pair's synchrony carries gender.
  (Not so for the age timing setting below: there the lag also shifts region ``b``'s onset relative
  to the other regions, so that region alone carries some of the age signal.)
  Age (8–76, uniform like UvA-NEMO's range): see the age settings below.
* **Age settings** (:attr:`SynthOptions.age_signal`): ``"timing"`` (default): on :data:`AGE_PAIR`
  region ``b`` repeats region ``a``'s motion (onset and tremor, ρ = COUPLING) ``AGE_LAG_S · (age − 8)/68``
  seconds later, so age is carried by the *magnitude of a timing offset*; ``"coupling"`` (the original): ρ = COUPLING·(76 − age)/68, synchrony strength only.
* **Harder benchmark** (:data:`HARD`, ``write_dataset(..., options="hard")``), every option
  documented on :class:`SynthOptions`: a weak single-region cue (one region's tremor gain depends on
  the trait), correlated distractor pairs that carry no label, a second relevant pair with a smaller
  weight that carries a purely pairwise *timing offset* (gender: the lag between two coupled
  regions' tremor) or synchrony (age), and per-subject idiosyncratic
  onset offsets that persist across a subject's sequences.
* Nuisance: per-subject identity shape (mean-face perturbation), face size, region amplitudes and
  speed; per-sequence amplitude and speed jitter; smooth head motion (translation, in-plane rotation,
  scale); landmark noise; frame rates 25/30/50 fps. Several sequences per subject (default 3, like
  UvA-NEMO's ~3 per subject), so subject-disjoint folds matter.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fdin.regions import CANONICAL_FACE, REGION_LANDMARKS

GENDER_PAIR = ("eye_left", "mouth_corner_right")
AGE_PAIR = ("chin", "mouth_corner_left")
#: the second, weaker relevant pair of the hard setting (gender: timing offset; age: synchrony)
SECOND_PAIR = {"gender": ("eye_right", "lower_lip"), "age": ("cheek_left", "lower_lip")}
#: (leader, follower) of the second gender pair: the follower's tremor repeats the leader's (the
#: follower is a region no other planted relation writes to)
SECOND_PAIR_GENDER_ORDER = ("lower_lip", "eye_right")
#: the second gender pair's lag ("female") at weight 1 (× :attr:`SynthOptions.second_pair_weight`)
SECOND_GENDER_LAG_S = 0.25
#: the region whose own tremor gain carries a weak cue in the hard setting
CUE_REGION = "upper_lip"
#: candidate distractor pairs (coupled at random, independent of any label) of the hard setting
#: (no region of a relevant pair is in one, so a distractor neither dilutes nor relays a planted signal)
DISTRACTOR_PAIRS = (("upper_lip", "brow_right"), ("cheek_right", "brow_left"), ("upper_lip", "nose_base"),
                    ("brow_left", "nose_base"))
COUPLING = 0.95
AGE_LAG_S = 0.4
TIMING_SIGMA_S = 0.12
TREMOR_GAIN = 0.8
TREMOR_TIME_S = 0.08
AGE_RANGE = (8, 76)
FPS_CHOICES = (25.0, 30.0, 50.0)

#: Apex displacement (canonical IOD units) of each region's landmarks in a smile. Eye corners and
#: the nose bridge/tip (the alignment anchors) do not move.
SMILE_PATTERN: dict[str, dict[int, tuple[float, float]]] = {
    "brow_right": {i: (0.0, 0.02) for i in range(17, 22)},
    "brow_left": {i: (0.0, 0.02) for i in range(22, 27)},
    "eye_right": {37: (0.0, 0.02), 38: (0.0, 0.02), 40: (0.0, -0.05), 41: (0.0, -0.05)},
    "eye_left": {43: (0.0, 0.02), 44: (0.0, 0.02), 46: (0.0, -0.05), 47: (0.0, -0.05)},
    "nose_base": {31: (-0.02, -0.02), 32: (-0.01, -0.01), 34: (0.01, -0.01), 35: (0.02, -0.02)},
    "cheek_right": {1: (-0.01, -0.02), 2: (-0.02, -0.03), 3: (-0.02, -0.03), 4: (-0.02, -0.02), 5: (-0.01, -0.01)},
    "cheek_left": {11: (0.01, -0.01), 12: (0.02, -0.02), 13: (0.02, -0.03), 14: (0.02, -0.03), 15: (0.01, -0.02)},
    "mouth_corner_right": {48: (-0.14, -0.09), 49: (-0.07, -0.06), 59: (-0.08, -0.05), 60: (-0.12, -0.08)},
    "mouth_corner_left": {54: (0.14, -0.09), 53: (0.07, -0.06), 55: (0.08, -0.05), 64: (0.12, -0.08)},
    "upper_lip": {50: (0.0, -0.05), 51: (0.0, -0.05), 52: (0.0, -0.05),
                  61: (0.0, -0.04), 62: (0.0, -0.04), 63: (0.0, -0.04)},
    "lower_lip": {56: (0.0, 0.06), 57: (0.0, 0.07), 58: (0.0, 0.06), 65: (0.0, 0.05), 66: (0.0, 0.05),
                  67: (0.0, 0.05)},
    "chin": {6: (0.0, 0.04), 7: (0.0, 0.05), 8: (0.0, 0.06), 9: (0.0, 0.05), 10: (0.0, 0.04)},
}
_REGION_ORDER = tuple(SMILE_PATTERN)


def _pattern_array(name: str) -> np.ndarray:
    out = np.zeros((68, 2), dtype=np.float64)
    for i, d in SMILE_PATTERN[name].items():
        out[i] = d
    return out


_PATTERNS = np.stack([_pattern_array(n) for n in _REGION_ORDER])  # (R, 68, 2)
assert all(set(p) <= set(REGION_LANDMARKS[n]) for n, p in SMILE_PATTERN.items())


@dataclass(frozen=True)
class SynthOptions:
    """What carries the traits in a generated dataset (``"easy"`` = the defaults, ``"hard"`` = :data:`HARD`).

    Attributes:
        age_signal: ``"timing"`` — age sets the onset lag of :data:`AGE_PAIR` (``AGE_LAG_S`` at age
            76, 0 at 8); ``"coupling"`` — age sets the pair's synchrony (the original setting).
        second_pair_weight: > 0 adds the relevant pair :data:`SECOND_PAIR` with this weight relative
            to the first: gender — a purely pairwise timing cue (the eye_right tremor repeats the
            lower_lip tremor with ρ = COUPLING in both classes, ``weight · 0.25 s`` later for
            "female", in step for "male"; no onset is shifted, so neither region alone carries it),
            age — a synchrony ``COUPLING · weight · (76 − age)/68``.
        region_cue: > 0 multiplies the tremor gain of :data:`CUE_REGION` by ``1 ± region_cue``
            ("female" +, "male" −; age: + at 8 falling linearly to − at 76): a single-region signal.
        distractors: number of :data:`DISTRACTOR_PAIRS` coupled with ρ ~ U(0, COUPLING) per sequence,
            independently of every label.
        subject_timing_s: σ of per-subject, per-region onset offsets fixed for all of a subject's
            sequences (idiosyncratic timing).
    """

    age_signal: str = "timing"
    second_pair_weight: float = 0.0
    region_cue: float = 0.0
    distractors: int = 0
    subject_timing_s: float = 0.0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


EASY = SynthOptions()
HARD = SynthOptions(second_pair_weight=0.5, region_cue=0.25, distractors=3, subject_timing_s=0.06)
PRESETS = {"easy": EASY, "hard": HARD}


def synth_options(options: SynthOptions | str | None) -> SynthOptions:
    """``None``/``"easy"``/``"hard"``/a :class:`SynthOptions` → :class:`SynthOptions`."""
    if isinstance(options, SynthOptions):
        return options
    key = options or "easy"
    if key not in PRESETS:
        raise ValueError(f"synthetic options must be one of {sorted(PRESETS)}, got {options!r}")
    return PRESETS[key]


@dataclass(frozen=True)
class Subject:
    """Per-subject constants (identity and motion style)."""

    subject_id: str
    gender: str  # "female" | "male"
    age: int
    shape: np.ndarray  # (68, 2) canonical identity shape
    iod_px: float
    amplitudes: np.ndarray  # (R,) per-region amplitude multipliers
    speed: float
    timing: np.ndarray | None = None  # (R,) idiosyncratic onset offsets (s), hard setting only


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _smooth_noise(rng: np.random.Generator, n: int, dt: float, tau: float) -> np.ndarray:
    """Unit-variance Gaussian-smoothed white noise of correlation time ``tau`` seconds."""
    from scipy.ndimage import gaussian_filter1d

    w = gaussian_filter1d(rng.standard_normal(n + 64), sigma=max(tau / dt, 0.5), mode="wrap")[32:-32]
    return w / max(float(w.std()), 1e-8)


def make_subject(rng: np.random.Generator, subject_id: str, *, gender: str | None = None,
                 age: int | None = None, timing_s: float = 0.0) -> Subject:
    gender = gender or ("female" if rng.random() < 0.5 else "male")
    age = int(age if age is not None else rng.integers(AGE_RANGE[0], AGE_RANGE[1] + 1))
    # identity: a global aspect/width change plus smooth per-landmark offsets
    aspect = np.array([1.0 + 0.06 * rng.standard_normal(), 1.0 + 0.06 * rng.standard_normal()])
    shape = CANONICAL_FACE.astype(np.float64) * aspect + 0.015 * rng.standard_normal((68, 2))
    iod_px = float(rng.uniform(45, 90))
    amplitudes = np.exp(0.25 * rng.standard_normal(len(_REGION_ORDER)))
    speed = float(np.exp(0.2 * rng.standard_normal()))
    timing = timing_s * rng.standard_normal(len(_REGION_ORDER)) if timing_s > 0 else None
    return Subject(subject_id=subject_id, gender=gender, age=age, shape=shape, iod_px=iod_px,
                   amplitudes=amplitudes, speed=speed, timing=timing)


def _young(subject: Subject) -> float:
    """1 at the youngest age of :data:`AGE_RANGE`, 0 at the oldest."""
    lo, hi = AGE_RANGE
    return (hi - subject.age) / (hi - lo)


def _couplings(subject: Subject, options: SynthOptions = EASY) -> dict[tuple[str, str], float]:
    out = {GENDER_PAIR: COUPLING if subject.gender == "female" else 0.0,
           AGE_PAIR: COUPLING * _young(subject) if options.age_signal == "coupling" else COUPLING}
    if options.second_pair_weight > 0:
        out[SECOND_PAIR["age"]] = COUPLING * options.second_pair_weight * _young(subject)
    return out


def _lags(subject: Subject, options: SynthOptions = EASY) -> dict[tuple[str, str], float]:
    out = {}
    if options.age_signal == "timing":
        out[AGE_PAIR] = AGE_LAG_S * (1 - _young(subject))
    return out


def _second_gender_lag(subject: Subject, options: SynthOptions) -> float:
    """Seconds by which the hard setting's second gender pair's follower lags its leader."""
    return SECOND_GENDER_LAG_S * options.second_pair_weight if subject.gender == "female" else 0.0


def _tremor_gains(subject: Subject, options: SynthOptions = EASY) -> dict[str, float]:
    if options.region_cue <= 0:
        return {}
    sign = (1.0 if subject.gender == "female" else -1.0) + (2 * _young(subject) - 1)
    return {CUE_REGION: 1 + options.region_cue * sign / 2}


def smile_landmarks(rng: np.random.Generator, subject: Subject, *, fps: float = 25.0,
                    head_motion: bool = True, noise_px: float = 0.4, image_size: int = 320,
                    couplings: dict[tuple[str, str], float] | None = None,
                    options: SynthOptions | str | None = None) -> np.ndarray:
    """One synthetic smile of ``subject``: (T, 68, 2) float32 pixel xy in iBUG-68 order at ``fps``.

    ``couplings`` overrides the planted pair couplings (then no timing lags or cues are planted);
    ``options`` chooses the setting (:class:`SynthOptions`, default ``"easy"``).
    """
    options = synth_options(options)
    speed = subject.speed * float(np.exp(0.1 * rng.standard_normal()))
    lead = rng.uniform(0.3, 0.8)
    onset, apex, offset = (rng.uniform(0.4, 1.0) * speed, rng.uniform(0.5, 1.5) * speed,
                           rng.uniform(0.5, 1.2) * speed)
    tail = rng.uniform(0.3, 0.6)
    duration = lead + onset + apex + offset + tail + 0.3
    n = int(duration * fps)
    t = np.arange(n) / fps
    num_r = len(_REGION_ORDER)

    delta = TIMING_SIGMA_S * rng.standard_normal(num_r)
    tremor = np.stack([_smooth_noise(rng, n, 1 / fps, TREMOR_TIME_S) for _ in range(num_r)])
    planted = dict(couplings if couplings is not None else _couplings(subject, options))
    for pair in DISTRACTOR_PAIRS[:options.distractors]:
        planted[pair] = float(rng.uniform(0.0, COUPLING))
    lags = _lags(subject, options) if couplings is None else {}
    for (a, b), rho in planted.items():
        ia, ib = _REGION_ORDER.index(a), _REGION_ORDER.index(b)
        c = np.sqrt(max(0.0, 1.0 - rho * rho))
        delta[ib] = rho * delta[ia] + c * delta[ib]
        # a lagged pair: b follows a's motion `lag` seconds later, its tremor included
        tremor[ib] = rho * np.roll(tremor[ia], round(lags.get((a, b), 0.0) * fps)) + c * tremor[ib]
    for (_, b), lag in lags.items():
        delta[_REGION_ORDER.index(b)] += lag
    if couplings is None and options.second_pair_weight > 0:
        # the hard setting's second gender pair: a purely pairwise timing cue. Its follower's tremor
        # repeats the leader's (both classes, ρ = COUPLING), "female" lagged, "male" in step. The lag is
        # taken from a longer draw of the leader's process (no wrap-around), and the onsets are not
        # shifted, so every region's own motion has the same distribution in both classes.
        lead_r, follow_r = (_REGION_ORDER.index(n) for n in SECOND_PAIR_GENDER_ORDER)
        shift = round(_second_gender_lag(subject, options) * fps)
        longer = _smooth_noise(rng, n + shift, 1 / fps, TREMOR_TIME_S)
        longer[shift:] = tremor[lead_r]  # the leader's own tremor is unchanged
        c = np.sqrt(1.0 - COUPLING ** 2)
        tremor[follow_r] = COUPLING * longer[:n] + c * tremor[follow_r]
    if subject.timing is not None:
        delta = delta + subject.timing
    gain = np.full(num_r, TREMOR_GAIN)
    for name, g in ({} if couplings is not None else _tremor_gains(subject, options)).items():
        gain[_REGION_ORDER.index(name)] *= g

    amp = subject.amplitudes * np.exp(0.1 * rng.standard_normal(num_r))
    act = np.empty((num_r, n))
    for r in range(num_r):
        tr = t - lead - delta[r]
        prof = _smoothstep(tr / onset) * (1 - _smoothstep((tr - onset - apex) / offset))
        act[r] = amp[r] * prof * (1 + gain[r] * tremor[r])
    shape = subject.shape[None] + np.einsum("rt,rkd->tkd", act, _PATTERNS)  # (T, 68, 2)

    # head motion: smooth translation / rotation / scale, then pixels
    if head_motion:
        tx = 0.15 * _smooth_noise(rng, n, 1 / fps, 0.8) * subject.iod_px
        ty = 0.10 * _smooth_noise(rng, n, 1 / fps, 0.8) * subject.iod_px
        rot = np.deg2rad(rng.uniform(-5, 5) + 4 * _smooth_noise(rng, n, 1 / fps, 1.0))
        scale = np.exp(0.04 * _smooth_noise(rng, n, 1 / fps, 1.0))
    else:
        tx = ty = rot = np.zeros(n)
        scale = np.ones(n)
    cos, sin = np.cos(rot) * scale, np.sin(rot) * scale
    x, y = shape[..., 0] * subject.iod_px, shape[..., 1] * subject.iod_px
    px = cos[:, None] * x - sin[:, None] * y + image_size / 2 + tx[:, None]
    py = sin[:, None] * x + cos[:, None] * y + image_size / 2 + ty[:, None]
    out = np.stack([px, py], axis=-1) + noise_px * rng.standard_normal((n, 68, 2))
    return out.astype(np.float32)


def smile_sequence(*, seed: int = 0, fps: float = 25.0, head_motion: bool = False,
                   noise_px: float = 0.0, amplitude: float = 1.0) -> np.ndarray:
    """A clean demo smile (T, 68, 2) pixel xy at ``fps`` (for :func:`animate_photo` and tests)."""
    rng = np.random.default_rng(seed)
    subject = make_subject(rng, "demo")
    subject = Subject(**{**subject.__dict__, "shape": CANONICAL_FACE.astype(np.float64),
                         "amplitudes": np.full(len(_REGION_ORDER), amplitude), "speed": 1.0})
    return smile_landmarks(rng, subject, fps=fps, head_motion=head_motion, noise_px=noise_px)


def write_dataset(out_dir: str | Path, *, n_sequences: int, seed: int = 0,
                  sequences_per_subject: int = 3, options: SynthOptions | str | None = None) -> Path:
    """Write a synthetic dataset in fdin's sequence format (``labels.csv`` + ``sequences/<id>.npz``).

    ``options``: ``"easy"`` (default), ``"hard"`` or a :class:`SynthOptions`. Also writes
    ``synth.json`` naming the planted pairs and the options. Returns ``out_dir``.
    """
    options = synth_options(options)
    out = Path(out_dir)
    (out / "sequences").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    k = 0
    while k < n_sequences:
        subject = make_subject(rng, f"s{len(rows) // max(sequences_per_subject, 1):04d}_{seed}",
                               timing_s=options.subject_timing_s)
        for _ in range(min(sequences_per_subject, n_sequences - k)):
            fps = float(rng.choice(FPS_CHOICES, p=[0.5, 0.3, 0.2]))
            landmarks = smile_landmarks(rng, subject, fps=fps, options=options)
            seq_id = f"seq{k:05d}"
            np.savez_compressed(out / "sequences" / f"{seq_id}.npz", landmarks=landmarks, fps=np.float32(fps))
            rows.append((seq_id, subject.subject_id, subject.gender, subject.age))
            k += 1
    with open(out / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "subject", "gender", "age"])
        writer.writerows(rows)
    (out / "synth.json").write_text(json.dumps({
        "generator": "fdin.synth", "seed": seed, "n_sequences": n_sequences,
        "sequences_per_subject": sequences_per_subject,
        "planted": {"gender": list(GENDER_PAIR), "age": list(AGE_PAIR)}, "coupling": COUPLING,
        "options": options.to_dict(), "age_lag_s": AGE_LAG_S,
        "second_pair": ({k: list(v) for k, v in SECOND_PAIR.items()} if options.second_pair_weight > 0 else None),
        "cue_region": CUE_REGION if options.region_cue > 0 else None,
        "distractor_pairs": [list(p) for p in DISTRACTOR_PAIRS[:options.distractors]],
    }, indent=2) + "\n")
    return out


def planted_pair(target: str) -> tuple[str, str]:
    """The planted region pair for ``target`` ("gender" or "age")."""
    return GENDER_PAIR if target == "gender" else AGE_PAIR


def animate_photo(image: np.ndarray, landmarks: np.ndarray, sequence: np.ndarray, *,
                  motion_scale: float = 1.0) -> np.ndarray:
    """Render a landmark sequence onto a real face photo by piecewise-affine warping.

    The sequence's first frame is mapped onto the photo's landmarks by a similarity transform fitted
    on the stable landmarks; each frame then moves the photo's landmarks by the sequence's
    displacement from its first frame (head motion included), and :func:`fdin.warp.warp_face`
    renders it.

    Args:
        image: (H, W, 3) uint8 RGB photo of one face.
        landmarks: (68, 2) pixel xy of that face (iBUG-68 order).
        sequence: (T, 68, 2) landmark sequence in any consistent units (e.g. :func:`smile_sequence`).
        motion_scale: multiplies the displacements.
    Returns:
        (T, H, W, 3) uint8 RGB frames.
    """
    from fdin.dynamics import apply_transforms, similarity_transforms
    from fdin.warp import border_anchors, triangulate, warp_face

    landmarks = np.asarray(landmarks, dtype=np.float64)
    seq = np.asarray(sequence, dtype=np.float64)
    m0 = similarity_transforms(seq[:1], reference=landmarks)
    seq_px = apply_transforms(seq, np.repeat(m0, len(seq), axis=0))
    h, w = image.shape[:2]
    triangles = triangulate(np.concatenate([landmarks, border_anchors(h, w)]))
    frames = np.empty((len(seq), h, w, image.shape[2]), dtype=np.uint8)
    for t in range(len(seq)):
        dst = landmarks + motion_scale * (seq_px[t] - seq_px[0])
        frames[t] = warp_face(image, landmarks, dst, triangles=triangles)
    return frames


__all__ = [
    "AGE_LAG_S", "AGE_PAIR", "AGE_RANGE", "COUPLING", "CUE_REGION", "DISTRACTOR_PAIRS", "EASY", "GENDER_PAIR",
    "HARD", "PRESETS", "SECOND_GENDER_LAG_S", "SECOND_PAIR", "SECOND_PAIR_GENDER_ORDER", "SMILE_PATTERN", "Subject", "SynthOptions", "animate_photo",
    "make_subject", "planted_pair", "smile_landmarks", "smile_sequence", "synth_options", "write_dataset",
]

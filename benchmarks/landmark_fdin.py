"""FDIN on the new landmarks: ``python -m benchmarks.landmark_fdin``.

For each real clip (``tests/real_media.py`` names) and each landmark stack (``offline``: the MediaPipe
mesh, the default; ``offline-dlib``: dlib's 68 points), the clip's primary track goes through FDIN
(:meth:`fdin.analyze.DynamicsAnalyzer.predict_landmarks`), and the script prints

* FDIN's gender (p_female) and age estimates and the top relation of its importance, per stack:
  how much the answer depends on which landmark model was used;
* **noise sensitivity**: the same landmarks plus white Gaussian noise of ``--noise`` x the
  inter-ocular distance (``--draws`` draws each): the spread of p_female and age, and the Spearman
  correlation of the importance (upper triangle) with the clean run. The stacks' own frame-to-frame
  jitter on real clips (``python -m benchmarks.landmarks``) says which noise level is realistic;
* **planted motion** (ground truth): a real photo animated by a generated smile
  (:func:`fdin.synth.animate_photo`, piecewise-affine warp on the photo's 68 points) moves every point
  by a known displacement; the tracked landmarks' displacement from the first frame is compared with
  it (mean error of the 51 inner points / inter-ocular distance, and the fraction of the planted motion
  recovered). This is the signal FDIN reads;
* **live path**: the time of one ``predict_landmarks`` on a 4 s window (the live tab's rolling
  estimate; median of ``--repeat``), i.e. how many such updates per second one core sustains, beside
  the time of one tracked frame (landmark fit, ms) of each stack on the clip.

Real clips only; the weights are fdin's own (trained on generated sequences: the estimates are not
claims about the people in the clips, only a measure of their sensitivity).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import numpy as np

MODELS = ("offline", "offline-dlib")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a)).astype(np.float64)
    rb = np.argsort(np.argsort(b)).astype(np.float64)
    ra -= ra.mean()
    rb -= rb.mean()
    return float((ra * rb).sum() / np.sqrt((ra * ra).sum() * (rb * rb).sum()))


def upper(m: np.ndarray) -> np.ndarray:
    return np.asarray(m)[np.triu_indices(len(m), 1)]


def track_clip(backend: Any, clip: str, max_frames: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(landmarks (N, 68, 2), timestamps (N,), ms per frame of tracking) of the primary track."""
    from fdin.media import read_video
    from fdin.perception import primary_track, track_faces
    from tests import real_media

    video = read_video(real_media.fetch(clip), max_frames=max_frames)
    t0 = time.perf_counter()
    tracks = track_faces(video, backend, appearance_frames=0)
    ms = (time.perf_counter() - t0) * 1e3 / max(1, len(video.frames))
    track = primary_track(tracks)
    if track is None:
        return np.zeros((0, 68, 2)), np.zeros(0), ms
    stamps = np.asarray(video.timestamps, np.float64)[np.asarray(track.frame_indices)]
    return track.landmarks_array().astype(np.float64), stamps, ms


def summary(pred: Any) -> dict[str, Any]:
    imp = pred.importance
    m = imp.matrix
    i, j = np.unravel_index(int(np.argmax(np.triu(m, 1))), m.shape)
    return {"p_female": float(pred.estimates.gender.p_female), "age": float(pred.estimates.age.years),
            "top": f"{imp.regions[i]}-{imp.regions[j]}", "importance": upper(m)}


def planted_motion(photo: str, head_motion: bool) -> dict[str, Any]:
    """Per stack: how well tracking recovers the displacements planted by :func:`fdin.synth.animate_photo`."""
    from fdin.dynamics import apply_transforms, similarity_transforms
    from fdin.geometry import interocular_distance
    from fdin.media import load_image
    from fdin.perception import detect_faces, get_backend, primary_track, track_faces
    from fdin.synth import animate_photo, smile_sequence
    from tests import real_media

    image = load_image(real_media.fetch(photo))
    out: dict[str, Any] = {}
    seq = smile_sequence(seed=0, fps=25.0, head_motion=head_motion)
    for name in MODELS:
        be = get_backend(name)
        face = max(detect_faces(image, be, with_appearance=False), key=lambda f: f.area)
        lm0 = face.landmarks.astype(np.float64)
        frames = animate_photo(image, lm0, seq)
        m0 = similarity_transforms(seq[:1], reference=lm0)
        truth = apply_transforms(seq, np.repeat(m0, len(seq), axis=0))
        truth = truth - truth[:1] + lm0  # where the photo's points were moved to
        track = primary_track(track_faces(frames, be, appearance_frames=0))
        if track is None:
            out[name] = {"found": 0}
            continue
        idx = np.asarray(track.frame_indices)
        got = track.landmarks_array().astype(np.float64)
        iod = float(interocular_distance(lm0))
        d_true = truth[idx] - truth[idx[0]]
        d_got = got - got[0]
        err = np.linalg.norm((d_got - d_true)[:, 17:], axis=-1).mean() / iod
        planted = np.linalg.norm(d_true[:, 17:], axis=-1).mean() / iod
        # share of the planted motion (beyond the head's) each stack recovers: regression slope
        slope = float((d_got[:, 17:] * d_true[:, 17:]).sum() / max((d_true[:, 17:] ** 2).sum(), 1e-9))
        out[name] = {"found": len(track), "frames": len(frames), "error_iod": float(err),
                     "planted_iod": float(planted), "recovered": slope}
    return out


def run(clips: list[str], noise: list[float], draws: int, max_frames: int, repeat: int) -> dict[str, Any]:
    from fdin.analyze import DynamicsAnalyzer
    from fdin.geometry import interocular_distance
    from fdin.perception import get_backend

    analyzer = DynamicsAnalyzer()
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {}
    lm = np.zeros((0, 68, 2))
    for clip in clips:
        per: dict[str, Any] = {}
        for name in MODELS:
            lm, stamps, ms = track_clip(get_backend(name), clip, max_frames)
            if len(lm) < 10:
                per[name] = {"frames": len(lm)}
                continue
            clean = summary(analyzer.predict_landmarks(lm, stamps))
            iod = float(np.median(interocular_distance(lm)))
            rows = []
            for sigma in noise:
                ps, ages, rhos = [], [], []
                for _ in range(draws):
                    noisy = lm + rng.standard_normal(lm.shape) * sigma * iod
                    s = summary(analyzer.predict_landmarks(noisy, stamps))
                    ps.append(s["p_female"])
                    ages.append(s["age"])
                    rhos.append(spearman(s["importance"], clean["importance"]))
                rows.append({"sigma_iod": sigma, "p_female_sd": float(np.std(ps)),
                             "p_female_shift": float(np.mean(ps) - clean["p_female"]),
                             "age_sd": float(np.std(ages)), "age_shift": float(np.mean(ages) - clean["age"]),
                             "importance_spearman": float(np.mean(rhos))})
            per[name] = {"frames": len(lm), "track_ms_per_frame": ms, "iod_px": iod,
                         **{k: v for k, v in clean.items() if k != "importance"}, "noise": rows,
                         "_importance": clean["importance"]}
        if all("_importance" in per.get(m, {}) for m in MODELS):
            per["importance_spearman_between_stacks"] = spearman(per[MODELS[0]]["_importance"],
                                                                 per[MODELS[1]]["_importance"])
        for m in MODELS:
            per.get(m, {}).pop("_importance", None)
        out[clip] = per
    # the live tab's rolling estimate: predict_landmarks on a 4 s window at 30 fps
    window = np.repeat(np.asarray(lm[:1]), 120, axis=0) if len(lm) else None
    if window is not None and repeat:
        window = window + rng.standard_normal(window.shape) * 0.3
        stamps = np.arange(120) / 30.0
        analyzer.predict_landmarks(window, stamps)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            analyzer.predict_landmarks(window, stamps)
            times.append((time.perf_counter() - t0) * 1e3)
        out["live_predict_landmarks_ms"] = statistics.median(times)
    return out


def markdown(result: dict[str, Any]) -> str:
    lines = ["| clip | stack | frames | p_female | age | top relation | noise σ/IOD → p_female sd, age sd, "
             "importance ρ |", "|---|---|---|---|---|---|---|"]
    for clip, per in result.items():
        if not isinstance(per, dict):
            continue
        for m in MODELS:
            r = per.get(m, {})
            if "p_female" not in r:
                lines.append(f"| {clip} | {m} | {r.get('frames', 0)} | — | — | — | — |")
                continue
            noise = "; ".join(f"{n['sigma_iod']:.3f}: {n['p_female_sd']:.3f}, {n['age_sd']:.2f} y, "
                              f"{n['importance_spearman']:.2f}" for n in r["noise"])
            lines.append(f"| {clip} | {m} | {r['frames']} | {r['p_female']:.3f} | {r['age']:.1f} | {r['top']} | "
                         f"{noise} |")
        if "importance_spearman_between_stacks" in per:
            lines.append(f"| {clip} | mesh vs dlib importance ρ | | | | "
                         f"{per['importance_spearman_between_stacks']:.2f} | |")
    if "live_predict_landmarks_ms" in result:
        ms = result["live_predict_landmarks_ms"]
        lines += ["", f"Live rolling estimate (predict_landmarks, 4 s window): {ms:.1f} ms "
                      f"(≈ {1000.0 / ms:.0f} updates/s on one core)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.landmark_fdin", description=__doc__.split("\n")[0])
    parser.add_argument("--clips", nargs="*", default=["WolfgangLanger_Pexels.mp4", "single_face.mp4"])
    parser.add_argument("--noise", type=float, nargs="*", default=[0.005, 0.01, 0.02])
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--max-frames", type=int, default=600)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--planted", nargs="*", default=["0-f1-su-ph.jpg", "single_face.jpg"],
                        help="real photos (tests/real_media names) for the planted-motion check")
    args = parser.parse_args(argv)
    if args.planted:
        print("| photo | head motion | stack | frames found | planted motion (IOD) | error (IOD) | recovered |")
        print("|---|---|---|---|---|---|---|")
        for photo in args.planted:
            for head in (False, True):
                for m, r in planted_motion(photo, head).items():
                    if "error_iod" in r:
                        print(f"| {photo} | {'yes' if head else 'no'} | {m} | {r['found']}/{r['frames']} | "
                              f"{r['planted_iod']:.3f} | {r['error_iod']:.3f} | {r['recovered']:.2f} |")
        print()
    print(markdown(run(args.clips, args.noise, args.draws, args.max_frames, args.repeat)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

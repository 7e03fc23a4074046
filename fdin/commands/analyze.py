"""``python -m fdin analyze VIDEO... [--json OUT]``: FDIN gender/age + relational importance.

Each video is analysed whole (``--max-duration S``: its first S seconds; the JSON's ``coverage`` and
a note on stderr say which seconds were analysed and why). One video: the JSON goes to ``--json OUT``
(or stdout). Several videos or a folder: one JSON per
video in ``--out-dir`` plus ``summary.csv``, with a progress bar; a video that fails (no face, bad
file) is recorded in the summary and the run continues (exit 2 if every video failed).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

from fdin.errors import FdinError, MediaError

HELP = "gender and age from facial dynamics (FDIN) with the relational importance matrix"
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("videos", nargs="+", type=Path, metavar="VIDEO", help="video files or folders")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the JSON here (one video)")
    parser.add_argument("--out-dir", type=Path, default=Path("fdin-analyze"),
                        help="per-video JSON and summary.csv when several videos are given")
    parser.add_argument("--arrays", action="store_true", help="include trajectories and landmarks in the JSON")
    parser.add_argument("--gender-weights", default="fdin-gender", help="model folder, weights/ name or Hub id")
    parser.add_argument("--age-weights", default="fdin-age", help="model folder, weights/ name or Hub id")
    parser.add_argument("--revision", help="40-hex Hub commit for Hub weights")
    parser.add_argument("--backend", help="face backend name (default: fdin.perception's default)")
    parser.add_argument("--max-duration", type=seconds_arg, metavar="SECONDS",
                        help="analyse only the first SECONDS of each video (default: the whole video, "
                             "with flat memory whatever its length)")


def seconds_arg(text: str) -> float:
    """argparse type of ``--max-duration``: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _analyze(analyzer: Any, video: Path, max_duration: float | None) -> Any:
    reason = f"--max-duration {max_duration:g} was given" if max_duration is not None else ""
    return analyzer.analyze(video, max_duration=max_duration, duration_reason=reason)


def coverage_notes(result: Any) -> list[str]:
    """The notes of a result analysed in part (which seconds, and why); empty for a whole video."""
    coverage = result.coverage
    return [] if coverage is None or coverage.whole else list(coverage.notes)


def _expand(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in VIDEO_SUFFIXES)
        else:
            out.append(p)
    if not out:
        raise MediaError("No video files were found in the given folder(s).")
    return out


def top_pair(result) -> str:
    """summary.csv's ``top_relation``: the pair that moved the gender estimate most (per-estimate
    attribution), ``none stands out`` when no pair exceeds the noise level, empty without attribution."""
    if result.attribution is None:
        return ""
    salient = result.attribution.salient("gender", k=1)
    return " - ".join(salient[0].regions) if salient else "none stands out"


def relation_lines(result) -> list[str]:
    """What the terminal says about the pairs behind each estimate (from the attribution)."""
    attribution = result.attribution
    if attribution is None:
        return ["relations: these weights carry no per-estimate attribution (retrain with this fdin version)"]
    lines = []
    for target, unit in (("gender", "p_female"), ("age", "years")):
        if target not in attribution.by_target:
            lines.append(f"{target}: these weights carry no per-estimate attribution")
            continue
        salient = attribution.salient(target, k=3)
        noise = attribution.noise.get(target, 0.0)
        if not salient:
            lines.append(f"{target}: no relation stands out (no pair moves the estimate beyond the noise "
                         f"level ±{noise:.2g} {unit})")
        else:
            lines.append(f"{target}: pairs that moved the estimate (effect of removing each, noise ±{noise:.2g} "
                         f"{unit}): " + "; ".join(f"{' - '.join(e.regions)} {e.effect:+.2f} toward {e.toward}"
                                                   for e in salient))
    return lines


def run(args: argparse.Namespace) -> int:
    from fdin.analyze import SYNTHETIC_NOTE, DynamicsAnalyzer

    videos = _expand(args.videos)
    with DynamicsAnalyzer(gender_weights=args.gender_weights, age_weights=args.age_weights,
                          revision=args.revision, backend=args.backend) as analyzer:
        return _run(args, videos, analyzer, SYNTHETIC_NOTE)


def _run(args: argparse.Namespace, videos: list[Path], analyzer: Any, synthetic_note: str) -> int:
    quiet = getattr(args, "quiet", False)
    if not quiet and any(m.synthetic_training_data for m in analyzer.provenance()):
        print(synthetic_note, file=sys.stderr)

    max_duration = getattr(args, "max_duration", None)
    if len(videos) == 1 and not args.videos[0].is_dir():
        result = _analyze(analyzer, videos[0], max_duration)
        for note in [] if quiet else coverage_notes(result):
            print(f"note: {note}", file=sys.stderr)
        text = json.dumps(result.to_json_dict(include_arrays=args.arrays), indent=2)
        if not quiet:
            for line in relation_lines(result):
                print(line, file=sys.stderr)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(text + "\n")
        else:
            print(text)
        return 0

    from tqdm import tqdm

    args.out_dir.mkdir(parents=True, exist_ok=True)
    rows, ok = [], 0
    for i, video in enumerate(tqdm(videos, desc="analyze", unit="video", disable=quiet)):
        row = {"video": str(video), "status": "ok", "message": "", "json": "", "frames_analyzed": "",
               "face_found": "", "gender": "", "p_female": "", "age_years": "", "age_std": "",
               "top_relation": "", "total_ms": ""}
        try:
            result = _analyze(analyzer, video, max_duration)
        except FdinError as error:
            row.update(status="error", message=str(error))
        else:
            ok += 1
            out = args.out_dir / f"{i:04d}_{video.stem}.json"
            out.write_text(json.dumps(result.to_json_dict(include_arrays=args.arrays), indent=2) + "\n")
            d = result.dynamics
            row.update(message=" ".join(coverage_notes(result)), json=str(out), frames_analyzed=result.frames_analyzed, face_found=result.face_track.found,
                       gender=d.gender.label, p_female=round(d.gender.p_female, 4), age_years=round(d.age.years, 1),
                       age_std=round(d.age.std, 1), total_ms=result.timings_ms["total"],
                       top_relation=top_pair(result))
        rows.append(row)
    summary = args.out_dir / "summary.csv"
    with open(summary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    if not quiet:
        print(f"{ok}/{len(videos)} videos analysed; summary: {summary}", file=sys.stderr)
    if ok == 0:
        raise FdinError(f"None of the {len(videos)} videos could be analysed; see {summary}.")
    return 0

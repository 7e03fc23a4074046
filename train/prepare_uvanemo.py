"""UvA-NEMO smile videos → fdin's sequence dataset: ``python -m train.prepare_uvanemo``.

Expected input (fdin's assumptions about the distribution; adjust ``--labels`` columns if yours differ):

* ``--videos DIR``: the smile videos, any depth below DIR, named ``<subject>_<kind>_smile_<n>.<ext>``
  as in the UvA-NEMO release (e.g. ``001_spontaneous_smile_1.mp4``, ``012_deliberate_smile_2.mp4``);
  the subject id is the part before the first underscore. (1920x1080 at 50 fps, 1,240 videos,
  400 subjects.) Any container :func:`fdin.media.read_video` accepts works.
* ``--labels FILE``: the age/gender metadata as CSV or whitespace/tab-separated text with a header.
  Columns (case-insensitive; first match wins):
  video: ``filename|file|video|name`` (with or without extension) — or, for per-subject metadata,
  ``subject|subject_id|id``; gender: ``gender|sex`` with values f/female/w/0 → female and
  m/male/1 → male; age: ``age|age_years``. Rows whose video cannot be found are reported and skipped.

Each video goes through :func:`fdin.media.read_video` and the perception layer
(``track_faces`` + ``primary_track``); the primary track's 68 landmarks are linearly interpolated over
frames where the face was lost (fdin's choice [D]; nothing is extrapolated beyond the track) and saved
at the video's frame rate. Output: ``OUT/labels.csv`` + ``OUT/sequences/<id>.npz`` (see
:mod:`train.fdin`) and ``OUT/skipped.csv`` (videos without a usable face, with the reason).
"""

from __future__ import annotations

import argparse
import csv
import logging
import re
import sys
from pathlib import Path

import numpy as np

log = logging.getLogger("train.prepare_uvanemo")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
_FEMALE = {"f", "female", "w", "woman", "0"}
_MALE = {"m", "male", "man", "1"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m train.prepare_uvanemo", description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", type=Path, required=True, help="folder of UvA-NEMO smile videos")
    p.add_argument("--labels", type=Path, required=True, help="age/gender metadata file (CSV or TSV)")
    p.add_argument("--out", type=Path, required=True, help="output dataset folder")
    p.add_argument("--backend", help="perception backend name (default: fdin.perception's default)")
    p.add_argument("--detect-every", type=int, default=5, help="run the face detector every N frames")
    p.add_argument("--max-duration", type=float, default=60.0, help="seconds read per video")
    p.add_argument("--limit", type=int, default=0, help="only the first N labelled videos (0 = all)")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def read_labels(path: Path) -> list[dict[str, str]]:
    """Rows as dicts with lower-cased keys; CSV if the header has commas, else whitespace-separated."""
    text = path.read_text(encoding="utf-8-sig")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise SystemExit(f"{path} is empty")
    if "," in lines[0] or ";" in lines[0]:
        dialect = csv.Sniffer().sniff(lines[0], delimiters=",;")
        rows = list(csv.DictReader(lines, dialect=dialect))
    else:
        header = re.split(r"\s+", lines[0].strip())
        rows = [dict(zip(header, re.split(r"\s+", ln.strip()), strict=False)) for ln in lines[1:]]
    return [{k.strip().lower(): (v or "").strip() for k, v in r.items() if k} for r in rows]


def _col(row: dict[str, str], names: tuple[str, ...]) -> str | None:
    for n in names:
        if n in row and row[n] != "":
            return row[n]
    return None


def subject_of(video: Path) -> str:
    return video.stem.split("_", 1)[0]


def normalise_gender(value: str) -> str:
    v = value.strip().lower()
    if v in _FEMALE:
        return "female"
    if v in _MALE:
        return "male"
    raise ValueError(f"unknown gender value {value!r}")


def match_labels(videos: list[Path], rows: list[dict[str, str]]) -> list[tuple[Path, str, str, float]]:
    """(video, subject, gender, age) for every video with a label row (by file name or subject)."""
    by_stem = {v.stem.lower(): v for v in videos}
    out: list[tuple[Path, str, str, float]] = []
    for row in rows:
        gender, age = _col(row, ("gender", "sex")), _col(row, ("age", "age_years"))
        if gender is None or age is None:
            continue
        name = _col(row, ("filename", "file", "video", "name"))
        if name is not None:
            video = by_stem.get(Path(name).stem.lower()) or by_stem.get(name.lower())
            matched = [video] if video is not None else []
            if not matched:
                log.warning("no video for label row %r", name)
        else:
            subject = _col(row, ("subject", "subject_id", "id"))
            matched = [v for v in videos if subject is not None and subject_of(v).lstrip("0") == subject.lstrip("0")]
        for v in matched:
            out.append((v, subject_of(v), normalise_gender(gender), float(age)))
    return sorted(set(out), key=lambda t: str(t[0]))


def track_landmarks(video_path: Path, backend, *, detect_every: int, max_duration: float
                    ) -> tuple[np.ndarray, float]:
    """Video → ((T, 68, 2) float32 landmarks on a uniform grid at the video's fps, fps)."""
    from fdin.dynamics import resample
    from fdin.errors import NoFaceError
    from fdin.media import read_video
    from fdin.perception import primary_track, track_faces

    video = read_video(video_path, max_duration=max_duration)
    track = primary_track(track_faces(video.frames, backend, detect_every=detect_every))
    if track is None or len(track) < 2:
        raise NoFaceError(f"no usable face track in {video_path.name}")
    times = np.asarray(video.timestamps, dtype=np.float64)[np.asarray(track.frame_indices)]
    _, landmarks = resample(track.landmarks_array(), times, float(video.fps))
    return landmarks.astype(np.float32), float(video.fps)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from tqdm import tqdm

    from fdin.errors import FdinError
    from fdin.perception import get_backend

    videos = sorted(p for p in args.videos.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    items = match_labels(videos, read_labels(args.labels))
    if args.limit:
        items = items[: args.limit]
    if not items:
        raise SystemExit(f"no labelled videos found under {args.videos} (check {args.labels})")
    backend = get_backend(args.backend)
    (args.out / "sequences").mkdir(parents=True, exist_ok=True)
    rows, skipped = [], []
    for video, subject, gender, age in tqdm(items, desc="videos", disable=args.quiet):
        try:
            landmarks, fps = track_landmarks(video, backend, detect_every=args.detect_every,
                                             max_duration=args.max_duration)
        except FdinError as error:
            skipped.append((str(video), str(error)))
            continue
        seq_id = video.stem
        np.savez_compressed(args.out / "sequences" / f"{seq_id}.npz", landmarks=landmarks, fps=np.float32(fps))
        rows.append((seq_id, subject, gender, f"{age:g}"))
    with open(args.out / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "subject", "gender", "age"])
        writer.writerows(rows)
    with open(args.out / "skipped.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "reason"])
        writer.writerows(skipped)
    log.info("%d sequences written to %s, %d skipped", len(rows), args.out, len(skipped))
    return 0


if __name__ == "__main__":
    sys.exit(main())

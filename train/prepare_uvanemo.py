"""UvA-NEMO smile videos → fdin's sequence dataset: ``python -m train.prepare_uvanemo``.

**The release as it ships** (``--release DIR``)::

    DIR/UvA-NEMO_Smile_Database_File_Details.txt      5 preamble lines, then one tab-separated row per video:
                                                      file name, subject code, (a column loaders ignore),
                                                      age at recording, spontaneous|deliberate
    DIR/UvA-NEMO_Smile_Database_Subject_Details.txt   5 preamble lines, then subject code, gender, age
    DIR/<any folder>/NNN_{spontaneous,deliberate}_smile_K.mp4   the 1,240 videos (1920x1080, 50 fps)
    DIR/UvA-NEMO_Smile_Database_Kinship_Labels.txt    not needed by FDIN (ignored)

The detail files are found by name (case-insensitive, anywhere below DIR). Their data start is found
by content — the first line that looks like a data row; the release has 5 lines before it and a
different count is logged — and every column is located by what it holds, not by its position: the
file name (``NNN_kind_smile_K``), the 3-digit subject code (it must agree with the file name), an
integer age (when two columns hold plausible ages, the header word "age" decides, then agreement with
the subject file; otherwise it is an error), the authenticity word, and in the subject file the
gender word (M/F/male/female/man/woman, any case). **Every** row after the data start must validate:
an unknown or ambiguous value (for example a gender coded ``0`` or ``1``) is a
:class:`ReleaseFormatError` naming the file and line, never a guess. The gender of each video is
joined from the subject file by subject code; the age is the file's age at recording. A listed video
whose file is missing, or a video file that is not listed, is reported (summary and ``skipped.csv``).

**Other sources** (``--videos DIR --labels FILE``): videos named ``<subject>_...``; a CSV or
whitespace-separated label file with a header and columns ``filename|file|video|name`` (or, per
subject, ``subject|subject_id|id``), ``gender|sex`` (f/female/w/woman or m/male/man; numeric codes are
refused) and ``age|age_years``; optional ``authenticity`` (else taken from ``_spontaneous_`` /
``_deliberate_`` in the file name).

**Per video**: :func:`fdin.media.read_video` at a bounded size (``--max-side``, default 640: a 1080p
frame becomes 640x360, 0.7 MB, so a 60 s clip at 50 fps fits the decoder's 2 GiB budget) with
``on_limit="error"``: a clip longer than ``--max-duration`` or too large to decode whole, or one that
the decoder reports as truncated (``Video.truncated``, e.g. a damaged file), is **skipped with the
reason, never cut**. Then the perception layer (``track_faces`` + ``primary_track``); the primary
track's 68 landmarks are linearly interpolated over frames where the face was lost (fdin's choice [D];
nothing is extrapolated beyond the track) and saved at the video's frame rate.

**Output**: ``OUT/labels.csv`` (``id,subject,gender,age,authenticity``), ``OUT/sequences/<id>.npz``
(``landmarks`` float32 (T, 68, 2), ``fps``, plus ``source`` and ``prepare`` — the settings that made
it), ``OUT/skipped.csv`` (``video,reason``) and ``OUT/summary.json``; the summary (videos, subjects,
gender counts, age range, spontaneous/deliberate counts, every skipped video and why, throughput) is
also logged.

**Scale out**: ``--workers N`` processes (default: the CPU cores; one progress bar). Re-running is
resumable: a sequence whose ``.npz`` loads, has the right shape and was made with the same settings is
kept, not recomputed; files are written atomically. ``--shard K/N`` processes every N-th video
(K = 1..N) and records ``OUT/shards/K-of-N.json`` instead of ``labels.csv``, so a SLURM array
(``--shard $((SLURM_ARRAY_TASK_ID+1))/$SLURM_ARRAY_TASK_COUNT``) or any batch system can split the
release across machines sharing OUT; ``--merge`` then checks that every shard finished and writes the
one ``labels.csv``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fdin.errors import FdinError

log = logging.getLogger("train.prepare_uvanemo")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
LABEL_COLUMNS = ("id", "subject", "gender", "age", "authenticity")
RELEASE_PREAMBLE_LINES = 5
DEFAULT_MAX_SIDE = 640
#: Decoded frames allowed per second of ``--max-duration`` (60 fps sources at the full duration).
FRAMES_PER_SECOND_LIMIT = 60
_VIDEO_NAME = re.compile(r"(\d{3})_(spontaneous|deliberate)_smile_(\d+)", re.IGNORECASE)
_CODE = re.compile(r"\d{3}")
_INT = re.compile(r"\d{1,3}")
_GENDER_WORDS = {"f": "female", "female": "female", "woman": "female",
                 "m": "male", "male": "male", "man": "male"}
_LEGACY_GENDER_WORDS = {**_GENDER_WORDS, "w": "female"}
_AUTHENTICITY_WORDS = {"spontaneous": "spontaneous", "deliberate": "deliberate", "posed": "deliberate"}
_GENDER_HELP = "M, F, male, female, man or woman (any case)"


class ReleaseFormatError(FdinError):
    """A metadata file of the release cannot be read without guessing (the message names the line)."""


@dataclass(frozen=True)
class VideoLabel:
    """One video to prepare and its labels (``source``: where the labels came from, ``file:line``)."""

    seq_id: str
    video: Path | None
    subject: str
    gender: str
    age: float
    authenticity: str
    source: str = ""

    def row(self) -> list[str]:
        return [self.seq_id, self.subject, self.gender, f"{self.age:g}", self.authenticity]


# --- arguments -----------------------------------------------------------------------------------
def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def parse_shard(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise argparse.ArgumentTypeError(f"--shard must be K/N with 1 <= K <= N (got {text!r})")
    return int(m.group(1)), int(m.group(2))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m train.prepare_uvanemo", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("input (give --release, or --videos and --labels)")
    src.add_argument("--release", type=Path, help="the UvA-NEMO release folder as shipped")
    src.add_argument("--videos", type=Path, help="folder of smile videos (other sources)")
    src.add_argument("--labels", type=Path, help="age/gender metadata file, CSV or TSV (other sources)")
    p.add_argument("--out", type=Path, required=True, help="output dataset folder")
    p.add_argument("--workers", type=int, default=default_workers(),
                   help="worker processes (default: the CPU cores, here %(default)s)")
    p.add_argument("--shard", type=parse_shard, metavar="K/N", help="process only shard K of N (1-based)")
    p.add_argument("--merge", action="store_true",
                   help="after all --shard runs: check them and write OUT/labels.csv")
    p.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE,
                   help="decode frames with this longer side (default %(default)s; 1080p → 640x360)")
    p.add_argument("--max-duration", type=float, default=60.0,
                   help="seconds per video; a longer clip is skipped with the reason, never cut")
    p.add_argument("--backend", help="perception backend name (default: fdin.perception's default)")
    p.add_argument("--detect-every", type=int, default=5, help="run the face detector every N frames")
    p.add_argument("--limit", type=int, default=0, help="only the first N labelled videos (0 = all)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.release is None and (args.videos is None or args.labels is None):
        p.error("give --release DIR, or both --videos DIR and --labels FILE")
    if args.release is not None and (args.videos is not None or args.labels is not None):
        p.error("--release reads the release's own files; do not combine it with --videos/--labels")
    if args.workers < 1 or args.max_side < 16 or args.max_duration <= 0:
        p.error("--workers must be >= 1, --max-side >= 16 and --max-duration > 0")
    if args.merge and args.shard:
        p.error("--merge runs once after all shards; do not give --shard with it")
    return args


# --- reading the release -------------------------------------------------------------------------
def _read_text_lines(path: Path) -> list[str]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
    return text.splitlines()


def _fields(line: str) -> list[str]:
    """Tab-separated fields (positions kept); whitespace-separated when the line has no tab."""
    if "\t" in line:
        fields = [f.strip() for f in line.split("\t")]
        while fields and fields[-1] == "":
            fields.pop()
        return fields
    return line.split()


def _is_file_row(fields: list[str]) -> bool:
    return any(_video_match(f) for f in fields)


def _is_subject_row(fields: list[str]) -> bool:
    codes = [i for i, f in enumerate(fields) if _CODE.fullmatch(f)]
    return len(fields) >= 2 and bool(codes) and any(
        i not in codes[:1] and (f.lower() in _GENDER_WORDS or _INT.fullmatch(f)) for i, f in enumerate(fields))


def _video_match(value: str) -> re.Match | None:
    stem = Path(value).stem if Path(value).suffix.lower() in VIDEO_SUFFIXES else value
    return _VIDEO_NAME.fullmatch(stem)


@dataclass
class _Table:
    path: Path
    header: list[str]
    rows: list[tuple[int, list[str]]]  # (1-based line number, fields)

    def where(self, lineno: int) -> str:
        return f"line {lineno} of {self.path.name}"


def read_table(path: Path, is_data_row) -> _Table:
    """Split a detail file into header (the last preamble line) and data rows, located by content."""
    lines = _read_text_lines(path)
    start = next((i for i, line in enumerate(lines) if is_data_row(_fields(line))), None)
    if start is None:
        raise ReleaseFormatError(f"{path.name} has no line that looks like a data row ({len(lines)} lines read).")
    if start != RELEASE_PREAMBLE_LINES:
        log.warning("%s: the data starts on line %d (the release has %d preamble lines); lines before it "
                    "were treated as preamble: %s", path.name, start + 1, RELEASE_PREAMBLE_LINES,
                    " | ".join(x.strip() for x in lines[:start] if x.strip()) or "(blank)")
    header = next((_fields(x) for x in reversed(lines[:start]) if x.strip()), [])
    rows = [(i + 1, _fields(x)) for i, x in enumerate(lines) if i >= start and x.strip()]
    return _Table(path, header, rows)


def _locate(table: _Table, kind: str, matches, *, taken: set[int], keyword: str,
            tie_break=None) -> int:
    """The one column whose values satisfy ``matches(value, fields)`` in most rows of ``table``.

    Every column matching in a majority of rows is a candidate; several candidates are resolved by the
    header word ``keyword``, then by the highest ``tie_break(col)`` score. No candidate, or several
    left, is a :class:`ReleaseFormatError`: a column is never picked by position.
    """
    width = max(len(f) for _, f in table.rows)
    counts = {c: sum(1 for _, f in table.rows if c < len(f) and matches(f[c], f)) for c in range(width)
              if c not in taken}
    tied = [c for c, n in counts.items() if n * 2 > len(table.rows)]
    if not tied:
        raise ReleaseFormatError(f"{table.path.name}: no column holds {kind} in most rows "
                                 f"(best column: {max(counts.values(), default=0)} of {len(table.rows)} rows).")
    if len(tied) > 1:
        named = [c for c in tied if c < len(table.header) and keyword in table.header[c].lower()]
        tied = named if len(named) == 1 else tied
    if len(tied) > 1 and tie_break is not None:
        scores = {c: tie_break(c) for c in tied}
        top = max(scores.values())
        tied = [c for c in tied if scores[c] == top]
    if len(tied) > 1:
        raise ReleaseFormatError(f"{table.path.name}: columns {', '.join(str(c + 1) for c in tied)} could each be "
                                 f"{kind}; rename the header of the right one to contain {keyword!r}.")
    return tied[0]


def _value(table: _Table, lineno: int, fields: list[str], col: int, what: str) -> str:
    if col >= len(fields) or fields[col] == "":
        raise ReleaseFormatError(f"{table.where(lineno)} has no {what} (column {col + 1} is empty).")
    return fields[col]


def parse_gender(value: str, where: str) -> str:
    gender = _GENDER_WORDS.get(value.strip().lower())
    if gender is None:
        extra = (" Numeric gender codes are ambiguous (the release documents no coding), so they are not "
                 "guessed; write the word instead." if value.strip().isdigit() else "")
        raise ReleaseFormatError(f"{where}: gender {value!r} is not one of {_GENDER_HELP}.{extra}")
    return gender


def parse_age(value: str, where: str) -> int:
    if not _INT.fullmatch(value.strip()) or not 1 <= int(value) <= 120:
        raise ReleaseFormatError(f"{where}: age {value!r} is not a whole number of years between 1 and 120.")
    return int(value)


def read_subject_details(path: Path) -> dict[str, tuple[str, int | None, str]]:
    """Subject file → ``{code: (gender, age or None, "file:line")}`` (validated; see module docstring)."""
    table = read_table(path, _is_subject_row)
    code_col = _locate(table, "a 3-digit subject code", lambda v, f: bool(_CODE.fullmatch(v)), taken=set(),
                       keyword="code")
    try:
        gender_col = _locate(table, "gender words", lambda v, f: v.lower() in _GENDER_WORDS, taken={code_col},
                             keyword="gender")
    except ReleaseFormatError as error:
        numeric = [c for c in range(max(len(f) for _, f in table.rows)) if c != code_col
                   and all(c < len(f) and f[c] in ("0", "1") for _, f in table.rows)]
        hint = (f" Column {numeric[0] + 1} holds only 0/1: numeric gender codes are ambiguous and are not "
                "guessed; write M/F (or male/female) instead." if numeric else "")
        raise ReleaseFormatError(f"{error}{hint}") from None
    try:
        age_col: int | None = _locate(table, "an integer age", lambda v, f: bool(_INT.fullmatch(v)),
                                      taken={code_col, gender_col}, keyword="age")
    except ReleaseFormatError:
        age_col = None  # optional here: the file details carry the age at recording
    out: dict[str, tuple[str, int | None, str]] = {}
    for lineno, fields in table.rows:
        where = table.where(lineno)
        code = _value(table, lineno, fields, code_col, "subject code")
        if not _CODE.fullmatch(code):
            raise ReleaseFormatError(f"{where}: subject code {code!r} is not 3 digits.")
        gender = parse_gender(_value(table, lineno, fields, gender_col, "gender"), where)
        age = parse_age(fields[age_col], where) if age_col is not None and age_col < len(fields) else None
        if code in out and out[code][0] != gender:
            raise ReleaseFormatError(f"{where}: subject {code} is listed again with gender {gender} "
                                     f"({out[code][2]} says {out[code][0]}).")
        out.setdefault(code, (gender, age, f"{path.name}:{lineno}"))
    return out


def read_file_details(path: Path, subjects: dict[str, tuple[str, int | None, str]]) -> list[VideoLabel]:
    """File details joined with the subject file → one :class:`VideoLabel` per listed video (no path yet)."""
    table = read_table(path, _is_file_row)
    name_col = _locate(table, "video file names (NNN_kind_smile_K)", lambda v, f: bool(_video_match(v)),
                       taken=set(), keyword="file")

    def prefix(f: list[str]) -> str | None:
        m = _video_match(f[name_col]) if name_col < len(f) else None
        return m.group(1) if m else None

    code_col = _locate(table, "a 3-digit subject code", lambda v, f: bool(_CODE.fullmatch(v)),
                       taken={name_col}, keyword="code",
                       tie_break=lambda c: sum(1 for _, f in table.rows if c < len(f) and f[c] == prefix(f)))
    auth_col = _locate(table, "spontaneous/deliberate", lambda v, f: v.lower() in _AUTHENTICITY_WORDS,
                       taken={name_col, code_col}, keyword="authentic")

    def agrees_with_subject_age(c: int) -> int:
        n = 0
        for _, f in table.rows:
            known = subjects.get(f[code_col]) if code_col < len(f) else None
            if known and known[1] is not None and c < len(f) and _INT.fullmatch(f[c]):
                n += abs(int(f[c]) - known[1]) <= 3
        return n

    age_col = _locate(table, "an integer age", lambda v, f: bool(_INT.fullmatch(v)) and 1 <= int(v) <= 120,
                      taken={name_col, code_col, auth_col}, keyword="age", tie_break=agrees_with_subject_age)
    labels: list[VideoLabel] = []
    seen: dict[str, int] = {}
    for lineno, fields in table.rows:
        where = table.where(lineno)
        name = _value(table, lineno, fields, name_col, "file name")
        match = _video_match(name)
        if match is None:
            raise ReleaseFormatError(f"{where}: {name!r} is not a video name like 001_spontaneous_smile_1.mp4.")
        code = _value(table, lineno, fields, code_col, "subject code")
        if code != match.group(1):
            raise ReleaseFormatError(f"{where}: the subject code {code!r} disagrees with the file name {name!r}.")
        kind_word = _value(table, lineno, fields, auth_col, "authenticity").lower()
        authenticity = _AUTHENTICITY_WORDS.get(kind_word)
        if authenticity is None:
            raise ReleaseFormatError(f"{where}: authenticity {kind_word!r} is not spontaneous or deliberate.")
        if authenticity != match.group(2).lower():
            raise ReleaseFormatError(f"{where}: authenticity {kind_word!r} disagrees with the file name {name!r}.")
        age = parse_age(_value(table, lineno, fields, age_col, "age"), where)
        if code not in subjects:
            raise ReleaseFormatError(f"{where}: subject {code} is not in the subject details file, so its "
                                     "gender is unknown.")
        seq_id = match.group(0)
        if seq_id.lower() in seen:
            raise ReleaseFormatError(f"{where}: {name} is listed twice (also on line {seen[seq_id.lower()]}).")
        seen[seq_id.lower()] = lineno
        labels.append(VideoLabel(seq_id, None, code, subjects[code][0], float(age), authenticity,
                                 f"{path.name}:{lineno}"))
    return labels


def find_release_file(release: Path, word: str) -> Path:
    """The one ``*<word>*.txt`` below ``release`` (case-insensitive), e.g. ``word="file_details"``."""
    hits = sorted(p for p in release.rglob("*") if p.is_file() and p.suffix.lower() == ".txt"
                  and word in p.name.lower().replace(" ", "_").replace("-", "_"))
    if not hits:
        raise ReleaseFormatError(f"no *{word}*.txt file under {release} (expected "
                                 f"UvA-NEMO_Smile_Database_{word.title()}.txt as shipped).")
    if len(hits) > 1:
        raise ReleaseFormatError(f"several *{word}*.txt files under {release}: "
                                 f"{', '.join(str(h.relative_to(release)) for h in hits)}; keep one.")
    return hits[0]


def index_videos(root: Path) -> dict[str, Path]:
    """``{lower-case stem: path}`` of every video file below ``root``; a stem found twice is an error."""
    found: dict[str, Path] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES and not p.name.startswith("."):
            key = p.stem.lower()
            if key in found:
                raise ReleaseFormatError(f"two video files for {p.stem}: {found[key]} and {p}; keep one.")
            found[key] = p
    return found


def read_release(release: Path) -> tuple[list[VideoLabel], list[tuple[str, str]]]:
    """The release folder → (labelled videos with their paths, [(video, reason)] not usable).

    Listed videos without a file and video files that are not listed are returned as skipped.
    """
    if not release.is_dir():
        raise ReleaseFormatError(f"{release} is not a folder.")
    subjects = read_subject_details(find_release_file(release, "subject_details"))
    labels = read_file_details(find_release_file(release, "file_details"), subjects)
    videos = index_videos(release)
    skipped: list[tuple[str, str]] = []
    items: list[VideoLabel] = []
    for lab in labels:
        path = videos.pop(lab.seq_id.lower(), None)
        if path is None:
            skipped.append((lab.seq_id, f"listed ({lab.source}) but no video file was found under {release}"))
        else:
            items.append(VideoLabel(lab.seq_id, path, lab.subject, lab.gender, lab.age, lab.authenticity, lab.source))
    for key, path in sorted(videos.items()):
        reason = ("not listed in the file details, so it has no labels" if _VIDEO_NAME.fullmatch(key)
                  else "not a release video name (NNN_kind_smile_K)")
        skipped.append((str(path.relative_to(release)), reason))
    return items, skipped


# --- other sources (--videos/--labels) -----------------------------------------------------------
def read_labels(path: Path) -> list[dict[str, str]]:
    """Rows as dicts with lower-cased keys (plus ``_line``); CSV if the header has commas, else whitespace."""
    text = path.read_text(encoding="utf-8-sig")
    numbered = [(i + 1, ln) for i, ln in enumerate(text.splitlines()) if ln.strip()]
    if not numbered:
        raise SystemExit(f"{path} is empty")
    lines = [ln for _, ln in numbered]
    if "," in lines[0] or ";" in lines[0]:
        dialect = csv.Sniffer().sniff(lines[0], delimiters=",;")
        rows = list(csv.DictReader(lines, dialect=dialect))
    else:
        header = re.split(r"\s+", lines[0].strip())
        rows = [dict(zip(header, re.split(r"\s+", ln.strip()), strict=False)) for ln in lines[1:]]
    out = []
    for (lineno, _), r in zip(numbered[1:], rows, strict=False):
        row = {k.strip().lower(): (v or "").strip() for k, v in r.items() if k and isinstance(v, str | None)}
        row["_line"] = f"line {lineno} of {path.name}"
        out.append(row)
    return out


def _col(row: dict[str, str], names: tuple[str, ...]) -> str | None:
    for n in names:
        if n in row and row[n] != "":
            return row[n]
    return None


def subject_of(video: Path) -> str:
    return video.stem.split("_", 1)[0]


def normalise_gender(value: str, where: str = "") -> str:
    gender = _LEGACY_GENDER_WORDS.get(value.strip().lower())
    if gender is None:
        extra = " (numeric gender codes are ambiguous and are not guessed)" if value.strip().isdigit() else ""
        raise ReleaseFormatError(f"{where + ': ' if where else ''}unknown gender value {value!r}{extra}; "
                                 f"use {_GENDER_HELP}.")
    return gender


def _authenticity_of(video: Path, row: dict[str, str]) -> str:
    value = _col(row, ("authenticity", "kind", "type"))
    if value is not None:
        if value.lower() not in _AUTHENTICITY_WORDS:
            raise ReleaseFormatError(f"{row['_line']}: authenticity {value!r} is not spontaneous or deliberate.")
        return _AUTHENTICITY_WORDS[value.lower()]
    m = _VIDEO_NAME.search(video.stem)
    return m.group(2).lower() if m else ""


def match_labels(videos: list[Path], rows: list[dict[str, str]]) -> list[VideoLabel]:
    """One :class:`VideoLabel` per video with a label row (matched by file name, or by subject)."""
    by_stem = {v.stem.lower(): v for v in videos}
    out: dict[Path, VideoLabel] = {}
    for row in rows:
        where = row.get("_line", "")
        gender, age = _col(row, ("gender", "sex")), _col(row, ("age", "age_years"))
        if gender is None or age is None:
            log.warning("%s: no gender or age; row ignored", where or row)
            continue
        name = _col(row, ("filename", "file", "video", "name"))
        if name is not None:
            video = by_stem.get(Path(name).stem.lower()) or by_stem.get(name.lower())
            matched = [video] if video is not None else []
            if not matched:
                log.warning("no video for label row %r (%s)", name, where)
        else:
            subject = _col(row, ("subject", "subject_id", "id"))
            matched = [v for v in videos if subject is not None and subject_of(v).lstrip("0") == subject.lstrip("0")]
        try:
            age_value = float(age)
        except ValueError:
            raise ReleaseFormatError(f"{where}: age {age!r} is not a number.") from None
        g = normalise_gender(gender, where)
        for v in matched:
            out[v] = VideoLabel(v.stem, v, subject_of(v), g, age_value, _authenticity_of(v, row), where)
    return [out[v] for v in sorted(out, key=str)]


# --- one video -----------------------------------------------------------------------------------
def frame_limit(max_duration: float) -> int:
    return math.ceil(max_duration * FRAMES_PER_SECOND_LIMIT) + 1


def read_whole_video(video_path: Path, *, max_side: int, max_duration: float):
    """:func:`fdin.media.read_video` at ``max_side`` that never returns a cut clip.

    Raises:
        MediaLimitError: longer than ``max_duration`` or too large to hold decoded.
        TruncatedMediaError: the decoder returned only part of the file (``Video.truncated``).
    """
    from fdin.errors import MediaLimitError
    from fdin.media import read_video

    try:
        video = read_video(video_path, max_duration=max_duration, max_frames=frame_limit(max_duration),
                           max_side=max_side, on_limit="error")
    except MediaLimitError as error:
        raise MediaLimitError(f"{video_path.name} exceeds a decoding limit ({str(error).split(';')[0]}); it was "
                              "skipped, not cut. Raise --max-duration or lower --max-side.") from None
    check_complete(video, video_path.name)
    return video


def check_complete(video, name: str) -> None:
    """Raise :class:`~fdin.errors.TruncatedMediaError` if ``video`` (a :class:`fdin.media.Video`) is cut."""
    from fdin.errors import TruncatedMediaError

    if getattr(video, "truncated", False):
        notes = " ".join(getattr(video, "notes", ())) or "the decoder flagged it as truncated."
        raise TruncatedMediaError(f"{name} could only be read in part ({len(video)} frames, "
                                  f"{video.duration:.1f} s): {notes} It was skipped, not cut.")


def track_landmarks(video_path: Path, backend, *, detect_every: int, max_duration: float,
                    max_side: int = DEFAULT_MAX_SIDE) -> tuple[np.ndarray, float]:
    """Video → ((T, 68, 2) float32 landmarks on a uniform grid at the video's fps, fps).

    Landmarks are in the decoded frame's pixels (longer side ``max_side``); FDIN's dynamics are
    normalised by the inter-ocular distance, so the scale does not matter downstream.
    """
    from fdin.dynamics import resample
    from fdin.errors import NoFaceError
    from fdin.perception import primary_track, track_faces

    video = read_whole_video(video_path, max_side=max_side, max_duration=max_duration)
    track = primary_track(track_faces(video, backend, detect_every=detect_every))
    if track is None or len(track) < 2:
        raise NoFaceError(f"no usable face track in {video_path.name}")
    times = np.asarray(video.timestamps, dtype=np.float64)[np.asarray(track.frame_indices)]
    _, landmarks = resample(track.landmarks_array(), times, float(video.fps))
    return landmarks.astype(np.float32), float(video.fps)


def settings_key(args: argparse.Namespace) -> str:
    """The settings a sequence depends on (stored in each ``.npz``; a mismatch means recompute)."""
    return json.dumps({"max_side": args.max_side, "max_duration": args.max_duration, "backend": args.backend,
                       "detect_every": args.detect_every}, sort_keys=True)


def verify_sequence(path: Path, settings: str | None = None) -> bool:
    """True if ``path`` is a complete sequence file (made with ``settings``, when given)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            lm, fps = z["landmarks"], float(z["fps"])
            made_with = str(z["prepare"]) if "prepare" in z.files else None
    except Exception:  # missing, half-written or not an npz: recompute
        return False
    ok = (lm.dtype == np.float32 and lm.ndim == 3 and lm.shape[0] >= 2 and lm.shape[1:] == (68, 2)
          and bool(np.isfinite(lm).all()) and math.isfinite(fps) and fps > 0)
    return ok and (settings is None or made_with == settings)


def save_sequence(path: Path, landmarks: np.ndarray, fps: float, *, source: str, settings: str) -> None:
    """Write atomically (temporary file + rename), so an interrupted run never leaves a half file."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.partial")
    with open(tmp, "wb") as handle:
        np.savez_compressed(handle, landmarks=landmarks.astype(np.float32), fps=np.float32(fps),
                            source=np.str_(source), prepare=np.str_(settings))
    os.replace(tmp, path)


@dataclass(frozen=True)
class _Task:
    seq_id: str
    video: str
    out: str
    settings: str
    backend: str | None
    detect_every: int
    max_duration: float
    max_side: int


def process_one(task: _Task) -> tuple[str, str | None, float]:
    """Prepare one video; returns (seq_id, skip reason or None, seconds). Runs in a worker process."""
    from fdin.perception import get_backend

    t0 = time.perf_counter()
    try:
        landmarks, fps = track_landmarks(Path(task.video), get_backend(task.backend), detect_every=task.detect_every,
                                         max_duration=task.max_duration, max_side=task.max_side)
    except FdinError as error:
        return task.seq_id, f"{type(error).__name__}: {error}", time.perf_counter() - t0
    except Exception as error:  # an unexpected failure on one file must not lose the others' work
        log.exception("unexpected error on %s", task.video)
        return task.seq_id, f"unexpected {type(error).__name__}: {error}", time.perf_counter() - t0
    save_sequence(Path(task.out), landmarks, fps, source=Path(task.video).name, settings=task.settings)
    return task.seq_id, None, time.perf_counter() - t0


def _init_worker() -> None:
    """One thread per worker process: the pool is the parallelism."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover - cv2 ships with the perception stack
        pass


def run_tasks(tasks: list[_Task], workers: int, *, progress: bool, done_before: int = 0
              ) -> dict[str, str | None]:
    """Run ``tasks`` on ``workers`` processes with one progress bar; ``{seq_id: skip reason or None}``."""
    from tqdm import tqdm

    results: dict[str, str | None] = {}
    total = len(tasks) + done_before
    with tqdm(total=total, initial=done_before, desc="videos", unit="video", disable=not progress,
              dynamic_ncols=True) as bar:
        def record(seq_id: str, reason: str | None) -> None:
            results[seq_id] = reason
            bar.update(1)
            bar.set_postfix(skipped=sum(r is not None for r in results.values()), refresh=False)

        if workers <= 1 or len(tasks) <= 1:
            for task in tasks:
                seq_id, reason, _ = process_one(task)
                record(seq_id, reason)
            return results
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # spawn: a clean interpreter per worker (no forked ONNX Runtime/OpenCV thread state)
        with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), initializer=_init_worker,
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(process_one, t) for t in tasks]
            try:
                for fut in as_completed(futures):
                    seq_id, reason, _ = fut.result()
                    record(seq_id, reason)
            except BaseException:  # Ctrl-C or a dead worker: do not wait for the queued videos
                for fut in futures:
                    fut.cancel()
                raise
    return results


# --- outputs -------------------------------------------------------------------------------------
def summarise(rows: list[VideoLabel], skipped: list[tuple[str, str]]) -> dict:
    subjects: dict[str, str] = {r.subject: r.gender for r in rows}
    ages = [r.age for r in rows]
    return {
        "videos": len(rows), "subjects": len(subjects),
        "videos_by_gender": dict(sorted(Counter(r.gender for r in rows).items())),
        "subjects_by_gender": dict(sorted(Counter(subjects.values()).items())),
        "age_range": [min(ages), max(ages)] if ages else None,
        "videos_by_authenticity": dict(sorted(Counter(r.authenticity or "unknown" for r in rows).items())),
        "skipped": [{"video": v, "reason": why} for v, why in skipped],
    }


def log_summary(summary: dict, out: Path) -> None:
    s = summary
    age = f"{s['age_range'][0]:g}-{s['age_range'][1]:g}" if s["age_range"] else "n/a"
    log.info("%d sequences of %d subjects written to %s", s["videos"], s["subjects"], out)
    log.info("  gender: subjects %s; videos %s", _counts(s["subjects_by_gender"]), _counts(s["videos_by_gender"]))
    log.info("  age at recording: %s years; authenticity: %s", age, _counts(s["videos_by_authenticity"]))
    if s.get("throughput", {}).get("processed"):
        t = s["throughput"]
        log.info("  processed %d videos in %.0f s with %d worker(s): %.1f videos/minute", t["processed"],
                 t["seconds"], t["workers"], t["videos_per_minute"])
    log.info("  %d skipped (also in skipped.csv)%s", len(s["skipped"]), ":" if s["skipped"] else "")
    for item in s["skipped"]:
        log.info("    %s: %s", item["video"], item["reason"])


def _counts(c: dict) -> str:
    return ", ".join(f"{v} {k}" for k, v in c.items()) or "none"


def write_outputs(out: Path, rows: list[VideoLabel], skipped: list[tuple[str, str]],
                  extra: dict | None = None) -> dict:
    rows = sorted(rows, key=lambda r: r.seq_id)
    with open(out / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(LABEL_COLUMNS)
        writer.writerows(r.row() for r in rows)
    with open(out / "skipped.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "reason"])
        writer.writerows(skipped)
    summary = {**summarise(rows, skipped), **(extra or {})}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log_summary(summary, out)
    return summary


def _shard_file(out: Path, k: int, n: int) -> Path:
    return out / "shards" / f"{k}-of-{n}.json"


def merge_shards(out: Path, items: list[VideoLabel], pre_skipped: list[tuple[str, str]], settings: str) -> dict:
    """Check every ``OUT/shards/K-of-N.json`` exists and write labels.csv/skipped.csv/summary.json."""
    files = sorted((out / "shards").glob("*-of-*.json"))
    totals = {int(m.group(2)) for f in files if (m := re.fullmatch(r"(\d+)-of-(\d+)\.json", f.name))}
    if len(totals) != 1:
        raise SystemExit(f"--merge needs the shard records of one --shard K/N split in {out / 'shards'} "
                         f"(found {'none' if not totals else 'splits into ' + ', '.join(map(str, sorted(totals)))}).")
    n = totals.pop()
    missing = [k for k in range(1, n + 1) if not _shard_file(out, k, n).exists()]
    if missing:
        raise SystemExit(f"not every shard has finished: no record for shard {', '.join(map(str, missing))} of {n} "
                         f"in {out / 'shards'}; run the missing shards, then --merge again.")
    reasons: dict[str, str] = {}
    seconds, processed, workers = 0.0, 0, 0
    for k in range(1, n + 1):
        record = json.loads(_shard_file(out, k, n).read_text())
        if record.get("settings") != settings:
            raise SystemExit(f"shard {k} of {n} was made with other settings ({record.get('settings')}); "
                             f"this merge uses {settings}.")
        reasons.update(record["skipped"])
        seconds = max(seconds, record["throughput"]["seconds"])
        processed += record["throughput"]["processed"]
        workers += record["throughput"]["workers"]
    rows, skipped = [], list(pre_skipped)
    for item in items:
        if verify_sequence(out / "sequences" / f"{item.seq_id}.npz", settings):
            rows.append(item)
        elif item.seq_id in reasons:
            skipped.append((item.video.name if item.video else item.seq_id, reasons[item.seq_id]))
        else:
            raise SystemExit(f"{item.seq_id} has neither a verified sequence nor a skip reason although every "
                             "shard finished; re-run its shard (it resumes).")
    throughput = {"processed": processed, "seconds": round(seconds, 1), "workers": workers, "shards": n,
                  "videos_per_minute": round(60 * processed / seconds, 2) if seconds else 0.0}
    return write_outputs(out, rows, skipped, {"throughput": throughput})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t_start = time.perf_counter()
    try:
        if args.release is not None:
            items, pre_skipped = read_release(args.release)
        else:
            videos = sorted(p for p in args.videos.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
            items, pre_skipped = match_labels(videos, read_labels(args.labels)), []
    except ReleaseFormatError as error:
        raise SystemExit(f"error: {error}") from None
    if args.limit:
        items = items[: args.limit]
    if not items:
        source = args.release or f"{args.videos} (check {args.labels})"
        raise SystemExit(f"no labelled videos found under {source}")
    settings = settings_key(args)
    (args.out / "sequences").mkdir(parents=True, exist_ok=True)
    if args.merge:
        merge_shards(args.out, items, pre_skipped, settings)
        return 0
    mine = items if args.shard is None else items[args.shard[0] - 1::args.shard[1]]
    todo, done = [], []
    for item in mine:
        target = args.out / "sequences" / f"{item.seq_id}.npz"
        if verify_sequence(target, settings):
            done.append(item)
        else:
            assert item.video is not None
            todo.append(_Task(item.seq_id, str(item.video), str(target), settings, args.backend,
                              args.detect_every, args.max_duration, args.max_side))
    if done:
        log.info("resuming: %d of %d sequences are already complete", len(done), len(mine))
    t0 = time.perf_counter()
    results = run_tasks(todo, args.workers, progress=not args.quiet, done_before=len(done))
    seconds = time.perf_counter() - t0
    throughput = {"processed": len(todo), "seconds": round(seconds, 1), "workers": min(args.workers, max(len(todo), 1)),
                  "videos_per_minute": round(60 * len(todo) / seconds, 2) if todo and seconds > 0 else 0.0}
    by_id = {item.seq_id: item for item in mine}
    skipped = [(by_id[s].video.name, why) for s, why in sorted(results.items()) if why is not None]  # type: ignore[union-attr]
    if args.shard is not None:
        k, n = args.shard
        (args.out / "shards").mkdir(exist_ok=True)
        record = {"shard": k, "of": n, "settings": settings, "throughput": throughput,
                  "done": sorted([i.seq_id for i in done] + [s for s, why in results.items() if why is None]),
                  "skipped": {s: why for s, why in sorted(results.items()) if why is not None}}
        path = _shard_file(args.out, k, n)
        tmp = path.with_suffix(".partial")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, path)
        log.info("shard %d/%d: %d sequences, %d skipped, %.1f videos/minute; run --merge when all shards are done",
                 k, n, len(record["done"]), len(record["skipped"]), throughput["videos_per_minute"])
        return 0
    rows = done + [by_id[s] for s, why in results.items() if why is None]
    write_outputs(args.out, rows, pre_skipped + skipped,
                  {"throughput": throughput, "seconds_total": round(time.perf_counter() - t_start, 1),
                   "settings": json.loads(settings)})
    if not rows:
        raise SystemExit("no sequence could be prepared; see skipped.csv")
    return 0


__all__ = ["ReleaseFormatError", "VideoLabel", "check_complete", "main", "match_labels", "read_release",
           "read_whole_video", "track_landmarks", "verify_sequence"]

if __name__ == "__main__":
    sys.exit(main())

"""``python -m fdin faces IMAGE_OR_VIDEO [--json OUT]``: faces, landmarks, pose, apparent gender/age, expression.

The input is read as a photo when its first bytes are an image format's (JPEG, PNG, WebP, GIF, BMP,
TIFF; HEIC gets a clear refusal), otherwise as a video. A photo gives every face
(``{"faces", "backend", "image"}``), each with its ``expression`` (FER2013 model: ``label``, ``probs``
over the 7 classes, ``model``); a video gives face tracks (``{"tracks", "primary_track", "frames",
"coverage", "backend"}``) with per-track frame ranges, lost frames, an appearance summary and an ``expression``
(the FER2013 probabilities averaged over up to 5 evenly spread frames of the track). A video is
tracked whole, with flat memory whatever its length (``--max-duration S``: its first S seconds; the
JSON's ``coverage`` and a note on stderr say which seconds were tracked and why), as ``fdin analyze``.

Without ``--json`` the JSON goes to stdout (indented for a photo, compact for a video). With ``--json OUT`` it is written to OUT and a one-line
summary goes to stdout. A photo without faces is a valid answer (``"faces": []``, exit 0); a file
that cannot be read exits with code 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fdin.commands.analyze import seconds_arg
from fdin.results import FacesResult

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".pnm",
                  ".heic", ".heif", ".avif")
HELP = "detect faces (68 landmarks, head pose, apparent gender/age, expression) in a photo, or track them in a video"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, metavar="IMAGE_OR_VIDEO", help="a photo or a video file")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the JSON here (stdout gets a summary)")
    parser.add_argument("--backend", default="auto", choices=["auto", "offline", "offline-dlib", "insightface"],
                        help="face backend (auto: insightface when buffalo_l is on disk, else offline)")
    parser.add_argument("--models-dir", type=Path, metavar="DIR",
                        help="insightface buffalo_l directory (default: FDIN_INSIGHTFACE_DIR, weights/insightface/"
                             "buffalo_l, ~/.insightface/models/buffalo_l)")
    parser.add_argument("--detect-every", type=_positive_int, default=5, metavar="N",
                        help="video: run the detector every N frames, fit landmarks in between; a face it finds "
                             "is followed back to the frame it appears in (default 5)")
    parser.add_argument("--smooth", action="store_true", help="video: One-Euro smoothing of the landmarks")
    parser.add_argument("--max-duration", type=seconds_arg, metavar="SECONDS",
                        help="video: track only the first SECONDS (default: the whole video, with flat memory "
                             "whatever its length)")


def is_image_file(path: Path) -> bool:
    """True when the bytes say image; when they say neither image nor video (text, SVG, empty), the
    file name decides, so a broken ``.jpg`` is reported in words about photos."""
    from fdin.media.sniff import IMAGE_KINDS as _IMAGE_KINDS
    from fdin.media.sniff import SNIFF_BYTES as _SNIFF_BYTES
    from fdin.media.sniff import VIDEO_KINDS as _VIDEO_KINDS
    from fdin.media.sniff import sniff as _sniff

    try:
        with path.open("rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except OSError:  # missing/unreadable: let the loader the name suggests say so in plain words
        return path.suffix.lower() in IMAGE_SUFFIXES
    kind = _sniff(head)
    if kind in _IMAGE_KINDS:
        return True
    if kind in _VIDEO_KINDS:
        return False
    return path.suffix.lower() in IMAGE_SUFFIXES


def faces_of_image(path: Path, backend: Any) -> FacesResult:
    from fdin.faces import faces_in
    from fdin.media import load_image

    return faces_in(load_image(path), backend)


def tracks_of_video(path: Path, backend: Any, *, detect_every: int, smooth: bool, quiet: bool,
                    max_duration: float | None = None) -> dict[str, Any]:
    """Face tracks of the whole video (``max_duration``: its first seconds; ``coverage`` says which).

    Two streamed reads through a ring of :data:`fdin.analyze.RING_FRAMES` frames, so memory does not
    grow with the length (only the landmarks do): the first tracks every frame, the second gives the
    few frames per track that appearance and expression are estimated on (:func:`fdin.faces.track_expressions`).
    """
    from fdin.analyze import RING_FRAMES, FrameSample
    from fdin.faces import track_expressions
    from fdin.media import open_video_stream, whole_video_limits
    from fdin.perception import primary_track, track_appearance, track_faces
    from fdin.results import Coverage

    reason = f"--max-duration {max_duration:g} was given" if max_duration is not None else ""
    limits = whole_video_limits(RING_FRAMES, max_duration, reason)
    bar = None
    if not quiet:
        from tqdm import tqdm

        bar = tqdm(desc="faces", unit="frame", file=sys.stderr, leave=False)

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = max(total, done)
            bar.update(done - bar.n)

    try:
        with open_video_stream(path, limits) as stream:
            frames = FrameSample(stream, keep=1)  # one iterator over the stream, with its length hint
            # a face a detection finds is followed back to the frame it appears in (as fdin analyze does)
            tracks = track_faces(frames, backend, detect_every=detect_every, smooth=smooth, fps=stream.nominal_fps,
                                 follow_back=detect_every - 1, appearance_frames=0, progress=progress)
            frames.drain()  # the tracker may stop early: read to the end (a decode error raises here)
            video = stream.video
    finally:
        if bar is not None:
            bar.close()
    with open_video_stream(path, limits) as again:
        expressions = track_expressions(tracks, again, backend)
    primary = primary_track(tracks)
    out_tracks = []
    for t, expression in zip(tracks, expressions, strict=True):
        summary = track_appearance(t)
        out_tracks.append({**t.to_json_dict(), "appearance": summary.to_json_dict() if summary else None,
                           "expression": expression.to_json_dict() if expression else None})
    coverage = Coverage.of_video(video)
    return {
        "tracks": out_tracks,
        "primary_track": primary.track_id if primary else None,
        "frames": {"count": len(video.timestamps), "fps": round(float(video.fps), 3), "width": video.width,
                   "height": video.height, "duration_s": round(video.duration, 3), "truncated": video.truncated,
                   "notes": list(video.notes), "detect_every": detect_every, "smoothed": smooth,
                   "timestamps_s": [round(float(t), 4) for t in video.timestamps]},
        "coverage": coverage.to_json_dict(),
        "backend": backend.info(),
    }


def run(args: argparse.Namespace) -> int:
    from fdin.perception import get_backend

    backend = get_backend(args.backend, models_dir=args.models_dir)
    quiet = getattr(args, "quiet", False)
    if is_image_file(args.input):
        faces = faces_of_image(args.input, backend)
        result = faces.to_json_dict()
        summary = f"{len(faces.faces)} face(s) in {args.input.name} ({backend.name} backend)"
        failed = [f"faces[{i}]" for i, f in enumerate(faces.faces) if f.fit_score is not None and f.fit_score < 0.5]
        if failed:
            summary += (f"; the landmark fit failed on {', '.join(failed)} (fit_score < 0.5: its landmarks, "
                        "pose and expression are not reliable)")
    else:
        result = tracks_of_video(args.input, backend, detect_every=args.detect_every, smooth=args.smooth,
                                 quiet=quiet, max_duration=getattr(args, "max_duration", None))
        for note in [] if quiet or result["coverage"]["whole_video"] else result["coverage"]["notes"]:
            print(f"note: {note}", file=sys.stderr)
        summary = (f"{len(result['tracks'])} face track(s) in {result['frames']['count']} frames of "
                   f"{args.input.name} ({backend.name} backend)")
    # photos: indented; videos: compact (68 landmarks per face per frame add up)
    text = json.dumps(result, indent=2) if "faces" in result else json.dumps(result, separators=(",", ":"))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
        print(f"{summary} -> {args.json}")
    else:
        print(text)
    return 0

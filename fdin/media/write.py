"""Writing videos: :func:`write_video`, browser-playable H.264 MP4 (constant or variable frame rate)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np


def write_video(
    frames: Sequence[np.ndarray] | np.ndarray,
    fps: float,
    path: str | os.PathLike[str],
    *,
    crf: int = 23,
    preset: str = "veryfast",
    timestamps: Sequence[float] | np.ndarray | None = None,
) -> Path:
    """Write RGB ``uint8`` frames as a browser-playable H.264 (``yuv420p``) MP4 and return its path.

    ``frames``: ``(N, H, W, 3)`` array or a list of ``(H, W, 3)`` arrays, all the same size. Odd widths
    or heights are padded by one edge-replicated pixel (4:2:0 needs even sizes). ``timestamps``
    (seconds, increasing) write a variable-frame-rate file; otherwise frames are ``1/fps`` apart.
    The file is written next to ``path`` and renamed into place, with ``+faststart`` so browsers can
    start playing before the download ends. No metadata from the input is copied.
    """
    import av

    if not fps or fps <= 0 or not math.isfinite(fps):
        raise ValueError("fps must be a positive number")
    seq = list(frames) if not isinstance(frames, np.ndarray) else frames
    if len(seq) == 0:
        raise ValueError("write_video needs at least one frame")
    first = np.asarray(seq[0])
    if first.ndim != 3 or first.shape[2] != 3 or first.dtype != np.uint8:
        raise ValueError(f"frames must be (H, W, 3) uint8 RGB, got {first.shape} {first.dtype}")
    height, width = first.shape[:2]
    pad_h, pad_w = height % 2, width % 2
    if timestamps is not None and len(timestamps) != len(seq):
        raise ValueError("timestamps must have one entry per frame")
    rate = Fraction(fps).limit_denominator(1001)
    out = Path(path)
    tmp = out.with_name(f".{out.stem}.partial{out.suffix or '.mp4'}")
    time_base = Fraction(1, 90000) if timestamps is not None else None
    try:
        with av.open(str(tmp), mode="w", format="mp4", container_options={"movflags": "+faststart"}) as c:
            stream = c.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = width + pad_w, height + pad_h, "yuv420p"
            stream.options = {"crf": str(int(crf)), "preset": preset}
            if time_base is not None:
                stream.codec_context.time_base = time_base
                stream.time_base = time_base
            last_pts = -1
            for i, item in enumerate(seq):
                arr = np.asarray(item)
                if arr.shape != first.shape or arr.dtype != np.uint8:
                    raise ValueError(f"frame {i} has shape {arr.shape} {arr.dtype}, expected {first.shape} uint8")
                if pad_h or pad_w:
                    arr = np.pad(arr, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
                if time_base is not None:
                    assert timestamps is not None
                    pts = max(last_pts + 1, round(float(timestamps[i]) / time_base))
                    vf.pts, vf.time_base, last_pts = pts, time_base, pts
                for packet in stream.encode(vf):
                    c.mux(packet)
            for packet in stream.encode():
                c.mux(packet)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


"""R-19: print the native decoder and framework versions in every CI log, and fail below the floors
documented in docs/reliability.md (security fixes ship only in recent releases)."""

from __future__ import annotations

import re
import shutil
import subprocess
from importlib.metadata import version

import pytest
from packaging.version import Version

FLOORS = {  # distribution -> minimum version (docs/reliability.md, "Version floors")
    "gradio": "6.20",
    "torch": "2.6",
    "pillow": "12",
    "av": "18.1",
    "onnxruntime": "1.20",
    "opencv-python-headless": "4.10",
}


def _installed(dist: str) -> str | None:
    for name in (dist, dist.replace("-headless", "")):
        try:
            return version(name)
        except Exception:
            continue
    return None


def test_print_native_library_versions() -> None:
    import av
    import cv2
    import PIL

    lines = [f"PyAV {av.__version__}: " + ", ".join(f"{k} {'.'.join(map(str, v)) if isinstance(v, tuple) else v}"
                                                   for k, v in sorted(av.library_versions.items())),
             f"Pillow {PIL.__version__}"]
    ffmpeg_lines = [" ".join(ln.split()) for ln in cv2.getBuildInformation().splitlines()
                    if ln.strip().startswith(("FFMPEG:", "avcodec:", "avformat:", "avutil:", "swscale:"))]
    lines.append(f"OpenCV {cv2.__version__}: " + ("; ".join(ffmpeg_lines) or "no FFmpeg line"))
    system = shutil.which("ffmpeg")
    if system:
        first = subprocess.run([system, "-version"], capture_output=True, text=True, timeout=20).stdout.splitlines()
        lines.append(f"system ffmpeg: {first[0] if first else '?'}")
    else:
        lines.append("system ffmpeg: not installed")
    for dist in FLOORS:
        lines.append(f"{dist} {_installed(dist)}")
    print("\n".join(lines))
    assert av.library_versions.get("libavcodec"), "PyAV reports its bundled FFmpeg"
    assert any(re.match(r"avcodec: YES \(\d", ln) for ln in ffmpeg_lines), "OpenCV reports its FFmpeg"


@pytest.mark.parametrize("dist", list(FLOORS))
def test_version_floor(dist: str) -> None:
    installed = _installed(dist)
    assert installed is not None, f"{dist} is not installed"
    assert Version(installed) >= Version(FLOORS[dist]), f"{dist} {installed} is below the floor {FLOORS[dist]}"

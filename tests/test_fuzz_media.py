"""Hypothesis fuzzing of the media decoders on mutated valid files (reliability R-37).

The only allowed outcomes are a valid array / Video or a :class:`~fdin.errors.MediaError`. Each
fuzzing run executes inside one :func:`fdin.isolation.run_isolated` child: a native crash in FFmpeg or
Pillow then surfaces as a ``WorkerCrashedError`` finding (with the offending input saved next to the
test's temporary directory) instead of killing pytest, and starting one child per run rather than per
example keeps the cost to ~0.3 s. ``max_examples`` is bounded so this runs in every CI job; a nightly
atheris job can reuse :func:`check_image_bytes` / :func:`check_video_bytes` as targets.
"""

from __future__ import annotations

from pathlib import Path

import media_corpus as mc
import pytest

from fdin.errors import WorkerCrashedError
from fdin.isolation import IsolatedCallError, run_isolated

IMAGE_SEEDS = ("seed.png", "seed.jpg", "seed.gif", "seed.webp", "seed.bmp", "seed.tif")
VIDEO_SEEDS = ("seed.mp4", "seed.webm", "seed.avi")


# --- fuzz targets (also usable from atheris) --------------------------------------------------------------
def check_image_bytes(data: bytes) -> None:
    import numpy as np

    from fdin.errors import MediaError
    from fdin.media import load_image

    try:
        image = load_image(data)
    except MediaError as exc:
        assert str(exc).strip(), "MediaError without a message"
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] >= 1 and image.shape[1] >= 1


def check_video_bytes(data: bytes, path: Path) -> None:
    import numpy as np

    from fdin.errors import MediaError
    from fdin.media import read_video

    path.write_bytes(data)
    try:
        video = read_video(path, max_duration=10.0, max_frames=120, max_side=256)
    except MediaError as exc:
        assert str(exc).strip(), "MediaError without a message"
        return
    assert video.frames.dtype == np.uint8 and video.frames.ndim == 4 and len(video) >= 1
    assert video.timestamps.shape == (len(video),) and np.all(np.diff(video.timestamps) > 0)
    assert max(video.width, video.height) <= 256


def _mutations(seeds: list[bytes]):
    from hypothesis import strategies as st

    op = st.tuples(st.sampled_from(["flip", "byte", "word", "cut", "insert", "delete", "dup"]),
                   st.integers(min_value=0, max_value=1 << 30), st.binary(min_size=1, max_size=16))

    @st.composite
    def mutated(draw) -> bytes:
        data = bytearray(draw(st.sampled_from(seeds)))
        # Bias positions towards headers, where parsers make their decisions.
        for kind, where, blob in draw(st.lists(op, min_size=1, max_size=6)):
            if not data:
                break
            span = len(data) if where % 3 == 0 else min(len(data), 256)
            pos = where % span
            if kind == "flip":
                data[pos] ^= 1 << (where % 8)
            elif kind == "byte":
                data[pos] = blob[0]
            elif kind == "word":      # big numbers in size/dimension fields
                data[pos: pos + 4] = (b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\x00\x01")[where % 3]
            elif kind == "cut":
                del data[pos:]
            elif kind == "insert":
                data[pos:pos] = blob
            elif kind == "delete":
                del data[pos: pos + len(blob)]
            else:
                data[pos:pos] = data[pos: pos + 64]
        return bytes(data)

    return mutated()


def fuzz_images(seed_paths: list[Path], crash_dir: Path, max_examples: int) -> int:
    """Runs in the child: Hypothesis over mutated image seeds; returns the number of examples."""
    from hypothesis import HealthCheck, given, settings

    seeds = [Path(p).read_bytes() for p in seed_paths]
    current = Path(crash_dir) / "current-image.bin"
    count = 0

    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(_mutations(seeds))
    def run(data: bytes) -> None:
        nonlocal count
        count += 1
        current.write_bytes(data)      # survives a native crash, for the report
        check_image_bytes(data)

    run()
    current.unlink(missing_ok=True)
    return count


def fuzz_videos(seed_paths: list[Path], crash_dir: Path, max_examples: int) -> int:
    """Runs in the child: Hypothesis over mutated video seeds; returns the number of examples."""
    from hypothesis import HealthCheck, given, settings

    seeds = [Path(p).read_bytes() for p in seed_paths]
    current = Path(crash_dir) / "current-video.bin"
    work = Path(crash_dir) / "work.bin"
    count = 0

    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(_mutations(seeds))
    def run(data: bytes) -> None:
        nonlocal count
        count += 1
        current.write_bytes(data)
        check_video_bytes(data, work)

    run()
    current.unlink(missing_ok=True)
    work.unlink(missing_ok=True)
    return count


# --- tests -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return mc.seed_files(tmp_path_factory.mktemp("seeds"))


def _run_fuzzer(fn, seed_paths: list[Path], tmp_path: Path, max_examples: int) -> int:
    try:
        return run_isolated(fn, seed_paths, tmp_path, max_examples, timeout=120.0)
    except WorkerCrashedError as exc:
        kept = [str(p) for p in sorted(tmp_path.glob("current-*.bin"))]  # pytest keeps failed tmp dirs
        pytest.fail(f"native crash while decoding a mutated file ({exc}); crashing input: {kept} "
                    "(add it to tests/media_corpus.py)")
    except IsolatedCallError as exc:
        pytest.fail(f"fuzzing found a non-MediaError outcome:\n{exc.remote_traceback}")


def test_fuzz_load_image(seeds: dict[str, Path], tmp_path: Path) -> None:
    assert _run_fuzzer(fuzz_images, [seeds[n] for n in IMAGE_SEEDS], tmp_path, max_examples=100) >= 100


def test_fuzz_read_video(seeds: dict[str, Path], tmp_path: Path) -> None:
    assert _run_fuzzer(fuzz_videos, [seeds[n] for n in VIDEO_SEEDS], tmp_path, max_examples=80) >= 80


def test_seeds_are_valid(seeds: dict[str, Path], tmp_path: Path) -> None:
    for name in IMAGE_SEEDS:
        check_image_bytes(seeds[name].read_bytes())
    for name in VIDEO_SEEDS:
        check_video_bytes(seeds[name].read_bytes(), tmp_path / "v.bin")

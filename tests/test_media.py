"""fdin.media against a generated corpus of valid, hostile and edge-case files (R-11..R-17, R-20, R-36)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import av
import media_corpus as mc
import numpy as np
import pytest

from fdin import media
from fdin.errors import (
    FdinError,
    MediaError,
    MediaLimitError,
    ProcessingTimeoutError,
    UnsupportedMediaError,
)
from fdin.media import Video, ensure_rgb_uint8, load_image, probe_video, read_video, write_video

CASE_NAMES = [spec.name for spec in mc.CASES]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, mc.MediaCase]:
    return {case.name: case for case in mc.generate_corpus(tmp_path_factory.mktemp("corpus"))}


def _read(case: mc.MediaCase) -> np.ndarray | Video:
    return load_image(case.path) if case.kind == "image" else read_video(case.path)


def _assert_friendly(exc: BaseException, path: Path) -> None:
    message = str(exc)
    assert message and message[0].isupper() and message.rstrip().endswith("."), message
    assert "Errno" not in message and "Traceback" not in message and "0x" not in message, message
    assert path.name not in message and str(path.parent) not in message, "messages never echo file names"


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


# --- every corpus case -----------------------------------------------------------------------------------
def test_the_corpus_drives_fdin_into_every_outcome(corpus: dict[str, mc.MediaCase]) -> None:
    """Reading the whole corpus with fdin reaches every outcome the media layer has: photos and videos
    decoded, and each user-facing media error at least once (not just: the corpus lists them)."""
    import fdin.errors

    outcomes: set[str] = set()
    for case in corpus.values():
        try:
            result = _read(case)
        except MediaError as error:
            outcomes.add(type(error).__name__)
        else:
            outcomes.add("image" if isinstance(result, np.ndarray) else "video")
    media_errors = {name for name, obj in vars(fdin.errors).items()
                    if isinstance(obj, type) and issubclass(obj, MediaError) and obj is not MediaError}
    assert outcomes >= {"image", "video"} | media_errors, sorted(outcomes)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_corpus_case(corpus: dict[str, mc.MediaCase], name: str) -> None:
    case = corpus[name]
    if case.expect == "ok":
        result = _read(case)
        frames = result if isinstance(result, np.ndarray) else result.frames
        if isinstance(result, np.ndarray):
            assert frames.ndim == 3
        assert frames.dtype == np.uint8 and frames.shape[-1] == 3 and frames.flags.c_contiguous
        if isinstance(result, Video):
            assert len(result) >= 1 and result.timestamps.shape == (len(result),)
            assert result.timestamps[0] == 0.0 and np.all(np.diff(result.timestamps) > 0)
            assert result.truncated == case.meta.get("truncated", False), result.notes
            assert bool(result.notes) == result.truncated
            if "frames" in case.meta:
                assert len(result) == case.meta["frames"]
            json.dumps(result.to_json_dict())
        else:
            if "size" in case.meta:
                assert frames.shape[:2] == case.meta["size"]
            if "pixel" in case.meta:
                assert np.abs(frames[0, 0].astype(int) - case.meta["pixel"]).max() <= 3, frames[0, 0]
    else:
        assert isinstance(case.expect, type)
        with pytest.raises(case.expect) as info:
            _read(case)
        assert type(info.value) is case.expect, f"{type(info.value).__name__}: {info.value}"
        _assert_friendly(info.value, case.path)


@pytest.mark.parametrize("name", [s.name for s in mc.CASES if s.kind == "image"])
def test_images_from_bytes_match_paths(corpus: dict[str, mc.MediaCase], name: str) -> None:
    case = corpus[name]
    data = case.path.read_bytes()
    if case.expect == "ok":
        np.testing.assert_array_equal(load_image(data), load_image(case.path))
    else:
        with pytest.raises(case.expect):  # type: ignore[arg-type]
            load_image(data)


# --- video behaviour -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["rot90", "rot180", "rot270", "rot90_mirrored"])
def test_rotation_metadata_gives_upright_frames(corpus: dict[str, mc.MediaCase], name: str) -> None:
    reference = read_video(corpus["rot0_reference"].path)
    case = corpus[name]
    video = read_video(case.path)
    assert video.rotation == case.meta["rotation"]
    assert video.mirrored == case.meta.get("mirrored", False)
    assert video.frames.shape == reference.frames.shape == (10, mc.VIDEO_H, mc.VIDEO_W, 3)
    assert (video.width, video.height) == (mc.VIDEO_W, mc.VIDEO_H)
    assert _mad(video.frames, reference.frames) < 4.0
    # and the red marker really is in the top-left corner
    corner = video.frames[0, : mc.VIDEO_H // 4, : mc.VIDEO_W // 4].reshape(-1, 3).mean(axis=0)
    assert corner[0] > 180 and corner[1] < 80 and corner[2] < 80, corner


def test_probe_reports_rotation_without_trusting_more(corpus: dict[str, mc.MediaCase]) -> None:
    info = probe_video(corpus["rot90"].path)
    assert info.rotation == 90 and info.codec == "h264" and (info.width, info.height) == (mc.VIDEO_H, mc.VIDEO_W)
    assert probe_video(corpus["webm_no_duration"].path).declared_duration is None
    json.dumps(info.to_json_dict())


@pytest.mark.parametrize("name", ["vfr", "vfr_webm"])
def test_vfr_timestamps_follow_pts(corpus: dict[str, mc.MediaCase], name: str) -> None:
    video = read_video(corpus[name].path)
    np.testing.assert_allclose(video.timestamps, np.array(mc.VFR_PTS_MS) / 1000.0, atol=1.5e-3)
    # the dot moves 3 px per written frame: frame i must be written frame i, whatever its time
    for i in (0, 5, 11):
        x = (i * 3) % (mc.VIDEO_W - 4)
        green = video.frames[i, mc.VIDEO_H // 2 - 1, x + 1: x + 3]
        assert green[:, 1].min() > 150, (i, green)


def test_webm_without_duration_is_read(corpus: dict[str, mc.MediaCase]) -> None:
    video = read_video(corpus["webm_no_duration"].path)
    assert len(video) == 20 and not video.truncated
    assert video.duration == pytest.approx(20 / 30, abs=0.01)


def test_resampling_picks_nearest_frames_on_a_grid(corpus: dict[str, mc.MediaCase]) -> None:
    path = corpus["mp4_h264"].path            # 30 frames at 30 fps = 1.0 s
    ten = read_video(path, target_fps=10)
    assert len(ten) == 10 and ten.fps == 10 and ten.source_fps == pytest.approx(30)
    np.testing.assert_allclose(np.diff(ten.timestamps), 0.1, atol=1e-6)
    full = read_video(path)
    np.testing.assert_array_equal(ten.frames, full.frames[::3])  # picks, never blends
    odd = read_video(path, target_fps=7.5)
    assert len(odd) == 8                          # grid 0, 0.133, ..., 0.933 < 1.0 s
    grid = np.arange(8) / 7.5
    assert np.abs(odd.timestamps - grid).max() <= 1 / 60 + 1e-9
    faster = read_video(path, target_fps=60)      # faster than the source: every frame once, no copies
    assert len(faster) == 30 and np.all(np.diff(faster.timestamps) > 0)
    assert faster.fps == pytest.approx(30)


def test_resampling_vfr_never_duplicates(corpus: dict[str, mc.MediaCase]) -> None:
    video = read_video(corpus["vfr"].path, target_fps=10)
    assert len(set(video.timestamps.tolist())) == len(video)
    assert set(np.round(video.timestamps, 3)) <= {round(p / 1000, 3) for p in mc.VFR_PTS_MS}


def test_duration_limit_cuts_with_a_note(corpus: dict[str, mc.MediaCase]) -> None:
    path = corpus["long_70s"].path
    video = read_video(path)
    assert video.truncated and "60 s" in video.notes[0]
    assert len(video) == 60 * mc.LONG_CLIP_FPS == video.decoded_frames
    assert video.timestamps[-1] < 60.0 and video.duration == pytest.approx(60.0)
    with pytest.raises(MediaLimitError, match="longer than 60 s"):
        read_video(path, on_limit="error")
    short = read_video(path, max_duration=5.0, target_fps=1)
    assert len(short) == 5 and short.truncated


def test_lying_duration_header_is_ignored(corpus: dict[str, mc.MediaCase]) -> None:
    path = corpus["long_header_says_1s"].path
    assert probe_video(path).declared_duration == pytest.approx(1.0, abs=0.1)
    video = read_video(path)
    assert len(video) == 60 * mc.LONG_CLIP_FPS and video.truncated and "60 s" in video.notes[0]


def test_frame_limit_and_deadline(corpus: dict[str, mc.MediaCase]) -> None:
    path = corpus["mp4_h264"].path
    video = read_video(path, max_frames=10)
    assert len(video) == 10 and video.truncated and "10 frames" in video.notes[0]
    with pytest.raises(MediaLimitError):
        read_video(path, max_frames=10, on_limit="error")
    hurried = read_video(path, deadline_s=0.0)
    assert len(hurried) == 1 and hurried.truncated
    with pytest.raises(ProcessingTimeoutError):
        read_video(path, deadline_s=0.0, on_limit="error")


def test_output_memory_budget_counts_as_a_limit(corpus: dict[str, mc.MediaCase]) -> None:
    frame_bytes = mc.VIDEO_W * mc.VIDEO_H * 3
    video = read_video(corpus["mp4_h264"].path, max_output_bytes=5 * frame_bytes)
    assert len(video) == 5 and video.truncated


def test_decoder_threads_change_speed_not_frames(corpus: dict[str, mc.MediaCase]) -> None:
    path = corpus["mp4_h264"].path
    auto, single = read_video(path), read_video(path, threads=1)
    assert np.array_equal(auto.frames, single.frames) and np.array_equal(auto.timestamps, single.timestamps)
    with pytest.raises(ValueError, match="threads"):
        read_video(path, threads=-1)


def test_frames_can_be_decoded_into_a_buffer_of_the_callers(corpus: dict[str, mc.MediaCase]) -> None:
    path = corpus["mp4_h264"].path
    asked: list[tuple[int, ...]] = []

    def allocate(shape: tuple[int, int, int, int]) -> np.ndarray:
        asked.append(shape)
        return np.full(shape, 7, np.uint8)

    with media.open_video_stream(path, target_fps=10, allocate=allocate) as stream:
        for _ in stream:
            pass
    ref = read_video(path, target_fps=10)
    assert len(asked) == 1 and asked[0][1:] == ref.frames.shape[1:] and asked[0][0] >= len(ref)
    assert np.array_equal(stream.video.frames, ref.frames)


def test_downscale_keeps_aspect_and_input_limit(corpus: dict[str, mc.MediaCase]) -> None:
    path = corpus["mp4_h264"].path
    small = read_video(path, max_side=48)
    assert small.frames.shape[1:] == (32, 48, 3) and (small.width, small.height) == (48, 32)
    rotated = read_video(corpus["rot90"].path, max_side=48)
    assert rotated.frames.shape[1:] == (32, 48, 3)
    with pytest.raises(MediaLimitError, match="per side"):
        read_video(path, max_input_side=64)


def test_tail_cut_mp4_returns_the_readable_part(corpus: dict[str, mc.MediaCase]) -> None:
    video = read_video(corpus["mp4_tail_cut"].path)
    assert 0 < len(video) < 60 and video.truncated and "incomplete" in video.notes[0]


def test_hls_is_refused_by_ffmpeg_whitelist_too(corpus: dict[str, mc.MediaCase],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Defence in depth: even if byte sniffing were fooled, the demuxer whitelist refuses HLS/png_pipe."""
    monkeypatch.setattr(media.container, "sniff", lambda head: "mp4")
    for name in ("hls_playlist", "png_as_mp4", "ffconcat_list"):
        with pytest.raises(UnsupportedMediaError):
            read_video(corpus[name].path)


def test_hostile_file_name_is_not_echoed(tmp_path: Path) -> None:
    path = tmp_path / "<img src=x onerror=alert(1)>.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 100)
    with pytest.raises(MediaError) as info:
        read_video(path)
    assert "<" not in str(info.value) and "onerror" not in str(info.value)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="could not be found"):
        read_video(tmp_path / "nope.mp4")
    with pytest.raises(UnsupportedMediaError):
        read_video(tmp_path)
    with pytest.raises(MediaLimitError):
        load_image(b"\x89PNG" + b"\0" * 100, max_bytes=10)


def test_moving_content_round_trips_frame_by_frame(tmp_path: Path) -> None:
    """Every frame of a 640x360 30 fps clip comes back in order at its own time (speed is measured by
    ``make bench``, not here)."""
    rng = np.random.default_rng(0)
    base = (rng.random((360, 640, 3)) * 255).astype(np.uint8)
    frames = [np.roll(base, 4 * i, axis=1) for i in range(60)]
    path = write_video(frames, 30, tmp_path / "moving.mp4")
    video = read_video(path)
    assert len(video) == 60
    np.testing.assert_allclose(video.timestamps, np.arange(60) / 30, atol=1e-3)
    shifts = [int(np.argmin([_mad(np.roll(base, s, axis=1), video.frames[k]) for s in (4 * k - 4, 4 * k, 4 * k + 4)]))
              for k in (1, 30, 59)]
    assert shifts == [1, 1, 1], "each decoded frame matches its own source frame, not a neighbour"


# --- writing ---------------------------------------------------------------------------------------------
def _smooth_frames(n: int, height: int, width: int) -> list[np.ndarray]:
    yy, xx = np.mgrid[0:height, 0:width]
    out = []
    for i in range(n):
        r = (128 + 100 * np.sin((xx + 2 * i) / 9.0)).astype(np.uint8)
        g = (128 + 100 * np.cos((yy - i) / 7.0)).astype(np.uint8)
        b = ((xx + yy + 3 * i) % 256).astype(np.uint8)
        out.append(np.stack([r, g, b], axis=-1))
    return out


def test_write_video_round_trip(tmp_path: Path) -> None:
    frames = _smooth_frames(24, 67, 99)                 # odd sizes: padded to 100 x 68
    path = write_video(frames, 24, tmp_path / "out.mp4")
    assert path == tmp_path / "out.mp4" and not list(tmp_path.glob(".*partial*"))
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.codec_context.width, stream.codec_context.height) == (100, 68)
    data = path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat"), "faststart: index before media data"
    video = read_video(path)
    assert len(video) == 24 and video.fps == pytest.approx(24)
    psnr = _psnr(video.frames[:, :67, :99], np.stack(frames))
    assert psnr > 30, psnr


def test_write_video_vfr_timestamps(tmp_path: Path) -> None:
    frames = _smooth_frames(len(mc.VFR_PTS_MS), 32, 48)
    stamps = np.array(mc.VFR_PTS_MS) / 1000.0
    path = write_video(np.stack(frames), 30, tmp_path / "vfr.mp4", timestamps=stamps)
    np.testing.assert_allclose(read_video(path).timestamps, stamps, atol=1e-3)


def test_write_video_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_video([], 30, tmp_path / "x.mp4")
    with pytest.raises(ValueError):
        write_video([np.zeros((8, 8), np.uint8)], 30, tmp_path / "x.mp4")
    with pytest.raises(ValueError):
        write_video([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 10, 3), np.uint8)], 30, tmp_path / "x.mp4")
    assert not list(tmp_path.iterdir())


# --- image behaviour -------------------------------------------------------------------------------------
def test_exif_orientations_all_upright(corpus: dict[str, mc.MediaCase]) -> None:
    upright = mc.marker_frame(48, 32)
    for orientation in range(1, 9):
        image = load_image(corpus[f"exif_orientation_{orientation}"].path)
        assert image.shape == (32, 48, 3), orientation
        assert _mad(image, upright) < 4.0, orientation


def test_16bit_png_is_scaled_not_clipped(corpus: dict[str, mc.MediaCase]) -> None:
    image = load_image(corpus["png_16bit_grey"].path)
    row = image[0, :, 0].astype(int)
    expected = np.round(np.linspace(0, 65535, 256).round() / 257).astype(int)
    assert np.abs(row - expected).max() <= 1
    assert row[0] == 0 and row[-1] == 255 and len(np.unique(row)) > 200
    assert np.all(np.diff(row) >= 0)
    assert np.all(image[..., 0] == image[..., 1])


def test_rgba_composited_on_white(corpus: dict[str, mc.MediaCase]) -> None:
    image = load_image(corpus["png_rgba"].path)
    assert tuple(image[0, 0]) == (255, 255, 255)        # fully transparent -> white
    assert tuple(image[0, 1]) == (255, 0, 0)            # opaque red stays red
    assert np.all(np.abs(image[0, 2].astype(int) - 127) <= 1)  # half-transparent black -> mid grey
    palette = load_image(corpus["png_palette"].path)
    assert tuple(palette[0, 0]) == (255, 255, 255) and tuple(palette[1, 1]) == (0, 200, 0)


def test_huge_png_header_is_rejected_cheaply(corpus: dict[str, mc.MediaCase]) -> None:
    def rss_mb() -> float:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * 4096 / 2**20

    data = corpus["png_huge_header"].path.read_bytes()
    assert len(data) < 100
    before = rss_mb()
    for _ in range(20):
        with pytest.raises(MediaLimitError):
            load_image(data)
    assert rss_mb() - before < 50  # refused from the header: the declared pixels are never allocated


def test_image_limit_is_configurable() -> None:
    png = mc.png_header_only(300, 300)
    with pytest.raises(MediaLimitError, match=r"limit is 0\.05 MP"):
        load_image(png, max_pixels=50_000)


def test_ensure_rgb_uint8() -> None:
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert ensure_rgb_uint8(grey).shape == (3, 4, 3)
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)
    out = ensure_rgb_uint8(rgba)
    assert tuple(out[0, 0]) == (255, 0, 0) and tuple(out[1, 1]) == (255, 255, 255)
    assert ensure_rgb_uint8(np.full((2, 2), 65535, np.uint16)).max() == 255
    assert ensure_rgb_uint8(np.full((2, 2, 3), 0.5, np.float32))[0, 0, 0] == 128
    with pytest.raises(ValueError):
        ensure_rgb_uint8(np.zeros((2, 2, 2), np.uint8))


def test_importing_media_is_cheap() -> None:
    import subprocess
    import sys

    code = "import sys, fdin.media, fdin.isolation; print([m for m in ('av', 'PIL', 'torch', 'cv2') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "[]"


def test_errors_are_fdin_errors(corpus: dict[str, mc.MediaCase]) -> None:
    for case in corpus.values():
        if case.expect != "ok":
            assert issubclass(case.expect, FdinError)  # type: ignore[arg-type]
            assert re.match(r"^[A-Z]", case.expect.__name__)  # type: ignore[union-attr]


def test_costly_codecs_get_their_own_decoder_threads() -> None:
    """``heavy_threads`` applies to the codecs that cost more to decode than to track (HEVC, VP9, AV1),
    ``threads`` to the rest; unset, every stream gets ``threads``. The analyzer's decode worker asks
    for two threads on those codecs whatever the core count."""
    from fdin.analyze import DynamicsAnalyzer
    from fdin.media.limits import DecodeLimits

    limits = DecodeLimits(threads=1, heavy_threads=2)
    assert [limits.decoder_threads(c) for c in ("h264", "hevc", "vp9", "libdav1d", "mpeg4")] == [1, 2, 2, 2, 1]
    assert DecodeLimits(threads=1).decoder_threads("hevc") == 1
    with pytest.raises(ValueError, match="threads"):
        DecodeLimits(heavy_threads=17)
    with DynamicsAnalyzer() as analyzer:
        worker = analyzer.decode_limits()
    assert worker.decoder_threads("hevc") >= 2 and worker.decoder_threads("h264") >= 1
    with DynamicsAnalyzer(decode_worker=False) as analyzer:  # the app's workers: two analyses share the cores
        assert analyzer.decode_limits().decoder_threads("hevc") == 1

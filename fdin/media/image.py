"""Photos: :func:`load_image` (Pillow, restricted plugins, size checked from the header before any
pixel is decoded, EXIF orientation, alpha on white, high bit depths scaled) and
:func:`ensure_rgb_uint8` for arrays already in memory."""

from __future__ import annotations

import io
import logging
import os
import warnings
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from fdin.errors import (
    EmptyMediaError,
    FdinError,
    MediaError,
    MediaLimitError,
    TruncatedMediaError,
    UnsupportedMediaError,
)
from fdin.media.limits import DEFAULT_MAX_IMAGE_BYTES, DEFAULT_MAX_IMAGE_PIXELS, IMAGE_FORMATS
from fdin.media.sniff import IMAGE_KINDS, SNIFF_BYTES, image_kind_message, mib, sniff, stat_regular_file

log = logging.getLogger(__name__)

def load_image(
    source: str | os.PathLike[str] | bytes,
    *,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    max_side: int | None = None,
) -> np.ndarray:
    """Decode a photo into an upright ``(H, W, 3) uint8`` RGB array.

    ``source`` is a file path or the file's bytes. The type is decided from the bytes (JPEG, PNG,
    WebP, GIF, BMP, TIFF, PBM/PGM/PPM; see :data:`IMAGE_FORMATS`); the declared size is checked against
    ``max_pixels`` before any pixel is decoded. EXIF orientation is applied; RGBA/LA/transparent
    palettes are composited on white; 16-bit and float data are scaled to 8 bits; CMYK, palette,
    1-bit and grey become RGB; animated images give their first frame. Tiny images (1x1) are returned
    as they are: callers decide what is too small. ``max_side``: if given, the upright image is
    downscaled (aspect kept, area filter) so neither side exceeds it — in the decoding process, so
    the caller never holds more than ``max_side`` x ``max_side`` pixels.

    Raises a :class:`~fdin.errors.MediaError` subclass with a plain-language message.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise EmptyMediaError("The image file is empty (0 bytes).")
        if len(data) > max_bytes:
            raise MediaLimitError(f"The image file is {mib(len(data))}; the limit is {mib(max_bytes)}.")
        return _decode_image(io.BytesIO(data), data[:SNIFF_BYTES], max_pixels, max_side)
    path = Path(source)
    stat_regular_file(path, max_bytes, "image")
    try:
        fh = path.open("rb")
    except OSError:
        raise MediaError("The image file could not be opened.") from None
    with fh:
        head = fh.read(SNIFF_BYTES)
        fh.seek(0)
        return _decode_image(fh, head, max_pixels, max_side)


def _decode_image(fh: BinaryIO, head: bytes, max_pixels: int, max_side: int | None = None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    kind = sniff(head)
    if kind not in IMAGE_KINDS or kind == "heif":
        raise UnsupportedMediaError(image_kind_message(kind))
    try:
        # catch_warnings is process-global state (not thread-safe before Python 3.14); the only
        # filters added here are stricter, and isolated decoding runs one image per process anyway.
        with warnings.catch_warnings():
            # Pillow warns (and only raises at 2x) above Image.MAX_IMAGE_PIXELS: make it an error.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")  # e.g. truncated TIFF
            img = Image.open(fh, formats=list(IMAGE_FORMATS))
            width, height = img.size
            if width <= 0 or height <= 0:
                raise TruncatedMediaError("The image file is damaged: it declares no pixels.")
            if width * height > max_pixels:
                raise MediaLimitError(
                    f"The image is {width} x {height} pixels ({width * height / 1e6:.3g} MP); "
                    f"the limit is {max_pixels / 1e6:.3g} MP. Please upload a smaller photo.")
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
            img.load()
            img = _exif_upright(img)
            rgb = _to_rgb(img)
            if max_side is not None and max(rgb.size) > max_side:
                scale = max_side / max(rgb.size)
                size = (max(1, round(rgb.size[0] * scale)), max(1, round(rgb.size[1] * scale)))
                rgb = rgb.resize(size, Image.Resampling.BOX, reducing_gap=2.0)
            array = np.asarray(rgb, dtype=np.uint8)
    except FdinError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise MediaLimitError("The image has too many pixels to process safely; "
                              "please upload a smaller photo.") from None
    except UnidentifiedImageError:
        raise UnsupportedMediaError(image_kind_message(kind if kind not in IMAGE_KINDS else None)) from None
    except MemoryError:
        raise MediaLimitError("The image needs more memory than allowed; please upload a smaller photo.") from None
    except Exception as exc:  # Pillow's C and Python decoders raise many types on hostile input
        log.debug("image decode failed: %s", type(exc).__name__)
        raise TruncatedMediaError("The image file is damaged or incomplete and could not be read.") from None
    if array.ndim != 3 or array.shape[2] != 3:  # defensive: _to_rgb always returns RGB
        raise TruncatedMediaError("The image file is damaged or incomplete and could not be read.")
    return np.ascontiguousarray(array)


def _exif_upright(img: Any) -> Any:
    """Apply the EXIF orientation tag; a malformed EXIF block is ignored (the pixels are still fine)."""
    from PIL import ImageOps

    try:
        upright = ImageOps.exif_transpose(img)
    except Exception as exc:  # hostile EXIF: keep the stored orientation rather than fail
        log.debug("ignoring unreadable EXIF orientation: %s", type(exc).__name__)
        return img
    return img if upright is None else upright


def _to_rgb(img: Any) -> Any:
    """Any Pillow mode to RGB: alpha on white, 16-bit/float scaled (not clipped) to 8 bits."""
    from PIL import Image

    mode = img.mode
    if mode == "RGB":
        return img
    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        background.alpha_composite(rgba)
        return background.convert("RGB")
    if mode.startswith("I;16") or mode in ("I", "F"):
        grey = _scale_to_uint8(np.asarray(img), mode)
        return Image.fromarray(grey).convert("RGB")  # 2-D uint8 -> mode L
    return img.convert("RGB")  # 1, L, P, CMYK, YCbCr, LAB, HSV, RGBX


def _scale_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """Map one high-depth channel to uint8: 16-bit by /257, float [0,1] by *255, else min-max."""
    if mode.startswith("I;16"):
        return ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    data = values.astype(np.float64)
    data[~np.isfinite(data)] = 0.0
    lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
    if mode == "I" and lo >= 0 and hi <= 255:
        scaled = data
    elif mode == "I" and lo >= 0 and hi <= 65535:
        scaled = data / 257.0
    elif mode == "F" and lo >= 0 and hi <= 1.0:
        scaled = data * 255.0
    elif hi > lo:
        scaled = (data - lo) * (255.0 / (hi - lo))
    else:
        scaled = np.zeros_like(data)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def ensure_rgb_uint8(array: np.ndarray) -> np.ndarray:
    """Normalise an in-memory image array to ``(H, W, 3) uint8`` RGB.

    Accepts ``(H, W)`` grey, ``(H, W, 1)``, ``(H, W, 3)`` RGB and ``(H, W, 4)`` RGBA (composited on
    white); ``uint16`` is scaled by 1/257, floats in [0, 1] by 255 (other floats are min-max scaled),
    bool to 0/255. Raises ``ValueError`` for other shapes (a programming error, not a user error).
    """
    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"expected an (H, W[, 1|3|4]) image array, got shape {np.shape(array)}")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype == np.uint16:
        arr = _scale_to_uint8(arr, "I;16")
    elif np.issubdtype(arr.dtype, np.floating):
        arr = _scale_to_uint8(arr, "F")
    elif arr.dtype != np.uint8:
        arr = _scale_to_uint8(arr, "I")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 4:
        alpha = arr[:, :, 3:4].astype(np.uint16)
        arr = ((arr[:, :, :3].astype(np.uint16) * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)
    return np.ascontiguousarray(arr, dtype=np.uint8)

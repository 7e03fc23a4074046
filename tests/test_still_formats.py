"""Every common still format Pillow reads safely: real face photos converted to
PPM/PGM/PBM (binary and plain), BMP, TIFF, GIF (first frame), WebP, PNG and JPEG load through the
same checked loader and give the same faces; a video where a photo is expected, and a photo where a
video is expected, are refused with the right sentence.

Photos: face_recognition's ``obama.jpg`` (real, fetched by :mod:`tests.real_media`; skipped offline)
and insightface's ``t1.jpg`` (a real group photo inside the installed wheel)."""

from __future__ import annotations

import importlib.resources
import io
import json

import numpy as np
import pytest
from PIL import Image

from fdin.errors import MediaLimitError, UnsupportedMediaError
from fdin.media import load_image, read_video
from fdin.media.sniff import sniff
from tests import real_media

T1 = importlib.resources.files("insightface") / "data" / "images" / "t1.jpg"


def _plain_netpbm(image: Image.Image, kind: str) -> bytes:
    """Plain (ASCII) P1/P2/P3 bytes: Pillow writes only the binary kinds."""
    if kind == "P1":
        bits = (np.asarray(image.convert("1")) == 0).astype(int)  # PBM: 1 is black
        body = "\n".join(" ".join(map(str, row)) for row in bits)
        width, height, maxval = image.width, image.height, ""
    else:
        pixels = np.asarray(image.convert("L" if kind == "P2" else "RGB"))
        body = "\n".join(" ".join(map(str, row.ravel())) for row in pixels)
        width, height, maxval = image.width, image.height, "255\n"
    return f"{kind}\n# a comment, as some writers add\n{width} {height}\n{maxval}{body}\n".encode()


def _encode(image: Image.Image, kind: str) -> bytes:
    if kind in ("P1", "P2", "P3"):
        return _plain_netpbm(image, kind)
    buf = io.BytesIO()
    if kind == "PPM":
        image.convert("RGB").save(buf, "PPM")
    elif kind == "PGM":
        image.convert("L").save(buf, "PPM")
    elif kind == "PBM":
        image.convert("1").save(buf, "PPM")
    elif kind == "GIF":  # two frames: the first is the photo, the second a blank
        image.convert("RGB").save(buf, "GIF", save_all=True,
                                  append_images=[Image.new("RGB", image.size, (255, 255, 255))])
    elif kind == "TIFF16":  # 16-bit greyscale TIFF
        Image.fromarray(np.asarray(image.convert("L")).astype(np.uint16) * 257).save(buf, "TIFF")
    else:
        image.convert("RGB").save(buf, kind, **({"quality": 95} if kind in ("JPEG", "WEBP") else {}))
    return buf.getvalue()


COLOUR = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF", "PPM", "P3")
GREY = ("PGM", "P2", "TIFF16")
BILEVEL = ("PBM", "P1")


@pytest.fixture(scope="module")
def portrait() -> Image.Image:
    """A real face: obama.jpg cut to 150 x 225 around the face (the issue's PPM was that size)."""
    image = Image.open(real_media.path("obama.jpg")).convert("RGB")
    from fdin.perception import detect_faces

    (face,) = detect_faces(np.asarray(image))
    x0, y0, x1, y1 = face.bbox
    cx, cy, side = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0)
    box = (cx - side * 0.75, cy - side * 1.1, cx + side * 0.75, cy + side * 1.15)
    return image.crop(tuple(int(v) for v in box)).resize((150, 225), Image.Resampling.LANCZOS)


@pytest.mark.parametrize("kind", COLOUR + GREY + BILEVEL)
def test_real_photo_in_every_format_loads_like_the_png(portrait, kind):
    data = _encode(portrait, kind)
    assert sniff(data[:512]) is not None and sniff(data[:512]) not in ("text", "xml", "html")
    array = load_image(data)
    reference = np.asarray(portrait if kind in COLOUR else portrait.convert("L").convert("RGB"), np.int16)
    assert array.shape == (225, 150, 3) and array.dtype == np.uint8
    if kind in BILEVEL:  # black and white: only the layout survives
        assert 0.2 < (array[..., 0] > 127).mean() < 0.8
        return
    tolerance = {"JPEG": 8, "WEBP": 8, "GIF": 14}.get(kind, 1.5)
    assert np.abs(array.astype(np.int16) - reference).mean() <= tolerance, kind


@pytest.mark.parametrize("kind", ("PPM", "P3", "PGM", "BMP", "TIFF", "GIF", "WEBP"))
def test_faces_found_in_each_format(portrait, kind, tmp_path, capsys):
    """``fdin faces`` on the 150 x 225 portrait saved in the format: one face, where the PNG's is."""
    from fdin.cli import main

    suffix = {"P3": ".ppm", "PGM": ".pgm", "TIFF": ".tif", "WEBP": ".webp"}.get(kind, f".{kind.lower()}")
    png, other = tmp_path / "face.png", tmp_path / f"face{suffix}"
    png.write_bytes(_encode(portrait, "PNG"))
    other.write_bytes(_encode(portrait, kind))
    boxes = []
    for path in (png, other):
        assert main(["faces", str(path), "--backend", "offline"]) == 0
        (face,) = json.loads(capsys.readouterr().out)["faces"]
        boxes.append(np.asarray(face["bbox"], float))
    assert np.abs(boxes[0] - boxes[1]).max() <= 6.0, (kind, boxes)


def test_gif_gives_its_first_frame_and_group_photo_as_ppm(tmp_path):
    from fdin.perception import detect_faces

    group = Image.open(str(T1)).convert("RGB")
    ppm = _encode(group, "PPM")
    faces_ppm = detect_faces(load_image(ppm))
    faces_jpg = detect_faces(np.asarray(group))
    assert len(faces_ppm) == len(faces_jpg) >= 4
    first = load_image(_encode(group, "GIF"))
    assert first.mean() < 250  # the photo, not the blank second frame


def test_netpbm_bombs_and_lies_are_refused(tmp_path):
    huge = b"P6\n20000 20000\n255\n" + b"\0" * 64  # a tiny file claiming 400 MP
    with pytest.raises(MediaLimitError, match="pixels"):
        load_image(huge)
    with pytest.raises(UnsupportedMediaError):  # prose that starts with a P and a digit is still prose
        load_image(b"P1 is the first point of the plan.\nP2 comes next.\n")
    path = tmp_path / "cut.ppm"
    path.write_bytes(b"P6\n150 225\n255\n" + b"\x80" * 1000)  # the header promises far more pixels
    with pytest.raises(Exception) as excinfo:
        load_image(path)
    assert "damaged or incomplete" in str(excinfo.value)


def test_the_right_sentence_for_the_wrong_kind(portrait, tmp_path, capsys):
    from fdin.cli import main
    from fdin.media import write_video

    photo = tmp_path / "portrait.ppm"
    photo.write_bytes(_encode(portrait, "P3"))  # plain PPM: all text bytes
    with pytest.raises(UnsupportedMediaError, match="picture, not a video"):
        read_video(photo)
    assert main(["analyze", str(photo)]) == 2
    err = capsys.readouterr().err
    assert "picture, not a video" in err and "text document" not in err
    clip = write_video(np.zeros((5, 32, 32, 3), np.uint8), 5.0, tmp_path / "clip.mp4")
    with pytest.raises(UnsupportedMediaError, match="video, not a photo") as excinfo:
        load_image(clip)
    assert "video input" in str(excinfo.value)
    assert main(["relate", str(clip)]) == 2
    assert "video, not a photo" in capsys.readouterr().err

"""Image inputs: every mode becomes RGB, EXIF orientation, arrays, and clear errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from attnprompt.errors import InputError
from attnprompt.images import MIN_SIDE, load_image


@pytest.mark.parametrize(
    "mode", ["RGB", "RGBA", "LA", "L", "1", "P", "CMYK", "YCbCr", "HSV", "I", "F", "I;16", "LAB", "PA"]
)
def test_every_mode_becomes_rgb_same_size(mode):
    base = Image.new("RGB", (21, 13), (200, 30, 90))
    img = base.convert(mode) if mode not in ("I;16", "PA", "LAB") else None
    if mode == "I;16":
        img = Image.fromarray(np.full((13, 21), 40000, np.uint16))
    if mode == "PA":
        img = base.convert("P").convert("PA")
    if mode == "LAB":
        img = Image.new("LAB", (21, 13), (50, 10, 10))
    out = load_image(img)
    assert out.mode == "RGB" and out.size == (21, 13)


def test_transparency_is_composited_over_white():
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    out = load_image(rgba)
    assert out.getpixel((5, 5)) == (255, 255, 255) and out.getpixel((0, 0)) == (255, 0, 0)
    p = Image.new("P", (10, 10), 1)
    p.putpalette([0, 0, 0, 10, 200, 10] + [0] * 762)
    p.info["transparency"] = 1
    assert load_image(p).getpixel((3, 3)) == (255, 255, 255)


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    a = np.array([[0, 32768, 65535, 1000]] * 10, np.uint16).repeat(3, axis=1)
    path = tmp_path / "deep.png"
    Image.fromarray(a).save(path)
    out = np.asarray(load_image(path))
    assert out[0, 0].tolist() == [0, 0, 0]
    assert out[0, 3].tolist() == [128, 128, 128]
    assert out[0, 6].tolist() == [255, 255, 255]
    assert out[0, 9].tolist() == [4, 4, 4]


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 10, 10))  # red block top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif, quality=95)
    out = load_image(path)
    assert out.size == (20, 40)
    r, g, b = out.getpixel((15, 4))  # the red block is now top-right
    assert r > 200 and b < 60


@pytest.mark.parametrize(
    "array,expected",
    [
        (np.full((9, 9), 7, np.uint8), (7, 7, 7)),
        (np.full((9, 9, 1), 7, np.uint8), (7, 7, 7)),
        (np.full((9, 9, 3), (1, 2, 3), np.uint8), (1, 2, 3)),
        (np.full((9, 9, 4), (10, 20, 30, 255), np.uint8), (10, 20, 30)),
        (np.full((9, 9), 65535, np.uint16), (255, 255, 255)),
        (np.full((9, 9, 3), 0.5, np.float32), (128, 128, 128)),
        (np.full((9, 9, 3), 200.0), (200, 200, 200)),
        (np.ones((9, 9), bool), (255, 255, 255)),
    ],
)
def test_arrays(array, expected):
    assert load_image(array).getpixel((4, 4)) == expected


@pytest.mark.parametrize(
    "array,match",
    [
        (np.zeros((3, 9, 9), np.uint8), "not an image"),
        (np.zeros((9, 9, 2), np.uint8), "not an image"),
        (np.zeros((9,), np.uint8), "not an image"),
        (np.full((9, 9), np.nan), "NaN"),
        (np.zeros((9, 9), np.complex64), "unsupported array dtype"),
    ],
)
def test_bad_arrays(array, match):
    with pytest.raises(InputError, match=match):
        load_image(array)


def test_bad_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(InputError, match="is a directory"):
        load_image(tmp_path)
    text = tmp_path / "notes.png"
    text.write_text("this is not a picture")
    with pytest.raises(InputError, match="not an image file PIL can read"):
        load_image(text)
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buf, "PNG")
    broken = tmp_path / "truncated.png"
    broken.write_bytes(buf.getvalue()[:60])
    with pytest.raises(InputError, match="truncated.png"):
        load_image(broken)
    with pytest.raises(InputError, match="cannot use an object of type int"):
        load_image(42)


@pytest.mark.parametrize("size", [(1, 1), (MIN_SIDE - 1, 100), (100, 2)])
def test_tiny_images_are_rejected(tmp_path, size):
    path = tmp_path / "tiny.png"
    Image.new("RGB", size).save(path)
    with pytest.raises(InputError, match=rf"image is {size[0]}×{size[1]} pixels; images must be at least"):
        load_image(path)


def test_over_the_pixel_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    import attnprompt.images as images

    path = tmp_path / "big.png"
    Image.new("RGB", (300, 200)).save(path)
    monkeypatch.setattr(images, "MAX_PIXELS", 50_000)
    with pytest.raises(InputError, match=r"300×200 = 0 Mpx, over the limit.*MAX_PIXELS"):
        load_image(path)


def test_saved_files_get_ordinary_permissions_not_temp_file_ones(tmp_path):
    """Outputs are written atomically through a temporary file; they must still end up with the
    permissions a plainly created file would get (0666 less the umask), not mkstemp's 0600."""
    import os
    import stat

    from attnprompt.files import save_array, save_image

    old = os.umask(0o022)
    try:
        img = save_image(Image.new("RGB", (4, 4)), tmp_path / "a.png")
        arr = save_array(np.zeros((2, 2), np.float32), tmp_path / "a.npy")
    finally:
        os.umask(old)
    assert stat.S_IMODE(img.stat().st_mode) == 0o644
    assert stat.S_IMODE(arr.stat().st_mode) == 0o644

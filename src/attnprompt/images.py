"""Turn whatever the user hands us (a path, a PIL image, an array) into an RGB PIL image.

Every entry point goes through :func:`load_image`, so mode handling, EXIF orientation
and size limits are decided once, here.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError

ImageLike = str | os.PathLike | Image.Image | np.ndarray

#: Smallest side we accept: below this an attribution map has no spatial extent to speak of.
MIN_SIDE = 8
#: Largest image we decode (pixels). PIL's own guard stops at ~179 Mpx; we check before decoding
#: and say how to raise the limit instead of failing with a "decompression bomb" error.
MAX_PIXELS = 400_000_000

_WHITE = (255, 255, 255)
_ORIENTATION = 0x0112


def load_image(source: ImageLike, *, name: str | None = None) -> Image.Image:
    """Return ``source`` as an RGB PIL image, EXIF orientation applied.

    Accepts a path, a PIL image of any mode (RGBA, LA, P, L, 1, CMYK, YCbCr, I;16, I, F …) or a
    numpy array (H×W, H×W×1, H×W×3 or H×W×4; uint8, uint16, bool or float in [0, 1]).
    Transparent pixels are composited over white; 16-bit data is scaled to 8 bits.

    >>> import numpy as np
    >>> load_image(np.zeros((16, 20, 3), np.uint8)).size
    (20, 16)
    """
    label = name or _describe(source)
    if isinstance(source, (str, os.PathLike)):
        image = _open_path(Path(source), label)
    elif isinstance(source, Image.Image):
        image = source
    elif isinstance(source, np.ndarray):
        image = _from_array(source, label)
    else:
        raise InputError(
            f"{label}: cannot use an object of type {type(source).__name__} as an image; "
            "give a file path, a PIL.Image.Image or a numpy array (H×W or H×W×3/4)"
        )
    _check_size(image.size, label)
    try:
        # Transpose only when the tag asks for it: exif_transpose copies even when it has nothing
        # to do, and a copy of a 100-Mpx image is 400 MB. Our own freshly opened file may be
        # transposed in place; a caller's image is never modified.
        if image.getexif().get(_ORIENTATION, 1) not in (0, 1):
            if isinstance(source, Image.Image):
                image = ImageOps.exif_transpose(image)
            else:
                ImageOps.exif_transpose(image, in_place=True)
        rgb = _to_rgb(image)
    except (OSError, ValueError) as e:  # truncated files fail here, at decode time
        raise InputError(f"{label}: the image data cannot be decoded ({e})") from e
    _check_size(rgb.size, label)
    return rgb


def _describe(source: object) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, Image.Image):
        return f"PIL image ({source.mode}, {source.size[0]}×{source.size[1]})"
    if isinstance(source, np.ndarray):
        return f"array {tuple(source.shape)} {source.dtype}"
    return type(source).__name__


def _open_path(path: Path, label: str) -> Image.Image:
    if not path.exists():
        raise InputError(f"{label}: no such file; give the path of an existing image file")
    if path.is_dir():
        raise InputError(f"{label}: is a directory, not an image file")
    try:
        # PIL refuses very large images as "decompression bombs" inside open(); we apply our
        # own limit from the header instead (see MAX_PIXELS), so lift PIL's for this call only.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                image = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except UnidentifiedImageError as e:
        raise InputError(
            f"{label}: not an image file PIL can read; give a PNG, JPEG, WebP, TIFF, BMP or GIF image"
        ) from e
    except PermissionError as e:
        raise InputError(f"{label}: cannot be read (permission denied)") from e
    except OSError as e:
        raise InputError(f"{label}: cannot be read as an image ({e})") from e
    _check_size(image.size, label)
    if image.format == "JPEG":
        # Decoding straight to RGB lets libjpeg skip a CMYK/YCbCr round trip on huge files.
        image.draft("RGB", image.size)
    try:
        image.load()
    except (OSError, ValueError) as e:
        raise InputError(f"{label}: the image data cannot be decoded ({e})") from e
    return image


def _check_size(size: tuple[int, int], label: str) -> None:
    w, h = size
    if w < MIN_SIDE or h < MIN_SIDE:
        raise InputError(
            f"{label}: image is {w}×{h} pixels; images must be at least {MIN_SIDE}×{MIN_SIDE} pixels"
        )
    if w * h > MAX_PIXELS:
        raise InputError(
            f"{label}: image is {w}×{h} = {w * h / 1e6:.0f} Mpx, over the limit of {MAX_PIXELS / 1e6:.0f} Mpx; "
            "downscale it first or raise attnprompt.images.MAX_PIXELS"
        )


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16") or mode == "I" or mode == "F":
        return _from_array(np.asarray(image), "image", source_mode=mode)
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "LAB":
        # PIL has no direct LAB→RGB conversion; go through an ICC-free approximation via numpy.
        return _lab_to_rgb(image)
    return image.convert("RGB")


def _lab_to_rgb(image: Image.Image) -> Image.Image:
    from PIL import ImageCms

    lab = ImageCms.createProfile("LAB")
    srgb = ImageCms.createProfile("sRGB")
    return ImageCms.profileToProfile(image, lab, srgb, outputMode="RGB")


def _from_array(array: np.ndarray, label: str, source_mode: str | None = None) -> Image.Image:
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise InputError(
            f"{label}: array of shape {tuple(a.shape)} is not an image; "
            "give H×W (gray), H×W×3 (RGB) or H×W×4 (RGBA), channels last"
        )
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise InputError(f"{label}: array of shape {tuple(a.shape)} is empty")
    a8 = _to_uint8(a, label, source_mode)
    if a8.ndim == 2:
        return Image.fromarray(a8, "L").convert("RGB")
    if a8.shape[-1] == 4:
        return _to_rgb(Image.fromarray(a8, "RGBA"))
    return Image.fromarray(a8, "RGB")


def _to_uint8(a: np.ndarray, label: str, source_mode: str | None) -> np.ndarray:
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)):
            raise InputError(f"{label}: array contains NaN or infinite values")
        top = 1.0 if float(a.max(initial=0.0)) <= 1.0 else 255.0
        return np.clip(np.rint(a * (255.0 / top)), 0, 255).astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer):
        if a.dtype == np.uint16 or (source_mode or "").startswith("I;16"):
            return np.clip(np.rint(a.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
        # 32-bit integer data (PIL mode "I"): 16-bit content if it exceeds 8-bit range.
        top = 255.0 if int(a.max(initial=0)) <= 255 else 65535.0
        return np.clip(np.rint(a.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)
    raise InputError(f"{label}: unsupported array dtype {a.dtype}; use uint8, uint16, bool or float")


def image_digest(image: Image.Image) -> str:
    """A digest of an image's pixels, size and mode: equal for the same picture loaded twice.

    >>> image_digest(Image.new("RGB", (2, 2))) == image_digest(Image.new("RGB", (2, 2)))
    True
    """
    h = hashlib.sha1()
    width, height = image.size
    rows = max(1, (1 << 22) // max(1, width * len(image.getbands())))
    for top in range(0, height, rows):  # a few MB at a time: the digest of the whole, without a copy of it
        h.update(image.crop((0, top, width, min(height, top + rows))).tobytes())
    h.update(f"{image.size}{image.mode}".encode())
    return h.hexdigest()

"""Turn whatever the user hands us (a path, a PIL image, an array) into an RGB PIL image.

Every entry point goes through :func:`load_image`, so mode handling, EXIF orientation
and size limits are decided once, here.
"""

from __future__ import annotations

import contextvars
import hashlib
import os
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

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
    return cast(Image.Image, ImageCms.profileToProfile(image, lab, srgb, outputMode="RGB"))  # None only in place


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


#: :func:`image_key` hashes a nearest-neighbour sample of at most this many pixels per side …
KEY_SAMPLE_SIDE = 64
#: … and checksums every pixel in row blocks of at most this many bytes: small enough to stay in the C heap (no
#: page faults for a fresh mapping per block) and in cache while the checksum reads it.
KEY_BLOCK_BYTES = 48 << 10


def image_key(image: Image.Image) -> str:
    """A cheap key of an image for in-memory caches (maps, CARVE's general pass, masks): equal for the same picture
    loaded twice, different for two pictures that differ anywhere — for an 8K photo a few hundredths of a second
    instead of the tenths :func:`image_digest` (a SHA-1 of every byte) takes.

    It is the SHA-1 of the size, the mode and a nearest-neighbour sample of at most
    :data:`KEY_SAMPLE_SIDE`² pixels, followed by the CRC-32 of every pixel. Why that is enough: two different
    pictures share a key only if they agree on every sampled pixel *and* their CRC-32s collide. A CRC-32 detects
    every change that spans at most 32 consecutive bits, so two images differing in one pixel (24 bits) — or in
    any one run of bytes that short — never share a key; for any other difference that leaves the sample the
    same (an edit between the sampled pixels), the CRC-32s collide for about one pair in 4·10⁹. Different photos
    differ in their samples already. Not for keys kept across runs (a store's): :func:`image_digest` is.

    >>> a = Image.new("RGB", (4000, 3000), "white"); b = a.copy(); b.putpixel((1234, 2345), (255, 255, 254))
    >>> image_key(a) == image_key(a.copy()), image_key(a) == image_key(b)
    (True, False)
    """
    width, height = image.size
    side = (min(width, KEY_SAMPLE_SIDE), min(height, KEY_SAMPLE_SIDE))
    sample = image.resize(side, Image.Resampling.NEAREST) if side != image.size else image
    h = hashlib.sha1(f"{image.size}{image.mode}".encode())
    h.update(sample.tobytes())
    crc = 0
    rows = max(1, KEY_BLOCK_BYTES // max(1, width * len(image.getbands())))
    for top in range(0, height, rows):
        crc = zlib.crc32(image.crop((0, top, width, min(height, top + rows))).tobytes(), crc)
    return f"{h.hexdigest()}-{crc:08x}"


def image_digest(image: Image.Image) -> str:
    """A digest of an image's pixels, size and mode: equal for the same picture loaded twice. A SHA-1 of every
    byte, for keys kept across runs (a store's); in-memory caches use the cheaper :func:`image_key`.

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


#: Within :func:`sharing_reductions`: (image object, factor) → (the image, its reduced copy).
_REDUCED: contextvars.ContextVar[dict | None] = contextvars.ContextVar("attnprompt_reduced", default=None)


def reduced(image: Image.Image, factor: int) -> Image.Image:
    """``image`` reduced by the integer ``factor`` (PIL's ``reduce``: a box filter, one pass), or ``image`` itself for
    1. Inside :func:`sharing_reductions` each (image object, factor) is reduced once: the map's passes, the overlay
    and the answer that all read an 8K photo's bounded copy read the same one.

    >>> big = Image.new("RGB", (4000, 3000))
    >>> with sharing_reductions():
    ...     reduced(big, 8) is reduced(big, 8), reduced(big, 8).size, reduced(big, 1) is big
    (True, (500, 375), True)
    >>> reduced(big, 8) is reduced(big, 8)
    False
    """
    if factor == 1:
        return image
    memo = _REDUCED.get()
    if memo is None:
        return image.reduce(factor)
    key = (id(image), int(factor))
    if key not in memo:  # the image is held with its copy: its id cannot be another's while the memo lives
        memo[key] = (image, image.reduce(factor))
    return memo[key][1]


@contextmanager
def sharing_reductions() -> Iterator[None]:
    """Inside the block (one strategy call, in this thread or task), :func:`reduced` makes each image's reduced copy
    once; the copies are dropped at its end. Only for a block in which no one changes the images' pixels.

    >>> with sharing_reductions():
    ...     pass
    """
    token = _REDUCED.set({})
    try:
        yield
    finally:
        _REDUCED.reset(token)

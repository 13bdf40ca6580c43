"""FGVP's visual prompts from masks (facts from the released ``fine_grained_visual_prompt.py``)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

#: FGVP's mask colour and blend weight (cv2.addWeighted(image, 1 - alpha, green, alpha)).
GREEN, ALPHA = (0, 255, 0), 0.5
#: FGVP's reverse-blur radius, applied at CLIP's input size (longest side 336).
BLUR_RADIUS, BLUR_SIDE = 100, 336


def _union(masks, size):
    w, h = size
    out = np.zeros((h, w), dtype=bool)
    for m in masks:
        m = np.asarray(m, dtype=bool)
        if m.shape != (h, w):
            from ..errors import InputError
            raise InputError(f"a mask must have the image's shape {(h, w)}; got {m.shape}")
        out |= m
    return out


def fgvp_mask(image: Image.Image, masks) -> Image.Image:
    """FGVP (Mask): green (0, 255, 0) blended at alpha 0.5 inside the masks' union, the rest unchanged.

    >>> fgvp_mask(Image.new("RGB", (2, 1), (100, 100, 100)), [np.array([[True, False]])]).getpixel((0, 0))
    (50, 178, 50)
    """
    rgb = np.asarray(image.convert("RGB")).astype(np.float64)
    inside = _union(masks, image.size)
    blend = rgb * (1 - ALPHA) + np.array(GREEN, dtype=np.float64) * ALPHA
    out = np.where(inside[..., None], np.floor(blend + 0.5), rgb)
    return Image.fromarray(out.astype(np.uint8), "RGB")


def fgvp_rbm(image: Image.Image, masks) -> Image.Image:
    """FGVP (RBM, reverse blur mask): the image Gaussian-blurred (radius 100 at longest side 336,
    scaled back) outside the masks' union, the original inside.

    >>> img = Image.new("RGB", (4, 4), (10, 10, 10)); m = np.zeros((4, 4), bool); m[0, 0] = True
    >>> fgvp_rbm(img, [m]).getpixel((0, 0))
    (10, 10, 10)
    """
    rgb = image.convert("RGB")
    scale = BLUR_SIDE / max(rgb.size)
    small = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))), Image.BICUBIC)
    blurred = small.filter(ImageFilter.GaussianBlur(BLUR_RADIUS)).resize(rgb.size, Image.BICUBIC)
    inside = _union(masks, rgb.size)
    out = np.where(inside[..., None], np.asarray(rgb), np.asarray(blurred))
    return Image.fromarray(out.astype(np.uint8), "RGB")

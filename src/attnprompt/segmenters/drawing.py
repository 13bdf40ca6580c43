"""The segmentation baselines' visual prompts, from masks: FGVP's (facts from the released
``fine_grained_visual_prompt.py`` / ``simple_inference.py``) and Set-of-Mark's (facts from microsoft/SoM's
``inference_sam_m2m_auto`` and its ``Visualizer``, which draws with matplotlib; drawn here with Pillow)."""

from __future__ import annotations

import colorsys
import random
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageColor, ImageDraw, ImageFilter, ImageFont

#: FGVP's mask colour and blend weight (cv2.addWeighted(image, 1 - alpha, green, alpha)).
GREEN, ALPHA = (0, 255, 0), 0.5
#: FGVP's reverse-blur radius, applied at CLIP's input size (longest side 336).
BLUR_RADIUS, BLUR_SIDE = 100, 336


def _union(masks: Iterable[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    w, h = size
    out = np.zeros((h, w), dtype=bool)
    for m in masks:
        m = np.asarray(m, dtype=bool)
        if m.shape != (h, w):
            from ..errors import InputError
            raise InputError(f"a mask must have the image's shape {(h, w)}; got {m.shape}")
        out |= m
    return out


def fgvp_mask(image: Image.Image, masks: Iterable[np.ndarray]) -> Image.Image:
    """FGVP (Mask): green (0, 255, 0) blended at alpha 0.5 inside the masks' union, the rest unchanged.

    >>> fgvp_mask(Image.new("RGB", (2, 1), (100, 100, 100)), [np.array([[True, False]])]).getpixel((0, 0))
    (50, 178, 50)
    """
    rgb = np.asarray(image.convert("RGB")).astype(np.float64)
    inside = _union(masks, image.size)
    blend = rgb * (1 - ALPHA) + np.array(GREEN, dtype=np.float64) * ALPHA
    out = np.where(inside[..., None], np.floor(blend + 0.5), rgb)
    return Image.fromarray(out.astype(np.uint8), "RGB")


def fgvp_rbm(image: Image.Image, masks: Iterable[np.ndarray]) -> Image.Image:
    """FGVP (RBM, reverse blur mask): the image Gaussian-blurred (radius 100 at longest side 336,
    scaled back) outside the masks' union, the original inside.

    >>> img = Image.new("RGB", (4, 4), (10, 10, 10)); m = np.zeros((4, 4), bool); m[0, 0] = True
    >>> fgvp_rbm(img, [m]).getpixel((0, 0))
    (10, 10, 10)
    """
    rgb = image.convert("RGB")
    scale = BLUR_SIDE / max(rgb.size)
    small = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))), Image.Resampling.BICUBIC)
    blurred = small.filter(ImageFilter.GaussianBlur(BLUR_RADIUS)).resize(rgb.size, Image.Resampling.BICUBIC)
    inside = _union(masks, rgb.size)
    out = np.where(inside[..., None], np.asarray(rgb), np.asarray(blurred))
    return Image.fromarray(out.astype(np.uint8), "RGB")


#: SoM's defaults: mask alpha 0.1, numeric labels, annotation "Mask" + "Mark" (no boxes), text 18 pt at
#: matplotlib's 100 dpi (25 px), on a black or white box of alpha 0.8, the image's shorter side 640.
SOM_ALPHA, SOM_FONT_PX, SOM_BOX_ALPHA, SOM_SHORT_SIDE = 0.1, 25, 0.8, 640
#: SoM picks each mask's colour at random among matplotlib's CSS4 colours (148, alphabetical, as Pillow's).
CSS4 = tuple(ImageColor.colormap)


@dataclass(frozen=True)
class Mark:
    """One SoM mark: its ``label`` ("1", "2" …), the ``mask`` it labels (index into the masks given),
    its ``colour`` (RGB 0–255), and where its text is anchored (``x``: centre, ``y``: top)."""

    label: str
    mask: int
    colour: tuple[int, int, int]
    x: int
    y: int


def som_size(size: tuple[int, int], short: int = SOM_SHORT_SIDE) -> tuple[int, int]:
    """The (width, height) SoM draws at: the shorter side resized to 640 (torchvision's ``Resize(640)``:
    the longer side truncated).

    >>> som_size((1000, 500)), som_size((224, 224))
    ((1280, 640), (640, 640))
    """
    w, h = size
    if w <= h:
        return (short, int(short * h / w))
    return (int(short * w / h), short)


def som_marks(masks: Iterable[np.ndarray], *, seed: int = 0) -> list[Mark]:
    """SoM's marks for ``masks``: numbered 1…N by decreasing area (ties in the given order), each with a
    random CSS4 colour (``random.Random(seed)``: SoM's is unseeded) and its text anchored 2 px right of
    and 6 px above the mask's innermost pixel (the maximum of its distance transform, the middle one of
    ties in row-major order).

    >>> m = np.zeros((2, 20, 20), bool); m[0, 2:8, 2:8] = True; m[1, 5:20, 5:20] = True
    >>> [(k.label, k.mask, k.x, k.y) for k in som_marks(m)]
    [('1', 1, 14, 6), ('2', 0, 6, -1)]
    """
    from scipy import ndimage

    masks = [np.asarray(m, dtype=bool) for m in masks]
    order = sorted(range(len(masks)), key=lambda i: -int(masks[i].sum()))
    rng = random.Random(seed)
    marks = []
    for label, i in enumerate(order, start=1):
        colour = ImageColor.getrgb(ImageColor.colormap[CSS4[rng.randint(0, len(CSS4) - 1)]])
        depth = ndimage.distance_transform_edt(np.pad(masks[i], 1))[1:-1, 1:-1]
        ys, xs = np.nonzero(depth == depth.max())
        mid = len(xs) // 2
        marks.append(Mark(str(label), i, colour[:3], int(xs[mid]) + 2, int(ys[mid]) - 6))
    return marks


def _text_colour(colour: tuple[int, int, int]) -> tuple[tuple[float, float, float], str]:
    """SoM's label colour (the mask's colour lightened by 0.7 in HLS, then at least 0.15 per channel and
    0.8 in its strongest) and box colour ("black" behind a light label, else "white")."""
    h, lightness, s = colorsys.rgb_to_hls(*(c / 255 for c in colour))
    rgb = np.maximum(colorsys.hls_to_rgb(h, min(1.0, lightness * 1.7), s), 0.15)
    rgb[np.argmax(rgb)] = max(0.8, float(rgb.max()))
    luma = 0.299 * rgb[0] * 255 + 0.587 * rgb[1] * 255 + 0.114 * rgb[2] * 255
    return (float(rgb[0]), float(rgb[1]), float(rgb[2])), ("black" if luma > 128 else "white")


def _has_holes(mask: np.ndarray) -> bool:
    from scipy import ndimage

    return bool((ndimage.binary_fill_holes(mask) & ~mask).any())


def som(image: Image.Image, masks: Iterable[np.ndarray], *, seed: int = 0) -> Image.Image:
    """Set-of-Mark on ``image`` (draw it at :func:`som_size` first, as SoM does): every mask blended at
    alpha 0.1 in its colour, with a 1-px outline in that colour where the mask has no holes (SoM draws
    such masks as polygons), then every mask's number at its :func:`som_marks` anchor, 25 px, on a box
    of alpha 0.8.

    >>> img = Image.new("RGB", (40, 40), (120, 120, 120)); m = np.zeros((40, 40), bool); m[10:30, 10:30] = True
    >>> out = som(img, [m]); out.size, out.getpixel((0, 0))
    ((40, 40), (120, 120, 120))
    """
    from scipy import ndimage

    rgb = np.asarray(image.convert("RGB")).astype(np.float64)
    masks = [np.asarray(m, dtype=bool) for m in masks]
    for m in masks:
        if m.shape != rgb.shape[:2]:
            from ..errors import InputError
            raise InputError(f"a mask must have the image's shape {rgb.shape[:2]}; got {m.shape}")
    marks = som_marks(masks, seed=seed)
    for mark in marks:  # in label order, later over earlier, as matplotlib stacks them
        m = masks[mark.mask]
        rgb[m] = rgb[m] * (1 - SOM_ALPHA) + np.array(mark.colour) * SOM_ALPHA
        if not _has_holes(m):
            rgb[m & ~ndimage.binary_erosion(m)] = mark.colour
    out = Image.fromarray(np.floor(rgb + 0.5).astype(np.uint8), "RGB")
    font = ImageFont.load_default(size=SOM_FONT_PX)
    for mark in marks:  # texts above every mask (matplotlib's zorder 10)
        text, box = _text_colour(mark.colour)
        left, top, right, bottom = ImageDraw.Draw(out).textbbox((mark.x, mark.y), mark.label, font=font, anchor="ma")
        layer = Image.new("RGBA", out.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(layer)
        shade = (0, 0, 0) if box == "black" else (255, 255, 255)
        draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), fill=(*shade, round(255 * SOM_BOX_ALPHA)))
        draw.text((mark.x, mark.y), mark.label, font=font, anchor="ma",
                  fill=tuple(round(255 * v) for v in text) + (255,))
        out = Image.alpha_composite(out.convert("RGBA"), layer).convert("RGB")
    return out

"""Regions of a heatmap → a mask, a box and a crop: pure functions, arrays in, arrays and images out.

Two ways to choose, from the two public codes (facts, not code): CARVE's (keep the top fraction
of pixels, label connected components, keep the strongest, crop to their box with everything else
zeroed, upscale) and ViCrop's (the square window, among a few sizes, where the map's sum stands
out most). :func:`select_regions` applies a :class:`RegionConfig`.

Boxes are ``(x0, y0, x1, y1)`` in the image's pixels, ``x1``/``y1`` exclusive.

>>> heat = np.zeros((6, 8)); heat[1:3, 1:3] = 1.0; heat[4, 6] = 9.0  # a faint blob, a bright dot
>>> labels, n = components(top_mask(heat, 0.1))
>>> n, [bounding_box(select_components(heat, labels, n, rule, min_regions=1)) for rule in ("attention", "size")]
(2, [(6, 4, 7, 5), (1, 1, 3, 3)])
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from .checks import check_choice, check_count
from .errors import InputError
from .presets import MethodConfig, param

#: ViCrop's window sizes, as multiples of the base side.
WINDOW_RATIOS = (1.0, 1.2, 1.4, 1.6, 1.8, 2.0)

#: ViCrop's window base when no answering VLM says its input side (LLaVA-1.5's 336, the paper's).
FALLBACK_WINDOW = 336


@dataclasses.dataclass(frozen=True)
class RegionConfig(MethodConfig):
    """How regions are chosen from a heatmap for a crop (any map: api-clip, api-vlm, carve).

    - ``carve`` (default) — YuyaoGe/CARVE: keep the ``top`` fraction of pixels (ties included),
      label 4-connected components, keep the ``max(min_regions, ⌊top·n⌋)`` with the largest
      attention sum (``rule="attention"``; ``size``: the largest; ``remove-small``: all but those
      under ``min_size`` of the kept pixels), zero the pixels outside them, crop to their bounding
      box and upscale the crop (LANCZOS) by max(W/w, H/h), to at most the original's pixel count;
    - ``vicrop`` — "MLLMs know where to look": a square window of ``window``·r pixels for r in
      1, 1.2 … 2, placed where the map's sum is largest, the r whose best window stands out most
      from its neighbours; the plain crop, not masked, not upscaled.

    >>> RegionConfig.from_preset("vicrop").rule
    'window'
    """

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "carve": {},
        "vicrop": dict(rule="window", keep_outside=True, upscale=False),
    }
    DEFAULT_PRESET: ClassVar[str] = "carve"
    METHOD: ClassVar[str] = "regions"

    preset: str = "carve"
    rule: str = param("attention", "attention | size | remove-small (connected components) | window (ViCrop)")
    top: float = param(0.2, "fraction of the pixels kept before the components are labelled", cli=float)
    min_regions: int = param(3, "components kept at least (CARVE keeps max(this, ⌊top·n⌋))", cli=int)
    min_size: float = param(0.001, "remove-small: a component under this fraction of the kept pixels goes",
                            cli=float)
    keep_outside: bool = param(False, "keep the pixels outside the kept regions in the crop (CARVE zeroes them)",
                               cli=bool)
    upscale: bool = param(True, "upscale the crop by max(W/w, H/h) with LANCZOS, as CARVE (to at most the "
                                "original's pixel count)", cli=bool)
    window: int | None = param(None, "window rule: the base side in pixels; default the answering VLM's native "
                                     "input side (336 LLaVA-1.5, 224 Qwen-VL, 128 the shapes VLM; 336 if unknown)",
                               cli=int)
    max_share: float = param(1.0, "ours, not CARVE's: a box over this share of the image is cut down to a "
                                  "square around the kept region with the most attention, so the crop stays a "
                                  "zoom (1 = off, CARVE's behaviour)", cli=float)

    def __post_init__(self) -> None:
        check_choice("rule", self.rule, ("attention", "size", "remove-small", "window"))
        for name, value, low, high in (("top", self.top, 0.0, 1.0), ("min_size", self.min_size, 0.0, 1.0)):
            try:
                v = float(value)
            except (TypeError, ValueError):
                raise InputError(f"{name} must be a number in (0, 1]; got {value!r}") from None
            if not low < v <= high and not (name == "min_size" and v == 0):
                raise InputError(f"{name} must be a number in (0, 1]; got {value!r}")
            object.__setattr__(self, name, v)
        object.__setattr__(self, "min_regions", check_count("min_regions", self.min_regions))
        if self.window is not None:
            object.__setattr__(self, "window", check_count("window", self.window))
        try:
            share = float(self.max_share)
        except (TypeError, ValueError):
            share = -1.0
        if not 0.0 < share <= 1.0:
            raise InputError(f"max_share must be a number in (0, 1]; got {self.max_share!r}")
        object.__setattr__(self, "max_share", share)

    def for_side(self, native_side: int | None) -> RegionConfig:
        """This configuration with its window resolved: as set, else the answering VLM's ``native_side``
        (for the window rule), else :data:`FALLBACK_WINDOW`.

        >>> RegionConfig.from_preset("vicrop").for_side(128).window, RegionConfig().for_side(128).window
        (128, 336)
        """
        if self.window is not None:
            return self
        side = native_side if self.rule == "window" and native_side else FALLBACK_WINDOW
        return dataclasses.replace(self, window=int(side))

    def to_dict(self) -> dict[str, Any]:
        # max_share at its default (off) is left out so that runs stored before it existed keep their hashes
        d = super().to_dict()
        if d.get("max_share") == 1.0:
            d.pop("max_share")
        return d


def top_mask(heat: np.ndarray, top: float) -> np.ndarray:
    """The pixels at or above the map's ``(1 − top)`` percentile (numpy's linear interpolation):
    about the ``top`` fraction of them, every tie included (an all-equal map keeps all).

    >>> top_mask(np.array([[1.0, 2.0, 3.0, 4.0, 5.0]]), 0.2).astype(int).tolist()
    [[0, 0, 0, 0, 1]]
    """
    h = np.asarray(heat, dtype=np.float64)
    return h >= np.percentile(h, (1.0 - top) * 100.0)


def components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components of ``mask`` (``scipy.ndimage.label``'s default, as CARVE): labels
    1…n on the mask, 0 elsewhere.

    >>> components(np.array([[1, 0, 1], [0, 0, 1]], bool))[1]
    2
    """
    from scipy import ndimage

    labels, n = ndimage.label(np.asarray(mask, dtype=bool))
    return labels, int(n)


def select_components(heat: np.ndarray, labels: np.ndarray, n: int, rule: str, *, min_regions: int = 3,
                      top: float = 0.2, min_size: float = 0.001) -> np.ndarray:
    """The mask of the kept components: ``attention`` or ``size`` keep the ``max(min_regions,
    ⌊top·n⌋)`` with the largest attention sum or pixel count (ties: the lower label first);
    ``remove-small`` keeps all but those smaller than ``min_size`` of the mask's pixels.

    >>> labels = np.array([[1, 1, 0, 2], [1, 0, 0, 0], [0, 0, 3, 3]])
    >>> heat = np.array([[1, 1, 0, 9], [1, 0, 0, 0], [0, 0, 2, 2.0]])
    >>> select_components(heat, labels, 3, "attention", min_regions=1).astype(int).tolist()
    [[0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]]
    >>> select_components(heat, labels, 3, "size", min_regions=1).astype(int).tolist()
    [[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    """
    if n == 0:
        return np.zeros(labels.shape, dtype=bool)
    ids = np.arange(1, n + 1)
    # pixel counts (exact, as a sum of ones would be) without an image-sized array of ones
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:].astype(np.float64)
    if rule == "remove-small":
        keep = ids[sizes >= int(sizes.sum() * min_size)]
    elif rule in ("attention", "size"):
        # attention sums as ndimage.sum makes them (a bincount with weights, in float64), in one pass
        score = sizes if rule == "size" else np.bincount(labels.ravel(), weights=np.asarray(heat, np.float64).ravel(),
                                                        minlength=n + 1)[1:]
        order = ids[np.argsort(-score, kind="stable")]
        keep = order[: max(min_regions, int(n * top))]
    else:
        raise ValueError(f"rule must be attention, size or remove-small; got {rule!r}")
    return np.isin(labels, keep)


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` of the mask's pixels (exclusive ends); an empty mask gives the whole image.

    >>> bounding_box(np.array([[0, 0, 0], [0, 1, 1]], bool)), bounding_box(np.zeros((2, 3), bool))
    ((1, 1, 3, 2), (0, 0, 3, 2))
    """
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))  # no index arrays of every pixel
    if len(cols) == 0:
        return 0, 0, mask.shape[1], mask.shape[0]
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def window_box(grid: np.ndarray, image_size: tuple[int, int], base: int,
               ratios: tuple[float, ...] = WINDOW_RATIOS) -> tuple[int, int, int, int]:
    """ViCrop's adaptive square window on a map ``grid`` laid over the whole image: for each ratio r,
    the window of ``base``·r pixels (in map cells, at most the map) whose sum is largest (the first
    when tied); of those, the one whose sum stands out most from its four neighbouring windows', per
    cell; the box of that side centred on the window, moved inside the image. If even the smallest
    window covers the whole map, the whole image.

    >>> g = np.zeros((24, 24)); g[2:6, 15:19] = 1.0
    >>> window_box(g, (672, 672), 112)
    (420, 56, 532, 168)
    """
    grid = np.asarray(grid, dtype=np.float64)
    width, height = image_size
    rows, cols = grid.shape
    cell_w, cell_h = width / cols, height / rows
    best: tuple[float, float, float, float] | None = None  # (sharpness, centre_x, centre_y, side)
    for ratio in ratios:
        side = base * ratio
        bw, bh = min(int(side / cell_w), cols), min(int(side / cell_h), rows)
        if bw >= cols and bh >= rows:
            if ratio == ratios[0]:
                return 0, 0, width, height
            continue
        bw, bh = max(bw, 1), max(bh, 1)
        sums = _window_sums(grid, bh, bw)
        i, j = np.unravel_index(int(np.argmax(sums)), sums.shape)
        around = [sums[a, b] for a, b in ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1))
                  if 0 <= a < sums.shape[0] and 0 <= b < sums.shape[1]]
        sharpness = (sums[i, j] - (np.mean(around) if around else 0.0)) / (bw * bh)
        if best is None or sharpness > best[0]:
            best = (sharpness, (j + bw / 2) * cell_w, (i + bh / 2) * cell_h, side)
    if best is None:
        raise InputError(f"window_box needs at least one window ratio; got {ratios!r}")
    _, cx, cy, side = best
    half = side / 2
    cx = min(max(cx, half), width - half) if side <= width else width / 2
    cy = min(max(cy, half), height - half) if side <= height else height / 2
    x0, y0 = max(0, int(round(cx - half))), max(0, int(round(cy - half)))
    return x0, y0, min(width, int(round(cx + half))), min(height, int(round(cy + half)))


def _window_sums(grid: np.ndarray, bh: int, bw: int) -> np.ndarray:
    """Sums of every bh×bw window (stride 1), by a summed-area table."""
    s = np.zeros((grid.shape[0] + 1, grid.shape[1] + 1))
    s[1:, 1:] = grid.cumsum(0).cumsum(1)
    return s[bh:, bw:] - s[:-bh, bw:] - s[bh:, :-bw] + s[:-bh, :-bw]


def crop(image: Image.Image, box: tuple[int, int, int, int], mask: np.ndarray | None = None) -> Image.Image:
    """The ``box`` of ``image``; with ``mask`` (the image's size, or the box's), the pixels outside it black
    (as CARVE's crop). Only the box is ever copied.

    >>> img = Image.new("RGB", (4, 2), (200, 100, 50))
    >>> np.asarray(crop(img, (1, 0, 3, 2), np.array([[0, 1, 0, 0], [0, 0, 0, 0]], bool)))[:, :, 0].tolist()
    [[200, 0], [0, 0]]
    """
    piece = image.crop(box)
    if mask is None:
        return piece
    mask = np.asarray(mask, bool)
    if mask.shape != (piece.size[1], piece.size[0]):
        mask = mask[box[1] : box[3], box[0] : box[2]]
    piece = piece.convert("RGB") if piece.mode != "RGB" else piece
    # black pasted through the mask's complement, in place on the crop (no float or product copies)
    outside = np.logical_not(mask).astype(np.uint8)
    outside *= 255
    piece.paste((0, 0, 0), (0, 0), Image.fromarray(outside, "L"))
    return piece


#: Region selection works on a map of at most this many pixels: a larger image's map is taken at an integer
#: reduction (:func:`selection_factor`) and the box scaled back, so an 8K image's selection costs tens of MB.
SELECTION_PIXELS = 1 << 22


def selection_factor(size: tuple[int, int], pixels: int = SELECTION_PIXELS) -> int:
    """The smallest integer factor that brings an image of ``size`` (W, H) to at most ``pixels`` pixels
    (1 for any image up to 2048 × 2048).

    >>> selection_factor((2048, 2048)), selection_factor((7680, 4320)), selection_factor((4096, 3072))
    (1, 3, 2)
    """
    factor = 1
    while reduced_size(size, factor)[0] * reduced_size(size, factor)[1] > pixels:
        factor += 1
    return factor


def reduced_size(size: tuple[int, int], factor: int) -> tuple[int, int]:
    """(W, H) divided by ``factor``, rounded up (the size of PIL's ``reduce``).

    >>> reduced_size((7680, 4321), 3)
    (2560, 1441)
    """
    return -(-size[0] // factor), -(-size[1] // factor)


def _factor_of(shape: tuple[int, ...], size: tuple[int, int]) -> int:
    """The integer reduction of ``size`` whose (H, W) is ``shape`` (raises when there is none)."""
    factor = -(-size[0] // max(1, shape[1]))
    if reduced_size(size, factor) != (shape[1], shape[0]):
        raise ValueError(f"heatmap {shape[0]}×{shape[1]} is not the image {size[1]}×{size[0]} (H×W) at an integer "
                         "reduction")
    return factor


def scale_box(box: tuple[int, int, int, int], factor: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A box on a map reduced by ``factor`` in the pixels of the image of ``size``.

    >>> scale_box((1, 2, 3, 4), 3, (8, 20))
    (3, 6, 8, 12)
    """
    x0, y0, x1, y1 = box
    return x0 * factor, y0 * factor, min(size[0], x1 * factor), min(size[1], y1 * factor)


def _mask_in_box(mask: np.ndarray, box: tuple[int, int, int, int], factor: int,
                 full: tuple[int, int, int, int]) -> np.ndarray:
    """The part of a reduced map's ``mask`` under ``box``, at the image's pixels under ``full`` (nearest)."""
    part = mask[box[1] : box[3], box[0] : box[2]]
    if factor > 1:
        part = np.repeat(np.repeat(part, factor, 0), factor, 1)
    return part[: full[3] - full[1], : full[2] - full[0]]


def upscaled_size(crop_size: tuple[int, int], size: tuple[int, int]) -> tuple[int, int]:
    """The size :func:`upscale` gives a crop of ``crop_size`` for an original of ``size`` (W, H).

    >>> upscaled_size((10, 5), (200, 100)), upscaled_size((10, 5), (100, 40))
    ((200, 100), (89, 44))
    """
    w, h = crop_size
    scale = min(max(size[0] / w, size[1] / h), math.sqrt(size[0] * size[1] / (w * h)))
    return max(1, int(w * scale)), max(1, int(h * scale))


def upscale(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``image`` enlarged (LANCZOS) by max(W/w, H/h) — CARVE's resize of the crop to the original's scale: one side
    equals ``size``'s, the other is at least its — but never to more pixels than ``size`` holds: a crop far thinner
    or wider than the original would otherwise grow by the mismatch of the two aspects (a 1:20 strip of a 12-Mpx
    photo to 240 Mpx), for an answering model that reads a few hundred thousand of them.

    >>> upscale(Image.new("RGB", (10, 5)), (200, 100)).size, upscale(Image.new("RGB", (10, 5)), (100, 40)).size
    ((200, 100), (89, 44))
    """
    return image.resize(upscaled_size(image.size, size), Image.Resampling.LANCZOS)


def box_share(box: tuple[int, int, int, int], size: tuple[int, int]) -> float:
    """The share of the image (``size`` = W, H) a box covers.

    >>> box_share((0, 0, 50, 20), (100, 40))
    0.25
    """
    return (box[2] - box[0]) * (box[3] - box[1]) / float(size[0] * size[1])


def keep_a_zoom(heat: np.ndarray, labels: np.ndarray, mask: np.ndarray,
                max_share: float) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Ours, not CARVE's: when the kept components' box covers more than ``max_share`` of the image (regions
    spread over a large image make a "crop" that is most of it), keep only the kept component with the
    largest attention sum; if its own box is still over the share, a square of ``max_share`` of the image
    (at most) centred on that component's attention-weighted centre, moved inside the image.

    >>> heat = np.zeros((10, 10)); heat[0, 0] = heat[8:10, 8:10] = 1.0
    >>> labels, _ = components(heat > 0)
    >>> m, box = keep_a_zoom(heat, labels, heat > 0, 0.5)
    >>> box, int(m.sum())
    ((8, 8, 10, 10), 4)
    """
    kept = np.unique(labels[mask & (labels > 0)])
    sums = [float(heat[labels == k].sum()) for k in kept]
    best = labels == kept[int(np.argmax(sums))]
    box = bounding_box(best)
    h, w = heat.shape
    if box_share(box, (w, h)) <= max_share:
        return best, box
    side = max(1, int(np.sqrt(max_share * w * h)))
    sw, sh = min(side, w), min(side, h)
    ys, xs = np.nonzero(best)
    weights = heat[ys, xs] + 1e-12
    cx, cy = float(np.average(xs, weights=weights)), float(np.average(ys, weights=weights))
    x0 = int(np.clip(round(cx - sw / 2), 0, w - sw))
    y0 = int(np.clip(round(cy - sh / 2), 0, h - sh))
    out = np.zeros_like(mask)
    out[y0 : y0 + sh, x0 : x0 + sw] = True
    return out & mask, (x0, y0, x0 + sw, y0 + sh)  # CARVE's zeroing of what is not kept, inside the square


@dataclass(frozen=True)
class Chosen:
    """What :func:`choose_regions` chose, before any pixel of the image is copied: the ``mask`` on the selection
    map's pixels (all True in a window), the ``box`` in the image's pixels, the box on the mask (``mask_box``), the
    selection map's reduction of the image (``factor``), whether the pixels outside the mask are blacked out
    (``zero_outside``), and whether the crop is upscaled to the original's scale (``upscale``).

    >>> Chosen(np.ones((2, 2), bool), (0, 0, 2, 2), (0, 0, 2, 2), 1, False, False).box
    (0, 0, 2, 2)
    """

    mask: np.ndarray
    box: tuple[int, int, int, int]
    mask_box: tuple[int, int, int, int]
    factor: int
    zero_outside: bool
    upscale: bool

    def crop_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The size of :func:`crop_regions`'s crop, for an image of ``size``, without making it.

        >>> Chosen(np.ones((2, 2), bool), (0, 0, 10, 5), (0, 0, 2, 2), 5, False, True).crop_size((200, 100))
        (200, 100)
        """
        box = (self.box[2] - self.box[0], self.box[3] - self.box[1])
        return upscaled_size(box, size) if self.upscale else box


@dataclass(frozen=True)
class Regions:
    """What :func:`select_regions` chose: the ``mask`` on the selection map's pixels (all True in a window),
    the ``box`` in the image's pixels and the ``crop`` image.

    >>> Regions(np.ones((2, 2), bool), (0, 0, 2, 2), Image.new("RGB", (2, 2))).box
    (0, 0, 2, 2)
    """

    mask: np.ndarray
    box: tuple[int, int, int, int]
    crop: Image.Image


def select_regions(heat: np.ndarray, image: Image.Image, config: RegionConfig,
                   grid: np.ndarray | None = None) -> Regions:
    """Choose regions of ``image`` from ``heat`` (H×W, aligned with it, or with the image reduced by an
    integer factor: :func:`selection_factor`; any value scale) by ``config`` and crop them: :func:`choose_regions`,
    then :func:`crop_regions`. The box is in the image's pixels; ``mask`` is on ``heat``'s.

    >>> from attnprompt.regions import RegionConfig
    >>> heat = np.zeros((40, 60)); heat[10:20, 30:50] = 1.0  # 8 % of the pixels
    >>> r = select_regions(heat, Image.new("RGB", (60, 40)), RegionConfig.from_preset(top=0.05))
    >>> r.box, r.crop.size
    ((30, 10, 50, 20), (69, 34))
    >>> select_regions(heat[::2, ::2], Image.new("RGB", (120, 80)), RegionConfig.from_preset(top=0.05)).box
    (60, 20, 100, 40)
    """
    chosen = choose_regions(heat, image.size, config, grid)
    return Regions(chosen.mask, chosen.box, crop_regions(image, chosen))


def choose_regions(heat: np.ndarray, size: tuple[int, int], config: RegionConfig,
                   grid: np.ndarray | None = None) -> Chosen:
    """The regions of an image of ``size`` (W, H) that ``config`` chooses from ``heat`` (as :func:`select_regions`
    takes it), without touching the image's pixels. The window rule works on ``grid`` (the map on its own cells,
    laid over the whole image), or on ``heat`` itself when no grid is given.

    >>> heat = np.zeros((40, 60)); heat[10:20, 30:50] = 1.0
    >>> c = choose_regions(heat[::2, ::2], (120, 80), RegionConfig.from_preset(top=0.05))
    >>> c.box, c.mask_box, c.factor, c.crop_size((120, 80))
    ((60, 20, 100, 40), (15, 5, 25, 10), 4, (138, 69))
    """
    heat = np.asarray(heat, dtype=np.float64)
    factor = _factor_of(heat.shape, size)
    frame = (heat.shape[1], heat.shape[0])
    if config.rule == "window":
        full = window_box(heat if grid is None else grid, size, config.window or FALLBACK_WINDOW)
        box = (full[0] // factor, full[1] // factor, -(-full[2] // factor), -(-full[3] // factor))
        mask = np.zeros(heat.shape, dtype=bool)
        mask[box[1] : box[3], box[0] : box[2]] = True
        zero_outside = False  # everything in the window is kept
    else:
        labels, n = components(top_mask(heat, config.top))
        mask = select_components(heat, labels, n, config.rule, min_regions=config.min_regions, top=config.top,
                                 min_size=config.min_size)
        box = bounding_box(mask)
        if box_share(box, frame) > config.max_share:
            mask, box = keep_a_zoom(heat, labels, mask, config.max_share)
        full = scale_box(box, factor, size)
        zero_outside = not config.keep_outside
    return Chosen(mask, full, box, factor, zero_outside, bool(config.upscale))


def crop_regions(image: Image.Image, chosen: Chosen) -> Image.Image:
    """The crop of ``chosen``'s box at the image's own resolution: only the box copied, the pixels outside the mask
    black where ``chosen`` says so, upscaled (LANCZOS) to the original's scale where it says so — CARVE's crop.

    >>> heat = np.zeros((40, 60)); heat[10:20, 30:50] = 1.0
    >>> c = choose_regions(heat, (60, 40), RegionConfig.from_preset(top=0.05))
    >>> crop_regions(Image.new("RGB", (60, 40)), c).size
    (69, 34)
    """
    inside = _mask_in_box(chosen.mask, chosen.mask_box, chosen.factor, chosen.box) if chosen.zero_outside else None
    piece = crop(image, chosen.box, inside)
    return upscale(piece, image.size) if chosen.upscale else piece


#: :func:`crop_regions_reduced` reads a reduced copy of the image instead of the image when the crop, at the size made,
#: has at most this many times the copy's pixels per side over the box: a zoom that slight shows the model nothing
#: its copy of the original does not.
COPY_ZOOM = 1.25


def crop_regions_reduced(image: Image.Image, chosen: Chosen, reduction: int,
                         copy: tuple[Image.Image, int] | None = None) -> Image.Image:
    """:func:`crop_regions`'s crop as it is when reduced by the integer ``reduction`` (to
    :func:`reduced_size` of its size), made at that size directly: the box resampled once (LANCZOS, after a box
    reduction to within 1.5× of the size) from the image, then the pixels outside the mask blacked out at that size
    (the mask sampled nearest) — no crop at the full resolution, no upscale. ``copy``: the image reduced by an integer
    factor, ``(copy, factor)``, read instead when it holds nearly the pixels the crop needs (:data:`COPY_ZOOM`).
    ``reduction`` 1 is :func:`crop_regions` itself.

    >>> heat = np.zeros((40, 60)); heat[10:20, 30:50] = 1.0
    >>> c = choose_regions(heat, (60, 40), RegionConfig.from_preset(top=0.05))
    >>> crop_regions_reduced(Image.new("RGB", (60, 40), "white"), c, 2).size
    (35, 17)
    """
    if reduction == 1:
        return crop_regions(image, chosen)
    target = reduced_size(chosen.crop_size(image.size), reduction)
    left, top, right, bottom = (float(v) for v in chosen.box)
    source, box = image, (left, top, right, bottom)
    if copy is not None:
        small, factor = copy
        seen = ((box[2] - box[0]) / factor, (box[3] - box[1]) / factor)  # the box's pixels in the copy
        if target[0] <= COPY_ZOOM * seen[0] and target[1] <= COPY_ZOOM * seen[1]:
            source, box = small, (left / factor, top / factor, right / factor, bottom / factor)
    piece = source.resize(target, Image.Resampling.LANCZOS, box=box, reducing_gap=1.5)
    piece = piece.convert("RGB") if piece.mode != "RGB" else piece
    if chosen.zero_outside:
        x0, y0, x1, y1 = chosen.mask_box
        cells = Image.fromarray(np.logical_not(chosen.mask[y0:y1, x0:x1]).astype(np.uint8) * 255, "L")
        f = chosen.factor  # the box's extent on the mask's cells (the last cell may reach past the image)
        span = ((chosen.box[2] - chosen.box[0]) / f, (chosen.box[3] - chosen.box[1]) / f)
        outside = cells.resize(target, Image.Resampling.NEAREST, box=(0, 0, *span))
        piece.paste((0, 0, 0), (0, 0), outside)
    return piece

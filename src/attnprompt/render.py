"""From an attribution map Ψ on the patch grid to pixels: pure functions, arrays in, images out.

Order of operations (documented once, used everywhere):

1. :func:`postprocess` on the *grid*, the same function for every method: normalise, optional
   "enhance", k×k mean filter with replicate padding, optional final min-max — as the authors'
   released code does (the paper writes the mean filter after the resize; on a grid the
   same kernel smooths across neighbouring patches instead of a few pixels);
2. :func:`upsample` the grid to the image size in float (bilinear by default), cropping the
   part of the grid that covers letterbox padding, and quantise at most once, at the end;
3. :func:`overlay` the heatmap Φ on the image: Iᵃ = I·Φ + (1 − Φ)·g.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}

#: Pixels per block in :func:`upsample` and :func:`overlay`: bounds the float scratch memory
#: (a few × 12 bytes per pixel) whatever the image size.
_BLOCK_PIXELS = 1 << 20


def _block_rows(width: int) -> int:
    return max(1, _BLOCK_PIXELS // max(1, width))


def fit_square(
    image: Image.Image, size: int, *, fit: str = "pad", fill: tuple[int, int, int] = (0, 0, 0)
) -> tuple[Image.Image, tuple[float, float, float, float]]:
    """Make the square model input from ``image``: letterbox (``pad``) or ``squash``.

    Returns the ``size``×``size`` image and the extent ``(x0, y0, x1, y1)`` of the original
    image inside it, in fractions of the side (what :func:`upsample` needs to map back).

    >>> canvas, extent = fit_square(Image.new("RGB", (200, 100)), 64)
    >>> canvas.size, extent
    ((64, 64), (0.0, 0.25, 1.0, 0.75))
    """
    if fit not in ("pad", "squash"):
        raise ValueError(f"fit must be 'pad' or 'squash', got {fit!r}")
    w, h = image.size
    if fit == "squash" or w == h:
        return image.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0), (0.0, 0.0, 1.0, 1.0)
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    # the same size is the image itself (resize would copy it: 100 MB for an 8K image)
    small = image if (nw, nh) == (w, h) else image.resize((nw, nh), Image.Resampling.BICUBIC, reducing_gap=3.0)
    canvas = Image.new("RGB", (size, size), fill)
    x0, y0 = (size - nw) // 2, (size - nh) // 2
    canvas.paste(small, (x0, y0))
    return canvas, (x0 / size, y0 / size, (x0 + nw) / size, (y0 + nh) / size)


def minmax(x: np.ndarray, *, constant: float = 0.0) -> np.ndarray:
    """Scale ``x`` linearly to [0, 1]; a constant map becomes ``constant`` everywhere.

    >>> minmax(np.array([2.0, 4.0, 3.0])).tolist()
    [0.0, 1.0, 0.5]
    """
    x = np.asarray(x, dtype=np.float64)
    lo, hi = float(x.min()), float(x.max())
    if not hi > lo:
        return np.full(x.shape, constant, dtype=np.float64)
    return (x - lo) / (hi - lo)


def inverted_minmax(x: np.ndarray, *, constant: float = 0.0) -> np.ndarray:
    """``(max − x) / (max − min)``: 1 where ``x`` is smallest (used for Ψᶜᵒᵐᵖ = 1 − sim).

    >>> inverted_minmax(np.array([2.0, 4.0, 3.0])).tolist()
    [1.0, 0.0, 0.5]
    """
    return 1.0 - minmax(x, constant=1.0 - constant)


def enhance(x: np.ndarray, coefficient: float) -> np.ndarray:
    """The authors' contrast step: ``sigmoid(coefficient · z-score(x))``.

    Not in the paper; their released code applies it to Ψᶜˡˢ (CLI coefficient 5).
    A constant map has no z-score and becomes 0.5 everywhere.

    >>> enhance(np.array([0.0, 1.0]), 5.0).round(4).tolist()
    [0.0067, 0.9933]
    """
    x = np.asarray(x, dtype=np.float64)
    sd = float(x.std())
    if not sd > 0:
        return np.full(x.shape, 0.5)
    z = (x - x.mean()) / sd
    return 1.0 / (1.0 + np.exp(-coefficient * z))


_enhance = enhance  # for postprocess, whose parameter of the same name shadows it


def mean_filter(x: np.ndarray, kernel: int) -> np.ndarray:
    """k×k mean filter with replicate ("edge") padding; ``kernel`` must be odd, 1 is identity.

    >>> mean_filter(np.array([[0.0, 0.0, 9.0]]), 3).tolist()
    [[0.0, 3.0, 6.0]]
    """
    if not isinstance(kernel, (int, np.integer)) or kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"kernel must be an odd integer ≥ 1 (1 disables the filter), got {kernel!r}")
    x = np.asarray(x, dtype=np.float64)
    if kernel == 1:
        return x.copy()
    r = kernel // 2
    padded = np.pad(x, r, mode="edge")
    # Summed-area table: O(h·w) whatever the kernel.
    s = np.zeros((padded.shape[0] + 1, padded.shape[1] + 1))
    s[1:, 1:] = padded.cumsum(0).cumsum(1)
    h, w = x.shape
    total = (
        s[kernel : kernel + h, kernel : kernel + w]
        - s[:h, kernel : kernel + w]
        - s[kernel : kernel + h, :w]
        + s[:h, :w]
    )
    return total / (kernel * kernel)


def soft_or(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Paper Eq. 7: ``a + b − a·b`` = 1 − (1 − a)(1 − b).

    >>> soft_or(np.array([0.0, 1.0, 0.5]), np.array([0.0, 0.0, 0.5])).tolist()
    [0.0, 1.0, 0.75]
    """
    return a + b - a * b


def postprocess(
    raw: np.ndarray, *, enhance: float = 0.0, kernel: int = 1, invert: bool = False, renormalize: bool = False
) -> np.ndarray:
    """Grid post-processing shared by every method: min-max (``invert``: ``(max − x)/(max − min)``,
    for maps where low scores mark what to keep) → :func:`enhance` (when the coefficient is > 0) →
    k×k :func:`mean_filter` → min-max again (``renormalize``; a constant map becomes all 1: it
    prefers nothing, so everything stays visible) or clipped to [0, 1].

    >>> postprocess(np.array([[0.0, 0.0, 9.0]]), kernel=3).tolist()
    [[0.0, 0.3333333333333333, 0.6666666666666666]]
    """
    m = inverted_minmax(raw) if invert else minmax(raw)
    if enhance > 0:
        m = _enhance(m, enhance)
    m = mean_filter(m, kernel)
    return minmax(m, constant=1.0) if renormalize else np.clip(m, 0.0, 1.0)


def _resize_weights(n_in: int, n_out: int, start: float, stop: float, resample: str) -> np.ndarray:
    """n_out×n_in matrix of PIL's own 1-D resampling weights for the source span [start, stop).

    PIL's filters are separable and linear, so resizing each basis vector gives the exact
    weights; with them a 2-D resize is two small matrix products and no full-size temporary.
    """
    eye = np.eye(n_in, dtype=np.float32)
    cols = [
        np.asarray(
            Image.fromarray(eye[i : i + 1], mode="F").resize((n_out, 1), RESAMPLE[resample], box=(start, 0, stop, 1))
        )[0]
        for i in range(n_in)
    ]
    return np.stack(cols, axis=1)


def upsample(
    grid: np.ndarray,
    size: tuple[int, int],
    *,
    extent: Sequence[float] = (0.0, 0.0, 1.0, 1.0),
    resample: str = "bilinear",
    clip: bool = True,
) -> np.ndarray:
    """Resize a grid map to ``size = (width, height)`` pixels, as float32 clipped to [0, 1] (an alpha
    channel; ``clip=False`` keeps the values of a map on another scale, e.g. for region selection).

    ``extent = (x0, y0, x1, y1)`` is the part of the grid's frame, in fractions of its width
    and height, that the image occupies (less than the whole frame when the image was
    letterboxed to a square before the model saw it). Grid cell (i, j) covers frame pixels
    ``[j·W/w, (j+1)·W/w) × [i·H/h, (i+1)·H/h)``. The filters are PIL's; the result is
    computed in row blocks, so a 100-Mpx heatmap needs no memory beyond itself.

    >>> upsample(np.array([[0.0, 1.0]]), (4, 2), resample="nearest").tolist()
    [[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]]
    """
    if resample not in RESAMPLE:
        raise ValueError(f"resample must be one of {sorted(RESAMPLE)}, got {resample!r}")
    g = np.asarray(grid, dtype=np.float32)
    if g.ndim != 2:
        raise ValueError(f"grid must be 2-D (h×w), got shape {g.shape}")
    width, height = int(size[0]), int(size[1])
    gh, gw = g.shape
    x0, y0, x1, y1 = (float(v) for v in extent)
    wx = _resize_weights(gw, width, x0 * gw, x1 * gw, resample)  # W×w
    wy = _resize_weights(gh, height, y0 * gh, y1 * gh, resample)  # H×h
    rows = wy @ g  # H×w, small
    out = np.empty((height, width), dtype=np.float32)
    step = _block_rows(width)
    for r in range(0, height, step):
        np.matmul(rows[r : r + step], wx.T, out=out[r : r + step])
    # bicubic/lanczos overshoot; the heatmap is an alpha channel and must stay in [0, 1].
    return np.clip(out, 0.0, 1.0, out=out) if clip else out


def overlay(image: Image.Image, heatmap: np.ndarray, *, gray: float = 0.0) -> Image.Image:
    """Blend: ``Iᵃ = I·Φ + (1 − Φ)·gray`` (paper §3.3); gray 0 is black, the authors' default.

    Works in row blocks so a 100-Mpx image needs only a few tens of MB of scratch space.

    >>> img = Image.new("RGB", (2, 1), (200, 100, 50))
    >>> np.asarray(overlay(img, np.array([[1.0, 0.5]]), gray=0)).tolist()
    [[[200, 100, 50], [100, 50, 25]]]
    """
    if not 0.0 <= float(gray) <= 255.0:
        raise ValueError(f"gray must be a level in [0, 255], got {gray!r}")
    if image.mode != "RGB":
        image = image.convert("RGB")
    width, height = image.size
    phi = np.asarray(heatmap, dtype=np.float32)
    if phi.shape != (height, width):
        raise ValueError(f"heatmap shape {phi.shape} does not match image size {(height, width)} (H×W)")
    out = Image.new("RGB", (width, height))
    g = np.float32(gray)
    step = _block_rows(width)
    for r in range(0, height, step):
        r1 = min(height, r + step)
        block = np.asarray(image.crop((0, r, width, r1)), dtype=np.float32)
        a = phi[r:r1, :, None]
        blended = block * a + (1.0 - a) * g
        out.paste(Image.fromarray(np.clip(np.rint(blended), 0, 255).astype(np.uint8), "RGB"), (0, r))
    return out


# A perceptually ordered dark-blue → cyan → yellow → red ramp (jet-like, but no black ends),
# defined by control points so no plotting library is needed.
_RAMP = np.array(
    [
        [0.00, 48, 18, 59],
        [0.15, 65, 105, 225],
        [0.35, 40, 190, 220],
        [0.50, 100, 230, 120],
        [0.65, 220, 230, 50],
        [0.82, 250, 140, 30],
        [1.00, 180, 20, 20],
    ],
    dtype=np.float64,
)


def colorize(heatmap: np.ndarray) -> Image.Image:
    """Map a [0, 1] heatmap to an RGB colour image (low = dark blue, high = red).

    >>> colorize(np.array([[0.0, 1.0]])).getpixel((1, 0))
    (180, 20, 20)
    """
    h = np.clip(np.asarray(heatmap, dtype=np.float64), 0.0, 1.0)
    channels = [np.interp(h, _RAMP[:, 0], _RAMP[:, c]) for c in (1, 2, 3)]
    return Image.fromarray(np.rint(np.stack(channels, -1)).astype(np.uint8), "RGB")


def _title_font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    # Pillow's default bitmap-sized font squeezes spaces ("Whatcolour isthe …"); its scalable
    # version (FreeType, Pillow ≥ 10.1) reads properly. Fall back to the bitmap font without it.
    try:
        return ImageFont.load_default(size=13)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def visual(
    image: Image.Image,
    heatmap: np.ndarray,
    annotated: Image.Image,
    *,
    title: str | None = None,
    height: int = 384,
) -> Image.Image:
    """A picture for people: image | colour heatmap over the image | annotated image.

    Panels are scaled to ``height`` pixels (large images are shrunk first, so this is cheap).

    >>> img = Image.new("RGB", (40, 20), "white")
    >>> visual(img, np.zeros((20, 40)), img, height=20).size
    (126, 20)
    """
    w, h = image.size
    pw = max(1, round(w * height / h))
    small = image.convert("RGB").resize((pw, height), Image.Resampling.BILINEAR, reducing_gap=2.0)
    hm_small = upsample(np.asarray(heatmap, np.float32), (pw, height), resample="bilinear")
    heat = Image.blend(small, colorize(hm_small), 0.55)
    ann = annotated.convert("RGB").resize((pw, height), Image.Resampling.BILINEAR, reducing_gap=2.0)
    gap = 3
    top = 18 if title else 0
    canvas = Image.new("RGB", (3 * pw + 2 * gap, height + top), "white")
    for i, panel in enumerate((small, heat, ann)):
        canvas.paste(panel, (i * (pw + gap), top))
    if title:
        ImageDraw.Draw(canvas).text((4, 2), title[:200], fill=(0, 0, 0), font=_title_font())
    return canvas


def draw_search(image: Image.Image, search: Any, *, scale: float = 1.0) -> Image.Image:
    """A copy of ``image`` with a search path drawn on it (a step's ``detail["search"]``, the format of
    :meth:`attnprompt.search.SearchResult.to_detail`): every visited node grey and numbered in visit order, the
    path from the root to the chosen node orange, the window shown for it red. ``scale``: the picture's pixels
    per pixel of the searched image (a thumbnail's < 1).

    >>> search = {"nodes": [{"id": 0, "box": [0, 0, 64, 64], "visit": 1}, {"id": 4, "box": [32, 32, 64, 64],
    ...           "visit": 2}], "path": [0, 4], "chosen": 4, "view": [32, 32, 64, 64]}
    >>> out = draw_search(Image.new("RGB", (64, 64)), search)
    >>> out.getpixel((40, 63))[0] > 150, out.getpixel((10, 10))[0] < 60
    (True, True)
    """
    picture = image.convert("RGB")  # a copy
    draw = ImageDraw.Draw(picture)
    width = max(1, round(2 * scale))

    def rect(box: Sequence[float], colour: str, w: int) -> None:
        x0, y0, x1, y1 = (v * scale for v in box)
        draw.rectangle((x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)), outline=colour, width=w)

    nodes = {n["id"]: n for n in search.get("nodes", [])}
    visited = sorted((n for n in nodes.values() if n.get("visit")), key=lambda n: n["visit"])
    for n in visited:
        rect(n["box"], "#9a9a9a", 1)
    for i in search.get("path", [])[1:]:
        rect(nodes[i]["box"], "orange", width)
    if search.get("chosen") not in (None, 0) and search.get("view"):
        rect(search["view"], "red", width + 1)
    for n in visited:
        draw.text((n["box"][0] * scale + 2, n["box"][1] * scale + 1), str(n["visit"]), fill="white")
    return picture

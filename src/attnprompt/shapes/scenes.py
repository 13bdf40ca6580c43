"""Deterministic synthetic "shapes" scenes: saturated shapes on dull, cluttered backgrounds.

Every scene is a pure function of its arguments.  Randomness comes only from a
``numpy.random.Generator(PCG64(seed))`` and only through ``integers``/``choice``/``random``
(which are bit-exact across platforms); geometry is snapped to integer pixels before it is
drawn, and no transcendental functions are evaluated per scene (their SIMD implementations
may differ between CPUs), so the same seed gives byte-identical images on any machine that
has the same Pillow rasteriser.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from .truth import remember

__all__ = [
    "BACKGROUND_KINDS",
    "COLORS",
    "SHAPES",
    "Scene",
    "ShapeObject",
    "make_scene",
    "render_shape_mask",
]

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "diamond")

# Saturated, hue-separated colours.  Backgrounds are kept at low chroma (max-min <= ~60),
# while every colour here has chroma >= 140, so colour alone separates object from clutter.
# The smallest pairwise RGB distance (orange/yellow) is ~100.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 25, 25),
    "green": (30, 170, 50),
    "blue": (30, 80, 230),
    "yellow": (240, 220, 20),
    "orange": (245, 120, 10),
    "purple": (140, 50, 200),
    "cyan": (20, 200, 215),
    "pink": (250, 100, 190),
}

BACKGROUND_KINDS: tuple[str, ...] = ("gradient", "texture", "clutter", "mottled")

# Object nominal sizes (bounding-circle diameter) as a fraction of the image side.
_SIZE_RANGE = (0.075, 0.30)
# Same-coloured objects must stay this many pixels apart, otherwise they would merge into
# one blob and make "how many red objects" / "what shape is the red object" unanswerable.
_SAME_COLOR_GAP = 3
_TRIES_PER_OBJECT = 60
_SCENE_RESTARTS = 12
_ANGLES = (-15, -10, -5, 0, 5, 10, 15)


# ----------------------------------------------------------------------------- geometry
def _unit_polygons() -> dict[str, list[tuple[float, float]]]:
    # Unit-radius outlines (bounding circle of radius 1, y pointing down).
    s = 1.0 / math.sqrt(2.0)
    tri = [(math.cos(math.radians(a)), math.sin(math.radians(a))) for a in (-90, 30, 150)]
    star = []
    for k in range(10):
        # A fat star (inner radius 0.48 rather than the regular 0.38) keeps its points
        # recognisable when the whole shape is only ~9 px wide.
        r = 1.0 if k % 2 == 0 else 0.48
        a = math.radians(-90 + 36 * k)
        star.append((r * math.cos(a), r * math.sin(a)))
    w = 0.34
    a = math.sqrt(1.0 - w * w)
    cross = [
        (-w, -a),
        (w, -a),
        (w, -w),
        (a, -w),
        (a, w),
        (w, w),
        (w, a),
        (-w, a),
        (-w, w),
        (-a, w),
        (-a, -w),
        (-w, -w),
    ]
    # Narrower than tall so a diamond never looks like a square rotated by 45 degrees.
    diamond = [(0.0, -1.0), (0.6, 0.0), (0.0, 1.0), (-0.6, 0.0)]
    square = [(-s, -s), (s, -s), (s, s), (-s, s)]
    return {"square": square, "triangle": tri, "star": star, "cross": cross, "diamond": diamond}


def _rotated_tables() -> dict[tuple[str, int], tuple[tuple[float, float], ...]]:
    # Rounded to 6 decimals so libm differences between machines (1 ulp) cannot leak
    # into the rasterised vertices.
    out = {}
    for shape, poly in _unit_polygons().items():
        for ang in _ANGLES:
            c, s = math.cos(math.radians(ang)), math.sin(math.radians(ang))
            out[shape, ang] = tuple((round(x * c - y * s, 6), round(x * s + y * c, 6)) for x, y in poly)
    return out


_POLYS = _rotated_tables()


def _local_mask(shape: str, size: int, angle: int, pad: int) -> tuple[np.ndarray, int]:
    """Shape drawn on a small square canvas; returns (mask, index of the centre pixel)."""
    half = size // 2
    c = half + pad
    side = size + 2 * pad + 1
    im = Image.new("1", (side, side))
    draw = ImageDraw.Draw(im)
    if shape == "circle":
        x0 = c - half
        draw.ellipse((x0, x0, x0 + size - 1, x0 + size - 1), fill=1)
    else:
        r = (size - 1) / 2.0
        pts = [(c + math.floor(r * x + 0.5), c + math.floor(r * y + 0.5)) for x, y in _POLYS[shape, angle]]
        draw.polygon(pts, fill=1)
    return np.asarray(im, dtype=bool), c


_MASK_CACHE: dict[tuple[str, int, int, int], tuple[np.ndarray, int]] = {}


def _cached_local_mask(shape: str, size: int, angle: int, pad: int) -> tuple[np.ndarray, int]:
    # The mask only depends on (shape, size, angle, pad) and there are few such combinations,
    # so caching removes almost all rasterisation cost from scene generation.
    key = (shape, size, angle, pad)
    hit = _MASK_CACHE.get(key)
    if hit is None:
        if len(_MASK_CACHE) > 20000:
            _MASK_CACHE.clear()
        m, c = _local_mask(shape, size, angle, pad)
        m.setflags(write=False)
        hit = _MASK_CACHE[key] = (m, c)
    return hit


def _snap(v: float) -> int:
    return math.floor(float(v) + 0.5)


def render_shape_mask(
    shape: str,
    center: tuple[float, float],
    size: int,
    image_size: int,
    *,
    angle: int = 0,
) -> np.ndarray:
    """Full (unoccluded) boolean mask of one shape in an ``image_size`` x ``image_size`` image.

    ``size`` is the diameter of the shape's bounding circle in pixels, ``center`` is (x, y)
    and is snapped to the nearest integer pixel, ``angle`` is one of -15..15 in steps of 5
    degrees.  Parts falling outside the image are clipped.

    >>> int(render_shape_mask("circle", (10, 10), 9, 20).sum())
    61
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    if angle not in _ANGLES:
        raise ValueError(f"angle must be one of {_ANGLES}, got {angle!r}")
    size = int(size)
    if size < 1:
        raise ValueError(f"size must be >= 1 pixel, got {size}")
    local, c = _cached_local_mask(shape, size, angle, 0)
    out = np.zeros((image_size, image_size), dtype=bool)
    cx, cy = _snap(center[0]), _snap(center[1])
    ox, oy = cx - c, cy - c
    h, w = local.shape
    x0, y0 = max(ox, 0), max(oy, 0)
    x1, y1 = min(ox + w, image_size), min(oy + h, image_size)
    if x0 < x1 and y0 < y1:
        out[y0:y1, x0:x1] = local[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
    return out


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    # Square (Chebyshev) dilation; the caller supplies enough padding that nothing is lost.
    out = mask.copy()
    for s in range(1, r + 1):
        out[:, s:] |= mask[:, :-s]
        out[:, :-s] |= mask[:, s:]
    tmp = out.copy()
    for s in range(1, r + 1):
        out[s:, :] |= tmp[:-s, :]
        out[:-s, :] |= tmp[s:, :]
    return out


# ----------------------------------------------------------------------------- dataclasses
@dataclass(frozen=True, eq=False)
class ShapeObject:
    """One drawn object.

    ``mask`` holds the object's *visible* pixels in the final image and ``box`` is the tight
    ``(x0, y0, x1, y1)`` bounding box of ``mask`` with exclusive ``x1``/``y1``.  ``angle`` is the
    rotation (degrees) it was drawn with and ``full_area`` its pixel area before occlusion.

    >>> obj = make_scene(0).objects[0]
    >>> obj.area == int(obj.mask.sum())
    True
    """

    shape: str
    color: str
    size: int
    center: tuple[float, float]
    box: tuple[int, int, int, int]
    mask: np.ndarray
    angle: int = 0
    full_area: int | None = None

    @property
    def area(self) -> int:
        """Number of visible pixels.

        >>> make_scene(0).objects[0].area > 0
        True
        """
        return int(self.mask.sum())

    @property
    def name(self) -> str:
        """Colour and shape, e.g. ``"red star"``.

        >>> make_scene(0).objects[0].name.split()[0] in COLORS
        True
        """
        return f"{self.color} {self.shape}"

    @property
    def visible_fraction(self) -> float:
        """Visible area divided by the unoccluded area (1.0 if the latter is unknown).

        >>> 0.6 <= make_scene(0).objects[0].visible_fraction <= 1.0
        True
        """
        if not self.full_area:
            return 1.0
        return self.area / self.full_area

    def _key(self) -> tuple:
        return (self.shape, self.color, self.size, self.center, self.box, self.angle, self.full_area)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ShapeObject):
            return NotImplemented
        return self._key() == other._key() and np.array_equal(self.mask, other.mask)

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"ShapeObject(shape={self.shape!r}, color={self.color!r}, size={self.size}, "
            f"center={self.center}, box={self.box}, angle={self.angle}, area={self.area})"
        )


@dataclass(frozen=True)
class Scene:
    """A generated scene: RGB image plus its objects in drawing order (later ones on top).

    >>> scene = make_scene(0)
    >>> scene.image.size == (scene.size, scene.size)
    True
    """

    seed: int
    size: int
    image: Image.Image
    objects: tuple[ShapeObject, ...]
    background: str = ""

    def __len__(self) -> int:
        return len(self.objects)

    def __iter__(self) -> Iterator[ShapeObject]:
        return iter(self.objects)

    def find(self, shape: str | None = None, color: str | None = None) -> list[ShapeObject]:
        """Objects matching ``shape`` and/or ``color`` (``None`` matches anything).

        >>> scene = make_scene(0)
        >>> len(scene.find()) == len(scene.objects)
        True
        """
        return [self.objects[i] for i in self.find_indices(shape, color)]

    def find_indices(self, shape: str | None = None, color: str | None = None) -> list[int]:
        """Indices into ``objects`` of the objects matching ``shape`` and/or ``color``.

        >>> scene = make_scene(0)
        >>> scene.find_indices(color=scene.objects[0].color)[0]
        0
        """
        return [
            i
            for i, o in enumerate(self.objects)
            if (shape is None or o.shape == shape) and (color is None or o.color == color)
        ]


# ----------------------------------------------------------------------------- backgrounds
# Tint directions added to a gray level; scaled by <= 1.0 they keep chroma below ~45.
_TINTS = np.array(
    [
        (0, 0, 0),  # neutral gray
        (22, 6, -20),  # brown
        (10, 14, -22),  # olive
        (-10, 0, 14),  # slate
        (10, 3, -8),  # warm gray
        (-8, 10, -4),  # sage
        (14, -2, 4),  # dusty mauve
    ],
    dtype=np.float64,
)


def _dull(rng: np.random.Generator, lo: int = 70, hi: int = 185) -> np.ndarray:
    gray = float(rng.integers(lo, hi + 1))
    tint = _TINTS[int(rng.integers(len(_TINTS)))]
    return gray + tint * (float(rng.integers(0, 11)) / 10.0)


def _upsample(grid: np.ndarray, n: int) -> np.ndarray:
    """Bilinear k x k -> n x n upsampling with basic arithmetic only (bit-reproducible)."""
    k = grid.shape[0]
    t = np.arange(n, dtype=np.float64) * ((k - 1) / (n - 1))
    i0 = np.minimum(t.astype(np.int64), k - 2)
    f = t - i0
    extra = (1,) * (grid.ndim - 2)  # trailing channel axes, if any
    fr, fc = f.reshape((n, 1) + extra), f.reshape((1, n) + extra)
    rows = grid[i0] * (1.0 - fr) + grid[i0 + 1] * fr
    return rows[:, i0] * (1.0 - fc) + rows[:, i0 + 1] * fc


def _gradient(rng: np.random.Generator, n: int) -> np.ndarray:
    base = _dull(rng)
    corners = np.empty((2, 2, 3))
    for j in range(2):
        for i in range(2):
            corners[j, i] = base + float(rng.integers(-35, 36)) + rng.integers(-8, 9, 3)
    img = _upsample(corners, n)
    k = int(rng.integers(3, 7))
    blotch = rng.integers(-18, 19, (k, k)).astype(np.float64)
    return img + _upsample(blotch, n)[:, :, None]


def _texture(rng: np.random.Generator, n: int) -> np.ndarray:
    c1 = _dull(rng)
    c2 = c1 + float(rng.choice([-1, 1]) * rng.integers(14, 31)) + rng.integers(-6, 7, 3)
    yy, xx = np.mgrid[0:n, 0:n]
    period = int(rng.integers(4, 17))
    if rng.integers(3) == 0:
        pattern = ((xx // period) + (yy // period)) % 2
    else:
        a, b = 0, 0
        while a == 0 and b == 0:
            a, b = (int(v) for v in rng.integers(-3, 4, 2))
        pattern = ((a * xx + b * yy) // period) % 2
    img = np.where(pattern[:, :, None] == 1, c2, c1)
    k = int(rng.integers(3, 6))
    return img + _upsample(rng.integers(-12, 13, (k, k)).astype(np.float64), n)[:, :, None]


def _mottled(rng: np.random.Generator, n: int) -> np.ndarray:
    c1 = _dull(rng)
    c2 = _dull(rng)
    # Guarantee visible mottling: a sum of octaves concentrates near its mean, so stretch
    # it to [0, 1] and make the two end colours differ by at least 30 gray levels.
    c2 = c2 + float(rng.choice([-1, 1]) * rng.integers(30, 51)) - (c2.mean() - c1.mean())
    field = np.zeros((n, n))
    for k, amp in ((4, 1.0), (8, 0.5), (16, 0.25)):
        field += _upsample(rng.random((k, k)) * amp, n)
    lo, hi = field.min(), field.max()
    field = (field - lo) / (hi - lo)
    return c1 + (c2 - c1) * field[:, :, None]


def _clutter(rng: np.random.Generator, n: int) -> np.ndarray:
    img = _gradient(rng, n)
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    lo, hi = max(3, n // 30), max(5, n // 8)
    for _ in range(int(rng.integers(15, 41))):
        col = tuple(int(v) for v in np.clip(_dull(rng, 60, 200), 0, 255))
        x, y = (int(v) for v in rng.integers(0, n, 2))
        kind = int(rng.integers(3))
        if kind == 0:  # straight segment
            dx, dy = (int(v) for v in rng.integers(-hi, hi + 1, 2))
            draw.line((x, y, x + dx, y + dy), fill=col, width=int(rng.integers(1, 3)))
        elif kind == 1:  # scribble
            pts = [(x, y)]
            for _ in range(int(rng.integers(2, 5))):
                dx, dy = (int(v) for v in rng.integers(-lo, lo + 1, 2))
                pts.append((pts[-1][0] + dx, pts[-1][1] + dy))
            draw.line(pts, fill=col, width=1)
        else:
            # Irregular blob: random radii per vertex so it never reads as one of SHAPES.
            m = int(rng.integers(5, 9))
            rad = rng.integers(lo // 2 + 1, lo + 2, m)
            pts = [(x + _snap(r * ux), y + _snap(r * uy)) for r, (ux, uy) in zip(rad, _BLOB_DIRS[m])]
            draw.polygon(pts, fill=col)
    return np.asarray(canvas, dtype=np.float64)


_BLOB_DIRS = {
    m: [(round(math.cos(2 * math.pi * k / m), 6), round(math.sin(2 * math.pi * k / m), 6)) for k in range(m)]
    for m in range(5, 9)
}

_BACKGROUNDS = {"gradient": _gradient, "texture": _texture, "clutter": _clutter, "mottled": _mottled}


# ----------------------------------------------------------------------------- scenes
def _size_table(image_size: int) -> tuple[np.ndarray, np.ndarray]:
    lo = max(6, _snap(_SIZE_RANGE[0] * image_size))
    hi = max(lo, _snap(_SIZE_RANGE[1] * image_size))
    sizes = np.arange(lo, hi + 1)
    # Discrete log-uniform: P(s) proportional to 1/s, so small objects are common.
    p = 1.0 / sizes
    return sizes, p / p.sum()


_SIZE_TABLES: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def make_scene(
    seed: int,
    n_objects: int = 4,
    size: int = 224,
    *,
    min_visible: float = 0.6,
    unique_pairs: bool = True,
) -> Scene:
    """Generate a deterministic scene of ``n_objects`` coloured shapes on a cluttered background.

    Object sizes (bounding-circle diameter) are log-uniform between ~7.5% and 30% of ``size``.
    Objects may overlap, but each keeps at least ``min_visible`` of its own area visible,
    same-coloured objects never touch, and everything stays inside the image.  With
    ``unique_pairs`` no two objects share a (colour, shape) pair.

    Raises ``ValueError`` for out-of-range arguments, or if the objects cannot be placed.

    >>> scene = make_scene(0, n_objects=3, size=112)
    >>> len(scene.objects), scene.image.size
    (3, (112, 112))
    """
    seed, n_objects, size = _check_scene(seed, n_objects, size, min_visible)
    rng = np.random.Generator(np.random.PCG64(seed))
    bg_kind = BACKGROUND_KINDS[int(rng.integers(len(BACKGROUND_KINDS)))]
    background = _BACKGROUNDS[bg_kind](rng, size)

    if size not in _SIZE_TABLES:
        _SIZE_TABLES[size] = _size_table(size)
    sizes, probs = _SIZE_TABLES[size]
    color_names = tuple(COLORS)

    placed = None
    for _ in range(_SCENE_RESTARTS):
        placed = _place_objects(rng, n_objects, size, sizes, probs, color_names, min_visible, unique_pairs)
        if placed is not None:
            break
    if placed is None:
        raise ValueError(
            f"could not place {n_objects} objects in a {size}x{size} image with min_visible={min_visible} "
            f"after {_SCENE_RESTARTS} restarts; use fewer objects, a larger image or a lower min_visible"
        )
    specs, top, full_areas = placed
    image = _paint(rng, background, specs, top)
    objects = [_scene_object(spec, top == i, full_areas[i]) for i, spec in enumerate(specs)]
    # the shapes segmenter finds the masks from the pixels (shapes.truth); remade on asking, not kept
    remember(image, partial(scene_masks, seed, n_objects, size, min_visible=min_visible, unique_pairs=unique_pairs))
    return Scene(seed=seed, size=size, image=image, objects=tuple(objects), background=bg_kind)


def _check_scene(seed: Any, n_objects: Any, size: Any, min_visible: float) -> tuple[int, int, int]:
    if (
        isinstance(n_objects, bool)
        or not isinstance(n_objects, (int, np.integer))
        or not 1 <= n_objects <= 12
    ):
        raise ValueError(f"n_objects must be an integer in 1..12, got {n_objects!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 32:
        raise ValueError(f"size must be an integer >= 32, got {size!r}")
    if not 0.0 < min_visible <= 1.0:
        raise ValueError(f"min_visible must be in (0, 1], got {min_visible!r}")
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    return seed, int(n_objects), int(size)


def _paint(rng: np.random.Generator, background: np.ndarray, specs: list, top: np.ndarray) -> Image.Image:
    """The objects over the background, with per-object brightness jitter and pixel noise (the draws from
    ``rng`` in the order the shipped scenes were made with)."""
    size = top.shape[0]
    shade = np.zeros((size, size), dtype=np.int16)
    obj_img = np.zeros((size, size, 3), dtype=np.float64)
    for i, (_shape, color, _d, _cx, _cy, _ang) in enumerate(specs):
        sel = top == i
        obj_img[sel] = COLORS[color]
        # Per-object brightness jitter so objects are not all identical flat colours.
        shade[sel] = int(rng.integers(-10, 11))
    on_obj = top >= 0
    img = np.where(on_obj[:, :, None], obj_img + shade[:, :, None], background)

    # Luminance noise (shared across channels) plus a little chroma noise; objects get half
    # the background amplitude so their hue is never in doubt.
    amp = int(rng.integers(6, 13))
    lum = rng.integers(-amp, amp + 1, (size, size)).astype(np.int16)
    lum = np.where(on_obj, lum // 2, lum)
    chroma = rng.integers(-3, 4, (size, size, 3)).astype(np.int16)
    pixels = np.floor(img + 0.5).astype(np.int16) + lum[:, :, None] + chroma
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def _scene_object(spec: tuple, mask: np.ndarray, full_area: Any) -> ShapeObject:
    shape, color, d, cx, cy, ang = spec
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    box = (int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1)
    return ShapeObject(shape=shape, color=color, size=d, center=(float(cx), float(cy)), box=box, mask=mask,
                       angle=ang, full_area=full_area)


def scene_masks(seed: int, n_objects: int = 4, size: int = 224, **kwargs: Any) -> list[tuple[str, np.ndarray]]:
    """The (name, visible mask) of each object of ``make_scene(seed, n_objects, size, **kwargs)``, in
    drawing order.

    >>> [(n, m.shape) for n, m in scene_masks(0, 2, 64)] == [(o.name, (64, 64)) for o in make_scene(0, 2, 64)]
    True
    """
    return [(o.name, o.mask) for o in make_scene(seed, n_objects, size, **kwargs).objects]


_Spec = tuple[str, str, int, int, int, int]  # shape, colour, diameter, centre x, centre y, angle


def _place_objects(rng: np.random.Generator, n_objects: int, size: int, sizes: np.ndarray, probs: np.ndarray,
                   color_names: Sequence[str], min_visible: float,
                   unique_pairs: bool) -> tuple[list[_Spec], np.ndarray, list[int]] | None:
    """Sequential placement on an index map; returns None if some object cannot be placed."""
    top = np.full((size, size), -1, dtype=np.int16)  # index of the object visible at each pixel
    specs: list[_Spec] = []
    full_areas: list[int] = []
    visible: list[int] = []
    used_pairs: set[tuple[str, str]] = set()
    pad = _SAME_COLOR_GAP + 1
    for _ in range(n_objects):
        while True:
            shape = SHAPES[int(rng.integers(len(SHAPES)))]
            color = color_names[int(rng.integers(len(color_names)))]
            if not unique_pairs or (color, shape) not in used_pairs:
                break
        d = int(rng.choice(sizes, p=probs))
        angle = _ANGLES[int(rng.integers(len(_ANGLES)))] if shape != "circle" else 0
        local, c = _cached_local_mask(shape, d, angle, pad)
        near = _cached_dilation(shape, d, angle, pad, local)
        area = int(local.sum())
        side = local.shape[0]
        same = [i for i, s in enumerate(specs) if s[1] == color]
        ok = False
        for _ in range(_TRIES_PER_OBJECT):
            ox, oy = (int(v) for v in rng.integers(0, size - side + 1, 2))
            region = top[oy : oy + side, ox : ox + side]
            if same:
                around = region[near]
                if any((around == i).any() for i in same):
                    continue
            hidden = np.bincount(region[local] + 1, minlength=len(specs) + 1)[1:]
            if all(visible[i] - hidden[i] >= min_visible * full_areas[i] for i in range(len(specs))):
                ok = True
                break
        if not ok:
            return None
        for i in range(len(specs)):
            visible[i] -= int(hidden[i])
        region[local] = len(specs)
        specs.append((shape, color, d, ox + c, oy + c, angle))
        full_areas.append(area)
        visible.append(area)
        used_pairs.add((color, shape))
    return specs, top, full_areas


_DILATION_CACHE: dict[tuple[str, int, int, int], np.ndarray] = {}


def _cached_dilation(shape: str, d: int, angle: int, pad: int, local: np.ndarray) -> np.ndarray:
    key = (shape, d, angle, pad)
    hit = _DILATION_CACHE.get(key)
    if hit is None:
        if len(_DILATION_CACHE) > 20000:
            _DILATION_CACHE.clear()
        hit = _DILATION_CACHE[key] = _dilate(local, _SAME_COLOR_GAP)
        hit.setflags(write=False)
    return hit

"""Crowded detail scenes: a small shapes scene hidden among other shapes scenes and colourful clutter, on a
canvas ``ratio`` times its side — where one attention crop meets distractors, as in real high-resolution
photos (V*Bench, HR-Bench).

The canvas holds, on the detail scenes' dull clutter (:mod:`attnprompt.shapes.detail`):

- the **target** scene (``make_scene(seed, n_objects, scene_size)``) at a random position;
- other held-out **scenes** of the same size (2–4 objects; seeds from
  :data:`~attnprompt.shapes.splits.CROWDED_DISTRACTORS`), about 40 % of the canvas in all, never overlapping;
- **loose shapes** (one coloured shape each, the scenes' object sizes) and **colour blobs** (irregular
  saturated polygons that read as no shape) in the space left.

No distractor carries the attribute the question names (``avoid_shape`` for "What colour is the star?",
``avoid_color`` for "What shape is the red object?"): the named object is unique in the canvas, while
distractors may share everything else (the answer's colour or shape included). Blobs avoid the named
colour too (a red blob would be "a red object"); they are never a shape. Deterministic in its arguments.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
from PIL import Image, ImageDraw

from .detail import detail_canvas
from .scenes import _BLOB_DIRS, COLORS, SHAPES, Scene, ShapeObject, _size_table, make_scene, render_shape_mask
from .splits import CROWDED_DISTRACTORS, SeedRange
from .truth import remember

__all__ = ["CROWDED_FILL", "CrowdedScene", "LooseShape", "crowded_masks", "make_crowded"]

#: The share of the canvas the scenes (the target's included) cover.
CROWDED_FILL = 0.4
#: Loose shapes and colour blobs per scene-sized cell of the canvas.
LOOSE_PER_CELL = 1.5
BLOBS_PER_CELL = 0.75
_TRIES = 60
_GAP = 3


@dataclass(frozen=True)
class LooseShape:
    """One loose shape on a crowded canvas: what it is, where (``center`` and tight ``box`` in canvas pixels),
    its size (bounding-circle diameter) and rotation; :meth:`mask` draws its pixels when asked (a canvas-sized
    mask each would weigh 3 MB at 8×)."""

    shape: str
    color: str
    size: int
    center: tuple[int, int]
    box: tuple[int, int, int, int]
    angle: int
    side: int

    @property
    def name(self) -> str:
        """Colour and shape, e.g. ``"red star"``."""
        return f"{self.color} {self.shape}"

    def mask(self) -> np.ndarray:
        """Its pixels on the canvas (side × side, boolean).

        >>> LooseShape("circle", "red", 9, (10, 10), (6, 6, 15, 15), 0, 20).mask().sum()
        np.int64(61)
        """
        return render_shape_mask(self.shape, self.center, self.size, self.side, angle=self.angle)


@dataclass(frozen=True)
class CrowdedScene:
    """A crowded canvas: the target ``scene`` at ``offset`` (x, y), the distractor scenes (seed, objects, box each), the
    loose shapes (:class:`LooseShape`) and what every distractor avoids.

    >>> c = make_crowded(10_000, ratio=3, scene_size=64, avoid_shape="star")
    >>> c.image.size, c.scene_box == (*c.offset, c.offset[0] + 64, c.offset[1] + 64)
    ((192, 192), True)
    """

    seed: int
    ratio: int
    image: Image.Image
    scene: Scene
    offset: tuple[int, int]
    distractors: tuple[tuple[int, int, tuple[int, int, int, int]], ...]
    loose: tuple[LooseShape, ...]
    avoid_shape: str | None = None
    avoid_color: str | None = None

    @property
    def scene_box(self) -> tuple[int, int, int, int]:
        """The target scene's region in the canvas, ``(x0, y0, x1, y1)`` with exclusive ends."""
        x, y = self.offset
        return (x, y, x + self.scene.size, y + self.scene.size)

    def box_of(self, obj: ShapeObject) -> tuple[int, int, int, int]:
        """A target-scene object's tight box in canvas pixels.

        >>> c = make_crowded(10_000, ratio=3, scene_size=64, avoid_shape="star")
        >>> c.box_of(c.scene.objects[0])[0] - c.scene.objects[0].box[0] == c.offset[0]
        True
        """
        x, y = self.offset
        x0, y0, x1, y1 = obj.box
        return (x0 + x, y0 + y, x1 + x, y1 + y)


def _clashes(obj_shape: str, obj_color: str, avoid_shape: str | None, avoid_color: str | None) -> bool:
    return obj_shape == avoid_shape or obj_color == avoid_color


def _free(occupied: list[tuple[int, int, int, int]], box: tuple[int, int, int, int], gap: int) -> bool:
    x0, y0, x1, y1 = box
    return all(x1 + gap <= a or b + gap <= x0 or y1 + gap <= c or d + gap <= y0 for a, c, b, d in occupied)


def make_crowded(seed: int, ratio: int = 4, *, scene_size: int = 224, n_objects: int = 2,
                 avoid_shape: str | None = None, avoid_color: str | None = None,
                 distractors: SeedRange = CROWDED_DISTRACTORS) -> CrowdedScene:
    """The crowded canvas of target scene ``seed`` at ``ratio`` × ``scene_size``, every distractor free of
    ``avoid_shape`` and ``avoid_color`` (see the module), the other scenes drawn from ``distractors``. The
    canvas differs with what is avoided (each question of a scene gets its own).

    >>> c = make_crowded(10_001, ratio=4, scene_size=64, avoid_color="red")
    >>> len(c.distractors) > 0, all(o.color != "red" for o in c.loose)
    (True, True)
    """
    if isinstance(ratio, bool) or not isinstance(ratio, (int, np.integer)) or ratio < 2:
        raise ValueError(f"ratio must be an integer ≥ 2 (canvas side / scene side); got {ratio!r}")
    if avoid_shape is not None and avoid_shape not in SHAPES:
        raise ValueError(f"avoid_shape must be one of {SHAPES} or None; got {avoid_shape!r}")
    if avoid_color is not None and avoid_color not in COLORS:
        raise ValueError(f"avoid_color must be one of {tuple(COLORS)} or None; got {avoid_color!r}")
    scene = make_scene(seed, n_objects=n_objects, size=scene_size)
    side = int(ratio) * scene_size
    what = (SHAPES.index(avoid_shape) + 1 if avoid_shape else 0,
            list(COLORS).index(avoid_color) + 1 if avoid_color else 0)
    rng = np.random.Generator(np.random.PCG64([int(seed), int(ratio), 3, *what]))
    pixels, _ = detail_canvas(rng, side)
    x, y = (int(rng.integers(0, side - scene_size + 1)) for _ in range(2))
    pixels[y:y + scene_size, x:x + scene_size] = np.asarray(scene.image)
    c = _Canvas(rng, pixels, [(x, y, x + scene_size, y + scene_size)], scene_size, avoid_shape, avoid_color)
    others = _add_scenes(c, max(1, round(CROWDED_FILL * ratio * ratio)) - 1, distractors)
    loose = _add_loose(c, round(LOOSE_PER_CELL * ratio * ratio))
    canvas = Image.fromarray(c.pixels, "RGB")
    _add_blobs(c, canvas, round(BLOBS_PER_CELL * ratio * ratio))
    remember(canvas, partial(crowded_masks, int(seed), int(ratio), scene_size, n_objects, avoid_shape, avoid_color,
                             distractors))
    return CrowdedScene(int(seed), int(ratio), canvas, scene, (x, y), tuple(others), tuple(loose),
                        avoid_shape, avoid_color)


@dataclass
class _Canvas:
    """A crowded canvas being drawn: its random stream, pixels, the boxes taken, and what to avoid."""

    rng: np.random.Generator
    pixels: np.ndarray
    occupied: list[tuple[int, int, int, int]]
    scene_size: int
    avoid_shape: str | None
    avoid_color: str | None

    @property
    def side(self) -> int:
        return self.pixels.shape[0]

    def place(self, draw: Callable[[], tuple[int, int, int, int]], gap: int) -> tuple[int, int, int, int] | None:
        """A free box among ``_TRIES`` drawn ones (``gap`` pixels from any taken box), or None."""
        for _ in range(_TRIES):
            box = draw()
            if _free(self.occupied, box, gap):
                return box
        return None


def _add_scenes(c: _Canvas, wanted: int, seeds: SeedRange) -> list[tuple[int, int, tuple[int, int, int, int]]]:
    # other held-out scenes without the named attribute, at random free places
    side, size, out = c.side, c.scene_size, []
    for _ in range(wanted):
        def draw() -> tuple[int, int, int, int]:
            bx, by = (int(v) for v in c.rng.integers(0, side - size + 1, 2))
            return (bx, by, bx + size, by + size)

        box = c.place(draw, 0)
        if box is None:
            continue
        while True:
            d_seed = int(seeds.start + c.rng.integers(seeds.size))
            other = make_scene(d_seed, n_objects=int(c.rng.integers(2, 5)), size=size)
            if not any(_clashes(o.shape, o.color, c.avoid_shape, c.avoid_color) for o in other.objects):
                break
        c.pixels[box[1]:box[3], box[0]:box[2]] = np.asarray(other.image)
        c.occupied.append(box)
        out.append((d_seed, len(other.objects), box))
    return out


def _add_loose(c: _Canvas, count: int) -> list[LooseShape]:
    # single coloured shapes of the scenes' object sizes, in the space left
    sizes, probs = _size_table(c.scene_size)
    shapes = [s for s in SHAPES if s != c.avoid_shape]
    colors = [k for k in COLORS if k != c.avoid_color]
    side = c.side
    lum = c.rng.integers(-6, 7, (side, side)).astype(np.int16) // 2
    loose = []
    for _ in range(count):
        shape, color = shapes[int(c.rng.integers(len(shapes)))], colors[int(c.rng.integers(len(colors)))]
        d = int(c.rng.choice(sizes, p=probs))
        angle = (-15, -10, -5, 0, 5, 10, 15)[int(c.rng.integers(7))] if shape != "circle" else 0

        def draw(d: int = d) -> tuple[int, int, int, int]:
            cx, cy = (int(v) for v in c.rng.integers(d // 2 + 1, side - d // 2 - 1, 2))
            return (cx - d // 2 - 1, cy - d // 2 - 1, cx + d // 2 + 2, cy + d // 2 + 2)

        box = c.place(draw, _GAP)
        if box is None:
            continue
        cx, cy = box[0] + d // 2 + 1, box[1] + d // 2 + 1
        ys, xs = np.nonzero(render_shape_mask(shape, (cx, cy), d, side, angle=angle))
        colour = np.asarray(COLORS[color], dtype=np.int16) + int(c.rng.integers(-10, 11))
        c.pixels[ys, xs] = np.clip(colour[None, :] + lum[ys, xs, None], 0, 255).astype(np.uint8)
        tight = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        c.occupied.append(tight)
        loose.append(LooseShape(shape, color, d, (cx, cy), tight, angle, side))
    return loose


def _add_blobs(c: _Canvas, canvas: Image.Image, count: int) -> None:
    # irregular saturated polygons (never one of SHAPES), never of the named colour
    draw_on = ImageDraw.Draw(canvas)
    lo = max(3, c.scene_size // 30)
    colors = [k for k in COLORS if k != c.avoid_color]
    for _ in range(count):
        m = int(c.rng.integers(5, 9))
        radius = c.rng.integers(lo, 3 * lo + 1, m)
        reach = int(radius.max()) + 1

        def draw(reach: int = reach) -> tuple[int, int, int, int]:
            bx, by = (int(v) for v in c.rng.integers(reach, c.side - reach, 2))
            return (bx - reach, by - reach, bx + reach, by + reach)

        box = c.place(draw, _GAP)
        if box is None:
            continue
        bx, by = box[0] + reach, box[1] + reach
        colour = tuple(int(v) for v in np.clip(np.asarray(COLORS[colors[int(c.rng.integers(len(colors)))]])
                                               + int(c.rng.integers(-10, 11)), 0, 255))
        pts = [(bx + math.floor(r * ux + 0.5), by + math.floor(r * uy + 0.5))
               for r, (ux, uy) in zip(radius, _BLOB_DIRS[m])]
        draw_on.polygon(pts, fill=colour)
        c.occupied.append(box)


def crowded_masks(seed: int, ratio: int = 4, scene_size: int = 224, n_objects: int = 2, avoid_shape: str | None = None,
                  avoid_color: str | None = None,
                  distractors: SeedRange = CROWDED_DISTRACTORS) -> list[tuple[str, np.ndarray]]:
    """The (name, visible mask in canvas pixels) of every object of ``make_crowded(...)``: the target scene's,
    the distractor scenes', the loose shapes' (blobs are no objects). Remade on asking: at 8× each mask is a
    canvas-sized array, so this is for the segmentation baselines, not for every sample.

    >>> c = make_crowded(10_000, ratio=3, scene_size=64, avoid_shape="star")
    >>> names = [n for n, _ in crowded_masks(10_000, 3, 64, avoid_shape="star")]
    >>> names[: len(c.scene.objects)] == [o.name for o in c.scene.objects], "star" in " ".join(names[2:])
    (True, False)
    """
    c = make_crowded(seed, ratio, scene_size=scene_size, n_objects=n_objects, avoid_shape=avoid_shape,
                     avoid_color=avoid_color, distractors=distractors)
    side = c.image.width

    def placed(objects: Sequence[ShapeObject], x: int, y: int) -> list[tuple[str, np.ndarray]]:
        out = []
        for o in objects:
            mask = np.zeros((side, side), dtype=bool)
            mask[y:y + scene_size, x:x + scene_size] = o.mask
            out.append((o.name, mask))
        return out

    out = placed(c.scene.objects, *c.offset)
    for d_seed, n, box in c.distractors:
        out += placed(make_scene(d_seed, n_objects=n, size=scene_size).objects, box[0], box[1])
    out += [(o.name, o.mask()) for o in c.loose]
    return out

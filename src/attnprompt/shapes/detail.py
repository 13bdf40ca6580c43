"""Detail scenes (V*Bench-like, offline, with ground truth): a small shapes scene pasted at a random
position of a larger canvas that holds no object, only the testbed's dull clutter.

A VLM that sees the whole canvas at its own low input side sees the scene's objects ``ratio`` times
smaller than in the scene itself; a crop of the scene's region shows them as the scene does. The
canvas is drawn with the scenes' own background generators (dull colours, never an object colour),
so every object of the canvas is one of the scene's, and a question unambiguous in the scene is
unambiguous in the canvas.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
from PIL import Image

from .scenes import _BACKGROUNDS, Scene, ShapeObject, make_scene
from .truth import remember

__all__ = ["DetailScene", "make_detail"]


@dataclass(frozen=True)
class DetailScene:
    """A canvas of ``ratio`` × the scene's side with ``scene`` pasted at ``offset`` (x, y, canvas pixels).

    >>> d = make_detail(800_000, ratio=2, scene_size=64)
    >>> d.image.size, d.scene_box == (*d.offset, d.offset[0] + 64, d.offset[1] + 64)
    ((128, 128), True)
    """

    seed: int
    ratio: int
    image: Image.Image
    scene: Scene
    offset: tuple[int, int]

    @property
    def scene_box(self) -> tuple[int, int, int, int]:
        """The scene's region in the canvas, ``(x0, y0, x1, y1)`` with exclusive ends."""
        x, y = self.offset
        return (x, y, x + self.scene.size, y + self.scene.size)

    def box_of(self, obj: ShapeObject) -> tuple[int, int, int, int]:
        """An object's tight box in canvas pixels.

        >>> d = make_detail(800_000, ratio=2, scene_size=64)
        >>> o = d.scene.objects[0]
        >>> d.box_of(o)[0] - o.box[0] == d.offset[0]
        True
        """
        x, y = self.offset
        x0, y0, x1, y1 = obj.box
        return (x0 + x, y0 + y, x1 + x, y1 + y)


def make_detail(seed: int, ratio: int = 2, scene_size: int = 224, n_objects: int = 2) -> DetailScene:
    """The detail scene of ``seed``: ``make_scene(seed, n_objects, scene_size)`` pasted at a random
    position of a ``ratio·scene_size`` canvas of object-free clutter (the scenes' ``clutter``
    background and luminance noise). Deterministic in its arguments.

    >>> d = make_detail(800_001, ratio=4, scene_size=64)
    >>> d.image.size, len(d.scene.objects)
    ((256, 256), 2)
    """
    if isinstance(ratio, bool) or not isinstance(ratio, (int, np.integer)) or ratio < 1:
        raise ValueError(f"ratio must be an integer ≥ 1 (canvas side / scene side); got {ratio!r}")
    scene = make_scene(seed, n_objects=n_objects, size=scene_size)
    side = int(ratio) * scene_size
    rng = np.random.Generator(np.random.PCG64([int(seed), int(ratio)]))
    pixels, _ = detail_canvas(rng, side)
    x, y = (int(rng.integers(0, side - scene_size + 1)) for _ in range(2))
    pixels[y : y + scene_size, x : x + scene_size] = np.asarray(scene.image)
    image = Image.fromarray(pixels, "RGB")
    remember(image, partial(detail_masks, int(seed), int(ratio), scene_size, n_objects))
    return DetailScene(int(seed), int(ratio), image, scene, (x, y))


def detail_canvas(rng: np.random.Generator, side: int) -> tuple[np.ndarray, int]:
    """An object-free ``side``² canvas (uint8 RGB pixels) drawn from ``rng``: the scenes' ``clutter`` background
    and their luminance noise; and the noise's amplitude.

    >>> pixels, amp = detail_canvas(np.random.default_rng(0), 32)
    >>> pixels.shape, pixels.dtype.name, 6 <= amp <= 12
    ((32, 32, 3), 'uint8', True)
    """
    canvas = _BACKGROUNDS["clutter"](rng, side)  # the cluttered kind always: the scene is hidden in detail
    amp = int(rng.integers(6, 13))  # the scenes' luminance noise, so the pasted scene's texture matches
    lum = rng.integers(-amp, amp + 1, (side, side)).astype(np.int16)
    return np.clip(np.floor(canvas + 0.5).astype(np.int16) + lum[:, :, None], 0, 255).astype(np.uint8), amp


def detail_masks(seed: int, ratio: int = 2, scene_size: int = 224, n_objects: int = 2) -> list[tuple[str, np.ndarray]]:
    """The (name, visible mask in canvas pixels) of each object of ``make_detail(...)``, in drawing order.

    >>> d = make_detail(800_000, ratio=2, scene_size=64)
    >>> [(n, m.shape, int(m.sum())) for n, m in detail_masks(800_000, 2, 64)] == [
    ...     (o.name, (128, 128), o.area) for o in d.scene.objects]
    True
    """
    d = make_detail(seed, ratio, scene_size, n_objects)
    x, y = d.offset
    out = []
    for o in d.scene.objects:
        mask = np.zeros((d.image.height, d.image.width), dtype=bool)
        mask[y : y + scene_size, x : x + scene_size] = o.mask
        out.append((o.name, mask))
    return out

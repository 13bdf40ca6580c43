"""``shapes``: the testbed's ground-truth masks as a segmenter (offline; the masks are known exactly).

Each visible object of a scene (or of a detail canvas) is one mask, in drawing order, with its name
("red star") and score 1. The background is not a mask: SAM would segment some of it, but no clutter
blob of the testbed is an object a question asks about. Images are recognised by their pixels
(:mod:`attnprompt.shapes.truth`); one the testbed did not make in this process is an error that says
what to pass instead.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..errors import InputError
from ..shapes.truth import masks_of
from .base import MaskSettings, Segmentation, Segmenter


class ShapesSegmenter(Segmenter):
    """The scene's own masks, whatever the settings (they are SAM's knobs; ground truth has none).

    >>> from attnprompt.shapes import make_scene
    >>> scene = make_scene(3, n_objects=2, size=96)
    >>> seg = ShapesSegmenter().segment([scene.image])[0]
    >>> seg.names == tuple(o.name for o in scene.objects), bool((seg.masks[0] == scene.objects[0].mask).all())
    (True, True)
    """

    name = "shapes"

    def __init__(self, *, cache_size: int = 64) -> None:
        super().__init__("shapes", cache_size=cache_size)

    def _segment(self, image: Image.Image, settings: MaskSettings, size: tuple[int, int]) -> Segmentation:
        found = masks_of(image)
        if found is None:
            raise InputError(
                "the shapes segmenter knows the masks of the testbed's images made in this process (the shapes-* "
                "tasks, the demo's examples), and this image is not one; for other images use --segmenter sam "
                "(SAM, facebook/sam-vit-huge) or a local SAM checkpoint directory")
        names = tuple(name for name, _ in found)
        masks = np.stack([m for _, m in found]) if found else np.zeros((0, image.height, image.width), bool)
        seg = Segmentation(masks, np.ones(len(found)), image.size, names)
        if size != image.size:  # the masks of the image as resized: nearest, as the pixels are
            seg = Segmentation(np.stack([seg.mask(i, size) for i in range(len(seg))]) if len(seg) else
                               np.zeros((0, size[1], size[0]), bool), seg.scores, size, names)
        return seg

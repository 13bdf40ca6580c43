"""Segmenters for the query-agnostic baselines the API paper compares with (FGVP, Set-of-Mark):
every mask of an image, as :class:`Segmentation`. ``sam`` (SAM's automatic mask generation on stock
transformers, default ``facebook/sam-vit-huge``) for real images; ``shapes`` (the testbed's ground
truth) offline. The renderers that turn masks into visual prompts are in :mod:`.prompts`.

>>> SEGMENTERS.names()
('shapes', 'sam')
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from ..registry import Registry
from .base import FGVP_SETTINGS, MASK_SIDE, SOM_SETTINGS, MaskSettings, Segmentation, Segmenter
from .drawing import fgvp_mask, fgvp_rbm, som
from .nms import box_iou, nms

__all__ = ["FGVP_SETTINGS", "MASK_SIDE", "SEGMENTERS", "SOM_SETTINGS", "MaskSettings", "Segmentation", "Segmenter",
           "box_iou", "fgvp_mask", "fgvp_rbm", "get_segmenter", "nms", "som"]

#: Segmenters by name; anything else given to :func:`get_segmenter` is a SAM checkpoint (hub id or directory).
SEGMENTERS = Registry("segmenter", {
    "shapes": "attnprompt.segmenters.shapes:ShapesSegmenter",
    "sam": "attnprompt.segmenters.sam:SamSegmenter",
})


def get_segmenter(segmenter: Any = None, *, device: str | None = None, dtype: Any = None) -> Segmenter:
    """A segmenter: a built one as it is; ``"shapes"`` (ground truth); ``"sam"`` or ``None`` (SAM ViT-H,
    ``facebook/sam-vit-huge``); any other string is a SAM checkpoint, hub id or local directory.

    >>> get_segmenter("shapes").name
    'shapes'
    """
    if isinstance(segmenter, Segmenter):
        return segmenter
    if segmenter is not None and (not isinstance(segmenter, str) or not segmenter.strip()):
        raise InputError(f"a segmenter is 'shapes', 'sam', a SAM hub id or directory, or a Segmenter; got "
                         f"{type(segmenter).__name__}")
    name = (segmenter or "sam").strip()
    if name == "shapes":
        return SEGMENTERS.get("shapes")()
    sam = SEGMENTERS.get("sam")
    return sam.load(None if name == "sam" else name, device=device, dtype=dtype)

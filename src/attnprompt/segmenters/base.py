"""The segmenter contract: image → :class:`Segmentation` (every mask of the image, query-agnostic).

A segmenter is what FGVP and Set-of-Mark build their visual prompts from: SAM's automatic mask
generation (:mod:`.sam`) for real images, the testbed's ground truth (:mod:`.shapes`) offline. The
:class:`MaskSettings` are SAM's automatic-mask-generation parameters; each baseline asks with the
settings of its released code (:data:`SOM_SETTINGS`, :data:`FGVP_SETTINGS`). Segmentations are
cached per image, settings and size, so prompts that share masks (``fgvp-mask`` and ``fgvp-rbm``;
several questions about one image) segment once.
"""

from __future__ import annotations

import dataclasses
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from ..attribution.cache import LRU
from ..checks import check_count
from ..errors import InputError
from ..images import image_key

#: Masks are kept at the image's size up to this longest side (SAM's own input side: a larger mask is
#: SAM's 256² logits upsampled, no finer), so an 8K image's masks stay bounded in memory.
MASK_SIDE = 1024


@dataclass(frozen=True)
class MaskSettings:
    """SAM's automatic mask generation (``SamAutomaticMaskGenerator``), one crop layer: a grid of
    ``points_per_side``² point prompts, three masks each; kept when the predicted IoU exceeds
    ``pred_iou_thresh`` and the stability score (the mask's area at logit threshold +offset over its
    area at -offset) reaches ``stability_score_thresh``; duplicates removed by box NMS at
    ``box_nms_thresh``; with ``min_mask_region_area`` > 0, holes and islands smaller than that
    (image pixels) removed. ``points_per_batch`` changes speed and memory, not the masks.

    >>> SOM_SETTINGS.points_per_side, FGVP_SETTINGS.points_per_side, FGVP_SETTINGS.min_mask_region_area
    (32, 16, 400)
    """

    points_per_side: int = 32
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    min_mask_region_area: int = 0
    points_per_batch: int = 64

    def __post_init__(self) -> None:
        check_count("points_per_side", self.points_per_side)
        check_count("points_per_batch", self.points_per_batch)
        check_count("min_mask_region_area", self.min_mask_region_area, minimum=0)
        for name in ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise InputError(f"{name} must be a number in [0, 1]; got {value!r}")
        if isinstance(self.stability_score_offset, bool) or not isinstance(self.stability_score_offset, (int, float)) \
                or self.stability_score_offset < 0:
            raise InputError(f"stability_score_offset must be a number ≥ 0; got {self.stability_score_offset!r}")

    def to_dict(self) -> dict[str, Any]:
        """What a configuration records (not ``points_per_batch``: it does not change the masks).

        >>> sorted(SOM_SETTINGS.to_dict())[:2]
        ['box_nms_thresh', 'min_mask_region_area']
        """
        d = dataclasses.asdict(self)
        d.pop("points_per_batch")
        return d


#: Set-of-Mark with SAM: ``SamAutomaticMaskGenerator(model)`` with SAM's defaults (SoM's
#: ``inference_sam_m2m_auto``).
SOM_SETTINGS = MaskSettings()
#: FGVP's ``simple_inference.py`` defaults (``--sam_prompt grid``).
FGVP_SETTINGS = MaskSettings(points_per_side=16, pred_iou_thresh=0.86, stability_score_thresh=0.92,
                             stability_score_offset=0.7, box_nms_thresh=0.7, min_mask_region_area=400)


@dataclass(frozen=True)
class Segmentation:
    """The masks of one image: ``masks`` (N, h, w) booleans at the mask size (the image's size, or
    smaller for images beyond :data:`MASK_SIDE`), ``scores`` (N,) (SAM's predicted IoU; 1 for ground
    truth), ``names`` (what each mask is, where known), and the ``image_size`` (width, height) they cover.

    >>> s = Segmentation(np.ones((1, 2, 4), bool), np.ones(1), (8, 4))
    >>> s.mask(0).shape, s.boxes().tolist(), s.areas().tolist()
    ((4, 8), [[0, 0, 8, 4]], [32])
    """

    masks: np.ndarray
    scores: np.ndarray
    image_size: tuple[int, int]
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        masks = np.asarray(self.masks, dtype=bool)
        if masks.ndim != 3:
            raise InputError(f"masks must be (N, h, w); got shape {masks.shape}")
        object.__setattr__(self, "masks", masks)
        object.__setattr__(self, "scores", np.asarray(self.scores, dtype=np.float64).reshape(len(masks)))

    def __len__(self) -> int:
        return len(self.masks)

    def mask(self, i: int, size: tuple[int, int] | None = None) -> np.ndarray:
        """Mask ``i`` at ``size`` (width, height; default the image's), nearest-neighbour."""
        return _resize_mask(self.masks[i], size or self.image_size)

    def union(self, size: tuple[int, int] | None = None) -> np.ndarray:
        """Every mask's pixels together, at ``size`` (default the image's).

        >>> m = np.zeros((2, 1, 2), bool); m[0, 0, 0] = m[1, 0, 1] = True
        >>> Segmentation(m, np.ones(2), (2, 1)).union().tolist()
        [[True, True]]
        """
        h, w = self.masks.shape[1:]
        return _resize_mask(np.asarray(self.masks.any(axis=0)) if len(self) else np.zeros((h, w), bool),
                            size or self.image_size)

    def areas(self) -> np.ndarray:
        """Each mask's area in image pixels (counted at the mask size, scaled)."""
        h, w = self.masks.shape[1:]
        scale = (self.image_size[0] * self.image_size[1]) / max(1, h * w)
        return np.round(self.masks.reshape(len(self), h * w).sum(axis=1) * scale).astype(np.int64)

    def boxes(self) -> np.ndarray:
        """Each mask's tight box ``(x0, y0, x1, y1)`` in image pixels (exclusive ends; zeros if empty)."""
        h, w = self.masks.shape[1:]
        sx, sy = self.image_size[0] / w, self.image_size[1] / h
        out = np.zeros((len(self), 4), dtype=np.int64)
        for i, m in enumerate(self.masks):
            ys, xs = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
            if len(xs):
                out[i] = (int(xs[0] * sx), int(ys[0] * sy), int(np.ceil((xs[-1] + 1) * sx)),
                          int(np.ceil((ys[-1] + 1) * sy)))
        return out


def _resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    if mask.shape == (h, w):
        return mask
    return np.asarray(Image.fromarray(mask).resize((w, h), Image.Resampling.NEAREST), dtype=bool)


def mask_size(image_size: tuple[int, int], side: int = MASK_SIDE) -> tuple[int, int]:
    """The (width, height) masks of an image of ``image_size`` are kept at: the image's own, or scaled
    down to a longest side of ``side``.

    >>> mask_size((640, 480)), mask_size((7680, 4320))
    ((640, 480), (1024, 576))
    """
    w, h = image_size
    if max(w, h) <= side:
        return (w, h)
    scale = side / max(w, h)
    return (max(1, int(w * scale + 0.5)), max(1, int(h * scale + 0.5)))


class Segmenter(ABC):
    """Every mask of an image. Subclasses set ``name`` and implement :meth:`_segment` for one image;
    :meth:`segment` caches by the image's pixels, the settings and the size (``cache_size`` entries).

    >>> from attnprompt.segmenters import get_segmenter
    >>> from attnprompt.shapes import make_scene
    >>> seg = get_segmenter("shapes").segment([make_scene(0, 3, 112).image])[0]
    >>> len(seg), seg.image_size
    (3, (112, 112))
    """

    name: ClassVar[str] = ""

    def __init__(self, model_id: str, *, cache_size: int = 64) -> None:
        self.model_id = model_id
        self._cache = LRU(check_count("cache_size", cache_size, minimum=0))
        self._lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        """What a configuration records of the segmenter (the masks' settings are the strategy's).

        >>> from attnprompt.segmenters import get_segmenter
        >>> get_segmenter("shapes").describe()
        {'segmenter': 'shapes', 'model': 'shapes'}
        """
        return {"segmenter": self.name, "model": self.model_id}

    def info(self) -> dict[str, int]:
        """Segmentations answered from the cache (``hits``), computed (``misses``), kept (``size``)."""
        return self._cache.info()

    def segment(self, images: Sequence[Image.Image], settings: MaskSettings = SOM_SETTINGS, *,
                sizes: Sequence[tuple[int, int] | None] | None = None) -> list[Segmentation]:
        """One :class:`Segmentation` per image, made with ``settings``; with ``sizes``, each image is
        segmented as it looks resized (bicubic) to its (width, height) — how SoM segments — and the
        segmentation covers that size."""
        images = list(images)
        sizes = list(sizes) if sizes is not None else [None] * len(images)
        if len(sizes) != len(images):
            raise InputError(f"{len(images)} images but {len(sizes)} sizes")
        keys = [(image_key(img), tuple(size) if size else img.size, settings) for img, size in zip(images, sizes)]
        with self._lock:
            found, missing = self._cache.lookup(keys)
            first = {key: keys.index(key) for key in missing}
            made = {key: self._segment(images[first[key]], settings, key[1]) for key in missing}
            found.update(made)
            self._cache.store(made)
            return [found[k] for k in keys]

    @abstractmethod
    def _segment(self, image: Image.Image, settings: MaskSettings, size: tuple[int, int]) -> Segmentation:
        """The masks of ``image`` seen at ``size`` (width, height; the image's own when unchanged)."""

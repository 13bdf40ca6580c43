"""Qwen2-VL, Qwen2.5-VL and Qwen3-VL (``Qwen2VLForConditionalGeneration``, ``Qwen2_5_VLForConditionalGeneration``,
``Qwen3VLForConditionalGeneration``; model_types ``qwen2_vl``, ``qwen2_5_vl``, ``qwen3_vl``).

Dynamic resolution: the image is resized (neither cropped nor padded) to whole patches, and
``spatial_merge_size``² neighbouring patches become one token, row-major (``image_grid_thw`` says the patch
grid). Qwen3-VL's DeepStack adds vision features inside the first decoder layers at the same positions; the
layout is unchanged. The stock processors insist on a video processor, so attnprompt builds them without one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from .base import FULL, Family, ImageSpan
from .grid import GridLayout, check_token_count

#: ViCrop's crop-window base for Qwen2.5-VL in its authors' code: dynamic resolution has no single input side.
QWEN_WINDOW = 224

#: The pixel budget lmms-eval gives each generation by default (its ``qwen2_vl``, ``qwen2_5_vl`` and ``qwen3_vl``
#: models' ``max_pixels``): 768, 2048 and 1568 image tokens. The checkpoints' own processors allow 12.8–16.8 Mpx
#: (a 4000×3000 photo: 15,301 tokens on Qwen2.5-VL), so without a budget one photo can fill most of the context.
QWEN2_VL_MAX_PIXELS = 602_112
QWEN2_5_VL_MAX_PIXELS = 1_605_632


def qwen_vl_layout(n_tokens: int, grid_thw: Sequence[int], merge: int) -> list[GridLayout]:
    """Qwen2-VL / Qwen2.5-VL / Qwen3-VL: (h/merge)×(w/merge) merged tokens, row-major, covering the whole
    (resized, neither cropped nor padded) image; video frames (t > 1) are refused.

    >>> [g.shape for g in qwen_vl_layout(20, (1, 8, 10), 2)]
    [(4, 5)]
    """
    t, h, w = (int(v) for v in grid_thw)
    rows, cols = h // merge, w // merge
    check_token_count(n_tokens, t * rows * cols, "qwen2_vl", f"grid_thw {t}×{h}×{w}, merge {merge}")
    if t != 1:
        raise InputError(f"qwen2_vl: image grid has t={t} frames; attribution supports still images (t=1)")
    return [GridLayout("grid", np.arange(rows * cols).reshape(rows, cols), FULL)]


@dataclass(frozen=True)
class QwenVl(Family):
    """One of the Qwen-VL generations: one grid from the row's ``image_grid_thw`` and ``spatial_merge_size``;
    ``max_pixels`` is the default pixel budget of one image (:meth:`pixel_budget`).

    >>> QWEN2_5_VL.name, QWEN2_5_VL.image_only_processor, QWEN2_VL.max_pixels
    ('qwen2_5_vl', 'Qwen2_5_VLProcessor', 602112)
    """

    max_pixels: int = QWEN2_5_VL_MAX_PIXELS

    def layouts(self, span: ImageSpan, config: Any, processor: Any) -> list[GridLayout]:
        """:func:`qwen_vl_layout` of the row's ``inputs["image_grid_thw"]``.

        >>> from types import SimpleNamespace as NS
        >>> cfg = NS(vision_config=NS(spatial_merge_size=2))
        >>> [g.shape for g in QWEN2_VL.layouts(ImageSpan(20, {"image_grid_thw": [[1, 8, 10]]}, 0), cfg, None)]
        [(4, 5)]
        """
        merge = int(config.vision_config.spatial_merge_size)
        return qwen_vl_layout(span.n_tokens, [int(v) for v in span.inputs["image_grid_thw"][span.row]], merge)

    def native_side(self, config: Any, processor: Any) -> int:
        """224 for every Qwen-VL: dynamic resolution has no single input side (any multiple of
        ``patch_size · spatial_merge_size`` within the processor's pixel bounds), so this is the window base
        ViCrop's authors use for Qwen2.5-VL (:data:`QWEN_WINDOW`), not something the config says.

        >>> from types import SimpleNamespace as NS
        >>> QWEN3_VL.native_side(NS(vision_config=NS(patch_size=16, spatial_merge_size=2)), None)
        224
        """
        return QWEN_WINDOW

    def pixel_budget(self, processor: Any, max_pixels: int | None = None,
                     min_pixels: int | None = None) -> dict[str, int]:
        """Bound the image processor's pixels: ``max_pixels`` (default: the smaller of the checkpoint's and the
        family's :attr:`max_pixels`, lmms-eval's) and ``min_pixels`` (default: the checkpoint's; never above the
        maximum). Returns the bounds in force.

        >>> from transformers import Qwen2VLImageProcessorPil
        >>> from types import SimpleNamespace as NS
        >>> processor = NS(image_processor=Qwen2VLImageProcessorPil(min_pixels=3136, max_pixels=12845056))
        >>> QWEN2_5_VL.pixel_budget(processor), QWEN2_5_VL.pixel_budget(processor, max_pixels=10**6)
        ({'max_pixels': 1605632, 'min_pixels': 3136}, {'max_pixels': 1000000, 'min_pixels': 3136})
        """
        ip = processor.image_processor
        size = ip.size
        get = size.get if isinstance(size, dict) else lambda key: getattr(size, key, None)
        own_max, own_min = get("longest_edge"), get("shortest_edge")
        top = int(max_pixels) if max_pixels is not None else min(int(own_max or self.max_pixels), self.max_pixels)
        low = int(min_pixels) if min_pixels is not None else int(own_min or 1)
        if low > top:
            if min_pixels is not None:
                raise InputError(f"min_pixels {low} is above max_pixels {top}")
            low = top  # the checkpoint's minimum above a smaller budget: the budget wins
        ip.size = {"shortest_edge": low, "longest_edge": top}
        return {"max_pixels": top, "min_pixels": low}

    def input_size(self, size: tuple[int, int], config: Any, processor: Any) -> tuple[int, int] | None:
        """The whole-patch size the processor resizes an image of ``size`` to within its pixel bounds
        (transformers' ``smart_resize``).

        >>> from transformers import Qwen2VLImageProcessorPil
        >>> from types import SimpleNamespace as NS
        >>> processor = NS(image_processor=Qwen2VLImageProcessorPil(min_pixels=3136, max_pixels=1605632))
        >>> QWEN2_5_VL.input_size((4000, 3000), None, processor)
        (1456, 1092)
        """
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

        ip = getattr(processor, "image_processor", None)
        bounds = getattr(ip, "size", None)
        if ip is None or bounds is None:
            return None
        get: Callable[[str], Any] = bounds.get if isinstance(bounds, dict) else lambda key: getattr(bounds, key, None)
        if not get("longest_edge") or not get("shortest_edge"):
            return None
        factor = int(ip.patch_size) * int(ip.merge_size)
        height, width = smart_resize(int(size[1]), int(size[0]), factor=factor, min_pixels=int(get("shortest_edge")),
                                     max_pixels=int(get("longest_edge")))
        return width, height


QWEN2_VL = QwenVl("qwen2_vl", "Qwen2VLForConditionalGeneration", "Qwen2VLProcessor", QWEN2_VL_MAX_PIXELS)
QWEN2_5_VL = QwenVl("qwen2_5_vl", "Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor", QWEN2_5_VL_MAX_PIXELS)
QWEN3_VL = QwenVl("qwen3_vl", "Qwen3VLForConditionalGeneration", "Qwen3VLProcessor", QWEN2_5_VL_MAX_PIXELS)

"""Qwen2-VL, Qwen2.5-VL and Qwen3-VL (``Qwen2VLForConditionalGeneration``, ``Qwen2_5_VLForConditionalGeneration``,
``Qwen3VLForConditionalGeneration``; model_types ``qwen2_vl``, ``qwen2_5_vl``, ``qwen3_vl``).

Dynamic resolution: the image is resized (neither cropped nor padded) to whole patches, and
``spatial_merge_size``² neighbouring patches become one token, row-major (``image_grid_thw`` says the patch
grid). Qwen3-VL's DeepStack adds vision features inside the first decoder layers at the same positions; the
layout is unchanged. The stock processors insist on a video processor, so attnprompt builds them without one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from .base import FULL, Family, ImageSpan
from .grid import GridLayout, check_token_count

#: ViCrop's crop-window base for Qwen2.5-VL in its authors' code: dynamic resolution has no single input side.
QWEN_WINDOW = 224


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
    """One of the Qwen-VL generations: one grid from the row's ``image_grid_thw`` and ``spatial_merge_size``.

    >>> QWEN2_5_VL.name, QWEN2_5_VL.image_only_processor
    ('qwen2_5_vl', 'Qwen2_5_VLProcessor')
    """

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


QWEN2_VL = QwenVl("qwen2_vl", "Qwen2VLForConditionalGeneration", "Qwen2VLProcessor")
QWEN2_5_VL = QwenVl("qwen2_5_vl", "Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor")
QWEN3_VL = QwenVl("qwen3_vl", "Qwen3VLForConditionalGeneration", "Qwen3VLProcessor")

"""Gemma 3 (``Gemma3ForConditionalGeneration``, model_type ``gemma3``): pooled tokens and pan-and-scan crops.

The image is squashed to the vision tower's square and its patches average-pooled to ``mm_tokens_per_image``
tokens (16×16 = 256), row-major. With pan-and-scan (off unless the processor's ``do_pan_and_scan`` is set) the
crops follow: equal slices along the longer side, each squashed to the square.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError, ProcessorMismatchError
from .base import FULL, Family, ImageSpan
from .grid import GridLayout, check_token_count, height_width


def gemma3_layout(n_tokens: int, config: Any, image_hw: Sequence[int]) -> list[GridLayout]:
    """Gemma 3: the image squashed to the vision tower's square and average-pooled to ``mm_tokens_per_image``
    (16×16 = 256) tokens, row-major. With pan-and-scan, crops follow — equal slices along the longer side, each
    squashed to the square — and stitch into one grid beside each other. Returns ``[image]`` or
    ``[image, stitched crops]``.

    >>> from types import SimpleNamespace as NS
    >>> [g.shape for g in gemma3_layout(256 * 3, NS(mm_tokens_per_image=256), (300, 900))]
    [(16, 16), (16, 32)]
    """
    per = int(config.mm_tokens_per_image)
    side = math.isqrt(per)
    if side * side != per:
        raise ProcessorMismatchError(f"gemma3: mm_tokens_per_image {per} is not a square number")
    if n_tokens % per:
        check_token_count(n_tokens, (n_tokens // per + 1) * per, "gemma3", f"whole images of {per} tokens")
    whole = GridLayout("grid", np.arange(per).reshape(side, side), FULL)
    crops = n_tokens // per - 1
    if crops == 0:
        return [whole]
    h, w = int(image_hw[0]), int(image_hw[1])
    rows, cols = (1, crops) if w >= h else (crops, 1)
    r, c = np.arange(rows * side)[:, None], np.arange(cols * side)[None, :]
    index = per * (1 + (r // side) * cols + c // side) + (r % side) * side + c % side
    # the last crop may be a few pixels short of the others (ceil-sized crops); the grid treats them as equal
    return [whole, GridLayout("crops", index, FULL)]


@dataclass(frozen=True)
class Gemma3(Family):
    """Gemma 3: ``[image]``, or ``[image, stitched crops]`` with pan-and-scan.

    >>> GEMMA3.name, GEMMA3.image_only_processor
    ('gemma3', None)
    """

    vision_per_row = True

    def layouts(self, span: ImageSpan, config: Any, processor: Any) -> list[GridLayout]:
        """:func:`gemma3_layout` with the prepared image's size (the crops' direction).

        >>> from types import SimpleNamespace as NS
        >>> [g.shape for g in GEMMA3.layouts(ImageSpan(16 * 4, {}, 0, (60, 180)), NS(mm_tokens_per_image=16), None)]
        [(4, 4), (4, 12)]
        """
        if span.image_hw is None:
            raise InputError("gemma3: the image's (height, width) is needed to lay its tokens out")
        return gemma3_layout(span.n_tokens, config, span.image_hw)

    def input_size(self, size: tuple[int, int], config: Any, processor: Any) -> tuple[int, int] | None:
        """The vision tower's square the image (and each pan-and-scan crop) is squashed to: the processor's
        ``size``.

        >>> from types import SimpleNamespace as NS
        >>> GEMMA3.input_size((4000, 3000), None, NS(image_processor=NS(size={"height": 896, "width": 896})))
        (896, 896)
        """
        wanted = getattr(getattr(processor, "image_processor", None), "size", None)
        if not wanted:
            return None
        height, width = height_width(wanted)
        return width, height


GEMMA3 = Gemma3("gemma3", "Gemma3ForConditionalGeneration")

"""LLaVA-1.5 (``LlavaForConditionalGeneration``, model_type ``llava``; also the embedded shapes VLM).

One CLIP tile: ``image_size / patch_size`` squared patch tokens, row-major, after a CLS token when the
vision features keep it (``vision_feature_select_strategy="full"``). The processor resizes the short side
and centre-crops, so api-vlm pads the image to a square first (``fit="pad"``) and the crop loses nothing; the
answering model is given the same padded square (``LoadOptions.answer_fit``, default ``pad``), as LLaVA-1.5's own
evaluation pads (``image_aspect_ratio: pad``), so it sees the whole image the map covers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .base import FULL, Family, ImageSpan, reduction_factor
from .grid import GridLayout, check_token_count


def llava_layout(n_tokens: int, config: Any, extent: Sequence[float] = FULL) -> list[GridLayout]:
    """LLaVA-1.5: one side×side grid, row-major (side = image_size / patch_size).

    >>> from types import SimpleNamespace as NS
    >>> cfg = NS(vision_config=NS(image_size=336, patch_size=14), vision_feature_select_strategy="default")
    >>> llava_layout(576, cfg)[0].shape
    (24, 24)
    """
    side = config.vision_config.image_size // config.vision_config.patch_size
    extra = 1 if getattr(config, "vision_feature_select_strategy", "default") == "full" else 0
    check_token_count(n_tokens, side * side + extra, "llava", f"a {side}×{side} patch grid")
    x0, y0, x1, y1 = extent
    return [GridLayout("grid", np.arange(extra, extra + side * side).reshape(side, side), (x0, y0, x1, y1))]


@dataclass(frozen=True)
class Llava(Family):
    """LLaVA-1.5: one square grid; ``fit="pad"`` pads the image to a square in the processor's mean colour.

    >>> from PIL import Image
    >>> from types import SimpleNamespace as NS
    >>> processor = NS(image_processor=NS(image_mean=[0.5, 0.5, 0.5]))
    >>> LLAVA.prepare(Image.new("RGB", (20, 10)), processor, "pad")[1]
    (0.0, 0.25, 1.0, 0.75)
    """

    vision_per_row = True

    def prepare(self, image: Any, processor: Any, fit: str) -> tuple[Any, tuple[float, float, float, float]]:
        """Padded to a square with the processor's mean colour for ``fit="pad"`` (so its centre crop loses
        nothing), else as it is.

        >>> from PIL import Image
        >>> LLAVA.prepare(Image.new("RGB", (20, 10)), None, "processor")[1]
        (0.0, 0.0, 1.0, 1.0)
        """
        if fit != "pad":
            return image, FULL
        from ..images import reduced
        from ..render import fit_square

        r, g, b = (int(round(255 * m)) for m in processor.image_processor.image_mean)
        side = max(image.size)
        # a large image is padded at a bounded size: REDUCE_GAP times what the processor shrinks the square to
        factor = reduction_factor((side, side), self.input_size((side, side), None, processor))
        if factor == 1 and image.size[0] == image.size[1]:
            return image, FULL  # already square: padding it would only copy it
        image = reduced(image, factor)
        return fit_square(image, max(image.size), fit="pad", fill=(r, g, b))

    def layouts(self, span: ImageSpan, config: Any, processor: Any) -> list[GridLayout]:
        """One grid (:func:`llava_layout`) over the prepared image, the original at ``span.extent``.

        >>> from types import SimpleNamespace as NS
        >>> cfg = NS(vision_config=NS(image_size=56, patch_size=14))
        >>> [g.shape for g in LLAVA.layouts(ImageSpan(16, {}, 0, extent=(0, 0.25, 1, 0.75)), cfg, None)]
        [(4, 4)]
        """
        return llava_layout(span.n_tokens, config, span.extent)

    def input_size(self, size: tuple[int, int], config: Any, processor: Any) -> tuple[int, int] | None:
        """CLIP's processor: the short side to ``size["shortest_edge"]`` (before its centre crop), or a fixed
        ``height`` × ``width``; ``None`` for a processor that says neither.

        >>> from types import SimpleNamespace as NS
        >>> LLAVA.input_size((7680, 4320), None, NS(image_processor=NS(size={"shortest_edge": 336})))
        (597, 336)
        """
        wanted = getattr(getattr(processor, "image_processor", None), "size", None) or {}
        if "shortest_edge" in wanted:
            edge, short = int(wanted["shortest_edge"]), min(size)
            return max(1, size[0] * edge // short), max(1, size[1] * edge // short)
        if "height" in wanted and "width" in wanted:
            return int(wanted["width"]), int(wanted["height"])
        return None


LLAVA = Llava("llava", "LlavaForConditionalGeneration")

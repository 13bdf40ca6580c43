"""LLaVA-OneVision (``LlavaOnevisionForConditionalGeneration``, model_type ``llava_onevision``).

LLaVA-NeXT's any-resolution layout without a CLS token; a high-res grid larger than ``anyres_max_N`` tiles is
bilinearly shrunk by the model; in a prompt with several images, each image is one base grid (padded to a
square) plus a newline. Its stock processor insists on a video processor, so attnprompt builds
``LlavaOnevisionProcessor`` without one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ProcessorMismatchError
from .base import FULL, Family, ImageSpan
from .grid import GridLayout, anyres_geometry, anyres_input_size, anyres_pinpoints, check_token_count


def llava_onevision_layout(n_tokens: int, config: Any, image_hw: Sequence[int]) -> list[GridLayout]:
    """LLaVA-OneVision: LLaVA-NeXT's layout without a CLS token, where a high-res grid larger than
    ``anyres_max_N`` tiles is bilinearly shrunk (by the same factor on both sides, so it still covers the
    unpadded image) before its newline tokens are added. An image of a multi-image prompt is one base grid of
    the image padded to a square, plus one newline. Returns ``[base, highres]`` (or ``[base]``).

    >>> from types import SimpleNamespace as NS
    >>> cfg = NS(vision_config=NS(image_size=384, patch_size=14), vision_aspect_ratio="anyres_max_9",
    ...          image_grid_pinpoints=[[384, 768], [768, 384], [768, 768]])
    >>> [g.shape for g in llava_onevision_layout(729 + 40 * 55, cfg, (480, 640))]
    [(27, 27), (40, 54)]
    """
    side = int(config.vision_config.image_size) // int(config.vision_config.patch_size)
    base_n = side * side
    base = GridLayout("base", np.arange(base_n).reshape(side, side), FULL)
    if n_tokens == base_n + 1:  # not tiled (one of several images): padded to a square, centred
        h, w = (int(v) for v in image_hw)
        s = max(h, w)
        return [GridLayout("base", base.index, ((s - w) / 2 / s, (s - h) / 2 / s, (s + w) / 2 / s, (s + h) / 2 / s))]
    side, nr, nc, extent = anyres_geometry(config, image_hw)
    ratio_name = str(getattr(config, "vision_aspect_ratio", "anyres_max_9"))
    if not ratio_name.startswith("anyres_max_"):
        raise ProcessorMismatchError(f"llava_onevision: vision_aspect_ratio {ratio_name!r} is not 'anyres_max_N'")
    most = int(ratio_name[len("anyres_max_"):])
    ratio = math.sqrt(nr * nc / (most * side * side))
    if ratio > 1.1:  # the model interpolates the grid down to this size (covering the same area)
        nr, nc = int(nr // ratio), int(nc // ratio)
    check_token_count(n_tokens, base_n + nr * (nc + 1), "llava_onevision",
                      f"{side}×{side} base + {nr}×{nc} high-res with newlines")
    index = base_n + np.arange(nr)[:, None] * (nc + 1) + np.arange(nc)[None, :]
    return [base, GridLayout("highres", index, extent)]


@dataclass(frozen=True)
class LlavaOnevision(Family):
    """LLaVA-OneVision: ``[base, highres]`` (or ``[base]`` for one of several images) from ``image_sizes``.

    >>> from types import SimpleNamespace as NS
    >>> cfg = NS(vision_config=NS(image_size=384, patch_size=14), vision_feature_select_strategy="full",
    ...          vision_aspect_ratio="anyres_max_9")
    >>> LLAVA_ONEVISION.processor_settings(cfg)
    {'num_image_tokens': 729, 'vision_feature_select_strategy': 'full', 'vision_aspect_ratio': 'anyres_max_9'}
    """

    def processor_settings(self, config: Any) -> dict[str, Any]:
        """Tokens per tile, ``(image_size / patch_size)²``, and the config's feature strategy and aspect rule.

        >>> from types import SimpleNamespace as NS
        >>> cfg = NS(vision_config=NS(image_size=28, patch_size=7), vision_feature_select_strategy="full",
        ...          vision_aspect_ratio="anyres_max_4")
        >>> LLAVA_ONEVISION.processor_settings(cfg)["num_image_tokens"]
        16
        """
        vis = config.vision_config
        return {"num_image_tokens": (int(vis.image_size) // int(vis.patch_size)) ** 2,
                "vision_feature_select_strategy": config.vision_feature_select_strategy,
                "vision_aspect_ratio": config.vision_aspect_ratio}

    def layouts(self, span: ImageSpan, config: Any, processor: Any) -> list[GridLayout]:
        """:func:`llava_onevision_layout` for the row's image size (``inputs["image_sizes"]``).

        >>> from types import SimpleNamespace as NS
        >>> cfg = NS(vision_config=NS(image_size=28, patch_size=7), image_grid_pinpoints=[[28, 56], [56, 28]],
        ...          vision_aspect_ratio="anyres_max_9")
        >>> span = ImageSpan(16 + 4 * 9, {"image_sizes": [[28, 56]]}, 0)
        >>> [g.shape for g in LLAVA_ONEVISION.layouts(span, cfg, None)]
        [(4, 4), (4, 8)]
        """
        hw = [int(v) for v in span.inputs["image_sizes"][span.row]]
        return llava_onevision_layout(span.n_tokens, config, hw)

    def input_size(self, size: tuple[int, int], config: Any, processor: Any) -> tuple[int, int] | None:
        """The image fitted into its best canvas of ``image_grid_pinpoints`` (:func:`anyres_input_size`).

        >>> from types import SimpleNamespace as NS
        >>> LLAVA_ONEVISION.input_size((4000, 3000), None, NS(image_processor=NS(image_grid_pinpoints=[[384, 768],
        ...                                                                                           [768, 768]])))
        (768, 576)
        """
        return anyres_input_size(size, anyres_pinpoints(config, processor))


LLAVA_ONEVISION = LlavaOnevision("llava_onevision", "LlavaOnevisionForConditionalGeneration", "LlavaOnevisionProcessor")

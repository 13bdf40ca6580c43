"""LLaVA-NeXT (``LlavaNextForConditionalGeneration``, model_type ``llava_next``): "anyres".

A base grid over the whole (squashed) image, then the high-res grid assembled from the tiles of the
best-fitting canvas (``image_grid_pinpoints``), unpadded to the image's aspect, with one newline token after
each of its rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .base import FULL, Family, ImageSpan
from .grid import GridLayout, anyres_geometry, anyres_input_size, anyres_pinpoints, check_token_count


def llava_next_layout(n_tokens: int, config: Any, image_hw: Sequence[int]) -> list[GridLayout]:
    """LLaVA-NeXT ("anyres"): a base grid over the whole (squashed) image, then the high-res
    grid assembled from tiles, unpadded to the image's aspect ratio, with one newline token
    after each of its rows. Returns ``[base, highres]``.

    >>> from types import SimpleNamespace as NS
    >>> pinpoints = [[336, 672], [672, 336], [672, 672]]
    >>> cfg = NS(vision_config=NS(image_size=336, patch_size=14), image_grid_pinpoints=pinpoints)
    >>> [g.shape for g in llava_next_layout(576 + 36 * 49, cfg, (480, 640))]
    [(24, 24), (36, 48)]
    """
    side, nr, nc, extent = anyres_geometry(config, image_hw)
    base_n = side * side
    check_token_count(n_tokens, base_n + nr * (nc + 1), "llava_next",
                      f"{side}×{side} base + {nr}×{nc} high-res with newlines")
    base = GridLayout("base", np.arange(base_n).reshape(side, side), FULL)
    index = base_n + np.arange(nr)[:, None] * (nc + 1) + np.arange(nc)[None, :]
    return [base, GridLayout("highres", index, extent)]


@dataclass(frozen=True)
class LlavaNext(Family):
    """LLaVA-NeXT: ``[base, highres]`` from the processor's ``image_sizes``.

    >>> LLAVA_NEXT.name, LLAVA_NEXT.image_only_processor
    ('llava_next', None)
    """

    def layouts(self, span: ImageSpan, config: Any, processor: Any) -> list[GridLayout]:
        """:func:`llava_next_layout` for the row's image size (``inputs["image_sizes"]``).

        >>> from types import SimpleNamespace as NS
        >>> cfg = NS(vision_config=NS(image_size=28, patch_size=7), image_grid_pinpoints=[[28, 56], [56, 28]])
        >>> [g.shape for g in LLAVA_NEXT.layouts(ImageSpan(16 + 4 * 9, {"image_sizes": [[28, 56]]}, 0), cfg, None)]
        [(4, 4), (4, 8)]
        """
        hw = [int(v) for v in span.inputs["image_sizes"][span.row]]
        return llava_next_layout(span.n_tokens, config, hw)

    def input_size(self, size: tuple[int, int], config: Any, processor: Any) -> tuple[int, int] | None:
        """The image fitted into its best canvas of ``image_grid_pinpoints`` (:func:`anyres_input_size`).

        >>> from types import SimpleNamespace as NS
        >>> LLAVA_NEXT.input_size((7680, 4320), None, NS(image_processor=NS(image_grid_pinpoints=[[336, 672],
        ...                                                                                      [672, 336]])))
        (598, 336)
        """
        return anyres_input_size(size, anyres_pinpoints(config, processor))


LLAVA_NEXT = LlavaNext("llava_next", "LlavaNextForConditionalGeneration")

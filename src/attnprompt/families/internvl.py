"""InternVL 2.5 / 3 (``InternVLForConditionalGeneration``, model_type ``internvl``): tiles and a thumbnail.

The image is resized (aspect distorted) onto the tile canvas whose aspect is closest to the image's, cut into
tiles, each tile's patch grid merged 2×2 by pixel shuffle, then a thumbnail of the whole image. The processor
does not return the tile counts; they are recomputed from the image size with the processor's own canvas rule.
Its stock processor insists on a video processor, so attnprompt builds ``InternVLProcessor`` without one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from .base import Family, ImageSpan
from .grid import GridLayout, height_width, pair, tiled_layout


def internvl_layout(n_tokens: int, config: Any, image_processor: Any, image_hw: Sequence[int]) -> list[GridLayout]:
    """InternVL (2.5, 3): the image is resized (aspect distorted) onto the tile canvas whose aspect is closest to
    the image's (``min_patches``..``max_patches`` tiles), cut into tiles, each tile's patch grid merged 2×2 by
    pixel shuffle (``downsample_ratio`` 0.5), then a thumbnail of the whole image. See
    :func:`~attnprompt.families.grid.tiled_layout`.

    >>> from types import SimpleNamespace as NS
    >>> cfg = NS(vision_config=NS(image_size=[448, 448], patch_size=[14, 14]), downsample_ratio=0.5)
    >>> ip = NS(size=NS(height=448, width=448), min_patches=1, max_patches=12, crop_to_patches=True)
    >>> [g.shape for g in internvl_layout(256 * 4, cfg, ip, (400, 1200))]
    [(16, 16), (16, 48)]
    """
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import get_optimal_tiled_canvas

    vis = config.vision_config
    size, patch = pair(vis.image_size)[0], pair(vis.patch_size)[0]
    side = int(round(size // patch * float(config.downsample_ratio)))
    tile_h, tile_w = height_width(image_processor.size)
    cols, rows = 1, 1
    if n_tokens != side * side:  # tiled (InternVL's processor turns crop_to_patches on whatever its config says)
        cols, rows = get_optimal_tiled_canvas((int(image_hw[0]), int(image_hw[1])), (tile_h, tile_w),
                                              int(image_processor.min_patches), int(image_processor.max_patches))
    return tiled_layout(n_tokens, rows, cols, side, "internvl")


@dataclass(frozen=True)
class InternVl(Family):
    """InternVL: ``[thumbnail, stitched tiles]`` (or one grid for an untiled image).

    >>> from types import SimpleNamespace as NS
    >>> INTERNVL.processor_settings(NS(image_seq_length=256))
    {'image_seq_length': 256}
    """

    def processor_settings(self, config: Any) -> dict[str, Any]:
        """Tokens per tile: the config's ``image_seq_length``.

        >>> from types import SimpleNamespace as NS
        >>> INTERNVL.processor_settings(NS(image_seq_length=16))
        {'image_seq_length': 16}
        """
        return {"image_seq_length": int(config.image_seq_length)}

    def layouts(self, span: ImageSpan, config: Any, processor: Any) -> list[GridLayout]:
        """:func:`internvl_layout` with the processor's tile rule and the prepared image's size.

        >>> from types import SimpleNamespace as NS
        >>> cfg = NS(vision_config=NS(image_size=56, patch_size=7), downsample_ratio=0.5)
        >>> proc = NS(image_processor=NS(size={"height": 56, "width": 56}, min_patches=1, max_patches=6))
        >>> [g.shape for g in INTERNVL.layouts(ImageSpan(16 * 4, {}, 0, (50, 150)), cfg, proc)]
        [(4, 4), (4, 12)]
        """
        if span.image_hw is None:
            raise InputError("internvl: the image's (height, width) is needed to lay its tokens out")
        return internvl_layout(span.n_tokens, config, processor.image_processor, span.image_hw)

    def input_size(self, size: tuple[int, int], config: Any, processor: Any) -> tuple[int, int] | None:
        """The tile canvas the image is resized onto (``min_patches``..``max_patches`` tiles, the aspect closest to
        the image's).

        >>> from types import SimpleNamespace as NS
        >>> ip = NS(size={"height": 448, "width": 448}, min_patches=1, max_patches=12)
        >>> INTERNVL.input_size((4000, 3000), None, NS(image_processor=ip))
        (1792, 1344)
        """
        from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import get_optimal_tiled_canvas

        ip = getattr(processor, "image_processor", None)
        if ip is None or getattr(ip, "size", None) is None:
            return None
        tile_h, tile_w = height_width(ip.size)
        cols, rows = get_optimal_tiled_canvas((int(size[1]), int(size[0])), (tile_h, tile_w),
                                              int(getattr(ip, "min_patches", 1)), int(getattr(ip, "max_patches", 12)))
        return cols * tile_w, rows * tile_h


INTERNVL = InternVl("internvl", "InternVLForConditionalGeneration", "InternVLProcessor")

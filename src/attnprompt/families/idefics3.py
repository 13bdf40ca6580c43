"""Idefics3 and SmolVLM (``Idefics3ForConditionalGeneration``, ``SmolVLMForConditionalGeneration``; model_types
``idefics3`` and ``smolvlm``, one family named ``idefics3``): tiles and a global image.

The image is resized to whole tiles (``max_image_size``), cut row-major, then a global image squashed to one
tile; pixel shuffle merges ``scale_factor``² patches. The tiles are named in the prompt by ``<row_r_col_c>``
tokens. Without torchvision, SmolVLM is given Idefics3's processor: its image prompt (tiles, row/column tokens,
global image) is the same, and SmolVLM's own reads its video processor's settings even in
``apply_chat_template`` and needs num2words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .base import Family, ImageSpan
from .grid import GridLayout, pair, tiled_layout


def idefics3_layout(n_tokens: int, config: Any, rows: int, cols: int) -> list[GridLayout]:
    """Idefics3 / SmolVLM: the image is resized to whole tiles (``max_image_size``), cut into ``rows × cols``
    tiles, then a global image; each tile's patch grid is merged ``scale_factor``² by pixel shuffle. ``rows`` and
    ``cols`` are read from the prompt's ``<row_r_col_c>`` tokens (0 when the image is not split). See
    :func:`~attnprompt.families.grid.tiled_layout`.

    >>> from types import SimpleNamespace as NS
    >>> cfg = NS(vision_config=NS(image_size=512, patch_size=16), scale_factor=4)
    >>> [g.shape for g in idefics3_layout(64 * 7, cfg, 2, 3)]
    [(8, 8), (16, 24)]
    """
    side = _tile_tokens_side(config)
    return tiled_layout(n_tokens, rows, cols, side, "idefics3")


def _tile_tokens_side(config: Any) -> int:
    vis = config.vision_config
    return pair(vis.image_size)[0] // pair(vis.patch_size)[0] // int(config.scale_factor)


def tile_names(tokenizer: Any) -> dict[int, tuple[int, int]]:
    """Token id → (row, column) of the ``<row_r_col_c>`` tokens the tokenizer knows (tiles are 1-based).

    >>> from types import SimpleNamespace as NS
    >>> tok = NS(unk_token_id=0, convert_tokens_to_ids=lambda t: {"<row_1_col_2>": 7}.get(t, 0))
    >>> tile_names(tok)
    {7: (1, 2)}
    """
    names: dict[int, tuple[int, int]] = {}
    if tokenizer is None:
        return names
    for r in range(1, 7):
        for c in range(1, 7):
            i = tokenizer.convert_tokens_to_ids(f"<row_{r}_col_{c}>")
            if isinstance(i, int) and i != tokenizer.unk_token_id:
                names[i] = (r, c)
    return names


@dataclass(frozen=True)
class Idefics3(Family):
    """Idefics3 / SmolVLM: ``[global image, stitched tiles]`` (or one grid for an unsplit image).

    >>> from types import SimpleNamespace as NS
    >>> IDEFICS3.processor_settings(NS(vision_config=NS(image_size=512, patch_size=16), scale_factor=4))
    {'image_seq_len': 64}
    """

    def processor_settings(self, config: Any) -> dict[str, Any]:
        """Tokens per tile: ``(image_size / patch_size / scale_factor)²``.

        >>> from types import SimpleNamespace as NS
        >>> IDEFICS3.processor_settings(NS(vision_config=NS(image_size=56, patch_size=7), scale_factor=2))
        {'image_seq_len': 16}
        """
        side = _tile_tokens_side(config)
        return {"image_seq_len": side * side}

    def layouts(self, span: ImageSpan, config: Any, processor: Any) -> list[GridLayout]:
        """:func:`idefics3_layout` with the rows and columns the row's ``<row_r_col_c>`` tokens name.

        >>> from types import SimpleNamespace as NS
        >>> tok = NS(unk_token_id=0, convert_tokens_to_ids=lambda t: {"<row_1_col_2>": 7}.get(t, 0))
        >>> cfg = NS(vision_config=NS(image_size=56, patch_size=7), scale_factor=2)
        >>> span = ImageSpan(16 * 3, {"input_ids": [[5, 7, 5]]}, 0)
        >>> [g.shape for g in IDEFICS3.layouts(span, cfg, NS(tokenizer=tok))]
        [(4, 4), (4, 8)]
        """
        names = tile_names(getattr(processor, "tokenizer", None))
        ids = span.inputs["input_ids"][span.row]
        tiles = [names[i] for i in (ids.tolist() if hasattr(ids, "tolist") else ids) if i in names]
        rows, cols = (max(r for r, _ in tiles), max(c for _, c in tiles)) if tiles else (0, 0)
        return idefics3_layout(span.n_tokens, config, rows, cols)

    def input_size(self, size: tuple[int, int], config: Any, processor: Any) -> tuple[int, int] | None:
        """The image with its longer side at ``size["longest_edge"]``, each side then rounded up to whole tiles
        (``max_image_size``), as the processor resizes it before cutting its tiles.

        >>> from types import SimpleNamespace as NS
        >>> ip = NS(size={"longest_edge": 1536}, max_image_size={"longest_edge": 512})
        >>> IDEFICS3.input_size((4000, 3000), None, NS(image_processor=ip))
        (1536, 1536)
        """
        ip = getattr(processor, "image_processor", None)
        longest = (getattr(ip, "size", None) or {}).get("longest_edge") if ip is not None else None
        if not longest:
            return None
        tile = int((getattr(ip, "max_image_size", None) or {}).get("longest_edge") or longest)
        scale = int(longest) / max(size)
        return tuple(-(-max(1, round(side * scale)) // tile) * tile for side in size)  # type: ignore[return-value]


IDEFICS3 = Idefics3("idefics3", "Idefics3ForConditionalGeneration", "Idefics3Processor")
#: SmolVLM: Idefics3's family under its name (configuration hashes record "idefics3"), and Idefics3's processor.
SMOLVLM = Idefics3("idefics3", "SmolVLMForConditionalGeneration", "Idefics3Processor")

"""Where a VLM's image tokens sit on the image: token positions → grid cells → image extent.

Each family lays its image tokens out differently; a :class:`GridLayout` says, for one grid, which
position in the image-token span feeds each cell (row-major), and where the original image lies in that
grid's frame (``extent``, fractions of the frame), which is what :func:`attnprompt.render.upsample`
needs. Nothing here is hard-coded to 24×24: the grid comes from the model config and the processor's
outputs (``image_sizes``, ``image_grid_thw``). This module holds the geometry several families share
(the token-count check, tiles plus a thumbnail, LLaVA's any-resolution grid); each family's own layout
lives in its file.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ProcessorMismatchError

#: The whole frame (x0, y0, x1, y1 as fractions): the original image fills the prepared image, or the grid.
FULL = (0.0, 0.0, 1.0, 1.0)

__all__ = ["FULL", "GridLayout", "anyres_geometry", "anyres_input_size", "check_token_count", "height_width", "pair",
           "tiled_layout"]


@dataclass(frozen=True)
class GridLayout:
    """Cells of one grid and the image-token span positions that feed them.

    >>> GridLayout("grid", np.arange(6).reshape(2, 3)).shape
    (2, 3)
    """

    name: str
    index: np.ndarray
    extent: tuple[float, float, float, float] = FULL

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols).

        >>> GridLayout("g", np.zeros((4, 5), int)).shape
        (4, 5)
        """
        return tuple(self.index.shape)

    def gather(self, values: np.ndarray) -> np.ndarray:
        """Arrange per-token ``values`` (over the image-token span) on the grid.

        >>> GridLayout("g", np.array([[1, 0]])).gather(np.array([5.0, 7.0])).tolist()
        [[7.0, 5.0]]
        """
        return np.asarray(values)[self.index]


def check_token_count(n_tokens: int, expected: int, family: str, detail: str) -> None:
    """A :class:`~attnprompt.errors.ProcessorMismatchError` unless the prompt holds as many image tokens as
    the model config implies (``detail`` says how the config implies them).

    >>> check_token_count(7, 8, "internvl", "2×2 tiles")
    Traceback (most recent call last):
    attnprompt.errors.ProcessorMismatchError: internvl: the prompt holds 7 image tokens but the model config \
implies 8 (2×2 tiles); is the processor the one saved with this checkpoint?
    """
    if n_tokens != expected:
        raise ProcessorMismatchError(
            f"{family}: the prompt holds {n_tokens} image tokens but the model config implies {expected} ({detail}); "
            "is the processor the one saved with this checkpoint?"
        )


def pair(v: Any) -> tuple[int, int]:
    """A size the configs give as one number or as ``[height, width]``, as a pair.

    >>> pair(448), pair([448, 336])
    ((448, 448), (448, 336))
    """
    return (int(v[0]), int(v[1])) if isinstance(v, (list, tuple)) else (int(v), int(v))


def height_width(size: Any) -> tuple[int, int]:
    """(height, width) of an image processor's ``size`` (a dict or an object with those fields).

    >>> height_width({"height": 448, "width": 336})
    (448, 336)
    """
    get: Callable[[str], Any] = size.get if isinstance(size, dict) else lambda k: getattr(size, k, None)
    return int(get("height")), int(get("width"))


def tiled_layout(n_tokens: int, rows: int, cols: int, side: int, family: str) -> list[GridLayout]:
    """Tiles plus a thumbnail (InternVL, Idefics3/SmolVLM): ``rows × cols`` tiles of ``side × side`` tokens
    each, row-major tile after tile and row-major inside a tile, then the thumbnail's ``side × side``. The
    tiles cover the whole image (resized, neither cropped nor padded), so they stitch into one
    ``(rows·side) × (cols·side)`` grid. Returns ``[thumbnail, stitched]``, or ``[grid]`` for an untiled image.

    >>> [g.shape for g in tiled_layout(7 * 4, 2, 3, 2, "internvl")]
    [(2, 2), (4, 6)]
    >>> tiled_layout(28, 2, 3, 2, "internvl")[1].index[1, 2:4].tolist()  # tile (0, 1), its second row
    [6, 7]
    """
    per_tile = side * side
    if rows * cols <= 1:
        check_token_count(n_tokens, per_tile, family, f"one {side}×{side} image, not tiled")
        return [GridLayout("grid", np.arange(per_tile).reshape(side, side), FULL)]
    check_token_count(n_tokens, (rows * cols + 1) * per_tile, family,
                      f"{rows}×{cols} tiles of {side}×{side} and a thumbnail")
    r, c = np.arange(rows * side)[:, None], np.arange(cols * side)[None, :]
    index = ((r // side) * cols + c // side) * per_tile + (r % side) * side + c % side
    thumbnail = rows * cols * per_tile + np.arange(per_tile).reshape(side, side)
    return [GridLayout("thumbnail", thumbnail, FULL), GridLayout("stitched", index, FULL)]


def _fit_size(height: int, width: int, target_h: int, target_w: int) -> tuple[int, int]:
    """Aspect-preserving size of (height, width) inside (target_h, target_w), rounding up
    (what LLaVA-NeXT's processor does before padding a tile canvas)."""
    scale_w, scale_h = target_w / width, target_h / height
    if scale_w < scale_h:
        return min(math.ceil(height * scale_w), target_h), target_w
    return target_h, min(math.ceil(width * scale_h), target_w)


def anyres_geometry(config: Any, image_hw: Sequence[int]) -> tuple[int, int, int, tuple]:
    """The unpadded high-res feature grid of an "anyres" image (LLaVA-NeXT, LLaVA-OneVision): the tile side in
    tokens, its rows and columns, and where the original image lies in it (fractions).

    >>> from types import SimpleNamespace as NS
    >>> cfg = NS(vision_config=NS(image_size=336, patch_size=14), image_grid_pinpoints=[[336, 672], [672, 336]])
    >>> anyres_geometry(cfg, (480, 640))
    (24, 24, 32, (0.0, 0.0, 1.0, 1.0))
    """
    from transformers.image_processing_utils import select_best_resolution

    vis = config.vision_config
    size, patch = int(vis.image_size), int(vis.patch_size)
    side = size // patch
    height, width = int(image_hw[0]), int(image_hw[1])
    best_h, best_w = select_best_resolution((height, width), config.image_grid_pinpoints)
    gh, gw = best_h // size * side, best_w // size * side  # full high-res feature grid
    if width / height > gw / gh:
        new_h = int(round(height * (gw / width), 7))
        pad = (gh - new_h) // 2
        rows, cols = range(pad, gh - pad), range(gw)
    else:
        new_w = int(round(width * (gh / height), 7))
        pad = (gw - new_w) // 2
        rows, cols = range(gh), range(pad, gw - pad)
    nr, nc = len(rows), len(cols)
    # The image sits centred in the best-resolution canvas; one feature cell is `patch` canvas px.
    fit_h, fit_w = _fit_size(height, width, best_h, best_w)
    py, px = (best_h - fit_h) // 2, (best_w - fit_w) // 2
    y0, x0 = rows[0] * patch, cols[0] * patch
    fh, fw = nr * patch, nc * patch
    extent = tuple(
        float(np.clip(v, 0.0, 1.0))
        for v in ((px - x0) / fw, (py - y0) / fh, (px + fit_w - x0) / fw, (py + fit_h - y0) / fh)
    )
    return side, nr, nc, extent


def anyres_input_size(size: tuple[int, int], pinpoints: Any) -> tuple[int, int] | None:
    """(width, height) an "anyres" processor (LLaVA-NeXT, LLaVA-OneVision) resizes an image of ``size`` (width,
    height) to: the largest fit inside the best canvas of ``pinpoints`` (``[[height, width], …]``); None without them.

    >>> anyres_input_size((4000, 3000), [[336, 672], [672, 336], [672, 672]])
    (672, 505)
    """
    if not pinpoints:
        return None
    from transformers.image_processing_utils import select_best_resolution

    best_h, best_w = select_best_resolution((int(size[1]), int(size[0])), [list(p) for p in pinpoints])
    fit_h, fit_w = _fit_size(int(size[1]), int(size[0]), best_h, best_w)
    return fit_w, fit_h


def anyres_pinpoints(config: Any, processor: Any) -> Any:
    """The canvases an "anyres" family resizes to: the processor's ``image_grid_pinpoints``, else the config's.

    >>> from types import SimpleNamespace as NS
    >>> anyres_pinpoints(NS(image_grid_pinpoints=[[336, 672]]), NS(image_processor=NS()))
    [[336, 672]]
    """
    ip = getattr(processor, "image_processor", None)
    return getattr(ip, "image_grid_pinpoints", None) or getattr(config, "image_grid_pinpoints", None)

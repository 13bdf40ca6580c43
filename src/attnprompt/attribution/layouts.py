"""Where a VLM's image tokens sit on the image: token positions → grid cells → image extent.

Each family lays its image tokens out differently; a :class:`GridLayout` says, for one grid,
which position in the image-token span feeds each cell (row-major), and where the original
image lies in that grid's frame (``extent``, fractions of the frame), which is what
:func:`attnprompt.render.upsample` needs. Nothing here is hard-coded to 24×24: the grid comes
from the model config and the processor's outputs (``image_sizes``, ``image_grid_thw``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError, ProcessorMismatchError

FULL = (0.0, 0.0, 1.0, 1.0)


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
        return tuple(self.index.shape)  # type: ignore[return-value]

    def gather(self, values: np.ndarray) -> np.ndarray:
        """Arrange per-token ``values`` (over the image-token span) on the grid.

        >>> GridLayout("g", np.array([[1, 0]])).gather(np.array([5.0, 7.0])).tolist()
        [[7.0, 5.0]]
        """
        return np.asarray(values)[self.index]


def _check(n_tokens: int, expected: int, family: str, detail: str) -> None:
    if n_tokens != expected:
        raise ProcessorMismatchError(
            f"{family}: the prompt holds {n_tokens} image tokens but the model config implies {expected} ({detail}); "
            "is the processor the one saved with this checkpoint?"
        )


def llava_layout(n_tokens: int, config: Any, extent: Sequence[float] = FULL) -> list[GridLayout]:
    """LLaVA-1.5: one side×side grid, row-major (side = image_size / patch_size).

    >>> from types import SimpleNamespace as NS
    >>> cfg = NS(vision_config=NS(image_size=336, patch_size=14), vision_feature_select_strategy="default")
    >>> llava_layout(576, cfg)[0].shape
    (24, 24)
    """
    side = config.vision_config.image_size // config.vision_config.patch_size
    extra = 1 if getattr(config, "vision_feature_select_strategy", "default") == "full" else 0
    _check(n_tokens, side * side + extra, "llava", f"a {side}×{side} patch grid")
    return [GridLayout("grid", np.arange(extra, extra + side * side).reshape(side, side), tuple(extent))]


def _fit_size(height: int, width: int, target_h: int, target_w: int) -> tuple[int, int]:
    """Aspect-preserving size of (height, width) inside (target_h, target_w), rounding up
    (what LLaVA-NeXT's processor does before padding a tile canvas)."""
    scale_w, scale_h = target_w / width, target_h / height
    if scale_w < scale_h:
        return min(math.ceil(height * scale_w), target_h), target_w
    return target_h, min(math.ceil(width * scale_h), target_w)


def _anyres_geometry(config: Any, image_hw: Sequence[int]) -> tuple[int, int, int, int, tuple]:
    """The unpadded high-res feature grid of an "anyres" image (LLaVA-NeXT, LLaVA-OneVision): the tile side in
    tokens, its rows × columns, and where the original image lies in it (fractions)."""
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
    side, nr, nc, extent = _anyres_geometry(config, image_hw)
    base_n = side * side
    _check(n_tokens, base_n + nr * (nc + 1), "llava_next", f"{side}×{side} base + {nr}×{nc} high-res with newlines")
    base = GridLayout("base", np.arange(base_n).reshape(side, side), FULL)
    index = base_n + np.arange(nr)[:, None] * (nc + 1) + np.arange(nc)[None, :]
    return [base, GridLayout("highres", index, extent)]


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
    side, nr, nc, extent = _anyres_geometry(config, image_hw)
    ratio_name = str(getattr(config, "vision_aspect_ratio", "anyres_max_9"))
    if not ratio_name.startswith("anyres_max_"):
        raise ProcessorMismatchError(f"llava_onevision: vision_aspect_ratio {ratio_name!r} is not 'anyres_max_N'")
    most = int(ratio_name[len("anyres_max_"):])
    ratio = math.sqrt(nr * nc / (most * side * side))
    if ratio > 1.1:  # the model interpolates the grid down to this size (covering the same area)
        nr, nc = int(nr // ratio), int(nc // ratio)
    _check(n_tokens, base_n + nr * (nc + 1), "llava_onevision",
           f"{side}×{side} base + {nr}×{nc} high-res with newlines")
    index = base_n + np.arange(nr)[:, None] * (nc + 1) + np.arange(nc)[None, :]
    return [base, GridLayout("highres", index, extent)]


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
        _check(n_tokens, per_tile, family, f"one {side}×{side} image, not tiled")
        return [GridLayout("grid", np.arange(per_tile).reshape(side, side), FULL)]
    _check(n_tokens, (rows * cols + 1) * per_tile, family, f"{rows}×{cols} tiles of {side}×{side} and a thumbnail")
    r, c = np.arange(rows * side)[:, None], np.arange(cols * side)[None, :]
    index = ((r // side) * cols + c // side) * per_tile + (r % side) * side + c % side
    thumbnail = rows * cols * per_tile + np.arange(per_tile).reshape(side, side)
    return [GridLayout("thumbnail", thumbnail, FULL), GridLayout("stitched", index, FULL)]


def internvl_layout(n_tokens: int, config: Any, image_processor: Any, image_hw: Sequence[int]) -> list[GridLayout]:
    """InternVL (2.5, 3): the image is resized (aspect distorted) onto the tile canvas whose aspect is closest to
    the image's (``min_patches``..``max_patches`` tiles), cut into tiles, each tile's patch grid merged 2×2 by
    pixel shuffle (``downsample_ratio`` 0.5), then a thumbnail of the whole image. See :func:`tiled_layout`.

    >>> from types import SimpleNamespace as NS
    >>> cfg = NS(vision_config=NS(image_size=[448, 448], patch_size=[14, 14]), downsample_ratio=0.5)
    >>> ip = NS(size=NS(height=448, width=448), min_patches=1, max_patches=12, crop_to_patches=True)
    >>> [g.shape for g in internvl_layout(256 * 4, cfg, ip, (400, 1200))]
    [(16, 16), (16, 48)]
    """
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import get_optimal_tiled_canvas

    vis = config.vision_config
    size, patch = _pair(vis.image_size)[0], _pair(vis.patch_size)[0]
    side = int(round(size // patch * float(config.downsample_ratio)))
    tile_h, tile_w = _hw(image_processor.size)
    cols, rows = 1, 1
    if n_tokens != side * side:  # tiled (InternVL's processor turns crop_to_patches on whatever its config says)
        cols, rows = get_optimal_tiled_canvas((int(image_hw[0]), int(image_hw[1])), (tile_h, tile_w),
                                              int(image_processor.min_patches), int(image_processor.max_patches))
    return tiled_layout(n_tokens, rows, cols, side, "internvl")


def idefics3_layout(n_tokens: int, config: Any, rows: int, cols: int) -> list[GridLayout]:
    """Idefics3 / SmolVLM: the image is resized to whole tiles (``max_image_size``), cut into ``rows × cols``
    tiles, then a global image; each tile's patch grid is merged ``scale_factor``² by pixel shuffle. ``rows`` and
    ``cols`` are read from the prompt's ``<row_r_col_c>`` tokens (0 when the image is not split). See
    :func:`tiled_layout`.

    >>> from types import SimpleNamespace as NS
    >>> cfg = NS(vision_config=NS(image_size=512, patch_size=16), scale_factor=4)
    >>> [g.shape for g in idefics3_layout(64 * 7, cfg, 2, 3)]
    [(8, 8), (16, 24)]
    """
    vis = config.vision_config
    side = _pair(vis.image_size)[0] // _pair(vis.patch_size)[0] // int(config.scale_factor)
    return tiled_layout(n_tokens, rows, cols, side, "idefics3")


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
        _check(n_tokens, (n_tokens // per + 1) * per, "gemma3", f"whole images of {per} tokens")
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


def _pair(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (list, tuple)) else (int(v), int(v))


def _hw(size: Any) -> tuple[int, int]:
    get = size.get if isinstance(size, dict) else lambda k, d=None: getattr(size, k, d)
    return int(get("height")), int(get("width"))


def qwen_vl_layout(n_tokens: int, grid_thw: Sequence[int], merge: int) -> list[GridLayout]:
    """Qwen2-VL / Qwen2.5-VL: (h/merge)×(w/merge) merged tokens, row-major, covering the whole
    (resized, neither cropped nor padded) image; video frames (t > 1) are averaged by the caller.

    >>> [g.shape for g in qwen_vl_layout(20, (1, 8, 10), 2)]
    [(4, 5)]
    """
    t, h, w = (int(v) for v in grid_thw)
    rows, cols = h // merge, w // merge
    _check(n_tokens, t * rows * cols, "qwen2_vl", f"grid_thw {t}×{h}×{w}, merge {merge}")
    if t != 1:
        raise InputError(f"qwen2_vl: image grid has t={t} frames; attribution supports still images (t=1)")
    return [GridLayout("grid", np.arange(rows * cols).reshape(rows, cols), FULL)]

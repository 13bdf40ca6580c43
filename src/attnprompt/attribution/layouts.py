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
    base_n = side * side
    _check(n_tokens, base_n + nr * (nc + 1), "llava_next", f"{side}×{side} base + {nr}×{nc} high-res with newlines")
    base = GridLayout("base", np.arange(base_n).reshape(side, side), FULL)
    index = base_n + np.arange(nr)[:, None] * (nc + 1) + np.arange(nc)[None, :]
    # The image sits centred in the best-resolution canvas; one feature cell is `patch` canvas px.
    fit_h, fit_w = _fit_size(height, width, best_h, best_w)
    py, px = (best_h - fit_h) // 2, (best_w - fit_w) // 2
    y0, x0 = rows[0] * patch, cols[0] * patch
    fh, fw = nr * patch, nc * patch
    extent = tuple(
        float(np.clip(v, 0.0, 1.0))
        for v in ((px - x0) / fw, (py - y0) / fh, (px + fit_w - x0) / fw, (py + fit_h - y0) / fh)
    )
    return [base, GridLayout("highres", index, extent)]


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

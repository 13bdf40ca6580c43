"""Pointing-game metrics for heatmaps against ground-truth objects (pure functions).

A heatmap "points" at the pixel of its maximum; it hits an object when that pixel lies in
the object's box. Mass-in-mask is the fraction of the heatmap's total mass on the object's
visible pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def peak(heatmap: np.ndarray) -> tuple[int, int]:
    """(x, y) of the heatmap's maximum; ties resolve to the centroid of the tied pixels,
    so a flat plateau does not default to the top-left corner.

    >>> peak(np.array([[0, 1.0], [0, 0]]))
    (1, 0)
    """
    h = np.asarray(heatmap)
    top = h.max()
    ys, xs = np.nonzero(h >= top)
    if len(ys) == 1:
        return int(xs[0]), int(ys[0])
    # The centroid of a plateau may fall between its pixels; snap to the closest tied pixel.
    cy, cx = ys.mean(), xs.mean()
    i = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
    return int(xs[i]), int(ys[i])


def in_box(point: tuple[int, int], box: Sequence[int]) -> bool:
    """Whether pixel ``point = (x, y)`` lies in ``box = (x0, y0, x1, y1)`` (x1, y1 exclusive).

    >>> in_box((3, 4), (0, 0, 4, 5)), in_box((4, 4), (0, 0, 4, 5))
    (True, False)
    """
    x, y = point
    x0, y0, x1, y1 = box
    return x0 <= x < x1 and y0 <= y < y1


def mass_in_mask(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Fraction of the heatmap's mass on ``mask`` (0 for an all-zero heatmap).

    >>> mass_in_mask(np.array([[1.0, 3.0]]), np.array([[False, True]]))
    0.75
    """
    h = np.asarray(heatmap, dtype=np.float64)
    total = h.sum()
    return float((h * mask).sum() / total) if total > 0 else 0.0


def uniform_hit_rate(box: Sequence[int], size: tuple[int, int]) -> float:
    """Probability that a uniformly random pixel hits ``box`` — the random-point baseline, exact.

    >>> uniform_hit_rate((0, 0, 5, 10), (10, 10))
    0.5
    """
    x0, y0, x1, y1 = box
    w, h = size
    return (x1 - x0) * (y1 - y0) / float(w * h)


def centre_hits(box: Sequence[int], size: tuple[int, int]) -> bool:
    """Whether the image centre pixel lies in ``box`` — the centre baseline.

    >>> centre_hits((40, 40, 60, 60), (100, 100))
    True
    """
    w, h = size
    return in_box((w // 2, h // 2), box)

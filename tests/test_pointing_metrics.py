"""Pointing-game metrics: exact values on hand-made heatmaps and on generated scenes."""

import numpy as np
import pytest

from attnprompt.evaluation.pointing import cell_coverage, centre_hits, in_box, mass_in_mask, peak, uniform_hit_rate
from attnprompt.shapes import make_scene


def test_cell_coverage_at_pixel_resolution_is_the_mask_itself():
    scene = make_scene(3, n_objects=4, size=64)
    for obj in scene.objects:
        np.testing.assert_array_equal(cell_coverage(obj.mask, 64), obj.mask.astype(float))


@pytest.mark.parametrize("side, grid", [(224, 24), (192, 24), (100, 7)])
def test_cell_coverage_conserves_the_object_area_on_uneven_cells(side, grid):
    # 224 px on a 24-cell grid gives cells of 9 and 10 px: weighting each cell's fraction by its
    # own area must give back the object's pixel count exactly.
    scene = make_scene(11, n_objects=5, size=side)
    edges = np.linspace(0, side, grid + 1).round().astype(int)
    area = np.outer(np.diff(edges), np.diff(edges))
    for obj in scene.objects:
        cov = cell_coverage(obj.mask, grid)
        assert cov.shape == (grid, grid)
        assert 0.0 <= cov.min() and cov.max() <= 1.0
        assert (cov * area).sum() == pytest.approx(obj.mask.sum(), abs=1e-6)


def test_cell_coverage_rejects_non_square_masks_and_too_fine_grids():
    with pytest.raises(ValueError, match="square"):
        cell_coverage(np.zeros((4, 6), bool), 2)
    with pytest.raises(ValueError, match="grid <= 4"):
        cell_coverage(np.zeros((4, 4), bool), 8)


def test_peak_of_a_plateau_is_its_middle_not_the_top_left_corner():
    h = np.zeros((9, 9))
    h[2:7, 4:7] = 1.0
    assert peak(h) == (5, 4)


def test_uniform_hit_rate_is_the_exact_fraction_of_pixels_in_the_box():
    size = (40, 30)
    box = (5, 7, 23, 19)
    hits = sum(in_box((x, y), box) for x in range(size[0]) for y in range(size[1]))
    assert uniform_hit_rate(box, size) == hits / (size[0] * size[1])


def test_centre_baseline_and_mass_in_mask_on_a_scene():
    scene = make_scene(5, n_objects=3, size=96)
    obj = scene.objects[0]
    x0, y0, x1, y1 = obj.box
    assert centre_hits(obj.box, scene.image.size) == (x0 <= 48 < x1 and y0 <= 48 < y1)
    # a heatmap that is the mask itself puts all its mass on the mask; its complement none
    assert mass_in_mask(obj.mask.astype(float), obj.mask) == 1.0
    assert mass_in_mask((~obj.mask).astype(float), obj.mask) == 0.0

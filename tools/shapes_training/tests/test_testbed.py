"""The training-only testbed helpers (tools/shapes_training/testbed.py): training seeds above every
held-out range, an object's footprint on a patch grid."""

import numpy as np
import pytest

from attnprompt.shapes import make_scene, splits
from tools.shapes_training.testbed import TRAINING_OFFSETS, cell_coverage, training_seeds


def test_training_seeds_lie_above_every_held_out_range():
    assert max(r.stop for r in splits.HELD_OUT) <= splits.TRAINING_START
    for model in TRAINING_OFFSETS:
        assert min(training_seeds(model, 0, 10)) >= splits.TRAINING_START
    assert not set(training_seeds("clip", 0, 100)) & set(training_seeds("vlm", 0, 100))
    with pytest.raises(ValueError, match="model must be one of clip, vlm"):
        training_seeds("sam", 0, 1)


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

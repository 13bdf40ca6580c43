"""Pointing-game metrics: exact values on hand-made heatmaps and on generated scenes."""

import numpy as np

from attnprompt.evaluation.pointing import centre_hits, in_box, mass_in_mask, peak, uniform_hit_rate
from attnprompt.shapes import make_scene


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

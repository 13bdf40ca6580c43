"""Large images stay bounded (issue 32): the processor gets a reduced copy only when the image is many times its
input, region selection runs on a bounded map with the box scaled back, CARVE's masked crop copies only the box,
and the report's thumbnails never copy the whole image. Normal-sized images are untouched."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from attnprompt.annotation import render_annotation
from attnprompt.families.llava import LLAVA
from attnprompt.models import bounded_input, load_vlm
from attnprompt.regions import RegionConfig, crop, select_regions, selection_factor
from attnprompt.types import AttributionMap


def test_bounded_input_leaves_normal_images_alone():
    vlm = load_vlm("shapes")  # its processor: short side to 128
    normal = Image.new("RGB", (1023, 1023))
    assert bounded_input(vlm, normal) is normal  # under 8× the input: the very same object
    big = bounded_input(vlm, Image.new("RGB", (7680, 4320)))
    assert big.size == (960, 540) and min(big.size) >= 4 * 128


def test_llava_pads_a_large_image_at_a_bounded_size():
    from types import SimpleNamespace as NS

    processor = NS(image_processor=NS(image_mean=[0.5, 0.5, 0.5], size={"shortest_edge": 336}))
    square, extent = LLAVA.prepare(Image.new("RGB", (7680, 4320)), processor, "pad")
    assert square.size == (1536, 1536)  # 7680 // (4 · 336) = 5
    assert extent == pytest.approx((0.0, 0.21875, 1.0, 0.78125))  # as the full-size square's
    small, _ = LLAVA.prepare(Image.new("RGB", (1344, 700)), processor, "pad")
    assert small.size == (1344, 1344)  # 4 × 336: left as it is


def test_crop_with_a_box_mask_equals_the_full_mask():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8))
    mask = rng.random((30, 40)) > 0.5
    box = (5, 3, 31, 22)
    expected = (np.asarray(image) * mask[:, :, None])[3:22, 5:31]
    assert np.array_equal(np.asarray(crop(image, box, mask)), expected)
    assert np.array_equal(np.asarray(crop(image, box, mask[3:22, 5:31])), expected)
    assert np.array_equal(np.asarray(image), np.asarray(image.copy()))  # the original is untouched


def test_selection_on_a_reduced_map_scales_the_box():
    config = RegionConfig.from_preset(top=0.05)
    heat = np.zeros((40, 60))
    heat[10:20, 30:50] = 1.0
    full = select_regions(np.kron(heat, np.ones((3, 3))), Image.new("RGB", (180, 120)), config)
    reduced = select_regions(heat, Image.new("RGB", (180, 120)), config)
    assert full.box == reduced.box == (90, 30, 150, 60)
    assert full.crop.size == reduced.crop.size
    with pytest.raises(ValueError, match="integer reduction"):
        select_regions(heat[:, :50], Image.new("RGB", (180, 120)), config)


def test_annotation_of_a_large_image_selects_on_a_bounded_map():
    image = Image.new("RGB", (4400, 2000), (90, 120, 200))
    grid = np.zeros((8, 8))
    grid[2, 5] = 1.0
    a = render_annotation(image, "q", AttributionMap(grid), {}, regions=RegionConfig.from_preset())
    assert selection_factor(image.size) == 2
    x0, y0, x1, y1 = a.box
    # the bright cell (row 2, column 5 of 8) lies inside the box, in the image's pixels
    assert x0 <= 5 * 550 and x1 >= 6 * 550 - 1 and y0 <= 2 * 250 and y1 >= 3 * 250 - 1
    assert a.heatmap.shape == (2000, 4400)
    assert a.crop.size[0] >= 4400 or a.crop.size[1] >= 2000  # CARVE's upscale to the original's scale


def test_thumbnail_of_a_large_image():
    import io

    from attnprompt.evaluation.units import THUMBNAIL_SIDE, _thumbnail

    for size in ((7680, 4320), (100, 60)):
        got = Image.open(io.BytesIO(_thumbnail(Image.new("RGB", size, "red"))))
        assert max(got.size) == min(THUMBNAIL_SIDE, max(size)) and got.mode == "RGB"

"""Render only what someone will see (issue 40, item 2): a request shows the answering model its pictures at the size
its processor is handed, made from the map at that size; the full-resolution overlay, heatmap and crop are rendered
when someone reads them — the same pixels as made at once — and cache keys read a sample and a checksum, not a
SHA-1 of every byte."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from attnprompt import render
from attnprompt.annotation import render_annotation
from attnprompt.images import image_digest, image_key
from attnprompt.regions import (
    RegionConfig,
    choose_regions,
    crop_regions_reduced,
    reduced_size,
    select_regions,
    selection_factor,
)
from attnprompt.types import AttributionMap


def photo(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (h // 40 + 2, w // 40 + 2, 3), dtype=np.uint8))
    return small.resize((w, h), Image.Resampling.BILINEAR)


def a_map(seed: int = 0) -> AttributionMap:
    rng = np.random.default_rng(seed)
    grid = rng.random((12, 12)) ** 4  # a few bright cells
    return AttributionMap(grid, extent=(0.0, 0.125, 1.0, 0.875), parts={"selection": grid * 7.0})


def eager(image, amap, *, gray, resample, regions):
    """What render_annotation made at once before the pictures were rendered on demand (issue 32's code)."""
    heatmap = render.upsample(amap.grid, image.size, extent=amap.extent, resample=resample)
    annotated = render.overlay(image, heatmap, gray=gray)
    factor = selection_factor(image.size)
    frame = reduced_size(image.size, factor)
    heat = render.upsample(amap.parts["selection"], frame, extent=amap.extent, resample="bilinear", clip=False)
    from attnprompt.annotation import _image_grid

    chosen = select_regions(heat, image, regions, grid=_image_grid(heat, amap.shape))
    return heatmap, annotated, chosen


@pytest.mark.parametrize("size", [(300, 200), (4400, 2100)])  # selected on the image, and on a map halved
def test_the_pictures_rendered_on_demand_are_the_pixels_made_at_once(size):
    image, amap, regions = photo(*size), a_map(), RegionConfig.from_preset()
    a = render_annotation(image, "q", amap, {}, gray=40, resample="bicubic", regions=regions)
    heatmap, annotated, chosen = eager(image, amap, gray=40, resample="bicubic", regions=regions)
    assert a.box == chosen.box and a.config["box"] == list(chosen.box)
    assert np.array_equal(a.heatmap, heatmap)
    assert np.array_equal(np.asarray(a.image), np.asarray(annotated))
    assert np.array_equal(np.asarray(a.crop), np.asarray(chosen.crop))
    assert a.shown_image is a.image and a.shown_crop is a.crop  # no answering model bounds them: the same objects


def test_nothing_full_size_is_rendered_until_it_is_read(monkeypatch):
    made = []
    for name in ("overlay", "upsample"):
        real = getattr(render, name)
        monkeypatch.setattr(render, name, lambda *a, _real=real, _name=name, **k: made.append(_name) or _real(*a, **k))
    image = photo(4000, 3000)
    a = render_annotation(image, "q", a_map(), {}, regions=RegionConfig.from_preset(), bound=lambda size: 8)
    assert made == ["upsample"]  # the selection map, at a bounded size (4000×3000 / 2)
    shown = a.shown_image
    assert shown.size == (500, 375) and made == ["upsample", "upsample", "overlay"]
    assert a.shown_crop.size == reduced_size(a.crop.size, 8)  # reading .crop renders the full crop (no overlay)
    assert made.count("overlay") == 1
    assert a.image.size == (4000, 3000) and made.count("overlay") == 2


def test_what_the_model_is_shown_is_the_reduced_picture_made_at_its_size():
    image, amap = photo(4000, 3000, seed=3), a_map(seed=3)
    a = render_annotation(image, "q", amap, {}, regions=RegionConfig.from_preset(), bound=lambda size: 8)
    want = np.asarray(a.image.reduce(8), dtype=np.float64)  # the full overlay, reduced as the processor's copy was
    got = np.asarray(a.shown_image, dtype=np.float64)
    assert got.shape == want.shape and np.abs(got - want).mean() < 1.0 and np.abs(got - want).max() <= 16
    crop, shown = a.crop, a.shown_crop
    assert shown.size == reduced_size(crop.size, 8)
    want = np.asarray(crop.reduce(8), dtype=np.float64)[: shown.size[1], : shown.size[0]]
    got = np.asarray(shown, dtype=np.float64)
    assert np.abs(got - want).mean() < 4.0  # resampled once from the image: only the masked edges differ


def test_a_crop_made_at_a_reduced_size_keeps_the_box_and_blacks_out_the_rest():
    image = Image.new("RGB", (800, 400), (200, 150, 100))
    heat = np.zeros((400, 800))
    heat[40:80, 80:160] = 1.0
    heat[300:340, 600:680] = 2.0
    chosen = choose_regions(heat, image.size, RegionConfig.from_preset(top=0.015, min_regions=2, upscale=False))
    assert chosen.box == (80, 40, 680, 340)
    small = np.asarray(crop_regions_reduced(image, chosen, 4))
    assert small.shape == (75, 150, 3)
    assert (small[:8, :18] == (200, 150, 100)).all()  # the first blob, top left of the box
    assert (small[40:60, 40:100] == 0).all()  # between the blobs: outside the mask, black


def test_an_api_answer_shows_a_large_photo_at_the_models_size_and_keeps_the_full_overlay_for_whoever_asks():
    from attnprompt.attribution import get_attributor
    from attnprompt.backends import get_backend
    from attnprompt.strategies.api import Api

    backend = get_backend("shapes")
    image = photo(4096, 4096, seed=5)
    r = Api(backend, get_attributor(model="shapes"), max_new_tokens=4)(image, "What colour is the circle?")
    assert backend.input_factor(image.size) == 8
    assert r.steps[0].images[0].size == (512, 512) and r.steps[0].to_dict()["turns"][0]["images"] == [[512, 512]]
    assert r.annotation.image.size == (4096, 4096)  # rendered now, at full resolution


def test_small_images_are_shown_as_they_are():
    from attnprompt.backends import get_backend
    from attnprompt.shapes import make_scene
    from attnprompt.strategies.build import build_strategy

    image = make_scene(7, n_objects=5, size=320).image
    r = build_strategy("carve", get_backend("shapes"), max_new_tokens=4)(image, "What colour is the circle?")
    a = r.annotation
    assert r.steps[0].images == (image, a.crop) and a.shown_crop is a.crop


def test_the_cache_key_tells_apart_images_one_pixel_apart_at_full_size():
    a = photo(4000, 3000, seed=1)
    b = a.copy()
    x, y = 2001, 1499  # off the key's sample grid
    b.putpixel((x, y), tuple(min(255, c + 1) for c in a.getpixel((x, y))))
    assert image_key(a) == image_key(a.copy()) and image_key(a) != image_key(b)
    assert image_key(Image.new("RGB", (64, 48))) != image_key(Image.new("RGB", (48, 64)))  # size
    assert image_key(Image.new("L", (64, 48))) != image_key(Image.new("RGB", (64, 48)))  # mode
    assert image_digest(a) != image_digest(b)  # the stores' SHA-1 too


def test_carve_keys_its_general_pass_on_what_the_model_reads():
    from attnprompt.attribution.contrastive import ContrastiveAttributor

    carve = ContrastiveAttributor.from_pretrained("shapes")
    image = photo(4096, 4096, seed=2)
    carve.attribute([image], ["What colour is the circle?"])
    twin = image.copy()  # another object, the same picture: the same model input
    carve.attribute([twin], ["Where is the star?"])
    assert carve.cache_info()["hits"] == 1
    other = image.copy()
    other.paste((255, 0, 0), (0, 0, 64, 64))  # changes the reduced copy the model reads
    carve.attribute([other], ["Where is the star?"])
    assert carve.cache_info() == {"hits": 1, "misses": 2, "size": 2}

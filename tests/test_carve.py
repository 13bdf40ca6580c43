"""CARVE and crops: the fast contrastive map against the straightforward loop, regions on hand-made maps,
crop boxes, the general-pass cache, and crops as a visual prompt for every map."""

from __future__ import annotations

import builders as vb
import numpy as np
import pytest
import torch
from PIL import Image

from attnprompt.attribution.configs import CarveConfig
from attnprompt.attribution.contrastive import ContrastiveAttributor, contrast
from attnprompt.errors import InputError
from attnprompt.models import chat_prompt, end_of_sequence_ids
from attnprompt.regions import (
    RegionConfig,
    bounding_box,
    components,
    select_components,
    select_regions,
    top_mask,
    window_box,
)

fresh = vb.loaded  # an uncached model


def straightforward_pass(attributor: ContrastiveAttributor, image: Image.Image, prompt: str) -> np.ndarray:
    """The public code's way, written plainly: eager attention, no KV cache, the whole sequence again
    at every step, every layer's attention returned; the last row over the image tokens, mean over heads."""
    inner, vlm = attributor.inner, attributor.inner.vlm
    request = inner.request(image, prompt)
    inputs = vlm.processor(text=[chat_prompt(vlm.processor, request)], images=[list(request.images)],
                           return_tensors="pt")
    positions = (inputs["input_ids"][0] == inner.image_token_id).nonzero().flatten()
    eos = end_of_sequence_ids(vlm)
    model = vlm.model
    model.set_attn_implementation({"text_config": "eager"})
    steps = []
    try:
        ids = inputs["input_ids"]
        extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
        for _ in range(attributor.config.max_new_tokens):
            with torch.no_grad():
                out = model(input_ids=ids, attention_mask=torch.ones_like(ids), output_attentions=True,
                            use_cache=False, **extra)
            steps.append([out.attentions[layer][0, :, -1, positions].double().mean(0).numpy()
                          for layer in inner.layers])
            token = int(out.logits[0, -1].argmax())
            ids = torch.cat([ids, torch.tensor([[token]])], 1)
            if "mm_token_type_ids" in extra:  # Qwen: which tokens are image tokens; a new one is text
                text = torch.zeros((1, 1), dtype=torch.long)
                extra["mm_token_type_ids"] = torch.cat([extra["mm_token_type_ids"], text], 1)
            if token in eos:
                break
    finally:
        model.set_attn_implementation({"text_config": "sdpa"})
    return np.array(steps)  # steps × layers × tokens


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
@pytest.mark.parametrize("steps", ["all", "first"])
def test_the_fast_contrastive_map_equals_the_straightforward_loop(family, steps):
    vlm = fresh(family)
    config = CarveConfig.from_preset(layers="1:3", max_new_tokens=6, steps=steps)
    attributor = ContrastiveAttributor(vlm, config)
    image, query, suffix = vb.random_image(90, 50, 3), "what is in the image ?", "describe a cat"
    [m] = attributor.attribute([image], [query], suffixes=[suffix])
    task = straightforward_pass(attributor, image, f"{query} {suffix}")
    general = straightforward_pass(attributor, image, f"{config.general} {suffix}")
    expected = np.zeros(task.shape[-1])
    for s in range(min(len(task), len(general))):
        if steps == "first" and s > 0:
            break
        weight = 1.0 if steps == "first" else s + 1.0
        for layer in range(task.shape[1]):
            expected += weight * task[s, layer] / (general[s, layer] + config.epsilon)
    [t] = attributor.inner.token_attention([image], [query], suffixes=[suffix])
    np.testing.assert_allclose(m.raw, t.layout.gather(expected), rtol=1e-5, atol=0)
    assert m.parts["selection"] is m.raw and 0.0 <= m.grid.min() and m.grid.max() == 1.0


def test_the_task_and_general_passes_run_as_one_batch_and_the_general_pass_is_cached(monkeypatch):
    import attnprompt.attribution.vlm_attention as vlm_attention

    attributor = ContrastiveAttributor(fresh("llava"), CarveConfig.from_preset(max_new_tokens=3))
    calls = []
    real = vlm_attention.generate

    def counting(vlm, requests, **kw):
        calls.append([r.prompt for r in requests])
        return real(vlm, requests, **kw)

    monkeypatch.setattr(vlm_attention, "generate", counting)
    image = vb.random_image(60, 40, 1)
    first = attributor.attribute([image], ["what is in the image ?"])[0]
    assert calls == [["what is in the image ?", "Write a general description of the image."]]
    assert attributor.cache_info() == {"hits": 0, "misses": 1, "size": 1}
    same_pixels = Image.fromarray(np.asarray(image).copy())  # another object, the same picture
    second = attributor.attribute([same_pixels, same_pixels], ["describe a cat", "what is in the image ?"])
    assert calls[1] == ["describe a cat", "what is in the image ?"]  # no general pass: it was cached
    assert attributor.cache_info() == {"hits": 2, "misses": 1, "size": 1}
    np.testing.assert_allclose(second[1].raw, first.raw, rtol=1e-6)  # batched differently: float noise only
    attributor.attribute([image], ["what is in the image ?"], suffixes=["yes or no ?"])  # another suffix: recomputed
    assert attributor.cache_info()["misses"] == 2 and len(calls[2]) == 2


def test_a_call_with_more_images_than_the_cache_holds_uses_every_general_pass():
    attributor = ContrastiveAttributor(fresh("llava"), CarveConfig.from_preset(max_new_tokens=2), cache_size=1)
    images = [vb.random_image(60, 40, seed) for seed in (1, 2, 3)]
    maps = attributor.attribute(images, ["what is in the image ?"] * 3)
    assert attributor.cache_info() == {"hits": 0, "misses": 3, "size": 1}  # the last one kept
    fresh_cache = ContrastiveAttributor(attributor.inner.vlm, attributor.config)
    alone = fresh_cache.attribute(images[:1], ["what is in the image ?"])
    np.testing.assert_allclose(maps[0].raw, alone[0].raw, rtol=1e-5)  # its own general pass, not evicted


def test_contrast_weights_and_pairs_steps():
    task = np.ones((3, 2, 4))
    general = np.full((2, 2, 4), 0.5)
    np.testing.assert_allclose(contrast(task, general, epsilon=0.0), np.full(4, (1 + 2) * 2 * 2.0))  # 2 paired steps
    np.testing.assert_allclose(contrast(task, general, steps="first", epsilon=0.0), np.full(4, 4.0))


# -- regions ----------------------------------------------------------------------------------------


def two_blobs(shape=(50, 90)) -> np.ndarray:
    """A faint large blob, a bright small one, on a gentle gradient (so no ties at zero)."""
    h, w = shape
    heat = np.linspace(0.0, 0.01, h * w).reshape(h, w)
    heat[5:25, 5:35] += 1.0    # 600 px, sum ≈ 600
    heat[35:40, 70:75] += 50.0  # 25 px, sum ≈ 1250
    return heat


BLOBS = 625 / (50 * 90)  # the fraction of the pixels the two blobs cover


def test_regions_on_a_hand_made_map():
    heat = two_blobs()
    mask = top_mask(heat, 0.2)
    assert 0.19 <= mask.mean() <= 0.21
    labels, n = components(top_mask(heat, BLOBS))
    assert n == 2
    by_attention = select_components(heat, labels, n, "attention", min_regions=1)
    by_size = select_components(heat, labels, n, "size", min_regions=1)
    assert bounding_box(by_attention) == (70, 35, 75, 40) and bounding_box(by_size) == (5, 5, 35, 25)
    both = select_components(heat, labels, n, "attention", min_regions=3)  # max(3, ⌊0.2·2⌋) = 3 ≥ 2: all
    assert bounding_box(both) == (5, 5, 75, 40)
    small = select_components(heat, labels, n, "remove-small", min_size=0.05)  # 25 px < 5 % of 625: removed
    assert bounding_box(small) == (5, 5, 35, 25)


def test_ties_and_an_all_equal_map_keep_everything_and_diagonals_do_not_connect():
    assert top_mask(np.full((4, 6), 0.3), 0.2).all()
    assert bounding_box(np.zeros((4, 6), bool)) == (0, 0, 6, 4)
    diagonal = np.eye(3, dtype=bool)
    assert components(diagonal)[1] == 3  # 4-connectivity, as scipy's default (and CARVE)


def test_the_crop_of_a_non_square_image_is_its_box_masked_and_upscaled():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(1, 255, (50, 90, 3), dtype=np.uint8))
    heat = two_blobs()
    r = select_regions(heat, image, RegionConfig.from_preset(top=BLOBS, min_regions=1))
    # 5×5 scaled by max(90/5, 50/5) = 18 would be 8,100 pixels; capped at the original's 4,500: 67×67
    assert r.box == (70, 35, 75, 40) and r.crop.size == (67, 67)
    keep = select_regions(heat, image, RegionConfig.from_preset(top=BLOBS, min_regions=2, upscale=False))
    assert keep.box == (5, 5, 75, 40) and keep.crop.size == (70, 35)
    crop = np.asarray(keep.crop)
    assert (crop[0, 0] == np.asarray(image)[5, 5]).all() and (crop[25:30, 40:60] == 0).all()  # outside: black
    kept = select_regions(heat, image, RegionConfig.from_preset(top=BLOBS, min_regions=2, upscale=False,
                                                                keep_outside=True))
    assert np.array_equal(np.asarray(kept.crop), np.asarray(image.crop((5, 5, 75, 40))))


def test_vicrops_window_is_a_square_on_the_strongest_place_kept_inside_the_image():
    grid = np.zeros((24, 32))
    grid[20:23, 28:31] = 1.0  # near the bottom-right corner
    box = window_box(grid, (640, 480), 112)
    x0, y0, x1, y1 = box
    assert x1 - x0 == y1 - y0 == 112 and x1 <= 640 and y1 <= 480
    assert x0 <= 28 * 20 and x1 >= 31 * 20 and y0 <= 20 * 20 and y1 >= 23 * 20  # it holds the spot
    assert window_box(grid, (100, 80), 336) == (0, 0, 100, 80)  # even the smallest window covers the map
    with pytest.raises(InputError, match="at least one window ratio"):
        window_box(grid, (640, 480), 112, ratios=())


# -- crops as a visual prompt ----------------------------------------------------------------------------


class Recorder:
    from attnprompt.backends.base import Backend as _Base

    class Impl(_Base):
        name = "recorder"

        def __init__(self, max_images=None):
            self.max_images, self.calls = max_images, []

        def answer(self, requests):
            from attnprompt.types import Answer

            self.calls.append(list(requests))
            return [Answer(f"{len(r.images)} image(s)") for r in requests]


@pytest.mark.parametrize("form", ["overlay", "crop", "both"])
def test_every_map_can_crop(tiny_clip_dir, form):
    from attnprompt.api import build_strategy
    from attnprompt.types import Sample

    rec = Recorder.Impl()
    strategy = build_strategy("api", rec, model=str(tiny_clip_dir), form=form)
    sample = Sample(vb.random_image(90, 50, 2), "what is in the image ?")
    [r] = strategy.run([sample])
    [ann] = r.steps[0].annotations
    sent = rec.calls[0][0].images
    if form == "overlay":
        assert sent == (ann.image,) and ann.crop is None and ann.box is None
    else:
        first = sample.images[0] if form == "crop" else ann.image
        assert sent == (first, ann.crop) and ann.crop is not None
        x0, y0, x1, y1 = ann.box
        assert 0 <= x0 < x1 <= 90 and 0 <= y0 < y1 <= 50
        assert r.config["regions"]["rule"] == "attention" and ann.config["box"] == list(ann.box)


def test_carve_sends_the_original_and_the_crop_or_the_crop_alone(llava_dir):
    from attnprompt.api import build_strategy
    from attnprompt.types import Sample

    sample = Sample(vb.random_image(80, 60, 4), "what is in the image ?", suffix="describe a cat")
    rec = Recorder.Impl()
    [r] = build_strategy("carve", rec, model=str(llava_dir), map_max_new_tokens=3).run([sample])
    [ann] = r.steps[0].annotations
    assert rec.calls[0][0].images == (sample.images[0], ann.crop) and r.config["map"]["method"] == "carve"
    assert rec.calls[0][0].prompt == "what is in the image ? describe a cat"
    one = Recorder.Impl(max_images=1)
    [r] = build_strategy("carve", one, model=str(llava_dir), map_max_new_tokens=3).run([sample])
    assert one.calls[0][0].images == (r.steps[0].annotations[0].crop,)
    assert r.steps[0].detail["images"] == "the crop alone: recorder takes one image"


def test_the_vicrop_preset_reads_the_prefill_and_crops_with_its_window(llava_dir):
    from attnprompt.api import annotate

    ann = annotate(vb.random_image(120, 80, 5), "what is in the image ?", method="carve", model=str(llava_dir),
                   preset="vicrop", regions=True)
    assert ann.config["steps"] == "first" and ann.config["regions"]["rule"] == "window"
    x0, y0, x1, y1 = ann.box
    assert ann.crop.size == (x1 - x0, y1 - y0)  # not upscaled, not masked


def test_cli_annotate_with_carve_writes_the_map_and_the_crop_and_ask_answers(tmp_path, capsys):
    from attnprompt.cli import main
    from attnprompt.shapes import make_scene

    make_scene(7, n_objects=5, size=320).image.save(tmp_path / "scene.png")
    out, heat, crop = tmp_path / "a.png", tmp_path / "h.npy", tmp_path / "crop.png"
    assert main(["annotate", str(tmp_path / "scene.png"), "What colour is the circle?", "--method", "carve",
                 "--model", "shapes", "-o", str(out), "--heatmap", str(heat), "--crop", str(crop)]) == 0
    assert np.load(heat).shape == (320, 320) and Image.open(crop).size[0] >= 320
    capsys.readouterr()
    assert main(["ask", str(tmp_path / "scene.png"), "What colour is the circle?", "--vlm", "shapes", "--strategy",
                 "carve"]) == 0
    assert capsys.readouterr().out.strip() == "green"

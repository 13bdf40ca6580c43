"""The newer VLM families (issue 23): Qwen3-VL, InternVL3, Gemma 3, Idefics3, SmolVLM and LLaVA-OneVision.

For each, on tiny random models built in code (tests/builders.py) — the fast capture's equality with eager
``output_attentions`` step by step, and the paper map's with the eager mean, are tests/test_vlm_attention.py's,
run on every family — a planted attention peak lands on its region of a non-square image
(across a tile boundary for the tiled families, on the stitched grid and on the thumbnail); the capture
leaves nothing behind; the local backend answers through the chat template, with several images; CARVE
returns a map of the image's size.
"""

from __future__ import annotations

import builders as vb
import numpy as np
import pytest
import torch
from PIL import Image

from attnprompt.attribution import vlm_attention
from attnprompt.attribution.configs import VlmConfig
from attnprompt.attribution.vlm_attention import VlmAttributor
from attnprompt.capture import AttentionCapture
from attnprompt.errors import ProcessorMismatchError
from attnprompt.families import FAMILIES as REGISTRY
from attnprompt.families import family_of
from attnprompt.families.gemma3 import gemma3_layout
from attnprompt.models import LoadedVlm, chat_prompt, generate, load_vlm
from attnprompt.render import upsample
from attnprompt.types import Request

#: The families added after the first four (tests/test_vlm_attention.py covers those in more detail).
FAMILIES = tuple(t for t in REGISTRY.names() if t not in vb.FAMILIES)
#: Tiled families: the image becomes tiles plus a thumbnail (or a base image), stitched into one map.
TILED = ("internvl", "idefics3", "smolvlm", "llava_onevision")


fresh = vb.loaded  # an uncached model (tests edit weights)


#: Every model_type api-vlm supports: the answering, multi-image and CARVE tests run on all of them.
ALL_FAMILIES = tuple(REGISTRY.names())


@pytest.fixture(scope="module")
def new_dirs(tmp_path_factory):
    """{family: path}: a saved tiny checkpoint of every family (model, image processor, tokenizer, template)."""
    root = tmp_path_factory.mktemp("new-vlms")
    dirs = {f: vb.save(f, root / f, seed=i) for i, f in enumerate(FAMILIES)}
    dirs.update({f: vb.save(f, root / f, seed=i) for i, f in enumerate(vb.FAMILIES)})
    return dirs


def inputs_for(vlm: LoadedVlm, images, prompts):
    a = VlmAttributor(vlm, VlmConfig.from_preset())
    requests = [a.request(i, p) for i, p in zip(images, prompts)]
    texts = [chat_prompt(vlm.processor, r) for r in requests]
    return vlm.processor(text=texts, images=[[r.images[0]] for r in requests], padding=True, return_tensors="pt")


def _image_token_embeddings(attributor: VlmAttributor, image: Image.Image) -> tuple[torch.Tensor, dict]:
    inputs = inputs_for(attributor.vlm, [image], ["what is in the image ?"])
    return vb.image_token_embeddings(attributor.model, inputs, attributor.image_token_id), inputs


#: (family, image (w, h), grid, where (fractions), must the region straddle tiles?)
PLANTED = [
    ("qwen3_vl", (150, 100), "highres", (0.2, 0.3), False),
    ("qwen3_vl", (90, 170), "highres", (0.7, 0.75), False),
    ("gemma3", (150, 90), "highres", (0.2, 0.3), False),
    ("gemma3", (60, 110), "highres", (0.75, 0.7), False),
    # InternVL: 150×90 → 3×2 tiles (boundaries at x = ⅓, ⅔ and y = ½); 60×110 → 1×2 (boundary at y = ½)
    ("internvl", (150, 90), "highres", (0.2, 0.3), False),
    ("internvl", (150, 90), "highres", (1 / 3, 0.5), True),
    ("internvl", (60, 110), "highres", (0.3, 0.5), True),
    ("internvl", (150, 90), "base", (0.7, 0.3), False),
    # Idefics3 / SmolVLM: 150×90 → 168×112 → 3×2 tiles (boundaries at x = ⅓, ⅔ and y = ½)
    ("idefics3", (150, 90), "highres", (0.2, 0.3), False),
    ("idefics3", (150, 90), "highres", (1 / 3, 0.5), True),
    ("idefics3", (60, 110), "highres", (0.5, 0.5), True),
    ("idefics3", (150, 90), "base", (0.7, 0.6), False),
    ("smolvlm", (150, 90), "highres", (2 / 3, 0.3), True),
    ("smolvlm", (150, 90), "base", (0.3, 0.3), False),
    # OneVision: 150×90 picks the 56×84 canvas (2×3 tiles of 28), unpadded; 60×110 the 84×56 one
    ("llava_onevision", (150, 90), "highres", (0.2, 0.3), False),
    ("llava_onevision", (150, 90), "highres", (2 / 3, 0.5), False),
    ("llava_onevision", (60, 110), "highres", (0.5, 2 / 3), False),
    ("llava_onevision", (150, 90), "base", (0.7, 0.6), False),
]


@pytest.mark.parametrize("family,size,grid,where,straddles", PLANTED)
def test_planted_attention_peak_lands_on_its_image_region(family, size, grid, where, straddles, monkeypatch):
    """Ground truth from the model itself: perturb a pixel region, see which image tokens change (vision made
    local), plant all attention on those tokens; the heatmap must peak there — on the grid stitched from the
    tiles (also when the region straddles a tile boundary) and on the thumbnail / base grid."""
    vlm = fresh(family)
    vb.make_vision_local(vlm.model)
    attributor = VlmAttributor(vlm, VlmConfig.from_preset(max_new_tokens=2, kernel=1, enhance=0.0, grid=grid))
    w, h = size
    base = np.asarray(vb.random_image(w, h, 5)).copy()
    cx, cy = min(int(where[0] * w), w - 1), min(int(where[1] * h), h - 1)
    r = max(2, min(w, h) // 20)
    moved = base.copy()
    moved[cy - r : cy + r + 1, cx - r : cx + r + 1] = 255 - moved[cy - r : cy + r + 1, cx - r : cx + r + 1]
    e0, inputs = _image_token_embeddings(attributor, Image.fromarray(base))
    e1, _ = _image_token_embeddings(attributor, Image.fromarray(moved))
    changed = ((e0 - e1).abs().amax(-1) > 1e-6).nonzero().flatten().tolist()
    assert changed, "the probe must find the tokens of the perturbed region"
    layouts = attributor._layouts(len(e0), 0, inputs, (0, 0, 1, 1), (h, w))
    if straddles:
        stitched = layouts[-1]
        side = layouts[0].shape[0]
        hit = stitched.index[np.isin(stitched.index, changed)]
        tiles = {int(i) // (side * side) for i in hit}
        assert len(tiles) >= 2, "the region must cross a tile boundary for this case to mean something"

    vb.plant_attention(monkeypatch, changed)
    [m], _ = attributor.run([Image.fromarray(base)], ["what is in the image ?"])
    assert m.grid.shape == (layouts[-1] if grid == "highres" else layouts[0]).shape
    heat = upsample(m.grid, (w, h), extent=m.extent, resample="nearest")
    assert heat[cy, cx] == pytest.approx(1.0)  # the perturbed pixel is under a planted cell
    ys, xs = np.nonzero(heat > 0.5)
    cell_w = w / m.grid.shape[1] / (m.extent[2] - m.extent[0])
    cell_h = h / m.grid.shape[0] / (m.extent[3] - m.extent[1])
    assert xs.min() >= cx - r - 2 * cell_w and xs.max() <= cx + r + 2 * cell_w
    assert ys.min() >= cy - r - 2 * cell_h and ys.max() <= cy + r + 2 * cell_h
    assert heat.mean() < 0.6  # not the whole image


def test_gemma3_pan_and_scan_crops_stitch_beside_each_other(monkeypatch):
    """Gemma 3 with pan-and-scan: the whole image's 4×4 grid, then crops side by side along the longer side;
    a region in the second crop lands there on the stitched grid, and on the whole-image grid too."""
    vlm = fresh("gemma3", pan_and_scan=True)
    vb.make_vision_local(vlm.model)
    w, h = 180, 60
    base = np.asarray(vb.random_image(w, h, 5)).copy()
    cx, cy, r = 95, 30, 4  # the second of three 60-px crops
    moved = base.copy()
    moved[cy - r : cy + r + 1, cx - r : cx + r + 1] = 255 - moved[cy - r : cy + r + 1, cx - r : cx + r + 1]
    for grid in ("highres", "base"):
        attributor = VlmAttributor(vlm, VlmConfig.from_preset(max_new_tokens=2, kernel=1, enhance=0.0, grid=grid))
        e0, inputs = _image_token_embeddings(attributor, Image.fromarray(base))
        e1, _ = _image_token_embeddings(attributor, Image.fromarray(moved))
        assert len(e0) == 16 * 4  # the image and 3 crops
        changed = ((e0 - e1).abs().amax(-1) > 1e-6).nonzero().flatten().tolist()
        with monkeypatch.context() as mp:
            mp.setattr(vlm_attention, "image_span_attention",
                       lambda s, p, v, hit=changed: torch.zeros(len(p)).index_fill_(0, torch.tensor(hit), 1.0))
            [m], _ = attributor.run([Image.fromarray(base)], ["what is in the image ?"])
        assert m.grid.shape == ((4, 12) if grid == "highres" else (4, 4))
        heat = upsample(m.grid, (w, h), extent=m.extent, resample="nearest")
        assert heat[cy, cx] == pytest.approx(1.0)
        xs = np.nonzero(heat > 0.5)[1]
        assert xs.min() >= cx - r - 2 * w / m.grid.shape[1] and xs.max() <= cx + r + 2 * w / m.grid.shape[1]
    with pytest.raises(ProcessorMismatchError, match="gemma3: the prompt holds 20 image tokens"):
        gemma3_layout(20, vlm.model.config, (60, 180))


def test_onevision_pools_a_grid_larger_than_its_anyres_max():
    """LLaVA-OneVision shrinks a high-res grid larger than anyres_max_N tiles; the layout follows (and the map
    still covers the image)."""
    vlm = fresh("llava_onevision", vision_aspect_ratio="anyres_max_1")
    img = vb.random_image(110, 110, 2)  # the 112×112 canvas: 4×4 tiles of 4×4 → 16×16 cells, pooled to 4×4
    attributor = VlmAttributor(vlm, VlmConfig.from_preset(max_new_tokens=2, kernel=1))
    [m], _ = attributor.run([img], ["what is in the image ?"])
    assert m.grid.shape == (4, 4) and m.extent == (0.0, 0.0, 1.0, 1.0)


@pytest.mark.parametrize("family", FAMILIES)
def test_capture_is_removed_after_use(family):
    """Nothing stays behind: no watched modules, the attention implementation restored, no hooks, no new
    registrations — also when the block raises."""
    from transformers import AttentionInterface

    vlm = fresh(family)
    model = vlm.model
    inputs = inputs_for(vlm, [vb.random_image(90, 50)], ["what is in the image ?"])
    plain = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    with AttentionCapture(model, [1]):
        pass  # registers the implementation once
    registered = len(AttentionInterface._global_mapping)
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    for _ in range(3):
        with AttentionCapture(model, [0, 2]) as cap:
            out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
        assert torch.equal(out, plain) and len(cap.scores[2]) == 3
    vb.assert_capture_left_nothing(model, registered, hooks)


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_answering_through_the_local_backend_with_one_and_several_images(family, new_dirs):
    """A saved checkpoint loads (its processor without a video processor), and the local backend answers
    through the chat template: one image, two images in one turn, and a batch of both."""
    from attnprompt.backends.local import LocalVLM

    vlm = load_vlm(str(new_dirs[family]), device="cpu")
    assert vlm.family == family_of(family).name
    backend = LocalVLM(vlm, batch_size=4)
    one = Request.single(vb.random_image(90, 50, 0), "what is in the image ?", max_new_tokens=4)
    two = Request.single([vb.random_image(90, 50, 1), vb.random_image(40, 70, 2)], "which is red ?",
                         max_new_tokens=4)
    two_b = Request.single([vb.random_image(70, 70, 3), vb.random_image(50, 90, 4)], "describe a cat",
                           max_new_tokens=4)
    answers = backend.answer([one, two, two_b])
    assert all(a.ok for a in answers), [a.error for a in answers]
    assert chat_prompt(vlm.processor, two).count(_image_marker(family)) == 2  # the template placed both images
    out = generate(vlm, [two])
    assert out.texts == [answers[1].text]
    image_id = VlmAttributor(vlm).image_token_id

    def n_image(request):
        return int((generate(vlm, [request]).inputs["input_ids"][0] == image_id).sum())

    if family == "llava_onevision":  # several images: each one base grid (not tiled) and a newline
        expected = 2 * (16 + 1)
    else:
        expected = sum(n_image(Request.single(i, "which is red ?", max_new_tokens=1)) for i in two.images)
    assert n_image(two) == expected


def _image_marker(family: str) -> str:
    return {"llava": "<image>", "llava_next": "<image>", "qwen2_vl": "<|vision_start|>",
            "qwen2_5_vl": "<|vision_start|>", "qwen3_vl": "<|vision_start|>", "internvl": "<IMG_CONTEXT>",
            "gemma3": "<start_of_image>", "idefics3": "<image>", "smolvlm": "<image>",
            "llava_onevision": "<image>"}[family]


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_carve_returns_a_map_of_the_image_size(family, new_dirs):
    """CARVE and ViCrop read the same capture: a contrastive map on the family's grid and a heatmap of the
    image's size, with a crop inside the image."""
    from attnprompt.api import annotate

    img = vb.random_image(150, 90, 5)
    ann = annotate(img, "what is in the image ?", method="carve", model=str(new_dirs[family]), max_new_tokens=3,
                   regions=True)
    assert ann.config["method"] == "carve" and ann.config["family"] == family_of(family).name
    assert ann.heatmap.shape == (90, 150) and np.isfinite(ann.heatmap).all() and ann.heatmap.max() > 0
    x0, y0, x1, y1 = ann.box
    assert 0 <= x0 < x1 <= 150 and 0 <= y0 < y1 <= 90
    vicrop = annotate(img, "what is in the image ?", method="carve", model=str(new_dirs[family]), preset="vicrop",
                      regions=True)
    assert vicrop.config["steps"] == "first" and vicrop.heatmap.shape == (90, 150)


@pytest.mark.parametrize("family", ["internvl", "idefics3"])
def test_a_processor_that_disagrees_with_the_model_is_a_clear_error(family):
    """The layout checks the prompt's image tokens against the model config and names both."""
    vlm = fresh(family)
    attributor = VlmAttributor(vlm, VlmConfig.from_preset(max_new_tokens=1))
    inputs = inputs_for(vlm, [vb.random_image(150, 90)], ["what is in the image ?"])
    with pytest.raises(ProcessorMismatchError, match=f"{family}: the prompt holds 7 image tokens"):
        attributor._layouts(7, 0, inputs, (0, 0, 1, 1), (90, 150))

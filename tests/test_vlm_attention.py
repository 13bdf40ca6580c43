"""API-VLM: the fast capture against eager attentions, grid mapping per family, hook hygiene."""

from __future__ import annotations

import builders as vb
import numpy as np
import pytest
import torch
from PIL import Image

from attnprompt.attribution.configs import VlmConfig
from attnprompt.attribution.vlm_attention import VlmAttributor, image_span_attention
from attnprompt.capture import CAPTURE_IMPLEMENTATION, AttentionCapture
from attnprompt.errors import InputError, UnsupportedModelError
from attnprompt.families import FAMILIES
from attnprompt.models import LoadedVlm, chat_prompt, load_vlm

#: The exactness tests run on every registered model_type (tests/test_families.py has the rest).
ALL_FAMILIES = FAMILIES.names()
fresh = vb.loaded  # an uncached model (some tests edit weights)


def inputs_for(vlm: LoadedVlm, images, prompts):
    a = VlmAttributor(vlm, VlmConfig.from_preset())
    requests = [a.request(i, p) for i, p in zip(images, prompts)]
    return vlm.processor(text=[chat_prompt(vlm.processor, r) for r in requests],
                         images=[[r.images[0]] for r in requests], padding=True, return_tensors="pt")


@pytest.mark.parametrize("family", ALL_FAMILIES)
@pytest.mark.parametrize("batch", [1, 2])
def test_capture_equals_eager_output_attentions_step_by_step(family, batch):
    """The SDPA capture reproduces eager `output_attentions` rows (≤1e-5) at every step and layer,
    including a left-padded batch, and leaves the generated tokens unchanged."""
    vlm = fresh(family)
    model = vlm.model
    # sizes whose prompts differ in length (so the batch is padded) for each family's processor
    sizes = [(90, 50), (40, 70)] if family in vb.FAMILIES else [(150, 90), (60, 110)]
    images = [vb.random_image(w, h, i) for i, (w, h) in enumerate(sizes)][:batch]
    prompts = ["what is in the image ?", "describe the red star on the left of the picture please ? yes"][:batch]
    inputs = inputs_for(vlm, images, prompts)
    if batch == 2:
        assert (inputs["attention_mask"] == 0).any(), "the batch must be padded for this test to mean something"
    n_layers = model.config.get_text_config().num_hidden_layers
    with AttentionCapture(model, range(n_layers)) as cap:
        ours = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    model.set_attn_implementation({"text_config": "eager"})
    try:
        ref = model.generate(
            **inputs, max_new_tokens=6, do_sample=False, output_attentions=True, return_dict_in_generate=True
        )
    finally:
        model.set_attn_implementation({"text_config": "sdpa"})
    assert torch.equal(ours, ref.sequences)
    assert len(ref.attentions) == len(cap.scores[0]) == ours.shape[1] - inputs["input_ids"].shape[1]
    for layer in range(n_layers):
        for step, eager_step in enumerate(ref.attentions):
            expected = eager_step[layer][:, :, -1, :].float()
            got = torch.softmax(cap.scores[layer][step], dim=-1)
            assert got.shape == expected.shape
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
            if batch == 2 and got.shape[-1] >= inputs["attention_mask"].shape[1]:  # not a sliding-window layer
                pads = inputs["attention_mask"] == 0
                assert (
                    float(got[:, :, : pads.shape[1]][pads[:, None, :].expand(-1, got.shape[1], -1)].abs().max()) == 0.0
                )


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_paper_map_equals_mean_of_eager_attentions(family):
    """End to end: the `paper` raw grid is the mean over heads and steps of the eager attention
    from each step's query to the image tokens, arranged by the layout."""
    vlm = fresh(family)
    img = vb.random_image(150, 90, 3)
    attributor = VlmAttributor(vlm, VlmConfig.from_preset("paper", max_new_tokens=4, kernel=1, layers=1))
    [m], _ = attributor.run([img], ["what is in the image ?"])
    inputs = inputs_for(vlm, [img], ["what is in the image ?"])
    model = vlm.model
    model.set_attn_implementation({"text_config": "eager"})
    try:
        ref = model.generate(
            **inputs, max_new_tokens=4, do_sample=False, output_attentions=True, return_dict_in_generate=True
        )
    finally:
        model.set_attn_implementation({"text_config": "sdpa"})
    positions = (inputs["input_ids"][0] == attributor.image_token_id).nonzero().flatten()
    gen = ref.sequences[0, inputs["input_ids"].shape[1] :].tolist()
    n = next((i + 1 for i, t in enumerate(gen) if t == 3), len(gen))
    values = torch.stack([a[1][0, :, -1, positions].mean(0) for a in ref.attentions[:n]]).mean(0).numpy()
    layouts = attributor._layouts(len(positions), 0, inputs, (0, 0, 1, 1), (90, 150))
    np.testing.assert_allclose(m.raw, layouts[-1].gather(values), rtol=1e-4, atol=1e-7)


def _image_token_embeddings(attributor: VlmAttributor, image: Image.Image) -> torch.Tensor:
    inputs = inputs_for(attributor.vlm, [image], ["what is in the image ?"])
    return vb.image_token_embeddings(attributor.model, inputs, attributor.image_token_id)


@pytest.mark.parametrize(
    "family,size,grid",
    [
        ("llava", (90, 50), "highres"),
        ("llava", (40, 96), "highres"),
        ("llava_next", (90, 50), "highres"),
        ("llava_next", (40, 90), "highres"),
        ("llava_next", (90, 50), "base"),
        ("qwen2_vl", (150, 100), "highres"),
        ("qwen2_vl", (70, 130), "highres"),
        ("qwen2_5_vl", (150, 100), "highres"),
    ],
)
@pytest.mark.parametrize("where", [(0.2, 0.3), (0.75, 0.7)])
def test_planted_attention_peak_lands_on_its_image_region(family, size, grid, where, monkeypatch):
    """Ground truth from the model itself: perturb a pixel region, see which image tokens change
    (vision made local), plant all attention on those tokens; the heatmap must peak there."""
    vlm = fresh(family)
    vb.make_vision_local(vlm.model)
    attributor = VlmAttributor(vlm, VlmConfig.from_preset(max_new_tokens=2, kernel=1, enhance=0.0, grid=grid))
    w, h = size
    base = np.asarray(vb.random_image(w, h, 5)).copy()
    cx, cy = int(where[0] * w), int(where[1] * h)
    r = max(2, min(w, h) // 20)
    moved = base.copy()
    moved[cy - r : cy + r + 1, cx - r : cx + r + 1] = 255 - moved[cy - r : cy + r + 1, cx - r : cx + r + 1]
    e0 = _image_token_embeddings(attributor, Image.fromarray(base))
    e1 = _image_token_embeddings(attributor, Image.fromarray(moved))
    changed = ((e0 - e1).abs().amax(-1) > 1e-6).nonzero().flatten().tolist()
    assert changed, "the probe must find the tokens of the perturbed region"

    vb.plant_attention(monkeypatch, changed)
    [m], _ = attributor.run([Image.fromarray(base)], ["what is in the image ?"])
    from attnprompt.render import upsample

    heat = upsample(m.grid, (w, h), extent=m.extent, resample="nearest")
    assert heat[cy, cx] == pytest.approx(1.0)  # the perturbed pixel is under a planted cell
    ys, xs = np.nonzero(heat > 0.5)
    # and the planted cells stay near it: within one grid cell (in image pixels) of the region
    cell_w, cell_h = (
        w / m.grid.shape[1] / (m.extent[2] - m.extent[0]),
        h / m.grid.shape[0] / (m.extent[3] - m.extent[1]),
    )
    assert xs.min() >= cx - r - 2 * cell_w and xs.max() <= cx + r + 2 * cell_w
    assert ys.min() >= cy - r - 2 * cell_h and ys.max() <= cy + r + 2 * cell_h
    assert heat.mean() < 0.6  # not the whole image


def test_capture_is_removed_after_use_and_does_not_leak():
    vlm = fresh("llava")
    model = vlm.model
    inputs = inputs_for(vlm, [vb.random_image(60, 40)], ["what is in the image ?"])
    plain = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    from transformers import AttentionInterface

    registered = len(AttentionInterface._global_mapping)
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    for _ in range(100):
        with AttentionCapture(model, [1]) as cap:
            out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
        assert torch.equal(out, plain) and len(cap.scores[1]) == 3
    assert model.config.vision_config._attn_implementation == "sdpa"
    vb.assert_capture_left_nothing(model, registered, hooks)


def test_only_watched_layers_record_and_vision_is_untouched():
    vlm = fresh("qwen2_vl")
    model = vlm.model
    inputs = inputs_for(vlm, [vb.random_image(60, 40)], ["what is in the image ?"])
    with AttentionCapture(model, [2]) as cap:
        assert model.config.get_text_config()._attn_implementation == CAPTURE_IMPLEMENTATION
        assert model.config.vision_config._attn_implementation == "sdpa"
        model.generate(**inputs, max_new_tokens=2, do_sample=False)
    assert list(cap.scores) == [2] and len(cap.scores[2]) == 2
    with pytest.raises(RuntimeError, match="no language-model attention module found for layer"):
        with AttentionCapture(model, [7]):
            pass


def test_image_span_attention_variants():
    scores = torch.tensor([[0.0, 1.0, 2.0, 0.5], [1.0, 1.0, -1.0, 0.0]])
    pos = torch.tensor([1, 2])
    paper = image_span_attention(scores, pos, "paper")
    ref = image_span_attention(scores, pos, "reference")
    torch.testing.assert_close(paper, torch.softmax(scores, -1)[:, 1:3].mean(0))
    torch.testing.assert_close(ref, torch.softmax(scores[:, 1:3], -1).mean(0))
    assert float(ref.sum()) == pytest.approx(1.0) and float(paper.sum()) < 1.0


def test_config_and_loading_errors(vlm_dirs, tiny_clip_dir):
    a = VlmAttributor.from_pretrained(str(vlm_dirs["llava"]), device="cpu", layers=0.5)
    assert a.layers == (2,) and a.describe()["family"] == "llava" and a.describe()["variant"] == "reference"
    assert VlmAttributor.from_pretrained(str(vlm_dirs["llava"]), device="cpu", layers="-1").layers == (2,)
    with pytest.raises(InputError, match="variant must be one of reference, paper"):
        VlmConfig.from_preset(variant="both")
    with pytest.raises(InputError, match="max_new_tokens must be an integer"):
        VlmConfig.from_preset(max_new_tokens=0)
    with pytest.raises(UnsupportedModelError, match="is a 'clip' checkpoint, not a vision-language model"):
        load_vlm(str(tiny_clip_dir))
    assert load_vlm(str(vlm_dirs["qwen2_vl"]), device="cpu").family == "qwen2_vl"


def test_annotate_with_api_vlm_on_every_family(vlm_dirs):
    import attnprompt

    for family, d in vlm_dirs.items():
        img = vb.random_image(90, 50)
        ann = attnprompt.annotate(img, "what color is it ?", method="api-vlm", model=str(d), max_new_tokens=3)
        assert ann.image.size == (90, 50) and ann.heatmap.shape == (50, 90)
        assert (
            ann.config["method"] == "api-vlm" and ann.config["family"] == family and ann.config["max_new_tokens"] == 3
        )


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_the_map_is_read_from_the_generation_that_answers(family):
    """One generation path: the attribution pass's greedy answers are what the answering backend
    says to the same requests, batched and left-padded alike."""
    from attnprompt.backends.local import LocalVLM

    vlm = fresh(family)
    attributor = VlmAttributor(vlm, VlmConfig.from_preset(max_new_tokens=5))
    images = [vb.random_image(90, 50, 0), vb.random_image(40, 70, 1), vb.random_image(60, 60, 2)]
    queries = ["what is in the image ?", "describe a cat", "is there a red star on the left ?"]
    _, answers = attributor.run(images, queries)
    expected = LocalVLM(vlm, batch_size=1).answer([attributor.request(i, q) for i, q in zip(images, queries)])
    assert answers == [a.text for a in expected]


def test_generation_ends_at_any_end_of_sequence_token():
    """The one end-of-sequence rule: a row ends at the first of the generation config's end tokens
    (a list counts); that token is a step of the map but not part of the answer's text."""
    from attnprompt.models import generate
    from attnprompt.types import Request

    vlm = fresh("llava")
    request = Request.single(vb.random_image(60, 40), "what is in the image ?", max_new_tokens=6)
    free = generate(vlm, [request], capture=[1])
    first = free.tokens[0][0]
    assert free.steps == [len(free.tokens[0])] and len(free.scores[1]) >= free.steps[0]
    vlm.model.generation_config.eos_token_id = [3, first]
    stopped = generate(
        vlm, [request, Request.single(vb.random_image(50, 50, 1), "describe a cat", max_new_tokens=2)], capture=[1]
    )
    assert stopped.tokens[0] == [first] and stopped.steps[0] == 1 and stopped.texts[0] == ""
    assert stopped.steps[1] <= 2

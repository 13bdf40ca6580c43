"""CARVE's passes share their work (issue 40, item 3): the task and general passes over one image encode it once and
prefill the prompt's shared prefix (system and image tokens) once, each row going on from a copy of its KV cache —
on every family, the maps those of the plain batch (the same greedy answers; the contrast equal to float rounding)."""

from __future__ import annotations

import builders
import numpy as np
import pytest
import torch

from attnprompt import models
from attnprompt.attribution.configs import CarveConfig
from attnprompt.attribution.contrastive import ContrastiveAttributor
from attnprompt.types import Request

QUESTIONS = ["red circle", "what is the blue thing here", "star"]
#: Gemma 3's tiny model slides a 24-token window, shorter than its prompts: given one its rows fit in.
OVERRIDES = {"gemma3": {"sliding_window": 512}}


def carve_maps(vlm, share: bool, images, batch_size: int = 4):
    carve = ContrastiveAttributor(vlm, CarveConfig.from_preset(max_new_tokens=4), share_prefix=share,
                                  batch_size=batch_size)
    return carve.attribute(images, QUESTIONS)


@pytest.fixture
def prefills(monkeypatch):
    seen = []
    real = models._prefill
    monkeypatch.setattr(models, "_prefill", lambda *a: seen.append(a[3]) or real(*a))
    return seen


@pytest.mark.parametrize("model_type", sorted(builders.BUILDERS))
def test_carve_maps_with_a_shared_prefix_are_the_plain_batchs(model_type, prefills):
    vlm = builders.loaded(model_type, **OVERRIDES.get(model_type, {}))
    one, two = builders.random_image(96, 64, 1), builders.random_image(64, 64, 2)
    images = [one, two, one]  # two questions about one image, one about another: two groups in the first batch
    plain = carve_maps(vlm, False, images)
    assert prefills == []
    shared = carve_maps(vlm, True, images)
    # rows [one's two tasks, its general pass, two's task], then [two's general pass] alone: one prefix per image
    # in the first batch; the second holds one row and runs as it is
    assert len(prefills) == 2
    for p, s in zip(plain, shared):
        assert s.shape == p.shape and s.extent == p.extent
        assert np.abs(s.raw - p.raw).max() <= 1e-5 * np.abs(p.raw).max()
        assert np.abs(s.grid - p.grid).max() <= 1e-4


def test_the_rows_go_on_from_the_prefix_as_from_their_own_prompt(prefills):
    vlm = builders.loaded("llava")
    image = builders.random_image(80, 80, 4)
    requests = [Request.single(image, q, max_new_tokens=5) for q in ("red", "a much longer question about it")]
    plain = models.generate(vlm, requests, capture=[1])
    shared = models.generate(vlm, requests, capture=[1], share_prefix=True)
    assert len(prefills) == 1 and shared.texts == plain.texts and shared.tokens == plain.tokens
    mask = shared.inputs["attention_mask"].bool()
    # the prefix is column-aligned, the shorter row's own text padded before it (masked), and the image tokens
    # where the captured scores' keys put them
    assert mask[0].sum() == plain.inputs["attention_mask"][0].sum() and not mask[0].all() and mask[1].all()
    for step in range(len(plain.scores[1])):
        p, s = plain.scores[1][step], shared.scores[1][step]
        for b in range(2):
            keep_p, keep_s = torch.isfinite(p[b, 0]), torch.isfinite(s[b, 0])
            assert torch.allclose(torch.softmax(p[b, :, keep_p], -1), torch.softmax(s[b, :, keep_s], -1), atol=1e-6)


def test_nothing_is_shared_when_no_two_rows_show_the_same_image(prefills):
    vlm = builders.loaded("llava")
    requests = [Request.single(builders.random_image(64, 64, s), "red", max_new_tokens=2) for s in (1, 2)]
    inputs, _ = models._batch_inputs(vlm, requests, None)
    assert models.shared_prefix(vlm, requests, inputs) is None and prefills == []
    same = builders.random_image(64, 64, 3)
    assert models.shared_prefix(vlm, [Request.single(same, "red"), Request.single((), "blue")], inputs) is None


def test_a_sliding_window_the_rows_would_outgrow_keeps_the_plain_batch(prefills):
    vlm = builders.loaded("gemma3")  # a 24-token window: its prompts are longer
    image = builders.random_image(64, 64, 5)
    requests = [Request.single(image, q, max_new_tokens=2) for q in ("red", "blue")]
    inputs, _ = models._batch_inputs(vlm, requests, None)
    assert models.shared_prefix(vlm, requests, inputs) is None and prefills == []  # decided before any work


@pytest.mark.parametrize("model_type", ["llava", "gemma3"])
def test_carve_encodes_the_original_once_for_its_map_and_its_answer(model_type, monkeypatch):
    from attnprompt.backends.local import LocalVLM
    from attnprompt.strategies.build import build_strategy

    vlm = builders.loaded(model_type, **OVERRIDES.get(model_type, {}))
    strategy = build_strategy("carve", LocalVLM(vlm), max_new_tokens=3, map_max_new_tokens=3)
    assert strategy.attributor.inner.vlm is vlm  # the map on the answering VLM
    rows: list[int] = []
    hook = vlm.model.base_model.vision_tower.register_forward_hook(
        lambda m, a, k, o: rows.append((a[0] if a else k["pixel_values"]).shape[0]), with_kwargs=True)
    try:
        shared = strategy(builders.random_image(96, 64, 6), "what is red")
        # the map's passes encode the image once (their prefix), the answer only the crop
        assert rows == [1, 1]
        monkeypatch.setattr(type(vlm.family_info), "vision_per_row", False)
        rows.clear()
        again = strategy(builders.random_image(96, 64, 6), "what is red")
        assert rows == [1, 2]  # the answer encodes the original again
    finally:
        hook.remove()
    assert again.text == shared.text and again.annotation.box == shared.annotation.box
    assert "get_image_features" not in vars(vlm.model.base_model)  # the model's own encoder is back


def test_families_laid_out_otherwise_keep_their_encoder():
    vlm = builders.loaded("qwen2_vl")
    assert not vlm.family_info.vision_per_row
    with models.shared_image_features(vlm):
        assert "get_image_features" not in vars(vlm.model.base_model)

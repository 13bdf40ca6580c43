"""The family registry (attnprompt.families): every registered model_type has a tiny builder, each family's
native input side comes from the config its real checkpoints ship (built here in code), and a new family is
one file plus one registry line."""

from __future__ import annotations

import sys
from pathlib import Path

import builders as vb
import numpy as np
import pytest

import attnprompt.families as families
from attnprompt.attribution.configs import VlmConfig
from attnprompt.attribution.vlm_attention import VlmAttributor
from attnprompt.families import FAMILIES, family_names, family_of
from attnprompt.models import LoadedVlm, load_vlm


def test_every_registered_model_type_has_a_tiny_builder_and_no_builder_is_orphaned():
    assert set(FAMILIES.names()) == set(vb.BUILDERS)


def test_registered_names_are_the_ones_configurations_record():
    assert family_of("smolvlm").name == "idefics3"  # released hashes record Idefics3's name for SmolVLM
    assert {"llava", "llava_next", "qwen2_vl", "qwen2_5_vl"} <= set(family_names())
    assert family_of("clip") is None and family_of(None) is None


def _real_configs():
    """model_type → (a config with the values the family's real checkpoints ship, the expected native side)."""
    import transformers as tf

    clip336 = dict(model_type="clip_vision_model", image_size=336, patch_size=14)
    return {
        "llava": (tf.LlavaConfig(vision_config=clip336), 336),  # llava-hf/llava-1.5-7b-hf
        "llava_next": (tf.LlavaNextConfig(vision_config=clip336), 336),  # llava-v1.6-*
        "llava_onevision": (tf.LlavaOnevisionConfig(
            vision_config=dict(model_type="siglip_vision_model", image_size=384, patch_size=14)), 384),
        "internvl": (tf.InternVLConfig(vision_config=dict(image_size=[448, 448], patch_size=[14, 14])), 448),
        "gemma3": (tf.Gemma3Config(vision_config=dict(model_type="siglip_vision_model", image_size=896,
                                                      patch_size=14)), 896),
        "idefics3": (tf.Idefics3Config(vision_config=dict(image_size=364, patch_size=14)), 364),  # Idefics3-8B
        "smolvlm": (tf.SmolVLMConfig(vision_config=dict(image_size=512, patch_size=16)), 512),
        # dynamic resolution: ViCrop's window base for Qwen2.5-VL, whatever the patch size
        "qwen2_vl": (tf.Qwen2VLConfig(), 224),
        "qwen2_5_vl": (tf.Qwen2_5_VLConfig(), 224),
        "qwen3_vl": (tf.Qwen3VLConfig(), 224),
    }


@pytest.mark.parametrize("model_type", FAMILIES.names())
def test_native_side_of_each_family_from_its_real_config(model_type):
    configs = _real_configs()
    assert model_type in configs, f"add {model_type}'s real config to _real_configs"
    config, side = configs[model_type]
    assert config.model_type == model_type
    assert family_of(model_type).native_side(config, None) == side


@pytest.mark.parametrize("model_type", FAMILIES.names())
def test_native_side_of_each_tiny_model_is_its_vision_tile(model_type):
    vlm = vb.loaded(model_type)
    vision = getattr(vlm.model.config, "vision_config", None)
    expected = 224 if model_type.startswith("qwen") else int(np.atleast_1d(vision.image_size)[0])
    assert vlm.family_info.native_side(vlm.model.config, vlm.processor) == expected


def test_the_shapes_vlm_sees_128_pixels():
    vlm = load_vlm("shapes")
    assert vlm.family_info.native_side(vlm.model.config, vlm.processor) == 128


def test_a_new_family_is_one_file_and_one_registry_line(tmp_path, monkeypatch):
    """A family written from LLaVA's file under another name: registering its file is all api-vlm needs,
    and its maps equal LLaVA's on the same model."""
    source = (Path(families.__file__).parent / "llava.py").read_text()
    # outside the package its relative imports become absolute ones
    source = source.replace("from ..", "from attnprompt.").replace("from .", "from attnprompt.families.")
    source += '\nMY_LLAVA = Llava("my_llava", "LlavaForConditionalGeneration")\n'
    (tmp_path / "my_llava_family.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(FAMILIES._targets, "my_llava", "my_llava_family:MY_LLAVA")  # the one registry line
    try:
        model, proc = vb.build("llava")
        model.config.model_type = "my_llava"  # a checkpoint of the new model_type
        mine = LoadedVlm(model, proc, family_of("my_llava").name, "tiny-my-llava", "")
        assert mine.family_info.name == "my_llava" and "my_llava" in family_names()
        image = vb.random_image(90, 50, 3)
        config = VlmConfig.from_preset(max_new_tokens=2)
        new = VlmAttributor(mine, config).attribute([image], ["what is in the image ?"])[0]
        model.config.model_type = "llava"
        old = VlmAttributor(LoadedVlm(model, proc, "llava", "tiny-llava", ""), config).attribute(
            [image], ["what is in the image ?"])[0]
        np.testing.assert_allclose(new.grid, old.grid, atol=1e-6)
        assert new.grid.shape == (4, 4)
    finally:
        sys.modules.pop("my_llava_family", None)

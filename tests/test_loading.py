"""Loading as users load (issue 39): one LoadOptions validated in one place, what configurations record of it,
the dtype a checkpoint is loaded in, quantisation and kernels that are not there, a device map, the backend's batch
size, the command line's flags, and the attention capture under any kernel the model runs (exact rows, outputs
untouched)."""

from __future__ import annotations

import importlib.util

import builders as vb
import pytest
import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv
from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask

from attnprompt.backends import get_backend
from attnprompt.capture import AttentionCapture, capture_implementation
from attnprompt.cli import build_parser, main
from attnprompt.errors import InputError
from attnprompt.models import LoadOptions, generate, load_vlm, pick_dtype, resolve_dtype
from attnprompt.shapes import make_scene
from attnprompt.types import Request

# -- LoadOptions -----------------------------------------------------------------------------------------------------


def test_the_defaults_record_nothing_and_each_setting_is_checked_once():
    assert LoadOptions().describe() == {} and LoadOptions().dtype == "auto"
    assert LoadOptions(dtype=torch.bfloat16).dtype == "bfloat16"
    bad = {"dtype": ("fp8", "dtype must be one of auto, float32, float16, bfloat16, float64; got 'fp8'"),
           "device_map": ("everywhere", "device_map must be one of auto, balanced, balanced_low_0, sequential"),
           "attn_implementation": ("flash", "attn_implementation must be one of sdpa, flash_attention_2, eager"),
           "answer_fit": ("crop", "answer_fit must be one of pad, processor; got 'crop'"),
           "max_pixels": (0, "max_pixels must be an integer ≥ 1; got 0")}
    for field, (value, message) in bad.items():
        with pytest.raises(InputError, match=message.replace("(", r"\(")):
            LoadOptions(**{field: value})
    with pytest.raises(InputError, match="give device .cuda:1. or device_map .auto., not both"):
        LoadOptions(device="cuda:1", device_map="auto")
    with pytest.raises(InputError, match="min_pixels 10 is above max_pixels 5"):
        LoadOptions(max_pixels=5, min_pixels=10)


def test_generation_settings_are_checked_and_sampling_needs_do_sample():
    assert LoadOptions(generation={"repetition_penalty": 1.05}).generate_kwargs()["do_sample"] is False
    sampled = LoadOptions(generation={"do_sample": True, "temperature": 0.7, "top_k": 5.0})
    assert dict(sampled.generation) == {"do_sample": True, "temperature": 0.7, "top_k": 5}
    with pytest.raises(InputError, match="temperature: settings of sampled answers; set do_sample too"):
        LoadOptions(generation={"temperature": 0.7})
    with pytest.raises(InputError, match="unknown generation setting 'penalty'; valid: do_sample, temperature"):
        LoadOptions(generation={"penalty": 1.1})
    with pytest.raises(InputError, match="generation setting num_beams must be a number .a whole one.; got 1.5"):
        LoadOptions(generation={"num_beams": 1.5})


def test_options_come_from_a_mapping_or_the_old_keywords_and_contradictions_are_errors():
    assert LoadOptions.of(device="cpu", dtype="float64") == LoadOptions(device="cpu", dtype="float64")
    assert LoadOptions.of({"quantize": "none", "max_pixels": "1_605_632"}).max_pixels == 1_605_632
    carried = LoadOptions(dtype="bfloat16", attn_implementation="eager")
    assert LoadOptions.of(dtype=carried, device="cuda") == LoadOptions(device="cuda", dtype="bfloat16",
                                                                     attn_implementation="eager")
    with pytest.raises(InputError, match="dtype given twice: 'float16' and 'bfloat16'"):
        LoadOptions.of(carried, dtype="float16")
    with pytest.raises(InputError, match="unknown loading setting 'dtyp'"):
        LoadOptions.from_mapping({"dtyp": "bfloat16"})
    assert str(pick_dtype(carried)) == "torch.bfloat16" and str(pick_dtype(LoadOptions())) == "torch.float32"


def test_auto_is_the_checkpoints_dtype_on_a_gpu_and_float32_on_the_cpu_without_a_device():
    bf16 = {"torch_dtype": "bfloat16"}
    assert resolve_dtype("auto", bf16, "cuda") == resolve_dtype("auto", bf16, "mps") == torch.bfloat16
    assert resolve_dtype("auto", bf16, "cpu") == torch.float32 and resolve_dtype("auto", {}, "cuda") == torch.float32
    assert resolve_dtype("auto", {"text_config": {"dtype": "float16"}}, "cuda:0") == torch.float16
    assert resolve_dtype("float16", bf16, "cpu") == torch.float16


# -- what cannot be loaded as asked ---------------------------------------------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is not None, reason="bitsandbytes is installed here")
def test_quantisation_without_bitsandbytes_is_one_clear_error_before_loading(capsys):
    with pytest.raises(InputError, match=r"quantize=4bit needs bitsandbytes: pip install 'attnprompt\[quantize\]'"):
        load_vlm("shapes", loading=LoadOptions(quantize="4bit"))
    assert main(["serve", "--vlm", "shapes", "--quantize", "8bit", "--port", "0"]) == 2
    assert "quantize=8bit needs bitsandbytes: pip install 'attnprompt[quantize]'" in capsys.readouterr().err


def test_a_kernel_this_machine_lacks_is_one_clear_error(capsys):
    if importlib.util.find_spec("flash_attn") is None:
        message = "flash_attention_2 needs the flash-attn package"
    else:
        message = "flash_attention_2 runs on CUDA GPUs, not cpu"
    with pytest.raises(InputError, match=message):
        load_vlm("shapes", loading=LoadOptions(device="cpu", attn_implementation="flash_attention_2"))
    assert main(["serve", "--vlm", "shapes", "--device", "cpu", "--attn-implementation", "flash_attention_2",
                 "--port", "0"]) == 2
    assert message in capsys.readouterr().err


def test_a_clip_takes_the_vlms_settings_it_can_use_and_ignores_the_rest():
    from attnprompt.models import load_clip

    clip = load_clip("shapes", loading=LoadOptions(device="cpu", quantize="4bit", max_pixels=10**6))
    assert clip.model is load_clip("shapes", device="cpu").model and clip.record() == {}


@pytest.mark.skipif(importlib.util.find_spec("accelerate") is None, reason="accelerate is not installed")
def test_a_device_map_places_the_model_and_answers_as_before():
    scene = make_scene(7, n_objects=5, size=320).image
    mapped = load_vlm("shapes", loading=LoadOptions(device_map="auto"))
    plain = load_vlm("shapes", device="cpu")
    assert mapped.model is not plain.model and mapped.options.device_map == "auto"  # on this CPU: all on the CPU
    request = Request.single(scene, "What colour is the circle?", max_new_tokens=3)
    assert generate(mapped, [request]).tokens == generate(plain, [request]).tokens


# -- the backend -----------------------------------------------------------------------------------------------------


def test_get_backend_takes_the_batch_size_and_the_loading_settings():
    backend = get_backend("shapes", batch_size=2, loading=LoadOptions(device="cpu", answer_fit="processor"))
    assert backend.batch_size == 2 and backend.describe() == {"name": "shapes", "dtype": "float32",
                                                              "answer_fit": "processor"}
    assert get_backend("shapes", device="cpu").describe() == {"name": "shapes", "dtype": "float32"}
    assert backend.local_model.model is get_backend("shapes", device="cpu").local_model.model
    with pytest.raises(InputError, match="batch_size must be an integer ≥ 1; got 0"):
        get_backend("shapes", batch_size=0)
    assert get_backend("http://127.0.0.1:9/v1", vlm_model="m", batch_size=8).local_model is None  # a server's own


def test_the_command_lines_loading_flags():
    args = build_parser().parse_args(["ask", "a.png", "Why?"])
    assert (args.dtype, args.attn_implementation, args.quantize, args.device_map, args.answer_fit) == (
        "auto", None, None, None, "pad")
    helptext = build_parser()._subparsers._group_actions[0].choices["ask"].format_help()
    assert "--dtype {auto,float32,float16,bfloat16,float64}" in helptext
    assert "--attn-implementation {sdpa,flash_attention_2,eager}" in helptext
    with pytest.raises(SystemExit):
        build_parser().parse_args(["ask", "a.png", "Why?", "--quantize", "2bit"])
    serve = build_parser().parse_args(["serve", "--batch-size", "8", "--generation", "repetition_penalty=1.05"])
    assert serve.batch_size == 8 and serve.generation == "repetition_penalty=1.05"


# -- the capture under any kernel -------------------------------------------------------------------------------------


def padding_mask_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, sliding_window=None,
                           **kwargs):
    """A kernel that, as flash attention does, gets a 2-D padding mask (or None) and applies causality and the
    sliding window itself — on CPU, so the capture's 2-D path can be checked without a GPU."""
    k, v = repeat_kv(key, module.num_key_value_groups), repeat_kv(value, module.num_key_value_groups)
    q_len, kv = query.shape[2], k.shape[2]
    q_pos, k_pos = torch.arange(kv - q_len, kv)[:, None], torch.arange(kv)[None, :]
    allowed = k_pos <= q_pos
    if sliding_window is not None:
        allowed = allowed & (k_pos > q_pos - sliding_window)
    allowed = allowed[None, None]
    if attention_mask is not None:
        allowed = allowed & attention_mask[:, None, None, -kv:].bool()
    allowed = allowed | (k_pos == q_pos)[None, None]  # a padding query sees itself: no row of nothing but -inf
    out = torch.nn.functional.scaled_dot_product_attention(query, k, v, attn_mask=allowed, scale=scaling)
    return out.transpose(1, 2).contiguous(), None


def inputs_for(vlm, sizes, prompts):
    from attnprompt.models import chat_prompt

    requests = [Request.single(vb.random_image(w, h, i), p) for i, ((w, h), p) in enumerate(zip(sizes, prompts))]
    return vlm.processor(text=[chat_prompt(vlm.processor, r) for r in requests],
                         images=[list(r.images) for r in requests], padding=True, return_tensors="pt")


# Gemma 3 lets image tokens see each other both ways, which a causal padding-mask kernel cannot express (as
# transformers' flash attention cannot): it is checked under eager, and the 2-D path's window below.
@pytest.mark.parametrize("family, kernel", [("llava", "eager"), ("gemma3", "eager"), ("qwen2_5_vl", "eager"),
                                            ("llava", "padding_mask"), ("qwen2_5_vl", "padding_mask")])
def test_the_capture_is_exact_under_the_models_own_kernel_and_leaves_its_outputs(family, kernel):
    if "padding_mask" not in AttentionInterface._global_mapping:
        AttentionInterface.register("padding_mask", padding_mask_attention)
        AttentionMaskInterface.register("padding_mask", flash_attention_mask)
    vlm = vb.loaded(family)
    model = vlm.model
    prompts = ["what is in the image ?", "describe the red star on the left of the picture please ? yes " * 2]
    inputs = inputs_for(vlm, [(90, 50), (40, 70)], prompts)
    assert (inputs["attention_mask"] == 0).any()  # a left-padded batch: the padding mask matters
    layers = range(model.config.get_text_config().num_hidden_layers)
    model.set_attn_implementation({"text_config": "eager"})
    reference = model.generate(**inputs, max_new_tokens=4, do_sample=False, output_attentions=True,
                               return_dict_in_generate=True)
    model.set_attn_implementation({"text_config": kernel})
    try:
        plain = model.generate(**inputs, max_new_tokens=4, do_sample=False)
        with AttentionCapture(model, layers) as cap:
            assert model.config.get_text_config()._attn_implementation == capture_implementation(kernel)
            ours = model.generate(**inputs, max_new_tokens=4, do_sample=False)
        assert model.config.get_text_config()._attn_implementation == kernel  # restored
    finally:
        model.set_attn_implementation({"text_config": "sdpa"})
    assert torch.equal(ours, plain) and torch.equal(ours, reference.sequences)
    for layer in layers:
        for step, eager in enumerate(reference.attentions):
            expected = eager[layer][:, :, -1, :].float()
            got = torch.softmax(cap.scores[layer][step], dim=-1)
            assert got.shape == expected.shape
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_a_padding_mask_rows_keys_are_the_real_ones_within_the_sliding_window():
    from types import SimpleNamespace as NS

    capture = AttentionCapture(None, [0])
    query, key = torch.randn(2, 2, 1, 4), torch.randn(2, 1, 6, 4)  # one decode step, 6 keys, GQA 2:1
    padding = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    capture._record(NS(num_key_value_groups=2, layer_idx=0), query, key, padding, 0.5, sliding_window=3)
    [row] = capture.scores[0]
    full = (query.float() @ repeat_kv(key, 2).float().transpose(-1, -2))[:, :, 0] * 0.5
    seen = torch.tensor([[False, False, False, True, True, True], [False, False, False, True, True, True]])
    assert torch.equal(torch.isinf(row), ~seen[:, None, :].expand_as(row))  # the window's last 3 keys only
    torch.testing.assert_close(row[seen[:, None, :].expand_as(row)], full[seen[:, None, :].expand_as(full)])
    capture.scores[0].clear()
    capture._record(NS(num_key_value_groups=2, layer_idx=0), query, key, padding, 0.5)
    assert torch.equal(torch.isinf(capture.scores[0][0][:, 0]), padding == 0)  # no window: every real key

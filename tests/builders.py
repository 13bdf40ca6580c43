"""Tiny random-weight models built in code and saved like checkpoints — the one place tests get them.

- CLIPs of two shapes (:func:`build_tiny_clip`), with OpenAI CLIP's real tokenizer (``data/clip-bpe``);
- VLMs of every model_type in the family registry (:data:`BUILDERS`, :func:`build`, :func:`save`,
  :func:`loaded`): 3-layer GQA language models, 2-layer vision towers, a WordLevel tokenizer with a chat
  template, and the family's own processor. A new family needs a builder here: a test checks that every
  registered model_type has one;
- reduced random-weight models of real checkpoints, from their own files (:func:`reduced_checkpoint`, built by
  ``tools/checkpoints.py``; the test skips, saying why, where the files are absent).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tools import checkpoints as real_files  # the tools beside the package (importable from a checkout's root)

DATA = Path(__file__).resolve().parents[1] / "data"
CLIP_BPE = DATA / "clip-bpe"

#: Two differently shaped tiny CLIPs: (name, vision kwargs, text kwargs, projection dim).
CLIP_SHAPES = {
    "b": dict(
        vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, image_size=32,
                    patch_size=8),
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4),
        projection_dim=16,
    ),
    "l": dict(
        vision=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=5, num_attention_heads=6, image_size=48,
                    patch_size=6),
        text=dict(hidden_size=40, intermediate_size=80, num_hidden_layers=2, num_attention_heads=5),
        projection_dim=24,
    ),
}


def build_tiny_clip(directory: Path, shape: str = "b", seed: int = 0, dtype=None) -> Path:
    """Save a random-weight CLIPModel + the real CLIP tokenizer + image processor to ``directory``."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    spec = CLIP_SHAPES[shape]
    torch.manual_seed(seed)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=49408, max_position_embeddings=77, **spec["text"]),
        vision_config=dict(**spec["vision"]),
        projection_dim=spec["projection_dim"],
    )
    model = CLIPModel(cfg).eval()
    with torch.no_grad():
        # Random init leaves LayerNorms at identity and biases at zero; perturb them so the
        # identities under test cannot pass by accident.
        for name, p in model.named_parameters():
            if "layer_norm" in name or "layrnorm" in name or "layernorm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    if dtype is not None:
        model = model.to(dtype)
    size = spec["vision"]["image_size"]
    tok = CLIPTokenizer.from_pretrained(str(CLIP_BPE))
    ip = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    CLIPProcessor(image_processor=ip, tokenizer=tok).save_pretrained(directory)
    return directory

WORDS = (
    "what is in the image ? describe a cat dog red blue green left right top bottom user assistant system "
    "yes no picture of color colour there on it star circle square shape"
).split()

LLAVA_TEMPLATE = (
    "{% for m in messages %}{{ m['role'].upper() }}: "
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{% endif %}{{ '\\n' }}{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
QWEN_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN_SPECIALS = ["<|image_pad|>", "<|vision_start|>", "<|vision_end|>", "<|video_pad|>", "<|im_start|>", "<|im_end|>"]
#: The first four families, whose saved checkpoints conftest's ``vlm_dirs`` holds (the registry has more).
FAMILIES = ("llava", "llava_next", "qwen2_vl", "qwen2_5_vl")


def make_tokenizer(special, vocab_size=300, template=None, **named):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    special = list(special) + [t for t in named.values() if t not in special]
    toks = ["<pad>", "<unk>", "<s>", "</s>"] + special + WORDS
    toks += [f"w{i}" for i in range(vocab_size - len(toks))]
    tk = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(toks)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tk.decoder = decoders.WordPiece(prefix="##")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>",
        additional_special_tokens=list(special), padding_side="left", **named,
    )
    fast.chat_template = template
    return fast


def _text_config(vocab, **extra):
    return dict(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=1024, pad_token_id=0, bos_token_id=2, eos_token_id=3, **extra
    )


def random_image(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


INTERNVL_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<IMG_CONTEXT>\n"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}<|im_end|>{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
GEMMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<start_of_image>"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
IDEFICS3_TEMPLATE = (
    "<|im_start|>{% for m in messages %}{{ m['role'] | capitalize }}:"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>{% else %} {{ c['text'] }}{% endif %}{% endfor %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)
ONEVISION_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>\n"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}<|im_end|>{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
ROW_COL = [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
#: LLaVA-OneVision's any-resolution canvases for 28-px tiles; "anyres_max_4" lets the big ones be pooled.
ONEVISION_PINPOINTS = [[28, 56], [56, 28], [56, 56], [84, 28], [28, 84], [56, 84], [84, 56], [84, 84], [28, 112],
                       [112, 28], [112, 112]]



# -- one builder per model_type: (model, processor) with random weights; tiles and thumbnails are small (28–56 px)
#    so that a 90×50 image already spans several tiles ------------------------------------------------------------


def _llava(vocab: int, attn: str):
    from transformers import CLIPImageProcessorPil, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    tok = make_tokenizer(["<image>"], vocab, LLAVA_TEMPLATE)
    text = dict(model_type="llama", **_text_config(vocab))
    vision = dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, image_size=56, patch_size=14, projection_dim=32)
    cfg = LlavaConfig(vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("<image>"),
                      image_seq_length=16, vision_feature_layer=-2, vision_feature_select_strategy="default",
                      attn_implementation=attn)
    model = LlavaForConditionalGeneration(cfg).eval()
    ip = CLIPImageProcessorPil(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56})
    proc = LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=14, vision_feature_select_strategy="default",
                          num_additional_image_tokens=1, chat_template=LLAVA_TEMPLATE)
    return model, proc


def _llava_next(vocab: int, attn: str):
    from transformers import (
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessorPil,
        LlavaNextProcessor,
    )

    tok = make_tokenizer(["<image>"], vocab, LLAVA_TEMPLATE)
    text = dict(model_type="llama", **_text_config(vocab))
    pin = [[28, 56], [56, 28], [56, 56], [84, 28], [28, 84]]
    vision = dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, image_size=28, patch_size=7, projection_dim=32)
    cfg = LlavaNextConfig(vision_config=vision, text_config=text,
                          image_token_index=tok.convert_tokens_to_ids("<image>"), image_grid_pinpoints=pin,
                          image_seq_length=16, vision_feature_layer=-2, vision_feature_select_strategy="default",
                          attn_implementation=attn)
    model = LlavaNextForConditionalGeneration(cfg).eval()
    ip = LlavaNextImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28},
                                    image_grid_pinpoints=pin)
    proc = LlavaNextProcessor(image_processor=ip, tokenizer=tok, patch_size=7, vision_feature_select_strategy="default",
                              num_additional_image_tokens=1, chat_template=LLAVA_TEMPLATE)
    return model, proc


def _qwen2(model_type: str, vocab: int, attn: str):
    """Qwen2-VL and Qwen2.5-VL: the same tokenizer, text model and image processor; their own vision towers."""
    from transformers import Qwen2VLImageProcessorPil

    from attnprompt.models import image_only_processor

    tok = make_tokenizer(QWEN_SPECIALS, vocab, QWEN_TEMPLATE)
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    rope = {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0}
    text = _text_config(vocab, rope_parameters=rope)
    common = dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                  vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
                  attn_implementation=attn)
    if model_type == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig as Config
        from transformers import Qwen2_5_VLForConditionalGeneration as Model

        vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=4, patch_size=14, spatial_merge_size=2,
                      temporal_patch_size=2, out_hidden_size=64, window_size=56, fullatt_block_indexes=[1])
    else:
        from transformers import Qwen2VLConfig as Config
        from transformers import Qwen2VLForConditionalGeneration as Model

        vision = dict(depth=2, embed_dim=32, hidden_size=64, num_heads=4, mlp_ratio=2, patch_size=14,
                      spatial_merge_size=2, temporal_patch_size=2)
    model = Model(Config(text_config=text, vision_config=vision, **common)).eval()
    ip = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=28 * 28 * 16, patch_size=14, merge_size=2,
                                  temporal_patch_size=2)
    return model, image_only_processor(model_type, ip, tok, QWEN_TEMPLATE)


def _qwen2_vl(vocab: int, attn: str):
    return _qwen2("qwen2_vl", vocab, attn)


def _qwen2_5_vl(vocab: int, attn: str):
    return _qwen2("qwen2_5_vl", vocab, attn)


def _qwen3_vl(vocab: int, attn: str):
    from transformers import Qwen2VLImageProcessorPil, Qwen3VLConfig, Qwen3VLForConditionalGeneration

    from attnprompt.models import image_only_processor

    tok = make_tokenizer(QWEN_SPECIALS, vocab, QWEN_TEMPLATE)
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    rope = {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0, "mrope_interleaved": True}
    text = _text_config(vocab, head_dim=16, rope_parameters=rope)
    vision = dict(depth=3, hidden_size=32, intermediate_size=64, num_heads=4, patch_size=16, spatial_merge_size=2,
                  temporal_patch_size=2, out_hidden_size=64, num_position_embeddings=64,
                  deepstack_visual_indexes=[0, 1])
    cfg = Qwen3VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                        video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                        vision_end_token_id=ids["<|vision_end|>"], attn_implementation=attn)
    model = Qwen3VLForConditionalGeneration(cfg).eval()
    ip = Qwen2VLImageProcessorPil(min_pixels=64 * 64, max_pixels=32 * 32 * 24, patch_size=16, merge_size=2,
                                  temporal_patch_size=2)
    return model, image_only_processor("qwen3_vl", ip, tok, QWEN_TEMPLATE)


def _internvl(vocab: int, attn: str, max_patches: int = 6):
    from transformers import GotOcr2ImageProcessorPil, InternVLConfig, InternVLForConditionalGeneration

    from attnprompt.models import image_only_processor

    named = dict(start_image_token="<img>", end_image_token="</img>", context_image_token="<IMG_CONTEXT>",
                 video_token="<video>")
    tok = make_tokenizer(["<|im_start|>", "<|im_end|>"], vocab, INTERNVL_TEMPLATE, **named)
    text = dict(model_type="qwen2", **_text_config(vocab))
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  image_size=[56, 56], patch_size=[7, 7])
    cfg = InternVLConfig(vision_config=vision, text_config=text, image_token_id=tok.context_image_token_id,
                         image_seq_length=16, downsample_ratio=0.5, attn_implementation=attn)
    model = InternVLForConditionalGeneration(cfg).eval()
    ip = GotOcr2ImageProcessorPil(size={"height": 56, "width": 56}, crop_to_patches=True, min_patches=1,
                                  max_patches=max_patches)
    return model, image_only_processor("internvl", ip, tok, INTERNVL_TEMPLATE, image_seq_length=16)


def _gemma3(vocab: int, attn: str, pan_and_scan: bool = False, sliding_window: int = 24):
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessorPil, Gemma3Processor

    named = dict(boi_token="<start_of_image>", eoi_token="<end_of_image>", image_token="<image_soft_token>")
    tok = make_tokenizer(["<start_of_turn>", "<end_of_turn>"], vocab, GEMMA3_TEMPLATE, **named)
    text = dict(model_type="gemma3_text", **_text_config(vocab, head_dim=16), query_pre_attn_scalar=16,
                sliding_window=sliding_window, layer_types=["sliding_attention", "full_attention", "sliding_attention"])
    text["bos_token_id"], text["eos_token_id"] = 2, 3
    vision = dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, image_size=56, patch_size=7)
    cfg = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=16,
                       boi_token_index=tok.boi_token_id, eoi_token_index=tok.eoi_token_id,
                       image_token_index=tok.image_token_id, attn_implementation=attn)
    model = Gemma3ForConditionalGeneration(cfg).eval()
    with torch.no_grad():  # initialised to zeros, which would make every image the same to the decoder
        model.model.multi_modal_projector.mm_input_projection_weight.normal_(0.0, 0.2)
    ip = Gemma3ImageProcessorPil(size={"height": 56, "width": 56})
    proc = Gemma3Processor(image_processor=ip, tokenizer=tok, image_seq_length=16, chat_template=GEMMA3_TEMPLATE)
    if pan_and_scan:
        # the processor's own defaults switch pan-and-scan off whatever the image processor says
        proc.images_kwargs = {**Gemma3Processor.images_kwargs, "do_pan_and_scan": True,
                              "pan_and_scan_min_crop_size": 8}
    return model, proc


def _idefics3_like(model_type: str, vocab: int, attn: str):
    """Idefics3 and SmolVLM: one architecture, built by each one's transformers classes."""
    from attnprompt.models import image_only_processor

    tok = make_tokenizer(["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>",
                          "<|im_start|>"] + ROW_COL, vocab, IDEFICS3_TEMPLATE)
    text = dict(model_type="llama", **_text_config(vocab))
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=56,
                  patch_size=7)
    kw = dict(size={"longest_edge": 56 * 3}, max_image_size={"longest_edge": 56}, do_image_splitting=True)
    if model_type == "idefics3":
        from transformers import Idefics3Config as Config
        from transformers import Idefics3ForConditionalGeneration as Model
        from transformers import Idefics3ImageProcessorPil as ImageProcessor
    else:
        from transformers import SmolVLMConfig as Config
        from transformers import SmolVLMForConditionalGeneration as Model
        from transformers import SmolVLMImageProcessorPil as ImageProcessor
    cfg = Config(vision_config=vision, text_config=text, image_token_id=tok.convert_tokens_to_ids("<image>"),
                 scale_factor=2, attn_implementation=attn)
    model = Model(cfg).eval()
    return model, image_only_processor(model_type, ImageProcessor(**kw), tok, IDEFICS3_TEMPLATE, image_seq_len=16)


def _idefics3(vocab: int, attn: str):
    return _idefics3_like("idefics3", vocab, attn)


def _smolvlm(vocab: int, attn: str):
    return _idefics3_like("smolvlm", vocab, attn)


def _llava_onevision(vocab: int, attn: str, vision_aspect_ratio: str = "anyres_max_4"):
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessorPil,
    )

    from attnprompt.models import image_only_processor

    tok = make_tokenizer(["<image>", "<video>", "<|im_start|>", "<|im_end|>"], vocab, ONEVISION_TEMPLATE)
    text = dict(model_type="qwen2", **_text_config(vocab))
    vision = dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, image_size=28, patch_size=7)
    cfg = LlavaOnevisionConfig(vision_config=vision, text_config=text,
                               image_token_index=tok.convert_tokens_to_ids("<image>"),
                               video_token_index=tok.convert_tokens_to_ids("<video>"),
                               image_grid_pinpoints=ONEVISION_PINPOINTS, vision_aspect_ratio=vision_aspect_ratio,
                               vision_feature_select_strategy="full", vision_feature_layer=-1, attn_implementation=attn)
    model = LlavaOnevisionForConditionalGeneration(cfg).eval()
    ip = LlavaOnevisionImageProcessorPil(size={"height": 28, "width": 28}, image_grid_pinpoints=ONEVISION_PINPOINTS)
    return model, image_only_processor("llava_onevision", ip, tok, ONEVISION_TEMPLATE, num_image_tokens=16,
                                       vision_feature_select_strategy="full", vision_aspect_ratio=vision_aspect_ratio)


#: model_type → its builder, ``(vocab, attn, **overrides) → (model, processor)``; one per model_type in
#: :data:`attnprompt.families.FAMILIES` (tests/test_family_registry.py checks).
BUILDERS = {
    "llava": _llava,
    "llava_next": _llava_next,
    "qwen2_vl": _qwen2_vl,
    "qwen2_5_vl": _qwen2_5_vl,
    "qwen3_vl": _qwen3_vl,
    "internvl": _internvl,
    "gemma3": _gemma3,
    "idefics3": _idefics3,
    "smolvlm": _smolvlm,
    "llava_onevision": _llava_onevision,
}

#: Processors saved whole (they need no video processor); the others are saved as their parts, as real
#: checkpoints ship them, and load through attnprompt's image-only processor.
SAVED_WHOLE = ("llava", "llava_next", "gemma3", "idefics3")


def build(model_type: str, seed: int = 0, vocab: int = 300, attn: str = "sdpa", **overrides):
    """(model, processor) of a tiny ``model_type`` model with random weights (seeded); ``overrides`` are the
    builder's own options (``pan_and_scan=True`` or ``sliding_window=`` for Gemma 3, ``vision_aspect_ratio=`` for
    OneVision …)."""
    if model_type not in BUILDERS:
        raise ValueError(f"no tiny-model builder for model_type {model_type!r}; valid: {', '.join(BUILDERS)}")
    torch.manual_seed(seed)
    return BUILDERS[model_type](vocab, attn, **overrides)


def loaded(model_type: str, **overrides):
    """An uncached :class:`attnprompt.models.LoadedVlm` of a tiny ``model_type`` model (tests edit weights)."""
    from attnprompt.families import family_of
    from attnprompt.models import LoadedVlm

    model, proc = build(model_type, **overrides)
    return LoadedVlm(model, proc, family_of(model_type).name, f"tiny-{model_type}", "")


def save(model_type: str, directory: Path, seed: int = 0) -> Path:
    """Save a :func:`build` model as a checkpoint: the model, and the processor whole or as its parts (image
    processor, tokenizer, chat template; :data:`SAVED_WHOLE`)."""
    model, proc = build(model_type, seed)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    if model_type in SAVED_WHOLE:
        proc.save_pretrained(directory)
        return directory
    proc.image_processor.save_pretrained(directory)
    proc.tokenizer.save_pretrained(directory)
    (directory / "chat_template.jinja").write_text(proc.chat_template)
    return directory


def make_vision_local(model) -> None:
    """Zero the vision tower's attention out-projections: each vision token then depends only on its own
    pixels, so perturbing a pixel region shows which image tokens belong to it (every family's tower)."""
    with torch.no_grad():
        for name, module in model.named_modules():
            vision = any(k in name for k in ("vision_tower", "vision_model", "visual"))
            out = name.endswith(("self_attn.out_proj", "attn.proj", "attention.projection_layer"))
            if vision and out and isinstance(module, torch.nn.Linear):
                module.weight.zero_()
                if module.bias is not None:
                    module.bias.zero_()


def image_token_embeddings(model, inputs, image_token_id: int) -> torch.Tensor:
    """The language model's input embeddings at the image-token positions of the first row of ``inputs``."""
    seen = {}
    inner = model.model
    lm = getattr(inner, "language_model", None) or inner.text_model

    def hook(_m, args, kwargs):
        seen["embeds"] = kwargs["inputs_embeds"].detach().clone()

    h = lm.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        h.remove()
    positions = (inputs["input_ids"][0] == image_token_id).nonzero().flatten()
    return seen["embeds"][0, positions]


def plant_attention(monkeypatch, tokens) -> None:
    """Every step's attention all on the image tokens ``tokens`` (indices into the image span): api-vlm's
    reading of the attention is replaced for the rest of the test."""
    from attnprompt.attribution import vlm_attention

    def planted(scores, positions, variant):
        v = torch.zeros(len(positions))
        v[tokens] = 1.0
        return v

    monkeypatch.setattr(vlm_attention, "image_span_attention", planted)


def assert_capture_left_nothing(model, registered: int, hooks: int) -> None:
    """After an attention capture: no watched module, SDPA back, the attention registry and the hooks as
    they were (``registered`` implementations, ``hooks`` hooks before) — also after a block that raises."""
    import pytest
    from transformers import AttentionInterface

    from attnprompt import capture
    from attnprompt.capture import AttentionCapture

    def clean() -> None:
        assert capture._WATCHED == {}
        assert model.config.get_text_config()._attn_implementation == "sdpa"
        assert len(AttentionInterface._global_mapping) == registered
        assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()) == hooks

    clean()
    with pytest.raises(RuntimeError, match="boom"):
        with AttentionCapture(model, [0]):
            raise RuntimeError("boom")
    clean()


def build_tiny_sam(seed: int = 0, side: int = 64):
    """A SAM with random weights and a ``side``-px input (``SamModel`` + its PIL image processor), as a
    :class:`~attnprompt.segmenters.sam.SamSegmenter`; ``save_tiny_sam`` writes it like a checkpoint."""
    from transformers import SamConfig, SamModel
    from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

    from attnprompt.segmenters.sam import SamSegmenter

    torch.manual_seed(seed)
    config = SamConfig(
        vision_config=dict(hidden_size=32, output_channels=16, num_hidden_layers=2, num_attention_heads=2,
                           mlp_dim=64, image_size=side, patch_size=16, global_attn_indexes=[1], window_size=2,
                           num_pos_feats=8),
        prompt_encoder_config=dict(hidden_size=16, image_size=side, patch_size=16, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, mlp_dim=32,
                                 iou_head_hidden_dim=16),
    )
    model = SamModel(config).eval()
    with torch.no_grad():  # transformers' init zeroes some norms, leaving logits ~1e-5: give every weight a spread
        for p in model.parameters():
            p.normal_(0.0, 0.35)
        for mlp in model.mask_decoder.output_hypernetworks_mlps:  # logits of a few units, as a trained SAM's
            mlp.proj_out.weight.mul_(40.0)
        head = model.mask_decoder.iou_prediction_head.proj_out  # predicted IoUs in (0, 1), spread around 0.8
        head.weight.mul_(0.02)
        head.bias.fill_(0.8)
    low = side // 4  # the mask decoder upsamples the embedding grid 4×
    processor = SamImageProcessorPil(size={"longest_edge": side}, pad_size={"height": side, "width": side},
                                     mask_size={"longest_edge": low}, mask_pad_size={"height": low, "width": low})
    return SamSegmenter(model, processor, f"tiny-sam-{side}")


def save_tiny_sam(directory: Path, seed: int = 0, side: int = 64) -> Path:
    sam = build_tiny_sam(seed, side)
    sam.model.save_pretrained(directory)
    sam.processor.save_pretrained(directory)
    return directory


# -- reduced random-weight models from real checkpoints' own files (tools/checkpoints.py builds them) -----------------

CHECKPOINTS = real_files.CHECKPOINTS
CHECKPOINT_VLMS = real_files.CHECKPOINT_VLMS


def checkpoint_files(hub_id: str) -> Path:
    """The directory of ``hub_id``'s real non-weight files; the calling test is skipped, with the reason, where it
    is absent (a clone without ../shared/data/checkpoints)."""
    import pytest

    directory = CHECKPOINTS / hub_id
    if not (directory / "config.json").is_file():
        pytest.skip(f"{hub_id}: no config.json under {CHECKPOINTS} (set ATTNPROMPT_CHECKPOINTS to the folder of the "
                    "real checkpoints' files)")
    return directory


def reduced_checkpoint(hub_id: str, directory: Path, seed: int = 0) -> Path:
    """:func:`tools.checkpoints.reduced_checkpoint`, skipping the calling test where the files are absent."""
    checkpoint_files(hub_id)
    return real_files.reduced_checkpoint(hub_id, directory, seed)


def reduced_clip_checkpoint(hub_id: str, directory: Path, seed: int = 0) -> Path:
    """:func:`tools.checkpoints.reduced_clip_checkpoint`, skipping the calling test where the files are absent."""
    checkpoint_files(hub_id)
    return real_files.reduced_clip_checkpoint(hub_id, directory, seed)

"""Tiny random-weight models built in code and saved like checkpoints — the one place tests get them.

- CLIPs of two shapes (:func:`build_tiny_clip`), with OpenAI CLIP's real tokenizer (``data/clip-bpe``);
- VLMs of each supported family (:func:`build`, :func:`save`): LLaVA-1.5, LLaVA-NeXT, Qwen2-VL and
  Qwen2.5-VL with 3-layer GQA language models, 2-layer vision towers, a WordLevel tokenizer with
  a chat template, and the family's own processor.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

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
FAMILIES = ("llava", "llava_next", "qwen2_vl", "qwen2_5_vl")


def make_tokenizer(special, vocab_size=300, template=None):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    toks = ["<pad>", "<unk>", "<s>", "</s>"] + list(special) + WORDS
    toks += [f"w{i}" for i in range(vocab_size - len(toks))]
    tk = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(toks)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tk.decoder = decoders.WordPiece(prefix="##")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>",
        additional_special_tokens=list(special), padding_side="left",
    )
    fast.chat_template = template
    return fast


def _text_config(vocab, **extra):
    return dict(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=1024, pad_token_id=0, bos_token_id=2, eos_token_id=3, **extra
    )


def build(family: str, seed: int = 0, vocab: int = 300, attn: str = "sdpa"):
    """(model, processor) of a tiny ``family`` model with random weights."""
    torch.manual_seed(seed)
    if family in ("llava", "llava_next"):
        tok = make_tokenizer(["<image>"], vocab, LLAVA_TEMPLATE)
        img_id = tok.convert_tokens_to_ids("<image>")
        text = dict(model_type="llama", **_text_config(vocab))
        if family == "llava":
            from transformers import CLIPImageProcessorPil, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

            vision = dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, image_size=56, patch_size=14, projection_dim=32)
            cfg = LlavaConfig(vision_config=vision, text_config=text, image_token_index=img_id, image_seq_length=16,
                              vision_feature_layer=-2, vision_feature_select_strategy="default",
                              attn_implementation=attn)
            model = LlavaForConditionalGeneration(cfg).eval()
            ip = CLIPImageProcessorPil(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56})
            proc = LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=14,
                                  vision_feature_select_strategy="default",
                                  num_additional_image_tokens=1, chat_template=LLAVA_TEMPLATE)
        else:
            from transformers import (
                LlavaNextConfig,
                LlavaNextForConditionalGeneration,
                LlavaNextImageProcessorPil,
                LlavaNextProcessor,
            )

            pin = [[28, 56], [56, 28], [56, 56], [84, 28], [28, 84]]
            vision = dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, image_size=28, patch_size=7, projection_dim=32)
            cfg = LlavaNextConfig(vision_config=vision, text_config=text, image_token_index=img_id,
                                  image_grid_pinpoints=pin, image_seq_length=16, vision_feature_layer=-2,
                                  vision_feature_select_strategy="default",
                                  attn_implementation=attn)
            model = LlavaNextForConditionalGeneration(cfg).eval()
            ip = LlavaNextImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28},
                                            image_grid_pinpoints=pin)
            proc = LlavaNextProcessor(image_processor=ip, tokenizer=tok, patch_size=7,
                                      vision_feature_select_strategy="default",
                                      num_additional_image_tokens=1, chat_template=LLAVA_TEMPLATE)
        return model, proc
    from transformers import Qwen2VLImageProcessorPil

    tok = make_tokenizer(QWEN_SPECIALS, vocab, QWEN_TEMPLATE)
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    rope = {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0}
    text = _text_config(vocab, rope_parameters=rope)
    common = dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                  vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
                  attn_implementation=attn)
    if family == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig as Config
        from transformers import Qwen2_5_VLForConditionalGeneration as Model

        vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=4, patch_size=14, spatial_merge_size=2,
                      temporal_patch_size=2, out_hidden_size=64, window_size=56, fullatt_block_indexes=[1])
    else:
        from transformers import Qwen2VLConfig as Config
        from transformers import Qwen2VLForConditionalGeneration as Model

        vision = dict(depth=2, embed_dim=32, hidden_size=64, num_heads=4, mlp_ratio=2, patch_size=14,
                      spatial_merge_size=2,
                      temporal_patch_size=2)
    model = Model(Config(text_config=text, vision_config=vision, **common)).eval()
    ip = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=28 * 28 * 16, patch_size=14, merge_size=2,
                                  temporal_patch_size=2)

    from attnprompt.models import image_only_qwen_processor

    proc = image_only_qwen_processor(family, ip, tok, QWEN_TEMPLATE)
    return model, proc


def save(family: str, directory: Path, seed: int = 0) -> Path:
    model, proc = build(family, seed)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    if family.startswith("qwen"):
        # A processor without a video processor cannot save itself; save its parts as real
        # Qwen checkpoints ship them (loading goes through attnprompt's image-only fallback).
        proc.image_processor.save_pretrained(directory)
        proc.tokenizer.save_pretrained(directory)
        (directory / "chat_template.jinja").write_text(proc.chat_template)
    else:
        proc.save_pretrained(directory)
    return directory


def random_image(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))

"""Random-weight models at real sizes for the performance scripts (no download; not part of the package)."""

from __future__ import annotations

from pathlib import Path

import torch

CLIP_BPE = Path(__file__).resolve().parents[1] / "data" / "clip-bpe"

#: A Llama decoder small enough for CPUs, and LLaVA-1.5-7B's: (width, MLP width, layers, heads).
LLAMA_SIZES = {"small": (1024, 2816, 12, 16), "7b": (4096, 11008, 32, 32)}
#: LLaVA-1.5's chat format.
LLAVA_TEMPLATE = (
    "{% for m in messages %}{{ m['role'].upper() }}: "
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{{ '\\n' }}{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def clip_bpe_tokenizer():
    """OpenAI CLIP's real BPE tokenizer (``data/clip-bpe``, 49,408 tokens) with LLaVA's ``<image>``
    token added, left padding and LLaVA-1.5's chat template: a real tokenizer of LLaVA's vocabulary
    size class, with no download."""
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(CLIP_BPE), model_max_length=4096, padding_side="left")
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    tok.chat_template = LLAVA_TEMPLATE
    return tok


def random_llava(size: str, device: str, dtype: torch.dtype):
    """A LLaVA-1.5-architecture model with random weights — CLIP ViT-L/14-336 tower (576 image
    tokens), a Llama decoder of ``size`` (:data:`LLAMA_SIZES`) — as a :class:`attnprompt.models.LoadedVlm`.
    End-of-sequence is off in its generation config, so every call generates its whole budget (an
    answer's text still ends at the tokenizer's end token)."""
    from transformers import CLIPImageProcessorPil, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    from attnprompt.models import LoadedVlm

    tok = clip_bpe_tokenizer()
    width, mlp, layers, heads = LLAMA_SIZES[size]
    text = dict(model_type="llama", vocab_size=len(tok), hidden_size=width, intermediate_size=mlp,
                num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                max_position_embeddings=4096, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id)
    vision = dict(model_type="clip_vision_model", hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                  num_attention_heads=16, image_size=336, patch_size=14, projection_dim=768)
    cfg = LlavaConfig(vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("<image>"),
                      image_seq_length=576, vision_feature_layer=-2, vision_feature_select_strategy="default")
    torch.manual_seed(0)
    with torch.device(device):
        model = LlavaForConditionalGeneration(cfg).to(dtype).eval()
    model.generation_config.eos_token_id = None
    ip = CLIPImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    proc = LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=14, num_additional_image_tokens=1,
                          vision_feature_select_strategy="default", chat_template=LLAVA_TEMPLATE)
    return LoadedVlm(model, proc, "llava", f"random-llava-{size}", "")


#: A Qwen2-VL small enough for CPUs (vision: depth, width, heads; text: as LLAMA_SIZES), and the 2B's.
QWEN_SIZES = {"small": ((16, 1024, 16), (1024, 2816, 12, 16)), "2b": ((32, 1280, 16), (1536, 8960, 28, 12))}
QWEN_SPECIALS = ["<|image_pad|>", "<|vision_start|>", "<|vision_end|>", "<|video_pad|>", "<|im_start|>", "<|im_end|>"]
QWEN_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}<|im_end|>{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def random_qwen2_vl(size: str, device: str, dtype: torch.dtype):
    """A Qwen2-VL with random weights (``size`` in :data:`QWEN_SIZES`) and CLIP's BPE with Qwen's
    special tokens, as a :class:`attnprompt.models.LoadedVlm`; end-of-sequence off, as :func:`random_llava`."""
    from transformers import CLIPTokenizer, Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessorPil

    from attnprompt.models import LoadedVlm, image_only_qwen_processor

    tok = CLIPTokenizer.from_pretrained(str(CLIP_BPE), model_max_length=32768, padding_side="left")
    tok.add_special_tokens({"additional_special_tokens": QWEN_SPECIALS})
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    (depth, vwidth, vheads), (width, mlp, layers, heads) = QWEN_SIZES[size]
    half = width // heads // 2  # mrope sections split the rotary half of each head: t, h, w
    text = dict(vocab_size=len(tok), hidden_size=width, intermediate_size=mlp, num_hidden_layers=layers,
                num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=32768,
                pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                 "mrope_section": [half // 4, 3 * half // 8, half - half // 4 - 3 * half // 8]})
    vision = dict(depth=depth, embed_dim=vwidth, hidden_size=width, num_heads=vheads, mlp_ratio=4, patch_size=14,
                  spatial_merge_size=2, temporal_patch_size=2)
    cfg = Qwen2VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                        video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                        vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2VLForConditionalGeneration(cfg).to(dtype).eval()
    model.generation_config.eos_token_id = None
    ip = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=448 * 448, patch_size=14, merge_size=2,
                                  temporal_patch_size=2)
    proc = image_only_qwen_processor("qwen2_vl", ip, tok, QWEN_TEMPLATE)
    return LoadedVlm(model, proc, "qwen2_vl", f"random-qwen2-vl-{size}", "")

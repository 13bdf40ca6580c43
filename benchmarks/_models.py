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

"""Random-weight models at real sizes for the performance scripts (no download; not part of the package)."""

from __future__ import annotations

from pathlib import Path

import torch

CLIP_BPE = Path(__file__).resolve().parents[1] / "data" / "clip-bpe"

#: A Llama decoder small enough for CPUs, and LLaVA-1.5-7B's: (width, MLP width, layers, heads); ``tiny`` is the
#: scripts' ``--smoke`` size (seconds: it proves a script runs, its figures mean nothing).
LLAMA_SIZES = {"tiny": (64, 128, 4, 4), "small": (1024, 2816, 12, 16), "7b": (4096, 11008, 32, 32)}
#: CLIP vision towers: ViT-L/14-336 (LLaVA-1.5's) and, for ``tiny``, two narrow blocks on the same 24×24 patch grid.
CLIP_VISION = {"tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4),
               "l14-336": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16)}
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
    vision = dict(model_type="clip_vision_model", image_size=336, patch_size=14, projection_dim=768,
                  **CLIP_VISION["tiny" if size == "tiny" else "l14-336"])
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
QWEN_SIZES = {"tiny": ((2, 64, 4), (64, 128, 4, 4)), "small": ((16, 1024, 16), (1024, 2816, 12, 16)),
              "2b": ((32, 1280, 16), (1536, 8960, 28, 12))}
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

    from attnprompt.models import LoadedVlm, image_only_processor

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
    proc = image_only_processor("qwen2_vl", ip, tok, QWEN_TEMPLATE)
    return LoadedVlm(model, proc, "qwen2_vl", f"random-qwen2-vl-{size}", "")


# -- the newer families (issue 23) at their real language-model depth, with narrow layers for CPUs -------------------

#: Decoder depth of a real checkpoint of each family (Qwen3-VL-2B 28, InternVL3-1B 24, Gemma-3-4B 34, SmolVLM-2.2B 24,
#: LLaVA-OneVision-0.5B 24); width (512, MLP 1408, 8 heads of 64, 2 KV heads) is cut so that CPUs can run them.
FAMILY_DEPTH = {"qwen3_vl": 28, "internvl": 24, "gemma3": 34, "smolvlm": 24, "llava_onevision": 24}
_WIDTH = dict(hidden_size=512, intermediate_size=1408, num_attention_heads=8, num_key_value_heads=2, head_dim=64)
_VISION = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_hidden_layers=2)
_CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}IMAGE\n{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
    "<|im_end|>{{ '\\n' }}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _word_tokenizer(special: list[str], template: str, vocab: int = 32000, **named):
    """A WordLevel tokenizer of ``vocab`` tokens (an LM head of a real vocabulary's size class) with the family's
    special tokens; ``named`` ones (``boi_token=…``) become attributes, as the family's processor expects."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    special = list(special) + [t for t in named.values() if t not in special]
    words = "what is in the image ? describe the red car on left".split()
    toks = ["<pad>", "<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"] + special + words
    toks += [f"w{i}" for i in range(vocab - len(toks))]
    tk = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(toks)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                  eos_token="</s>", additional_special_tokens=special + ["<|im_start|>", "<|im_end|>"],
                                  padding_side="left", **named)
    tok.chat_template = template
    return tok


def random_family(family: str, device: str, dtype: torch.dtype):
    """A random-weight model of one of :data:`FAMILY_DEPTH`'s families with its real image-token geometry (tile and
    patch sizes, merges, thumbnails) and real decoder depth, as a :class:`attnprompt.models.LoadedVlm`; end of
    sequence off, as :func:`random_llava`."""
    import transformers as tf

    from attnprompt.families import family_of
    from attnprompt.models import LoadedVlm, image_only_processor

    depth = FAMILY_DEPTH[family]
    text = dict(num_hidden_layers=depth, max_position_embeddings=32768, pad_token_id=0, bos_token_id=2,
                eos_token_id=3, **_WIDTH)
    if family == "qwen3_vl":
        qs = ["<|image_pad|>", "<|vision_start|>", "<|vision_end|>", "<|video_pad|>"]
        template = _CHATML.replace("IMAGE", "<|vision_start|><|image_pad|><|vision_end|>")
        tok = _word_tokenizer(qs, template)
        ids = {t: tok.convert_tokens_to_ids(t) for t in qs}
        text.update(vocab_size=len(tok), rope_parameters={"rope_type": "default", "rope_theta": 5e6,
                                                           "mrope_section": [8, 12, 12], "mrope_interleaved": True})
        vision = dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=4, patch_size=16, out_hidden_size=512,
                      spatial_merge_size=2, temporal_patch_size=2, deepstack_visual_indexes=[0, 1])
        cfg = tf.Qwen3VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                               video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                               vision_end_token_id=ids["<|vision_end|>"])
        model_cls = tf.Qwen3VLForConditionalGeneration
        ip = tf.Qwen2VLImageProcessorPil(patch_size=16, merge_size=2, temporal_patch_size=2)
        make = lambda: image_only_processor(family, ip, tok, template)  # noqa: E731
    elif family == "internvl":
        template = _CHATML.replace("IMAGE", "<IMG_CONTEXT>")
        tok = _word_tokenizer([], template, start_image_token="<img>", end_image_token="</img>",
                              context_image_token="<IMG_CONTEXT>", video_token="<video>")
        text.update(model_type="qwen2", vocab_size=len(tok))
        cfg = tf.InternVLConfig(vision_config=dict(image_size=[448, 448], patch_size=[14, 14], **_VISION),
                                text_config=text, image_token_id=tok.context_image_token_id)
        model_cls = tf.InternVLForConditionalGeneration
        ip = tf.GotOcr2ImageProcessorPil(size={"height": 448, "width": 448}, crop_to_patches=True, max_patches=6)
        make = lambda: image_only_processor(family, ip, tok, template, image_seq_length=256)  # noqa: E731
    elif family == "gemma3":
        template = _CHATML.replace("IMAGE", "<start_of_image>")
        tok = _word_tokenizer([], template, boi_token="<start_of_image>", eoi_token="<end_of_image>",
                              image_token="<image_soft_token>")
        text.update(model_type="gemma3_text", vocab_size=len(tok), query_pre_attn_scalar=64, sliding_window=1024)
        vision = dict(model_type="siglip_vision_model", image_size=896, patch_size=14, **_VISION)
        cfg = tf.Gemma3Config(text_config=text, vision_config=vision, boi_token_index=tok.boi_token_id,
                              eoi_token_index=tok.eoi_token_id, image_token_index=tok.image_token_id)
        model_cls = tf.Gemma3ForConditionalGeneration
        ip = tf.Gemma3ImageProcessorPil(size={"height": 896, "width": 896})
        make = lambda: tf.Gemma3Processor(image_processor=ip, tokenizer=tok, chat_template=template)  # noqa: E731
    elif family == "smolvlm":
        row_col = [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
        template = _CHATML.replace("IMAGE", "<image>")
        tok = _word_tokenizer(["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"]
                              + row_col, template)
        text.update(model_type="llama", vocab_size=len(tok))
        cfg = tf.SmolVLMConfig(vision_config=dict(image_size=512, patch_size=16, **_VISION), text_config=text,
                               image_token_id=tok.convert_tokens_to_ids("<image>"), scale_factor=4)
        model_cls = tf.SmolVLMForConditionalGeneration
        ip = tf.SmolVLMImageProcessorPil(size={"longest_edge": 4 * 512}, max_image_size={"longest_edge": 512})
        make = lambda: image_only_processor(family, ip, tok, template, image_seq_len=64)  # noqa: E731
    elif family == "llava_onevision":
        template = _CHATML.replace("IMAGE", "<image>")
        tok = _word_tokenizer(["<image>", "<video>"], template)
        text.update(model_type="qwen2", vocab_size=len(tok))
        # the real checkpoints go up to 6×6 tiles (anyres_max_9 then pools): 1×2 and 2×1 keep CPU prompts short
        pins = [[384, 384], [384, 768], [768, 384]]
        cfg = tf.LlavaOnevisionConfig(
            vision_config=dict(model_type="siglip_vision_model", image_size=384, patch_size=14, **_VISION),
            text_config=text, image_token_index=tok.convert_tokens_to_ids("<image>"),
            video_token_index=tok.convert_tokens_to_ids("<video>"), image_grid_pinpoints=pins)
        model_cls = tf.LlavaOnevisionForConditionalGeneration
        ip = tf.LlavaOnevisionImageProcessorPil(size={"height": 384, "width": 384}, image_grid_pinpoints=pins)
        make = lambda: image_only_processor(family, ip, tok, template, num_image_tokens=729,  # noqa: E731
                                            vision_feature_select_strategy="full")
    else:
        raise ValueError(f"unknown family {family!r}; valid: {', '.join(FAMILY_DEPTH)}")
    torch.manual_seed(0)
    with torch.device(device):
        model = model_cls(cfg).to(dtype).eval()
    model.generation_config.eos_token_id = None
    return LoadedVlm(model, make(), family_of(family).name, f"random-{family}", "")

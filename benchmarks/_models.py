"""Random-weight models at real sizes for the performance scripts (no download; not part of the package)."""

from __future__ import annotations

import torch

#: A Llama decoder small enough for CPUs, and LLaVA-1.5-7B's.
LLAMA_SIZES = {
    "small": dict(
        hidden_size=1024, intermediate_size=2816, num_hidden_layers=12, num_attention_heads=16, num_key_value_heads=16
    ),
    "7b": dict(
        hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32
    ),
}
#: LLaVA-1.5's vision tower: CLIP ViT-L/14 at 336 px (24×24 = 576 image tokens).
CLIP_L14_336 = dict(
    model_type="clip_vision_model",
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=24,
    num_attention_heads=16,
    image_size=336,
    patch_size=14,
    projection_dim=768,
)
#: LLaVA-1.5's chat format.
LLAVA_TEMPLATE = (
    "{% for m in messages %}{{ m['role'].upper() }}: "
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{{ '\\n' }}{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def word_tokenizer(vocab_size: int, special: list[str]):
    """A word-level tokenizer of ``vocab_size`` entries: the specials, then words ``w0``, ``w1`` …
    (the text of a benchmark prompt is just so many tokens)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    names = ["<pad>", "<unk>", "<s>", "</s>", *special]
    vocab = {t: i for i, t in enumerate(names + [f"w{i}" for i in range(vocab_size - len(names))])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        additional_special_tokens=special,
        padding_side="left",
    )


def random_llava(size: str, device: str, dtype: torch.dtype):
    """A LLaVA-1.5-architecture model with random weights (``size`` in :data:`LLAMA_SIZES`), as a
    :class:`attnprompt.models.LoadedVlm`; end-of-sequence is off, so it always generates its budget."""
    from transformers import CLIPImageProcessorPil, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    from attnprompt.models import LoadedVlm

    tok = word_tokenizer(32000, ["<image>"])
    cfg = LlavaConfig(
        vision_config=CLIP_L14_336,
        text_config=dict(
            model_type="llama",
            vocab_size=32000,
            max_position_embeddings=4096,
            pad_token_id=0,
            bos_token_id=2,
            eos_token_id=3,
            **LLAMA_SIZES[size],
        ),
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        image_seq_length=576,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = LlavaForConditionalGeneration(cfg).to(dtype).eval()
    model.generation_config.eos_token_id = None
    ip = CLIPImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    proc = LlavaProcessor(
        image_processor=ip,
        tokenizer=tok,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_TEMPLATE,
    )
    return LoadedVlm(model, proc, "llava", f"random-llava-{size}", "")

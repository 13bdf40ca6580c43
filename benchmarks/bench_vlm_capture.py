"""api-vlm attribution cost against plain generation, measured side by side in one run.

On one random-weight LLaVA-architecture model (no download): a CLIP ViT-L/14-336 vision tower
and a Llama decoder — ``small`` (~0.5 B parameters in all, for CPUs) or ``7b`` (LLaVA-1.5-7B
size, for a GPU) — times (median of interleaved repeats) and peak extra memory of:

- ``generate``:        processor + greedy ``generate`` (SDPA, KV cache) — what answering costs;
- ``api-vlm``:         processor + the same generation with the attention capture + the map;
- ``eager+attentions``: processor + eager attention with ``output_attentions=True`` over all
                        layers, the way the authors' code reads attention.

Every op generates exactly ``--tokens`` tokens (EOS disabled). Target: api-vlm ≤ 1.15× generate.

    python benchmarks/bench_vlm_capture.py [--size small|7b] [--tokens 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _measure import compare, exact_cpu_memory, table  # noqa: E402

TEXT = {
    "small": dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=12, num_attention_heads=16, num_key_value_heads=16),
    "7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32),
}
VISION = dict(model_type="clip_vision_model", hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
              num_attention_heads=16, image_size=336, patch_size=14, projection_dim=768)


def build(size: str, device: str, dtype: torch.dtype):
    from transformers import CLIPImageProcessorPil, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    from attnprompt.models import LoadedVlm
    from vlm_builders import LLAVA_TEMPLATE, make_tokenizer

    tok = make_tokenizer(["<image>"], 32000, LLAVA_TEMPLATE)
    cfg = LlavaConfig(
        vision_config=VISION,
        text_config=dict(model_type="llama", vocab_size=32000, max_position_embeddings=4096, pad_token_id=0,
                         bos_token_id=2, eos_token_id=3, **TEXT[size]),
        image_token_index=tok.convert_tokens_to_ids("<image>"), image_seq_length=576, vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = LlavaForConditionalGeneration(cfg).to(dtype).eval()
    model.generation_config.eos_token_id = None  # always generate exactly --tokens tokens
    ip = CLIPImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    proc = LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=14, vision_feature_select_strategy="default",
                          num_additional_image_tokens=1, chat_template=LLAVA_TEMPLATE)
    return LoadedVlm(model, proc, "llava", f"random-llava-{size}", "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="small", choices=list(TEXT))
    ap.add_argument("--tokens", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, help="default float32 on CPU, float16 on CUDA")
    args = ap.parse_args()
    if not args.device.startswith("cuda"):
        exact_cpu_memory()
    dtype = getattr(torch, args.dtype or ("float16" if args.device.startswith("cuda") else "float32"))
    from attnprompt.attribution.vlm_attention import VlmAttributor, VlmConfig

    vlm = build(args.size, args.device, dtype)
    model, proc = vlm.model, vlm.processor
    n_params = sum(p.numel() for p in model.parameters())
    attributor = VlmAttributor(vlm, VlmConfig.from_preset(max_new_tokens=args.tokens))
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    query = "what is in the image ? describe the red car on the left"

    def inputs():
        canvas, _ = attributor._prepare(image)
        return proc(text=[attributor.prompt(query)], images=[canvas], return_tensors="pt").to(args.device, dtype)

    @torch.no_grad()
    def generate():
        return model.generate(**inputs(), max_new_tokens=args.tokens, do_sample=False)

    def api_vlm():
        return attributor.run([image], [query])

    @torch.no_grad()
    def eager_all():
        model.set_attn_implementation({"text_config": "eager"})
        try:
            return model.generate(**inputs(), max_new_tokens=args.tokens, do_sample=False,
                                  output_attentions=True, return_dict_in_generate=True)
        finally:
            model.set_attn_implementation({"text_config": "sdpa"})

    n_prompt = inputs()["input_ids"].shape[1]
    print(f"device {args.device}, dtype {dtype}, {n_params / 1e9:.2f} B parameters ({args.size}), prompt {n_prompt} tokens "
          f"(576 image), {args.tokens} new tokens, capture at layer {attributor.layers}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, repeats {args.repeats}")
    results = compare({"generate": generate, "api-vlm": api_vlm, "eager+attentions": eager_all}, args.device, args.repeats)
    print(table("api-vlm vs plain generation", results, "generate"))


if __name__ == "__main__":
    main()

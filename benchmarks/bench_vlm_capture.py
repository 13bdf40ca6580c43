"""api-vlm attribution cost against plain generation, measured side by side in one run.

On one random-weight LLaVA-architecture model (no download): a CLIP ViT-L/14-336 vision tower
and a Llama decoder — ``small`` (~0.5 B parameters in all, for CPUs) or ``7b`` (LLaVA-1.5-7B
size, for a GPU) — times (median of interleaved repeats) and peak extra memory of:

- ``generate``:        :func:`attnprompt.models.generate` (processor + greedy generation, SDPA, KV cache) —
                        what answering costs;
- ``api-vlm``:         processor + the same generation with the attention capture + the map;
- ``eager+attentions``: processor + eager attention with ``output_attentions=True`` over all
                        layers, the way the authors' code reads attention.

Every op generates exactly ``--tokens`` tokens (EOS disabled). Target: api-vlm ≤ 1.15× generate.

``--family`` measures, instead, a random-weight model of a newer family at its real decoder depth and image-token
geometry, with narrow layers so that CPUs can run it (``_models.random_family``): Qwen3-VL, InternVL3, Gemma 3,
SmolVLM or LLaVA-OneVision (``all`` for each in turn); ``generate`` against ``api-vlm`` only.

    python benchmarks/bench_vlm_capture.py [--size small|7b] [--tokens 20] [--repeats 3]
    python benchmarks/bench_vlm_capture.py --family all [--tokens 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import add_device_args, compare, device_dtype, table  # noqa: E402
from _models import FAMILY_DEPTH, LLAMA_SIZES, random_family, random_llava  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="small", choices=list(LLAMA_SIZES))
    ap.add_argument("--tokens", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--family", default=None, choices=[*FAMILY_DEPTH, "all"],
                    help="a newer family at its real depth instead of LLaVA-1.5 (all: each in turn)")
    add_device_args(ap)
    args = ap.parse_args()
    dtype = device_dtype(args)
    if args.family:
        for family in FAMILY_DEPTH if args.family == "all" else [args.family]:
            bench_family(family, args, dtype)
        return
    from attnprompt.attribution.configs import VlmConfig
    from attnprompt.attribution.vlm_attention import VlmAttributor
    from attnprompt.models import chat_prompt, generate

    vlm = random_llava(args.size, args.device, dtype)
    model, proc = vlm.model, vlm.processor
    n_params = sum(p.numel() for p in model.parameters())
    attributor = VlmAttributor(vlm, VlmConfig.from_preset(max_new_tokens=args.tokens))
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    query = "what is in the image ? describe the red car on the left"
    request = attributor.request(image, query)  # what both the answer and the map generate from

    def inputs():
        return proc(text=[chat_prompt(proc, request)], images=[request.images[0]], return_tensors="pt").to(
            args.device, dtype
        )

    def plain_generate():
        return generate(vlm, [request])

    def api_vlm():
        return attributor.run([image], [query])

    @torch.no_grad()
    def eager_all():
        model.set_attn_implementation({"text_config": "eager"})
        try:
            return model.generate(
                **inputs(),
                max_new_tokens=args.tokens,
                do_sample=False,
                output_attentions=True,
                return_dict_in_generate=True,
            )
        finally:
            model.set_attn_implementation({"text_config": "sdpa"})

    n_prompt = inputs()["input_ids"].shape[1]
    print(
        f"device {args.device}, dtype {dtype}, {n_params / 1e9:.2f} B parameters ({args.size}), "
        f"prompt {n_prompt} tokens "
        f"(576 image), {args.tokens} new tokens, capture at layer {attributor.layers}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, repeats {args.repeats}"
    )
    results = compare(
        {"generate": plain_generate, "api-vlm": api_vlm, "eager+attentions": eager_all}, args.device, args.repeats
    )
    print(table("api-vlm vs plain generation", results, "generate"))


def bench_family(family: str, args, dtype) -> None:
    """Capture cost against plain generation on one newer family's random model (640×480 image)."""
    from attnprompt.attribution.configs import VlmConfig
    from attnprompt.attribution.vlm_attention import VlmAttributor
    from attnprompt.models import generate

    vlm = random_family(family, args.device, dtype)
    attributor = VlmAttributor(vlm, VlmConfig.from_preset(max_new_tokens=args.tokens))
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    query = "what is in the image ? describe the red car on the left"
    request = attributor.request(image, query)
    out = generate(vlm, [request])
    n_prompt = out.inputs["input_ids"].shape[1]
    n_image = int((out.inputs["input_ids"][0] == attributor.image_token_id).sum())
    n_params = sum(p.numel() for p in vlm.model.parameters())
    print(f"\n{family}: device {args.device}, dtype {dtype}, {n_params / 1e6:.0f} M parameters, "
          f"{FAMILY_DEPTH[family]} decoder layers, prompt {n_prompt} tokens ({n_image} image), {args.tokens} new "
          f"tokens, capture at layer {attributor.layers}, threads {torch.get_num_threads()}, repeats {args.repeats}")
    ops = {"generate": lambda: generate(vlm, [request]), "api-vlm": lambda: attributor.run([image], [query])}
    results = compare(ops, args.device, args.repeats)
    print(table(f"{family}: api-vlm vs plain generation", results, "generate"))


if __name__ == "__main__":
    main()

"""CARVE's cost: ours against the public code's loop and against its floor, side by side in one run.

On random-weight models (no download) — LLaVA-1.5 architecture at the size ``bench_vlm_capture.py``
uses (CLIP ViT-L/14-336 tower, a 12-layer Llama of width 1024) and a Qwen2-VL of similar size —
times (median of interleaved repeats) and peak extra memory of the whole ``carve`` strategy on one
image and question, the general pass not cached:

- ``ours``:        the task and general passes in one batch with the attention capture (SDPA, KV
                   cache, one row per captured layer per step), the contrast, the regions, the answer;
- ``public-loop``: the public code's way — each pass re-runs the whole sequence with eager attention
                   and every layer's attention at every step (no KV cache), each (step, layer) map
                   resized to the image — then the same regions and answer;
- ``floor``:       two plain greedy generations (task, general) and the answer: no map at all.

Every generation runs ``--tokens`` steps (EOS off). Targets: ours ≥ 8× faster than the public loop
at 32 tokens, and ≤ 1.2× the floor.

    python benchmarks/bench_carve.py [--models llava qwen2-vl] [--tokens 32] [--repeats 1]
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
from _models import random_llava, random_qwen2_vl  # noqa: E402

QUESTION = "What colour is the car parked next to the red building?"
SUFFIX = "Answer the question using a single word or phrase."


def public_loop_pass(attributor, image: Image.Image, prompt: str, tokens: int) -> list[list[np.ndarray]]:
    """One pass the public code's way: the whole sequence again at every step, eager, all layers."""
    from attnprompt.models import chat_prompt

    inner, vlm = attributor.inner, attributor.inner.vlm
    request = inner.request(image, prompt)
    inputs = vlm.processor(text=[chat_prompt(vlm.processor, request)], images=[list(request.images)],
                           return_tensors="pt").to(vlm.model.device)
    positions = (inputs["input_ids"][0] == inner.image_token_id).nonzero().flatten()
    ids, extra = inputs["input_ids"], {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    if "pixel_values" in extra:
        extra["pixel_values"] = extra["pixel_values"].to(vlm.model.dtype)
    steps = []
    vlm.model.set_attn_implementation({"text_config": "eager"})  # the public code loads with eager attention
    try:
        for _ in range(tokens):
            with torch.no_grad():
                out = vlm.model(input_ids=ids, attention_mask=torch.ones_like(ids), output_attentions=True,
                                use_cache=False, **extra)
            steps.append([a[0, :, -1, positions].float().mean(0).cpu().numpy() for a in out.attentions])  # all layers
            ids = torch.cat([ids, out.logits[:, -1].argmax(-1, keepdim=True)], 1)
            if "mm_token_type_ids" in extra:
                text = torch.zeros_like(extra["mm_token_type_ids"][:, -1:])  # a generated token is text
                extra["mm_token_type_ids"] = torch.cat([extra["mm_token_type_ids"], text], 1)
    finally:
        vlm.model.set_attn_implementation({"text_config": "sdpa"})
    return steps


def run(name: str, vlm, args) -> str:
    from attnprompt.api import build_strategy
    from attnprompt.backends.local import LocalVLM
    from attnprompt.models import generate
    from attnprompt.regions import RegionConfig, select_regions
    from attnprompt.render import upsample
    from attnprompt.types import Request, Sample

    backend = LocalVLM(vlm, batch_size=2)
    strategy = build_strategy("carve", backend, max_new_tokens=args.tokens, map_max_new_tokens=args.tokens)
    attributor = strategy.attributor
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    sample = Sample(image, QUESTION, suffix=SUFFIX)
    prompt = f"{QUESTION} {SUFFIX}"

    def ours():
        attributor._general.clear()  # cold: the general pass is computed, not cached
        return strategy.run([sample])

    layout = attributor.inner.token_attention([image], [QUESTION], suffixes=[SUFFIX])[0].layout  # not timed

    def public_loop():
        task = public_loop_pass(attributor, image, prompt, args.tokens)
        general = public_loop_pass(attributor, image, f"{attributor.config.general} {SUFFIX}", args.tokens)
        total = np.zeros((image.size[1], image.size[0]))
        for s in range(min(len(task), len(general))):
            for layer in attributor.inner.layers:  # each (step, layer) map resized to the image, as theirs
                ratio = layout.gather(task[s][layer] / (general[s][layer] + attributor.config.epsilon))
                total += (s + 1) * upsample(ratio, image.size, extent=layout.extent, clip=False)
        crop = select_regions(total, image, RegionConfig.from_preset()).crop
        return generate(vlm, [Request.single([image, crop], prompt, max_new_tokens=args.tokens)])

    def floor():
        requests = [Request.single(image, p, max_new_tokens=args.tokens)
                    for p in (prompt, f"{attributor.config.general} {SUFFIX}")]
        generate(vlm, requests[:1])
        generate(vlm, requests[1:])
        return generate(vlm, [Request.single([image, image], prompt, max_new_tokens=args.tokens)])

    ops = {"ours": ours, "public-loop": public_loop, "floor": floor}
    n_params = sum(p.numel() for p in vlm.model.parameters())
    header = (f"{name}: {n_params / 1e9:.2f} B parameters, {args.tokens} new tokens per generation, "
              f"layers {list(attributor.inner.layers)} of {attributor.inner.depth}")
    return table(header, compare(ops, args.device, args.repeats, warmup=("ours", "floor")), "ours")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["llava", "qwen2-vl"], choices=["llava", "qwen2-vl"])
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=1)
    add_device_args(ap)
    args = ap.parse_args()
    dtype = device_dtype(args)
    print(f"device {args.device}, dtype {dtype}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"repeats {args.repeats}, image 640x480", flush=True)
    builders = {"llava": lambda: random_llava("small", args.device, dtype),
                "qwen2-vl": lambda: random_qwen2_vl("small", args.device, dtype)}
    for name in args.models:
        print(run(name, builders[name](), args), flush=True)


if __name__ == "__main__":
    main()

"""CARVE's cost: ours against the public code's loop, its floor and a plain answer, side by side in one run.

On random-weight models (no download) — LLaVA-1.5 architecture at the size ``bench_vlm_capture.py``
uses (CLIP ViT-L/14-336 tower, a 12-layer Llama of width 1024) and a Qwen2-VL of similar size —
times (median of interleaved repeats) and peak extra memory of one image and question, for answers
of 3, 8 and 32 tokens (``--lengths``):

- ``ours``:        the whole ``carve`` strategy — the task and general passes in one batch with the
                   attention capture (SDPA, KV cache, one row per captured layer per step), the contrast,
                   the regions, the answer; the general pass not cached (each call gets an image one
                   pixel apart, so no cache can answer it);
- ``public-loop``: YuyaoGe/CARVE's ``generate_with_attention`` as its ``carve()`` runs it — the question and
                   the general instruction, each followed by "Answer the question using a single word or
                   phrase.", each pass re-running the whole sequence (image included) at every step with
                   eager attention and every layer's attention returned, until end-of-sequence; each
                   (step, layer) map resized to the image and summed; then the same regions and answer;
- ``floor``:       the same generations with no map at all, batched as ours is: the task and general
                   passes in one batch, then the answer (original and crop — here the original twice);
- ``plain``:       one plain answer to the question from the original image.

Every answer (task pass, general pass, the final answer) is N tokens, its N-th the end-of-sequence token,
and every way stops there (``_models.AnswerLength``: random weights never choose it, a real model asked
for a single word or phrase does). ``--smoke`` runs tiny models at one length in seconds: it proves the
script runs; its figures mean nothing.

    python benchmarks/bench_carve.py [--models llava qwen2-vl] [--lengths 3 8 32] [--repeats 1]
    python benchmarks/bench_carve.py --ops floor --repeats 5    # ours against its floor, without the slow loop
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import add_device_args, compare, device_dtype, table  # noqa: E402
from _models import AnswerLength, Attention, random_llava, random_qwen2_vl  # noqa: E402

QUESTION = "What colour is the car parked next to the red building?"
SUFFIX = "Answer the question using a single word or phrase."  # the public code's ANSWER_SUFFIX, on both passes
BUDGET = 32  # the public code's max_new_tokens, for every generation
OPS = ["ours", "public-loop", "floor", "plain"]


def public_loop_pass(attributor, image: Image.Image, prompt: str) -> list[list[np.ndarray]]:
    """One pass the public code's way: the whole sequence again at every step, eager, every layer's attention
    returned, until end-of-sequence or the budget."""
    from attnprompt.models import chat_prompt, end_of_sequence_ids

    inner, vlm = attributor.inner, attributor.inner.vlm
    request = inner.request(image, prompt)
    inputs = vlm.processor(text=[chat_prompt(vlm.processor, request)], images=[list(request.images)],
                           return_tensors="pt").to(vlm.model.device)
    positions = (inputs["input_ids"][0] == inner.image_token_id).nonzero().flatten()
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    if "pixel_values" in extra:
        extra["pixel_values"] = extra["pixel_values"].to(vlm.model.dtype)
    eos = end_of_sequence_ids(vlm)
    steps = []
    with Attention(vlm.model, "eager"):  # the public code loads the whole model with eager attention
        for _ in range(BUDGET):
            with torch.no_grad():
                out = vlm.model(input_ids=ids, attention_mask=mask, output_attentions=True, **extra)
            token = out.logits[:, -1].argmax(-1, keepdim=True)
            steps.append([a[0, :, -1, positions].float().mean(0).cpu().numpy() for a in out.attentions])  # all layers
            if int(token) in eos:
                break
            ids, mask = torch.cat([ids, token], 1), torch.cat([mask, torch.ones_like(token)], 1)
            if "mm_token_type_ids" in extra:
                text = torch.zeros_like(extra["mm_token_type_ids"][:, -1:])  # a generated token is text
                extra["mm_token_type_ids"] = torch.cat([extra["mm_token_type_ids"], text], 1)
    return steps


def run(name: str, vlm, tokens: int, args) -> str:
    from attnprompt.api import build_strategy
    from attnprompt.backends.local import LocalVLM
    from attnprompt.models import generate
    from attnprompt.regions import RegionConfig, select_regions
    from attnprompt.render import upsample
    from attnprompt.types import Request, Sample

    backend = LocalVLM(vlm, batch_size=2)
    strategy = build_strategy("carve", backend, max_new_tokens=BUDGET, map_max_new_tokens=BUDGET)
    attributor = strategy.attributor
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    prompt = f"{QUESTION} {SUFFIX}"
    general = f"{attributor.config.general} {SUFFIX}"
    fresh = itertools.count()

    def ours():
        copy = image.copy()  # one pixel apart from every other call's: the general pass is computed, not cached
        i = next(fresh)
        copy.putpixel((i % 640, i // 640 % 480), (i % 256, 0, 0))
        return strategy.run([Sample(copy, QUESTION, suffix=SUFFIX)])

    layout = attributor.inner.token_attention([image], [QUESTION], suffixes=[SUFFIX])[0].layout  # not timed

    def public_loop():
        task = public_loop_pass(attributor, image, prompt)
        other = public_loop_pass(attributor, image, general)
        total = np.zeros((image.size[1], image.size[0]))
        for s in range(min(len(task), len(other))):
            for layer in attributor.inner.layers:  # each (step, layer) map resized to the image, as theirs
                ratio = layout.gather(task[s][layer] / (other[s][layer] + attributor.config.epsilon))
                total += (s + 1) * upsample(ratio, image.size, extent=layout.extent, clip=False)
        crop = select_regions(total, image, RegionConfig.from_preset()).crop
        return generate(vlm, [Request.single([image, crop], prompt, max_new_tokens=BUDGET)])

    def floor():
        generate(vlm, [Request.single(image, p, max_new_tokens=BUDGET) for p in (prompt, general)])
        return generate(vlm, [Request.single([image, image], prompt, max_new_tokens=BUDGET)])

    def plain():
        return generate(vlm, [Request.single(image, prompt, max_new_tokens=BUDGET)])

    ops = {k: v for k, v in {"ours": ours, "public-loop": public_loop, "floor": floor, "plain": plain}.items()
           if k in args.ops}
    n_params = sum(p.numel() for p in vlm.model.parameters())
    header = (f"{name}: {n_params / 1e9:.2f} B parameters, answers of {tokens} tokens (end-of-sequence the last), "
              f"layers {list(attributor.inner.layers)} of {attributor.inner.depth}")
    with AnswerLength(vlm.model, tokens, vlm.processor.tokenizer.eos_token_id):
        results = compare(ops, args.device, args.repeats, warmup=[k for k in ("ours", "floor", "plain") if k in ops])
    return table(header, results, "ours", "plain")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["llava", "qwen2-vl"], choices=["llava", "qwen2-vl"])
    ap.add_argument("--lengths", type=int, nargs="+", default=[3, 8, 32],
                    help=f"answer lengths in tokens, end-of-sequence included (at most {BUDGET})")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--ops", nargs="+", default=OPS, choices=OPS,
                    help="which to time (all by default; ours and plain always): e.g. more repeats without the loop")
    ap.add_argument("--smoke", action="store_true", help="tiny models, one length: seconds, to prove the script runs")
    add_device_args(ap)
    args = ap.parse_args()
    args.ops = sorted({"ours", "plain", *args.ops}, key=OPS.index)
    if any(not 1 <= n <= BUDGET for n in args.lengths):
        ap.error(f"--lengths must be between 1 and {BUDGET}")
    size = "tiny" if args.smoke else "small"
    lengths = args.lengths[:1] if args.smoke else args.lengths
    dtype = device_dtype(args)
    print(f"device {args.device}, dtype {dtype}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"repeats {args.repeats}, image 640x480, size {size}", flush=True)
    builders = {"llava": lambda: random_llava(size, args.device, dtype),
                "qwen2-vl": lambda: random_qwen2_vl(size, args.device, dtype)}
    for name in args.models:
        vlm = builders[name]()
        for tokens in lengths:
            print(run(name, vlm, tokens, args), flush=True)
        del vlm


if __name__ == "__main__":
    main()

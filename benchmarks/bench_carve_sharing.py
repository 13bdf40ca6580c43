"""CARVE's passes sharing their work (issue 40, item 3): the map — task and general pass — with the image encoded once
and the prompt's prefix prefilled once, against the same map as one plain batch and against the batched floor, side
by side in one run.

On random-weight models (no download): the LLaVA-1.5 architecture (CLIP ViT-L/14-336 tower, 576 image tokens, a
12-layer Llama of width 1024) and a Qwen2-VL of similar size; one 640×480 image; the question and CARVE's general
instruction, each with the public code's suffix; every pass ``--tokens`` new tokens (end of sequence is off in the
random models, so each runs its whole budget). CPU seconds of this process (one thread; the median of interleaved
repeats after one warm-up of each):

- ``shared``: ``ContrastiveAttributor.attribute`` as it runs now — the task and general rows of the image share its
  encoding and their prefix (``models.shared_prefix``), each goes on from a copy of the prefix's KV cache, capture on;
- ``batch``:  the same map with ``share_prefix=False`` — the two rows as one left-padded batch (the way before);
- ``floor``:  the same two generations with no map at all, batched as the map's rows are: one ``generate`` of the
  question and the general instruction, no capture (the batched floor);
- ``plain``:  one answer to the question (for scale).

Every call of ``shared`` and ``batch`` gets the image with one pixel changed, so CARVE's general-pass cache never
answers. The maps of ``shared`` and ``batch`` are compared (raw contrast, relative; normalised grid, absolute).
``--smoke`` runs tiny models (seconds: proves the script runs; its figures mean nothing).

    PYTHONPATH=src python benchmarks/bench_carve_sharing.py [--models llava qwen2-vl] [--tokens 8] [--repeats 3]
        [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _models import random_llava, random_qwen2_vl  # noqa: E402

QUESTION = "What colour is the car parked next to the red building?"
SUFFIX = "Answer the question using a single word or phrase."  # the public code's ANSWER_SUFFIX, on both passes
#: The issue's target: the map (task + general pass) at most this share of the batched floor's time on LLaVA.
TARGET = 0.8


def cpu_times(ops: dict, repeats: int) -> dict[str, float]:
    """Median CPU seconds of each op, interleaved so that drift affects all alike, after one untimed call of each."""
    for fn in ops.values():
        fn()
    seconds: dict[str, list[float]] = {k: [] for k in ops}
    for _ in range(repeats):
        for name, fn in ops.items():
            c0 = time.process_time()
            fn()
            seconds[name].append(time.process_time() - c0)
    return {k: statistics.median(v) for k, v in seconds.items()}


def run(name: str, vlm, tokens: int, repeats: int) -> list[str]:
    from attnprompt.attribution.configs import CarveConfig
    from attnprompt.attribution.contrastive import ContrastiveAttributor
    from attnprompt.models import generate
    from attnprompt.text import with_suffix
    from attnprompt.types import Request

    config = CarveConfig.from_preset(max_new_tokens=tokens)
    shared = ContrastiveAttributor(vlm, config, share_prefix=True)
    batch = ContrastiveAttributor(vlm, config, share_prefix=False)
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    fresh = itertools.count(1)

    def new_image() -> Image.Image:
        copy, i = image.copy(), next(fresh)  # one pixel apart from every other call's: the general pass is computed
        copy.putpixel((i % 640, i // 640 % 480), (i % 256, 0, 0))
        return copy

    prepared = shared.inner.model_input(image)[0]  # the floor gets the image as the passes read it
    prompts = [with_suffix(QUESTION, SUFFIX), with_suffix(config.general, SUFFIX)]
    ops = {
        "shared": lambda: shared.attribute([new_image()], [QUESTION], suffixes=[SUFFIX]),
        "batch": lambda: batch.attribute([new_image()], [QUESTION], suffixes=[SUFFIX]),
        "floor": lambda: generate(vlm, [Request.single(prepared, p, max_new_tokens=tokens) for p in prompts],
                                  fit=config.fit),
        "plain": lambda: generate(vlm, [Request.single(prepared, prompts[0], max_new_tokens=tokens)], fit=config.fit),
    }
    seconds = cpu_times(ops, repeats)
    one = new_image()
    [a], [b] = (c.attribute([one], [QUESTION], suffixes=[SUFFIX]) for c in (shared, batch))
    raw = float(np.abs(a.raw - b.raw).max() / np.abs(b.raw).max())
    grid = float(np.abs(a.grid - b.grid).max())
    n_params = sum(p.numel() for p in vlm.model.parameters())
    lines = [f"{name}: {n_params / 1e9:.2f} B parameters, {tokens} new tokens per pass, layers "
             f"{list(shared.inner.layers)} of {shared.inner.depth}",
             f"  {'op':10s} {'CPU s':>8s} {'× floor':>9s} {'× batch':>9s}"]
    for op, s in seconds.items():
        lines.append(f"  {op:10s} {s:8.3f} {s / seconds['floor']:9.2f} {s / seconds['batch']:9.2f}")
    lines.append(f"  maps, shared vs batch: raw contrast {raw:.1e} (relative), grid {grid:.1e} (absolute)")
    if name == "llava":
        ratio = seconds["shared"] / seconds["floor"]
        verdict = "met" if ratio <= TARGET else "NOT met"
        lines.append(f"  the map {ratio:.2f}× the batched floor (target ≤ {TARGET}): {verdict}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["llava", "qwen2-vl"], choices=["llava", "qwen2-vl"])
    ap.add_argument("--tokens", type=int, default=8, help="new tokens of every pass (default 8)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="tiny models, one repeat: proves the script runs")
    ap.add_argument("--out", default=None, help="also write carve_sharing_cpu.txt into this folder")
    args = ap.parse_args()
    torch.set_num_threads(1)
    size, repeats = ("tiny", 1) if args.smoke else ("small", args.repeats)
    header = (f"torch {torch.__version__}, threads {torch.get_num_threads()}, CPU seconds, median of {repeats} "
              f"after one warm-up, image 640x480, size {size}")
    print(header, flush=True)
    texts = [header]
    builders = {"llava": random_llava, "qwen2-vl": random_qwen2_vl}
    for name in args.models:
        vlm = builders[name](size, "cpu", torch.float32)
        lines = run(name, vlm, args.tokens, repeats)
        print("\n".join(lines), flush=True)
        texts += lines
        del vlm
    if args.out:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
        from attnprompt.files import atomic_write

        atomic_write(Path(args.out) / "carve_sharing_cpu.txt", lambda f: f.write("\n".join(texts) + "\n"),
                     binary=False)


if __name__ == "__main__":
    main()

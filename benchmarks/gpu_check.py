"""The GPU check of issue 39: real-size models on a real GPU, with no network.

For each model (default LLaVA-1.5-7B and Qwen2.5-VL-3B), random weights are built at full size from the real
checkpoint's own files (``config.json``, processor, tokenizer, chat template: ``--checkpoints``, default
``$ATTNPROMPT_CHECKPOINTS``, else ``shared/data/checkpoints`` in or beside the checkout: tools/checkpoints.py),
straight onto the device in ``--dtype`` (default bfloat16), and wrapped with the checkpoint's processor
(:func:`attnprompt.models.wrap_vlm`). Then, side by side in one run, on one photo:

- the peak GPU memory and the wall time (median of ``--repeats``, after one warm-up) of plain ``generate``, the
  ``api`` strategy with api-vlm's map, ``carve`` and ``carve --preset vicrop``, each as a ratio to plain;
- the capture's exactness: the attention rows api-vlm reads (captured under the model's own kernel, SDPA, and
  FlashAttention-2 where flash-attn is installed) against eager ``output_attentions`` on the same GPU: the largest
  difference of a probability, per kernel, and whether the greedy tokens agree.

Random weights answer nonsense, so every generation runs its whole token budget (no end-of-sequence stop): the
times compare equal amounts of work. ``--through-disk`` also saves the random weights and loads them back through
:func:`attnprompt.models.load_vlm` (the user's path: dtype, weights straight to the device), timing it.

    PYTHONPATH=src python benchmarks/gpu_check.py --json gpu_check.json   # a GPU: a few minutes
    PYTHONPATH=src python benchmarks/gpu_check.py --smoke                 # CPU in seconds: the configs reduced
                                                                          # (tools/checkpoints.py), float32, 3 tokens

A machine that has the checkout but not ``shared/`` (a lent GPU): copy the two folders of files into the checkout
first (a few MB, untracked), e.g. ``mkdir -p gpu_files/llava-hf gpu_files/Qwen && cp -r
../shared/data/checkpoints/llava-hf/llava-1.5-7b-hf gpu_files/llava-hf/ && cp -r
../shared/data/checkpoints/Qwen/Qwen2.5-VL-3B-Instruct gpu_files/Qwen/``, then run it there with
``--checkpoints gpu_files``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tools beside the package

from tools.checkpoints import CHECKPOINTS, reduced_config  # noqa: E402

MODELS = ("llava-hf/llava-1.5-7b-hf", "Qwen/Qwen2.5-VL-3B-Instruct")
QUESTION = "What is written on the small sign at the left of the picture?"
#: The conditions, as :func:`attnprompt.ask` keywords.
CONDITIONS = {
    "plain": dict(strategy="plain"),
    "api-vlm": dict(strategy="api", method="api-vlm"),
    "carve": dict(strategy="carve"),
    "vicrop": dict(strategy="carve", preset="vicrop"),
}


def photo(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """A photo-like test image: smooth colour fields with noise (random weights do not care what it shows)."""
    w, h = size
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, h // 64), max(2, w // 64), 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR), dtype=np.int16)
    noise = rng.integers(-12, 13, (h, w, 3), dtype=np.int16)
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def build(files: Path, device: str, dtype: torch.dtype, reduce: bool = False):
    """Random weights of the checkpoint's config (made small with ``reduce``), made on ``device`` in ``dtype``; end
    of sequence off."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    from attnprompt.models import LoadOptions, wrap_vlm

    config = AutoConfig.from_pretrained(files)
    if reduce:
        config = reduced_config(config)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype).eval()
    vlm = wrap_vlm(model, str(files), loading=LoadOptions(dtype=str(dtype).removeprefix("torch.")))
    model.generation_config.eos_token_id = None  # every generation runs its whole budget
    return vlm


def through_disk(vlm, files: Path, device: str, dtype: torch.dtype) -> dict:
    """Save the random weights beside copies of the files, then time :func:`load_vlm` on them (the user's path)."""
    import shutil

    from attnprompt.models import LoadOptions, load_vlm

    with tempfile.TemporaryDirectory() as tmp:
        vlm.model.save_pretrained(tmp)
        for path in files.iterdir():
            if path.is_file() and path.name not in ("config.json", "PROVENANCE.txt"):
                shutil.copy(path, Path(tmp) / path.name)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        loaded = load_vlm(tmp, loading=LoadOptions(device=device, dtype=str(dtype).removeprefix("torch.")))
        synchronize(device)
        seconds = time.perf_counter() - t0
        same = str(loaded.model.dtype) == str(dtype) and str(next(loaded.model.parameters()).device).startswith(
            device.split(":")[0])
        out = {"load_seconds": round(seconds, 2), "dtype_and_device_as_asked": same}
        if device.startswith("cuda"):
            out["load_peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        del loaded
    return out


def measure(vlm, image: Image.Image, device: str, tokens: int, repeats: int) -> dict:
    """Each condition: one warm-up, then ``repeats`` timed runs; the median time and the peak GPU memory."""
    from attnprompt import ask
    from attnprompt.backends.local import LocalVLM

    backend = LocalVLM(vlm, batch_size=1)
    rows = {}
    for name, kwargs in CONDITIONS.items():
        ask(image, QUESTION, vlm=backend, max_new_tokens=tokens, **kwargs)  # warm-up (and kernels compiled)
        synchronize(device)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            result = ask(image, QUESTION, vlm=backend, max_new_tokens=tokens, **kwargs)
            synchronize(device)
            times.append(time.perf_counter() - t0)
        row = {"seconds": round(statistics.median(times), 3), "answered": bool(result.answer.ok or
                                                                               result.answer.failure == "empty")}
        if device.startswith("cuda"):
            row["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        rows[name] = row
    plain = rows["plain"]
    for row in rows.values():
        row["time_ratio"] = round(row["seconds"] / plain["seconds"], 2)
        if "peak_gib" in row:
            row["memory_ratio"] = round(row["peak_gib"] / plain["peak_gib"], 2)
    return rows


def exactness(vlm, image: Image.Image, device: str, steps: int = 4) -> dict:
    """The captured rows (softmax of the recorded scores) against eager ``output_attentions`` on this device, for
    the default kernel and FlashAttention-2 where it is installed: the largest difference, and token agreement."""
    import importlib.util

    from attnprompt.attribution.vlm_attention import VlmAttributor
    from attnprompt.capture import AttentionCapture
    from attnprompt.models import chat_prompt

    model = vlm.model
    attributor = VlmAttributor(vlm)
    request = attributor.request(image, QUESTION)
    inputs = vlm.processor(text=[chat_prompt(vlm.processor, request)], images=[list(request.images)],
                           return_tensors="pt").to(model.device)
    if "pixel_values" in inputs:
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    depth = model.config.get_text_config().num_hidden_layers
    layers = sorted({*attributor.layers, 0, depth - 1})
    text = model.config.get_text_config()
    own = text._attn_implementation
    kernels = [own] + (["flash_attention_2"] if device.startswith("cuda") and own != "flash_attention_2"
                       and importlib.util.find_spec("flash_attn") is not None else [])
    generate = dict(max_new_tokens=steps, do_sample=False)
    with torch.no_grad():
        model.set_attn_implementation({"text_config": "eager"})
        try:
            reference = model.generate(**inputs, output_attentions=True, return_dict_in_generate=True, **generate)
        finally:
            model.set_attn_implementation({"text_config": own})
        out = {"layers": layers, "kernels": {}}
        for kernel in kernels:
            model.set_attn_implementation({"text_config": kernel})
            try:
                with AttentionCapture(model, layers) as cap:
                    tokens = model.generate(**inputs, **generate)
            finally:
                model.set_attn_implementation({"text_config": own})
            worst = 0.0
            n = min(len(reference.attentions), len(cap.scores[layers[0]]))
            for layer in layers:
                for step in range(n):
                    expected = reference.attentions[step][layer][:, :, -1, :].float()
                    got = torch.softmax(cap.scores[layer][step], dim=-1)
                    worst = max(worst, float((got - expected).abs().max()))
            out["kernels"][kernel] = {"max_abs_diff": worst, "tokens_agree": bool(torch.equal(tokens,
                                                                                              reference.sequences))}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", type=Path, default=CHECKPOINTS, help="the real files (default %(default)s)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated hub ids under --checkpoints")
    parser.add_argument("--device", default=None, help="default cuda (cpu with --smoke)")
    parser.add_argument("--dtype", default=None, choices=("bfloat16", "float16", "float32"),
                        help="default bfloat16 (float32 with --smoke)")
    parser.add_argument("--photo", default="1024x768", help="WxH of the photo (default 1024x768)")
    parser.add_argument("--tokens", type=int, default=None, help="answer tokens (default 32; 3 with --smoke)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per condition (default 3; 1 --smoke)")
    parser.add_argument("--through-disk", action="store_true", help="also save and load back through load_vlm")
    parser.add_argument("--smoke", action="store_true", help="the configs reduced; CPU, float32, 3 tokens, 1 run, a "
                        "320x240 photo: the whole script in seconds")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    device = args.device or ("cpu" if args.smoke else "cuda")
    dtype = getattr(torch, args.dtype or ("float32" if args.smoke else "bfloat16"))
    tokens = args.tokens or (3 if args.smoke else 32)
    repeats = args.repeats or (1 if args.smoke else 3)
    size = (320, 240) if args.smoke and args.photo == "1024x768" else tuple(int(v) for v in args.photo.split("x"))
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here; run it on a GPU machine, or --smoke on the CPU", file=sys.stderr)
        return 2
    import transformers

    where = torch.cuda.get_device_name(0) if device.startswith("cuda") else platform.processor() or "cpu"
    report = {"smoke": args.smoke, "device": where,
              "torch": torch.__version__, "transformers": transformers.__version__, "dtype": str(dtype),
              "photo": list(size), "tokens": tokens, "repeats": repeats, "models": {}}
    image = photo(size)
    for hub_id in [m.strip() for m in args.models.split(",") if m.strip()]:
        files = args.checkpoints / hub_id
        if not (files / "config.json").is_file():
            print(f"gpu_check: {files} has no config.json; give --checkpoints (the real checkpoints' files)",
                  file=sys.stderr)
            return 2
        t0 = time.perf_counter()
        vlm = build(files, device, dtype, reduce=args.smoke)
        synchronize(device)
        entry = {"build_seconds": round(time.perf_counter() - t0, 1),
                 "parameters_b": round(sum(p.numel() for p in vlm.model.parameters()) / 1e9, 3)}
        if device.startswith("cuda"):
            entry["weights_gib"] = round(torch.cuda.memory_allocated() / 2**30, 2)
        entry["conditions"] = measure(vlm, image, device, tokens, repeats)
        entry["exactness"] = exactness(vlm, image, device)
        if args.through_disk:
            entry["through_disk"] = through_disk(vlm, files, device, dtype)
        report["models"][hub_id] = entry
        print(f"\n{hub_id}: {entry['parameters_b']} B parameters, built in {entry['build_seconds']} s"
              + (f", weights {entry['weights_gib']} GiB" if "weights_gib" in entry else ""))
        print(f"  {'condition':10s} {'seconds':>8s} {'× plain':>8s} {'peak GiB':>9s} {'× plain':>8s}")
        for name, row in entry["conditions"].items():
            peak, ratio = row.get("peak_gib", float("nan")), row.get("memory_ratio", float("nan"))
            print(f"  {name:10s} {row['seconds']:8.3f} {row['time_ratio']:8.2f} {peak:9.2f} {ratio:8.2f}")
        for kernel, found in entry["exactness"]["kernels"].items():
            print(f"  capture under {kernel} vs eager, layers {entry['exactness']['layers']}: max |Δp| "
                  f"{found['max_abs_diff']:.2e}, tokens agree: {found['tokens_agree']}")
        del vlm
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

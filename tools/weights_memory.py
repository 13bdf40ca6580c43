"""The memory a checkpoint's weights take, per dtype and quantisation, computed from its ``config.json`` alone.

The model is built on PyTorch's ``meta`` device (shapes, no memory) from the real config, so the parameter count is
exact (tied embeddings once). Then, per parameter: 4 bytes in float32, 2 in bfloat16 / float16; with bitsandbytes,
the weight of every ``nn.Linear`` but the output head is quantised — 1 byte (8-bit), or 0.5 byte plus one float32
scale per 64 weights (4-bit NF4) — and the rest (embeddings, norms, biases, the head, convolutions) stays 16-bit.
Weights only: the KV cache, the activations and the CUDA context come on top (docs/gpu.md says how much).

    python -m tools.weights_memory [--checkpoints DIR] [hub ids …]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tools.checkpoints import CHECKPOINT_VLMS, CHECKPOINTS

GIB = 2**30


def count(files: Path) -> dict[str, int]:
    """Parameters of the checkpoint in ``files``: all, and those in ``nn.Linear`` weights a quantiser converts."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText, CLIPModel

    config = AutoConfig.from_pretrained(files)
    with torch.device("meta"):
        model = CLIPModel(config) if config.model_type == "clip" else AutoModelForImageTextToText.from_config(config)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    seen: set[int] = set()
    total = linear = 0
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            total += p.numel()
            if isinstance(module, torch.nn.Linear) and name == "weight" and module is not head:
                linear += p.numel()
    return {"total": total, "linear": linear}


def gib(params: dict[str, int]) -> dict[str, float]:
    """Weights in GiB per way of loading them."""
    rest = params["total"] - params["linear"]
    return {
        "float32": params["total"] * 4 / GIB,
        "bfloat16 / float16": params["total"] * 2 / GIB,
        "8-bit": (params["linear"] * 1 + rest * 2) / GIB,
        "4-bit NF4": (params["linear"] * (0.5 + 4 / 64) + rest * 2) / GIB,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("hub_ids", nargs="*")
    parser.add_argument("--checkpoints", type=Path, default=CHECKPOINTS)
    args = parser.parse_args(argv)
    wanted = args.hub_ids or [*CHECKPOINT_VLMS, "openai/clip-vit-large-patch14-336"]
    print("| checkpoint | parameters | float32 | bfloat16 / float16 | 8-bit | 4-bit NF4 |")
    print("|---|---|---|---|---|---|")
    for hub_id in wanted:
        files = args.checkpoints / hub_id
        if not (files / "config.json").is_file():
            print(f"{hub_id}: no config.json under {args.checkpoints}; skipped", file=sys.stderr)
            continue
        params = count(files)
        cells = " | ".join(f"{v:.1f} GiB" for v in gib(params).values())
        print(f"| {hub_id} | {params['total'] / 1e9:.2f} B | {cells} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

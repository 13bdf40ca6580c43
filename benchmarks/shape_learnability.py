"""How fast can a small network learn *shape* on shapes scenes from scratch? A pilot.

Trains a fresh CLIP vision tower (the shapes CLIP's width and depth; ``--arch vit``) or, for
comparison, a small dilated CNN with a 16×16 output grid (``--arch cnn``) with a linear head that
names the shape under every patch (:func:`attnprompt.shapes.train_clip.patch_labels`: cells at
least a quarter covered, the most-covering object wins), on pre-rendered training scenes (2–6
objects, as the CLIP trains on); prints the loss and the held-out per-patch shape accuracy
(100 held-out scenes) every 25 steps. Chance ≈ 1/6.

Context: README, "Shapes VLM" — colour is learnt in tens of steps, shape is not; this measures
how many steps shape needs and whether the ViT or the data is the bottleneck.

    python benchmarks/shape_learnability.py [--arch vit|cnn] [--size 224] [--patch 14] [--steps 600]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from attnprompt.shapes import SHAPES
from attnprompt.shapes.train_clip import TRAIN_SEED_OFFSET, _normalise, build_dataset, shape_labels


class SmallCNN(torch.nn.Module):
    """Six 3×3 convolutions (two stride-2, two dilated), pooled to a grid×grid map of 128 features."""

    def __init__(self, grid: int) -> None:
        super().__init__()
        c, act = torch.nn.Conv2d, torch.nn.GELU
        self.net = torch.nn.Sequential(
            c(3, 32, 3, padding=1), act(), c(32, 64, 3, stride=2, padding=1), act(),
            c(64, 64, 3, padding=1), act(), c(64, 128, 3, stride=2, padding=1), act(),
            c(128, 128, 3, padding=2, dilation=2), act(), c(128, 128, 3, padding=4, dilation=4), act(),
            torch.nn.AdaptiveAvgPool2d(grid),
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.net(pixel_values).flatten(2).transpose(1, 2)  # B×N×128


def vit(size: int, patch: int, sincos: bool) -> torch.nn.Module:
    """A fresh CLIP vision tower of the shapes CLIP's width/depth; optionally 2-D sin-cos
    position embeddings at initialisation (a locality prior)."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    tower = CLIPVisionModel(CLIPVisionConfig(hidden_size=128, intermediate_size=512, num_hidden_layers=6,
                                             num_attention_heads=4, image_size=size, patch_size=patch))
    if sincos:
        g, d = size // patch, 128
        ys, xs = torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")
        q = d // 4
        omega = 1.0 / (10000 ** (torch.arange(q) / q))
        pe = torch.cat([f(c.reshape(-1, 1).float() * omega) for c in (xs, ys) for f in (torch.sin, torch.cos)], 1)
        emb = getattr(tower, "vision_model", tower).embeddings.position_embedding.weight
        with torch.no_grad():
            emb[1:] = pe * emb[1:].std() / pe.std()

    class Patches(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tower = tower

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return self.tower(pixel_values=pixel_values).last_hidden_state[:, 1:]

    return Patches()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", choices=("vit", "cnn"), default="vit")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--patch", type=int, default=14, help="ViT patch size; the CNN's grid is size // patch too")
    ap.add_argument("--sincos", action="store_true", help="ViT: 2-D sin-cos position embeddings at init")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--scenes", type=int, default=8000)
    args = ap.parse_args()
    torch.manual_seed(0)
    grid = args.size // args.patch
    images, _, labels = build_dataset([TRAIN_SEED_OFFSET + i for i in range(args.scenes)], args.size, 2, grid)
    val_images, _, val_labels = build_dataset([500_000 + i for i in range(100)], args.size, 1, grid)

    y, y_val = (shape_labels(torch.from_numpy(lab.reshape(len(lab), -1).astype(np.int64))) for lab in (labels, val_labels))
    net = SmallCNN(grid) if args.arch == "cnn" else vit(args.size, args.patch, args.sincos)
    head = torch.nn.Linear(128, len(SHAPES))
    params = list(net.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.05, betas=(0.9, 0.98))
    rng = np.random.default_rng(0)
    print(f"{args.arch} {args.size}px grid {grid}x{grid}{' sincos' if args.sincos else ''}: "
          f"{sum(p.numel() for p in params) / 1e6:.2f} M parameters, {args.scenes} training scenes", flush=True)
    t0 = time.perf_counter()
    for step in range(args.steps):
        for g in opt.param_groups:  # 20-step warm-up, cosine decay
            g["lr"] = args.lr * min(1.0, (step + 1) / 20) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        idx = rng.choice(len(images), args.batch, replace=False)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = head(net(_normalise(images[idx]))).float()
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, len(SHAPES)), y[idx].reshape(-1), ignore_index=-1)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 25 == 0 or step == args.steps - 1:
            with torch.no_grad():
                pred = head(net(_normalise(val_images))).argmax(-1)
            known = y_val >= 0
            print(f"step {step:4d}  loss {loss.item():.3f}  held-out patch shape accuracy "
                  f"{(pred[known] == y_val[known]).float().mean():.3f}  {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()

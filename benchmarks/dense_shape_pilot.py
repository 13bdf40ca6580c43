"""Can the shapes CLIP's vision tower *learn* shapes, given dense supervision? A pilot.

Fine-tunes the shapes CLIP's vision tower (192 px, 24×24 patches) with a linear head that names
the shape under every patch (cells at least a quarter covered by an object; the object covering
most of a cell wins), on fresh training scenes; prints the training loss and the held-out
per-patch accuracy (64 held-out scenes) every 50 steps. Chance is ≈ 1/6 (loss ln 6 ≈ 1.79).
Context: README, "Shapes VLM" — the tower's features carry colour but hardly shape.

    python benchmarks/dense_shape_pilot.py [--lr 1e-3] [--steps 300] [--batch 32]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from attnprompt.models import load_clip
from attnprompt.shapes import SHAPES, make_scene
from attnprompt.shapes.train_clip import MEAN, STD
from attnprompt.shapes.train_clip import patch_labels as object_labels
from attnprompt.shapes.train_clip import shape_labels

SIZE, GRID = 192, 24


def patch_labels(scene) -> torch.Tensor:
    """Shape index under each cell of the GRID×GRID patch grid, -1 where no object covers ≥ 1/4."""
    return shape_labels(torch.from_numpy(object_labels(scene, GRID).astype(np.int64).reshape(-1)))


def batch(seeds):
    xs, ys = [], []
    for seed in seeds:
        scene = make_scene(int(seed), 4, 224)
        img = np.asarray(scene.image.resize((SIZE, SIZE), 2), np.float32) / 255
        xs.append(torch.tensor((img - MEAN) / STD).permute(2, 0, 1).float())
        ys.append(patch_labels(scene))  # same cells after the resize
    return torch.stack(xs), torch.stack(ys)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    torch.manual_seed(0)
    tower = load_clip("shapes", device="cpu").model.vision_model.train()
    head = torch.nn.Linear(tower.config.hidden_size, len(SHAPES))
    opt = torch.optim.AdamW(list(tower.parameters()) + list(head.parameters()), lr=args.lr, weight_decay=0.01)
    x_val, y_val = batch(range(300_000, 300_064))
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for step in range(args.steps):
        x, y = batch(rng.integers(10**6, 2 * 10**6, args.batch))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = head(tower(pixel_values=x).last_hidden_state[:, 1:].float())
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, len(SHAPES)), y.reshape(-1), ignore_index=-1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == args.steps - 1:
            with torch.no_grad():
                pred = head(tower(pixel_values=x_val).last_hidden_state[:, 1:]).argmax(-1)
            known = y_val >= 0
            acc = (pred[known] == y_val[known]).float().mean()
            print(f"step {step:4d}  loss {loss.item():.3f}  held-out patch accuracy {acc:.3f}  "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()

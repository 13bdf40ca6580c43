"""Does the shapes CLIP's vision tower encode what an object *is*? Linear probes on its features.

For every object of 600 held-out scenes (4 objects each, 224 px, resized to the probed input
size), take the vision tower's patch features at one block — averaged over the patches the object
covers (``mean``) or at its most-covered patch (``peak``) — standardise them and fit a multinomial
logistic regression (L-BFGS, small L2) on 70 % of the objects; report accuracy on the other 30 %
for the object's colour and its shape. This is the diagnosis behind the shapes VLM's weakness
(README, "Shapes VLM"): colour is there, shape hardly.

    python benchmarks/probe_shapes_clip.py [--model shapes] [--size 192] [--layers -2 -1 0]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from attnprompt.models import load_clip
from attnprompt.shapes import COLORS, SHAPES, make_scene
from attnprompt.shapes.train_clip import MEAN, STD
from attnprompt.shapes.train_vlm import vision_tower

FIRST_SEED = 300_000  # held out from both trainings (they use seeds ≥ 1,000,000)


def features(model, size: int, scenes: int):
    """Per-object (hidden states of every block, patch weights over the grid, colour, shape)."""
    tower = vision_tower(model, size)
    grid = size // tower.config.patch_size
    out = []
    for seed in range(FIRST_SEED, FIRST_SEED + scenes):
        scene = make_scene(seed, 4, 224)
        img = np.asarray(scene.image.resize((size, size), 2), np.float32) / 255
        x = torch.tensor((img - MEAN) / STD).permute(2, 0, 1)[None].float()
        with torch.no_grad():
            hidden = [h[0, 1:] for h in tower(pixel_values=x, output_hidden_states=True).hidden_states]
        for obj in scene.objects:
            cover = torch.nn.functional.adaptive_avg_pool2d(torch.tensor(obj.mask, dtype=torch.float32)[None, None], grid)
            cover = cover.reshape(-1)
            if cover.sum() >= 0.5:  # at least half a patch visible
                out.append((hidden, cover, list(COLORS).index(obj.color), SHAPES.index(obj.shape)))
    return out


def probe(x: torch.Tensor, y: torch.Tensor, classes: int) -> float:
    """Held-out accuracy of a logistic regression trained on the first 70 %."""
    n = int(len(y) * 0.7)
    x = (x - x[:n].mean(0)) / x[:n].std(0).clamp_min(1e-6)
    w = torch.zeros(x.shape[1], classes, requires_grad=True)
    b = torch.zeros(classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=300)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x[:n] @ w + b, y[:n]) + 1e-3 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return float(((x[n:] @ w + b).argmax(1) == y[n:]).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="shapes")
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--scenes", type=int, default=600)
    ap.add_argument("--layers", type=int, nargs="+", default=[-2, -1, 0], help="hidden-state index (0 = embeddings)")
    args = ap.parse_args()
    torch.manual_seed(0)
    clip = load_clip(args.model, device="cpu")
    objs = features(clip.model, args.size, args.scenes)
    colours = torch.tensor([c for _, _, c, _ in objs])
    shapes = torch.tensor([s for _, _, _, s in objs])
    print(f"{len(objs)} objects of {args.scenes} scenes at {args.size} px; chance: colour "
          f"{1 / len(COLORS):.3f}, shape {1 / len(SHAPES):.3f}")
    print(f"{'layer':>6s} {'pooling':>8s} {'colour':>7s} {'shape':>7s}")
    for layer in args.layers:
        for pooling in ("mean", "peak"):
            if pooling == "mean":
                x = torch.stack([(h[layer] * c[:, None]).sum(0) / c.sum() for h, c, _, _ in objs])
            else:
                x = torch.stack([h[layer][int(c.argmax())] for h, c, _, _ in objs])
            print(f"{layer:>6d} {pooling:>8s} {probe(x, colours, len(COLORS)):7.3f} {probe(x, shapes, len(SHAPES)):7.3f}",
                  flush=True)


if __name__ == "__main__":
    main()

"""Can the shapes CLIP's vision tower *learn* shapes, given dense supervision? A pilot.

Fine-tunes a shapes CLIP's vision tower (by default the shipped one at its 192 px, 24×24 patches)
with a linear head on one block's output that names the shape under every patch (cells at least a
quarter covered by an object; the object covering most of a cell wins), on fresh training scenes;
prints the training loss and the held-out per-patch accuracy (64 held-out scenes) every 50 steps.
Chance is ≈ 1/6 (loss ln 6 ≈ 1.79). Context: README, "Shapes VLM" — the tower's features carry
colour but hardly shape. ``--save DIR`` writes the CLIP with the fine-tuned tower (at ``--size``; the
head is dropped), e.g. for ``benchmarks/binding_readout.py --clip DIR`` or ``train_vlm --clip DIR``.

    python benchmarks/dense_shape_pilot.py [--lr 1e-3] [--steps 300] [--batch 32]
    python benchmarks/dense_shape_pilot.py --model DIR --size 128 --layer -2 --steps 1200 --save OUT
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
from transformers import CLIPModel, CLIPProcessor

from attnprompt.models import load_clip
from attnprompt.shapes import SHAPES, make_scene
from attnprompt.shapes.train_clip import MEAN, STD, shape_labels
from attnprompt.shapes.train_clip import patch_labels as object_labels
from attnprompt.shapes.train_vlm import vision_tower_weights


def patch_labels(scene, grid: int) -> torch.Tensor:
    """Shape index under each cell of the grid×grid patch grid, -1 where no object covers ≥ 1/4."""
    return shape_labels(torch.from_numpy(object_labels(scene, grid).astype(np.int64).reshape(-1)))


def batch(seeds, size: int, grid: int):
    xs, ys = [], []
    for seed in seeds:
        scene = make_scene(int(seed), 4, 224)
        img = np.asarray(scene.image.resize((size, size), 2), np.float32) / 255
        xs.append(torch.tensor((img - MEAN) / STD).permute(2, 0, 1).float())
        ys.append(patch_labels(scene, grid))  # same cells after the resize
    return torch.stack(xs), torch.stack(ys)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--model", default="shapes", help="CLIP name or directory to start from")
    ap.add_argument("--size", type=int, default=0, help="input size (default: the CLIP's own)")
    ap.add_argument("--layer", type=int, default=-1, help="block output the head reads (LLaVA reads -2)")
    ap.add_argument("--save", default=None, help="write the CLIP with the fine-tuned tower here")
    args = ap.parse_args()
    torch.manual_seed(0)
    clip = load_clip(args.model, device="cpu").model
    size = args.size or clip.config.vision_config.image_size
    if size != clip.config.vision_config.image_size:
        # a CLIP at the new input size: position embeddings resized to the new grid, the rest copied
        config = copy.deepcopy(clip.config)
        config.vision_config.image_size = size
        state = {k: v for k, v in clip.state_dict().items() if not k.startswith("vision_model.")}
        state.update({f"vision_model.{k}": v for k, v in vision_tower_weights(clip, size).items()})
        clip = CLIPModel(config)
        missing, unexpected = clip.load_state_dict(state, strict=False)
        if unexpected or any(not k.endswith("position_ids") for k in missing):
            raise RuntimeError(f"weights do not fit: missing {missing}, unexpected {unexpected}")
    tower = clip.vision_model.train().requires_grad_(True)
    grid = size // tower.config.patch_size
    head = torch.nn.Linear(tower.config.hidden_size, len(SHAPES))
    opt = torch.optim.AdamW(list(tower.parameters()) + list(head.parameters()), lr=args.lr, weight_decay=0.01)
    x_val, y_val = batch(range(300_000, 300_064), size, grid)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for step in range(args.steps):
        x, y = batch(rng.integers(10**6, 2 * 10**6, args.batch), size, grid)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = head(tower(pixel_values=x, output_hidden_states=True).hidden_states[args.layer][:, 1:].float())
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, len(SHAPES)), y.reshape(-1), ignore_index=-1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == args.steps - 1:
            with torch.no_grad():
                pred = head(tower(pixel_values=x_val, output_hidden_states=True).hidden_states[args.layer][:, 1:]).argmax(-1)
            known = y_val >= 0
            acc = (pred[known] == y_val[known]).float().mean()
            print(f"step {step:4d}  loss {loss.item():.3f}  held-out patch accuracy {acc:.3f}  "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
    if args.save:
        clip.save_pretrained(args.save)
        processor = CLIPProcessor.from_pretrained(load_clip(args.model, device="cpu").location)
        processor.image_processor.size = {"shortest_edge": size}
        processor.image_processor.crop_size = {"height": size, "width": size}
        processor.save_pretrained(args.save)
        print(f"saved to {args.save}")


if __name__ == "__main__":
    main()

"""Fine-tune a shapes CLIP's vision tower to see shapes: the middle step of the shipped VLM's recipe.

A linear head on one block's output names the shape under every patch (cells at least a quarter
covered by an object; the object covering most of a cell wins) on fresh training scenes; the
tower and the head train together, the head is dropped at save. Optionally at a new input size
(position embeddings resized to the new grid). Prints the training loss and the held-out per-patch
accuracy (chance ≈ 1/6, loss ln 6 ≈ 1.79) and writes the CLIP with the fine-tuned tower, loadable
like any checkpoint, for ``train_vlm --clip DIR``. The shipped recipe (12 min on a 2-core CPU)::

    python -m tools.shapes_training.finetune_tower --clip CLIP1 --size 128 --layer -2 --steps 1000 --out CLIP2
"""

from __future__ import annotations

import copy
import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from attnprompt.shapes import SHAPES, make_scene
from attnprompt.shapes.splits import TOWER_VALIDATION, TRAINING_START

from .common import run_training, save_directory, training_record, usable_cpus
from .train_clip import MEAN, STD, patch_labels, shape_labels
from .train_vlm import vision_tower_weights


@dataclasses.dataclass
class TowerConfig:
    """Everything that determines the fine-tuned tower (recorded in ``training.json``).

    >>> TowerConfig(out="x").layer
    -1
    """

    out: str
    clip: str = "shapes"
    size: int = 0
    layer: int = -1
    lr: float = 1e-3
    steps: int = 300
    batch: int = 32
    val_scenes: int = 64
    eval_every: int = 50


SMOKE = dict(steps=2, batch=2, size=64, val_scenes=4, eval_every=1)


def shape_batch(seeds: Sequence[int], size: int, grid: int):
    """Pixel tensors (B×3×size×size) and per-patch shape labels (B×grid², -1 = no object) of the
    4-object scenes ``seeds``.

    >>> x, y = shape_batch([TRAINING_START], 64, 8)
    >>> tuple(x.shape), tuple(y.shape)
    ((1, 3, 64, 64), (1, 64))
    """
    import torch

    xs, ys = [], []
    for seed in seeds:
        scene = make_scene(int(seed), 4, 224)
        img = np.asarray(scene.image.resize((size, size), 2), np.float32) / 255
        xs.append(torch.tensor((img - MEAN) / STD).permute(2, 0, 1).float())
        # the same cells after the resize
        ys.append(shape_labels(torch.from_numpy(patch_labels(scene, grid).astype(np.int64).reshape(-1))))
    return torch.stack(xs), torch.stack(ys)


def resized_clip(clip, size: int):
    """A copy of ``clip`` at input ``size``: position embeddings resized to the new grid, the rest copied.

    >>> from attnprompt.models import load_clip
    >>> resized_clip(load_clip("shapes").model, 64).config.vision_config.image_size
    64
    """
    from transformers import CLIPModel

    config = copy.deepcopy(clip.config)
    config.vision_config.image_size = size
    state = {k: v for k, v in clip.state_dict().items() if not k.startswith("vision_model.")}
    state.update({f"vision_model.{k}": v for k, v in vision_tower_weights(clip, size).items()})
    model = CLIPModel(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.endswith("position_ids") for k in missing):
        raise RuntimeError(f"weights do not fit: missing {missing}, unexpected {unexpected}")
    return model


def train(cfg: TowerConfig, log=print) -> dict[str, Any]:
    """Fine-tune and save; returns the record written to ``training.json``."""
    import torch
    from transformers import CLIPProcessor

    from attnprompt.models import load_clip

    t_start = time.perf_counter()
    torch.manual_seed(0)
    torch.set_num_threads(usable_cpus())
    loaded = load_clip(cfg.clip, device="cpu")
    clip = copy.deepcopy(loaded.model)  # the cached model stays as it was loaded
    size = cfg.size or clip.config.vision_config.image_size
    if size != clip.config.vision_config.image_size:
        clip = resized_clip(clip, size)
    tower = clip.vision_model.train().requires_grad_(True)
    grid = size // tower.config.patch_size
    head = torch.nn.Linear(tower.config.hidden_size, len(SHAPES))
    opt = torch.optim.AdamW(list(tower.parameters()) + list(head.parameters()), lr=cfg.lr, weight_decay=0.01)
    x_val, y_val = shape_batch(TOWER_VALIDATION.seeds(cfg.val_scenes), size, grid)
    rng = np.random.default_rng(0)
    history: list[dict[str, Any]] = []
    t_train = time.perf_counter()
    for step in range(cfg.steps):
        x, y = shape_batch(rng.integers(TRAINING_START, 2 * TRAINING_START, cfg.batch), size, grid)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = head(tower(pixel_values=x, output_hidden_states=True).hidden_states[cfg.layer][:, 1:].float())
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, len(SHAPES)), y.reshape(-1), ignore_index=-1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % cfg.eval_every == 0 or step == cfg.steps - 1:
            with torch.no_grad():
                hidden = tower(pixel_values=x_val, output_hidden_states=True).hidden_states[cfg.layer]
                pred = head(hidden[:, 1:]).argmax(-1)
            known = y_val >= 0
            acc = float((pred[known] == y_val[known]).float().mean())
            history.append({"step": step + 1, "loss": round(loss.item(), 4), "patch_accuracy": round(acc, 4)})
            log(f"step {step:4d}  loss {loss.item():.3f}  held-out patch accuracy {acc:.3f}  "
                f"{time.perf_counter() - t_train:.0f} s")
    clip.eval()
    processor = CLIPProcessor.from_pretrained(loaded.location)
    processor.image_processor.size = {"shortest_edge": size}
    processor.image_processor.crop_size = {"height": size, "width": size}
    n_params = sum(p.numel() for p in clip.parameters())
    record = training_record(cfg, n_params, len(processor.tokenizer), history, t_start, t_train)
    save_directory(Path(cfg.out), lambda tmp: (clip.save_pretrained(tmp), processor.save_pretrained(tmp)), record)
    log(f"saved {cfg.out} ({record['total_seconds']:.0f} s in all)")
    return record


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m tools.shapes_training.finetune_tower --out DIR [--smoke] [--clip DIR] …``."""
    return run_training(train, TowerConfig, SMOKE, argv, __doc__.split("\n")[0])


if __name__ == "__main__":
    sys.exit(main())

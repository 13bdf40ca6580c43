"""Can the question's word pick out its object in a vision tower's features? A one-attention read-out.

The shapes VLM reads a frozen CLIP tower's patch features (block L−2, 128 px) through a projector
and a small decoder; when it fails to answer, is the information missing from the features, or is
the decoder failing to learn to use it? This script takes the decoder out: for "What colour is the
star?" / "What shape is the red object?" it trains the smallest model that must *bind* — one learned
query per naming word (the question's shape or colour), one softmax attention over the image's patch
tokens, a linear read-out of the attended features into the answer word — on features of training
scenes computed once, and reports on the VLM's held-out scenes (seeds 700000+):

- accuracy per question kind (colour of a named shape; shape of a named colour);
- pointing: the attention's most-attended patch inside the named object's box, split by whether the
  question names its object by colour or by shape;
- the same read-out trained on features of *other* scenes (shuffled): what the answer prior alone
  gives (it cannot point better than chance).

    python benchmarks/binding_readout.py [--clip shapes] [--size 128] [--layer -2] [--steps 1000]
    python benchmarks/binding_readout.py --clip DIR --kinds color --steps 2000   # one kind only
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from attnprompt.models import load_clip
from attnprompt.shapes import COLORS, SHAPES, make_questions
from attnprompt.shapes.train_clip import MEAN, STD, TRAIN_SEED_OFFSET
from attnprompt.shapes.train_vlm import EVAL_SEED, held_out_scene, training_scene, vision_tower

WORDS = list(SHAPES) + list(COLORS)  # the naming word of a question: a shape or a colour


def scenes(train: bool, n: int):
    """Scenes drawn as the VLM's training (2–6 objects, 128/160/224 px) or evaluation (3–6, 224 px) draws them."""
    first = TRAIN_SEED_OFFSET + 70_000_000 if train else EVAL_SEED
    for seed in range(first, first + n):
        scene, rng = training_scene(seed, 128) if train else held_out_scene(seed)
        yield scene, make_questions(scene, rng, per_kind=2 if train else 1)


def dataset(clip, size: int, layer: int, train: bool, n: int, kinds=("color", "shape")):
    """(features (N, P, C) bf16, items [(scene index, naming word, answer word, kind, box in grid cells)])."""
    tower = vision_tower(clip, size)
    grid = size // tower.config.patch_size
    feats, items, batch = [], [], []

    def flush():
        x = torch.tensor(np.stack(batch)).permute(0, 3, 1, 2).float()
        with torch.no_grad():
            feats.append(
                tower(pixel_values=x, output_hidden_states=True)
                .hidden_states[layer][:, 1:]
                .to(torch.bfloat16)
            )
        batch.clear()

    for i, (scene, qas) in enumerate(scenes(train, n)):
        img = np.asarray(scene.image.resize((size, size), 2), np.float32) / 255
        batch.append((img - MEAN) / STD)
        cell = scene.image.size[0] / grid  # scene pixels per grid cell
        for qa in qas:
            if qa.kind in kinds and len(qa.targets) == 1:
                obj = scene.objects[qa.targets[0]]
                word = obj.shape if qa.kind == "color" else obj.color  # what the question names it by
                items.append(
                    (i, WORDS.index(word), WORDS.index(qa.answer), qa.kind, tuple(b / cell for b in obj.box))
                )
        if len(batch) == 128:
            flush()
    if batch:
        flush()
    return torch.cat(feats), items


class Readout(torch.nn.Module):
    """One query per naming word, one softmax attention over patch tokens, a linear answer head.

    >>> r = Readout(8, 16); logits, att = r(torch.zeros(2, 4, 8), torch.tensor([0, 3])); att.shape
    torch.Size([2, 4])
    """

    def __init__(self, channels: int, width: int = 128, query_init: float = 0.0):
        super().__init__()
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(channels, width), torch.nn.GELU(), torch.nn.Linear(width, width)
        )
        self.query = torch.nn.Embedding(len(WORDS), width)
        self.key, self.value = torch.nn.Linear(width, width), torch.nn.Linear(width, width)
        self.head = torch.nn.Linear(width, len(WORDS))
        if query_init:  # instead of N(0, 1): near-uniform attention at the start
            torch.nn.init.normal_(self.query.weight, 0.0, query_init)

    def forward(self, z, word):
        h = self.mlp(z)
        att = torch.softmax(
            (self.key(h) @ self.query(word).unsqueeze(-1)).squeeze(-1) / h.shape[-1] ** 0.5, -1
        )
        return self.head((att.unsqueeze(-1) * self.value(h)).sum(1)), att


def run(
    train_f,
    train_items,
    eval_f,
    eval_items,
    grid: int,
    steps: int,
    batch: int,
    seed: int,
    log,
    query_init: float = 0.0,
    shape_first: int = 0,
) -> dict[str, float]:
    """Train a read-out on (features, items); held-out accuracy and pointing per kind.

    ``shape_first``: train the first that many steps on the questions naming a shape only."""
    torch.manual_seed(seed)
    model = Readout(train_f.shape[-1], query_init=query_init)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    rng = np.random.default_rng(seed)
    by_shape = [x for x in train_items if x[3] == "color"]
    for step in range(steps):
        pool = by_shape if step < shape_first else train_items
        b = [pool[i] for i in rng.integers(0, len(pool), batch)]
        logits, _ = model(train_f[[x[0] for x in b]].float(), torch.tensor([x[1] for x in b]))
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor([x[2] for x in b]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 250 == 0:
            log(f"  step {step} loss {loss.item():.3f}")
    with torch.no_grad():
        logits, att = model(
            eval_f[[x[0] for x in eval_items]].float(), torch.tensor([x[1] for x in eval_items])
        )
    right = (logits.argmax(-1) == torch.tensor([x[2] for x in eval_items])).numpy()
    top = att.argmax(-1).numpy()
    # the most-attended patch's centre, in grid cells, inside the named object's box
    hit = np.array(
        [
            x0 <= c % grid + 0.5 <= x1 and y0 <= c // grid + 0.5 <= y1
            for c, (*_, (x0, y0, x1, y1)) in zip(top, eval_items)
        ]
    )
    kinds = np.array([x[3] for x in eval_items])
    out = {}
    if (kinds == "color").any():
        out["colour of a named shape"] = float(right[kinds == "color"].mean())
    if (kinds == "shape").any():
        out["shape of a named colour"] = float(right[kinds == "shape"].mean())
        out["pointing, named by colour"] = float(hit[kinds == "shape"].mean())
    if (kinds == "color").any():
        out["pointing, named by shape"] = float(hit[kinds == "color"].mean())
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clip", default="shapes", help="CLIP name or directory whose vision tower is read")
    ap.add_argument("--size", type=int, default=128, help="input size (the shapes VLM's is 128)")
    ap.add_argument("--layer", type=int, default=-2, help="hidden state read (LLaVA's default: -2)")
    ap.add_argument("--scenes", type=int, default=4000, help="training scenes")
    ap.add_argument("--eval-scenes", type=int, default=200)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shape-first", type=int, default=0, help="first steps on shape-named questions only")
    ap.add_argument(
        "--kinds", default="color,shape", help="question kinds trained and scored: color, shape or both"
    )
    ap.add_argument(
        "--query-init", type=float, default=0.0, help="std of the word queries at init (0: N(0, 1))"
    )
    a = ap.parse_args()
    kinds = tuple(a.kinds.split(","))
    if not kinds or set(kinds) - {"color", "shape"}:
        ap.error(f"--kinds must be color, shape or color,shape, not {a.kinds!r}")
    if a.shape_first and "color" not in kinds:
        ap.error("--shape-first trains on the colour questions (they name a shape): keep color in --kinds")
    t0 = time.perf_counter()
    clip = load_clip(a.clip, device="cpu").model
    train_f, train_items = dataset(clip, a.size, a.layer, True, a.scenes, kinds)
    eval_f, eval_items = dataset(clip, a.size, a.layer, False, a.eval_scenes, kinds)
    flat = train_f.reshape(-1, train_f.shape[-1]).float()
    mean, sd = flat.mean(0), flat.std(0).clamp_min(1e-3)
    # standardised as the VLM's projector sees them in training
    train_f, eval_f = (
        ((train_f.float() - mean) / sd).to(torch.bfloat16),
        ((eval_f.float() - mean) / sd).to(torch.bfloat16),
    )
    grid = a.size // clip.config.vision_config.patch_size
    print(
        f"{a.clip}: {len(train_items)} training / {len(eval_items)} held-out questions, "
        f"features {tuple(train_f.shape)} in {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    rows = {}
    for label, perm in (
        ("features of its own scene", None),
        ("features of another scene (prior)", np.random.default_rng(1)),
    ):
        tf, ef = train_f, eval_f
        if perm is not None:
            tf, ef = (
                train_f[torch.as_tensor(perm.permutation(len(train_f)))],
                eval_f[torch.as_tensor(perm.permutation(len(eval_f)))],
            )
        print(label, flush=True)
        rows[label] = run(
            tf,
            train_items,
            ef,
            eval_items,
            grid,
            a.steps,
            a.batch,
            a.seed,
            print,
            a.query_init,
            a.shape_first,
        )
    cols = list(next(iter(rows.values())))
    print(f"\n| read-out on | {' | '.join(cols)} |\n|---|" + "---:|" * len(cols))
    for label, r in rows.items():
        print(f"| {label} | " + " | ".join(f"{r[c]:.3f}" for c in cols) + " |")
    print(f"\n{a.steps} steps × {a.batch}; {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Does a shapes VLM bind a question's words to image tokens? Counting by colour vs by shape.

"How many blue objects are there?" needs only colour — which every shapes tower sees (linear
probe 0.99) — plus binding the word "blue" to the blue objects' tokens; "How many circles …?"
needs shape as well. Each is compared with the rate of its most common answer: a model that
does not bind scores exactly that (it always says "1"). Existence questions ("Is there a red
cross?") are balanced yes/no, so 0.5 is the no-binding level.

    python benchmarks/vlm_binding_probe.py [--vlm shapes] [--scenes 300]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict

import numpy as np

from attnprompt.backends.base import Request
from attnprompt.backends.local import LocalVLM
from attnprompt.models import load_vlm
from attnprompt.shapes import COLORS, make_questions, make_scene
from attnprompt.shapes.train_vlm import EVAL_SEED, first_word


def group(question) -> str:
    """Which probe a question belongs to: counting by colour, counting by shape, or existence."""
    if question.kind == "exists":
        return "exists (colour and shape)"
    return "count by colour" if any(c in question.question.split() for c in COLORS) else "count by shape"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vlm", default="shapes")
    ap.add_argument("--scenes", type=int, default=300)
    args = ap.parse_args()
    backend = LocalVLM(load_vlm(args.vlm, device="cpu"), batch_size=16)
    items = []
    for seed in range(EVAL_SEED, EVAL_SEED + args.scenes):  # the training script's held-out seeds
        rng = np.random.default_rng(seed)
        scene = make_scene(seed, n_objects=int(rng.integers(3, 7)), size=224)
        items += [(scene, qa) for qa in make_questions(scene, rng, kinds=["count", "exists"], per_kind=2)]
    replies = backend.answer([Request((s.image,), qa.question, max_new_tokens=3) for s, qa in items])
    hits: dict[str, list[bool]] = defaultdict(list)
    answers: dict[str, Counter] = defaultdict(Counter)
    for (_, qa), reply in zip(items, replies):
        hits[group(qa)].append(first_word(reply.text) == qa.answer)
        answers[group(qa)][qa.answer] += 1
    print(f"VLM {args.vlm}, {args.scenes} held-out scenes (seeds {EVAL_SEED}…)")
    print(f"{'probe':28s} {'n':>5s} {'accuracy':>9s} {'no-binding level':>17s}")
    for name in sorted(hits):
        top, count = answers[name].most_common(1)[0]
        level = count / len(hits[name])
        print(f"{name:28s} {len(hits[name]):5d} {np.mean(hits[name]):9.3f} {level:11.3f} ('{top}')")


if __name__ == "__main__":
    sys.exit(main())
